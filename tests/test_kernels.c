/* Kernels: the scalar reference against a double-precision dot, and every
 * SIMD level and sub-path this CPU supports against the scalar reference on
 * random data and odd shapes, bit for bit where the type is exact; the read
 * sum, the vector helpers and the dispatch. The number formats and
 * activation rows they take: test_quant_formats.c.
 *
 * Random data comes from a seed printed at start: NUMALM_TEST_SEED=N repeats
 * a run, otherwise every run takes a new seed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "gguf/ggml_types.h"
#include "common/util.h"
#include "runtime/kernels.h"
#include "runtime/kernel_set.h"
#include "gguf/quant.h"

#include <immintrin.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include "kernel_test_util.h"

/* ---- kernels against references -------------------------------------- */

/* A random problem: n_rows rows of type, n_tok activation vectors. The
 * weights end right before a guard page, and so do the activations. */
typedef struct problem {
    uint32_t type;
    int64_t n, n_rows;
    int n_tok;
    guarded gw, gx;
    void *w;
    float *x, *wf; /* activations; dequantized weights */
    void *qbuf;
    nm_act act;
} problem;

static void problem_make(problem *p, uint32_t type, int64_t n, int64_t n_rows, int n_tok) {
    p->type = type;
    p->n = n;
    p->n_rows = n_rows;
    p->n_tok = n_tok;
    size_t rb = row_bytes(type, n);
    float *src = malloc((size_t)(n * n_rows) * sizeof(float));
    p->wf = malloc((size_t)(n * n_rows) * sizeof(float));
    assert_non_null(src);
    assert_non_null(p->wf);
    for (int64_t i = 0; i < n * n_rows; i++)
        src[i] = rng_value();
    p->w = guarded_alloc(&p->gw, rb * (size_t)n_rows);
    for (int64_t r = 0; r < n_rows; r++) {
        assert_int_equal(nm_quantize_row(type, src + r * n, (char *)p->w + r * rb, n), 0);
        assert_int_equal(nm_dequantize_row(type, (char *)p->w + r * rb, p->wf + r * n, n), 0);
    }
    free(src);
    p->x = guarded_alloc(&p->gx, (size_t)(n * n_tok) * sizeof(float));
    for (int64_t i = 0; i < n * n_tok; i++)
        p->x[i] = rng_value();
    size_t qb = nm_act_buffer_bytes(type, n, n_tok);
    p->qbuf = qb ? aligned_alloc(64, qb) : NULL;
    nm_act_prepare(type, p->x, n, n_tok, p->qbuf, &p->act);
}

static void problem_free(problem *p) {
    guarded_free(&p->gw);
    guarded_free(&p->gx);
    free(p->wf);
    free(p->qbuf);
}

/* The activation value the kernel multiplies with: x, or its prepared Q8 or
 * BF16 form. */
static double act_value(const problem *p, int t, int64_t j) {
    if (!p->act.q)
        return p->x[t * p->n + j];
    const void *row = (const char *)p->qbuf + (size_t)t * p->act.q_row_bytes;
    switch (nm_type_get(p->type)->act) {
    case NM_ACT_BF16:
        return nm_bf16_to_f32(((const uint16_t *)row)[j]);
    case NM_ACT_F16:
        if (p->act.wide) /* several tokens: stored widened */
            return ((const float *)row)[j];
        return nm_fp16_to_f32(((const uint16_t *)row)[j]);
    case NM_ACT_Q8_32:
        return (double)nm_actq_qs(row)[j] * nm_actq_d(row, p->n)[j / 32];
    case NM_ACT_Q8_K:
        return (double)nm_actk_qs(row)[j] * nm_actk_d(row, p->n)[j / 256];
    default:
        fail_msg("%s: no activation format", nm_type_name(p->type));
    }
    return 0;
}

/* Error scale of dot(row r, token t): sum |w a|. Q4_0 kernels also add and
 * subtract the 8 * d * sum(a) offset, and Q4_1 / Q5_1 kernels the minimum
 * term, whose terms count as well. */
