/* The scalar reference kernel set and the prepared Q8 activation format.
 *
 * The scalar kernels are the definition of what every SIMD kernel computes:
 * tests compare each SIMD level with them. They sum in the plain order, one
 * F32 accumulator, and the quantized ones sum each block's integer products
 * exactly before scaling, as the SIMD code does. ISA files may fall back to
 * these for the types they do not accelerate (nm_kernels_scalar()). */
#include "kernel_set.h"

#include "common/util.h"
#include "gguf/quant.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>
/* Rounds to nearest even for |v| < 2^22 without a libm call: adding 1.5 *
 * 2^23 leaves no fraction bits. (nearbyintf is a call on baseline x86-64, and
 * this runs for every activation of every prompt token.) */
static inline int round_small(float v) {
    return (int)((v + 0x1.8p23f) - 0x1.8p23f);
}

void nm_act_quantize_q8(const float *x, int64_t n, void *row) {
    int8_t *qs = (int8_t *)row;
    float *d = (float *)((char *)row + n);
    float *m = d + n / 32;
    for (int64_t b = 0; b < n / 32; b++) {
        const float *xb = x + b * 32;
        float amax = 0.0f;
        bool finite = true;
        for (int j = 0; j < 32; j++) {
            float a = fabsf(xb[j]);
            finite &= a <= FLT_MAX; /* false for inf and NaN */
            amax = a > amax ? a : amax;
        }
        if (!finite) {
            /* a NaN scale makes every dot with this block NaN: the broken
             * activation shows instead of turning into plausible numbers */
            memset(qs + b * 32, 0, 32);
            d[b] = m[b] = NAN;
            continue;
        }
        float db = amax / 127.0f;
        /* below ~4e-37 the inverse overflows: such a block counts as zero */
        float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        if (id > FLT_MAX)
            db = id = 0.0f;
        int sum = 0;
        for (int j = 0; j < 32; j++) {
            int q = round_small(xb[j] * id);
            q = q > 127 ? 127 : q < -127 ? -127 : q;
            qs[b * 32 + j] = (int8_t)q;
            sum += q;
        }
        d[b] = db;
        m[b] = 8.0f * db * (float)sum;
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

static const nm_kernel_set scalar_set = {
    .name = "scalar",
    .tok_group = NM_K_MAX_TOK,
    .rowdot = {sc_rowdot_f32, sc_rowdot_f16, sc_rowdot_bf16, sc_rowdot_q8_0, sc_rowdot_q4_0,
               sc_rowdot_f16_wide},
    .dot_f32 = sc_dot_f32,
    .dot_f16_f32 = sc_dot_f16_f32,
    .axpy_f32 = sc_axpy_f32,
    .axpy_f16 = sc_axpy_f16,
    .round_f16 = sc_round_f16,
    .sum_words = nm_sum_words,
};

const nm_kernel_set *nm_kernels_scalar(void) {
    return &scalar_set;
}
