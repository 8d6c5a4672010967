/* The AVX-512 K-quant kernels' shared parts (kernels_avx512_kquant.c: every
 * type's rowdot, rows4 and tiles; kernels_avx512_kqlow.c: the decode
 * kernels of Q2_K and Q3_K): the unpacked super-block, the unpackers, the
 * activations of a super-block and their products. */
#ifndef NM_KERNELS_AVX512_KQ_H
#define NM_KERNELS_AVX512_KQ_H

#include "kernels_kquant_simd.h"

#define AI KQ_AI

/* One super-block, unpacked. */
typedef struct ksb {
    __m512i u[4]; /* codes of values 64c .. 64c+63, unsigned */
    __m256i s16;  /* int16 scale of each 16 values */
    __m256i bias; /* int16: isum += bias . bsums (the unsigned codes' offset) */
    __m256i mins; /* int16: msum = mins . bsums */
} ksb;

AI __m512i bcast256(const void *p) {
    return _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)p));
}

/* Bits >> lo of the lower 32 bytes and >> hi of the upper 32, masked. */
AI __m512i bits2(__m512i v, int lo, int hi, int mask) {
    const __m512i sh = _mm512_set_epi64(hi, hi, hi, hi, lo, lo, lo, lo);
    return _mm512_and_si512(_mm512_srlv_epi64(v, sh), _mm512_set1_epi8((char)mask));
}

/* The code with low bits (below bit `at`) from lo and high bits (from bit
 * `at`, `width` bits in all) from hi, where hi has bit k of its bytes' high
 * part at bit kl (lower 32 bytes) and kh (upper 32): one rotate puts those
 * bits in place (a rotate of the 64-bit lanes keeps each bit in its byte
 * for counts below 8) and one vpternlog picks lo's low bits and hi's high
 * ones. */
AI __m512i high_at(__m512i hi, int kl, int kh, int at) {
    const __m512i rot =
        _mm512_set_epi64((at - kh) & 63, (at - kh) & 63, (at - kh) & 63, (at - kh) & 63,
                         (at - kl) & 63, (at - kl) & 63, (at - kl) & 63, (at - kl) & 63);
    return _mm512_rolv_epi64(hi, rot);
}

AI __m512i merge_high(__m512i lo, __m512i hi, int kl, int kh, int at, int width) {
    __m512i h = high_at(hi, kl, kh, at);
    /* 0xe4: bits of lo where the mask is set, else of h */
    __m512i v = _mm512_ternarylogic_epi32(lo, h, _mm512_set1_epi8((char)((1 << at) - 1)), 0xe4);
    return _mm512_and_si512(v, _mm512_set1_epi8((char)((1 << width) - 1)));
}

/* bits2 with GFNI: the shift and the mask as one affine transform of each
 * byte (the matrix per 64-bit lane, kq_gf_bits). */
AI __m512i bits2_gf(__m512i v, int lo, int hi, int width) {
    const long long l = (long long)kq_gf_bits(lo, width), h = (long long)kq_gf_bits(hi, width);
    return _mm512_gf2p8affine_epi64_epi8(v, _mm512_set_epi64(h, h, h, h, l, l, l, l), 0);
}

/* Q4_K / Q5_K scales and minima, as int16 per 16 values. */
AI void k4_scales(const void *blk, ksb *w) {
    __m256i sm = _mm256_cvtepu8_epi16(kq_k4_scales(blk)); /* scales 0..7, minima 0..7 */
    w->s16 = _mm256_permutexvar_epi16(
        _mm256_setr_epi16(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7), sm);
    w->mins = _mm256_permutexvar_epi16(
        _mm256_setr_epi16(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15), sm);
}

AI void unpack_q4_k(const void *blk, ksb *w) {
    const nm_block_q4_k *b = blk;
    _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) w->u[c] =
        bits2(bcast256(b->qs + 32 * c), 0, 4, 15);
    k4_scales(b, w);
}

AI void unpack_q5_k(const void *blk, ksb *w) {
    const nm_block_q5_k *b = blk;
    __m512i qh = bcast256(b->qh);
    _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) {
        const __m512i sh = _mm512_set_epi64(4, 4, 4, 4, 0, 0, 0, 0);
        __m512i lo = _mm512_srlv_epi64(bcast256(b->qs + 32 * c), sh);
        w->u[c] = merge_high(lo, qh, 2 * c, 2 * c + 1, 4, 5);
    }
    k4_scales(b, w);
}