static double dot_scale(const problem *p, int64_t r, int t, double *exact) {
    double s = 0, e = 0;
    for (int64_t j = 0; j < p->n; j++) {
        double w = p->wf[r * p->n + j], a = act_value(p, t, j);
        e += w * a;
        s += fabs(w * a);
        if (p->type == NM_TYPE_Q4_0) {
            const nm_block_q4_0 *b = (const nm_block_q4_0 *)p->w + r * (p->n / 32) + j / 32;
            s += 8.0 * fabs(nm_fp16_to_f32(b->d) * a);
        }
        /* Q4_1 / Q5_1 sum d q a and m a apart: |d q| <= |w| + |m| */
        if (p->type == NM_TYPE_Q4_1 || p->type == NM_TYPE_Q5_1) {
            size_t bs = nm_type_get(p->type)->type_size;
            const nm_fp16 *m = (const nm_fp16 *)((const char *)p->w + row_bytes(p->type, p->n) * r +
                                                 bs * (j / 32) + 2);
            s += 2.0 * fabs(nm_fp16_to_f32(*m) * a);
        }
    }
    *exact = e;
    return s;
}

/* Bound on the F32 rounding error of a sum of n terms whose magnitudes add
 * to scale: n * 2^-24 * scale, with room for the scale products. */
static double tolerance(const problem *p, double scale) {
    return (double)(p->n + 8) * 0x1p-24 * scale * 2.0 + 1e-30;
}

static void check_against_exact(const problem *p, const float *y, int64_t ldy, const char *what) {
    for (int t = 0; t < p->n_tok; t++)
        for (int64_t r = 0; r < p->n_rows; r++) {
            double exact;
            double scale = dot_scale(p, r, t, &exact);
            double got = y[t * ldy + r];
            if (!(fabs(got - exact) <= tolerance(p, scale)))
                fail_msg("%s %s n=%ld rows=%ld tok=%d: row %ld tok %d: %.9g, "
                         "exact %.9g (scale %.3g)",
                         what, nm_type_name(p->type), (long)p->n, (long)p->n_rows, p->n_tok,
                         (long)r, t, got, exact, scale);
        }
}

static void run_problem_all_sets(problem *p) {
    const nm_kernel_set *sets[KT_MAX_SETS];
    int ns = supported_sets(sets);
    int64_t ldy = p->n_rows + 3;
    size_t ny = (size_t)(ldy * p->n_tok);
    float *y = malloc(ny * sizeof(float));
    float *yv = malloc((size_t)p->n_rows * sizeof(float));
    assert_non_null(y);
    assert_non_null(yv);
    float *y0 = malloc(ny * sizeof(float)), *yv0 = malloc((size_t)p->n_rows * sizeof(float));
    assert_true(y0 && yv0);
    for (int s = 0; s < ns; s++) {
        for (size_t i = 0; i < ny; i++)
            y[i] = -12345.0f; /* sentinel in the ldy padding */
        nm_matmat_set(sets[s], p->w, p->n_rows, &p->act, y, ldy);
        check_against_exact(p, y, ldy, sets[s]->name);
        if (s == 0)
            memcpy(y0, y, ny * sizeof(float));
        for (int t = 0; t < p->n_tok && exact_type(p->type); t++)
            for (int64_t r = 0; r < p->n_rows; r++)
                if (f2u(y[t * ldy + r]) != f2u(y0[t * ldy + r]))
                    fail_msg("%s %s n=%ld row %ld tok %d: matmat %.9g, scalar %.9g", sets[s]->name,
                             nm_type_name(p->type), (long)p->n, (long)r, t, y[t * ldy + r],
                             y0[t * ldy + r]);
        for (int t = 0; t < p->n_tok; t++)
            for (int64_t i = p->n_rows; i < ldy; i++)
                assert_true(y[t * ldy + i] == -12345.0f);
        /* matvec on the first token */
        nm_matvec_set(sets[s], p->w, p->n_rows, &p->act, yv);
        check_against_exact(&(problem){.type = p->type,
                                       .n = p->n,
                                       .n_rows = p->n_rows,
                                       .n_tok = 1,
                                       .w = p->w,
                                       .x = p->x,
                                       .wf = p->wf,
                                       .qbuf = p->qbuf,
                                       .act = p->act},
                            yv, p->n_rows, sets[s]->name);
        if (s == 0)
            memcpy(yv0, yv, (size_t)p->n_rows * sizeof(float));
        for (int64_t r = 0; r < p->n_rows && exact_type(p->type); r++)
            if (f2u(yv[r]) != f2u(yv0[r]))
                fail_msg("%s %s n=%ld row %ld: matvec %.9g, scalar %.9g", sets[s]->name,
                         nm_type_name(p->type), (long)p->n, (long)r, yv[r], yv0[r]);
    }
    free(y0);
    free(yv0);
    /* the alternatives bench_kernels compares with: F32 activations */
    if (nm_simd_supported(NM_SIMD_AVX512) && (p->type == NM_TYPE_Q8_0 || p->type == NM_TYPE_BF16)) {
        problem f = *p;
        f.act.q = NULL;
        f.act.q_row_bytes = 0;
        nm_matmat_set(nm_kernels_avx512_alt(), f.w, f.n_rows, &f.act, y, ldy);
        check_against_exact(&f, y, ldy, "avx512-alt");
    }
    free(y);
    free(yv);
}

