/* Q4_1, Q5_0, Q5_1, IQ4_NL and IQ4_XS: dequantization as the format defines
 * it and numalm's quantizers (quant_legacy.h).
 *
 * The quantizers choose each block's scale (and minimum) by a small search
 * that scores candidates by squared error with the scale as it will be
 * stored (F16, or the 6-bit sub-block scale of IQ4_XS), then refits the
 * scale to the chosen codes by least squares. They use no importance
 * matrix. Non-finite input never reaches a float-to-int conversion out of
 * range: every code is clamped while still a float. */
#include "quant_legacy.h"

#include <math.h>
#include <string.h>

const int8_t nm_iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                    1,    13,   25,  38,  53,  69,  89,  113};

static float fp16_round(float v) {
    return nm_fp16_to_f32(nm_f32_to_fp16(v));
}

/* round(v) clamped to [lo, hi]; NaN gives lo. */
static int code_of(float v, int lo, int hi) {
    if (!(v >= (float)lo))
        return lo;
    if (v >= (float)hi)
        return hi;
    return (int)(v - (float)lo + 0.5f) + lo; /* truncation of a value >= 0 */
}

/* ---- asymmetric types (Q4_1, Q5_1): x = q d + m, q in 0..nmax ------------ */

/* Codes for the stored (d, m); returns the squared error. */
static float asym_assign(const float *x, float d, float m, int nmax, uint8_t *q) {
    float id = d != 0.0f ? 1.0f / d : 0.0f, err = 0.0f;
    for (int j = 0; j < NM_QK; j++) {
        q[j] = (uint8_t)code_of((x[j] - m) * id, 0, nmax);
        float e = x[j] - ((float)q[j] * d + m);
        err += e * e;
    }
    return err;
}

/* Starts from (d, m) spanning [min, max], then refits d and m to the codes
 * by least squares a few times; keeps the best stored pair. */
static void asym_block(const float *x, int nmax, nm_fp16 *dh, nm_fp16 *mh, uint8_t *q) {
    float min = x[0], max = x[0];
    for (int j = 1; j < NM_QK; j++) {
        min = x[j] < min ? x[j] : min;
        max = x[j] > max ? x[j] : max;
    }
    uint8_t cand[NM_QK];
    float d = (max - min) / (float)nmax, m = min;
    float best = INFINITY;
    for (int it = 0; it < 4; it++) {
        nm_fp16 cd = nm_f32_to_fp16(d), cm = nm_f32_to_fp16(m);
        float err = asym_assign(x, nm_fp16_to_f32(cd), nm_fp16_to_f32(cm), nmax, cand);
        if (err < best || it == 0) {
            best = err;
            *dh = cd;
            *mh = cm;
            memcpy(q, cand, NM_QK);
        }
        /* least squares for x ~ q d + m given the codes */
        double sq = 0, sqq = 0, sx = 0, sqx = 0;
        for (int j = 0; j < NM_QK; j++) {
            sq += cand[j];
            sqq += (double)cand[j] * cand[j];
            sx += x[j];
            sqx += (double)cand[j] * x[j];
        }
        double det = NM_QK * sqq - sq * sq;
        if (!(det > 0))
            break;
        d = (float)((NM_QK * sqx - sq * sx) / det);
        m = (float)((sx - d * sq) / NM_QK);
    }
}

static void pack_nibbles(const uint8_t *q, uint8_t *qs) {
    for (int j = 0; j < NM_QK / 2; j++)
        qs[j] = (uint8_t)((q[j] & 15) | (q[j + NM_QK / 2] & 15) << 4);
}

static void pack_fifth_bits(const uint8_t *q, uint8_t qh[4]) {
    uint32_t h = 0;
    for (int j = 0; j < NM_QK; j++)
        h |= (uint32_t)(q[j] >> 4 & 1) << j;
    for (int k = 0; k < 4; k++)
        qh[k] = (uint8_t)(h >> 8 * k);
}

void nm_quantize_q4_1(const float *x, void *dst, int64_t n) {
    nm_block_q4_1 *y = dst;
    const int64_t nb = n / NM_QK;
    uint8_t q[NM_QK];
    for (int64_t b = 0; b < nb; b++, x += NM_QK) {
        asym_block(x, 15, &y[b].d, &y[b].m, q);
        pack_nibbles(q, y[b].qs);
    }
}

