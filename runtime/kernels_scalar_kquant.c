/* The scalar reference kernels of the K-quants (Q2_K .. Q6_K) against Q8_K
 * activations (kernel_set.h). They define the result bit for bit, at every
 * SIMD level:
 *
 * - per super-block b, two integer sums, exact (they fit in int32: at most
 *   63 * 31 * 127 * 256 < 2^26 in magnitude, Q6_K 128 * 32 * 127 * 256 <
 *   2^28):
 *       isum = sum over sub-blocks j of sc_j * sum_e q_e * a_e
 *       msum = sum over sub-blocks j of m_j * (the bsums of sub-block j)
 *   with q_e the value's integer code (Q3_K -4..3, Q6_K -32..31: a SIMD
 *   kernel that multiplies unsigned codes takes 4 or 32 times the bsums off,
 *   which gives the same integer);
 * - then, in F32, with da the activation block scale, in this order and
 *   never fused:
 *       d  = fp16(w.d) * da;   dm = fp16(w.dmin) * da
 *       acc = acc + (d * (float)isum - dm * (float)msum)   (Q2_K, Q4_K, Q5_K)
 *       acc = acc + d * (float)isum                        (Q3_K, Q6_K)
 *   over the super-blocks in order, from acc = 0.
 *
 * A SIMD kernel may compute the integer sums in any order and keep rows or
 * tokens in separate lanes, as long as each lane does these float steps. */
#include "kernel_set.h"

#include "gguf/quant_kquant.h"

/* The float step of a super-block (see above). */
static inline float k_step_min(float acc, nm_fp16 dw, nm_fp16 dmw, float da, int32_t isum,
                               int32_t msum) {
    float d = nm_fp16_to_f32(dw) * da, dm = nm_fp16_to_f32(dmw) * da;
    float t = d * (float)isum - dm * (float)msum;
    return acc + t;
}

static inline float k_step(float acc, nm_fp16 dw, float da, int32_t isum) {
    float d = nm_fp16_to_f32(dw) * da;
    return acc + d * (float)isum;
}

/* One super-block's contribution: acc after the block at w, with qa its 256
 * activation values, da their scale and bs their 16 bsums. */
typedef float (*k_block_fn)(const void *w, const int8_t *qa, float da, const int16_t *bs,
                            float acc);

static inline void k_rowdot(const void *row, size_t block_bytes, k_block_fn block,
                            const void *const *acts, int nt, int64_t n, float *out) {
    for (int t = 0; t < nt; t++) {
        float acc = 0.0f;
        for (int64_t b = 0; b < n / NM_QK_K; b++)
            acc = block((const char *)row + b * block_bytes, nm_actk_qs(acts[t]) + b * NM_QK_K,
                        nm_actk_d(acts[t], n)[b], nm_actk_bsums(acts[t], n) + b * 16, acc);
        out[t] = acc;
    }
}

static float q2_k_block(const void *blk, const int8_t *qa, float da, const int16_t *bs, float acc) {
    const nm_block_q2_k *w = blk;
    int32_t isum = 0, msum = 0;
    for (int j = 0; j < 16; j++) {
        int32_t dot = 0;
        for (int e = 16 * j; e < 16 * j + 16; e++)
            dot += nm_q2k_q(w, e) * qa[e];
        isum += (w->scales[j] & 15) * dot;
        msum += (w->scales[j] >> 4) * bs[j];
    }
    return k_step_min(acc, w->d, w->dmin, da, isum, msum);
}

static float q3_k_block(const void *blk, const int8_t *qa, float da, const int16_t *bs, float acc) {
    const nm_block_q3_k *w = blk;
    int32_t isum = 0;
    for (int j = 0; j < 16; j++) {
        int32_t dot = 0;
        for (int e = 16 * j; e < 16 * j + 16; e++)
            dot += nm_q3k_q(w, e) * qa[e];
        isum += nm_q3k_scale(w->scales, j) * dot;
    }
    return k_step(acc, w->d, da, isum);
}

/* Q4_K and Q5_K: 8 sub-blocks of 32 with 6-bit scales and mins. */
#define K4_BLOCK(NAME, BLOCK, GET_Q)                                                               \
    static float NAME(const void *blk, const int8_t *qa, float da, const int16_t *bs, float acc) { \
        const BLOCK *w = blk;                                                                      \
        int32_t isum = 0, msum = 0;                                                                \
        for (int j = 0; j < 8; j++) {                                                              \
            int sc, m;                                                                             \
            int32_t dot = 0;                                                                       \
            nm_k4_scale_min(w->scales, j, &sc, &m);                                                \
            for (int e = 32 * j; e < 32 * j + 32; e++)                                             \
                dot += GET_Q * qa[e];                                                              \
            isum += sc * dot;                                                                      \
            msum += m * (bs[2 * j] + bs[2 * j + 1]);                                               \
        }                                                                                          \
        return k_step_min(acc, w->d, w->dmin, da, isum, msum);                                     \
    }

K4_BLOCK(q4_k_block, nm_block_q4_k, nm_q4k_q(w->qs, e))
K4_BLOCK(q5_k_block, nm_block_q5_k, nm_q5k_q(w, e))

static float q6_k_block(const void *blk, const int8_t *qa, float da, const int16_t *bs, float acc) {
    const nm_block_q6_k *w = blk;
    int32_t isum = 0;
    for (int j = 0; j < 16; j++) {
        int32_t dot = 0;
        for (int e = 16 * j; e < 16 * j + 16; e++)
            dot += nm_q6k_q(w, e) * qa[e];
        isum += w->scales[j] * dot;
    }
    return k_step(acc, w->d, da, isum);
}

#define K_ROWDOT(T)                                                                                \
    static void sc_rowdot_##T(const void *row, const void *const *acts, int nt, int64_t n,         \
                              float *out) {                                                        \
        k_rowdot(row, sizeof(nm_block_##T), T##_block, acts, nt, n, out);                          \
    }

K_ROWDOT(q2_k)
K_ROWDOT(q3_k)
K_ROWDOT(q4_k)
K_ROWDOT(q5_k)
K_ROWDOT(q6_k)

void nm_kernels_scalar_kquant(nm_kernel_set *ks) {
    static const struct {
        uint32_t type;
        nm_rowdot_fn fn;
    } k[] = {
        {NM_TYPE_Q2_K, sc_rowdot_q2_k}, {NM_TYPE_Q3_K, sc_rowdot_q3_k},
        {NM_TYPE_Q4_K, sc_rowdot_q4_k}, {NM_TYPE_Q5_K, sc_rowdot_q5_k},
        {NM_TYPE_Q6_K, sc_rowdot_q6_k},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        ks->k[k[i].type] = (nm_type_kernels){.rowdot = k[i].fn, .exact = true};
}
