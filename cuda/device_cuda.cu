/* The CUDA implementation of the device interface (runtime/device.h).
 *
 * Linked against the static CUDA runtime, so the binary starts on machines
 * without the toolkit or a driver; there, cudaGetDeviceCount fails and
 * opening says "no CUDA device (...)". Nothing here calls into the rest of
 * numalm (errors are written straight into nm_error), so this library has
 * no link dependency back on numalm_core. Every entry point selects the
 * device first: the CUDA current device is per thread, and the staging
 * reader is a thread of its own. */
#include "device_cuda.h"

#include "kernels.cuh"

#include <cuda_runtime.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/device_math.h"

typedef struct cuda_dev {
    nm_device base; /* first: callers hold a pointer to it */
    cudaStream_t streams[NM_DEV_MAX_STREAMS];
    unsigned long long *hash_sum;     /* device: one word for the hash kernel */
    uint8_t *act[NM_DEV_MAX_STREAMS]; /* device: prepared activations, per stream */
    size_t act_bytes[NM_DEV_MAX_STREAMS];
} cuda_dev;

static int fail(nm_error *err, const char *fmt, ...) {
    if (!err)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return -1;
}

static int cuda_fail(nm_error *err, cuda_dev *d, const char *what, cudaError_t e) {
    return fail(err, "CUDA device %d: %s: %s (%s)", d ? d->base.ordinal : -1, what,
                cudaGetErrorString(e), cudaGetErrorName(e));
}

static cuda_dev *cu(nm_device *d) {
    return (cuda_dev *)d;
}

/* Selects the device for this thread and checks the stream number. */
static int enter(nm_device *dev, int stream, nm_error *err) {
    cudaError_t e = cudaSetDevice(dev->ordinal);
    if (e != cudaSuccess)
        return cuda_fail(err, cu(dev), "cudaSetDevice", e);
    if (stream < 0 || stream >= dev->n_streams)
        return fail(err, "CUDA device %d: stream %d does not exist (0..%d)", dev->ordinal, stream,
                    dev->n_streams - 1);
    return 0;
}

#define CHECK(d, what, call)                                                                       \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess)                                                                     \
            return cuda_fail(err, (d), (what), e_);                                                \
    } while (0)

/* ---- memory and copies ------------------------------------------------ */

static int cu_alloc(nm_device *dev, size_t bytes, void **p, nm_error *err) {
    *p = NULL;
    if (enter(dev, 0, err) != 0)
        return -1;
    cudaError_t e = cudaMalloc(p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        size_t free_b = 0, total_b = 0;
        cudaGetLastError(); /* clear it */
        cudaMemGetInfo(&free_b, &total_b);
        *p = NULL;
        return fail(err,
                    "out of device memory: CUDA device %d: cudaMalloc of %zu bytes: %s (%zu of "
                    "%zu bytes free)",
                    dev->ordinal, bytes, cudaGetErrorString(e), free_b, total_b);
    }
    return 0;
}

static void cu_free(nm_device *dev, void *p) {
    if (p && cudaSetDevice(dev->ordinal) == cudaSuccess)
        cudaFree(p);
}

static int cu_register(nm_device *dev, void *p, size_t bytes, nm_error *err) {
    if (enter(dev, 0, err) != 0)
        return -1;
    CHECK(cu(dev), "cudaHostRegister", cudaHostRegister(p, bytes, cudaHostRegisterDefault));
    return 0;
}

static void cu_unregister(nm_device *dev, void *p) {
    if (cudaSetDevice(dev->ordinal) == cudaSuccess)
        cudaHostUnregister(p);
}

static int cu_copy(nm_device *dev, int stream, void *dst, const void *src, size_t bytes,
                   cudaMemcpyKind kind, nm_error *err) {
    if (enter(dev, stream, err) != 0)
        return -1;
    CHECK(cu(dev), "cudaMemcpyAsync",
          cudaMemcpyAsync(dst, src, bytes, kind, cu(dev)->streams[stream]));
    return 0;
}

static int cu_to_device(nm_device *dev, int stream, void *dst, const void *src, size_t bytes,
                        nm_error *err) {
    return cu_copy(dev, stream, dst, src, bytes, cudaMemcpyHostToDevice, err);
}

static int cu_to_host(nm_device *dev, int stream, void *dst, const void *src, size_t bytes,
                      nm_error *err) {
    return cu_copy(dev, stream, dst, src, bytes, cudaMemcpyDeviceToHost, err);
}

