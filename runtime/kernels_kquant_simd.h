/* AVX2-level helpers of the K-quant kernels, shared by kernels_avx2_kquant.c
 * and kernels_avx512_kquant.c (each includes this once; both are compiled
 * with AVX2, F16C and FMA): scale unpacking, the horizontal sums and the
 * scalar reference's float step, four (row, token) pairs at a time. */
#ifndef NM_KERNELS_KQUANT_SIMD_H
#define NM_KERNELS_KQUANT_SIMD_H

#include "kernel_set.h"

#include "gguf/quant_kquant.h"

#include <immintrin.h>
#include <stddef.h>

#define KQ_AI static inline __attribute__((always_inline))

/* The GF(2) affine matrix (GFNI's vgf2p8affineqb, one per 64-bit lane)
 * that moves bits [at, at + width) of a byte to bits [to, to + width) and
 * clears the rest: result bit i is the parity of matrix byte 7 - i AND the
 * byte. */
KQ_AI uint64_t kq_gf_move(int at, int to, int width) {
    uint64_t m = 0;
    for (int i = 0; i < width; i++)
        m |= (uint64_t)(1u << (at + i)) << (8 * (7 - to - i));
    return m;
}

/* kq_gf_move to bit 0. */
KQ_AI uint64_t kq_gf_bits(int at, int width) {
    return kq_gf_move(at, 0, width);
}

/* Q4_K / Q5_K: the 6-bit scales and minima (nm_k4_scale_min) of the 16
 * bytes at the block's start (d, dmin, scales), as bytes: scales 0..7,
 * then minima 0..7. */
KQ_AI __m128i kq_k4_scales(const void *blk) {
    __m128i v = _mm_loadu_si128((const __m128i *)blk);
    /* bytes s0..3, s8..11, s4..7, s8..11 and (zero) s0..3 (zero) s4..7 */
    __m128i a = _mm_shuffle_epi8(
        v, _mm_setr_epi8(4, 5, 6, 7, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15));
    __m128i b = _mm_shuffle_epi8(
        v, _mm_setr_epi8(-1, -1, -1, -1, 4, 5, 6, 7, -1, -1, -1, -1, 8, 9, 10, 11));
    __m128i lo =
        _mm_and_si128(a, _mm_setr_epi8(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 0, 0, 0, 0));
    __m128i a4 = _mm_and_si128(_mm_srli_epi16(a, 4), _mm_setr_epi32(0, 0, 0, 0x0f0f0f0f));
    __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 2), _mm_set1_epi8(0x30));
    return _mm_or_si128(_mm_or_si128(lo, a4), hi);
}

/* Q3_K: the 16 signed scales (nm_q3k_scale) as int8: low nibbles from bytes
 * 0..7, the two high bits of scale 4k + i from byte 8 + i, bits 2k. */
KQ_AI __m128i kq_q3k_scales(const uint8_t *s) {
    const __m128i m4 = _mm_set1_epi8(15);
    __m128i x = _mm_loadl_epi64((const __m128i *)s);
    __m128i lo = _mm_unpacklo_epi64(_mm_and_si128(x, m4), _mm_and_si128(_mm_srli_epi16(x, 4), m4));
    uint32_t h;
    __builtin_memcpy(&h, s + 8, 4);
    __m128i hi = _mm_and_si128(_mm_srlv_epi32(_mm_set1_epi32((int)h), _mm_set_epi32(6, 4, 2, 0)),
                               _mm_set1_epi8(3));
    return _mm_sub_epi8(_mm_or_si128(lo, _mm_slli_epi16(hi, 4)), _mm_set1_epi8(32));
}

/* The offsets' coefficients on the bsums (isum += bias . bsums) of types
 * that store codes unsigned: -shift'th power of two times the scale. */
KQ_AI __m256i kq_bias(__m128i s8, int shift) {
    return _mm256_sub_epi16(_mm256_setzero_si256(),
                            _mm256_slli_epi16(_mm256_cvtepi8_epi16(s8), shift));
}

/* Prefetches one block's lines `ahead` bytes ahead into L2
 * (NM_PREFETCH_BYTES, or NM_PREFETCH_ROWS4_BYTES in rows4 kernels): one per
 * 64 bytes of the block (the line holding its end is the next block's
 * first). */
