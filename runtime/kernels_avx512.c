/* AVX-512 (F, BW, VL, DQ) kernels, with a VNNI sub-path for the integer dot
 * products of Q4_0 (Q8_0's is kernels_avx512_q8.c) and an AVX512_BF16
 * sub-path (vdpbf16ps) for BF16.
 * The file is compiled with the VNNI and BF16 flags, but such an instruction
 * only runs when nm_kernels_avx512() found the feature in CPUID: the other
 * sets never reach one.
 *
 * As in kernels_avx2.c, each row kernel is written for a compile-time token
 * count NT (1..8), and the tiles for prompt matmat for compile-time rows x
 * tokens, so the accumulators stay in registers. Tails that are not a
 * multiple of 16 elements use masked loads, which never touch memory past
 * the end of the row. */
#include "kernel_set.h"
#include "gguf/quant.h"

#include <immintrin.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>

#define AI static inline __attribute__((always_inline))
#define TOK_GROUP 8
/* Prompt matmat tile of float weights: 3 rows x 4 tokens x 2 accumulators
 * = 24 zmm, plus 3 weight vectors and one activation vector. 4 x 3 was as
 * fast, 2 x 6 slower (docs/kernels.md, "Matmat tiles"). -D overrides are for
 * such measurements. */
#ifndef TILE_R
#define TILE_R 3
#endif
#ifndef TILE_T
#define TILE_T 4
#endif

/* Loaders: 16 weights at element i as F32; the masked forms load only the
 * lanes in m and zero the rest. */