/* Every type x every row length, with random row and token counts. */
static void run_shapes(const uint32_t *types, size_t n_types, const int64_t *ns, size_t n_ns) {
    for (size_t ti = 0; ti < n_types; ti++)
        for (size_t k = 0; k < n_ns; k++) {
            int64_t rows = 1 + (int64_t)(rng_next() % 37);
            int tok = 1 + (int)(rng_next() % 9);
            problem p;
            problem_make(&p, types[ti], ns[k], rows, tok);
            run_problem_all_sets(&p);
            problem_free(&p);
        }
}

static void test_kernels_float_shapes(void **state) {
    (void)state;
    static const int64_t ns[] = {1, 7, 16, 33, 100, 4096 + 17};
    static const uint32_t types[] = {NM_TYPE_F32, NM_TYPE_F16, NM_TYPE_BF16};
    run_shapes(types, 3, ns, sizeof ns / sizeof ns[0]);
}

static void test_kernels_quant_shapes(void **state) {
    (void)state;
    static const int64_t blocks[] = {1, 2, 3, 13, 129};
    for (size_t ti = 0; ti < n_all_types; ti++) {
        if (!is_quant(all_types[ti]))
            continue;
        int64_t ns[5];
        for (int k = 0; k < 5; k++)
            ns[k] = blocks[k] * block_of(all_types[ti]);
        run_shapes(&all_types[ti], 1, ns, 5);
    }
}

/* Rows of 8 + k blocks of 32 for every k = 1..7: the SIMD kernels that take
 * blocks eight at a time end a row with a k-block step of its own (matvec's
 * four rows at once and the leftover row, matmat with k + 1 tokens). */
static void test_kernels_block_tails(void **state) {
    (void)state;
    for (size_t ti = 0; ti < n_all_types; ti++) {
        if (block_of(all_types[ti]) != 32)
            continue;
        for (int k = 1; k <= 7; k++) {
            problem p;
            problem_make(&p, all_types[ti], (8 + k) * 32, 9, k + 1);
            run_problem_all_sets(&p);
            problem_free(&p);
        }
    }
}

/* Checks one kind of a batch's interleaved lines: n_words 4-byte words of
 * each token, line w holding word src(w) from word0(row) of its row (src
 * NULL: word w), at off of its group's rows. */
static void check_vnni_lines(const char *buf, size_t rb, int nt, uint64_t off,
                             const void *(*word0)(const char *row, int64_t n),
                             int64_t (*src)(int64_t w), int64_t n, int64_t n_words) {
    static const char zero[4];
    for (int g = 0; g < (nt + 15) / 16; g++)
        for (int64_t w = 0; w < n_words; w++) {
            const char *line = buf + (size_t)(16 * g + w % 16) * rb + off + 64 * (size_t)(w / 16);
            for (int c = 0; c < 16; c++) {
                const int t = 16 * g + c;
                const void *want =
                    t < nt ? (const char *)word0(buf + (size_t)t * rb, n) + 4 * (src ? src(w) : w)
                           : zero;
                assert_memory_equal(line + 4 * c, want, 4);
            }
        }
}

