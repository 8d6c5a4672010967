/* Inline helpers shared by the AVX2 and AVX-512 kernels of the legacy
 * block types (kernels_avx2_legacy.c, kernels_avx512_legacy.c): block
 * geometry, nibble and fifth-bit unpacking, the float steps of eight
 * 32-element blocks, and the IQ4_XS sub-block scales. All of it is AVX2 +
 * FMA + F16C, so both files compute these steps with the same instructions
 * and the same rounding: the float half of a dot is one code path. */
#ifndef NM_KERNELS_LEGACY_X86_H
#define NM_KERNELS_LEGACY_X86_H

#include "kernel_set.h"

#include "gguf/quant_legacy.h"

#include <immintrin.h>

#define AI static inline __attribute__((always_inline))

enum { T_Q4_1, T_Q5_0, T_Q5_1, T_IQ4_NL };

/* Block bytes, where qs and qh start, and whether it has a minimum. */
AI int blk_bytes(const int T) {
    return T == T_Q4_1 ? 20 : T == T_Q5_0 ? 22 : T == T_Q5_1 ? 24 : 18;
}
AI int qs_off(const int T) {
    return T == T_Q4_1 ? 4 : T == T_Q5_0 ? 6 : T == T_Q5_1 ? 8 : 2;
}
AI int qh_off(const int T) {
    return T == T_Q5_0 ? 2 : 4;
}
AI int has_min(const int T) {
    return T == T_Q4_1 || T == T_Q5_1;
}
AI int is_signed(const int T) {
    return T == T_Q5_0 || T == T_IQ4_NL;
}

AI float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AI uint32_t load_u32(const char *p) {
    uint32_t v;
    __builtin_memcpy(&v, p, 4);
    return v;
}
AI uint16_t load_u16(const char *p) {
    uint16_t v;
    __builtin_memcpy(&v, p, 2);
    return v;
}

/* 0x10 in byte j where bit j of qh is set. */
AI __m256i fifth_bits(uint32_t qh) {
    const __m256i spread = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                             0x0101010101010101, 0x0000000000000000);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh), spread);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x10));
}

/* The 16 nibble bytes as 32 codes 0..15 in element order. */
AI __m256i nibbles(const char *qs) {
    __m256i raw = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs));
    raw = _mm256_srlv_epi64(raw, _mm256_set_epi64x(4, 4, 0, 0));
    return _mm256_and_si256(raw, _mm256_set1_epi8(0x0f));
}

/* [sum p[0], ..., sum p[7]]: vphaddd works inside 128-bit lanes, so after
 * three rounds the low lanes hold the sums of the low halves of blocks 0-3
 * (of a) and 4-7 (of b), the high lanes those of the high halves; one
 * cross-lane add of the two finishes. */
AI __m256i reduce8(const __m256i p[8]) {
    __m256i h01 = _mm256_hadd_epi32(p[0], p[1]), h23 = _mm256_hadd_epi32(p[2], p[3]);
    __m256i h45 = _mm256_hadd_epi32(p[4], p[5]), h67 = _mm256_hadd_epi32(p[6], p[7]);
    __m256i a = _mm256_hadd_epi32(h01, h23), b = _mm256_hadd_epi32(h45, h67);
    return _mm256_add_epi32(_mm256_permute2x128_si256(a, b, 0x20),
                            _mm256_permute2x128_si256(a, b, 0x31));
}

/* The F16 scales (and minima) of k <= 8 blocks, zero in lanes k..7. */
AI void block_scales(const char *w, const int T, const int k, __m256 *d, __m256 *m) {
    int dh[8], mh[8];
    _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++) {
        dh[j] = j < k ? load_u16(w + j * blk_bytes(T)) : 0;
        mh[j] = j < k && has_min(T) ? load_u16(w + j * blk_bytes(T) + 2) : 0;
    }
    *d = _mm256_cvtph_ps(_mm_setr_epi16((short)dh[0], (short)dh[1], (short)dh[2], (short)dh[3],
                                        (short)dh[4], (short)dh[5], (short)dh[6], (short)dh[7]));
    if (has_min(T))
        *m =
            _mm256_cvtph_ps(_mm_setr_epi16((short)mh[0], (short)mh[1], (short)mh[2], (short)mh[3],
                                           (short)mh[4], (short)mh[5], (short)mh[6], (short)mh[7]));
}

/* The float steps of eight blocks for one token (k < 8: the last k). */
AI __m256 scale_acc(__m256i isum, __m256 dw, __m256 mw, const float *da, const float *ma,
                    __m256 acc, const int T, const int k) {
    __m256 dav, mav = _mm256_setzero_ps();
    if (k == 8) {
        dav = _mm256_loadu_ps(da);
        if (has_min(T))
            mav = _mm256_loadu_ps(ma);
    } else {
        __m256i mask =
            _mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0));
        dav = _mm256_maskload_ps(da, mask);
        if (has_min(T))
            mav = _mm256_maskload_ps(ma, mask);
    }
    acc = _mm256_fmadd_ps(_mm256_mul_ps(dw, dav), _mm256_cvtepi32_ps(isum), acc);
    if (has_min(T))
        acc = _mm256_fmadd_ps(mw, _mm256_mul_ps(mav, _mm256_set1_ps(0.125f)), acc);
    return acc;
}

/* The eight signed sub-block scales ls - 32 as int32. */
AI __m256i xs_scales(const nm_block_iq4_xs *w) {
    const __m256i lo_shift = _mm256_set_epi32(4, 0, 4, 0, 4, 0, 4, 0);
    const __m256i hi_shift = _mm256_set_epi32(14, 12, 10, 8, 6, 4, 2, 0);
    uint32_t sl = load_u32((const char *)w->scales_l);
    __m256i lo = _mm256_cvtepu8_epi32(
        _mm_shuffle_epi8(_mm_cvtsi32_si128((int)sl),
                         _mm_set_epi8(-1, -1, -1, -1, -1, -1, -1, -1, 3, 3, 2, 2, 1, 1, 0, 0)));
    lo = _mm256_and_si256(_mm256_srlv_epi32(lo, lo_shift), _mm256_set1_epi32(15));
    __m256i hi = _mm256_srlv_epi32(_mm256_set1_epi32(w->scales_h), hi_shift);
    hi = _mm256_slli_epi32(_mm256_and_si256(hi, _mm256_set1_epi32(3)), 4);
    return _mm256_sub_epi32(_mm256_or_si256(lo, hi), _mm256_set1_epi32(32));
}

AI int32_t hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

#endif