AI __m512 ld_f32(const void *p, int64_t i) {
    return _mm512_loadu_ps((const float *)p + i);
}
AI __m512 ldm_f32(const void *p, int64_t i, __mmask16 m) {
    return _mm512_maskz_loadu_ps(m, (const float *)p + i);
}
AI __m512 ld_f16(const void *p, int64_t i) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)p + i)));
}
AI __m512 ldm_f16(const void *p, int64_t i, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)p + i));
}
AI __m512 bf16_widen(__m256i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
AI __m512 ld_bf16(const void *p, int64_t i) {
    return bf16_widen(_mm256_loadu_si256((const __m256i *)((const uint16_t *)p + i)));
}
AI __m512 ldm_bf16(const void *p, int64_t i, __mmask16 m) {
    return bf16_widen(_mm256_maskz_loadu_epi16(m, (const uint16_t *)p + i));
}

AI __mmask16 tail_mask(int64_t left) {
    return (__mmask16)((1u << left) - 1u);
}

/* Makes the compiler hold v in a register: without this, gcc folds an
 * activation load into each of the tile's FMAs that use it (one load per
 * FMA again, the bottleneck the tiles remove). Emits no instruction. */
AI void keep_in_reg(__m512 *v) {
    __asm__("" : "+v"(*v));
}

/* The weight lines of one step (32 elements of es bytes), ahead bytes
 * ahead, into L2. */
AI void prefetch_l2(const char *p, const int es, size_t ahead) {
    _mm_prefetch(p + ahead, _MM_HINT_T1);
    if (es == 4)
        _mm_prefetch(p + ahead + 64, _MM_HINT_T1);
}

/* R rows x NT tokens; out[r * NT + t]. Each dot keeps two accumulators
 * of 16 lanes, with the same order of operations whatever R and NT are: a
 * row's result does not depend on how the caller groups rows or tokens (nor
 * on how threads split the rows), only on the SIMD level. PF: the weights
 * are prefetched; rows4 (R = 4) always prefetches, NM_PREFETCH_ROWS4_BYTES
 * ahead in each of its four streams. */
#define FLOAT_KERNEL(NAME, ES, PF, LD, LDM, XT, XLD, XLDM)                                         \
    AI void NAME##_rt(const void *w, size_t rb, const void *const *acts, const int R,              \
                      const int NT, int64_t n, float *out) {                                       \
        const XT *x[TOK_GROUP];                                                                    \
        const char *row[4];                                                                        \
        __m512 acc[4][TOK_GROUP][2];                                                               \
        _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++) x[t] = acts[t];                       \
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {                                      \
            row[r] = (const char *)w + (size_t)r * rb;                                             \
            _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++) {                                 \
                acc[r][t][0] = _mm512_setzero_ps();                                                \
                acc[r][t][1] = _mm512_setzero_ps();                                                \
            }                                                                                      \
        }                                                                                          \
        int64_t i = 0;                                                                             \
        for (; i + 32 <= n; i += 32) {                                                             \
            if (PF || R == 4)                                                                      \
                _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)                                \
                    prefetch_l2(row[r] + i * ES, ES, NM_PREFETCH_AHEAD(R));                        \
            _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {                                  \
                __m512 wv[4];                                                                      \
                _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) wv[r] =                        \
                    LD(row[r], i + 16 * h);                                                        \
                _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++) {                             \
                    __m512 xv = XLD(x[t], i + 16 * h);                                             \
                    keep_in_reg(&xv);                                                              \
                    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) acc[r][t][h] =             \
                        _mm512_fmadd_ps(wv[r], xv, acc[r][t][h]);                                  \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        for (; i < n; i += 16) {                                                                   \
            __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : tail_mask(n - i);                      \
            _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {                                  \
                __m512 wv = LDM(row[r], i, m);                                                     \
                _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++) acc[r][t][0] =                \
                    _mm512_fmadd_ps(wv, XLDM(x[t], i, m), acc[r][t][0]);                           \
            }                                                                                      \
        }                                                                                          \
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)                                        \
            _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++) out[r * NT + t] =                 \
                _mm512_reduce_add_ps(_mm512_add_ps(acc[r][t][0], acc[r][t][1]));                   \
    }                                                                                              \
    AI void NAME##_nt(const void *w, const void *const *acts, const int NT, int64_t n,             \
                      float *out) {                                                                \
        NAME##_rt(w, 0, acts, 1, NT, n, out);                                                      \
    }                                                                                              \
    __attribute__((unused)) static void NAME##_rows4(const void *w, size_t rb, const void *act,    \
                                                     int64_t n, float *out) {                      \
        NAME##_rt(w, rb, &act, 4, 1, n, out);                                                      \
    }                                                                                              \
    __attribute__((unused)) static void NAME##_tile(                                               \
        const void *w, size_t rb, const void *const *acts, int nt, int64_t n, float *out) {        \
        DISPATCH_TILE(NAME##_rt, TILE_R, TILE_T)                                                   \
    }

#define DISPATCH_NT(IMPL, ...)                                                                     \
    switch (nt) {                                                                                  \
    case 1:                                                                                        \
        IMPL(w, acts, 1, n, out, ##__VA_ARGS__);                                                   \
        break;                                                                                     \
    case 2:                                                                                        \
        IMPL(w, acts, 2, n, out, ##__VA_ARGS__);                                                   \
        break;                                                                                     \
    case 3:                                                                                        \
        IMPL(w, acts, 3, n, out, ##__VA_ARGS__);                                                   \
        break;                                                                                     \
    case 4:                                                                                        \
        IMPL(w, acts, 4, n, out, ##__VA_ARGS__);                                                   \
        break;                                                                                     \
    case 5:                                                                                        \
        IMPL(w, acts, 5, n, out, ##__VA_ARGS__);                                                   \
        break;                                                                                     \
    case 6:                                                                                        \
        IMPL(w, acts, 6, n, out, ##__VA_ARGS__);                                                   \
        break;                                                                                     \
    case 7:                                                                                        \
        IMPL(w, acts, 7, n, out, ##__VA_ARGS__);                                                   \
        break;                                                                                     \
    default:                                                                                       \
        IMPL(w, acts, 8, n, out, ##__VA_ARGS__);                                                   \
        break;                                                                                     \
    }

/* A tile of R rows for nt <= T tokens: one instance per token count, so
 * the accumulators stay in registers. */
#define TMIN(k, T) ((k) < (T) ? (k) : (T))
#define DISPATCH_TILE(IMPL, R, T, ...)                                                             \
    switch (nt) {                                                                                  \
    case 1:                                                                                        \
        IMPL(w, rb, acts, R, TMIN(1, T), n, out, ##__VA_ARGS__);                                   \
        break;                                                                                     \
    case 2:                                                                                        \
        IMPL(w, rb, acts, R, TMIN(2, T), n, out, ##__VA_ARGS__);                                   \
        break;                                                                                     \
    case 3:                                                                                        \
        IMPL(w, rb, acts, R, TMIN(3, T), n, out, ##__VA_ARGS__);                                   \
        break;                                                                                     \
    case 4:                                                                                        \
        IMPL(w, rb, acts, R, TMIN(4, T), n, out, ##__VA_ARGS__);                                   \
        break;                                                                                     \
    case 5:                                                                                        \
        IMPL(w, rb, acts, R, TMIN(5, T), n, out, ##__VA_ARGS__);                                   \
        break;                                                                                     \
    case 6:                                                                                        \
        IMPL(w, rb, acts, R, TMIN(6, T), n, out, ##__VA_ARGS__);                                   \
        break;                                                                                     \
    case 7:                                                                                        \
        IMPL(w, rb, acts, R, TMIN(7, T), n, out, ##__VA_ARGS__);                                   \
        break;                                                                                     \
    default:                                                                                       \
        IMPL(w, rb, acts, R, TMIN(8, T), n, out, ##__VA_ARGS__);                                   \
        break;                                                                                     \
    }

FLOAT_KERNEL(rowdot_f32, 4, 1, ld_f32, ldm_f32, float, ld_f32, ldm_f32)
/* F16 weights take F16 activations (nm_act_prepare). Decode takes four rows
 * a quarter of the matrix apart (rows4, with its prefetch): 0.55-0.60 of the
 * four-stream read one row at a time without prefetch, 0.94-0.97 so
 * (docs/kernels.md, "F16 decode"). One row alone does not prefetch. */
FLOAT_KERNEL(rowdot_f16, 2, 0, ld_f16, ldm_f16, uint16_t, ld_f16, ldm_f16)
/* attention: the F16 KV cache against the F32 query */
FLOAT_KERNEL(rowdot_f16_f32act, 2, 0, ld_f16, ldm_f16, float, ld_f32, ldm_f32)
/* prompts: F16 weights x the F16-rounded activations stored widened; the
 * tiles are compute-bound and keep the weight prefetch */
FLOAT_KERNEL(rowdot_f16w, 2, 1, ld_f16, ldm_f16, float, ld_f32, ldm_f32)
/* BF16 weights take BF16 activations (nm_act_prepare); without AVX512_BF16
 * both are widened to F32, which gives the same products as vdpbf16ps. */
FLOAT_KERNEL(rowdot_bf16, 2, 1, ld_bf16, ldm_bf16, uint16_t, ld_bf16, ldm_bf16)
/* the alternative measured in docs/kernels.md: F32 activations */
FLOAT_KERNEL(rowdot_bf16_f32act, 2, 1, ld_bf16, ldm_bf16, float, ld_f32, ldm_f32)

static void rowdot_f32(const void *w, const void *const *acts, int nt, int64_t n, float *out) {
    DISPATCH_NT(rowdot_f32_nt)
}
static void rowdot_f16(const void *w, const void *const *acts, int nt, int64_t n, float *out) {
    DISPATCH_NT(rowdot_f16_nt)
}
/* F16 weights x F16-rounded activations stored widened (prompts) */
static void rowdot_f16_wide(const void *w, const void *const *acts, int nt, int64_t n, float *out) {
    DISPATCH_NT(rowdot_f16w_nt)
}
static void rowdot_bf16(const void *w, const void *const *acts, int nt, int64_t n, float *out) {
    DISPATCH_NT(rowdot_bf16_nt)
}
static void rowdot_bf16_f32act(const void *w, const void *const *acts, int nt, int64_t n,
                               float *out) {
    DISPATCH_NT(rowdot_bf16_f32act_nt);
}

/* ---- Q8_0 / Q4_0 ------------------------------------------------------
 * Q8_0: two blocks (64 elements) per step: their 8-bit products are summed
 * into 8 int32 lanes per block, converted to F32 and scaled by d_w * d_a,
 * which the step builds for both blocks at once with a 2-lane F16C
 * conversion and one permute. */

/* sum over groups of 4 bytes of u (unsigned) * s (signed), as 16 int32 */
AI __m512i dot_us8(__m512i u, __m512i s, const int VNNI) {
    if (VNNI)
        return _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, s);
    /* |u| <= 128 and |s| <= 127, so the int16 pair sums cannot saturate */
    return _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1));
}

/* [d0, d1, 0, 0] from two F16 block scales (d1 = 0 for a lone block) */
AI __m128 scales2(uint16_t d0, uint16_t d1) {
    return _mm_cvtph_ps(_mm_cvtsi32_si128((int)((uint32_t)d0 | (uint32_t)d1 << 16)));
}
AI __m128 load2(const float *p, const int two) {
    /* the m array is only 4-byte aligned: an unaligned 8-byte load */
    return two ? _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)p)) : _mm_load_ss(p);
}
/* lanes 0-7 get s[0], lanes 8-15 get s[1] */
AI __m512 spread2(__m128 s) {
    const __m512i idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(s));
}
AI __m512i load_act(const int8_t *p, const int two) {
    if (two)
        return _mm512_loadu_si512(p);
    return _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)p));
}

AI __m512i q8_weights(const nm_block_q8_0 *w, const int two) {
    __m256i lo = _mm256_loadu_si256((const __m256i *)w[0].qs);
    if (!two)
        return _mm512_zextsi256_si512(lo);
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo),
                              _mm256_loadu_si256((const __m256i *)w[1].qs), 1);
}

/* One step over one or two blocks for R rows x NT tokens. Each row's
 * weights and scales are prepared once for all tokens, each token's
 * activation bytes and scales once for all rows. */
AI void q8_step(const char *const *row, int64_t b, const int8_t *const *qa, const float *const *da,
                __m512 acc[4][TOK_GROUP], const int R, const int NT, const int two,
                const int VNNI) {
    /* no software prefetch here: it halved the streaming speed of this
     * loop as decode loop (0.86 -> 0.46 of read bandwidth at 8-64 KiB
     * ahead); decode now uses q8_rows */
    __m512i wabs[4];
    __mmask64 neg[4];
    __m512 dw[4];
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
        const nm_block_q8_0 *w = (const nm_block_q8_0 *)row[r] + b;
        __m512i wq = q8_weights(w, two);
        wabs[r] = _mm512_abs_epi8(wq);
        neg[r] = _mm512_movepi8_mask(wq);
        dw[r] = spread2(scales2(w[0].d, two ? w[1].d : 0));
    }
    _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++) {
        __m512i a = load_act(qa[t] + b * 32, two);
        __m512 d = spread2(load2(da[t] + b, two));
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
            /* move the weight's sign onto the activation: |w| * (sign(w) a) */
            __m512i sa = _mm512_mask_sub_epi8(a, neg[r], _mm512_setzero_si512(), a);
            __m512 f = _mm512_cvtepi32_ps(dot_us8(wabs[r], sa, VNNI));
            acc[r][t] = _mm512_fmadd_ps(f, _mm512_mul_ps(dw[r], d), acc[r][t]);
        }
    }
}

/* Decode (one token): one block per 256-bit step, even blocks into one
 * accumulator and odd ones into another. Lane for lane that is q8_step's
 * sequence (the 512-bit accumulator's lanes 0-7 hold the even blocks,
 * lanes 8-15 the odd ones; the integer sums are exact, the scale product is
 * the same F32 multiply), and the two halves are joined for the same final
 * sum: matvec and matmat give the same bits. It is the AVX2 loop's shape
 * and prefetch, which streamed from DRAM at least as well as the 512-bit
 * two-block loop; it is 15% slower than that one from L2, where decode
 * never runs (docs/kernels.md, "AVX-512 Q8_0 decode: one block per
 * 256-bit step"). */
AI __m256i dot_us8_256(__m256i u, __m256i s, const int VNNI) {
    if (VNNI)
        return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

AI __m256 q8_block(const nm_block_q8_0 *w, const int8_t *qa, const float *da, __m256 acc,
                   const int VNNI, size_t ahead) {
    _mm_prefetch((const char *)w + ahead, _MM_HINT_T1);
    __m256i wq = _mm256_loadu_si256((const __m256i *)w->qs);
    __m256i a = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)qa), wq);
    __m256 f = _mm256_cvtepi32_ps(dot_us8_256(_mm256_abs_epi8(wq), a, VNNI));
    /* d_w * d_a in every lane, with no scalar-to-vector moves */
    __m256 dw = _mm256_cvtph_ps(_mm_set1_epi16((short)w->d));
    return _mm256_fmadd_ps(f, _mm256_mul_ps(dw, _mm256_set1_ps(*da)), acc);
}