/* nm_now()'s clock (common/util.c: CLOCK_MONOTONIC). */
static void CUDART_CB write_time(void *arg) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    *(double *)arg = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cu_stamp(nm_device *dev, int stream, double *t, nm_error *err) {
    if (enter(dev, stream, err) != 0)
        return -1;
    CHECK(cu(dev), "cudaLaunchHostFunc",
          cudaLaunchHostFunc(cu(dev)->streams[stream], write_time, t));
    return 0;
}

static int cu_sync(nm_device *dev, int stream, nm_error *err) {
    if (enter(dev, stream, err) != 0)
        return -1;
    CHECK(cu(dev), "cudaStreamSynchronize", cudaStreamSynchronize(cu(dev)->streams[stream]));
    return 0;
}

static int cu_hash(nm_device *dev, int stream, const void *p, size_t bytes, uint64_t *out,
                   nm_error *err) {
    cuda_dev *d = cu(dev);
    unsigned long long sum = 0;
    if (enter(dev, stream, err) != 0)
        return -1;
    cudaStream_t s = d->streams[stream];
    CHECK(d, "cudaMemsetAsync", cudaMemsetAsync(d->hash_sum, 0, sizeof *d->hash_sum, s));
    CHECK(d, "hash kernel", nm_k_hash(s, (const uint8_t *)p, bytes, d->hash_sum));
    CHECK(d, "cudaMemcpyAsync",
          cudaMemcpyAsync(&sum, d->hash_sum, sizeof sum, cudaMemcpyDeviceToHost, s));
    CHECK(d, "cudaStreamSynchronize", cudaStreamSynchronize(s));
    *out = nm_dev_hash_final((uint64_t)sum, bytes);
    return 0;
}

/* ---- compute ---------------------------------------------------------- */

static bool cu_supports(const nm_device *d, uint32_t wtype) {
    return nm_dm_supports(wtype);
}

/* The stream's prepared-activation buffer, grown (after the stream's earlier
 * work, which may still read the old one) to hold need bytes. */
static int act_buffer(cuda_dev *d, int stream, size_t need, nm_error *err) {
    if (need <= d->act_bytes[stream])
        return 0;
    CHECK(d, "cudaStreamSynchronize", cudaStreamSynchronize(d->streams[stream]));
    cudaFree(d->act[stream]);
    d->act[stream] = NULL;
    d->act_bytes[stream] = 0;
    void *p;
    if (cu_alloc(&d->base, need, &p, err) != 0)
        return -1;
    d->act[stream] = (uint8_t *)p;
    d->act_bytes[stream] = need;
    return 0;
}

static int cu_matmul(nm_device *dev, int stream, const nm_dev_mat *m, const float *x, int n_tok,
                     float *y, nm_error *err) {
    cuda_dev *d = cu(dev);
    if (enter(dev, stream, err) != 0)
        return -1;
    if (!nm_dm_supports(m->type))
        return fail(err, "CUDA device %d: no GPU kernel for weights of type %u", dev->ordinal,
                    m->type);
    cudaStream_t s = d->streams[stream];
    const uint8_t *xq = NULL;
    if (nm_dm_needs_prepared(m->type)) {
        size_t need = nm_dm_prepared_row_bytes(m->type, m->n_cols) * (size_t)n_tok;
        if (act_buffer(d, stream, need, err) != 0)
            return -1;
        CHECK(d, "activation kernel",
              nm_k_prepare(s, m->type, x, m->n_cols, n_tok, d->act[stream]));
        xq = d->act[stream];
    }
    CHECK(d, "matmul kernel",
          nm_k_matmul(s, (const uint8_t *)m->w, m->type, m->n_rows, m->n_cols, m->row_bytes, x, xq,
                      n_tok, y));
    return 0;
}

#define LAUNCH(what, call)                                                                         \
    do {                                                                                           \
        if (enter(dev, stream, err) != 0)                                                          \
            return -1;                                                                             \
        cudaStream_t s = cu(dev)->streams[stream];                                                 \
        CHECK(cu(dev), what, call);                                                                \
        return 0;                                                                                  \
    } while (0)

static int cu_rmsnorm(nm_device *dev, int stream, float *y, const float *x, const float *w,
                      int64_t n, int n_tok, float eps, nm_error *err) {
    LAUNCH("rmsnorm kernel", nm_k_rmsnorm(s, y, x, w, n, n_tok, eps));
}

static int cu_rope(nm_device *dev, int stream, float *x, int64_t n, int n_tok, int head_dim,
                   int n_rot, const float *cs, nm_error *err) {
    LAUNCH("rope kernel", nm_k_rope(s, x, n, n_tok, head_dim, n_rot, cs));
}

