/* The CPU implementation of the device interface (device.h). Its streams are
 * threads, each running its queue in order, so the callers see what a GPU
 * gives them: work that runs later than it is queued, results that are only
 * safe to read after a sync, errors that surface at the sync. Compute runs
 * with the CPU reference code (kernels.h, ops.h), the same calls as the CPU
 * forward pass, so an offloaded layer gives the same bits as a CPU one. */
#include "device.h"

#include "common/util.h"
#include "device_math.h"
#include "gguf/ggml_types.h"
#include "gguf/quant.h"
#include "kernels.h"
#include "ops.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct cpu_dev cpu_dev;
typedef struct cpu_stream cpu_stream;
typedef struct op op;

typedef int (*op_fn)(cpu_stream *s, const op *o, nm_error *err);

struct op {
    op_fn fn;
    op *next;
    union {
        struct {
            void *dst;
            const void *src;
            size_t n;
            int index; /* 1-based count of to_device copies; 0 for to_host */
        } copy;
        double *stamp;
        struct {
            nm_dev_mat m;
            const float *x;
            int n_tok;
            float *y;
        } mm;
        struct {
            float *y;
            const float *x, *w;
            int64_t n;
            int n_tok;
            float eps;
        } norm;
        struct {
            float *x;
            int64_t n;
            int n_tok, hd, n_rot;
            const float *cs;
        } rope;
        struct {
            void *cache;
            uint32_t type;
            const float *src;
            int n_kv, hd, n_ctx, pos, n_tok;
        } kv;
        nm_dev_attn attn;
        struct {
            float *x;
            const float *y;
            int64_t n;
        } vec;
        struct {
            const void *p;
            size_t n;
            uint64_t *out;
        } hash;
    } a;
};

struct cpu_stream {
    cpu_dev *dev;
    pthread_t thread;
    bool started, stop, busy, failed;
    pthread_mutex_t lock;
    pthread_cond_t work, idle;
    op *head, *tail;
    nm_error err;
    void *scratch; /* prepared activations, owned by the stream's thread */
    size_t scratch_bytes;
};

typedef struct region {
    uint8_t *p;
    size_t n;
} region;

struct cpu_dev {
    nm_device base; /* first: the nm_device * callers hold points here */
    nm_device_cpu_opts o;
    pthread_mutex_t lock; /* guards the lists and counters below */
    region *allocs, *regs;
    size_t n_allocs, cap_allocs, n_regs, cap_regs;
    uint64_t used;
    int n_alloc_calls, n_copies, n_copies_registered;
    cpu_stream streams[NM_DEV_MAX_STREAMS];
};

/* ---- bookkeeping ------------------------------------------------------ */

static int add_region(region **v, size_t *n, size_t *cap, void *p, size_t bytes) {
    region *g = nm_grow(*v, cap, *n, 16, sizeof **v);
    if (!g)
        return -1;
    *v = g;
    g[(*n)++] = (region){p, bytes};
    return 0;
}

static bool take_region(region *v, size_t *n, const void *p, size_t *bytes) {
    for (size_t i = 0; i < *n; i++)
        if (v[i].p == p) {
            if (bytes)
                *bytes = v[i].n;
            v[i] = v[--*n];
            return true;
        }
    return false;
}

/* The region of v holding [p, p + bytes), NULL if none does. */
static const region *find_region(const region *v, size_t n, const void *p, size_t bytes) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b >= v[i].p && b <= v[i].p + v[i].n && bytes <= (size_t)(v[i].p + v[i].n - b))
            return &v[i];
    return NULL;
}

static bool overlaps_region(const region *v, size_t n, const void *p, size_t bytes) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b < v[i].p + v[i].n && v[i].p < b + bytes)
            return true;
    return false;
}

static cpu_dev *cpu(nm_device *d) {
    return (cpu_dev *)d;
}

/* ---- streams ---------------------------------------------------------- */