/* R rows rb apart (R = 1, or 4 for rows4: each activation block loaded
 * once for the four rows), each row's sequence the same. */
AI void q8_rows(const void *w, size_t rb, const void *act, int64_t n, float *out, const int R,
                const int VNNI) {
    const int64_t nb = n / 32;
    const int8_t *qa = nm_actq_qs(act);
    const float *da = nm_actq_d(act, n);
    const nm_block_q8_0 *row[4];
    __m256 even[4], odd[4];
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
        row[r] = (const nm_block_q8_0 *)((const char *)w + (size_t)r * rb);
        even[r] = odd[r] = _mm256_setzero_ps();
    }
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2)
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
            even[r] =
                q8_block(row[r] + b, qa + b * 32, da + b, even[r], VNNI, NM_PREFETCH_AHEAD(R));
            odd[r] = q8_block(row[r] + b + 1, qa + b * 32 + 32, da + b + 1, odd[r], VNNI,
                              NM_PREFETCH_AHEAD(R));
        }
    if (b < nb)
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) even[r] =
            q8_block(row[r] + b, qa + b * 32, da + b, even[r], VNNI, NM_PREFETCH_AHEAD(R));
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) out[r] =
        _mm512_reduce_add_ps(_mm512_insertf32x8(_mm512_castps256_ps512(even[r]), odd[r], 1));
}

