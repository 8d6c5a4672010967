/* K-quant converters: dequantizers that follow the GGUF layouts value by
 * value, and numalm's own quantizers (see quant_kquant.h). */
#include "quant_kquant.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

/* ---- fitting helpers ----------------------------------------------------- */

/* round(v) clamped to [lo, hi]; NaN gives lo. The clamp first keeps |v| below
 * 2^22, where adding 1.5 * 2^23 rounds to nearest even without a libm call. */
static inline int round_clamp(float v, int lo, int hi) {
    if (!(v >= (float)lo))
        return lo;
    if (v > (float)hi)
        return hi;
    return (int)((v + 0x1.8p23f) - 0x1.8p23f);
}

/* Sum of squared errors of x against scale * q - min for q fitted to x. */
static float affine_assign(const float *x, int n, int nmax, float scale, float min, uint8_t *q) {
    float iscale = scale > 0 ? 1.0f / scale : 0.0f, err = 0;
    for (int i = 0; i < n; i++) {
        q[i] = (uint8_t)round_clamp((x[i] + min) * iscale, 0, nmax);
        float e = scale * q[i] - min - x[i];
        err += e * e;
    }
    return err;
}

/* Least-squares scale and min (min >= 0) for fixed q; false when q is
 * constant (no information on the scale). */
static bool affine_solve(const float *x, int n, const uint8_t *q, float *scale, float *min) {
    double sq = 0, sqq = 0, sx = 0, sqx = 0;
    for (int i = 0; i < n; i++) {
        sq += q[i];
        sqq += (double)q[i] * q[i];
        sx += x[i];
        sqx += q[i] * (double)x[i];
    }
    double det = sqq * n - sq * sq;
    if (det <= 0)
        return false;
    double s = (n * sqx - sq * sx) / det, m = (sq * sqx - sqq * sx) / det;
    if (m < 0) { /* the offset may only lower values: refit with min 0 */
        m = 0;
        s = sqx / sqq;
    }
    if (!(s > 0))
        return false;
    *scale = (float)s;
    *min = (float)m;
    return true;
}

/* Fits x (n values) as scale * q - min with q in 0..nmax, scale >= 0 and
 * min >= 0: four candidate scales around (max - min) / nmax, each assigned
 * and refitted by least squares once; the best fit wins. (Eight candidates
 * lowered the error on normal data by under 1 % at twice the time.) */
static void fit_affine(const float *x, int n, int nmax, float *scale, float *min) {
    float lo = 0, hi = x[0];
    for (int i = 0; i < n; i++) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
    }
    *scale = 0;
    *min = -lo;
    if (!(hi > lo))
        return;
    uint8_t q[32];
    float best = INFINITY;
    for (int k = 0; k < 4; k++) {
        float s = (hi - lo) / ((float)nmax + 0.5f * (float)(k - 1)), m = -lo;
        affine_assign(x, n, nmax, s, m, q);
        if (!affine_solve(x, n, q, &s, &m))
            continue;
        float err = affine_assign(x, n, nmax, s, m, q);
        if (err < best) {
            best = err;
            *scale = s;
            *min = m;
        }
    }
    if (best == INFINITY)
        *scale = (hi - lo) / (float)nmax;
}

/* Fits x as scale * q with q in -nneg..npos: the value of largest magnitude
 * maps near -nneg (the wider side), candidates around it refitted by least
 * squares; the scale may be negative. */
static float fit_symmetric(const float *x, int n, int nneg, int npos) {
    float amax = 0, xm = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            xm = x[i];
        }
    if (!(amax > 0))
        return 0;
    float best = INFINITY, best_scale = xm / (float)-nneg;
    for (int k = 0; k < 4; k++) {
        float s = xm / -((float)nneg + 0.5f * (float)(k - 2)), is = 1.0f / s;
        double sqx = 0, sqq = 0;
        for (int i = 0; i < n; i++) {
            int q = round_clamp(x[i] * is, -nneg, npos);
            sqx += q * (double)x[i];
            sqq += (double)q * q;
        }
        if (sqq <= 0)
            continue;
        s = (float)(sqx / sqq);
        is = 1.0f / s;
        float err = 0;
        for (int i = 0; i < n; i++) {
            float e = s * round_clamp(x[i] * is, -nneg, npos) - x[i];
            err += e * e;
        }
        if (err < best) {
            best = err;
            best_scale = s;
        }
    }
    return best_scale;
}