static const void *actk_qs_of(const char *row, int64_t n) {
    return nm_actk_qs(row);
}
static const void *actk_d_of(const char *row, int64_t n) {
    return nm_actk_d(row, n);
}
static const void *actk_sums_of(const char *row, int64_t n) {
    return nm_actk_tiled_sums32(row, n);
}
static const void *actq_qs_of(const char *row, int64_t n) {
    return nm_actq_qs(row);
}
static const void *actq_d_of(const char *row, int64_t n) {
    return nm_actq_d(row, n);
}
/* Q8_K's qs lines in Q4_K's nibble order: by 32 values, sub-blocks 0, 2, 1,
 * 3, 4, 6, 5, 7 of each super-block (written out, not NM_ACTK_LINE_SUB) */
static int64_t actk_qs_word(int64_t w) {
    static const int sub[8] = {0, 2, 1, 3, 4, 6, 5, 7};
    return 64 * (w / 64) + 8 * sub[w % 64 / 8] + w % 8;
}

/* A batch's interleaved lines (nm_act_lines): token 16 g + c's word at byte
 * 4 c of its group's lines, and zeros in the columns of the tokens a
 * partial last group lacks, whatever the buffer held before (the AMX tiles
 * read every column); the lines written by 1, 2 or 3 parts as the workers
 * of a batch write them. */
static void test_vnni_lines(void **state) {
    (void)state;
    const int64_t n = 768;
    static const int counts[] = {2, 5, 16, 21};
    for (int q8 = 0; q8 < 2; q8++)
        for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++) {
            const int nt = counts[k], parts = 1 + (int)k % 3;
            const uint32_t type = q8 ? NM_TYPE_Q8_0 : NM_TYPE_Q4_K;
            float *x = malloc((size_t)(n * nt) * sizeof(float));
            assert_non_null(x);
            for (int64_t i = 0; i < n * nt; i++)
                x[i] = rng_value();
            size_t bytes = nm_act_buffer_bytes(type, n, nt);
            char *buf = aligned_alloc(64, bytes);
            assert_non_null(buf);
            memset(buf, 0xa5, bytes);
            nm_act a;
            nm_act_prepare_rows(type, x, n, nt, 0, nt, buf, &a);
            assert_true(nm_act_has_lines(&a));
            for (int p = parts - 1; p >= 0; p--)
                nm_act_lines(&a, p, parts);
            if (q8) {
                const size_t rb = (size_t)nm_actq_batch_row_bytes(n);
                check_vnni_lines(buf, rb, nt, nm_actq_vnni_off(n), actq_qs_of, NULL, n, n / 4);
                check_vnni_lines(buf, rb, nt, nm_actq_dline_off(n), actq_d_of, NULL, n, n / 32);
            } else {
                const size_t rb = (size_t)nm_actk_batch_row_bytes(n);
                check_vnni_lines(buf, rb, nt, nm_actk_vnni_off(n), actk_qs_of, actk_qs_word, n,
                                 n / 4);
                check_vnni_lines(buf, rb, nt, nm_actk_dline_off(n), actk_d_of, NULL, n, n / 256);
                check_vnni_lines(buf, rb, nt, nm_actk_sline_off(n), actk_sums_of, NULL, n, n / 64);
            }
            free(buf);
            free(x);
        }
}

/* Every token count 1..9 (each token-group remainder) and row counts that
 * cross the matmat row blocks. */
static void test_kernels_token_counts(void **state) {
    (void)state;
    for (size_t ti = 0; ti < n_all_types; ti++)
        for (int tok = 1; tok <= 9; tok++) {
            int64_t n = is_quant(all_types[ti]) ? 3 * block_of(all_types[ti]) : 33;
            problem p;
            problem_make(&p, all_types[ti], n, 1 + (tok * 7) % 37, tok);
            run_problem_all_sets(&p);
            problem_free(&p);
        }
    problem p; /* more rows than one L2 row block of the matmat driver */
    problem_make(&p, NM_TYPE_F32, 4096, 97, 3);
    run_problem_all_sets(&p);
    problem_free(&p);
}

/* Dots against the unrounded activations: the only extra error is the
 * activation rounding, at most d_a/2 per element for Q8, 2^-9 relative
 * for BF16 and 2^-11 for F16. */