AI void q8_rt(const void *w, size_t rb, const void *const *acts, const int R, const int NT,
              int64_t n, float *out, const int VNNI) {
    const int64_t nb = n / 32;
    const char *row[4];
    const int8_t *qa[TOK_GROUP];
    const float *da[TOK_GROUP];
    __m512 acc[4][TOK_GROUP];
    _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++) {
        qa[t] = nm_actq_qs(acts[t]);
        da[t] = nm_actq_d(acts[t], n);
    }
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
        row[r] = (const char *)w + (size_t)r * rb;
        _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++) acc[r][t] = _mm512_setzero_ps();
    }
    int64_t b = 0;
    /* Unlike the decode loop (docs/kernels.md), the tiles gain from the
     * prefetch: 8 tokens of TinyLlama's FFN matrix from DRAM ran at 0.6 of
     * their in-cache rate without it (2 threads), 0.87 with it. */
    for (; b + 2 <= nb; b += 2) {
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) _mm_prefetch(
            row[r] + b * (int64_t)sizeof(nm_block_q8_0) + NM_PREFETCH_BYTES, _MM_HINT_T1);
        q8_step(row, b, qa, da, acc, R, NT, 1, VNNI);
    }
    if (b < nb)
        q8_step(row, b, qa, da, acc, R, NT, 0, VNNI);
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++) out[r * NT + t] =
            _mm512_reduce_add_ps(acc[r][t]);
}

AI void q8_nt(const void *row, const void *const *acts, const int NT, int64_t n, float *out,
              const int VNNI) {
    if (NT == 1)
        q8_rows(row, 0, acts[0], n, out, 1, VNNI);
    else
        q8_rt(row, 0, acts, 1, NT, n, out, VNNI);
}

#ifndef Q8_TILE_R
#define Q8_TILE_R 2
#endif
#ifndef Q8_TILE_T
#define Q8_TILE_T 8
#endif
static void tile_q8_0_bw(const void *w, size_t rb, const void *const *acts, int nt, int64_t n,
                         float *out) {
    DISPATCH_TILE(q8_rt, Q8_TILE_R, Q8_TILE_T, 0)
}

