/* The GPU kernels' arithmetic (runtime/device_math.h), run on the CPU the
 * way cuda/kernels.cu runs it on the GPU: 32 lanes of a row dot product
 * summed, attention's three passes over 4 threads of a block, the hash's
 * byte-wise words. Compared with the CPU reference kernels, so a wrong
 * stride, block offset or rounding in the shared code fails here although
 * this machine has no GPU. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "gguf/ggml_types.h"
#include "gguf/quant.h"
#include "runtime/device.h"
#include "runtime/device_math.h"
#include "runtime/kernel_set.h"
#include "runtime/kernels.h"
#include "runtime/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static float frand(uint32_t *s) {
    *s = *s * 1664525u + 1013904223u;
    return (float)(*s >> 8) / (float)(1u << 24) * 2.0f - 1.0f;
}

static void test_bf16_rounding(void **state) {
    (void)state;
    uint32_t s = 1;
    for (int i = 0; i < 100000; i++) {
        uint32_t bits = s = s * 1664525u + 1013904223u;
        float f;
        memcpy(&f, &bits, 4);
        assert_int_equal(nm_dm_to_bf16(f), nm_f32_to_bf16(f));
    }
    assert_int_equal(nm_dm_to_bf16(NAN), nm_f32_to_bf16(NAN));
    assert_true(nm_dm_bf16(nm_f32_to_bf16(1.5f)) == 1.5f);
}

/* The GPU's prepared rows hold the values of the CPU's prepared
 * activations: Q8 per 32 (Q8_0 / Q4_0 weights), Q8_K per 256 with the sums
 * of each 16 (K-quants). */
static void test_prepared_rows_match_cpu(void **state) {
    (void)state;
    enum { N = 512 };
    float x[N];
    uint32_t s = 3;
    for (int i = 0; i < N; i++)
        x[i] = frand(&s) * (i < 64 ? 1e-3f : 10.0f);
    for (int i = 96; i < 128; i++)
        x[i] = 0.0f;   /* an all-zero block */
    x[200] = INFINITY; /* a broken block */
    uint8_t cpu[2048], gpu[2048];
    nm_act_quantize_q8(x, N, cpu);
    assert_int_equal(nm_dm_prepared_row_bytes(NM_TYPE_Q4_0, N) % 64, 0);
    for (int b = 0; b < N / 32; b++)
        nm_dm_prepare_block(NM_TYPE_Q4_0, x, N, gpu, b);
    assert_memory_equal(cpu, gpu, N); /* the int8 values */
    for (int b = 0; b < N / 32; b++) {
        float dc = nm_actq_d(cpu, N)[b], dg = ((float *)(gpu + N))[b];
        assert_true(dc == dg || (isnan(dc) && isnan(dg)));
    }
    nm_act_quantize_q8k(x, N, cpu);
    assert_int_equal(nm_dm_prepared_row_bytes(NM_TYPE_Q6_K, N), nm_actk_row_bytes(N));
    for (int b = 0; b < N / 256; b++)
        nm_dm_prepare_block(NM_TYPE_Q6_K, x, N, gpu, b);
    assert_memory_equal(cpu, gpu, N);
    assert_memory_equal(nm_actk_bsums(cpu, N), nm_actk_bsums(gpu, N), N / 16 * 2);
    for (int b = 0; b < N / 256; b++) {
        float dc = nm_actk_d(cpu, N)[b], dg = nm_actk_d(gpu, N)[b];
        assert_true(dc == dg || (isnan(dc) && isnan(dg)));
    }
}

/* What k_matmul computes for one row: 32 lanes' partial sums, added. */
static float warp_dot(uint32_t type, const uint8_t *row, const float *x, const uint8_t *xrow,
                      int64_t n) {
    float lanes[32], s = 0;
    for (int l = 0; l < 32; l++)
        lanes[l] = nm_dm_dot_lane(type, row, x, xrow, n, l, 32);
    for (int l = 0; l < 32; l++)
        s += lanes[l];
    return s;
}

/* Rows of n elements: lanes against the scalar reference, within tol;
 * exactly when every lane has at most one block (K-quants, n = 256: the
 * super-block's steps are the reference's). */