static void *stream_main(void *arg) {
    cpu_stream *s = arg;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (!s->head && !s->stop)
            pthread_cond_wait(&s->work, &s->lock);
        if (!s->head)
            break;
        op *o = s->head;
        s->head = o->next;
        if (!s->head)
            s->tail = NULL;
        s->busy = true;
        bool skip = s->failed; /* after a failure the queue drains unrun */
        pthread_mutex_unlock(&s->lock);
        nm_error e;
        int rc = skip ? 0 : o->fn(s, o, &e);
        free(o);
        pthread_mutex_lock(&s->lock);
        if (rc != 0 && !s->failed) {
            s->failed = true;
            s->err = e;
        }
        s->busy = false;
        if (!s->head)
            pthread_cond_broadcast(&s->idle);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

static cpu_stream *get_stream(cpu_dev *d, int stream, nm_error *err) {
    if (stream < 0 || stream >= d->base.n_streams) {
        nm_fail(err, "cpu device: stream %d does not exist (0..%d)", stream, d->base.n_streams - 1);
        return NULL;
    }
    cpu_stream *s = &d->streams[stream];
    pthread_mutex_lock(&d->lock);
    if (!s->started) {
        int e = pthread_create(&s->thread, NULL, stream_main, s);
        if (e) {
            pthread_mutex_unlock(&d->lock);
            nm_fail(err, "cpu device: cannot start stream %d: %s", stream, strerror(e));
            return NULL;
        }
        s->started = true;
    }
    pthread_mutex_unlock(&d->lock);
    return s;
}

static int enqueue(nm_device *dev, int stream, op_fn fn, const op *args, nm_error *err) {
    cpu_stream *s = get_stream(cpu(dev), stream, err);
    if (!s)
        return -1;
    op *o = malloc(sizeof *o);
    if (!o)
        return nm_fail(err, "cpu device: out of memory queueing work on stream %d", stream);
    *o = *args;
    o->fn = fn;
    o->next = NULL;
    pthread_mutex_lock(&s->lock);
    if (s->tail)
        s->tail->next = o;
    else
        s->head = o;
    s->tail = o;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

static int cpu_sync(nm_device *dev, int stream, nm_error *err) {
    cpu_stream *s = get_stream(cpu(dev), stream, err);
    if (!s)
        return -1;
    pthread_mutex_lock(&s->lock);
    while (s->head || s->busy)
        pthread_cond_wait(&s->idle, &s->lock);
    int rc = 0;
    if (s->failed) {
        *err = s->err;
        s->failed = false;
        rc = -1;
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

/* ---- memory ----------------------------------------------------------- */

static int cpu_alloc(nm_device *dev, size_t bytes, void **p, nm_error *err) {
    cpu_dev *d = cpu(dev);
    char b1[32], b2[32], b3[32];
    *p = NULL;
    pthread_mutex_lock(&d->lock);
    int call = ++d->n_alloc_calls;
    uint64_t used = d->used;
    pthread_mutex_unlock(&d->lock);
    if (d->o.fail_alloc_at == call)
        return nm_fail(err, "cpu device: allocation of %s failed (fault injected at allocation %d)",
                       nm_fmt_bytes(bytes, b1, sizeof b1), call);
    if (d->o.mem_bytes && bytes > d->o.mem_bytes - used)
        return nm_fail(err, "out of device memory: %s requested, %s of %s free",
                       nm_fmt_bytes(bytes, b1, sizeof b1),
                       nm_fmt_bytes(d->o.mem_bytes - used, b2, sizeof b2),
                       nm_fmt_bytes(d->o.mem_bytes, b3, sizeof b3));
    void *m = aligned_alloc(256, nm_align_up(bytes ? bytes : 1, 256));
    if (!m)
        return nm_fail(err, "cpu device: out of memory allocating %s",
                       nm_fmt_bytes(bytes, b1, sizeof b1));
    memset(m, 0xA5, bytes);
    pthread_mutex_lock(&d->lock);
    int rc = add_region(&d->allocs, &d->n_allocs, &d->cap_allocs, m, bytes);
    if (rc == 0)
        d->used += bytes;
    pthread_mutex_unlock(&d->lock);
    if (rc != 0) {
        free(m);
        return nm_fail(err, "cpu device: out of memory for bookkeeping");
    }
    *p = m;
    return 0;
}

static void cpu_free(nm_device *dev, void *p) {
    cpu_dev *d = cpu(dev);
    size_t bytes = 0;
    if (!p)
        return;
    pthread_mutex_lock(&d->lock);
    bool found = take_region(d->allocs, &d->n_allocs, p, &bytes);
    if (found)
        d->used -= bytes;
    pthread_mutex_unlock(&d->lock);
    if (found)
        free(p);
}

static int cpu_register(nm_device *dev, void *p, size_t bytes, nm_error *err) {
    cpu_dev *d = cpu(dev);
    pthread_mutex_lock(&d->lock);
    int rc = 0;
    if (overlaps_region(d->regs, d->n_regs, p, bytes))
        rc = nm_fail(err, "cpu device: host memory at %p is already registered", p);
    else if (add_region(&d->regs, &d->n_regs, &d->cap_regs, p, bytes) != 0)
        rc = nm_fail(err, "cpu device: out of memory for bookkeeping");
    pthread_mutex_unlock(&d->lock);
    return rc;
}

static void cpu_unregister(nm_device *dev, void *p) {
    cpu_dev *d = cpu(dev);
    pthread_mutex_lock(&d->lock);
    take_region(d->regs, &d->n_regs, p, NULL);
    pthread_mutex_unlock(&d->lock);
}

/* ---- copies ----------------------------------------------------------- */

static int run_copy(cpu_stream *s, const op *o, nm_error *err) {
    const nm_device_cpu_opts *opt = &s->dev->o;
    int idx = o->a.copy.index;
    if (idx && opt->copy_delay_us)
        usleep(opt->copy_delay_us);
    if (idx && idx == opt->fail_copy_at)
        return nm_fail(err, "cpu device: copy %d (%zu bytes) to the device failed (fault injected)",
                       idx, o->a.copy.n);
    memcpy(o->a.copy.dst, o->a.copy.src, o->a.copy.n);
    if (idx && idx == opt->corrupt_copy_at && o->a.copy.n)
        ((uint8_t *)o->a.copy.dst)[o->a.copy.n / 2] ^= 0x10;
    return 0;
}

static int cpu_to_device(nm_device *dev, int stream, void *dst, const void *src, size_t bytes,
                         nm_error *err) {
    cpu_dev *d = cpu(dev);
    pthread_mutex_lock(&d->lock);
    bool ok = find_region(d->allocs, d->n_allocs, dst, bytes) != NULL;
    bool pinned = find_region(d->regs, d->n_regs, src, bytes) != NULL;
    int index = ok ? ++d->n_copies : 0;
    d->n_copies_registered += ok && pinned;
    pthread_mutex_unlock(&d->lock);
    if (!ok)
        return nm_fail(err,
                       "cpu device: copy of %zu bytes to %p: not inside a device allocation "
                       "(invalid device pointer)",
                       bytes, dst);
    op o = {.a.copy = {dst, src, bytes, index}};
    return enqueue(dev, stream, run_copy, &o, err);
}

static int cpu_to_host(nm_device *dev, int stream, void *dst, const void *src, size_t bytes,
                       nm_error *err) {
    cpu_dev *d = cpu(dev);
    pthread_mutex_lock(&d->lock);
    bool ok = find_region(d->allocs, d->n_allocs, src, bytes) != NULL;
    pthread_mutex_unlock(&d->lock);
    if (!ok)
        return nm_fail(err,
                       "cpu device: copy of %zu bytes from %p: not inside a device allocation "
                       "(invalid device pointer)",
                       bytes, src);
    op o = {.a.copy = {dst, src, bytes, 0}};
    return enqueue(dev, stream, run_copy, &o, err);
}

static int run_stamp(cpu_stream *s, const op *o, nm_error *err) {
    *o->a.stamp = nm_now();
    return 0;
}

static int cpu_stamp(nm_device *dev, int stream, double *t, nm_error *err) {
    op o = {.a.stamp = t};
    return enqueue(dev, stream, run_stamp, &o, err);
}

static int run_hash(cpu_stream *s, const op *o, nm_error *err) {
    *o->a.hash.out = nm_dev_hash(o->a.hash.p, o->a.hash.n);
    return 0;
}

static int cpu_hash(nm_device *dev, int stream, const void *p, size_t bytes, uint64_t *out,
                    nm_error *err) {
    op o = {.a.hash = {p, bytes, out}};
    if (enqueue(dev, stream, run_hash, &o, err) != 0)
        return -1;
    return cpu_sync(dev, stream, err);
}

/* ---- compute: the CPU forward pass's own calls ------------------------ */

static bool cpu_supports(const nm_device *d, uint32_t wtype) {
    return nm_kernels_supports(wtype);
}

static int run_matmul(cpu_stream *s, const op *o, nm_error *err) {
    const nm_dev_mat *m = &o->a.mm.m;
    size_t need = nm_act_buffer_bytes(m->type, m->n_cols, o->a.mm.n_tok);
    if (need > s->scratch_bytes) {
        void *p = aligned_alloc(64, nm_align_up(need, 64));
        if (!p)
            return nm_fail(err, "cpu device: out of memory for activations (%zu bytes)", need);
        free(s->scratch);
        s->scratch = p;
        s->scratch_bytes = need;
    }
    nm_act a;
    nm_act_prepare(m->type, o->a.mm.x, m->n_cols, o->a.mm.n_tok, s->scratch, &a);
    if (o->a.mm.n_tok == 1)
        nm_matvec(m->w, m->n_rows, &a, o->a.mm.y);
    else
        nm_matmat(m->w, m->n_rows, &a, o->a.mm.y, m->n_rows);
    return 0;
}

static int cpu_matmul(nm_device *dev, int stream, const nm_dev_mat *m, const float *x, int n_tok,
                      float *y, nm_error *err) {
    if (!nm_kernels_supports(m->type))
        return nm_fail(err, "cpu device: no kernel for weights of type %s", nm_type_name(m->type));
    op o = {.a.mm = {*m, x, n_tok, y}};
    return enqueue(dev, stream, run_matmul, &o, err);
}

static int run_rmsnorm(cpu_stream *s, const op *o, nm_error *err) {
    int64_t n = o->a.norm.n;
    for (int t = 0; t < o->a.norm.n_tok; t++)
        nm_rmsnorm(o->a.norm.y + t * n, o->a.norm.x + t * n, o->a.norm.w, n, o->a.norm.eps);
    return 0;
}

static int cpu_rmsnorm(nm_device *dev, int stream, float *y, const float *x, const float *w,
                       int64_t n, int n_tok, float eps, nm_error *err) {
    op o = {.a.norm = {y, x, w, n, n_tok, eps}};
    return enqueue(dev, stream, run_rmsnorm, &o, err);
}

static int run_rope(cpu_stream *s, const op *o, nm_error *err) {
    const int hd = o->a.rope.hd, n_rot = o->a.rope.n_rot;
    for (int t = 0; t < o->a.rope.n_tok; t++) {
        const float *cs = o->a.rope.cs + (size_t)t * (n_rot + 2);
        float *row = o->a.rope.x + t * o->a.rope.n;
        for (int64_t r = 0; r + 1 < o->a.rope.n; r += 2) {
            int i = (int)(r % hd);
            if (i >= n_rot)
                continue;
            float c = cs[i], sn = cs[i + 1], x0 = row[r], x1 = row[r + 1];
            row[r] = x0 * c - x1 * sn;
            row[r + 1] = x0 * sn + x1 * c;
        }
    }
    return 0;
}

static int cpu_rope(nm_device *dev, int stream, float *x, int64_t n, int n_tok, int head_dim,
                    int n_rot, const float *cs, nm_error *err) {
    op o = {.a.rope = {x, n, n_tok, head_dim, n_rot, cs}};
    return enqueue(dev, stream, run_rope, &o, err);
}

static int run_kv_store(cpu_stream *s, const op *o, nm_error *err) {
    const int hd = o->a.kv.hd, n_kv = o->a.kv.n_kv;
    for (int t = 0; t < o->a.kv.n_tok; t++)
        for (int g = 0; g < n_kv; g++) {
            const float *x = o->a.kv.src + ((size_t)t * n_kv + g) * hd;
            size_t at = ((size_t)g * o->a.kv.n_ctx + (size_t)(o->a.kv.pos + t)) * hd;
            if (o->a.kv.type == NM_TYPE_F16) {
                uint16_t *dst = (uint16_t *)o->a.kv.cache + at;
                for (int d = 0; d < hd; d++)
                    dst[d] = nm_f32_to_fp16(x[d]);
            } else {
                memcpy((float *)o->a.kv.cache + at, x, (size_t)hd * sizeof(float));
            }
        }
    return 0;
}

static int cpu_kv_store(nm_device *dev, int stream, void *cache, uint32_t kv_type, const float *src,
                        int n_head_kv, int head_dim, int n_ctx, int pos, int n_tok, nm_error *err) {
    op o = {.a.kv = {cache, kv_type, src, n_head_kv, head_dim, n_ctx, pos, n_tok}};
    return enqueue(dev, stream, run_kv_store, &o, err);
}

/* One query head of one token, as the CPU forward pass attends. tmp: 2 x
 * head_dim floats. */
static void attend_one(const nm_dev_attn *a, int t, int h, float *tmp) {
    const int g = h / (a->n_head / a->n_head_kv);
    const size_t es = a->kv_type == NM_TYPE_F16 ? 2 : 4;
    const size_t base = (size_t)g * a->n_ctx * a->head_dim * es;
    nm_attend_head(a->q + ((size_t)t * a->n_head + h) * a->head_dim, (const uint8_t *)a->k + base,
                   (const uint8_t *)a->v + base, a->kv_type, a->head_dim, a->pos + t + 1,
                   a->f16_online, a->scores + ((size_t)t * a->n_head + h) * a->n_ctx, tmp,
                   a->out + ((size_t)t * a->n_head + h) * a->head_dim);
}

static int run_attention(cpu_stream *s, const op *o, nm_error *err) {
    float *tmp = malloc(2 * (size_t)o->a.attn.head_dim * sizeof(float));
    if (!tmp)
        return nm_fail(err, "cpu device: out of memory for attention scratch");
    for (int t = 0; t < o->a.attn.n_tok; t++)
        for (int h = 0; h < o->a.attn.n_head; h++)
            attend_one(&o->a.attn, t, h, tmp);
    free(tmp);
    return 0;
}

static int cpu_attention(nm_device *dev, int stream, const nm_dev_attn *a, nm_error *err) {
    if (a->n_head_kv <= 0 || a->n_head % a->n_head_kv)
        return nm_fail(err, "cpu device: %d query heads do not share %d KV heads evenly", a->n_head,
                       a->n_head_kv);
    op o = {.a.attn = *a};
    return enqueue(dev, stream, run_attention, &o, err);
}

static int run_swiglu(cpu_stream *s, const op *o, nm_error *err) {
    nm_swiglu(o->a.vec.x, o->a.vec.x, o->a.vec.y, o->a.vec.n);
    return 0;
}

static int cpu_swiglu(nm_device *dev, int stream, float *g, const float *u, int64_t n,
                      nm_error *err) {
    op o = {.a.vec = {g, u, n}};
    return enqueue(dev, stream, run_swiglu, &o, err);
}

static int run_add(cpu_stream *s, const op *o, nm_error *err) {
    for (int64_t i = 0; i < o->a.vec.n; i++)
        o->a.vec.x[i] += o->a.vec.y[i];
    return 0;
}

static int cpu_add(nm_device *dev, int stream, float *x, const float *y, int64_t n, nm_error *err) {
    op o = {.a.vec = {x, y, n}};
    return enqueue(dev, stream, run_add, &o, err);
}

/* ---- open / close ----------------------------------------------------- */

static void cpu_close(nm_device *dev) {
    cpu_dev *d = cpu(dev);
    for (int i = 0; i < NM_DEV_MAX_STREAMS; i++) {
        cpu_stream *s = &d->streams[i];
        if (s->started) {
            pthread_mutex_lock(&s->lock);
            s->stop = true;
            pthread_cond_signal(&s->work);
            pthread_mutex_unlock(&s->lock);
            pthread_join(s->thread, NULL);
        }
        free(s->scratch);
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->work);
        pthread_cond_destroy(&s->idle);
    }
    for (size_t i = 0; i < d->n_allocs; i++)
        free(d->allocs[i].p);
    free(d->allocs);
    free(d->regs);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

static const nm_device_ops cpu_ops = {
    .close = cpu_close,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .host_register = cpu_register,
    .host_unregister = cpu_unregister,
    .to_device = cpu_to_device,
    .to_host = cpu_to_host,
    .stamp = cpu_stamp,
    .sync = cpu_sync,
    .hash = cpu_hash,
    .supports = cpu_supports,
    .matmul = cpu_matmul,
    .rmsnorm = cpu_rmsnorm,
    .rope = cpu_rope,
    .kv_store = cpu_kv_store,
    .attention = cpu_attention,
    .swiglu = cpu_swiglu,
    .add = cpu_add,
};

nm_device *nm_device_cpu_open(const nm_device_cpu_opts *o, nm_error *err) {
    cpu_dev *d = calloc(1, sizeof *d);
    if (!d) {
        nm_fail(err, "cpu device: out of memory");
        return NULL;
    }
    if (o)
        d->o = *o;
    else
        d->o.node = -1;
    d->base.ops = &cpu_ops;
    d->base.kind = "cpu";
    d->base.node = d->o.node;
    d->base.mem_total = d->o.mem_bytes;
    d->base.n_streams = NM_DEV_MAX_STREAMS;
    snprintf(d->base.name, sizeof d->base.name, "the device interface's CPU implementation");
    pthread_mutex_init(&d->lock, NULL);
    for (int i = 0; i < NM_DEV_MAX_STREAMS; i++) {
        cpu_stream *s = &d->streams[i];
        s->dev = d;
        pthread_mutex_init(&s->lock, NULL);
        pthread_cond_init(&s->work, NULL);
        pthread_cond_init(&s->idle, NULL);
    }
    return &d->base;
}

int nm_device_cpu_counts_get(const nm_device *dev, nm_device_cpu_counts *c) {
    if (!dev || dev->ops != &cpu_ops)
        return -1;
    cpu_dev *d = (cpu_dev *)dev;
    pthread_mutex_lock(&d->lock);
    *c = (nm_device_cpu_counts){(int)d->n_allocs, (int)d->n_regs, d->used, d->n_copies,
                                d->n_copies_registered};
    pthread_mutex_unlock(&d->lock);
    return 0;
}
