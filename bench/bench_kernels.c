/* bench_kernels: matvec (decode) GB/s of weight bytes streamed, and matmat
 * (prompt) tokens/s, for each weight type and each kernel set this CPU runs,
 * with 1..T pinned threads splitting the rows as the forward pass does.
 *
 * Each thread allocates and first-touches its own rows, and the matrix is
 * replicated until the copies exceed twice the last-level cache (at least
 * 256 MiB; the dev VM reports an L3 of 480 MiB); successive calls, the
 * read's and every kernel set's alike, take the copies in turn, so each
 * call reads a copy last read twice the L3's size of traffic ago: from DRAM,
 * and as far from the cache for every kernel as for the read.
 * The same threads also sum the same buffers with a plain read loop (what
 * membw does), alternating with the kernel: "ratio" is matvec GB/s over
 * that read bandwidth.
 *
 *   bench_kernels [-r ROWS] [-n COLS] [-t MAX_THREADS] [-k TOKENS]
 *                 [--time SECONDS] [--type T] [--only-threads N]
 *                 [--no-scalar] [--wall] [--hot] [--interleave] [--json]
 *   defaults: 2048 x 5632, threads 1 and 2, 32 tokens, 0.4 s per point
 *
 * Times are the CPU time of the slowest worker thread (median of the calls),
 * so that time the shared development VM gives to other processes does not
 * count; --wall uses the wall clock instead. --hot uses one copy of the
 * matrix, so that a small one (-r 64) stays in cache and the kernel's own
 * speed limit shows. --interleave runs the kernel sets call by call in one
 * loop instead of one after the other, for comparisons on a noisy machine;
 * "best" columns are the fastest call (the matvec's, the matmat's and the
 * read's: a call may find part of its copy still in the L3). */
#include "common/error.h"
#include "common/json.h"
#include "common/rng.h"
#include "common/util.h"
#include "gguf/ggml_types.h"
#include "runtime/kernels.h"
#include "runtime/kernel_set.h"
#include "gguf/quant.h"

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 64
#define MAX_ITERS 4096
#define MAX_SETS 8
/* Bytes of copies: twice the L3 (sysconf), at least 256 MiB. */
static uint64_t copy_bytes(void) {
    long llc = sysconf(_SC_LEVEL3_CACHE_SIZE);
    uint64_t b = 256ull << 20;
    return llc > 0 && 2 * (uint64_t)llc > b ? 2 * (uint64_t)llc : b;
}

enum job_kind { JOB_FILL, JOB_READ, JOB_MATVEC, JOB_MATMAT, JOB_EXIT };

typedef struct bench {
    /* problem */
    uint32_t type;
    int64_t rows, cols;
    int n_tok, threads, copies;
    size_t row_bytes;
    /* per-thread weights: copies x (its rows) */
    void *buf[MAX_THREADS];
    size_t buf_bytes[MAX_THREADS];
    int64_t row0[MAX_THREADS], nrows[MAX_THREADS];
    int cpus[MAX_THREADS];
    /* current job */
    enum job_kind job;
    const nm_kernel_set *ks;
    nm_act act1, actk;
    float *y;
    int copy, next_copy; /* the copy of this call, of the next one */
    uint64_t sink[MAX_THREADS];
    double cpu_s[MAX_THREADS]; /* CPU seconds of each thread's last job */
    int wall;                  /* time with the wall clock, not CPU time */
    pthread_barrier_t start, done;
} bench;

typedef struct worker_arg {
    bench *b;
    int index;
} worker_arg;

static void fill_weights(bench *b, int k);

static void run_job(bench *b, int k) {
    const char *w = (const char *)b->buf[k] + (size_t)b->copy * (size_t)b->nrows[k] * b->row_bytes;
    switch (b->job) {
    case JOB_FILL:
        fill_weights(b, k);
        break;
    case JOB_READ:
        b->sink[k] += nm_read_sum(w, (size_t)b->nrows[k] * b->row_bytes);
        break;
    case JOB_MATVEC:
        nm_matvec_set(b->ks, w, b->nrows[k], &b->act1, b->y + b->row0[k]);
        break;
    case JOB_MATMAT:
        nm_matmat_set(b->ks, w, b->nrows[k], &b->actk, b->y + b->row0[k], b->rows);
        break;
    case JOB_EXIT:
        break;
    }
}