static void check_type(uint32_t type, int64_t n, bool exact) {
    enum { ROWS = 7 };
    float *w = malloc(sizeof(float) * ROWS * n), *x = malloc(sizeof(float) * n);
    uint32_t s = 11 + (uint32_t)type;
    for (int64_t i = 0; i < ROWS * n; i++)
        w[i] = frand(&s);
    for (int64_t i = 0; i < n; i++)
        x[i] = frand(&s) * 3.0f;
    uint64_t rb;
    assert_int_equal(nm_type_row_bytes(type, (uint64_t)n, &rb), 0);
    assert_true(nm_dm_supports(type));
    uint8_t *wq = malloc(rb * ROWS), *xrow = malloc(nm_dm_prepared_row_bytes(type, n) + 64);
    for (int r = 0; r < ROWS; r++)
        assert_int_equal(nm_quantize_row(type, w + r * n, wq + r * rb, n), 0);
    int64_t per = nm_dm_is_kquant(type) ? 256 : 32;
    if (nm_dm_needs_prepared(type))
        for (int64_t b = 0; b < n / per; b++)
            nm_dm_prepare_block(type, x, n, xrow, b);
    float want[ROWS];
    void *buf = aligned_alloc(64, nm_act_buffer_bytes(type, n, 1) + 64);
    nm_act a;
    nm_act_prepare(type, x, n, 1, buf, &a);
    nm_matvec_at(NM_SIMD_SCALAR, wq, ROWS, &a, want);
    free(buf);
    for (int r = 0; r < ROWS; r++) {
        float got = warp_dot(type, wq + r * rb, x, nm_dm_needs_prepared(type) ? xrow : NULL, n);
        float tol = exact ? 0.0f : 1e-5f * (1.0f + fabsf(want[r])) * 8;
        if (!(fabsf(got - want[r]) <= tol))
            fail_msg("%s row %d of %lld: lanes give %.9g, the reference %.9g", nm_type_name(type),
                     r, (long long)n, got, want[r]);
    }
    free(wq);
    free(xrow);
    free(w);
    free(x);
}

static void test_row_dots_match_reference(void **state) {
    (void)state;
    const uint32_t types[] = {NM_TYPE_F32, NM_TYPE_F16, NM_TYPE_BF16, NM_TYPE_Q8_0, NM_TYPE_Q4_0};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++)
        check_type(types[k], 320, false);
    const uint32_t ktypes[] = {NM_TYPE_Q2_K, NM_TYPE_Q3_K, NM_TYPE_Q4_K, NM_TYPE_Q5_K,
                               NM_TYPE_Q6_K};
    for (size_t k = 0; k < sizeof ktypes / sizeof ktypes[0]; k++) {
        check_type(ktypes[k], 256, true);
        check_type(ktypes[k], 256 * 40, false);
    }
    assert_false(nm_dm_supports(NM_TYPE_Q4_1));
}

/* k_attention for every (token, head), its block emulated by nth threads
 * running each pass in turn, against the CPU implementation's attention. */
static void emulate_attention(const nm_dev_attn *a, int nth) {
    const size_t es = a->kv_type == NM_TYPE_F16 ? 2 : 4;
    for (int t = 0; t < a->n_tok; t++)
        for (int h = 0; h < a->n_head; h++) {
            int g = h / (a->n_head / a->n_head_kv), n_pos = a->pos + t + 1;
            const uint8_t *k = (const uint8_t *)a->k + (size_t)g * a->n_ctx * a->head_dim * es;
            const uint8_t *v = (const uint8_t *)a->v + (size_t)g * a->n_ctx * a->head_dim * es;
            const float *q = a->q + ((size_t)t * a->n_head + h) * a->head_dim;
            float *out = a->out + ((size_t)t * a->n_head + h) * a->head_dim;
            float *sc = a->scores + ((size_t)t * a->n_head + h) * a->n_ctx;
            float mx = -INFINITY, scale = 1.0f / sqrtf((float)a->head_dim);
            bool online = a->f16_online && a->kv_type == NM_TYPE_F16;
            for (int i = 0; i < nth; i++) {
                float m = nm_dm_attn_scores(q, k, a->kv_type, a->head_dim, n_pos, scale, online, sc,
                                            i, nth);
                mx = m > mx ? m : mx;
            }
            if (online) {
                for (int i = 0; i < nth; i++)
                    nm_dm_attn_online_out(sc, (const uint16_t *)v, a->head_dim, n_pos, out, i, nth);
                continue;
            }
            double sum = 0;
            for (int i = 0; i < nth; i++)
                sum += nm_dm_attn_exp(sc, n_pos, mx, i, nth);
            for (int i = 0; i < nth; i++)
                nm_dm_attn_out(sc, v, a->kv_type, a->head_dim, n_pos, (float)(1.0 / sum), out, i,
                               nth);
        }
}

