/* Q4_1, Q5_0, Q5_1, IQ4_NL, IQ4_XS: block layouts byte by byte (blocks
 * built by hand decode to the values the format defines) and quantizers
 * never worse than the plain scale choice they start from. Those five and
 * the K-quants (Q2_K .. Q6_K, whose layouts test_mkmodel.sh checks against
 * llama.cpp): relative RMS error on normal data within the figures stated
 * below, no crash on inf/NaN/zero input, the same bytes for the same input.
 *
 * Random data comes from a seed printed at start: NUMALM_TEST_SEED=N repeats
 * a run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "gguf/ggml_types.h"
#include "gguf/quant.h"
#include "gguf/quant_legacy.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t rng_state;

static uint64_t rng_next(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rng_uniform(void) { /* (0, 1) */
    return ((double)(rng_next() >> 11) + 0.5) * 0x1p-53;
}

static float rng_normal(void) {
    return (float)(sqrt(-2.0 * log(rng_uniform())) * cos(6.283185307179586 * rng_uniform()));
}

/* the legacy types first (the layout tests take the first five) */
static const uint32_t TYPES[] = {NM_TYPE_Q4_1,   NM_TYPE_Q5_0, NM_TYPE_Q5_1, NM_TYPE_IQ4_NL,
                                 NM_TYPE_IQ4_XS, NM_TYPE_Q2_K, NM_TYPE_Q3_K, NM_TYPE_Q4_K,
                                 NM_TYPE_Q5_K,   NM_TYPE_Q6_K};
enum { N_TYPES = sizeof TYPES / sizeof TYPES[0] };

/* ---- layouts ------------------------------------------------------------ */

static void test_layout_offsets(void **state) {
    (void)state;
    assert_int_equal(offsetof(nm_block_q4_1, m), 2);
    assert_int_equal(offsetof(nm_block_q4_1, qs), 4);
    assert_int_equal(offsetof(nm_block_q5_0, qh), 2);
    assert_int_equal(offsetof(nm_block_q5_0, qs), 6);
    assert_int_equal(offsetof(nm_block_q5_1, qh), 4);
    assert_int_equal(offsetof(nm_block_q5_1, qs), 8);
    assert_int_equal(offsetof(nm_block_iq4_nl, qs), 2);
    assert_int_equal(offsetof(nm_block_iq4_xs, scales_h), 2);
    assert_int_equal(offsetof(nm_block_iq4_xs, scales_l), 4);
    assert_int_equal(offsetof(nm_block_iq4_xs, qs), 8);
    /* the type table agrees with the structs */
    const size_t sizes[] = {sizeof(nm_block_q4_1), sizeof(nm_block_q5_0), sizeof(nm_block_q5_1),
                            sizeof(nm_block_iq4_nl), sizeof(nm_block_iq4_xs)};
    for (int i = 0; i < 5; i++) {
        const nm_type_info *t = nm_type_get(TYPES[i]);
        assert_int_equal(t->type_size, sizes[i]);
        assert_int_equal(t->block_size, TYPES[i] == NM_TYPE_IQ4_XS ? 256 : 32);
        assert_non_null(t->quantize);
        assert_non_null(t->dequantize);
    }
}