/* Q4_0 takes four blocks (72 bytes) per step. Two 64-byte loads (at +0 and
 * +8) cover them; one word permute gathers the four blocks' 16 nibble bytes
 * into the four 128-bit lanes, another spreads the four F16 scales to 4
 * lanes each. The nibbles q in 0..15 are the unsigned operand as they are:
 * low nibbles against the activations' first 16 bytes of each block, high
 * nibbles against the other 16, so 128-bit lane k of the int32 sums holds
 * four partial sums of block k, and the scales apply lane by lane with no
 * horizontal sum in the loop. The -8 offset is m = 8 d_a sum(a) per block
 * (nm_actq_m), put in one lane of the four:
 *     acc += d_w * (d_a * isum - m)      (isum from the unsigned nibbles)
 * Each dot has this one sequence whatever the rows and tokens per call. */

/* Word indexes into (bytes 0..63, bytes 8..71) of a step: block k's
 * nibbles start at byte 18k + 2; block 3 comes from the second load. */
static const uint16_t q4_nibble_words[32] = {1,  2,  3,  4,  5,  6,  7,  8,  10, 11, 12,
                                             13, 14, 15, 16, 17, 19, 20, 21, 22, 23, 24,
                                             25, 26, 56, 57, 58, 59, 60, 61, 62, 63};
/* block k's F16 scale (word 9k) into words 4k..4k+3 */
static const uint16_t q4_scale_words[32] = {0, 0, 0, 0, 9, 9, 9, 9, 18, 18, 18, 18, 27, 27, 27, 27};
static const int32_t q4_spread[16] = {0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3};

typedef struct q4_wstep {
    __m512i lo, hi; /* nibbles of blocks 0..3 (elements 0-15, 16-31) */
    __m512 d;       /* d_w of block k in lanes 4k..4k+3 */
} q4_wstep;

typedef struct q4_astep {
    __m512i lo, hi; /* activation bytes matching q4_wstep.lo / .hi */
    __m512 d, m;    /* d_a spread like q4_wstep.d; m in lane 4k only */
} q4_astep;

/* k = blocks in this step (1..4); k < 4 only for a row's last step, whose
 * masked loads read nothing past the row and zero the missing blocks. */
AI q4_wstep q4_unpack(const char *p, const int k, size_t ahead) {
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    __m512i l0, l1;
    if (k == 4) {
        /* unlike the Q8_0 loop, this one needs the prefetch: without it
         * four rows at once streamed at 0.40 of the read bandwidth */
        _mm_prefetch(p + ahead, _MM_HINT_T1);
        _mm_prefetch(p + ahead + 64, _MM_HINT_T1);
        l0 = _mm512_loadu_si512(p);
        l1 = _mm512_loadu_si512(p + 8);
    } else {
        l0 = _mm512_maskz_loadu_epi8(((__mmask64)1 << (18 * k)) - 1, p);
        l1 = _mm512_setzero_si512();
    }
    __m512i raw = _mm512_permutex2var_epi16(l0, _mm512_loadu_si512(q4_nibble_words), l1);
    __m512i dh = _mm512_permutexvar_epi16(_mm512_loadu_si512(q4_scale_words), l0);
    return (q4_wstep){
        .lo = _mm512_and_si512(raw, m4),
        .hi = _mm512_and_si512(_mm512_srli_epi16(raw, 4), m4),
        .d = _mm512_cvtph_ps(_mm512_castsi512_si256(dh)),
    };
}

AI q4_astep q4_act(const void *act, int64_t n, int64_t b, const int k) {
    const int8_t *qa = nm_actq_qs(act) + b * 32;
    __m512i a0, a1;
    __m128 d4, m4;
    if (k == 4) {
        a0 = _mm512_loadu_si512(qa);
        a1 = _mm512_loadu_si512(qa + 64);
        d4 = _mm_loadu_ps(nm_actq_d(act, n) + b);
        m4 = _mm_loadu_ps(nm_actq_m(act, n) + b);
    } else {
        __mmask64 full = ~(__mmask64)0, half = ((__mmask64)1 << 32) - 1;
        a0 = _mm512_maskz_loadu_epi8(k >= 2 ? full : half, qa);
        a1 = _mm512_maskz_loadu_epi8(k == 3 ? half : 0, qa + 64);
        __mmask8 bm = (__mmask8)((1u << k) - 1);
        d4 = _mm_maskz_loadu_ps(bm, nm_actq_d(act, n) + b);
        m4 = _mm_maskz_loadu_ps(bm, nm_actq_m(act, n) + b);
    }
    const __m512i spread = _mm512_loadu_si512(q4_spread);
    return (q4_astep){
        /* [a0 lane 0, a0 lane 2, a1 lane 0, a1 lane 2]: each block's first
         * 16 bytes; the odd lanes are the second 16 */
        .lo = _mm512_shuffle_i64x2(a0, a1, _MM_SHUFFLE(2, 0, 2, 0)),
        .hi = _mm512_shuffle_i64x2(a0, a1, _MM_SHUFFLE(3, 1, 3, 1)),
        .d = _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(d4)),
        .m = _mm512_maskz_permutexvar_ps(0x1111, spread, _mm512_castps128_ps512(m4)),
    };
}