static void test_quant_act_error(void **state) {
    (void)state;
    const uint32_t types[] = {NM_TYPE_Q8_0, NM_TYPE_Q4_0, NM_TYPE_BF16, NM_TYPE_F16};
    for (int ti = 0; ti < 4; ti++) {
        problem p;
        problem_make(&p, types[ti], 416, 5, 1);
        float y[5];
        nm_matvec(p.w, 5, &p.act, y);
        for (int r = 0; r < 5; r++) {
            double e = 0, bound = 0, exact;
            for (int64_t j = 0; j < p.n; j++) {
                double w = p.wf[r * p.n + j];
                e += w * p.x[j];
                if (p.type == NM_TYPE_BF16)
                    bound += fabs(w * p.x[j]) * 0x1p-9;
                else if (p.type == NM_TYPE_F16)
                    bound += fabs(w * p.x[j]) * 0x1p-11;
                else
                    bound += fabs(w) * nm_actq_d(p.qbuf, p.n)[j / 32] * 0.5;
            }
            bound += tolerance(&p, dot_scale(&p, r, 0, &exact));
            assert_true(fabs(y[r] - e) <= bound * 1.001);
        }
        problem_free(&p);
    }
}

/* A dot's bits do not depend on how rows are split among threads, nor on
 * matvec vs matmat, the token group or the matmat tiles (rows x tokens,
 * with leftover rows and tokens): the forward pass gives the same result
 * with any thread count, and prompt and decode agree. */
static void check_deterministic(uint32_t type, int64_t n, int64_t rows, int n_tok) {
    const nm_kernel_set *sets[KT_MAX_SETS];
    int ns = supported_sets(sets);
    problem p;
    problem_make(&p, type, n, rows, n_tok);
    size_t rb = row_bytes(p.type, n);
    float *ym = malloc((size_t)(rows * n_tok) * sizeof(float));
    float *yv = malloc((size_t)rows * sizeof(float)), *ys = malloc((size_t)rows * sizeof(float));
    float *yf = malloc((size_t)rows * sizeof(float));
    /* a token prepared on its own, as decode does (F16: narrow, not widened) */
    void *fbuf = aligned_alloc(64, nm_act_buffer_bytes(type, n, 1) + 64);
    assert_true(ym && yv && ys && yf && fbuf);
    for (int s = 0; s < ns; s++) {
        nm_matmat_set(sets[s], p.w, rows, &p.act, ym, rows);
        for (int t = 0; t < n_tok; t++) {
            nm_act one = p.act;
            one.n_tok = 1;
            if (one.q)
                one.q = (const char *)one.q + (size_t)t * one.q_row_bytes;
            else
                one.f32 += (size_t)t * (size_t)n;
            nm_matvec_set(sets[s], p.w, rows, &one, yv);
            /* split as three threads would: 7 rows, then 8 at a time */
            for (int64_t r0 = 0; r0 < rows;) {
                int64_t cnt = r0 == 0 ? 7 : rows - r0 < 8 ? rows - r0 : 8;
                nm_matvec_set(sets[s], (char *)p.w + (size_t)r0 * rb, cnt, &one, ys + r0);
                r0 += cnt;
            }
            nm_act fresh;
            nm_act_prepare(type, p.x + (size_t)t * (size_t)n, n, 1, fbuf, &fresh);
            nm_matvec_set(sets[s], p.w, rows, &fresh, yf);
            for (int64_t r = 0; r < rows; r++)
                if (f2u(yv[r]) != f2u(ym[t * rows + r]) || f2u(yv[r]) != f2u(ys[r]) ||
                    f2u(yv[r]) != f2u(yf[r]))
                    fail_msg("%s %s n=%ld row %ld tok %d: matvec %.9g, matmat "
                             "%.9g, split %.9g, alone %.9g",
                             sets[s]->name, nm_type_name(p.type), (long)n, (long)r, t, yv[r],
                             ym[t * rows + r], ys[r], yf[r]);
        }
    }
    free(yf);
    free(fbuf);
    free(ym);
    free(yv);
    free(ys);
    problem_free(&p);
}