AI void unpack_q6_k(const void *blk, ksb *w) {
    const nm_block_q6_k *b = blk;
    _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {
        __m512i ql = _mm512_loadu_si512(b->ql + 64 * h);
        __m512i qh = bcast256(b->qh + 32 * h);
        w->u[2 * h] = merge_high(ql, qh, 0, 2, 4, 6);
        w->u[2 * h + 1] = merge_high(_mm512_srli_epi16(ql, 4), qh, 4, 6, 4, 6);
    }
    __m128i s8 = _mm_loadu_si128((const __m128i *)b->scales);
    w->s16 = _mm256_cvtepi8_epi16(s8);
    w->bias = kq_bias(s8, 5);
}

/* Q2_K and Q3_K: the two low bits of values 64c .. 64c+63. */
AI __m512i k2_low(const uint8_t *qs, int c) {
    return bits2(bcast256(qs + 32 * (c / 2)), 4 * (c % 2), 4 * (c % 2) + 2, 3);
}

AI void unpack_q2_k_with(const void *blk, ksb *w, const int GFNI) {
    const nm_block_q2_k *b = blk;
    _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) w->u[c] =
        GFNI ? bits2_gf(bcast256(b->qs + 32 * (c / 2)), 4 * (c % 2), 4 * (c % 2) + 2, 2)
             : k2_low(b->qs, c);
    __m128i s = _mm_loadu_si128((const __m128i *)b->scales);
    const __m128i m4 = _mm_set1_epi8(15);
    w->s16 = _mm256_cvtepu8_epi16(_mm_and_si128(s, m4));
    w->mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(s, 4), m4));
}

AI void unpack_q3_k_with(const void *blk, ksb *w, const int GFNI) {
    const nm_block_q3_k *b = blk;
    __m512i hm = bcast256(b->hmask);
    _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) {
        const int s0 = 4 * (c % 2);
        if (GFNI) { /* the 2 low bits, masked; then lo | (high bit at bit 2) */
            __m512i lo = bits2_gf(bcast256(b->qs + 32 * (c / 2)), s0, s0 + 2, 2);
            w->u[c] = _mm512_ternarylogic_epi32(lo, high_at(hm, 2 * c, 2 * c + 1, 2),
                                                _mm512_set1_epi8(4), 0xf8);
            continue;
        }
        const __m512i sh = _mm512_set_epi64(s0 + 2, s0 + 2, s0 + 2, s0 + 2, s0, s0, s0, s0);
        __m512i lo = _mm512_srlv_epi64(bcast256(b->qs + 32 * (c / 2)), sh);
        w->u[c] = merge_high(lo, hm, 2 * c, 2 * c + 1, 2, 3);
    }
    __m128i s8 = kq_q3k_scales(b->scales);
    w->s16 = _mm256_cvtepi8_epi16(s8);
    w->bias = kq_bias(s8, 2);
}

AI void unpack_q2_k(const void *blk, ksb *w) {
    unpack_q2_k_with(blk, w, 0);
}
AI void unpack_q2_k_gf(const void *blk, ksb *w) {
    unpack_q2_k_with(blk, w, 1);
}
AI void unpack_q3_k(const void *blk, ksb *w) {
    unpack_q3_k_with(blk, w, 0);
}
AI void unpack_q3_k_gf(const void *blk, ksb *w) {
    unpack_q3_k_with(blk, w, 1);
}

/* The int16 scale of each value pair of chunk c: lane i has s16[4c + i/8]. */
AI __m512i chunk_scales(__m256i s16, int c) {
    const __m512i idx = _mm512_set_epi16(
        4 * c + 3, 4 * c + 3, 4 * c + 3, 4 * c + 3, 4 * c + 3, 4 * c + 3, 4 * c + 3, 4 * c + 3,
        4 * c + 2, 4 * c + 2, 4 * c + 2, 4 * c + 2, 4 * c + 2, 4 * c + 2, 4 * c + 2, 4 * c + 2,
        4 * c + 1, 4 * c + 1, 4 * c + 1, 4 * c + 1, 4 * c + 1, 4 * c + 1, 4 * c + 1, 4 * c + 1,
        4 * c, 4 * c, 4 * c, 4 * c, 4 * c, 4 * c, 4 * c, 4 * c);
    return _mm512_permutexvar_epi16(idx, _mm512_castsi256_si512(s16));
}

/* VNNI: the int16 scales of chunks c and c + 1 after vpdpbusd and
 * vpackssdw (ksb_dot): int16 position 8k + i holds the sum of 4 values of
 * chunk c (i < 4) or c + 1 (i >= 4) in their 16-value group k. pair_idx:
 * the word of each in a vector of scales that starts at word `from`. */
