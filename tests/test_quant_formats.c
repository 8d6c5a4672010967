/* Number formats and activation rows: F16/BF16 conversions against known
 * bit patterns (and the F16C instructions where the CPU has them), every
 * type's block layout and quantization error bounds, and the Q8 / Q8_K
 * activation rows (round trip, non-finite inputs, every kernel set's rows
 * byte for byte against the scalar ones).
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

/* ---- F16 / BF16 conversions ------------------------------------------ */

static void test_fp16_known_bits(void **state) {
    (void)state;
    static const struct {
        uint32_t f;
        uint16_t h;
    } to_half[] = {
        {0x00000000, 0x0000}, /* +0 */
        {0x80000000, 0x8000}, /* -0 */
        {0x3f800000, 0x3c00}, /* 1 */
        {0xc0000000, 0xc000}, /* -2 */
        {0x477fe000, 0x7bff}, /* 65504, largest finite */
        {0x477fefff, 0x7bff}, /* just below 65520 */
        {0x477ff000, 0x7c00}, /* 65520: tie, rounds to even = inf */
        {0x7f800000, 0x7c00}, /* inf */
        {0xff800000, 0xfc00}, /* -inf */
        {0x7f7fffff, 0x7c00}, /* FLT_MAX overflows */
        {0x33800000, 0x0001}, /* 2^-24, smallest subnormal */
        {0x33000000, 0x0000}, /* 2^-25: tie between 0 and 1 -> 0 (even) */
        {0x33000001, 0x0001}, /* just above the tie */
        {0x33c00000, 0x0002}, /* 3 * 2^-25: tie between 1 and 2 -> 2 */
        {0x387fc000, 0x03ff}, /* largest subnormal */
        {0x38800000, 0x0400}, /* 2^-14, smallest normal */
        {0x387fe000, 0x0400}, /* tie between 0x3ff and 0x400 -> 0x400 */
        {0x3f801000, 0x3c00}, /* 1 + 2^-11: tie -> 1 (even) */
        {0x3f803000, 0x3c02}, /* 1 + 3*2^-11: tie -> 0x3c02 (even) */
        {0x3f801001, 0x3c01}, /* just above the tie */
        {0x3eaaaaab, 0x3555}, /* 1/3 */
        {0x00000001, 0x0000}, /* F32 subnormal underflows to 0 */
        {0x80000001, 0x8000},
    };
    for (size_t i = 0; i < sizeof to_half / sizeof to_half[0]; i++) {
        uint16_t h = nm_f32_to_fp16(u2f(to_half[i].f));
        if (h != to_half[i].h)
            fail_msg("f32 0x%08x -> half 0x%04x, want 0x%04x", to_half[i].f, h, to_half[i].h);
    }
    static const struct {
        uint16_t h;
        uint32_t f;
    } to_float[] = {
        {0x0001, 0x33800000}, {0x8001, 0xb3800000}, {0x03ff, 0x387fc000}, {0x0400, 0x38800000},
        {0x3c00, 0x3f800000}, {0x7bff, 0x477fe000}, {0x7c00, 0x7f800000}, {0xfc00, 0xff800000},
        {0x8000, 0x80000000}, {0x3555, 0x3eaaa000},
    };
    for (size_t i = 0; i < sizeof to_float / sizeof to_float[0]; i++)
        assert_int_equal(f2u(nm_fp16_to_f32(to_float[i].h)), to_float[i].f);
    /* NaN stays NaN both ways, sign kept */
    assert_true(isnan(nm_fp16_to_f32(0x7e00)));
    assert_true(isnan(nm_fp16_to_f32(0xfc01)));
    uint16_t hn = nm_f32_to_fp16(u2f(0x7fc00000));
    assert_int_equal(hn & 0x7c00, 0x7c00);
    assert_true((hn & 0x03ff) != 0);
    assert_true((nm_f32_to_fp16(u2f(0xff800001)) & 0x8000) != 0);
}

__attribute__((target("f16c"))) static uint16_t hw_to_half(float f) {
    return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
}
__attribute__((target("f16c"))) static float hw_to_float(uint16_t h) {
    return _cvtsh_ss(h);
}