static double thread_cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *worker(void *p) {
    worker_arg *a = p;
    bench *b = a->b;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(b->cpus[a->index], &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    for (;;) {
        pthread_barrier_wait(&b->start);
        if (b->job == JOB_EXIT)
            return NULL;
        double t0 = thread_cpu_seconds();
        run_job(b, a->index);
        b->cpu_s[a->index] = thread_cpu_seconds() - t0;
        pthread_barrier_wait(&b->done);
    }
}

/* One call of the current job on all threads: seconds, wall or CPU. */
static double run_once(bench *b) {
    double t0 = nm_now();
    pthread_barrier_wait(&b->start);
    pthread_barrier_wait(&b->done);
    double t = nm_now() - t0;
    if (!b->wall) {
        t = 0;
        for (int k = 0; k < b->threads; k++)
            if (b->cpu_s[k] > t)
                t = b->cpu_s[k];
    }
    return t;
}

/* Alternates job with a plain read of the same copy until budget seconds
 * have passed (at least 3 rounds); *job_s and *read_s get the median
 * seconds of one call of each, *read_best_s the read's fastest call.
 * Interleaving gives both the same share of whatever else runs on the
 * machine, so their ratio holds even when the absolute numbers move; the
 * median drops bursts. */
/* With --interleave, one round runs the read and then the job with each of
 * ns kernel sets (sets[s] with activations acts[s]), so that the sets, not
 * only kernel and read, share the machine's noise alike: job_s[s] is set
 * s's median, best_s[s] its fastest call. */
static void time_sets(bench *b, enum job_kind job, const nm_kernel_set *const *sets,
                      const nm_act *acts, int ns, double budget, double *job_s, double *best_s,
                      double *read_s, double *read_best_s) {
    static double tj[MAX_SETS][MAX_ITERS], tr[MAX_ITERS];
    int it = 0;
    double begin = nm_now();
    while (it < MAX_ITERS && (it < 3 || nm_now() - begin < budget)) {
        /* every call, read or kernel, reads the copy after the previous
         * call's, so each reads one last touched `copies` calls ago: all
         * equally far from the cache (copies is 1 only with --hot). Giving
         * the sets copies at fixed offsets instead left some a copy another
         * set had read a few calls before, partly still in the L3, and
         * the order of the sets decided their ratios. */
        b->copy = b->next_copy++ % b->copies;
        b->job = JOB_READ;
        tr[it] = run_once(b);
        for (int s = 0; s < ns; s++) {
            b->copy = b->next_copy++ % b->copies;
            b->ks = sets[s];
            if (job == JOB_MATVEC)
                b->act1 = acts[s];
            else
                b->actk = acts[s];
            b->job = job;
            tj[s][it] = run_once(b);
        }
        it++;
        if (it == 1 && tj[0][0] > budget) /* slow scalar point: one is enough */
            break;
    }
    for (int s = 0; s < ns; s++) {
        nm_sort_doubles(tj[s], (size_t)it);
        job_s[s] = tj[s][it / 2];
        best_s[s] = tj[s][0];
    }
    nm_sort_doubles(tr, (size_t)it);
    *read_s = tr[it / 2];
    *read_best_s = tr[0];
}

/* Random but valid rows of the type, different in every page: identical
 * pages could be merged (KSM, or the hypervisor's page sharing) into one
 * cache-resident copy and fake the bandwidth. F32/F16/BF16 values are kept in
 * +-[0.5, 2), quantized scales small; the speed does not depend on them. */
static void fill_random(uint32_t type, void *dst, size_t bytes, uint64_t seed) {
    uint64_t *p = dst;
    uint64_t s = seed | 1;
    for (size_t i = 0; i < bytes / 8; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        uint64_t v = s;
        if (type == NM_TYPE_F32)
            v = (v & 0x807fffff807fffffull) | 0x3f0000003f000000ull;
        else if (type == NM_TYPE_F16)
            v = (v & 0x83ff83ff83ff83ffull) | 0x3800380038003800ull;
        else if (type == NM_TYPE_BF16)
            v = (v & 0x807f807f807f807full) | 0x3f003f003f003f00ull;
        p[i] = v;
    }
}

/* Quantized rows need sane block scales: nm_block_pool_fill. */
#define POOL_BLOCKS 4096
static void fill_quantized(uint32_t type, void *dst, size_t bytes, uint64_t seed) {
    nm_block_pool pool;
    if (nm_block_pool_make(&pool, type, POOL_BLOCKS, seed) < 0)
        abort();
    nm_block_pool_fill(&pool, dst, bytes, seed);
    nm_block_pool_free(&pool);
}

static int alloc_weights(bench *b) {
    for (int k = 0; k < b->threads; k++) {
        b->row0[k] = b->rows * k / b->threads;
        b->nrows[k] = b->rows * (k + 1) / b->threads - b->row0[k];
        b->buf_bytes[k] = (size_t)b->copies * (size_t)b->nrows[k] * b->row_bytes;
        b->buf[k] =
            mmap(NULL, b->buf_bytes[k], PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (b->buf[k] == MAP_FAILED)
            return -1;
    }
    return 0;
}

/* Run by thread k: the first touch places its pages on its node. */
static void fill_weights(bench *b, int k) {
    uint64_t seed = 0x9e3779b97f4a7c15ull * (uint64_t)(k + 1);
    if (nm_type_get(b->type)->block_size > 1)
        fill_quantized(b->type, b->buf[k], b->buf_bytes[k], seed);
    else
        fill_random(b->type, b->buf[k], b->buf_bytes[k], seed);
}

typedef struct result {
    const char *type, *kernels;
    int threads;
    double read_gbps, mv_gbps, ratio, mm_tok_s, mm_gflops;
    double read_best_gbps;              /* the read's fastest call, beside the matvec's */
    double mv_best_gbps, mm_best_tok_s; /* fastest call */
} result;

typedef struct options {
    int64_t rows, cols;
    int max_threads, n_tok, scalar, json, wall, hot, interleave;
    int only_type; /* -1: all */
    int min_threads;
    double budget;
} options;

static int parse_options(int argc, char **argv, options *o) {
    *o = (options){.rows = 2048,
                   .cols = 5632,
                   .max_threads = 2,
                   .n_tok = 32,
                   .scalar = 1,
                   .budget = 0.4,
                   .only_type = -1,
                   .min_threads = 1};
    nm_error err;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        long v = 0;
        int has = i + 1 < argc;
        if (!strcmp(a, "--json"))
            o->json = 1;
        else if (!strcmp(a, "--no-scalar"))
            o->scalar = 0;
        else if (!strcmp(a, "--wall"))
            o->wall = 1;
        else if (!strcmp(a, "--hot"))
            o->hot = 1;
        else if (!strcmp(a, "--interleave"))
            o->interleave = 1;
        else if (has && !strcmp(a, "--type")) {
            o->only_type = nm_type_from_name(argv[++i]);
            if (o->only_type < 0 || !nm_kernels_supports((uint32_t)o->only_type)) {
                fprintf(stderr, "bench_kernels: --type %s: not a type numalm computes with\n",
                        argv[i]);
                return -1;
            }
        } else if (has && !strcmp(a, "--only-threads")) {
            o->min_threads = o->max_threads = atoi(argv[++i]);
            if (o->min_threads < 1 || o->min_threads > MAX_THREADS) {
                fprintf(stderr, "bench_kernels: --only-threads %s: not in 1..%d\n", argv[i],
                        MAX_THREADS);
                return -1;
            }
        } else if (has && !strcmp(a, "--time"))
            o->budget = atof(argv[++i]);
        else if (has &&
                 (!strcmp(a, "-r") || !strcmp(a, "-n") || !strcmp(a, "-t") || !strcmp(a, "-k"))) {
            long max = a[1] == 't' ? MAX_THREADS : a[1] == 'k' ? 4096 : 1 << 20;
            if (nm_parse_long(argv[++i], 1, max, &v, a, &err)) {
                fprintf(stderr, "bench_kernels: %s\n", err.msg);
                return -1;
            }
            if (a[1] == 'r')
                o->rows = v;
            else if (a[1] == 'n')
                o->cols = v;
            else if (a[1] == 't')
                o->max_threads = (int)v;
            else
                o->n_tok = (int)v;
        } else {
            fprintf(stderr, "usage: bench_kernels [-r ROWS] [-n COLS] [-t THREADS] "
                            "[-k TOKENS] [--time S] [--type T] [--only-threads N]\n"
                            "       [--no-scalar] [--wall] [--hot] [--interleave] [--json]\n");
            return -1;
        }
    }
    if (o->cols % 32) {
        fprintf(stderr, "bench_kernels: -n %lld must be a multiple of 32 (quantized blocks)\n",
                (long long)o->cols);
        return -1;
    }
    return 0;
}

/* The kernel sets to measure for a type: name and set; the activations
 * differ for the alternative set (see nm_kernels_avx512_alt). */
static int sets_for(uint32_t type, const options *o, const nm_kernel_set **s) {
    int n = 0;
    bool quant = nm_type_get(type)->block_size > 1;
    if (o->scalar)
        s[n++] = nm_kernels_scalar();
    if (nm_simd_supported(NM_SIMD_AVX2))
        s[n++] = nm_kernels_avx2();
    if (nm_simd_supported(NM_SIMD_AVX512)) {
        s[n++] = nm_kernels_avx512_variant(0);
        __builtin_cpu_init();
        if (quant && __builtin_cpu_supports("avx512vnni"))
            s[n++] = nm_kernels_avx512_variant(NM_AVX512_VNNI);
        if (quant && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("gfni"))
            s[n++] = nm_kernels_avx512_variant(NM_AVX512_VNNI | NM_AVX512_GFNI);
        if (quant && nm_simd_supported(NM_SIMD_AMX))
            s[n++] = nm_kernels_for(NM_SIMD_AMX);
        if (type == NM_TYPE_BF16 && __builtin_cpu_supports("avx512bf16"))
            s[n++] = nm_kernels_avx512_variant(NM_AVX512_BF16);
        if (type == NM_TYPE_Q8_0 || type == NM_TYPE_BF16)
            s[n++] = nm_kernels_avx512_alt();
    }
    return n;
}

/* Activations as the set wants them: the alternative set takes F32 where
 * the chosen kernels take prepared Q8 or BF16 ones. */
static void prepare_act(const nm_kernel_set *ks, uint32_t type, const float *x, int64_t n,
                        int n_tok, void *qbuf, nm_act *act) {
    nm_act_prepare(type, x, n, n_tok, qbuf, act);
    if (ks == nm_kernels_avx512_alt() && (type == NM_TYPE_Q8_0 || type == NM_TYPE_BF16)) {
        act->q = NULL;
        act->q_row_bytes = 0;
    }
}

/* Measures one type with `threads` threads: the read bandwidth of its
 * buffers, then matvec and matmat for each kernel set. */
static int bench_type(const options *o, uint32_t type, int threads, result *res, int *nres) {
    static bench b;
    memset(&b, 0, sizeof b);
    b.type = type;
    b.rows = o->rows;
    b.cols = o->cols;
    b.n_tok = o->n_tok;
    b.threads = threads;
    uint64_t rb = 0;
    nm_type_row_bytes(type, (uint64_t)o->cols, &rb);
    b.row_bytes = (size_t)rb;
    uint64_t mat = rb * (uint64_t)o->rows;
    b.copies = o->hot ? 1 : (int)((copy_bytes() + mat - 1) / mat);
    b.wall = o->wall;
    int ncpu = nm_allowed_cpus(b.cpus, MAX_THREADS);
    for (int k = ncpu; k < threads && ncpu > 0; k++)
        b.cpus[k] = b.cpus[k % ncpu];

    nm_rng rng;
    nm_rng_seed(&rng, 42 + type, 0);
    size_t xn = (size_t)o->cols * (size_t)o->n_tok;
    float *x = malloc(xn * sizeof(float));
    /* activations prepared once per set: --interleave switches sets call by
     * call */
    size_t qbytes = nm_act_buffer_bytes(type, o->cols, o->n_tok) + 64;
    void *q1[MAX_SETS], *qk[MAX_SETS];
    int qfail = 0;
    for (int s = 0; s < MAX_SETS; s++) {
        q1[s] = aligned_alloc(64, qbytes);
        qk[s] = aligned_alloc(64, qbytes);
        qfail |= !q1[s] || !qk[s];
    }
    b.y = malloc((size_t)o->rows * (size_t)o->n_tok * sizeof(float));
    if (!x || qfail || !b.y)
        return -1;
    for (size_t i = 0; i < xn; i++)
        x[i] = nm_rng_uniform_pm1(&rng);
    if (alloc_weights(&b) != 0) {
        fprintf(stderr, "bench_kernels: cannot map %d copies of %s weights\n", b.copies,
                nm_type_name(type));
        return -1;
    }
    pthread_barrier_init(&b.start, NULL, (unsigned)threads + 1);
    pthread_barrier_init(&b.done, NULL, (unsigned)threads + 1);
    pthread_t tid[MAX_THREADS];
    worker_arg args[MAX_THREADS];
    for (int k = 0; k < threads; k++) {
        args[k] = (worker_arg){&b, k};
        pthread_create(&tid[k], NULL, worker, &args[k]);
    }
    b.job = JOB_FILL;
    pthread_barrier_wait(&b.start);
    pthread_barrier_wait(&b.done);

    const nm_kernel_set *sets[MAX_SETS];
    int ns = sets_for(type, o, sets);
    nm_act act1[MAX_SETS], actk[MAX_SETS];
    for (int s = 0; s < ns; s++) {
        prepare_act(sets[s], type, x, o->cols, 1, q1[s], &act1[s]);
        prepare_act(sets[s], type, x, o->cols, o->n_tok, qk[s], &actk[s]);
    }
    double tv[MAX_SETS], bv[MAX_SETS], tm[MAX_SETS], bm[MAX_SETS], tr[MAX_SETS], br[MAX_SETS];
    double tr2, br2;
    if (o->interleave) {
        time_sets(&b, JOB_MATVEC, sets, act1, ns, o->budget * ns, tv, bv, &tr[0], &br[0]);
        time_sets(&b, JOB_MATMAT, sets, actk, ns, o->budget * ns, tm, bm, &tr2, &br2);
        for (int s = 1; s < ns; s++)
            tr[s] = tr[0], br[s] = br[0];
    } else {
        for (int s = 0; s < ns; s++) {
            time_sets(&b, JOB_MATVEC, &sets[s], &act1[s], 1, o->budget, &tv[s], &bv[s], &tr[s],
                      &br[s]);
            time_sets(&b, JOB_MATMAT, &sets[s], &actk[s], 1, o->budget, &tm[s], &bm[s], &tr2, &br2);
        }
    }
    for (int s = 0; s < ns; s++) {
        result *r = &res[(*nres)++];
        *r = (result){.type = nm_type_name(type), .kernels = sets[s]->name, .threads = threads};
        r->mv_gbps = (double)mat / tv[s] / 1e9;
        r->mv_best_gbps = (double)mat / bv[s] / 1e9;
        r->read_gbps = (double)mat / tr[s] / 1e9;
        r->read_best_gbps = (double)mat / br[s] / 1e9;
        r->ratio = r->mv_gbps / r->read_gbps;
        r->mm_tok_s = o->n_tok / tm[s];
        r->mm_best_tok_s = o->n_tok / bm[s];
        r->mm_gflops = 2.0 * (double)o->rows * (double)o->cols * o->n_tok / tm[s] / 1e9;
    }
    b.job = JOB_EXIT;
    pthread_barrier_wait(&b.start);
    for (int k = 0; k < threads; k++) {
        pthread_join(tid[k], NULL);
        munmap(b.buf[k], b.buf_bytes[k]);
    }
    pthread_barrier_destroy(&b.start);
    pthread_barrier_destroy(&b.done);
    for (int s = 0; s < MAX_SETS; s++)
        free(q1[s]), free(qk[s]);
    free(x), free(b.y);
    return 0;
}

int main(int argc, char **argv) {
    options o;
    if (parse_options(argc, argv, &o) != 0)
        return 2;
    /* every type the type table has kernels for whose blocks fit -n */
    uint32_t types[NM_TYPE_COUNT];
    int n_types = 0;
    for (uint32_t t = 0; t < NM_TYPE_COUNT; t++)
        if (nm_kernels_supports(t) && o.cols % nm_type_get(t)->block_size == 0)
            types[n_types++] = t;
    static result res[512];
    int nres = 0;
    for (int ti = 0; ti < n_types; ti++)
        for (int t = o.min_threads; t <= o.max_threads; t++) {
            if (o.only_type >= 0 && types[ti] != (uint32_t)o.only_type)
                continue;
            if (bench_type(&o, types[ti], t, res, &nres) != 0) {
                fprintf(stderr, "bench_kernels: out of memory for %s\n", nm_type_name(types[ti]));
                return 1;
            }
            if (!o.json)
                fprintf(stderr, "bench_kernels: %s with %d thread(s) done\n",
                        nm_type_name(types[ti]), t);
        }
    if (o.json) {
        nm_json j;
        nm_json_init(&j, stdout);
        nm_json_obj_begin(&j);
        nm_json_kint(&j, "rows", o.rows);
        nm_json_kint(&j, "cols", o.cols);
        nm_json_kint(&j, "matmat_tokens", o.n_tok);
        nm_json_kstr(&j, "clock", o.wall ? "wall" : "thread_cpu");
        nm_json_kbool(&j, "hot", o.hot);
        nm_json_kbool(&j, "interleave", o.interleave);
        nm_json_kstr(&j, "simd_detected", nm_simd_name(nm_simd_detect()));
        nm_json_key(&j, "results");
        nm_json_arr_begin(&j);
        for (int i = 0; i < nres; i++) {
            result *r = &res[i];
            nm_json_obj_begin(&j);
            nm_json_kstr(&j, "type", r->type);
            nm_json_kstr(&j, "kernels", r->kernels);
            nm_json_kint(&j, "threads", r->threads);
            nm_json_kdouble(&j, "read_gbps", r->read_gbps);
            nm_json_kdouble(&j, "matvec_gbps", r->mv_gbps);
            nm_json_kdouble(&j, "matvec_ratio_to_read", r->ratio);
            nm_json_kdouble(&j, "matmat_tokens_per_s", r->mm_tok_s);
            nm_json_kdouble(&j, "matmat_gflops", r->mm_gflops);
            nm_json_kdouble(&j, "matvec_best_gbps", r->mv_best_gbps);
            nm_json_kdouble(&j, "read_best_gbps", r->read_best_gbps);
            nm_json_kdouble(&j, "matmat_best_tokens_per_s", r->mm_best_tok_s);
            nm_json_obj_end(&j);
        }
        nm_json_arr_end(&j);
        nm_json_obj_end(&j);
        nm_json_finish(&j);
        return 0;
    }
    printf("matrix %lld x %lld, matmat %d tokens; read = plain sum of the same "
           "buffers by the same threads\n",
           (long long)o.rows, (long long)o.cols, o.n_tok);
    printf("%-6s %-16s %3s %9s %10s %6s %12s %9s %9s %10s %9s\n", "type", "kernels", "thr",
           "read GB/s", "matvec GB/s", "ratio", "matmat tok/s", "GFLOP/s", "best GB/s",
           "best tok/s", "best read");
    for (int i = 0; i < nres; i++) {
        result *r = &res[i];
        printf("%-6s %-16s %3d %9.2f %10.2f %6.2f %12.1f %9.2f %9.2f %10.1f %9.2f\n", r->type,
               r->kernels, r->threads, r->read_gbps, r->mv_gbps, r->ratio, r->mm_tok_s,
               r->mm_gflops, r->mv_best_gbps, r->mm_best_tok_s, r->read_best_gbps);
    }
    return 0;
}