void nm_quantize_q5_1(const float *x, void *dst, int64_t n) {
    nm_block_q5_1 *y = dst;
    const int64_t nb = n / NM_QK;
    uint8_t q[NM_QK];
    for (int64_t b = 0; b < nb; b++, x += NM_QK) {
        asym_block(x, 31, &y[b].d, &y[b].m, q);
        pack_nibbles(q, y[b].qs);
        pack_fifth_bits(q, y[b].qh);
    }
}

/* ---- Q5_0: x = (q - 16) d --------------------------------------------- */

static float q5_0_assign(const float *x, float d, uint8_t *q) {
    float id = d != 0.0f ? 1.0f / d : 0.0f, err = 0.0f;
    for (int j = 0; j < NM_QK; j++) {
        q[j] = (uint8_t)(code_of(x[j] * id, -16, 15) + 16);
        float e = x[j] - (float)(q[j] - 16) * d;
        err += e * e;
    }
    return err;
}

/* The value of largest magnitude maps to -16 or to +15, then each is refit
 * by least squares; the best stored scale wins. */
void nm_quantize_q5_0(const float *x, void *dst, int64_t n) {
    nm_block_q5_0 *y = dst;
    const int64_t nb = n / NM_QK;
    uint8_t q[NM_QK], cand[NM_QK];
    for (int64_t b = 0; b < nb; b++, x += NM_QK) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < NM_QK; j++)
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        float best = INFINITY;
        nm_fp16 bd = 0;
        const float ends[2] = {-16.0f, 15.0f};
        for (int e = 0; e < 2; e++) {
            float d = max / ends[e];
            for (int it = 0; it < 2; it++) {
                nm_fp16 cd = nm_f32_to_fp16(d);
                float err = q5_0_assign(x, nm_fp16_to_f32(cd), cand);
                if (err < best) {
                    best = err;
                    bd = cd;
                    memcpy(q, cand, NM_QK);
                }
                double sxq = 0, sqq = 0;
                for (int j = 0; j < NM_QK; j++) {
                    sxq += (double)x[j] * (cand[j] - 16);
                    sqq += (double)(cand[j] - 16) * (cand[j] - 16);
                }
                if (!(sqq > 0))
                    break;
                d = (float)(sxq / sqq);
            }
        }
        if (best == INFINITY) /* non-finite input: the plain scale */
            q5_0_assign(x, nm_fp16_to_f32(bd = nm_f32_to_fp16(max / -16.0f)), q);
        y[b].d = bd;
        pack_nibbles(q, y[b].qs);
        pack_fifth_bits(q, y[b].qh);
    }
}

/* ---- IQ4_NL / IQ4_XS: x = d * values[q] -------------------------------- */

/* The code whose value is nearest to v (in table units); NaN gives 0. k
 * counts the midpoints between neighbouring values that lie below v, found
 * by a binary search (four comparisons). */
static int nl_code(float v) {
    static const float mid[16] = {-115.5f, -93.5f, -74.0f, -57.0f,  -42.0f, -28.5f,
                                  -16.0f,  -4.5f,  7.0f,   19.0f,   31.5f,  45.5f,
                                  61.0f,   79.0f,  101.0f, INFINITY};
    int k = v > mid[7] ? 8 : 0;
    k += v > mid[k + 3] ? 4 : 0;
    k += v > mid[k + 1] ? 2 : 0;
    k += v > mid[k] ? 1 : 0;
    return k;
}

/* Codes of 32 values for scale d. */
static void nl_codes(const float *x, float d, uint8_t *q) {
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int j = 0; j < NM_QK; j++)
        q[j] = (uint8_t)nl_code(x[j] * id);
}

/* Codes of 32 values for scale d; returns the squared error. */
static float nl_assign(const float *x, float d, uint8_t *q) {
    nl_codes(x, d, q);
    float err = 0.0f;
    for (int j = 0; j < NM_QK; j++) {
        float e = x[j] - d * (float)nm_iq4nl_values[q[j]];
        err += e * e;
    }
    return err;
}

/* The best scale for 32 values: the value of largest magnitude is mapped
 * near each end of the table (-127 or +113, a few steps inward too), the
 * codes are taken, and the scale refit to them by least squares; the
 * candidate with the smallest error wins (scales F16-rounded first when
 * f16 is set). Returns the scale, err gets its error. */
