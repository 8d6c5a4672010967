/* The kernel and barrier probe (kernel_probe.h). */
#include "kernel_probe.h"

#include "common/rng.h"
#include "common/util.h"
#include "gguf/ggml_types.h"
#include "gguf/quant.h"
#include "kernels.h"
#include "membw_probe.h"
#include "numa/arena.h"
#include "ops.h"
#include "threadpool.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROUNDS 5
#define POOL_BLOCKS 1024
#define BARRIERS 2000

typedef struct probe {
    uint8_t *buf;
    uint64_t rows, row_bytes;
    uint32_t type;
    nm_block_pool pool; /* valid blocks of the type */
    nm_act act;
    uint64_t matrix_rows; /* rows of one of the model's feed-forward matrices */
    float *y;
    _Atomic uint64_t sink; /* the read passes' sums: they must not be optimized away */
} probe;

/* Node 0's workers each take a contiguous share of the rows; the others
 * wait (the rate is a property of a core and its node's memory). */
static bool my_rows(const probe *pr, const nm_worker *w, uint64_t *r0, uint64_t *r1) {
    if (w->node != 0)
        return false;
    nm_split_rows(pr->rows, w->local, w->n_local, 1, r0, r1);
    return *r1 > *r0;
}

/* Random blocks of the pool (nm_block_pool_fill says why). */
static void fill_job(void *ctx, const nm_worker *w) {
    probe *pr = ctx;
    uint64_t r0, r1;
    if (my_rows(pr, w, &r0, &r1))
        nm_block_pool_fill(&pr->pool, pr->buf + r0 * pr->row_bytes, (r1 - r0) * pr->row_bytes,
                           r0 + 1);
}

static void read_job(void *ctx, const nm_worker *w) {
    probe *pr = ctx;
    uint64_t r0, r1;
    if (my_rows(pr, w, &r0, &r1))
        atomic_fetch_add_explicit(
            &pr->sink, nm_read_sum(pr->buf + r0 * pr->row_bytes, (r1 - r0) * pr->row_bytes),
            memory_order_relaxed);
}

/* The matvec in calls as long as decode's: a worker's share of one
 * feed-forward matrix. Each call's four streams (nm_matvec_set) start
 * anew: on the dev VM (Intel Xeon host, 2 threads) a Q4_0 matvec over 480
 * MiB a worker ran at 0.91 of the read where decode's calls of a few MiB
 * ran at 0.80. The read stays one long pass, the limit that the bandwidth
 * probes measure. */
static void matvec_job(void *ctx, const nm_worker *w) {
    probe *pr = ctx;
    uint64_t r0, r1;
    if (!my_rows(pr, w, &r0, &r1))
        return;
    const uint64_t step = (pr->matrix_rows + (uint64_t)w->n_local - 1) / (uint64_t)w->n_local;
    for (uint64_t r = r0; r < r1; r += step) {
        uint64_t n = r1 - r < step ? r1 - r : step;
        nm_matvec(pr->buf + r * pr->row_bytes, (int64_t)n, &pr->act, pr->y + r);
    }
}

static void barrier_job(void *ctx, const nm_worker *w) {
    (void)ctx;
    for (int i = 0; i < BARRIERS; i++)
        nm_pool_barrier(w);
}

static double timed_run(nm_pool *pool, nm_pool_fn fn, void *ctx) {
    double t0 = nm_now();
    nm_pool_run(pool, fn, ctx);
    return nm_now() - t0;
}

static double median(double *v, int n) {
    nm_sort_doubles(v, (size_t)n);
    return v[n / 2];
}

