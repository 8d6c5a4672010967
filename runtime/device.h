/* The device interface: a small table of functions behind which an
 * accelerator sits, in the style of ggml's backends. Two implementations:
 * the CUDA one (cuda/device_cuda.cu, built when the toolkit is found) and a
 * CPU one (device_cpu.c) that runs every operation with the CPU reference
 * code on worker threads that play the device's streams. The suite tests
 * everything above the table (the staging pipeline, the offloaded forward
 * pass, error paths) through the CPU one.
 *
 * The model is CUDA's: device memory is addressed by pointers that only the
 * device may dereference (host code may do arithmetic on them); work is
 * queued on numbered streams and runs in order within a stream; copies and
 * kernels are asynchronous, so the source of a copy must stay untouched until
 * a sync of its stream; a failure inside queued work is reported by the next
 * sync of that stream. Every call returns 0, or -1 with err filled. */
#ifndef NM_DEVICE_H
#define NM_DEVICE_H

#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NM_DEV_MAX_STREAMS 8

typedef struct nm_device nm_device;

/* A weight matrix in device memory: n_rows rows of n_cols elements of type,
 * row_bytes apart. */
typedef struct nm_dev_mat {
    const void *w;
    uint32_t type;
    int64_t n_rows, n_cols;
    uint64_t row_bytes;
} nm_dev_mat;

/* Attention of n_tok tokens at positions pos, pos+1, ... against one
 * layer's KV cache, causal: token t sees positions 0 .. pos+t. Query head h
 * uses KV head h / (n_head / n_head_kv). q and out hold token t's head h at
 * [t * n_head * head_dim + h * head_dim]; the caches hold KV head g's
 * position p at [(g * n_ctx + p) * head_dim], in kv_type (F16 or F32). */
typedef struct nm_dev_attn {
    const float *q;
    float *out;
    const void *k, *v;
    uint32_t kv_type;
    int n_head, n_head_kv, head_dim, n_ctx, pos, n_tok;
    float *scores; /* scratch: n_tok * n_head * n_ctx floats */
    /* F16 cache: attend as nm_attend_f16_online (runtime/ops.h) does, as
     * the CPU forward pass does for evaluations under 64 tokens */
    bool f16_online;
} nm_dev_attn;

typedef struct nm_device_ops {
    void (*close)(nm_device *d); /* frees what is still allocated */
    int (*alloc)(nm_device *d, size_t bytes, void **p, nm_error *err);
    void (*free)(nm_device *d, void *p);
    /* Page-locks host memory so copies from it run asynchronously by DMA. */
    int (*host_register)(nm_device *d, void *p, size_t bytes, nm_error *err);
    void (*host_unregister)(nm_device *d, void *p);
    int (*to_device)(nm_device *d, int stream, void *dst, const void *src, size_t bytes,
                     nm_error *err);
    int (*to_host)(nm_device *d, int stream, void *dst, const void *src, size_t bytes,
                   nm_error *err);
    /* *t = nm_now() when the stream reaches this point (t stays valid until
     * the next sync of the stream). */
    int (*stamp)(nm_device *d, int stream, double *t, nm_error *err);
    int (*sync)(nm_device *d, int stream, nm_error *err);
    /* nm_dev_hash of device bytes, after the work queued on stream; waits. */
    int (*hash)(nm_device *d, int stream, const void *p, size_t bytes, uint64_t *out,
                nm_error *err);

    /* Compute, queued on a stream. Activations are F32, token-major. */
    bool (*supports)(const nm_device *d, uint32_t wtype);
    /* y[t * m->n_rows + i] = dot(row i, x + t * m->n_cols), t < n_tok. */
    int (*matmul)(nm_device *d, int stream, const nm_dev_mat *m, const float *x, int n_tok,
                  float *y, nm_error *err);
    /* y = RMSNorm(x) * w for n_tok rows of n. */
    int (*rmsnorm)(nm_device *d, int stream, float *y, const float *x, const float *w, int64_t n,
                   int n_tok, float eps, nm_error *err);
    /* Rotates the pairs (r, r+1), r even, r % head_dim < n_rot, of each of
     * n_tok rows of n by token t's table cs + t * (n_rot + 2) (cos, sin
     * pairs, nm_rope_table). */
    int (*rope)(nm_device *d, int stream, float *x, int64_t n, int n_tok, int head_dim, int n_rot,
                const float *cs, nm_error *err);
    /* n_tok rows of n_head_kv * head_dim into a cache laid out as in
     * nm_dev_attn, at positions pos.. */
    int (*kv_store)(nm_device *d, int stream, void *cache, uint32_t kv_type, const float *src,
                    int n_head_kv, int head_dim, int n_ctx, int pos, int n_tok, nm_error *err);
    int (*attention)(nm_device *d, int stream, const nm_dev_attn *a, nm_error *err);
    /* g = silu(g) * u */
    int (*swiglu)(nm_device *d, int stream, float *g, const float *u, int64_t n, nm_error *err);
    /* x += y */
    int (*add)(nm_device *d, int stream, float *x, const float *y, int64_t n, nm_error *err);
} nm_device_ops;

struct nm_device {
    const nm_device_ops *ops;
    const char *kind; /* "cuda" or "cpu" */
    int ordinal;      /* CUDA device number; 0 for the CPU one */
    char name[128];
    char busid[32];     /* PCI bus id as hwloc writes it, "" if none */
    int node;           /* NUMA node nearest the device, -1 unknown */
    uint64_t mem_total; /* bytes, 0 if unknown */
    int n_streams;      /* streams 0 .. n_streams-1 */
};

/* The CPU implementation. Its memory is host memory, filled with 0xA5 when
 * allocated (uninitialised device memory reads as garbage, as on a GPU);
 * copies into it must land inside a live allocation. Each stream is a
 * thread that runs the queued work in order with the CPU reference code
 * (runtime/kernels.h, runtime/ops.h: the same bits as the CPU forward pass).
 * The fault options make the error paths testable. */
typedef struct nm_device_cpu_opts {
    int node;               /* the node it claims to be attached to (-1 unknown) */
    uint64_t mem_bytes;     /* device memory; 0: unlimited */
    int fail_alloc_at;      /* the Nth alloc fails (1-based; 0: never) */
    int fail_copy_at;       /* the Nth to_device copy fails when it runs */
    int corrupt_copy_at;    /* the Nth to_device copy flips one bit of its bytes */
    unsigned copy_delay_us; /* each copy sleeps this long before it runs */
} nm_device_cpu_opts;

nm_device *nm_device_cpu_open(const nm_device_cpu_opts *o, nm_error *err);

/* What a CPU device holds now (for leak checks) and has done. */
typedef struct nm_device_cpu_counts {
    int allocs, registered;
    uint64_t alloc_bytes;
    int copies, copies_registered; /* to_device copies, those from registered memory */
} nm_device_cpu_counts;
int nm_device_cpu_counts_get(const nm_device *d, nm_device_cpu_counts *c);

static inline void nm_device_close(nm_device *d) {
    if (d)
        d->ops->close(d);
}

#endif