static float nl_best_scale(const float *x, int f16, float *err_out) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < NM_QK; j++)
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    float best_d = 0.0f, best = INFINITY;
    uint8_t q[NM_QK];
    if (amax == 0.0f) {
        *err_out = 0.0f;
        return 0.0f;
    }
    static const float targets[10] = {-127.0f, -122.0f, -117.0f, -112.0f, -107.0f,
                                      113.0f,  108.0f,  103.0f,  98.0f,   93.0f};
    float sxx = 0.0f;
    for (int j = 0; j < NM_QK; j++)
        sxx += x[j] * x[j];
    for (int c = 0; c < 10; c++) {
        nl_codes(x, max / targets[c], q);
        float sxv = 0.0f, svv = 0.0f;
        for (int j = 0; j < NM_QK; j++) {
            float v = nm_iq4nl_values[q[j]];
            sxv += x[j] * v;
            svv += v * v;
        }
        /* the least-squares scale for these codes, and its error */
        float d = sxv / svv; /* svv >= 1: no value is 0 */
        if (f16)
            d = fp16_round(d);
        float err = sxx - 2.0f * d * sxv + d * d * svv;
        if (err < best) {
            best = err;
            best_d = d;
        }
    }
    if (best == INFINITY) /* non-finite input */
        best_d = max / -127.0f;
    *err_out = best;
    return best_d;
}

void nm_quantize_iq4_nl(const float *x, void *dst, int64_t n) {
    nm_block_iq4_nl *y = dst;
    const int64_t nb = n / NM_QK;
    uint8_t q[NM_QK];
    for (int64_t b = 0; b < nb; b++, x += NM_QK) {
        float err;
        y[b].d = nm_f32_to_fp16(nl_best_scale(x, 1, &err));
        nl_assign(x, nm_fp16_to_f32(y[b].d), q);
        pack_nibbles(q, y[b].qs);
    }
}

/* Each sub-block's best float scale, then one F16 d for the super-block
 * with the largest sub-scale at ls - 32 = -32; each sub-block then takes
 * the 6-bit scale (of round(s/d) and its neighbours) with the smallest
 * error and its codes. */
void nm_quantize_iq4_xs(const float *x, void *dst, int64_t n) {
    nm_block_iq4_xs *y = dst;
    const int64_t nb = n / NM_QK_K;
    for (int64_t b = 0; b < nb; b++, x += NM_QK_K) {
        float s[8], smax = 0.0f, err;
        for (int j = 0; j < 8; j++) {
            s[j] = nl_best_scale(x + 32 * j, 0, &err);
            if (fabsf(s[j]) > fabsf(smax))
                smax = s[j];
        }
        nm_block_iq4_xs *o = &y[b];
        memset(o, 0, sizeof *o);
        o->d = nm_f32_to_fp16(smax / -32.0f);
        float d = nm_fp16_to_f32(o->d);
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int j = 0; j < 8; j++) {
            int l0 = code_of(s[j] * id, -32, 31);
            int best_l = l0;
            float best = INFINITY;
            uint8_t q[NM_QK], cand[NM_QK];
            memset(q, 0, sizeof q);
            for (int l = l0 - 1; l <= l0 + 1; l++) {
                if (l < -32 || l > 31)
                    continue;
                float e = nl_assign(x + 32 * j, d * (float)l, cand);
                if (e < best) {
                    best = e;
                    best_l = l;
                    memcpy(q, cand, NM_QK);
                }
            }
            int ls = best_l + 32;
            o->scales_l[j / 2] |= (uint8_t)((ls & 15) << 4 * (j % 2));
            o->scales_h |= (uint16_t)((ls >> 4) << 2 * j);
            pack_nibbles(q, o->qs + 16 * j);
        }
    }
}

/* ---- dequantization ----------------------------------------------------- */

/* The 32 codes of a block: element j from the low nibble of byte j and
 * element j + 16 from its high nibble, each with its fifth bit from qh. */
static void unpack_codes(const uint8_t *qs, uint32_t qh, uint8_t *q) {
    for (int j = 0; j < NM_QK / 2; j++) {
        q[j] = (uint8_t)((qs[j] & 15) | (qh >> j & 1) << 4);
        q[j + 16] = (uint8_t)((qs[j] >> 4) | (qh >> (j + 16) & 1) << 4);
    }
}