/* Quantizes the sub-block values v[0..count) >= 0 to 0..nmax against a
 * common F16 scale, which it returns as stored. */
static nm_fp16 quantize_scales(const float *v, int count, int nmax, uint8_t *out) {
    float vmax = 0;
    for (int j = 0; j < count; j++)
        vmax = v[j] > vmax ? v[j] : vmax;
    nm_fp16 d = nm_f32_to_fp16(vmax / (float)nmax);
    float dd = nm_fp16_to_f32(d);
    for (int j = 0; j < count; j++)
        out[j] = (uint8_t)(dd > 0 ? round_clamp(v[j] / dd, 0, nmax) : 0);
    return d;
}

/* ---- affine types: Q2_K, Q4_K, Q5_K ---------------------------------------- */

/* Fits one super-block of an affine type: sub-blocks of len values, values
 * 0..nmax, scales and mins 0..smax. Fills sc, m (count = 256 / len), the
 * block's d and dmin, and the values L. */
static void quantize_affine_block(const float *x, int len, int nmax, int smax, uint8_t *sc,
                                  uint8_t *m, nm_fp16 *d, nm_fp16 *dmin, uint8_t *L) {
    const int count = NM_QK_K / len;
    float scales[16], mins[16];
    for (int j = 0; j < count; j++)
        fit_affine(x + j * len, len, nmax, &scales[j], &mins[j]);
    *d = quantize_scales(scales, count, smax, sc);
    *dmin = quantize_scales(mins, count, smax, m);
    float fd = nm_fp16_to_f32(*d), fm = nm_fp16_to_f32(*dmin);
    for (int j = 0; j < count; j++)
        affine_assign(x + j * len, len, nmax, fd * sc[j], fm * m[j], L + j * len);
}

void nm_quantize_q2_k(const float *x, void *dst, int64_t n) {
    nm_block_q2_k *y = dst;
    for (int64_t b = 0; b < n / NM_QK_K; b++, x += NM_QK_K) {
        uint8_t sc[16], m[16], L[NM_QK_K];
        quantize_affine_block(x, 16, 3, 15, sc, m, &y[b].d, &y[b].dmin, L);
        for (int j = 0; j < 16; j++)
            y[b].scales[j] = (uint8_t)(sc[j] | m[j] << 4);
        memset(y[b].qs, 0, sizeof y[b].qs);
        for (int e = 0; e < NM_QK_K; e++)
            y[b].qs[e / 128 * 32 + e % 32] |= (uint8_t)(L[e] << (2 * (e % 128 / 32)));
    }
}

void nm_dequantize_q2_k(const void *src, float *y, int64_t n) {
    const nm_block_q2_k *x = src;
    for (int64_t b = 0; b < n / NM_QK_K; b++) {
        float d = nm_fp16_to_f32(x[b].d), dmin = nm_fp16_to_f32(x[b].dmin);
        for (int e = 0; e < NM_QK_K; e++) {
            uint8_t s = x[b].scales[e / 16];
            float dl = d * (float)(s & 15), ml = dmin * (float)(s >> 4);
            *y++ = dl * (float)nm_q2k_q(&x[b], e) - ml;
        }
    }
}

/* Packs the 6-bit scales and mins of Q4_K / Q5_K (nm_k4_scale_min). */
static void pack_k4_scales(const uint8_t *sc, const uint8_t *m, uint8_t *s) {
    for (int j = 0; j < 4; j++) {
        s[j] = (uint8_t)((sc[j] & 63) | (sc[j + 4] >> 4) << 6);
        s[j + 4] = (uint8_t)((m[j] & 63) | (m[j + 4] >> 4) << 6);
        s[j + 8] = (uint8_t)((sc[j + 4] & 15) | (m[j + 4] & 15) << 4);
    }
}