static int cu_kv_store(nm_device *dev, int stream, void *cache, uint32_t kv_type, const float *src,
                       int n_head_kv, int head_dim, int n_ctx, int pos, int n_tok, nm_error *err) {
    LAUNCH("kv store kernel",
           nm_k_kv_store(s, cache, kv_type, src, n_head_kv, head_dim, n_ctx, pos, n_tok));
}

static int cu_attention(nm_device *dev, int stream, const nm_dev_attn *a, nm_error *err) {
    if (a->n_head_kv <= 0 || a->n_head % a->n_head_kv)
        return fail(err, "CUDA device %d: %d query heads do not share %d KV heads evenly",
                    dev->ordinal, a->n_head, a->n_head_kv);
    LAUNCH("attention kernel",
           nm_k_attention(s, a->q, a->out, a->k, a->v, a->kv_type, a->n_head, a->n_head_kv,
                          a->head_dim, a->n_ctx, a->pos, a->n_tok, a->f16_online, a->scores));
}

static int cu_swiglu(nm_device *dev, int stream, float *g, const float *u, int64_t n,
                     nm_error *err) {
    LAUNCH("swiglu kernel", nm_k_swiglu(s, g, u, n));
}

static int cu_add(nm_device *dev, int stream, float *x, const float *y, int64_t n, nm_error *err) {
    LAUNCH("add kernel", nm_k_add(s, x, y, n));
}

/* ---- open / close ----------------------------------------------------- */

static void cu_close(nm_device *dev) {
    cuda_dev *d = cu(dev);
    if (cudaSetDevice(dev->ordinal) == cudaSuccess) {
        for (int i = 0; i < NM_DEV_MAX_STREAMS; i++) {
            if (d->streams[i]) {
                cudaStreamSynchronize(d->streams[i]);
                cudaStreamDestroy(d->streams[i]);
            }
            cudaFree(d->act[i]);
        }
        cudaFree(d->hash_sum);
    }
    free(d);
}

static const nm_device_ops cuda_ops = {
    cu_close,   cu_alloc, cu_free,     cu_register,  cu_unregister, cu_to_device,
    cu_to_host, cu_stamp, cu_sync,     cu_hash,      cu_supports,   cu_matmul,
    cu_rmsnorm, cu_rope,  cu_kv_store, cu_attention, cu_swiglu,     cu_add,
};

extern "C" nm_device *nm_device_cuda_open(int ordinal, nm_error *err) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        cudaGetLastError();
        fail(err, "--gpu %d: no CUDA device (%s: %s)", ordinal, cudaGetErrorName(e),
             cudaGetErrorString(e));
        return NULL;
    }
    if (ordinal < 0 || ordinal >= count) {
        fail(err, "--gpu %d: no CUDA device %d (this machine has %d)", ordinal, ordinal, count);
        return NULL;
    }
    cuda_dev *d = (cuda_dev *)calloc(1, sizeof *d);
    if (!d) {
        fail(err, "CUDA device %d: out of memory", ordinal);
        return NULL;
    }
    d->base.ops = &cuda_ops;
    d->base.kind = "cuda";
    d->base.ordinal = ordinal;
    d->base.node = -1;
    d->base.n_streams = NM_DEV_MAX_STREAMS;
    cudaDeviceProp prop;
    if ((e = cudaSetDevice(ordinal)) != cudaSuccess ||
        (e = cudaGetDeviceProperties(&prop, ordinal)) != cudaSuccess) {
        cuda_fail(err, d, "cudaGetDeviceProperties", e);
        free(d);
        return NULL;
    }
    snprintf(d->base.name, sizeof d->base.name, "%.127s", prop.name);
    snprintf(d->base.busid, sizeof d->base.busid, "%04x:%02x:%02x.0", prop.pciDomainID,
             prop.pciBusID, prop.pciDeviceID);
    d->base.mem_total = prop.totalGlobalMem;
    for (int i = 0; i < NM_DEV_MAX_STREAMS && e == cudaSuccess; i++)
        e = cudaStreamCreateWithFlags(&d->streams[i], cudaStreamNonBlocking);
    if (e == cudaSuccess)
        e = cudaMalloc((void **)&d->hash_sum, sizeof *d->hash_sum);
    if (e != cudaSuccess) {
        cuda_fail(err, d, "creating streams", e);
        cu_close(&d->base);
        return NULL;
    }
    return &d->base;
}