static void test_attention_matches_cpu(void **state) {
    (void)state;
    enum { HEADS = 4, KV = 2, HD = 16, CTX = 40, POS = 29, TOK = 3 };
    nm_error err = {{0}};
    nm_device *d = nm_device_cpu_open(NULL, &err);
    assert_non_null(d);
    /* f16 cache, f32 cache, f16 cache attended online */
    for (int kvt = 0; kvt < 3; kvt++) {
        uint32_t type = kvt == 1 ? NM_TYPE_F32 : NM_TYPE_F16;
        size_t es = kvt == 1 ? 4 : 2, cache = (size_t)KV * CTX * HD * es;
        void *k, *v, *q, *out, *scores;
        assert_int_equal(d->ops->alloc(d, cache, &k, &err), 0);
        assert_int_equal(d->ops->alloc(d, cache, &v, &err), 0);
        assert_int_equal(d->ops->alloc(d, TOK * HEADS * HD * 4, &q, &err), 0);
        assert_int_equal(d->ops->alloc(d, TOK * HEADS * HD * 4, &out, &err), 0);
        assert_int_equal(d->ops->alloc(d, TOK * HEADS * CTX * 4, &scores, &err), 0);
        /* the CPU device's memory is host memory: fill it directly */
        uint32_t s = 5;
        for (size_t i = 0; i < (size_t)KV * CTX * HD; i++) {
            float kk = frand(&s), vv = frand(&s);
            if (kvt == 1) {
                ((float *)k)[i] = kk;
                ((float *)v)[i] = vv;
            } else {
                ((uint16_t *)k)[i] = nm_f32_to_fp16(kk);
                ((uint16_t *)v)[i] = nm_f32_to_fp16(vv);
            }
        }
        for (int i = 0; i < TOK * HEADS * HD; i++)
            ((float *)q)[i] = frand(&s) * 2;
        nm_dev_attn a = {q, out, k, v, type, HEADS, KV, HD, CTX, POS, TOK, scores, kvt == 2};
        assert_int_equal(d->ops->attention(d, 0, &a, &err), 0);
        assert_int_equal(d->ops->sync(d, 0, &err), 0);
        float want[TOK * HEADS * HD], got[TOK * HEADS * HD];
        memcpy(want, out, sizeof want);
        a.out = got;
        float *sc2 = malloc(TOK * HEADS * CTX * 4);
        a.scores = sc2;
        emulate_attention(&a, 4);
        for (int i = 0; i < TOK * HEADS * HD; i++)
            if (fabsf(got[i] - want[i]) > 1e-5f * (1 + fabsf(want[i])))
                fail_msg("attention (%s) element %d: %.7g vs %.7g",
                         kvt == 1 ? "f32 cache"
                         : kvt    ? "f16 cache, online"
                                  : "f16 cache",
                         i, got[i], want[i]);
        free(sc2);
        d->ops->free(d, k);
        d->ops->free(d, v);
        d->ops->free(d, q);
        d->ops->free(d, out);
        d->ops->free(d, scores);
    }
    nm_device_close(d);
}

/* Rope pairs and SwiGLU as the CPU forward pass computes them. */
static void test_elementwise(void **state) {
    (void)state;
    enum { N = 48, HD = 16, ROT = 8 };
    float x[N], y[N], cs[ROT + 2];
    uint32_t s = 9;
    for (int i = 0; i < N; i++)
        x[i] = y[i] = frand(&s);
    nm_rope_table(cs, 17, ROT,
                  &(nm_rope_params){.base = 10000.0f, .freq_scale = 1.0f, .attn_factor = 1.0f});
    for (int r = 0; r + 1 < N; r += 2)
        nm_dm_rope_pair(y, r, cs, HD, ROT);
    for (int r = 0; r < N; r += 2) {
        int i = r % HD;
        float a = x[r], b = x[r + 1];
        if (i >= ROT) {
            assert_true(y[r] == a && y[r + 1] == b);
            continue;
        }
        assert_true(y[r] == a * cs[i] - b * cs[i + 1]);
        assert_true(y[r + 1] == a * cs[i + 1] + b * cs[i]);
    }
    float g[N], u[N], h[N];
    for (int i = 0; i < N; i++) {
        g[i] = frand(&s) * 4;
        u[i] = frand(&s);
    }
    nm_swiglu(h, g, u, N);
    for (int i = 0; i < N; i++)
        assert_true(nm_dm_swiglu(g[i], u[i]) == h[i]);
}

/* k_hash reads words byte by byte (any alignment) and sums their terms in
 * any order: the same value as the host's word loads. */
static void test_hash_kernel_words(void **state) {
    (void)state;
    uint8_t buf[1000];
    uint32_t s = 2;
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(frand(&s) * 127);
    for (uint64_t off = 0; off < 9; off++) {
        uint64_t n = sizeof buf - 16 - off, words = (n + 7) / 8, sum = 0;
        for (uint64_t i = words; i-- > 0;) /* backwards: order does not matter */
            sum += nm_dev_hash_term(nm_dev_hash_word(buf + off, n, i), i);
        assert_true(nm_dev_hash_final(sum, n) == nm_dev_hash(buf + off, n));
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bf16_rounding),
        cmocka_unit_test(test_prepared_rows_match_cpu),
        cmocka_unit_test(test_row_dots_match_reference),
        cmocka_unit_test(test_attention_matches_cpu),
        cmocka_unit_test(test_elementwise),
        cmocka_unit_test(test_hash_kernel_words),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
