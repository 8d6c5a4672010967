/* The scalar kernels of the legacy block types beyond Q8_0 / Q4_0: Q4_1,
 * Q5_0, Q5_1 and IQ4_NL against Q8 activations per 32, IQ4_XS against Q8_K
 * activations per 256. They define the result bit for bit: every SIMD set
 * computes the same integer sums and the same float steps in the same
 * order (tests/test_kernels.c compares them).
 *
 * 32-element blocks. Block b's products are summed exactly as integers:
 *     Q4_1, Q5_1:  isum = sum q a          (q the unsigned code)
 *     Q5_0:        isum = sum (q - 16) a
 *     IQ4_NL:      isum = sum values[q] a
 * then scaled into lane b % 8 of eight F32 partial sums, each step rounded
 * on its own (fmaf rounds once):
 *     acc = fmaf(d_w * d_a, (float)isum, acc)
 *     acc = fmaf(m_w, m_a / 8, acc)        Q4_1, Q5_1: the minimum term,
 *                                          m_a / 8 = d_a sum(a) exactly
 * and the lanes are added as ((0+4) + (2+6)) + ((1+5) + (3+7)), the order of
 * an 8-lane horizontal sum. Eight lanes let SIMD code scale eight blocks
 * with one instruction and keep the float steps off one dependency chain.
 *
 * IQ4_XS. Super-block s: isum_j = sum values[q] a over sub-block j,
 *     sumi = sum_j (ls_j - 32) isum_j      (exact: |sumi| < 2^28)
 *     acc  = fmaf(d_w * d_a, (float)sumi, acc)
 * in one accumulator, super-block after super-block. */
#include "kernel_set.h"

#include "gguf/quant_legacy.h"

#include <math.h>
#include <stdbool.h>

/* The sum of the 8 lanes in the order every set uses. */
static float sum_lanes(const float acc[8]) {
    float a04 = acc[0] + acc[4], a26 = acc[2] + acc[6];
    float a15 = acc[1] + acc[5], a37 = acc[3] + acc[7];
    float even = a04 + a26, odd = a15 + a37;
    return even + odd;
}

/* The codes of a 32-element block in element order (fifth bits from qh). */
static void block_codes(const uint8_t *qs, uint32_t qh, int q[32]) {
    for (int j = 0; j < 16; j++) {
        q[j] = (qs[j] & 15) | (int)(qh >> j & 1) << 4;
        q[j + 16] = (qs[j] >> 4) | (int)(qh >> (j + 16) & 1) << 4;
    }
}

/* sum values[q] a over a block, or sum (q - offset) a when values is NULL */
static int32_t block_isum(const uint8_t *qs, uint32_t qh, const int8_t *values, int offset,
                          const int8_t *a) {
    int q[32];
    block_codes(qs, qh, q);
    int32_t s = 0;
    for (int j = 0; j < 32; j++)
        s += (values ? values[q[j]] : q[j] - offset) * a[j];
    return s;
}

/* What a 32-element block contributes: its integer sum against the
 * activation block a, its scale and its minimum (0 for types without). */
typedef struct block_dot {
    int32_t isum;
    float d, m;
} block_dot;

static block_dot dot_q4_1(const void *row, int64_t b, const int8_t *a) {
    const nm_block_q4_1 *w = (const nm_block_q4_1 *)row + b;
    return (block_dot){block_isum(w->qs, 0, NULL, 0, a), nm_fp16_to_f32(w->d),
                       nm_fp16_to_f32(w->m)};
}

static block_dot dot_q5_1(const void *row, int64_t b, const int8_t *a) {
    const nm_block_q5_1 *w = (const nm_block_q5_1 *)row + b;
    return (block_dot){block_isum(w->qs, nm_q5_qh(w->qh), NULL, 0, a), nm_fp16_to_f32(w->d),
                       nm_fp16_to_f32(w->m)};
}

static block_dot dot_q5_0(const void *row, int64_t b, const int8_t *a) {
    const nm_block_q5_0 *w = (const nm_block_q5_0 *)row + b;
    return (block_dot){block_isum(w->qs, nm_q5_qh(w->qh), NULL, 16, a), nm_fp16_to_f32(w->d), 0};
}