AI __m512 q4_fma(const q4_wstep *w, const q4_astep *a, __m512 acc, const int VNNI) {
    __m512i s;
    if (VNNI)
        s = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), w->lo, a->lo), w->hi,
                                a->hi);
    else
        s = _mm512_add_epi32(dot_us8(w->lo, a->lo, 0), dot_us8(w->hi, a->hi, 0));
    __m512 t = _mm512_fmsub_ps(_mm512_cvtepi32_ps(s), a->d, a->m);
    return _mm512_fmadd_ps(t, w->d, acc);
}

/* One step of R rows x NT tokens. */
AI void q4_step(const char *const *row, int64_t b, const void *const *acts, int64_t n,
                __m512 acc[4][TOK_GROUP], const int R, const int NT, const int k, const int VNNI) {
    q4_wstep ws[4];
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) ws[r] =
        q4_unpack(row[r] + b * (int64_t)sizeof(nm_block_q4_0), k, NM_PREFETCH_AHEAD(R));
    _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++) {
        q4_astep as = q4_act(acts[t], n, b, k);
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) acc[r][t] =
            q4_fma(&ws[r], &as, acc[r][t], VNNI);
    }
}

AI void q4_rt(const void *w, size_t rb, const void *const *acts, const int R, const int NT,
              int64_t n, float *out, const int VNNI) {
    const int64_t nb = n / 32;
    const char *row[4];
    __m512 acc[4][TOK_GROUP];
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
        row[r] = (const char *)w + (size_t)r * rb;
        _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++) acc[r][t] = _mm512_setzero_ps();
    }
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4)
        q4_step(row, b, acts, n, acc, R, NT, 4, VNNI);
    switch (nb - b) {
    case 3:
        q4_step(row, b, acts, n, acc, R, NT, 3, VNNI);
        break;
    case 2:
        q4_step(row, b, acts, n, acc, R, NT, 2, VNNI);
        break;
    case 1:
        q4_step(row, b, acts, n, acc, R, NT, 1, VNNI);
        break;
    }
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++) out[r * NT + t] =
            _mm512_reduce_add_ps(acc[r][t]);
}

AI void q4_nt(const void *w, const void *const *acts, const int NT, int64_t n, float *out,
              const int VNNI) {
    q4_rt(w, 0, acts, 1, NT, n, out, VNNI);
}

static void rowdot_q8_0_bw(const void *w, const void *const *acts, int nt, int64_t n, float *out) {
    DISPATCH_NT(q8_nt, 0)
}
static void rows4_q8_0_bw(const void *w, size_t rb, const void *act, int64_t n, float *out) {
    q8_rows(w, rb, act, n, out, 4, 0);
}
static void rowdot_q4_0_vnni(const void *w, const void *const *acts, int nt, int64_t n,
                             float *out) {
    DISPATCH_NT(q4_nt, 1)
}
static void rowdot_q4_0_bw(const void *w, const void *const *acts, int nt, int64_t n, float *out) {
    DISPATCH_NT(q4_nt, 0)
}
/* Q4_0 prompt tile: 2 rows x 8 tokens; 25% more tokens/s than one row
 * (the per-token activation shuffles serve two rows), 3 x 4 about the same
 * as 2 x 8. */
#ifndef Q4_TILE_R
#define Q4_TILE_R 2
#endif
#ifndef Q4_TILE_T
#define Q4_TILE_T 8
#endif
static void tile_q4_0_vnni(const void *w, size_t rb, const void *const *acts, int nt, int64_t n,
                           float *out) {
    DISPATCH_TILE(q4_rt, Q4_TILE_R, Q4_TILE_T, 1)
}
static void tile_q4_0_bw(const void *w, size_t rb, const void *const *acts, int nt, int64_t n,
                         float *out) {
    DISPATCH_TILE(q4_rt, Q4_TILE_R, Q4_TILE_T, 0)
}

static void rows4_q4_0_vnni(const void *w, size_t rb, const void *act, int64_t n, float *out) {
    q4_rt(w, rb, &act, 4, 1, n, out, 1);
}
static void rows4_q4_0_bw(const void *w, size_t rb, const void *act, int64_t n, float *out) {
    q4_rt(w, rb, &act, 4, 1, n, out, 0);
}

/* ---- BF16 with AVX512_BF16: vdpbf16ps multiplies pairs of BF16 exactly
 * and adds them to F32 lanes (denormal inputs count as zero). ------------ */

AI void bf16dp_rt(const void *w, size_t rb, const void *const *acts, const int R, const int NT,
                  int64_t n, float *out, const size_t AHEAD) {
    const uint16_t *row[4], *x[TOK_GROUP];
    __m512 acc[4][TOK_GROUP];
    _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++) x[t] = acts[t];
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
        row[r] = (const uint16_t *)((const char *)w + (size_t)r * rb);
        _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++) acc[r][t] = _mm512_setzero_ps();
    }
    for (int64_t i = 0; i < n; i += 32) {
        __mmask32 m = n - i >= 32 ? (__mmask32)0xffffffffu : (__mmask32)((1ull << (n - i)) - 1);
        __m512i wv[4];
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
            _mm_prefetch((const char *)(row[r] + i) + AHEAD, _MM_HINT_T1);
            wv[r] = _mm512_maskz_loadu_epi16(m, row[r] + i);
        }
        _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++) {
            __m512i xv = _mm512_maskz_loadu_epi16(m, x[t] + i);
            __asm__("" : "+v"(xv)); /* as keep_in_reg */
            _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) acc[r][t] =
                _mm512_dpbf16_ps(acc[r][t], (__m512bh)wv[r], (__m512bh)xv);
        }
    }
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++) out[r * NT + t] =
            _mm512_reduce_add_ps(acc[r][t]);
}