/* One type: fill, a warm-up round, then ROUNDS rounds of read and matvec. */
static int probe_type(nm_pool *pool, probe *pr, uint64_t bytes, uint64_t n_cols,
                      nm_kernel_rate *out, nm_error *err) {
    const nm_type_info *ti = nm_type_get(pr->type);
    uint64_t rb = 0;
    if (!ti || !nm_kernels_supports(pr->type) || nm_type_row_bytes(pr->type, n_cols, &rb) < 0 ||
        !ti->quantize)
        return nm_fail(err, "kernel probe: no kernel for rows of %llu %s elements",
                       (unsigned long long)n_cols, ti ? ti->name : "?");
    pr->row_bytes = rb;
    pr->rows = bytes / rb;
    float *x = malloc((size_t)n_cols * sizeof *x);
    void *abuf =
        aligned_alloc(64, nm_align_up(nm_act_buffer_bytes(pr->type, (int64_t)n_cols, 1), 64));
    int rc = x && abuf ? 0 : nm_fail(err, "kernel probe: out of memory");
    if (rc == 0 && nm_block_pool_make(&pr->pool, pr->type, POOL_BLOCKS, 42 + pr->type) < 0)
        rc = nm_fail(err, "kernel probe: cannot write %s blocks", ti->name);
    if (rc == 0) {
        nm_pool_run(pool, fill_job, pr);
        nm_rng rng;
        nm_rng_seed(&rng, 42 + pr->type, 2);
        for (uint64_t i = 0; i < n_cols; i++)
            x[i] = nm_rng_uniform_pm1(&rng);
        nm_act_prepare(pr->type, x, (int64_t)n_cols, 1, abuf, &pr->act);
        double rd[ROUNDS], mv[ROUNDS], ratio[ROUNDS];
        for (int r = -1; r < ROUNDS; r++) {
            double a = timed_run(pool, read_job, pr), b = timed_run(pool, matvec_job, pr);
            if (r < 0)
                continue; /* warm-up: the fill left part of the buffer in cache */
            rd[r] = a;
            mv[r] = b;
            ratio[r] = a / b;
        }
        double used = (double)(pr->rows * rb);
        *out = (nm_kernel_rate){.type = pr->type,
                                .read_gbs = used / median(rd, ROUNDS) / 1e9,
                                .matvec_gbs = used / median(mv, ROUNDS) / 1e9,
                                .ratio = median(ratio, ROUNDS)};
        if (out->ratio > 1)
            out->ratio = 1;
    }
    free(x);
    nm_block_pool_free(&pr->pool);
    free(abuf);
    return rc;
}

int nm_kernel_probe(const nm_plan *p, const nm_topo *t, const uint32_t *types, int n,
                    uint64_t n_cols, nm_kernel_rate *out, double *barrier_s, char *how,
                    size_t how_len, nm_error *err) {
    uint64_t bytes = nm_probe_buffer_bytes(p, t);
    probe *pr = nm_calloc(1, sizeof *pr, "the kernel probe", err);
    if (!pr)
        return -1;
    nm_arena a;
    int rc = nm_arena_create(&a, bytes, p->nodes[0].os_index, NULL, 0, NULL, err);
    if (rc < 0) {
        free(pr);
        return -1;
    }
    nm_pool *pool = nm_pool_create(p, t, err);
    pr->buf = a.base;
    /* a dense model's FFN matrices have n_ff rows, an MoE's experts n_ff_exp */
    pr->matrix_rows = p->hp.n_expert ? p->hp.n_ff_exp : p->hp.n_ff;
    if (pr->matrix_rows == 0)
        pr->matrix_rows = n_cols;
    pr->y =
        pool ? nm_calloc(bytes / 16 + 1, sizeof *pr->y, "the kernel probe's output", err) : NULL;
    rc = pr->y ? 0 : -1;
    for (int i = 0; rc == 0 && i < n; i++) {
        pr->type = types[i];
        rc = probe_type(pool, pr, bytes, n_cols, &out[i], err);
    }
    if (rc == 0) {
        double runs[3];
        for (int i = 0; i < 3; i++)
            runs[i] = timed_run(pool, barrier_job, NULL) / BARRIERS;
        *barrier_s = median(runs, 3);
        snprintf(how, how_len,
                 "node %d's %d workers, matvec in matrices of %llu rows against a read of a %llu "
                 "MiB buffer, median of %d rounds; %d barriers of all %d workers",
                 p->nodes[0].os_index, p->nodes[0].n_threads, (unsigned long long)pr->matrix_rows,
                 (unsigned long long)(bytes >> 20), ROUNDS, BARRIERS, nm_pool_n_workers(pool));
    }
    free(pr->y);
    nm_pool_free(pool);
    nm_arena_destroy(&a);
    free(pr);
    return rc;
}

/* ---- the vector work of a layer ---- */

#define VEC_REPS 64
#define ATT_POS 256

typedef struct vec_bufs {
    float *x, *y, *w, *g, *u, *cs, *q, *scores, *tmp, *out;
    uint16_t *kv;
    void *act;
} vec_bufs;

/* Feed-forward values one token computes: its experts' for a mixture. */
static int64_t ff_per_token(const nm_llama_hparams *hp) {
    return hp->n_expert ? (int64_t)hp->n_ff_exp * hp->n_expert_used : hp->n_ff;
}

static double median3(double a, double b, double c) {
    double v[3] = {a, b, c};
    return median(v, 3);
}