static block_dot dot_iq4_nl(const void *row, int64_t b, const int8_t *a) {
    const nm_block_iq4_nl *w = (const nm_block_iq4_nl *)row + b;
    return (block_dot){block_isum(w->qs, 0, nm_iq4nl_values, 0, a), nm_fp16_to_f32(w->d), 0};
}

/* One row of 32-element blocks against nt prepared Q8 activation rows. */
static void rowdot_32(const void *row, const void *const *acts, int nt, int64_t n, float *out,
                      block_dot (*dot)(const void *, int64_t, const int8_t *), int has_min) {
    for (int t = 0; t < nt; t++) {
        const int8_t *qa = nm_actq_qs(acts[t]);
        const float *da = nm_actq_d(acts[t], n), *ma = nm_actq_m(acts[t], n);
        float acc[8] = {0};
        for (int64_t b = 0; b < n / 32; b++) {
            block_dot bd = dot(row, b, qa + b * 32);
            float dd = bd.d * da[b];
            acc[b % 8] = fmaf(dd, (float)bd.isum, acc[b % 8]);
            if (has_min) {
                float s = ma[b] * 0.125f;
                acc[b % 8] = fmaf(bd.m, s, acc[b % 8]);
            }
        }
        out[t] = sum_lanes(acc);
    }
}

static void sc_rowdot_q4_1(const void *row, const void *const *acts, int nt, int64_t n,
                           float *out) {
    rowdot_32(row, acts, nt, n, out, dot_q4_1, 1);
}
static void sc_rowdot_q5_1(const void *row, const void *const *acts, int nt, int64_t n,
                           float *out) {
    rowdot_32(row, acts, nt, n, out, dot_q5_1, 1);
}
static void sc_rowdot_q5_0(const void *row, const void *const *acts, int nt, int64_t n,
                           float *out) {
    rowdot_32(row, acts, nt, n, out, dot_q5_0, 0);
}
static void sc_rowdot_iq4_nl(const void *row, const void *const *acts, int nt, int64_t n,
                             float *out) {
    rowdot_32(row, acts, nt, n, out, dot_iq4_nl, 0);
}

static void sc_rowdot_iq4_xs(const void *row, const void *const *acts, int nt, int64_t n,
                             float *out) {
    const nm_block_iq4_xs *w = row;
    for (int t = 0; t < nt; t++) {
        const int8_t *qa = nm_actk_qs(acts[t]);
        const float *da = nm_actk_d(acts[t], n);
        float acc = 0.0f;
        for (int64_t s = 0; s < n / NM_QK_K; s++) {
            int32_t sumi = 0;
            for (int j = 0; j < 8; j++) {
                const int8_t *a = qa + s * NM_QK_K + 32 * j;
                sumi += nm_iq4xs_scale(&w[s], j) *
                        block_isum(w[s].qs + 16 * j, 0, nm_iq4nl_values, 0, a);
            }
            float dd = nm_fp16_to_f32(w[s].d) * da[s];
            acc = fmaf(dd, (float)sumi, acc);
        }
        out[t] = acc;
    }
}

void nm_kernels_scalar_legacy(nm_kernel_set *ks) {
    static const struct {
        uint32_t type;
        nm_rowdot_fn rowdot;
    } kernels[] = {
        {NM_TYPE_Q4_1, sc_rowdot_q4_1},     {NM_TYPE_Q5_0, sc_rowdot_q5_0},
        {NM_TYPE_Q5_1, sc_rowdot_q5_1},     {NM_TYPE_IQ4_NL, sc_rowdot_iq4_nl},
        {NM_TYPE_IQ4_XS, sc_rowdot_iq4_xs},
    };
    for (size_t i = 0; i < sizeof kernels / sizeof kernels[0]; i++) {
        ks->k[kernels[i].type] = NM_TYPE_KERNELS(kernels[i].rowdot, NULL, NULL, 0, 0);
        ks->k[kernels[i].type].exact = true; /* every set gives these bits */
    }
}