AI void bf16dp_nt(const void *w, const void *const *acts, const int NT, int64_t n, float *out) {
    bf16dp_rt(w, 0, acts, 1, NT, n, out, NM_PREFETCH_BYTES);
}

/* one accumulator per dot: 4 rows x 6 tokens = 24 of the 32 registers */
static void tile_bf16_dpbf16(const void *w, size_t rb, const void *const *acts, int nt, int64_t n,
                             float *out) {
    DISPATCH_TILE(bf16dp_rt, 4, 6, NM_PREFETCH_BYTES)
}

/* decode: the four streams of rows4 (the tile's four adjacent rows keep
 * the one-stream distance) */
static void rows4_bf16_dpbf16(const void *w, size_t rb, const void *act, int64_t n, float *out) {
    bf16dp_rt(w, rb, &act, 4, 1, n, out, NM_PREFETCH_ROWS4_BYTES);
}

static void rowdot_bf16_dpbf16(const void *w, const void *const *acts, int nt, int64_t n,
                               float *out) {
    DISPATCH_NT(bf16dp_nt);
}

/* ---- alternative measured by bench_kernels for docs/kernels.md: Q8_0
 * weights widened to F32 against F32 activations. Not used by nm_matvec. */
AI void q8f_nt(const void *row, const void *const *acts, const int NT, int64_t n, float *out) {
    const nm_block_q8_0 *w = row;
    const float *x[TOK_GROUP];
    __m512 acc[TOK_GROUP];
    _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++) {
        x[t] = acts[t];
        acc[t] = _mm512_setzero_ps();
    }
    for (int64_t b = 0; b < n / 32; b++) {
        __m512 w0 =
            _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)w[b].qs)));
        __m512 w1 = _mm512_cvtepi32_ps(
            _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(w[b].qs + 16))));
        __m512 d = _mm512_set1_ps(_cvtsh_ss(w[b].d));
        _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++) {
            __m512 s = _mm512_mul_ps(w0, _mm512_loadu_ps(x[t] + b * 32));
            s = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x[t] + b * 32 + 16), s);
            acc[t] = _mm512_fmadd_ps(s, d, acc[t]);
        }
    }
    _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++) out[t] = _mm512_reduce_add_ps(acc[t]);
}

static void rowdot_q8_0_f32act(const void *w, const void *const *acts, int nt, int64_t n,
                               float *out) {
    DISPATCH_NT(q8f_nt)
}

/* ---- vector helpers for attention ------------------------------------ */

static float dot_f32(const float *a, const float *b, int64_t n) {
    const void *acts[1] = {b};
    float r;
    rowdot_f32_nt(a, acts, 1, n, &r);
    return r;
}

static float dot_f16_f32(const uint16_t *a, const float *b, int64_t n) {
    const void *acts[1] = {b};
    float r;
    rowdot_f16_f32act_nt(a, acts, 1, n, &r);
    return r;
}

#define AXPY(NAME, T, LDM)                                                                         \
    static void NAME(float *y, float a, const T *x, int64_t n) {                                   \
        __m512 va = _mm512_set1_ps(a);                                                             \
        for (int64_t i = 0; i < n; i += 16) {                                                      \
            __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : tail_mask(n - i);                      \
            __m512 yv = _mm512_maskz_loadu_ps(m, y + i);                                           \
            _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(va, LDM(x, i, m), yv));                \
        }                                                                                          \
    }

AXPY(axpy_f32, float, ldm_f32)
AXPY(axpy_f16, uint16_t, ldm_f16)

static void round_f16(const float *x, int64_t n, uint16_t *h, float *w) {
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : tail_mask(n - i);
        __m256i v = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, x + i), _MM_FROUND_TO_NEAREST_INT);
        if (h)
            _mm256_mask_storeu_epi16(h + i, m, v);
        else
            _mm512_mask_storeu_ps(w + i, m, _mm512_cvtph_ps(v));
    }
}

/* The sub-path sets, by NM_AVX512_* features, and the alternative. */
static nm_kernel_set sets[16], set_alt;

_Static_assert(TILE_R < 4 && Q8_TILE_R < 4 && Q4_TILE_R < 4,
               "NM_PREFETCH_AHEAD: four rows are rows4");