void nm_quantize_q4_k(const float *x, void *dst, int64_t n) {
    nm_block_q4_k *y = dst;
    for (int64_t b = 0; b < n / NM_QK_K; b++, x += NM_QK_K) {
        uint8_t sc[8], m[8], L[NM_QK_K];
        quantize_affine_block(x, 32, 15, 63, sc, m, &y[b].d, &y[b].dmin, L);
        pack_k4_scales(sc, m, y[b].scales);
        memset(y[b].qs, 0, sizeof y[b].qs);
        for (int e = 0; e < NM_QK_K; e++)
            y[b].qs[e / 64 * 32 + e % 32] |= (uint8_t)(L[e] << (4 * (e % 64 / 32)));
    }
}

/* Q4_K and Q5_K: value e is d * sc * q - dmin * m with q from get_q. */
#define DEQUANT_K4(NAME, BLOCK, GET_Q)                                                             \
    void NAME(const void *src, float *y, int64_t n) {                                              \
        const BLOCK *x = src;                                                                      \
        for (int64_t b = 0; b < n / NM_QK_K; b++) {                                                \
            float d = nm_fp16_to_f32(x[b].d), dmin = nm_fp16_to_f32(x[b].dmin);                    \
            for (int j = 0; j < 8; j++) {                                                          \
                int sc, m;                                                                         \
                nm_k4_scale_min(x[b].scales, j, &sc, &m);                                          \
                float d1 = d * (float)sc, m1 = dmin * (float)m;                                    \
                for (int e = 32 * j; e < 32 * j + 32; e++)                                         \
                    *y++ = d1 * (float)GET_Q - m1;                                                 \
            }                                                                                      \
        }                                                                                          \
    }

DEQUANT_K4(nm_dequantize_q4_k, nm_block_q4_k, nm_q4k_q(x[b].qs, e))
DEQUANT_K4(nm_dequantize_q5_k, nm_block_q5_k, nm_q5k_q(&x[b], e))

void nm_quantize_q5_k(const float *x, void *dst, int64_t n) {
    nm_block_q5_k *y = dst;
    for (int64_t b = 0; b < n / NM_QK_K; b++, x += NM_QK_K) {
        uint8_t sc[8], m[8], L[NM_QK_K];
        quantize_affine_block(x, 32, 31, 63, sc, m, &y[b].d, &y[b].dmin, L);
        pack_k4_scales(sc, m, y[b].scales);
        memset(y[b].qs, 0, sizeof y[b].qs);
        memset(y[b].qh, 0, sizeof y[b].qh);
        for (int e = 0; e < NM_QK_K; e++) {
            y[b].qs[e / 64 * 32 + e % 32] |= (uint8_t)((L[e] & 15) << (4 * (e % 64 / 32)));
            y[b].qh[e % 32] |= (uint8_t)((L[e] >> 4) << (e / 32));
        }
    }
}

/* ---- symmetric types: Q3_K, Q6_K ------------------------------------------- */

/* Fits one super-block of a symmetric type: 16 sub-blocks of 16 values in
 * -nneg..npos, their scales as signed integers in -sneg..spos against the
 * returned F16 d (the scale of largest magnitude maps to -sneg). */
static nm_fp16 quantize_symmetric_block(const float *x, int nneg, int npos, int sneg, int spos,
                                        int *sc, int8_t *L) {
    float scales[16], smax = 0, sm = 0;
    for (int j = 0; j < 16; j++) {
        scales[j] = fit_symmetric(x + 16 * j, 16, nneg, npos);
        if (fabsf(scales[j]) > smax) {
            smax = fabsf(scales[j]);
            sm = scales[j];
        }
    }
    nm_fp16 d = nm_f32_to_fp16(sm / (float)-sneg);
    float fd = nm_fp16_to_f32(d), id = fd != 0 ? 1.0f / fd : 0.0f;
    for (int j = 0; j < 16; j++) {
        sc[j] = round_clamp(scales[j] * id, -sneg, spos);
        float s = fd * (float)sc[j], is = s != 0 ? 1.0f / s : 0.0f;
        for (int i = 0; i < 16; i++)
            L[16 * j + i] = (int8_t)round_clamp(x[16 * j + i] * is, -nneg, npos);
    }
    return d;
}