static void test_kernels_deterministic(void **state) {
    (void)state;
    for (size_t ti = 0; ti < n_all_types; ti++) {
        uint32_t t = all_types[ti], b = block_of(t);
        bool q = is_quant(t);
        check_deterministic(t, q ? 13 * b : 4096 + 17, 23, 9);
        /* rows over several L2 row blocks of matmat, 13 tokens */
        check_deterministic(t, q ? 5632 + b : 5632 + 17, 61, 13);
    }
}

/* True when a set this CPU runs has a tile of more than NM_K_MAX_TOK
 * tokens for type t (the AMX tiles). */
static bool has_big_tile(uint32_t t) {
    const nm_kernel_set *sets[KT_MAX_SETS];
    int ns = supported_sets(sets);
    for (int s = 0; s < ns; s++)
        if (sets[s]->k[t].tile && sets[s]->k[t].tile_tok > NM_K_MAX_TOK)
            return true;
    return false;
}

/* The shapes of the tiles with most rows and tokens (AMX: 16 x 16, the
 * batch's token groups of 16): whole and partial groups, several groups,
 * leftover rows, against scalar (bit for bit for the exact types, within
 * the tolerance for the others) and matvec (bit for bit), for the exact
 * types and the types with such tiles (Q8_0 at amx). */
static void test_kernels_big_tiles(void **state) {
    (void)state;
    static const int toks[] = {1, 4, 7, 8, 15, 16, 17, 35};
    for (size_t ti = 0; ti < n_all_types; ti++) {
        uint32_t t = all_types[ti];
        if (!exact_type(t) && !has_big_tile(t))
            continue;
        for (size_t k = 0; k < sizeof toks / sizeof toks[0]; k++) {
            problem p;
            problem_make(&p, t, 2 * block_of(t), k % 2 ? 35 : 48, toks[k]);
            run_problem_all_sets(&p);
            problem_free(&p);
        }
        check_deterministic(t, 3 * block_of(t), 37, 21);
        if (!exact_type(t)) /* its own definition: several steps, a tail of 1-3 */
            for (int64_t nb = 8; nb <= 11; nb++)
                check_deterministic(t, nb * block_of(t), 35, nb == 9 ? 8 : 16 + (int)nb);
    }
}

/* Every set's F16 rounding of activations gives nm_f32_to_fp16's bits:
 * random values, ties, subnormals, overflow to infinity, odd lengths. */
static void test_round_f16(void **state) {
    (void)state;
    const nm_kernel_set *sets[KT_MAX_SETS];
    int ns = supported_sets(sets);
    enum { N = 203 };
    float x[N], w[N];
    uint16_t h[N];
    for (int i = 0; i < N; i++)
        x[i] = rng_value() * (i % 3 == 0 ? 1000.0f : 1.0f);
    x[0] = 70000.0f;            /* above the F16 range: inf */
    x[1] = -1e-6f;              /* F16 subnormal */
    x[2] = 1.0f + 0x1p-11f;     /* a tie: rounds to even (1.0) */
    x[3] = 1.0f + 3 * 0x1p-11f; /* a tie: rounds to even (up) */
    x[4] = 65520.0f;            /* rounds up to inf */
    x[5] = 0.0f;
    x[6] = -0.0f;
    for (int s = 0; s < ns; s++)
        for (int64_t n = 0; n <= N; n += n < 40 ? 1 : 37) {
            memset(h, 0xab, sizeof h);
            memset(w, 0xab, sizeof w);
            sets[s]->round_f16(x, n, h, NULL);
            sets[s]->round_f16(x, n, NULL, w);
            for (int64_t i = 0; i < N; i++) {
                uint16_t want = nm_f32_to_fp16(x[i]);
                if (i >= n) { /* nothing written past n */
                    assert_int_equal(h[i], 0xabab);
                    continue;
                }
                if (h[i] != want || f2u(w[i]) != f2u(nm_fp16_to_f32(want)))
                    fail_msg("%s n=%ld x[%ld]=%.9g: 0x%04x / %.9g, want 0x%04x", sets[s]->name,
                             (long)n, (long)i, x[i], h[i], w[i], want);
            }
        }
}