static double time_layer(const nm_llama_hparams *hp, uint32_t wtype, vec_bufs *b) {
    const int64_t E = hp->n_embd, Q = (int64_t)hp->n_head * hp->head_dim;
    const int64_t F = ff_per_token(hp);
    nm_act a;
    double t0 = nm_now();
    for (int r = 0; r < VEC_REPS; r++) {
        nm_rmsnorm(b->y, b->x, b->w, E, 1e-5f);
        nm_act_prepare(wtype, b->y, E, 1, b->act, &a); /* Q, K, V */
        nm_act_prepare(wtype, b->x, Q, 1, b->act, &a); /* attn_output */
        nm_rmsnorm(b->y, b->x, b->w, E, 1e-5f);
        nm_act_prepare(wtype, b->y, E, 1, b->act, &a); /* gate, up */
        nm_act_prepare(wtype, b->g, F, 1, b->act, &a); /* down */
    }
    return (nm_now() - t0) / VEC_REPS;
}

static double time_split(const nm_llama_hparams *hp, vec_bufs *b) {
    const int64_t F = ff_per_token(hp);
    const int heads = (int)(hp->n_head + hp->n_head_kv);
    double t0 = nm_now();
    for (int r = 0; r < VEC_REPS; r++) {
        for (int h = 0; h < heads; h++)
            nm_rope_head(b->q + (size_t)(h % (int)hp->n_head) * hp->head_dim, b->cs,
                         (int)hp->n_rot);
        nm_swiglu(b->u, b->g, b->u, F);
    }
    return (nm_now() - t0) / VEC_REPS;
}

static double time_attend(const nm_llama_hparams *hp, vec_bufs *b) {
    const size_t hd = hp->head_dim;
    double t0 = nm_now();
    for (int r = 0; r < VEC_REPS; r++)
        nm_attend_head(b->q, b->kv, b->kv + ATT_POS * hd, NM_TYPE_F16, (int)hd, ATT_POS, true,
                       b->scores, b->tmp, b->out);
    return (nm_now() - t0) / VEC_REPS / ATT_POS;
}

int nm_vector_probe(const nm_llama_hparams *hp, uint32_t wtype, nm_vector_cost *out,
                    nm_error *err) {
    const size_t E = hp->n_embd, Q = (size_t)hp->n_head * hp->head_dim, hd = hp->head_dim;
    size_t F = (size_t)ff_per_token(hp);
    size_t n = E > Q ? E : Q;
    n = n > F ? n : F;
    vec_bufs b = {0};
    float *f = calloc(7 * n + (size_t)hp->n_rot + 2 + ATT_POS + 2 * hd, sizeof *f);
    b.kv = calloc(2 * ATT_POS * hd, sizeof *b.kv);
    b.act = aligned_alloc(64, nm_align_up(nm_act_buffer_bytes(wtype, (int64_t)n, 1), 64));
    if (!f || !b.kv || !b.act || !hd || !nm_kernels_supports(wtype)) {
        free(f);
        free(b.kv);
        free(b.act);
        return nm_fail(err, "vector probe: no memory or no kernel for %s", nm_type_name(wtype));
    }
    b.x = f, b.y = f + n, b.w = f + 2 * n, b.g = f + 3 * n, b.u = f + 4 * n, b.q = f + 5 * n;
    b.out = f + 6 * n, b.cs = f + 7 * n, b.scores = b.cs + hp->n_rot + 2;
    b.tmp = b.scores + ATT_POS;
    nm_rng r;
    nm_rng_seed(&r, 7, 0);
    for (size_t i = 0; i < 7 * n; i++)
        f[i] = nm_rng_uniform_pm1(&r);
    for (size_t i = 0; i < 2 * ATT_POS * hd; i++)
        b.kv[i] = nm_f32_to_fp16(nm_rng_uniform_pm1(&r));
    nm_rope_params rp = {.base = 10000.0f, .freq_scale = 1.0f, .attn_factor = 1.0f};
    nm_rope_table(b.cs, 100, (int)hp->n_rot, &rp);
    double l[3], s[3], a[3];
    for (int i = 0; i < 3; i++) {
        l[i] = time_layer(hp, wtype, &b);
        s[i] = time_split(hp, &b);
        a[i] = time_attend(hp, &b);
    }
    *out = (nm_vector_cost){.layer_s = median3(l[0], l[1], l[2]),
                            .split_s = median3(s[0], s[1], s[2]),
                            .attend_s = median3(a[0], a[1], a[2])};
    free(f);
    free(b.kv);
    free(b.act);
    return 0;
}