KQ_AI void kq_prefetch(const char *blk, size_t bsize, size_t ahead) {
    for (size_t o = 0; o < bsize; o += 64)
        _mm_prefetch(blk + ahead + o, _MM_HINT_T1);
}

/* d (and dmin, the F16 after it, when MIN) of 4 blocks at blk, blk + rb,
 * ... as floats: one conversion for the 4 rows. */
KQ_AI void kq_gather_d4(const char *blk, size_t rb, size_t doff, const int MIN, __m128 *d,
                        __m128 *dm) {
    const char *p = blk + doff;
    if (MIN) {
        /* four loads put together by unpacks: stored to a buffer and read
         * back as one vector, they missed store forwarding and cost Q2_K's
         * rows4 loop 20% of its in-cache speed */
        __m128i x[4];
        _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) x[r] =
            _mm_loadu_si32(p + (size_t)r * rb);
        __m256 f = _mm256_cvtph_ps(
            _mm_unpacklo_epi64(_mm_unpacklo_epi32(x[0], x[1]), _mm_unpacklo_epi32(x[2], x[3])));
        *d = _mm256_castps256_ps128(
            _mm256_permutevar8x32_ps(f, _mm256_setr_epi32(0, 2, 4, 6, 0, 0, 0, 0)));
        *dm = _mm256_castps256_ps128(
            _mm256_permutevar8x32_ps(f, _mm256_setr_epi32(1, 3, 5, 7, 0, 0, 0, 0)));
    } else {
        /* compiled to vpinsrw, no store: in cache Q3_K and IQ4_XS ran 3% and
         * 5% faster this way than with the unpacks above (Q6_K 6% slower) */
        uint16_t x[8] = {0};
        for (int r = 0; r < 4; r++)
            __builtin_memcpy(&x[r], p + (size_t)r * rb, 2);
        *d = _mm_cvtph_ps(_mm_loadu_si128((const __m128i *)x));
        *dm = *d;
    }
}

/* The F16 at p as a float. */
KQ_AI float kq_f16(const char *p) {
    uint16_t h;
    __builtin_memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

/* The lane sums of v[0..3] as the 4 lanes of one vector: a transpose by
 * unpacks and adds (one uop each; vphaddd is three). */
KQ_AI __m128i kq_hsum4(const __m256i *v) {
    __m256i a01 =
        _mm256_add_epi32(_mm256_unpacklo_epi32(v[0], v[1]), _mm256_unpackhi_epi32(v[0], v[1]));
    __m256i a23 =
        _mm256_add_epi32(_mm256_unpacklo_epi32(v[2], v[3]), _mm256_unpackhi_epi32(v[2], v[3]));
    __m256i t = _mm256_add_epi32(_mm256_unpacklo_epi64(a01, a23), _mm256_unpackhi_epi64(a01, a23));
    return _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
}

/* kq_step4 with the 4 pairs' isum and msum already added up, a lane each. */
KQ_AI __m128 kq_step4_sums(__m128 acc, __m128 d, __m128 dm, __m128 da, __m128i isum, __m128i msum,
                           const int MIN) {
    __m128 t = _mm_mul_ps(_mm_mul_ps(d, da), _mm_cvtepi32_ps(isum));
    if (MIN)
        t = _mm_sub_ps(t, _mm_mul_ps(_mm_mul_ps(dm, da), _mm_cvtepi32_ps(msum)));
    return _mm_add_ps(acc, t);
}

/* The scalar kernels' float step (kernels_scalar_kquant.c), in the scalar
 * order, for 4 (row, token) pairs: d and dm are the rows' F16 scales, da
 * the tokens' activation scales, is and ms their integer sums in 8 lanes
 * each, lane by lane. */
KQ_AI __m128 kq_step4(__m128 acc, __m128 d, __m128 dm, __m128 da, const __m256i *is,
                      const __m256i *ms, const int MIN) {
    return kq_step4_sums(acc, d, dm, da, kq_hsum4(is), MIN ? kq_hsum4(ms) : _mm_setzero_si128(),
                         MIN);
}

#endif