AI __m512i pair_idx(int c, int from) {
    const int a = 4 * c + from, b = 4 * c + 4 + from;
    return _mm512_set_epi16(b + 3, b + 3, b + 3, b + 3, a + 3, a + 3, a + 3, a + 3, b + 2, b + 2,
                            b + 2, b + 2, a + 2, a + 2, a + 2, a + 2, b + 1, b + 1, b + 1, b + 1,
                            a + 1, a + 1, a + 1, a + 1, b, b, b, b, a, a, a, a);
}
AI __m512i pair_scales(__m256i s16, int c) {
    return _mm512_permutexvar_epi16(pair_idx(c, 0), _mm512_castsi256_si512(s16));
}

/* A token's activations for one super-block. */
typedef struct kact {
    __m512i a[4];
    __m256i bsums;
    float d;
} kact;

AI void load_act(const void *act, int64_t n, int64_t b, kact *x) {
    const int8_t *qa = nm_actk_qs(act) + b * NM_QK_K;
    _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) x->a[c] = _mm512_loadu_si512(qa + 64 * c);
    x->bsums = _mm256_loadu_si256((const __m256i *)(nm_actk_bsums(act, n) + b * 16));
    x->d = nm_actk_d(act, n)[b];
}

/* isum as 8 int32 lanes (their sum is the scalar kernel's isum), and
 * msum's lanes when MIN. */
AI void ksb_dot(const ksb *w, const __m512i *sc, const kact *x, __m256i *isum, __m256i *msum,
                const int MIN, const int BIAS, const int VNNI) {
    __m512i acc = _mm512_setzero_si512();
    if (VNNI) {
        /* sums of 4 products (at most 4 * 63 * 127 < 2^15) packed to int16,
         * then times the scales: two multiplies per 128 values, not four */
        _Pragma("GCC unroll 4") for (int c = 0; c < 4; c += 2) {
            __m512i p0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w->u[c], x->a[c]);
            __m512i p1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w->u[c + 1], x->a[c + 1]);
            acc = _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_packs_epi32(p0, p1), sc[c / 2]));
        }
    } else {
        _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) {
            __m512i p = _mm512_maddubs_epi16(w->u[c], x->a[c]);
            acc = _mm512_add_epi32(acc, _mm512_madd_epi16(p, sc[c]));
        }
    }
    __m256i s = _mm256_add_epi32(_mm512_castsi512_si256(acc), _mm512_extracti64x4_epi64(acc, 1));
    if (BIAS)
        s = _mm256_add_epi32(s, _mm256_madd_epi16(x->bsums, w->bias));
    *isum = s;
    if (MIN)
        *msum = _mm256_madd_epi16(x->bsums, w->mins);
}

/* Unpacks row r's block b and its scale vectors (kq_dot's sc). */
AI void unpack_row(const void *w, size_t rb, int r, int64_t b, size_t bsize,
                   void (*unpack)(const void *, ksb *), ksb *wb, __m512i *sc, const int VNNI,
                   size_t ahead) {
    const char *blk = (const char *)w + (size_t)r * rb + (size_t)b * bsize;
    kq_prefetch(blk, bsize, ahead);
    unpack(blk, wb);
    _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) {
        if (!VNNI)
            sc[c] = chunk_scales(wb->s16, c);
        else if (c < 2)
            sc[c] = pair_scales(wb->s16, 2 * c);
    }
}

/* Transpose-and-add steps of the full tile's sums: per 128-bit lane, a
 * and b's partial sums as [a, b, a, b] (32-bit steps) or [a0, a1, b0, b1]
 * from [a0, a1, a0, a1] and [b0, b1, b0, b1] (64-bit steps). */
AI __m512i red32(__m512i a, __m512i b) {
    return _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
}
AI __m512i red64(__m512i a, __m512i b) {
    return _mm512_add_epi32(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b));
}
/* The sums of 128-bit lanes 0 + 1 and 2 + 3 as the two halves of a vector */
AI __m256i red_lanes(__m512i v) {
    return _mm512_castsi512_si256(
        _mm512_add_epi32(_mm512_shuffle_i32x4(v, v, _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_i32x4(v, v, _MM_SHUFFLE(3, 1, 3, 1))));
}

/* The Q2_K and Q3_K decode kernels of kernels_avx512_kqlow.c into ks (the
 * VNNI sets; features: NM_AVX512_*). */
void nm_kernels_avx512_kqlow(nm_kernel_set *ks, int features);

#endif