/* Raw bytes, little-endian, as a file holds them. */
static void put16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void test_layout_decode(void **state) {
    (void)state;
    uint8_t raw[136];
    float y[256];
    /* Q4_1: d = 0.5, m = -3; byte j = code j (low) | code 15 - j (high) */
    memset(raw, 0, sizeof raw);
    put16(raw, nm_f32_to_fp16(0.5f));
    put16(raw + 2, nm_f32_to_fp16(-3.0f));
    for (int j = 0; j < 16; j++)
        raw[4 + j] = (uint8_t)(j | (15 - j) << 4);
    assert_int_equal(nm_dequantize_row(NM_TYPE_Q4_1, raw, y, 32), 0);
    for (int j = 0; j < 16; j++) {
        assert_true(y[j] == 0.5f * (float)j - 3.0f);
        assert_true(y[j + 16] == 0.5f * (float)(15 - j) - 3.0f);
    }
    /* Q5_0: d = 2, qh bit j set for odd j; x = (q - 16) d */
    memset(raw, 0, sizeof raw);
    put16(raw, nm_f32_to_fp16(2.0f));
    raw[2] = raw[3] = raw[4] = raw[5] = 0xaa;
    for (int j = 0; j < 16; j++)
        raw[6 + j] = (uint8_t)((j & 15) | ((j + 3) & 15) << 4);
    assert_int_equal(nm_dequantize_row(NM_TYPE_Q5_0, raw, y, 32), 0);
    for (int j = 0; j < 32; j++) {
        int q = (j < 16 ? j : (j - 16 + 3) & 15) | (j & 1) << 4;
        assert_true(y[j] == 2.0f * (float)(q - 16));
    }
    /* Q5_1: d = 0.25, m = 1; qh = bits 16..31 set (the high-nibble half) */
    memset(raw, 0, sizeof raw);
    put16(raw, nm_f32_to_fp16(0.25f));
    put16(raw + 2, nm_f32_to_fp16(1.0f));
    raw[6] = raw[7] = 0xff;
    for (int j = 0; j < 16; j++)
        raw[8 + j] = (uint8_t)(j << 4 | (15 - j));
    assert_int_equal(nm_dequantize_row(NM_TYPE_Q5_1, raw, y, 32), 0);
    for (int j = 0; j < 16; j++) {
        assert_true(y[j] == 0.25f * (float)(15 - j) + 1.0f);
        assert_true(y[j + 16] == 0.25f * (float)(j + 16) + 1.0f);
    }
    /* IQ4_NL: d = 1; element j and j + 16 of byte j are codes j, 15 - j */
    memset(raw, 0, sizeof raw);
    put16(raw, nm_f32_to_fp16(1.0f));
    for (int j = 0; j < 16; j++)
        raw[2 + j] = (uint8_t)(j | (15 - j) << 4);
    assert_int_equal(nm_dequantize_row(NM_TYPE_IQ4_NL, raw, y, 32), 0);
    static const int values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                   1,    13,   25,  38,  53,  69,  89,  113};
    for (int j = 0; j < 16; j++) {
        assert_true(y[j] == (float)values[j]);
        assert_true(y[j + 16] == (float)values[15 - j]);
    }
    /* IQ4_XS: sub-block j gets ls = 5 j + 1 (6 bits: low 4 in scales_l,
     * high 2 in scales_h); every code 9 (value 13); d = 0.5 */
    memset(raw, 0, sizeof raw);
    put16(raw, nm_f32_to_fp16(0.5f));
    uint16_t sh = 0;
    for (int j = 0; j < 8; j++) {
        int ls = 5 * j + 1 + (j == 7 ? 27 : 0); /* 63 for the last one */
        raw[4 + j / 2] |= (uint8_t)((ls & 15) << 4 * (j % 2));
        sh |= (uint16_t)((ls >> 4) << 2 * j);
    }
    put16(raw + 2, sh);
    memset(raw + 8, 0x99, 128);
    assert_int_equal(nm_dequantize_row(NM_TYPE_IQ4_XS, raw, y, 256), 0);
    for (int j = 0; j < 8; j++) {
        int ls = 5 * j + 1 + (j == 7 ? 27 : 0);
        assert_int_equal(nm_iq4xs_scale((const nm_block_iq4_xs *)raw, j), ls - 32);
        for (int k = 0; k < 32; k++)
            assert_true(y[32 * j + k] == 0.5f * (float)(ls - 32) * 13.0f);
    }
    /* rows that are not whole blocks are refused */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(nm_dequantize_row(TYPES[i], raw, y, 16), -1);
        assert_int_equal(nm_quantize_row(TYPES[i], y, raw, 48), -1);
    }
}

/* ---- quantizers ----------------------------------------------------------- */

static double sq_err(const float *x, const float *y, int n) {
    double e = 0;
    for (int j = 0; j < n; j++)
        e += ((double)x[j] - y[j]) * ((double)x[j] - y[j]);
    return e;
}

/* Squared error of one block under the plain choice each quantizer starts
 * from: Q4_1/Q5_1 d = (max - min) / nmax, m = min; Q5_0 d = max / -16;
 * IQ4_NL d = max / -127 (max: the signed value of largest magnitude), all
 * rounded to F16 and each value given its nearest code. */
