/* The scalar reference kernel set and the prepared Q8 activation format
 * (the float and Q8_0 / Q4_0 kernels; the K-quants are in
 * kernels_scalar_kquant.c, the other legacy types in kernels_scalar_legacy.c).
 *
 * The scalar kernels are the definition of what every SIMD kernel computes:
 * tests compare each SIMD level with them. They sum in the plain order, one
 * F32 accumulator, and the quantized ones sum each block's integer products
 * exactly before scaling. The K-quant kernels go further: each super-block's
 * integer sums are exact and the float steps are written out one by one, so
 * every SIMD level gives the scalar result bit for bit. ISA sets start as a
 * copy of this one, so a type an ISA file does not accelerate runs these.
 *
 * Adding a weight type (see also docs/kernels.md):
 *  1. gguf/ggml_types.c: its entry in the type table, with the activation
 *     format its kernels take (an existing one: F32, F16, BF16, Q8 per 32,
 *     Q8_K per 256) and its converters;
 *  2. gguf/quant_FAMILY.c (+ .h): the block layout (a _Static_assert on its
 *     size), nm_quantize_TYPE and nm_dequantize_TYPE;
 *  3. runtime/kernels_scalar_FAMILY.c: the reference rowdot, set in the
 *     family's nm_kernels_scalar_FAMILY();
 *  4. runtime/kernels_avx2_FAMILY.c, kernels_avx512_FAMILY.c: the SIMD
 *     kernels (rowdot, and rows4 / tile where they pay), set in the family's
 *     functions; tests/test_kernels.c then checks them against the scalar
 *     kernel for every type the type table says it computes.
 * kernels.c (dispatch, activation preparation) needs no edit unless the
 * type needs a new activation format. */
#include "kernel_set.h"
#include "device_math.h"

#include "common/util.h"
#include "gguf/quant.h"

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

/* Quantizes len values to int8 at qs with the scale amax/127, which it
 * returns, and sums the int8 values of each group of `group` into sums. An inf or NaN value gives a
 * NaN scale and zero values: a NaN scale makes every dot with the block NaN, so the broken
 * activation shows instead of turning into plausible numbers. Below ~4e-37 the inverse scale
 * overflows: such a block counts as zero. */
static float act_quantize_block(const float *x, int len, int8_t *qs, int group, int *sums) {
    float amax = 0.0f;
    bool finite = true;
    for (int j = 0; j < len; j++) {
        float a = fabsf(x[j]);
        finite &= a <= FLT_MAX; /* false for inf and NaN */
        amax = a > amax ? a : amax;
    }
    if (!finite) {
        memset(qs, 0, (size_t)len);
        memset(sums, 0, (size_t)(len / group) * sizeof *sums);
        return NAN;
    }
    float d = amax / 127.0f;
    float id = amax > 0.0f ? 127.0f / amax : 0.0f;
    if (id > FLT_MAX)
        d = id = 0.0f;
    for (int g = 0; g < len / group; g++) {
        int sum = 0;
        for (int j = g * group; j < (g + 1) * group; j++) {
            int q = nm_round_small(x[j] * id);
            q = q > 127 ? 127 : q < -127 ? -127 : q;
            qs[j] = (int8_t)q;
            sum += q;
        }
        sums[g] = sum;
    }
    return d;
}

void nm_act_quantize_q8(const float *x, int64_t n, void *row) {
    int8_t *qs = (int8_t *)row;
    float *d = (float *)((char *)row + n);
    float *m = d + n / 32;
    int32_t *s = (int32_t *)(m + n / 32);
    for (int64_t b = 0; b < n / 32; b++) {
        int sum;
        d[b] = act_quantize_block(x + b * 32, 32, qs + b * 32, 32, &sum);
        m[b] = 8.0f * d[b] * (float)sum;
        s[b] = sum;
    }
}

void nm_act_quantize_q8k(const float *x, int64_t n, void *row) {
    int8_t *qs = (int8_t *)row;
    float *d = (float *)((char *)row + n);
    int16_t *bsums = (int16_t *)(d + n / 256);
    for (int64_t b = 0; b < n / 256; b++) {
        int sums[16];
        d[b] = act_quantize_block(x + b * 256, 256, qs + b * 256, 16, sums);
        for (int g = 0; g < 16; g++) /* |sum| <= 16 * 127 */
            bsums[b * 16 + g] = (int16_t)sums[g];
    }
}

/* ---- scalar reference -------------------------------------------------- */

static float sc_dot_f32(const float *a, const float *b, int64_t n) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static float sc_dot_f16_f32(const uint16_t *a, const float *b, int64_t n) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++)
        s += nm_fp16_to_f32(a[i]) * b[i];
    return s;
}

static float sc_dot_bf16(const uint16_t *a, const uint16_t *b, int64_t n) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++)
        s += nm_bf16_to_f32(a[i]) * nm_bf16_to_f32(b[i]);
    return s;
}