void nm_quantize_q3_k(const float *x, void *dst, int64_t n) {
    nm_block_q3_k *y = dst;
    for (int64_t b = 0; b < n / NM_QK_K; b++, x += NM_QK_K) {
        int sc[16];
        int8_t L[NM_QK_K];
        y[b].d = quantize_symmetric_block(x, 4, 3, 32, 31, sc, L);
        memset(y[b].scales, 0, sizeof y[b].scales);
        for (int j = 0; j < 16; j++) {
            int v = sc[j] + 32;
            y[b].scales[j % 8] |= (uint8_t)((v & 15) << (j < 8 ? 0 : 4));
            y[b].scales[8 + j % 4] |= (uint8_t)((v >> 4) << (2 * (j / 4)));
        }
        memset(y[b].qs, 0, sizeof y[b].qs);
        memset(y[b].hmask, 0, sizeof y[b].hmask);
        for (int e = 0; e < NM_QK_K; e++) {
            int u = L[e] + 4; /* 0..7 */
            y[b].qs[e / 128 * 32 + e % 32] |= (uint8_t)((u & 3) << (2 * (e % 128 / 32)));
            y[b].hmask[e % 32] |= (uint8_t)((u >> 2) << (e / 32));
        }
    }
}

void nm_dequantize_q3_k(const void *src, float *y, int64_t n) {
    const nm_block_q3_k *x = src;
    for (int64_t b = 0; b < n / NM_QK_K; b++) {
        float d = nm_fp16_to_f32(x[b].d);
        for (int e = 0; e < NM_QK_K; e++) {
            float dl = d * (float)nm_q3k_scale(x[b].scales, e / 16);
            *y++ = dl * (float)nm_q3k_q(&x[b], e);
        }
    }
}

void nm_quantize_q6_k(const float *x, void *dst, int64_t n) {
    nm_block_q6_k *y = dst;
    for (int64_t b = 0; b < n / NM_QK_K; b++, x += NM_QK_K) {
        int sc[16];
        int8_t L[NM_QK_K];
        y[b].d = quantize_symmetric_block(x, 32, 31, 128, 127, sc, L);
        for (int j = 0; j < 16; j++)
            y[b].scales[j] = (int8_t)sc[j];
        memset(y[b].ql, 0, sizeof y[b].ql);
        memset(y[b].qh, 0, sizeof y[b].qh);
        for (int e = 0; e < NM_QK_K; e++) {
            int u = L[e] + 32, half = e / 128, k = e % 128 / 32, l = e % 32;
            y[b].ql[half * 64 + (k & 1) * 32 + l] |= (uint8_t)((u & 15) << (4 * (k >> 1)));
            y[b].qh[half * 32 + l] |= (uint8_t)((u >> 4) << (2 * k));
        }
    }
}

void nm_dequantize_q6_k(const void *src, float *y, int64_t n) {
    const nm_block_q6_k *x = src;
    for (int64_t b = 0; b < n / NM_QK_K; b++) {
        float d = nm_fp16_to_f32(x[b].d);
        for (int e = 0; e < NM_QK_K; e++)
            *y++ = d * (float)x[b].scales[e / 16] * (float)nm_q6k_q(&x[b], e);
    }
}

/* ---- checks ------------------------------------------------------------- */

#define CHECK(T, COND)                                                                             \
    int64_t nm_check_##T(const void *blocks, int64_t n) {                                          \
        const nm_block_##T *b = blocks;                                                            \
        for (int64_t i = 0; i < n; i++)                                                            \
            if (COND)                                                                              \
                return i;                                                                          \
        return -1;                                                                                 \
    }

CHECK(q2_k, nm_fp16_nonfinite(b[i].d) || nm_fp16_nonfinite(b[i].dmin))
CHECK(q3_k, nm_fp16_nonfinite(b[i].d))
CHECK(q4_k, nm_fp16_nonfinite(b[i].d) || nm_fp16_nonfinite(b[i].dmin))
CHECK(q5_k, nm_fp16_nonfinite(b[i].d) || nm_fp16_nonfinite(b[i].dmin))
CHECK(q6_k, nm_fp16_nonfinite(b[i].d))