static double plain_err(uint32_t type, const float *x) {
    float min = x[0], max = x[0], amax = 0, smax = 0;
    for (int j = 0; j < 32; j++) {
        min = fminf(min, x[j]);
        max = fmaxf(max, x[j]);
        if (fabsf(x[j]) > amax)
            amax = fabsf(x[j]), smax = x[j];
    }
    double e = 0;
    if (type == NM_TYPE_Q4_1 || type == NM_TYPE_Q5_1) {
        int nmax = type == NM_TYPE_Q4_1 ? 15 : 31;
        float d = nm_fp16_to_f32(nm_f32_to_fp16((max - min) / (float)nmax));
        float m = nm_fp16_to_f32(nm_f32_to_fp16(min));
        for (int j = 0; j < 32; j++) {
            float q = d > 0 ? roundf((x[j] - m) / d) : 0;
            q = fminf(fmaxf(q, 0), (float)nmax);
            e += pow(x[j] - (q * d + m), 2);
        }
    } else if (type == NM_TYPE_Q5_0) {
        float d = nm_fp16_to_f32(nm_f32_to_fp16(smax / -16.0f));
        for (int j = 0; j < 32; j++) {
            float q = d != 0 ? fminf(fmaxf(roundf(x[j] / d), -16), 15) : 0;
            e += pow(x[j] - q * d, 2);
        }
    } else {
        float d = nm_fp16_to_f32(nm_f32_to_fp16(smax / -127.0f));
        for (int j = 0; j < 32; j++) {
            double best = INFINITY;
            for (int k = 0; k < 16; k++)
                best = fmin(best, pow(x[j] - d * (float)nm_iq4nl_values[k], 2));
            e += best;
        }
    }
    return e;
}

/* Per block never worse than the plain choice (a little slack for IQ4_NL,
 * whose candidates are scored before the final F16 rounding of the scale). */
static void test_not_worse_than_plain(void **state) {
    (void)state;
    enum { N = 32 * 512 };
    static float x[N], y[N];
    static uint8_t q[N];
    const uint32_t types[] = {NM_TYPE_Q4_1, NM_TYPE_Q5_0, NM_TYPE_Q5_1, NM_TYPE_IQ4_NL};
    for (int rep = 0; rep < 4; rep++) {
        for (int i = 0; i < N; i++) /* mixed scales and offsets per block */
            x[i] = rng_normal() * (float)(1 + (i / 32) % 5) + (rep & 1 ? 0.3f * (float)(i % 7) : 0);
        for (int ti = 0; ti < 4; ti++) {
            assert_int_equal(nm_quantize_row(types[ti], x, q, N), 0);
            assert_int_equal(nm_dequantize_row(types[ti], q, y, N), 0);
            for (int b = 0; b < N / 32; b++) {
                double got = sq_err(x + 32 * b, y + 32 * b, 32);
                double plain = plain_err(types[ti], x + 32 * b);
                double slack = types[ti] == NM_TYPE_IQ4_NL ? 1.01 : 1.0 + 1e-6;
                if (got > plain * slack + 1e-12)
                    fail_msg("%s block %d: squared error %.6g > plain %.6g",
                             nm_type_name(types[ti]), b, got, plain);
            }
        }
    }
}

/* Relative RMS error on N(0, 1) data. With 2^20 values numalm's
 * quantizers gave 0.0728 (Q4_1), 0.0409 (Q5_0), 0.0354 (Q5_1), 0.0746
 * (IQ4_NL), 0.0748 (IQ4_XS); llama.cpp's (ggml_quantize_chunk, rows of 4096,
 * no importance matrix) 0.0782, 0.0427, 0.0378, 0.0761, 0.0767. The
 * K-quants (2^16 values, three seeds): 0.271-0.274 (Q2_K), 0.144 (Q3_K),
 * 0.0723-0.0726 (Q4_K), 0.0363 (Q5_K), 0.0173 (Q6_K). The bounds leave 5%
 * for the smaller sample here. */