/* SwiGLU: every set gives the scalar set's bits (random g over the exp's
 * whole range, its clamps, zeros, odd lengths), and the scalar exp is within
 * 2 ulp of the double one: h within 3e-7 relative of g / (1 + e^-g) u. */
static void test_swiglu(void **state) {
    (void)state;
    const nm_kernel_set *sets[KT_MAX_SETS];
    int ns = supported_sets(sets);
    enum { N = 301 };
    float g[N], u[N], want[N], h[N];
    for (int i = 0; i < N; i++) {
        g[i] = rng_value() * (i % 4 == 0 ? 100.0f : i % 4 == 1 ? 8.0f : 1.0f);
        u[i] = rng_value() + 2.0f;
    }
    const float ends[] = {0.0f, -0.0f, 87.3f, -87.3f, 88.0f, -88.0f, 90.0f, -90.0f, 1e-30f, -1e30f};
    for (size_t i = 0; i < sizeof ends / sizeof ends[0]; i++)
        g[3 * i + 1] = ends[i];
    nm_kernels_scalar()->swiglu(want, g, u, N);
    for (int i = 0; i < N; i++) {
        double e = (double)g[i] / (1.0 + exp(-(double)g[i])) * u[i];
        if (fabs(want[i] - e) > 3e-7 * fabs(e) + 1e-30)
            fail_msg("swiglu(%.9g, %.9g) = %.9g, want %.9g", g[i], u[i], want[i], e);
    }
    for (int s = 0; s < ns; s++)
        for (int64_t n = 0; n <= N; n += n < 40 ? 1 : 37) {
            memset(h, 0xab, sizeof h);
            sets[s]->swiglu(h, g, u, n);
            for (int64_t i = 0; i < N; i++) {
                uint32_t w = i < n ? f2u(want[i]) : 0xabababab; /* nothing past n */
                if (f2u(h[i]) != w)
                    fail_msg("%s n=%ld g[%ld]=%.9g: %.9g, want %.9g", sets[s]->name, (long)n,
                             (long)i, g[i], h[i], want[i]);
            }
        }
}

/* The read probes' sum: every set's wide-load version gives nm_sum_words's
 * value (a plain loop written here) for any start and length; under ASan a
 * read past the end of the buffer would fail. */
static void test_sum_words(void **state) {
    (void)state;
    const nm_kernel_set *sets[KT_MAX_SETS];
    int ns = supported_sets(sets);
    enum { N = 1500 };
    uint8_t *buf = malloc(N);
    assert_non_null(buf);
    for (int i = 0; i < N; i++)
        buf[i] = (uint8_t)(rng_value() * 255.0f + 0.5f) ^ (uint8_t)(i * 7);
    for (size_t start = 0; start < 9; start++)
        for (size_t len = 0; start + len <= N; len += len < 300 ? 1 : 97) {
            uint64_t want = 0, word;
            size_t i = 0;
            for (; i + 8 <= len; i += 8) {
                memcpy(&word, buf + start + i, 8);
                want += word;
            }
            for (; i < len; i++)
                want += buf[start + i];
            assert_true(nm_sum_words(buf + start, len) == want);
            for (int k = 0; k < ns; k++)
                if (sets[k]->sum_words(buf + start, len) != want)
                    fail_msg("%s: sum of %zu bytes at +%zu differs", sets[k]->name, len, start);
        }
    free(buf);
}