void nm_dequantize_q4_1(const void *src, float *y, int64_t n) {
    const nm_block_q4_1 *b = src;
    uint8_t q[NM_QK];
    for (int64_t i = 0; i < n / NM_QK; i++, y += NM_QK) {
        unpack_codes(b[i].qs, 0, q);
        float d = nm_fp16_to_f32(b[i].d), m = nm_fp16_to_f32(b[i].m);
        for (int j = 0; j < NM_QK; j++)
            y[j] = (float)q[j] * d + m;
    }
}

void nm_dequantize_q5_0(const void *src, float *y, int64_t n) {
    const nm_block_q5_0 *b = src;
    uint8_t q[NM_QK];
    for (int64_t i = 0; i < n / NM_QK; i++, y += NM_QK) {
        unpack_codes(b[i].qs, nm_q5_qh(b[i].qh), q);
        float d = nm_fp16_to_f32(b[i].d);
        for (int j = 0; j < NM_QK; j++)
            y[j] = (float)(q[j] - 16) * d;
    }
}

void nm_dequantize_q5_1(const void *src, float *y, int64_t n) {
    const nm_block_q5_1 *b = src;
    uint8_t q[NM_QK];
    for (int64_t i = 0; i < n / NM_QK; i++, y += NM_QK) {
        unpack_codes(b[i].qs, nm_q5_qh(b[i].qh), q);
        float d = nm_fp16_to_f32(b[i].d), m = nm_fp16_to_f32(b[i].m);
        for (int j = 0; j < NM_QK; j++)
            y[j] = (float)q[j] * d + m;
    }
}

void nm_dequantize_iq4_nl(const void *src, float *y, int64_t n) {
    const nm_block_iq4_nl *b = src;
    uint8_t q[NM_QK];
    for (int64_t i = 0; i < n / NM_QK; i++, y += NM_QK) {
        unpack_codes(b[i].qs, 0, q);
        float d = nm_fp16_to_f32(b[i].d);
        for (int j = 0; j < NM_QK; j++)
            y[j] = d * (float)nm_iq4nl_values[q[j]];
    }
}

void nm_dequantize_iq4_xs(const void *src, float *y, int64_t n) {
    const nm_block_iq4_xs *b = src;
    uint8_t q[NM_QK];
    for (int64_t i = 0; i < n / NM_QK_K; i++) {
        float d = nm_fp16_to_f32(b[i].d);
        for (int j = 0; j < 8; j++, y += NM_QK) {
            unpack_codes(b[i].qs + 16 * j, 0, q);
            float dl = d * (float)nm_iq4xs_scale(&b[i], j);
            for (int k = 0; k < NM_QK; k++)
                y[k] = dl * (float)nm_iq4nl_values[q[k]];
        }
    }
}

/* ---- --verify: the first block whose scale (or minimum) is not finite ---- */

int64_t nm_check_q4_1(const void *blocks, int64_t n) {
    const nm_block_q4_1 *b = blocks;
    for (int64_t i = 0; i < n; i++)
        if (nm_fp16_nonfinite(b[i].d) || nm_fp16_nonfinite(b[i].m))
            return i;
    return -1;
}

int64_t nm_check_q5_0(const void *blocks, int64_t n) {
    const nm_block_q5_0 *b = blocks;
    for (int64_t i = 0; i < n; i++)
        if (nm_fp16_nonfinite(b[i].d))
            return i;
    return -1;
}

int64_t nm_check_q5_1(const void *blocks, int64_t n) {
    const nm_block_q5_1 *b = blocks;
    for (int64_t i = 0; i < n; i++)
        if (nm_fp16_nonfinite(b[i].d) || nm_fp16_nonfinite(b[i].m))
            return i;
    return -1;
}

int64_t nm_check_iq4_nl(const void *blocks, int64_t n) {
    const nm_block_iq4_nl *b = blocks;
    for (int64_t i = 0; i < n; i++)
        if (nm_fp16_nonfinite(b[i].d))
            return i;
    return -1;
}

int64_t nm_check_iq4_xs(const void *blocks, int64_t n) {
    const nm_block_iq4_xs *b = blocks;
    for (int64_t i = 0; i < n; i++)
        if (nm_fp16_nonfinite(b[i].d))
            return i;
    return -1;
}