static void test_rms_error(void **state) {
    (void)state;
    enum { N = 256 * 256 };
    static float x[N], y[N];
    static uint8_t q[N];
    const double bound[N_TYPES] = {0.077, 0.043, 0.037, 0.079, 0.079,
                                   0.287, 0.152, 0.076, 0.038, 0.0182};
    for (int i = 0; i < N; i++)
        x[i] = rng_normal();
    double sx = 0;
    for (int i = 0; i < N; i++)
        sx += (double)x[i] * x[i];
    for (int ti = 0; ti < N_TYPES; ti++) {
        assert_int_equal(nm_quantize_row(TYPES[ti], x, q, N), 0);
        assert_int_equal(nm_dequantize_row(TYPES[ti], q, y, N), 0);
        double rel = sqrt(sq_err(x, y, N) / sx);
        print_message("%-6s relative RMS error %.4f (bound %.3f)\n", nm_type_name(TYPES[ti]), rel,
                      bound[ti]);
        if (!(rel <= bound[ti]))
            fail_msg("%s: relative RMS error %.4f > %.3f", nm_type_name(TYPES[ti]), rel, bound[ti]);
    }
}

/* Constant, zero and tiny blocks come back exactly or as zero; inf and NaN
 * give some block without a crash (UBSan checks the float-to-int steps). */
static void test_special_blocks(void **state) {
    (void)state;
    float x[256], y[256];
    uint8_t q[256];
    for (int ti = 0; ti < N_TYPES; ti++) {
        uint32_t t = TYPES[ti];
        memset(x, 0, sizeof x);
        assert_int_equal(nm_quantize_row(t, x, q, 256), 0);
        assert_int_equal(nm_dequantize_row(t, q, y, 256), 0);
        for (int j = 0; j < 256; j++)
            assert_true(y[j] == 0.0f);
        for (int j = 0; j < 256; j++)
            x[j] = 1e-30f * (float)(j % 3);
        assert_int_equal(nm_quantize_row(t, x, q, 256), 0);
        assert_int_equal(nm_dequantize_row(t, q, y, 256), 0);
        for (int j = 0; j < 256; j++)
            assert_true(fabsf(y[j] - x[j]) <= 2e-30f);
        for (int j = 0; j < 256; j++)
            x[j] = 0.75f; /* a constant block: minimum types keep it exactly */
        assert_int_equal(nm_quantize_row(t, x, q, 256), 0);
        assert_int_equal(nm_dequantize_row(t, q, y, 256), 0);
        for (int j = 0; j < 256; j++)
            assert_true(fabsf(y[j] - 0.75f) <= 0.75f * 0.02f);
        for (int k = 0; k < 3; k++) {
            for (int j = 0; j < 256; j++)
                x[j] = (float)(j % 11) - 5.0f;
            x[37] = k == 0 ? INFINITY : k == 1 ? -INFINITY : NAN;
            assert_int_equal(nm_quantize_row(t, x, q, 256), 0);
            assert_int_equal(nm_dequantize_row(t, q, y, 256), 0);
        }
    }
}

/* The same input gives the same bytes (mkmodel files are reproducible). */
static void test_deterministic(void **state) {
    (void)state;
    enum { N = 512 };
    float x[N];
    uint8_t a[N], b[N];
    for (int i = 0; i < N; i++)
        x[i] = rng_normal();
    for (int ti = 0; ti < N_TYPES; ti++) {
        uint64_t rb = 0;
        assert_int_equal(nm_type_row_bytes(TYPES[ti], N, &rb), 0);
        memset(a, 1, sizeof a);
        memset(b, 2, sizeof b);
        assert_int_equal(nm_quantize_row(TYPES[ti], x, a, N), 0);
        assert_int_equal(nm_quantize_row(TYPES[ti], x, b, N), 0);
        assert_memory_equal(a, b, rb);
    }
}

int main(void) {
    const char *s = getenv("NUMALM_TEST_SEED");
    uint64_t seed = s ? strtoull(s, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    rng_state = seed;
    printf("test_quant: seed %llu (NUMALM_TEST_SEED repeats it)\n", (unsigned long long)seed);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_offsets),       cmocka_unit_test(test_layout_decode),
        cmocka_unit_test(test_not_worse_than_plain), cmocka_unit_test(test_rms_error),
        cmocka_unit_test(test_special_blocks),       cmocka_unit_test(test_deterministic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