static void sc_axpy_f32(float *y, float a, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        y[i] += a * x[i];
}

static void sc_swiglu(float *h, const float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        h[i] = nm_dm_swiglu(g[i], u[i]);
}

static void sc_round_f16(const float *x, int64_t n, uint16_t *h, float *w) {
    for (int64_t i = 0; i < n; i++) {
        uint16_t v = nm_f32_to_fp16(x[i]);
        if (h)
            h[i] = v;
        else
            w[i] = nm_fp16_to_f32(v);
    }
}

static void sc_axpy_f16(float *y, float a, const uint16_t *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        y[i] += a * nm_fp16_to_f32(x[i]);
}

static void sc_rowdot_f32(const void *row, const void *const *acts, int nt, int64_t n, float *out) {
    for (int t = 0; t < nt; t++)
        out[t] = sc_dot_f32(row, acts[t], n);
}

static float sc_dot_f16(const uint16_t *a, const uint16_t *b, int64_t n) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++)
        s += nm_fp16_to_f32(a[i]) * nm_fp16_to_f32(b[i]);
    return s;
}

static void sc_rowdot_f16(const void *row, const void *const *acts, int nt, int64_t n, float *out) {
    for (int t = 0; t < nt; t++)
        out[t] = sc_dot_f16(row, acts[t], n);
}

static void sc_rowdot_f16_wide(const void *row, const void *const *acts, int nt, int64_t n,
                               float *out) {
    for (int t = 0; t < nt; t++)
        out[t] = sc_dot_f16_f32(row, acts[t], n);
}

static void sc_rowdot_bf16(const void *row, const void *const *acts, int nt, int64_t n,
                           float *out) {
    for (int t = 0; t < nt; t++)
        out[t] = sc_dot_bf16(row, acts[t], n);
}

static void sc_rowdot_q8_0(const void *row, const void *const *acts, int nt, int64_t n,
                           float *out) {
    const nm_block_q8_0 *w = row;
    for (int t = 0; t < nt; t++) {
        const int8_t *qa = nm_actq_qs(acts[t]);
        const float *da = nm_actq_d(acts[t], n);
        float s = 0.0f;
        for (int64_t b = 0; b < n / 32; b++) {
            int32_t isum = 0;
            for (int j = 0; j < 32; j++)
                isum += (int32_t)w[b].qs[j] * qa[b * 32 + j];
            s += nm_fp16_to_f32(w[b].d) * da[b] * (float)isum;
        }
        out[t] = s;
    }
}

static void sc_rowdot_q4_0(const void *row, const void *const *acts, int nt, int64_t n,
                           float *out) {
    const nm_block_q4_0 *w = row;
    for (int t = 0; t < nt; t++) {
        const int8_t *qa = nm_actq_qs(acts[t]);
        const float *da = nm_actq_d(acts[t], n);
        float s = 0.0f;
        for (int64_t b = 0; b < n / 32; b++) {
            const int8_t *a = qa + b * 32;
            int32_t isum = 0;
            for (int j = 0; j < 16; j++) {
                isum += ((w[b].qs[j] & 0x0f) - 8) * a[j];
                isum += ((w[b].qs[j] >> 4) - 8) * a[j + 16];
            }
            s += nm_fp16_to_f32(w[b].d) * da[b] * (float)isum;
        }
        out[t] = s;
    }
}

static nm_kernel_set scalar_set;

static void build_scalar_set(void) {
    nm_kernel_set *ks = &scalar_set;
    ks->name = "scalar";
    ks->tok_group = NM_K_MAX_TOK;
    ks->k[NM_TYPE_F32].rowdot = sc_rowdot_f32;
    ks->k[NM_TYPE_F16].rowdot = sc_rowdot_f16;
    ks->k[NM_TYPE_BF16].rowdot = sc_rowdot_bf16;
    ks->k[NM_TYPE_Q8_0].rowdot = sc_rowdot_q8_0;
    ks->k[NM_TYPE_Q4_0].rowdot = sc_rowdot_q4_0;
    ks->f16_wide.rowdot = sc_rowdot_f16_wide;
    ks->dot_f32 = sc_dot_f32;
    ks->dot_f16_f32 = sc_dot_f16_f32;
    ks->axpy_f32 = sc_axpy_f32;
    ks->axpy_f16 = sc_axpy_f16;
    ks->round_f16 = sc_round_f16;
    ks->swiglu = sc_swiglu;
    ks->sum_words = nm_sum_words;
    ks->act_quantize_q8k = nm_act_quantize_q8k;
    ks->act_quantize_q8 = nm_act_quantize_q8;
    nm_kernels_scalar_kquant(ks);
    nm_kernels_scalar_legacy(ks);
}

const nm_kernel_set *nm_kernels_scalar(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, build_scalar_set);
    return &scalar_set;
}