static void build_set(nm_kernel_set *ks, const char *name, int features) {
    const bool vnni = features & NM_AVX512_VNNI, bf16 = features & NM_AVX512_BF16;
    *ks = *nm_kernels_scalar();
    ks->name = name;
    ks->tok_group = TOK_GROUP;
    ks->k[NM_TYPE_F32] =
        NM_TYPE_KERNELS(rowdot_f32, rowdot_f32_rows4, rowdot_f32_tile, TILE_R, TILE_T);
    ks->k[NM_TYPE_F16] =
        NM_TYPE_KERNELS(rowdot_f16, rowdot_f16_rows4, rowdot_f16_tile, TILE_R, TILE_T);
    ks->f16_wide = NM_TYPE_KERNELS(rowdot_f16_wide, NULL, rowdot_f16w_tile, TILE_R, TILE_T);
    if (bf16)
        ks->k[NM_TYPE_BF16] =
            NM_TYPE_KERNELS(rowdot_bf16_dpbf16, rows4_bf16_dpbf16, tile_bf16_dpbf16, 4, 6);
    else
        ks->k[NM_TYPE_BF16] =
            NM_TYPE_KERNELS(rowdot_bf16, rowdot_bf16_rows4, rowdot_bf16_tile, TILE_R, TILE_T);
    ks->k[NM_TYPE_Q8_0] =
        NM_TYPE_KERNELS(rowdot_q8_0_bw, rows4_q8_0_bw, tile_q8_0_bw, Q8_TILE_R, Q8_TILE_T);
    nm_kernels_avx512_q8_0(ks, features); /* VNNI: four blocks per step */
    ks->act_quantize_q8 = nm_act_quantize_q8_avx2;
    ks->k[NM_TYPE_Q4_0] = NM_TYPE_KERNELS(
        vnni ? rowdot_q4_0_vnni : rowdot_q4_0_bw, vnni ? rows4_q4_0_vnni : rows4_q4_0_bw,
        vnni ? tile_q4_0_vnni : tile_q4_0_bw, Q4_TILE_R, Q4_TILE_T);
    ks->dot_f32 = dot_f32;
    ks->dot_f16_f32 = dot_f16_f32;
    ks->axpy_f32 = axpy_f32;
    ks->axpy_f16 = axpy_f16;
    ks->round_f16 = round_f16;
    ks->swiglu = nm_swiglu_avx2;
    ks->sum_words = nm_sum_words_avx2;
    nm_kernels_avx512_kquant(ks, features);
    nm_kernels_avx512_legacy(ks, features);
    if (vnni && (features & NM_AVX512_AMX)) {
        nm_kernels_avx512_amx(ks, features);
        nm_kernels_avx512_q8_0_amx(ks);
    }
}

/* A sub-path set's name: "avx512" and a suffix per NM_AVX512_* bit, in
 * bit order ("avx512-vnni-bf16-gfni-amx"). */
static void set_name(int features, char *name, size_t size) {
    _Static_assert(NM_AVX512_VNNI == 1 && NM_AVX512_BF16 == 2 && NM_AVX512_GFNI == 4 &&
                       NM_AVX512_AMX == 8,
                   "the suffixes in bit order");
    static const char *const suffix[] = {"-vnni", "-bf16", "-gfni", "-amx"};
    size_t len = (size_t)snprintf(name, size, "avx512");
    for (int bit = 0; bit < 4; bit++)
        if (features & (1 << bit))
            len += (size_t)snprintf(name + len, size - len, "%s", suffix[bit]);
}

static void build_sets(void) {
    static char names[16][32];
    for (int f = 0; f < 16; f++) {
        set_name(f, names[f], sizeof names[f]);
        build_set(&sets[f], names[f], f);
    }
    /* the alternative takes F32 activations for Q8_0 and BF16: no Q8_0 tile */
    build_set(&set_alt, "avx512-alt", 0);
    set_alt.k[NM_TYPE_Q8_0] = NM_TYPE_KERNELS(rowdot_q8_0_f32act, NULL, NULL, 0, 0);
    set_alt.k[NM_TYPE_BF16] = NM_TYPE_KERNELS(rowdot_bf16_f32act, rowdot_bf16_f32act_rows4,
                                              rowdot_bf16_f32act_tile, TILE_R, TILE_T);
}

static pthread_once_t sets_once = PTHREAD_ONCE_INIT;

const nm_kernel_set *nm_kernels_avx512_alt(void) {
    pthread_once(&sets_once, build_sets);
    return &set_alt;
}

const nm_kernel_set *nm_kernels_avx512_variant(int features) {
    pthread_once(&sets_once, build_sets);
    return &sets[features & (NM_AVX512_VNNI | NM_AVX512_BF16 | NM_AVX512_GFNI | NM_AVX512_AMX)];
}

/* The NM_AVX512_* sub-paths this CPU has, but AMX (its own level) */
static int best_features(void) {
    __builtin_cpu_init();
    int f = __builtin_cpu_supports("avx512vnni") ? NM_AVX512_VNNI : 0;
    if (__builtin_cpu_supports("avx512bf16"))
        f |= NM_AVX512_BF16;
    if (__builtin_cpu_supports("gfni"))
        f |= NM_AVX512_GFNI;
    return f;
}

const nm_kernel_set *nm_kernels_avx512(void) {
    return nm_kernels_avx512_variant(best_features());
}

const nm_kernel_set *nm_kernels_avx512_amx_set(void) {
    return nm_kernels_avx512_variant(best_features() | NM_AVX512_AMX);
}
