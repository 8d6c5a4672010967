/* AVX-512 VNNI kernels of Q8_0 (decode row, prompt tile): four blocks per
 * step, 128-bit lane k of every register for block k.
 *
 * A step's 136 weight bytes come in by four 64-byte loads (at +0, +8, +64,
 * +72: nothing past the four blocks); three word permutes collect the low
 * 16 codes of each block into one register, the high 16 into another and
 * the four F16 scales, 4 lanes each, into a third. The activations meet
 * them with two 128-bit lane shuffles per token. Two vpdpbusd per row and
 * token then leave block k's sum over 8 codes per int32 lane of lane k, so
 * one conversion, one product of scales and one FMA serve four blocks: in
 * the two-block loop (8 lanes a block, one vpdpbusd each) those three ran
 * per two blocks, and they are what bounds a prompt tile on this CPU's two
 * 512-bit ports (docs/kernels.md, "Q8_0: four blocks per step").
 *
 * vpdpbusd multiplies unsigned by signed bytes: the activations go in as
 * a + 128 (their sign bit flipped) and each row's sums start at -128 times
 * the sum of its weights in the lane (two vpdpbusd of the constant 128
 * against the weights), so the integer sums are the signed ones exactly.
 *
 * Decode runs the same step for one row and one token, and the tile for
 * R rows x NT tokens, so matvec and matmat give the same bits. Blocks over
 * the last multiple of four take the same step with masked loads, zero
 * codes and zero scales in the missing lanes. */
#include "kernel_set.h"
#include "kernels_avx512_q8_0.h"
#include "gguf/quant.h"

#include <immintrin.h>

#define AI static inline __attribute__((always_inline))

/* Prompt tile: 2 rows x 8 tokens, 16 accumulators. Decode takes 4 rows x
 * 1 token (rows4). */
#define Q8V_TILE_R 2
#define Q8V_TILE_T 8
#define Q8V_MAX_R 4
_Static_assert(Q8V_TILE_R < 4, "NM_PREFETCH_AHEAD: four rows are rows4");

/* One row's step: low and high codes, scales, and the sums' start. */
typedef struct q8v_w {
    __m512i lo, hi, base;
    __m512 d;
} q8v_w;

/* nblk (1..4) blocks at p; FULL: nblk == 4, plain loads. */
AI q8v_w q8v_weights(const char *p, int nblk, const int FULL) {
    const q8_0_w4 r = q8_0_weights4(p, nblk, FULL);
    q8v_w w;
    w.lo = r.lo;
    w.hi = r.hi;
    w.d = _mm512_cvtph_ps(_mm512_castsi512_si256(q8_0_scale_words(&r, 0xffff)));
    const __m512i c128 = _mm512_set1_epi8(-128);
    __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), c128, w.lo);
    s = _mm512_dpbusd_epi32(s, c128, w.hi);
    w.base = _mm512_sub_epi32(_mm512_setzero_si512(), s);
    return w;
}

/* One token's step: low and high bytes as a + 128, scales 4 lanes each. */
typedef struct q8v_a {
    __m512i lo, hi;
    __m512 d;
} q8v_a;

AI q8v_a q8v_act(const int8_t *qa, const float *da, int nblk, const int FULL) {
    const __m128 d4 =
        FULL ? _mm_loadu_ps(da) : _mm_maskz_loadu_ps((__mmask8)((1u << nblk) - 1), da);
    const __m512i flip = _mm512_set1_epi8(-128);
    const __m512i spread = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    q8v_a a;
    q8_0_act4(qa, nblk, FULL, &a.lo, &a.hi);
    a.lo = _mm512_xor_si512(a.lo, flip);
    a.hi = _mm512_xor_si512(a.hi, flip);
    a.d = _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(d4));
    return a;
}

AI __m512 q8v_fma(const q8v_w *w, const q8v_a *a, __m512 acc) {
    __m512i s = _mm512_dpbusd_epi32(w->base, a->lo, w->lo);
    s = _mm512_dpbusd_epi32(s, a->hi, w->hi);
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(w->d, a->d), acc);
}