static void test_vector_helpers(void **state) {
    (void)state;
    const nm_kernel_set *sets[KT_MAX_SETS];
    int nsets = supported_sets(sets);
    static const int64_t ns[] = {1, 5, 16, 31, 100, 4096 + 17};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        int64_t n = ns[k];
        guarded ga, gb, gh;
        float *a = guarded_alloc(&ga, (size_t)n * 4);
        float *b = guarded_alloc(&gb, (size_t)n * 4);
        uint16_t *h = guarded_alloc(&gh, (size_t)n * 2);
        float *y0 = malloc((size_t)n * 4), *y1 = malloc((size_t)n * 4);
        double dd = 0, dh = 0, scale = 0, hscale = 0;
        for (int64_t i = 0; i < n; i++) {
            a[i] = rng_value();
            b[i] = rng_value();
            h[i] = nm_f32_to_fp16(rng_value());
            dd += (double)a[i] * b[i];
            scale += fabs((double)a[i] * b[i]);
            dh += (double)nm_fp16_to_f32(h[i]) * b[i];
            hscale += fabs((double)nm_fp16_to_f32(h[i]) * b[i]);
        }
        double tol = (double)(n + 4) * 0x1p-23;
        float alpha = rng_uniform();
        for (int s = 0; s < nsets; s++) {
            assert_true(fabs(sets[s]->dot_f32(a, b, n) - dd) <= tol * scale + 1e-30);
            assert_true(fabs(sets[s]->dot_f16_f32(h, b, n) - dh) <= tol * hscale + 1e-30);
            for (int f16 = 0; f16 < 2; f16++) {
                memcpy(y0, b, (size_t)n * 4);
                memcpy(y1, b, (size_t)n * 4);
                if (f16) {
                    sets[0]->axpy_f16(y0, alpha, h, n);
                    sets[s]->axpy_f16(y1, alpha, h, n);
                } else {
                    sets[0]->axpy_f32(y0, alpha, a, n);
                    sets[s]->axpy_f32(y1, alpha, a, n);
                }
                /* FMA rounds once where scalar rounds twice */
                for (int64_t i = 0; i < n; i++)
                    assert_true(fabsf(y0[i] - y1[i]) <=
                                (fabsf(y0[i]) + fabsf(b[i]) + 4.0f) * 0x1p-22f);
            }
        }
        free(y0);
        free(y1);
        guarded_free(&ga);
        guarded_free(&gb);
        guarded_free(&gh);
    }
}

static void test_dispatch(void **state) {
    (void)state;
    assert_true(nm_simd_supported(NM_SIMD_SCALAR));
    nm_simd best = nm_simd_detect();
    assert_true(nm_simd_supported(best));
    assert_string_equal(nm_simd_name(NM_SIMD_AVX2), "avx2");
    nm_simd saved = nm_simd_get();
    assert_int_equal(nm_simd_set(NM_SIMD_SCALAR), 0);
    assert_int_equal(nm_simd_get(), NM_SIMD_SCALAR);
    if (!nm_simd_supported(NM_SIMD_AVX512))
        assert_int_equal(nm_simd_set(NM_SIMD_AVX512), -1);
    assert_string_equal(nm_simd_name(NM_SIMD_AMX), "amx");
    if (!nm_simd_supported(NM_SIMD_AMX))
        assert_int_equal(nm_simd_set(NM_SIMD_AMX), -1);
    assert_int_equal(nm_simd_set(saved), 0);
    for (size_t i = 0; i < n_all_types; i++)
        assert_true(nm_kernels_supports(all_types[i]));
    uint32_t stored = 0; /* a type numalm stores but has no kernels for */
    while (!nm_type_get(stored) || nm_type_computes(stored))
        stored++;
    assert_false(nm_kernels_supports(stored));
    /* an unsupported type yields NaN, never a plausible number */
    float x[256] = {0}, y[2] = {0};
    uint8_t w[1024] = {0};
    assert_true(2 * nm_type_get(stored)->type_size <= sizeof w);
    nm_act act;
    nm_act_prepare(stored, x, 256, 1, NULL, &act);
    nm_matvec(w, 2, &act, y);
    assert_true(isnan(y[0]) && isnan(y[1]));
}

int main(void) {
    kernel_test_init("test_kernels");
    /* clang-format off */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_f16),
        cmocka_unit_test(test_swiglu),
        cmocka_unit_test(test_kernels_float_shapes),
        cmocka_unit_test(test_kernels_quant_shapes),
        cmocka_unit_test(test_kernels_block_tails),
        cmocka_unit_test(test_vnni_lines),
        cmocka_unit_test(test_kernels_token_counts),
        cmocka_unit_test(test_quant_act_error),
        cmocka_unit_test(test_kernels_deterministic),
        cmocka_unit_test(test_kernels_big_tiles),
        cmocka_unit_test(test_sum_words),
        cmocka_unit_test(test_vector_helpers),
        cmocka_unit_test(test_dispatch),
    };
    /* clang-format on */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