/* Every half, and random floats of every exponent, against F16C. */
static void test_fp16_matches_f16c(void **state) {
    (void)state;
    if (!nm_simd_supported(NM_SIMD_AVX2))
        skip();
    for (uint32_t h = 0; h < 65536; h++) {
        float a = nm_fp16_to_f32((uint16_t)h), b = hw_to_float((uint16_t)h);
        if (isnan(b)) {
            assert_true(isnan(a));
            continue;
        }
        if (f2u(a) != f2u(b))
            fail_msg("half 0x%04x: 0x%08x, F16C 0x%08x", h, f2u(a), f2u(b));
    }
    for (int i = 0; i < 2000000; i++) {
        uint32_t u = (uint32_t)rng_next();
        if ((u & 0x7f800000) == 0x7f800000)
            continue; /* inf/NaN: covered by the known-bits test */
        uint16_t a = nm_f32_to_fp16(u2f(u)), b = hw_to_half(u2f(u));
        if (a != b)
            fail_msg("f32 0x%08x: 0x%04x, F16C 0x%04x", u, a, b);
    }
}

static void test_bf16_known_bits(void **state) {
    (void)state;
    static const struct {
        uint32_t f;
        uint16_t b;
    } cases[] = {
        {0x3f800000, 0x3f80},                       /* 1 */
        {0x3f808000, 0x3f80},                       /* 1 + 2^-8: tie -> even */
        {0x3f818000, 0x3f82},                       /* tie -> even (up) */
        {0x3f808001, 0x3f81},                       /* above the tie */
        {0xbf80ffff, 0xbf81},                       /* negative, rounds away */
        {0x7f7fffff, 0x7f80},                       /* FLT_MAX rounds to inf */
        {0x7f800000, 0x7f80},                       /* inf */
        {0xff800000, 0xff80}, {0x00010000, 0x0001}, /* subnormal kept, not flushed */
        {0x00008000, 0x0000},                       /* subnormal tie -> 0 */
        {0x80000000, 0x8000},                       /* -0 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t b = nm_f32_to_bf16(u2f(cases[i].f));
        if (b != cases[i].b)
            fail_msg("f32 0x%08x -> bf16 0x%04x, want 0x%04x", cases[i].f, b, cases[i].b);
    }
    /* a NaN whose payload is only in the low half must stay NaN */
    uint16_t n = nm_f32_to_bf16(u2f(0x7f800001));
    assert_int_equal(n & 0x7f80, 0x7f80);
    assert_true((n & 0x7f) != 0);
    assert_int_equal(f2u(nm_bf16_to_f32(0x3f81)), 0x3f810000);
    assert_int_equal(f2u(nm_bf16_to_f32(0x8001)), 0x80010000);
}

/* ---- block layouts and quantization error ---------------------------- */

static void test_block_layouts(void **state) {
    (void)state;
    float x[32];
    for (int j = 0; j < 32; j++)
        x[j] = (float)(j - 16); /* -16 .. 15 */
    nm_block_q4_0 q4;
    assert_int_equal(nm_quantize_row(NM_TYPE_Q4_0, x, &q4, 32), 0);
    /* largest magnitude is -16 -> d = -16 / -8 = 2, element j -> j/2 + 0 */
    assert_int_equal(q4.d, nm_f32_to_fp16(2.0f));
    for (int j = 0; j < 16; j++) {
        int lo = q4.qs[j] & 15, hi = q4.qs[j] >> 4;
        /* q = x/d + 8 rounded (+8.5, truncated), clamped to 15 */
        int want_lo = (int)(x[j] / 2.0f + 8.5f);
        int want_hi = (int)(x[j + 16] / 2.0f + 8.5f);
        assert_int_equal(lo, want_lo > 15 ? 15 : want_lo);
        assert_int_equal(hi, want_hi > 15 ? 15 : want_hi);
    }
    const uint8_t *raw = (const uint8_t *)&q4;
    assert_int_equal(raw[0] | raw[1] << 8, nm_f32_to_fp16(2.0f)); /* d first */

    nm_block_q8_0 q8;
    for (int j = 0; j < 32; j++)
        x[j] = (float)(j - 16) * 0.5f;
    assert_int_equal(nm_quantize_row(NM_TYPE_Q8_0, x, &q8, 32), 0);
    float d = nm_fp16_to_f32(q8.d);
    assert_float_equal(d, 8.0f / 127.0f, 1e-5);
    for (int j = 0; j < 32; j++)
        assert_true(fabsf((float)q8.qs[j] - x[j] * 127.0f / 8.0f) <= 0.5001f);
    assert_int_equal(nm_quantize_row(NM_TYPE_Q8_0, x, &q8, 31), -1);
}

static void test_quant_error_bounds(void **state) {
    (void)state;
    enum { N = 32 * 64 };
    static float x[N], y[N];
    static nm_block_q8_0 q8[N / 32];
    static nm_block_q4_0 q4[N / 32];
    for (int rep = 0; rep < 20; rep++) {
        for (int i = 0; i < N; i++)
            x[i] = rng_value();
        assert_int_equal(nm_quantize_row(NM_TYPE_Q8_0, x, q8, N), 0);
        assert_int_equal(nm_dequantize_row(NM_TYPE_Q8_0, q8, y, N), 0);
        for (int b = 0; b < N / 32; b++) {
            float amax = 0;
            for (int j = 0; j < 32; j++)
                amax = fmaxf(amax, fabsf(x[b * 32 + j]));
            /* half a step, plus the F16 rounding of d times |q| <= 127 */
            float bound = amax / 127.0f * (0.5f + 127.0f * 0x1p-11f) + 1e-30f;
            for (int j = 0; j < 32; j++)
                if (fabsf(x[b * 32 + j] - y[b * 32 + j]) > bound)
                    fail_msg("Q8_0 block %d elem %d: %g vs %g", b, j, x[b * 32 + j], y[b * 32 + j]);
        }
        assert_int_equal(nm_quantize_row(NM_TYPE_Q4_0, x, q4, N), 0);
        assert_int_equal(nm_dequantize_row(NM_TYPE_Q4_0, q4, y, N), 0);
        for (int b = 0; b < N / 32; b++) {
            float amax = 0;
            for (int j = 0; j < 32; j++)
                amax = fmaxf(amax, fabsf(x[b * 32 + j]));
            /* a step is amax/8; the value opposite the extreme clamps at
             * q = 15, a whole step off; plus F16 rounding of d */
            float bound = amax / 8.0f * (1.0f + 8.0f * 0x1p-10f) + 1e-30f;
            for (int j = 0; j < 32; j++)
                if (fabsf(x[b * 32 + j] - y[b * 32 + j]) > bound)
                    fail_msg("Q4_0 block %d elem %d: %g vs %g", b, j, x[b * 32 + j], y[b * 32 + j]);
        }
    }
}

static void test_act_quant_round_trip(void **state) {
    (void)state;
    enum { N = 32 * 13 };
    float x[N];
    _Alignas(64) uint8_t buf[N * 2];
    assert_true(nm_act_buffer_bytes(NM_TYPE_Q8_0, N, 1) <= sizeof buf);
    assert_int_equal(nm_act_buffer_bytes(NM_TYPE_F32, N, 3), 0);
    assert_true(nm_act_buffer_bytes(NM_TYPE_F16, N, 3) >= 3 * N * 2);
    for (int rep = 0; rep < 50; rep++) {
        for (int i = 0; i < N; i++)
            x[i] = rng_value();
        if (rep == 0)
            memset(x, 0, 32 * sizeof(float)); /* all-zero block */
        if (rep == 1)
            for (int j = 32; j < 64; j++) /* subnormal block: 127/amax is inf */
                x[j] = (float)(j - 48) * 1e-40f;
        nm_act act;
        nm_act_prepare(NM_TYPE_Q4_0, x, N, 1, buf, &act);
        assert_ptr_equal(act.q, buf);
        const int8_t *qs = nm_actq_qs(buf);
        const float *d = nm_actq_d(buf, N), *m = nm_actq_m(buf, N);
        for (int b = 0; b < N / 32; b++) {
            float amax = 0;
            int sum = 0;
            for (int j = 0; j < 32; j++)
                amax = fmaxf(amax, fabsf(x[b * 32 + j]));
            if (!(127.0f / amax <= FLT_MAX)) { /* zero, or too small to scale */
                assert_true(d[b] == 0.0f);
                assert_int_equal(nm_actq_s(buf, N)[b], 0);
                for (int j = 0; j < 32; j++)
                    assert_int_equal(qs[b * 32 + j], 0);
                continue;
            }
            assert_float_equal(d[b], amax / 127.0f, amax * 1e-6f);
            for (int j = 0; j < 32; j++) {
                float back = (float)qs[b * 32 + j] * d[b];
                assert_true(fabsf(back - x[b * 32 + j]) <= d[b] * 0.5001f);
                assert_true(qs[b * 32 + j] >= -127);
                sum += qs[b * 32 + j];
            }
            assert_float_equal(m[b], 8.0f * d[b] * (float)sum, fabsf(m[b]) * 1e-6f);
            assert_int_equal(nm_actq_s(buf, N)[b], sum);
        }
    }
}

/* A Q8 batch (Q8_0 weights, several tokens): each token's row as one
 * token's, and its qs and scales in its group's lines where the AMX Q8_0
 * tile reads them (kernel_set.h, nm_actq_lines): two groups, the second
 * partial; rows of 3 (a half line) and 40 blocks (three scale lines). */
static void test_act_q8_batch_lines(void **state) {
    (void)state;
    enum { T = 19 };
    static const int64_t ns[] = {96, 1280};
    for (int k = 0; k < 2; k++) {
        const int64_t n = ns[k];
        float *x = malloc((size_t)(n * T) * sizeof *x);
        size_t bytes = nm_act_buffer_bytes(NM_TYPE_Q8_0, n, T);
        const size_t rb = (size_t)nm_actq_batch_row_bytes(n);
        assert_int_equal(bytes, 32 * rb); /* two whole groups of rows */
        char *buf = aligned_alloc(64, bytes), *one = aligned_alloc(64, nm_actq_row_bytes(n));
        assert_true(x && buf && one);
        for (int64_t i = 0; i < n * T; i++)
            x[i] = rng_value();
        nm_act act;
        nm_act_prepare(NM_TYPE_Q8_0, x, n, T, buf, &act);
        assert_int_equal(act.q_row_bytes, rb);
        for (int t = 0; t < T; t++) {
            const char *row = buf + (size_t)t * rb, *group = buf + (size_t)(t / 16) * 16 * rb;
            nm_act_quantize_q8(x + t * n, n, one);
            assert_memory_equal(row, one, (size_t)(n + n / 32 * 12)); /* qs, d, m, s */
            const size_t col = 4 * (size_t)(t % 16);
            for (int64_t w = 0; w < n / 4; w++)
                assert_memory_equal(group + (size_t)(w % 16) * rb + nm_actq_vnni_off(n) +
                                        (size_t)(w / 16) * 64 + col,
                                    nm_actq_qs(row) + 4 * w, 4);
            for (int64_t b = 0; b < n / 32; b++)
                assert_memory_equal(group + (size_t)(b % 16) * rb + nm_actq_dline_off(n) +
                                        (size_t)(b / 16) * 64 + col,
                                    nm_actq_d(row, n) + b, 4);
        }
        free(x);
        free(buf);
        free(one);
    }
}

/* Every set's Q8_K activation quantizer gives the scalar one's bytes:
 * random blocks of mixed magnitude, an all-zero block, one too small to
 * scale, and blocks with an inf or a NaN. */
static void test_act_q8k_sets(void **state) {
    (void)state;
    enum { N = 256 * 6 };
    static float x[N];
    _Alignas(64) static uint8_t want[8192], got[8192];
    const nm_kernel_set *sets[KT_MAX_SETS];
    int ns = supported_sets(sets);
    size_t rb = (size_t)nm_actk_row_bytes(N);
    assert_true(rb <= sizeof want);
    for (int rep = 0; rep < 20; rep++) {
        for (int i = 0; i < N; i++)
            x[i] = rng_value() * (rep % 3 ? 1.0f : 1000.0f);
        memset(x + 256, 0, 256 * sizeof *x);
        for (int j = 512; j < 768; j++)
            x[j] = (float)(j - 640) * 1e-40f;
        x[768 + rep % 256] = rep & 1 ? NAN : -INFINITY;
        x[1024 + (rep * 7) % 256] = 127.5f; /* a tie of the rounding after scaling */
        memset(want, 0xab, rb);
        nm_act_quantize_q8k(x, N, want);
        for (int s = 0; s < ns; s++) {
            memset(got, 0xab, rb);
            sets[s]->act_quantize_q8k(x, N, got);
            for (size_t i = 0; i < rb - (rb - (size_t)N - N / 256 * 4 - N / 16 * 2); i++)
                if (want[i] != got[i] && !(i >= N && i < (size_t)N + N / 256 * 4 &&
                                           isnan(nm_actk_d(want, N)[(i - N) / 4]) &&
                                           isnan(nm_actk_d(got, N)[(i - N) / 4])))
                    fail_msg("%s: byte %zu of the Q8_K row: 0x%02x, scalar 0x%02x", sets[s]->name,
                             i, got[i], want[i]);
        }
    }
}

/* Every set's Q8 activation quantizer (Q8_0 / Q4_0 weights) gives the
 * scalar one's bytes, on the same kinds of blocks; a NaN scale or m
 * counts as equal to any other NaN. */
static void test_act_q8_sets(void **state) {
    (void)state;
    enum { N = 32 * 48 };
    static float x[N];
    _Alignas(64) static uint8_t want[8192], got[8192];
    const nm_kernel_set *sets[KT_MAX_SETS];
    int ns = supported_sets(sets);
    size_t rb = (size_t)nm_actq_row_bytes(N);
    assert_true(rb <= sizeof want);
    for (int rep = 0; rep < 20; rep++) {
        for (int i = 0; i < N; i++)
            x[i] = rng_value() * (rep % 3 ? 1.0f : 1000.0f);
        memset(x + 256, 0, 32 * sizeof *x);
        for (int j = 512; j < 544; j++)
            x[j] = (float)(j - 528) * 1e-40f;
        x[768 + rep % 64] = rep & 1 ? NAN : -INFINITY;
        x[1024 + (rep * 7) % 32] = 127.5f; /* a tie of the rounding after scaling */
        memset(want, 0xab, rb);
        nm_act_quantize_q8(x, N, want);
        for (int s = 0; s < ns; s++) {
            memset(got, 0xab, rb);
            sets[s]->act_quantize_q8(x, N, got);
            for (size_t i = 0; i < rb; i++) {
                bool scale = i >= N && i < (size_t)N + N / 32 * 8; /* d, then m */
                size_t k = (i - N) / 4;
                const float *fw = nm_actq_d(want, N), *fg = nm_actq_d(got, N);
                if (want[i] != got[i] && !(scale && isnan(fw[k]) && isnan(fg[k])))
                    fail_msg("%s: byte %zu of the Q8 row: 0x%02x, scalar 0x%02x", sets[s]->name, i,
                             got[i], want[i]);
            }
        }
    }
}

/* An inf or NaN activation makes the dots with its block NaN, at every
 * level, instead of a plausible number: in a full 4-block step of the Q4_0
 * kernels or in the tail, and on the 4-row decode path. */
static void test_act_nonfinite(void **state) {
    (void)state;
    enum { N = 160, ROWS = 5 };
    static float x[N], w[N * ROWS];
    static uint8_t wq[ROWS * (N / 32) * sizeof(nm_block_q8_0)];
    _Alignas(64) static uint8_t buf[1024];
    const uint32_t types[] = {NM_TYPE_Q8_0, NM_TYPE_Q4_0};
    const nm_kernel_set *sets[KT_MAX_SETS];
    int ns = supported_sets(sets);
    for (int i = 0; i < N * ROWS; i++)
        w[i] = 0.5f;
    for (int ti = 0; ti < 2; ti++) {
        assert_int_equal(nm_quantize_row(types[ti], w, wq, N * ROWS), 0);
        assert_true(nm_act_buffer_bytes(types[ti], N, 1) <= sizeof buf);
        for (int k = 0; k < 4; k++) {
            int at = k < 2 ? 40 : 140; /* first step, or the tail block */
            for (int i = 0; i < N; i++)
                x[i] = 0.5f;
            x[at] = k & 1 ? NAN : INFINITY;
            nm_act act;
            nm_act_prepare(types[ti], x, N, 1, buf, &act);
            for (int s = 0; s < ns; s++) {
                float y[ROWS] = {0};
                nm_matvec_set(sets[s], wq, ROWS, &act, y);
                for (int r = 0; r < ROWS; r++)
                    if (!isnan(y[r]))
                        fail_msg("%s %s row %d: %g with a %s activation at "
                                 "%d",
                                 sets[s]->name, nm_type_name(types[ti]), r, y[r],
                                 k & 1 ? "NaN" : "inf", at);
            }
        }
    }
}

int main(void) {
    kernel_test_init("test_quant_formats");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fp16_known_bits),    cmocka_unit_test(test_fp16_matches_f16c),
        cmocka_unit_test(test_bf16_known_bits),    cmocka_unit_test(test_block_layouts),
        cmocka_unit_test(test_quant_error_bounds), cmocka_unit_test(test_act_quant_round_trip),
        cmocka_unit_test(test_act_nonfinite),      cmocka_unit_test(test_act_q8k_sets),
        cmocka_unit_test(test_act_q8_sets),        cmocka_unit_test(test_act_q8_batch_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