/* Blocks [b, b + nblk) for R rows x NT tokens. */
AI void q8v_step(const char *const *row, int64_t b, const int8_t *const *qa, const float *const *da,
                 __m512 acc[Q8V_MAX_R][Q8V_TILE_T], const int R, const int NT, int nblk,
                 const int FULL) {
    q8v_w w[Q8V_MAX_R];
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
        const char *p = row[r] + b * (int64_t)sizeof(nm_block_q8_0);
        /* 136 bytes a step: three lines ahead cover them */
        const size_t ahead = NM_PREFETCH_AHEAD(R);
        _mm_prefetch(p + ahead, _MM_HINT_T1);
        _mm_prefetch(p + ahead + 64, _MM_HINT_T1);
        _mm_prefetch(p + ahead + 128, _MM_HINT_T1);
        w[r] = q8v_weights(p, nblk, FULL);
    }
    _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++) {
        q8v_a a = q8v_act(qa[t] + b * 32, da[t] + b, nblk, FULL);
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) acc[r][t] =
            q8v_fma(&w[r], &a, acc[r][t]);
    }
}

AI void q8v_rt(const void *w, size_t rb, const void *const *acts, const int R, const int NT,
               int64_t n, float *out) {
    const int64_t nb = n / 32;
    const char *row[Q8V_MAX_R];
    const int8_t *qa[Q8V_TILE_T];
    const float *da[Q8V_TILE_T];
    __m512 acc[Q8V_MAX_R][Q8V_TILE_T];
    _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++) {
        qa[t] = nm_actq_qs(acts[t]);
        da[t] = nm_actq_d(acts[t], n);
    }
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
        row[r] = (const char *)w + (size_t)r * rb;
        _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++) acc[r][t] = _mm512_setzero_ps();
    }
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4)
        q8v_step(row, b, qa, da, acc, R, NT, 4, 1);
    if (b < nb)
        q8v_step(row, b, qa, da, acc, R, NT, (int)(nb - b), 0);
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++) out[r * NT + t] =
            _mm512_reduce_add_ps(acc[r][t]);
}

/* One instance per token count, so the accumulators stay in registers. */
#define Q8V_DISPATCH(RB, R)                                                                        \
    switch (nt) {                                                                                  \
    case 1:                                                                                        \
        q8v_rt(w, RB, acts, R, 1, n, out);                                                         \
        break;                                                                                     \
    case 2:                                                                                        \
        q8v_rt(w, RB, acts, R, 2, n, out);                                                         \
        break;                                                                                     \
    case 3:                                                                                        \
        q8v_rt(w, RB, acts, R, 3, n, out);                                                         \
        break;                                                                                     \
    case 4:                                                                                        \
        q8v_rt(w, RB, acts, R, 4, n, out);                                                         \
        break;                                                                                     \
    case 5:                                                                                        \
        q8v_rt(w, RB, acts, R, 5, n, out);                                                         \
        break;                                                                                     \
    case 6:                                                                                        \
        q8v_rt(w, RB, acts, R, 6, n, out);                                                         \
        break;                                                                                     \
    case 7:                                                                                        \
        q8v_rt(w, RB, acts, R, 7, n, out);                                                         \
        break;                                                                                     \
    default:                                                                                       \
        q8v_rt(w, RB, acts, R, 8, n, out);                                                         \
        break;                                                                                     \
    }

static void rowdot_q8_0_vnni(const void *w, const void *const *acts, int nt, int64_t n,
                             float *out) {
    Q8V_DISPATCH(0, 1)
}

static void tile_q8_0_vnni(const void *w, size_t rb, const void *const *acts, int nt, int64_t n,
                           float *out) {
    Q8V_DISPATCH(rb, Q8V_TILE_R)
}

/* Decode: four rows rb apart, each activation step loaded once for them. */
static void rows4_q8_0_vnni(const void *w, size_t rb, const void *act, int64_t n, float *out) {
    const void *acts[1] = {act};
    q8v_rt(w, rb, acts, 4, 1, n, out);
}

void nm_kernels_avx512_q8_0(nm_kernel_set *ks, int features) {
    if (features & NM_AVX512_VNNI)
        ks->k[NM_TYPE_Q8_0] = NM_TYPE_KERNELS(rowdot_q8_0_vnni, rows4_q8_0_vnni, tile_q8_0_vnni,
                                              Q8V_TILE_R, Q8V_TILE_T);
}
