/* AVX-512 kernels of the K-quants (Q2_K .. Q6_K) against Q8_K activations,
 * with a VNNI sub-path (vpdpwssd). They give the scalar kernels' results bit
 * for bit (kernels_scalar_kquant.c defines them): the integer sums of a
 * super-block are exact in any order, and each (row, token) then takes the
 * scalar float steps in the scalar order.
 *
 * A super-block is unpacked once into four vectors of 64 unsigned codes (in
 * activation order) and the int16 scale of every 16 values; each token then
 * costs, per 64 values, one activation load, vpmaddubsw (codes x
 * activations, pairs summed to int16) and vpdpwssd (x the pair's scale, into
 * int32 lanes). Minima (Q2_K, Q4_K, Q5_K) and the offsets of codes stored
 * unsigned (Q3_K -4, Q6_K -32) are integer sums of the activations' bsums,
 * one vpmaddwd. Several rows and tokens share each unpacked block and each
 * activation load (rows4 for decode, tiles for prompts). */
#include "kernels_kquant_simd.h"

#define AI KQ_AI

/* Prompt tile: rows x tokens sharing unpacked blocks and activation loads */
#define KQ_TILE_R 2
#define KQ_TILE_T 8

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
 * chunk c (i < 4) or c + 1 (i >= 4) in their 16-value group k. */
AI __m512i pair_scales(__m256i s16, int c) {
    const int a = 4 * c, b = 4 * c + 4;
    const __m512i idx =
        _mm512_set_epi16(b + 3, b + 3, b + 3, b + 3, a + 3, a + 3, a + 3, a + 3, b + 2, b + 2,
                         b + 2, b + 2, a + 2, a + 2, a + 2, a + 2, b + 1, b + 1, b + 1, b + 1,
                         a + 1, a + 1, a + 1, a + 1, b, b, b, b, a, a, a, a);
    return _mm512_permutexvar_epi16(idx, _mm512_castsi256_si512(s16));
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

/* Decode: 4 rows at w, w + rb, ... x one token, the rows in the lanes of
 * the float step. */
AI void kq_rows4(const void *w, size_t rb, const void *act, int64_t n, float *out, size_t bsize,
                 size_t doff, void (*unpack)(const void *, ksb *), const int MIN, const int BIAS,
                 const int VNNI) {
    __m128 acc = _mm_setzero_ps();
    for (int64_t b = 0; b < n / NM_QK_K; b++) {
        kact x;
        load_act(act, n, b, &x);
        __m256i is[4], ms[4];
        _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) {
            ksb wb;
            __m512i sc[4];
            unpack_row(w, rb, r, b, bsize, unpack, &wb, sc, VNNI, NM_PREFETCH_ROWS4_BYTES);
            ksb_dot(&wb, sc, &x, &is[r], &ms[r], MIN, BIAS, VNNI);
        }
        __m128 d, dm;
        kq_gather_d4((const char *)w + (size_t)b * bsize, rb, doff, MIN, &d, &dm);
        acc = kq_step4(acc, d, dm, _mm_set1_ps(x.d), is, ms, MIN);
    }
    _mm_storeu_ps(out, acc);
}

/* R rows x nt tokens (nt <= KQ_TILE_T), the tokens in groups of 4 in the
 * lanes of the float step; out[r * nt + t]. */
AI void kq_rt(const void *w, size_t rb, const void *const *acts, const int R, int nt, int64_t n,
              float *out, size_t bsize, size_t doff, void (*unpack)(const void *, ksb *),
              const int MIN, const int BIAS, const int VNNI) {
    __m128 acc[2][KQ_TILE_T / 4];
    for (int r = 0; r < R; r++)
        for (int g = 0; g < KQ_TILE_T / 4; g++)
            acc[r][g] = _mm_setzero_ps();
    for (int64_t b = 0; b < n / NM_QK_K; b++) {
        ksb wb[2];
        __m512i sc[2][4];
        __m128 d[2], dm[2];
        _Pragma("GCC unroll 2") for (int r = 0; r < R; r++) {
            unpack_row(w, rb, r, b, bsize, unpack, &wb[r], sc[r], VNNI, NM_PREFETCH_BYTES);
            const char *blk = (const char *)w + (size_t)r * rb + (size_t)b * bsize + doff;
            d[r] = _mm_set1_ps(kq_f16(blk));
            dm[r] = MIN ? _mm_set1_ps(kq_f16(blk + 2)) : d[r];
        }
        for (int g = 0; g * 4 < nt; g++) {
            __m256i is[2][4], ms[2][4];
            float da[4] = {0};
            _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {
                _Pragma("GCC unroll 2") for (int r = 0; r < R; r++) is[r][k] = ms[r][k] =
                    _mm256_setzero_si256();
                if (g * 4 + k >= nt)
                    continue;
                kact x;
                load_act(acts[g * 4 + k], n, b, &x);
                da[k] = x.d;
                _Pragma("GCC unroll 2") for (int r = 0; r < R; r++)
                    ksb_dot(&wb[r], sc[r], &x, &is[r][k], &ms[r][k], MIN, BIAS, VNNI);
            }
            __m128 dav = _mm_loadu_ps(da);
            _Pragma("GCC unroll 2") for (int r = 0; r < R; r++) acc[r][g] =
                kq_step4(acc[r][g], d[r], dm[r], dav, is[r], ms[r], MIN);
        }
    }
    for (int r = 0; r < R; r++)
        for (int g = 0; g * 4 < nt; g++) {
            float v[4];
            _mm_storeu_ps(v, acc[r][g]);
            for (int k = 0; k < 4 && g * 4 + k < nt; k++)
                out[r * nt + g * 4 + k] = v[k];
        }
}

/* VNNI: row w's integer sum against activations a as 16 int32 lanes
 * (ksb_dot's acc; their sum is isum without the bsums term). */
AI __m512i ksb_dot16(const ksb *w, const __m512i *sc, const __m512i *a) {
    __m512i p0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w->u[0], a[0]);
    __m512i p1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w->u[1], a[1]);
    __m512i acc = _mm512_madd_epi16(_mm512_packs_epi32(p0, p1), sc[0]);
    __m512i p2 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w->u[2], a[2]);
    __m512i p3 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w->u[3], a[3]);
    return _mm512_dpwssd_epi32(acc, _mm512_packs_epi32(p2, p3), sc[1]);
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

/* VNNI, the full tile: KQ_TILE_R rows x 8 tokens. Each (row, token) sum
 * stays 16 lanes wide until the 8 tokens of a row are reduced together
 * (red32/red64, token t in lane t); the bsums terms of token pairs (t,
 * t + 4) take one vpmaddwd; the float step runs on 8 tokens at once, in
 * the scalar order. */
AI void kq_tile8(const void *w, size_t rb, const void *const *acts, int64_t n, float *out,
                 size_t bsize, size_t doff, void (*unpack)(const void *, ksb *), const int MIN,
                 const int BIAS) {
    __m256 acc[KQ_TILE_R];
    for (int r = 0; r < KQ_TILE_R; r++)
        acc[r] = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / NM_QK_K; b++) {
        ksb wb[KQ_TILE_R];
        __m512i sc[KQ_TILE_R][4], coef[KQ_TILE_R];
        __m256 d[KQ_TILE_R], dm[KQ_TILE_R];
        _Pragma("GCC unroll 4") for (int r = 0; r < KQ_TILE_R; r++) {
            unpack_row(w, rb, r, b, bsize, unpack, &wb[r], sc[r], 1, NM_PREFETCH_BYTES);
            coef[r] = _mm512_broadcast_i64x4(MIN ? wb[r].mins : wb[r].bias);
            const char *blk = (const char *)w + (size_t)r * rb + (size_t)b * bsize + doff;
            d[r] = _mm256_set1_ps(kq_f16(blk));
            dm[r] = MIN ? _mm256_set1_ps(kq_f16(blk + 2)) : d[r];
        }
        float da_s[8];
        __m512i bs[4]; /* bsums of tokens k (low half) and k + 4 (high) */
        _Pragma("GCC unroll 8") for (int t = 0; t < 8; t++) da_s[t] = nm_actk_d(acts[t], n)[b];
        _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {
            const int16_t *b0 = nm_actk_bsums(acts[k], n) + b * 16;
            const int16_t *b1 = nm_actk_bsums(acts[k + 4], n) + b * 16;
            bs[k] =
                _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)b0)),
                                   _mm256_loadu_si256((const __m256i *)b1), 1);
        }
        const __m256 da = _mm256_loadu_ps(da_s);
        __m512i pair[KQ_TILE_R], quad[KQ_TILE_R][2];
        _Pragma("GCC unroll 8") for (int t = 0; t < 8; t++) {
            __m512i a[4];
            const int8_t *qa = nm_actk_qs(acts[t]) + b * NM_QK_K;
            _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) a[c] =
                _mm512_loadu_si512(qa + 64 * c);
            _Pragma("GCC unroll 4") for (int r = 0; r < KQ_TILE_R; r++) {
                __m512i s = ksb_dot16(&wb[r], sc[r], a);
                if (t % 2 == 0)
                    pair[r] = s;
                else if (t % 4 == 1)
                    quad[r][t / 4] = red32(pair[r], s);
                else
                    quad[r][t / 4] = red64(quad[r][t / 4], red32(pair[r], s));
            }
        }
        _Pragma("GCC unroll 4") for (int r = 0; r < KQ_TILE_R; r++) {
            /* quad[r][h]: tokens 4h .. 4h + 3 in every 128-bit lane */
            __m512i q0 = quad[r][0], q1 = quad[r][1];
            __m512i v = _mm512_add_epi32(_mm512_shuffle_i32x4(q0, q1, _MM_SHUFFLE(1, 0, 1, 0)),
                                         _mm512_shuffle_i32x4(q0, q1, _MM_SHUFFLE(3, 2, 3, 2)));
            __m256i is = red_lanes(v);
            /* bsums terms: lanes 0, 1 of m[k] token k, lanes 2, 3 token k + 4 */
            __m512i m[4];
            _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) m[k] =
                _mm512_madd_epi16(bs[k], coef[r]);
            __m256i bt = red_lanes(red64(red32(m[0], m[1]), red32(m[2], m[3])));
            if (BIAS)
                is = _mm256_add_epi32(is, bt);
            __m256 t = _mm256_mul_ps(_mm256_mul_ps(d[r], da), _mm256_cvtepi32_ps(is));
            if (MIN)
                t = _mm256_sub_ps(t,
                                  _mm256_mul_ps(_mm256_mul_ps(dm[r], da), _mm256_cvtepi32_ps(bt)));
            acc[r] = _mm256_add_ps(acc[r], t);
        }
    }
    for (int r = 0; r < KQ_TILE_R; r++)
        _mm256_storeu_ps(out + 8 * r, acc[r]);
}

/* Q2_K decode with GFNI and VNNI: the scales go into the codes' bytes, so
 * that vpdpbusd sums scale * code * activation for the whole super-block.
 * A code (0..3) times its 4-bit scale is at most 45, an unsigned byte. In a
 * 64-value chunk c each 128-bit lane l is one 16-value sub-block, j = 4c +
 * l; one vgf2p8affineqb moves the codes to bits 2-3 and its constant XORs
 * c into bits 0-1, and one vpshufb looks the byte 4q + c up in the row's
 * table: lane l, byte 4q + c holds s(4c + l) * q (built once per block by
 * vpshufb and one vpmullw: bytes 4q + c and 4q + c + 1 form a word, and
 * both are multiplied by q). Per 64 values and row: three instructions, no
 * vpmaddwd / vpackssdw.
 *
 * The four rows share the rest: their 16-lane sums are transposed and added
 * (red32, red64) to [row 0 .. row 3] in every 128-bit lane; msum takes the
 * rows' scale bytes as one vector, lane L holding in dword k row k's minima
 * of sub-blocks 4L .. 4L + 3, and two vpmaddwd with the bsums laid out to
 * match (words 4L, 4L + 2 and 4L + 1, 4L + 3) give the same layout, so one
 * lane reduction serves isum and msum. The integer sums are the scalar
 * kernel's; the float step is kq_step4's. In cache (one core, 64 x 5632)
 * this runs at 1.27x the unpack-and-vpmaddwd kernel's speed. */
AI void q2k_rows4_table(const void *w, size_t rb, const void *act, int64_t n, float *out) {
    /* lane l, byte 4q + c <- scale byte 4c + l; word k of a lane times k / 2 */
    const int sp = 0x0c080400, one = 0x01010101;
    const __m512i spread = _mm512_set_epi32(sp + 3 * one, sp + 3 * one, sp + 3 * one, sp + 3 * one,
                                            sp + 2 * one, sp + 2 * one, sp + 2 * one, sp + 2 * one,
                                            sp + one, sp + one, sp + one, sp + one, sp, sp, sp, sp);
    const __m512i qmul = _mm512_set4_epi32(0x00030003, 0x00020002, 0x00010001, 0);
    /* chunk c: the lower 256 bits' codes at bit 4 (c % 2), the upper's two
     * bits higher (k2_low), to bits 2-3 */
    const long long g0 = (long long)kq_gf_move(0, 2, 2), g2 = (long long)kq_gf_move(2, 2, 2),
                    g4 = (long long)kq_gf_move(4, 2, 2), g6 = (long long)kq_gf_move(6, 2, 2);
    const __m512i even = _mm512_set_epi64(g2, g2, g2, g2, g0, g0, g0, g0);
    const __m512i odd = _mm512_set_epi64(g6, g6, g6, g6, g4, g4, g4, g4);
    /* lane L dword k <- dword 4k + L */
    const __m512i tr = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
    /* bsums: lane L, words 2k, 2k + 1 <- 4L, 4L + 2 (pa) and 4L + 1, 4L + 3 (pb) */
    const __m512i pa = _mm512_set_epi16(14, 12, 14, 12, 14, 12, 14, 12, 10, 8, 10, 8, 10, 8, 10, 8,
                                        6, 4, 6, 4, 6, 4, 6, 4, 2, 0, 2, 0, 2, 0, 2, 0);
    const __m512i pb = _mm512_add_epi16(pa, _mm512_set1_epi16(1));
    const size_t bsize = sizeof(nm_block_q2_k);
    __m128 acc = _mm_setzero_ps();
    for (int64_t b = 0; b < n / NM_QK_K; b++) {
        const int8_t *qa = nm_actk_qs(act) + b * NM_QK_K;
        __m512i a[4];
        _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) a[c] = _mm512_loadu_si512(qa + 64 * c);
        const __m512i bs = _mm512_castsi256_si512(
            _mm256_loadu_si256((const __m256i *)(nm_actk_bsums(act, n) + b * 16)));
        const __m512i ba = _mm512_permutexvar_epi16(pa, bs), bb = _mm512_permutexvar_epi16(pb, bs);
        const char *b0 = (const char *)w + (size_t)b * bsize;
        __m512i is[4];
        /* the rows' scale bytes, row r in lane r (immediates spelled out: the
         * Debug build does not unroll) */
        __m128i s[4];
        _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) s[r] =
            _mm_loadu_si128((const __m128i *)(b0 + (size_t)r * rb));
        __m512i sc4 = _mm512_inserti32x4(_mm512_castsi128_si512(s[0]), s[1], 1);
        sc4 = _mm512_inserti32x4(_mm512_inserti32x4(sc4, s[2], 2), s[3], 3);
        _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) {
            const nm_block_q2_k *blk = (const nm_block_q2_k *)(b0 + (size_t)r * rb);
            kq_prefetch((const char *)blk, bsize, NM_PREFETCH_ROWS4_BYTES);
            const __m512i lo = _mm512_and_si512(_mm512_broadcast_i32x4(s[r]), _mm512_set1_epi8(15));
            const __m512i table = _mm512_mullo_epi16(_mm512_shuffle_epi8(lo, spread), qmul);
            const __m512i r0 = bcast256(blk->qs), r1 = bcast256(blk->qs + 32);
            const __m512i idx[4] = {_mm512_gf2p8affine_epi64_epi8(r0, even, 0),
                                    _mm512_gf2p8affine_epi64_epi8(r0, odd, 1),
                                    _mm512_gf2p8affine_epi64_epi8(r1, even, 2),
                                    _mm512_gf2p8affine_epi64_epi8(r1, odd, 3)};
            __m512i sum = _mm512_setzero_si512();
            _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) sum =
                _mm512_dpbusd_epi32(sum, _mm512_shuffle_epi8(table, idx[c]), a[c]);
            is[r] = sum;
        }
        const __m512i p = _mm512_permutexvar_epi32(tr, sc4);
        const __m512i ma = _mm512_and_si512(_mm512_srli_epi16(p, 4), _mm512_set1_epi16(15));
        const __m512i mb = _mm512_srli_epi16(p, 12);
        const __m512i m = _mm512_add_epi32(_mm512_madd_epi16(ma, ba), _mm512_madd_epi16(mb, bb));
        const __m512i v = red64(red32(is[0], is[1]), red32(is[2], is[3]));
        __m512i z = _mm512_add_epi32(_mm512_shuffle_i64x2(v, m, _MM_SHUFFLE(1, 0, 1, 0)),
                                     _mm512_shuffle_i64x2(v, m, _MM_SHUFFLE(3, 2, 3, 2)));
        z = _mm512_add_epi32(z, _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(2, 3, 0, 1)));
        __m128 d, dm;
        kq_gather_d4(b0, rb, offsetof(nm_block_q2_k, d), 1, &d, &dm);
        acc = kq_step4_sums(acc, d, dm, _mm_set1_ps(nm_actk_d(act, n)[b]),
                            _mm512_castsi512_si128(z), _mm512_extracti32x4_epi32(z, 2), 1);
    }
    _mm_storeu_ps(out, acc);
}

static void q2_k_rows4_table(const void *w, size_t rb, const void *act, int64_t n, float *out) {
    q2k_rows4_table(w, rb, act, n, out);
}

/* Q4_K codes in the activations' tile order (nm_actk_tiled): register k
 * holds in qword q the codes of values 32q + 8k .. 32q + 8k + 7, all of
 * sub-block q. Qword q of register k is qs qword 4(q / 2) + k, its low
 * nibbles for even q, its high ones for odd q. */
AI void unpack_q4_k_tiled(const void *blk, __m512i *u, const int GFNI) {
    const nm_block_q4_k *b = blk;
    const __m512i q0 = _mm512_loadu_si512(b->qs), q1 = _mm512_loadu_si512(b->qs + 64);
    const long long lo = (long long)kq_gf_bits(0, 4), hi = (long long)kq_gf_bits(4, 4);
    _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {
        const __m512i idx = _mm512_set_epi64(12 + k, 12 + k, 8 + k, 8 + k, 4 + k, 4 + k, k, k);
        __m512i v = _mm512_permutex2var_epi64(q0, idx, q1);
        if (GFNI)
            u[k] = _mm512_gf2p8affine_epi64_epi8(
                v, _mm512_set_epi64(hi, lo, hi, lo, hi, lo, hi, lo), 0);
        else
            u[k] = _mm512_and_si512(_mm512_srlv_epi64(v, _mm512_set_epi64(4, 0, 4, 0, 4, 0, 4, 0)),
                                    _mm512_set1_epi8(15));
    }
}

/* Two tokens' (a, b) madd-ed sums, [a0 a1 b0 b1] in each 128-bit lane, and
 * the next two (c, d): [a c b d] lane sums, a0 + a1 in place of a. */
AI __m512i red_pairs(__m512i ab, __m512i cd) {
    __m512i t = _mm512_unpacklo_epi32(ab, cd), u = _mm512_unpackhi_epi32(ab, cd);
    return _mm512_add_epi32(_mm512_unpacklo_epi64(t, u), _mm512_unpackhi_epi64(t, u));
}

/* The 8-lane sums of two rows' vectors (each 4 128-bit lanes of partial
 * sums, lanes 0 + 1 and 2 + 3 to add) as one vector: row a's in the low
 * half, row b's in the high. */
AI __m512i red_lanes2(__m512i a, __m512i b) {
    return _mm512_add_epi32(_mm512_shuffle_i32x4(a, b, _MM_SHUFFLE(2, 0, 2, 0)),
                            _mm512_shuffle_i32x4(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
}

/* d and dmin (the F16 pair at doff) of the blocks at blk and blk + rb as
 * [d0 x 8, d1 x 8] and [dmin0 x 8, dmin1 x 8]. */
AI void kq_d2(const char *blk, size_t rb, size_t doff, __m512 *d, __m512 *dm) {
    uint32_t x0, x1;
    __builtin_memcpy(&x0, blk + doff, 4);
    __builtin_memcpy(&x1, blk + rb + doff, 4);
    __m512 f = _mm512_castps128_ps512(_mm_cvtph_ps(_mm_set_epi32(0, 0, (int)x1, (int)x0)));
    *d = _mm512_permutexvar_ps(_mm512_set_epi32(2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0), f);
    *dm =
        _mm512_permutexvar_ps(_mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1), f);
}

/* VNNI, Q4_K, the full tile (2 rows x 8 tokens) over tile-ordered
 * activations: each (row, token) sum of a super-block is one chain of four
 * vpdpbusd whose int32 lanes hold sums of 16 products of one sub-block (at
 * most 16 * 15 * 128 < 2^15), so two tokens' chains pack into one int16
 * vector and one vpmaddwd applies the scales. The tokens come out in the
 * order 0 2 1 3 4 6 5 7 (the reductions'), which the minima sums and the
 * activation scales follow and the store undoes; the float step takes both
 * rows' 8 tokens in one vector, in the scalar order. */
AI void kq_tile8_q4_k(const void *w, size_t rb, const void *const *acts, int64_t n, float *out,
                      const int GFNI) {
    _Static_assert(KQ_TILE_R == 2, "kq_tile8_q4_k: two rows");
    const size_t bsize = sizeof(nm_block_q4_k), doff = offsetof(nm_block_q4_k, d);
    static const int perm[8] = {0, 2, 1, 3, 4, 6, 5, 7};
    const __m512i sidx = _mm512_set_epi16(7, 7, 6, 6, 7, 7, 6, 6, 5, 5, 4, 4, 5, 5, 4, 4, 3, 3, 2,
                                          2, 3, 3, 2, 2, 1, 1, 0, 0, 1, 1, 0, 0);
    const __m512i midx = _mm512_set4_epi32(0x000f000e, 0x000d000c, 0x000b000a, 0x00090008);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t b = 0; b < n / NM_QK_K; b++) {
        __m512i u[2][4], sc[2], coef[2];
        _Pragma("GCC unroll 2") for (int r = 0; r < 2; r++) {
            const char *blk = (const char *)w + (size_t)r * rb + (size_t)b * bsize;
            kq_prefetch(blk, bsize, NM_PREFETCH_BYTES);
            unpack_q4_k_tiled(blk, u[r], GFNI);
            __m256i sm = _mm256_cvtepu8_epi16(kq_k4_scales(blk));
            sc[r] = _mm512_permutexvar_epi16(sidx, _mm512_castsi256_si512(sm));
            /* the 8 minima in every 128-bit lane */
            coef[r] = _mm512_permutexvar_epi16(midx, _mm512_castsi256_si512(sm));
        }
        __m512 d, dm;
        kq_d2((const char *)w + (size_t)b * bsize, rb, doff, &d, &dm);
        float da_s[8];
        _Pragma("GCC unroll 8") for (int t = 0; t < 8; t++) da_s[t] =
            nm_actk_d(acts[perm[t]], n)[b];
        const __m256 da8 = _mm256_loadu_ps(da_s);
        const __m512 da = _mm512_insertf32x8(_mm512_castps256_ps512(da8), da8, 1);
        /* the sums of 32 of tokens perm[4h .. 4h + 3] in 128-bit lanes 0 .. 3
         * (immediates spelled out: the Debug build does not unroll) */
        __m128i z[8];
        _Pragma("GCC unroll 8") for (int t = 0; t < 8; t++) z[t] =
            _mm_loadu_si128((const __m128i *)(nm_actk_tiled_sums32(acts[perm[t]], n) + 8 * b));
        __m512i s32[2];
        _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {
            __m512i v = _mm512_inserti32x4(_mm512_castsi128_si512(z[4 * h]), z[4 * h + 1], 1);
            s32[h] = _mm512_inserti32x4(_mm512_inserti32x4(v, z[4 * h + 2], 2), z[4 * h + 3], 3);
        }
        __m512i first[2], m2[2][4];
        _Pragma("GCC unroll 8") for (int t = 0; t < 8; t++) {
            __m512i a[4];
            const int8_t *qa = nm_actk_tiled_qs(acts[t], n) + b * NM_QK_K;
            _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) a[c] =
                _mm512_loadu_si512(qa + 64 * c);
            _Pragma("GCC unroll 2") for (int r = 0; r < 2; r++) {
                __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u[r][0], a[0]);
                s = _mm512_dpbusd_epi32(s, u[r][1], a[1]);
                s = _mm512_dpbusd_epi32(s, u[r][2], a[2]);
                s = _mm512_dpbusd_epi32(s, u[r][3], a[3]);
                if (t % 2 == 0)
                    first[r] = s;
                else
                    m2[r][t / 2] = _mm512_madd_epi16(_mm512_packs_epi32(first[r], s), sc[r]);
            }
        }
        __m512i v[2], mv[2];
        _Pragma("GCC unroll 2") for (int r = 0; r < 2; r++) {
            __m512i q0 = red_pairs(m2[r][0], m2[r][1]), q1 = red_pairs(m2[r][2], m2[r][3]);
            v[r] = _mm512_add_epi32(_mm512_shuffle_i32x4(q0, q1, _MM_SHUFFLE(1, 0, 1, 0)),
                                    _mm512_shuffle_i32x4(q0, q1, _MM_SHUFFLE(3, 2, 3, 2)));
            /* lane l: [msum of token perm[l], of perm[l + 4]] twice */
            __m512i x =
                red32(_mm512_madd_epi16(s32[0], coef[r]), _mm512_madd_epi16(s32[1], coef[r]));
            mv[r] = _mm512_add_epi32(x, _mm512_shuffle_epi32(x, _MM_PERM_BADC));
        }
        __m512 fi = _mm512_cvtepi32_ps(red_lanes2(v[0], v[1]));
        __m512 fm = _mm512_cvtepi32_ps(_mm512_permutex2var_epi32(
            mv[0], _mm512_set_epi32(29, 25, 21, 17, 28, 24, 20, 16, 13, 9, 5, 1, 12, 8, 4, 0),
            mv[1]));
        __m512 t = _mm512_mul_ps(_mm512_mul_ps(d, da), fi);
        t = _mm512_sub_ps(t, _mm512_mul_ps(_mm512_mul_ps(dm, da), fm));
        acc = _mm512_add_ps(acc, t);
    }
    _mm512_storeu_ps(
        out, _mm512_permutexvar_ps(
                 _mm512_set_epi32(15, 13, 14, 12, 11, 9, 10, 8, 7, 5, 6, 4, 3, 1, 2, 0), acc));
}

/* A full tile: KQ_TILE_R rows x KQ_TILE_T tokens. */
typedef void (*kq_tile8_fn)(const void *w, size_t rb, const void *const *acts, int64_t n,
                            float *out);

/* A group of 4 to 7 tokens (a prompt's last group, a serve step with a slot
 * between requests) through the full tile with the last token repeated:
 * each (row, token) is computed alone, so the bits are the same. For Q4_K's
 * tile (kq_tile8_q4_k) this beats kq_rt from 4 tokens on (bench_kernels,
 * 512 x 5632, 1 thread, in cache: 7 tokens 20.6k tok/s in kq_rt, 37.9k x 7/8
 * padded; 3 tokens 16.8k against 14.2k). */
static void kq_tile8_padded(kq_tile8_fn full, const void *w, size_t rb, const void *const *acts,
                            int nt, int64_t n, float *out) {
    const void *a8[KQ_TILE_T];
    float o8[KQ_TILE_R * KQ_TILE_T];
    for (int t = 0; t < KQ_TILE_T; t++)
        a8[t] = acts[t < nt ? t : nt - 1];
    full(w, rb, a8, n, o8);
    for (int r = 0; r < KQ_TILE_R; r++)
        for (int t = 0; t < nt; t++)
            out[r * nt + t] = o8[r * KQ_TILE_T + t];
}

/* The full tile (VNNI, KQ_TILE_T tokens) of type T in sub-path V. */
#define KQ_TILE8(T, V, UNPACK, MIN, BIAS)                                                          \
    static void T##_tile8_##V(const void *w, size_t rb, const void *const *acts, int64_t n,        \
                              float *out) {                                                        \
        kq_tile8(w, rb, acts, n, out, sizeof(nm_block_##T), offsetof(nm_block_##T, d), UNPACK,     \
                 MIN, BIAS);                                                                       \
    }

/* Q3_K decode (VNNI): the codes' -4 offset starts the products. Q3_K's
 * unsigned codes 0..7 leave isum += -4 * scale(j) * bsum(j) per sub-block,
 * which kq_rows4 computes per row (the scales widened, shifted and negated,
 * one vpmaddwd). Here each chunk's vpdpbusd chain starts from -4 * bsum(j)
 * in one int32 lane of sub-block j (lane l of chunk c: j = 4c + l), built
 * once per block for the four rows: a lane then holds 4 products minus that
 * term, at most 4 * 7 * 127 + 4 * 16 * 127 < 2^15, so it still packs to
 * int16 for the scales' vpdpwssd, and the sum is the scalar isum. 8% faster
 * in cache than kq_rows4 (one core, 64 x 5632). */
AI void q3k_rows4_offset(const void *w, size_t rb, const void *act, int64_t n, float *out,
                         void (*unpack)(const void *, ksb *)) {
    const size_t bsize = sizeof(nm_block_q3_k), doff = offsetof(nm_block_q3_k, d);
    __m128 acc = _mm_setzero_ps();
    for (int64_t b = 0; b < n / NM_QK_K; b++) {
        kact x;
        load_act(act, n, b, &x);
        const __m512i off = _mm512_sub_epi32(_mm512_setzero_si512(),
                                             _mm512_slli_epi32(_mm512_cvtepi16_epi32(x.bsums), 2));
        __m512i start[4];
        _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) start[c] =
            _mm512_maskz_permutexvar_epi32(0x1111,
                                           _mm512_set_epi32(0, 0, 0, 4 * c + 3, 0, 0, 0, 4 * c + 2,
                                                            0, 0, 0, 4 * c + 1, 0, 0, 0, 4 * c),
                                           off);
        __m256i is[4];
        _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) {
            ksb wb;
            __m512i sc[4];
            unpack_row(w, rb, r, b, bsize, unpack, &wb, sc, 1, NM_PREFETCH_ROWS4_BYTES);
            __m512i s = _mm512_setzero_si512();
            _Pragma("GCC unroll 2") for (int c = 0; c < 4; c += 2) {
                __m512i p0 = _mm512_dpbusd_epi32(start[c], wb.u[c], x.a[c]);
                __m512i p1 = _mm512_dpbusd_epi32(start[c + 1], wb.u[c + 1], x.a[c + 1]);
                s = _mm512_dpwssd_epi32(s, _mm512_packs_epi32(p0, p1), sc[c / 2]);
            }
            is[r] = _mm256_add_epi32(_mm512_castsi512_si256(s), _mm512_extracti64x4_epi64(s, 1));
        }
        __m128 d, dm;
        kq_gather_d4((const char *)w + (size_t)b * bsize, rb, doff, 0, &d, &dm);
        acc = kq_step4(acc, d, dm, _mm_set1_ps(x.d), is, is, 0);
    }
    _mm_storeu_ps(out, acc);
}

static void q3_k_rows4_offset_vnni(const void *w, size_t rb, const void *act, int64_t n,
                                   float *out) {
    q3k_rows4_offset(w, rb, act, n, out, unpack_q3_k);
}
static void q3_k_rows4_offset_gfni(const void *w, size_t rb, const void *act, int64_t n,
                                   float *out) {
    q3k_rows4_offset(w, rb, act, n, out, unpack_q3_k_gf);
}

/* The three kernels of type T in one sub-path: V names them, UNPACK takes
 * the blocks apart, VNNI picks the products, TILE8 (or NULL) takes full
 * tiles, and with PAD groups of 4 to 7 tokens too (kq_tile8_padded). */
#define KQ_KERNELS(T, V, UNPACK, MIN, BIAS, VNNI, TILE8, PAD)                                      \
    static void T##_rowdot_##V(const void *w, const void *const *acts, int nt, int64_t n,          \
                               float *out) {                                                       \
        kq_rt(w, 0, acts, 1, nt, n, out, sizeof(nm_block_##T), offsetof(nm_block_##T, d), UNPACK,  \
              MIN, BIAS, VNNI);                                                                    \
    }                                                                                              \
    static void T##_rows4_##V(const void *w, size_t rb, const void *act, int64_t n, float *out) {  \
        kq_rows4(w, rb, act, n, out, sizeof(nm_block_##T), offsetof(nm_block_##T, d), UNPACK, MIN, \
                 BIAS, VNNI);                                                                      \
    }                                                                                              \
    static void T##_tile_##V(const void *w, size_t rb, const void *const *acts, int nt, int64_t n, \
                             float *out) {                                                         \
        const kq_tile8_fn full = TILE8;                                                            \
        if (full && nt == KQ_TILE_T)                                                               \
            full(w, rb, acts, n, out);                                                             \
        else if (full && PAD && nt >= 4 && nt < KQ_TILE_T)                                         \
            kq_tile8_padded(full, w, rb, acts, nt, n, out);                                        \
        else                                                                                       \
            kq_rt(w, rb, acts, KQ_TILE_R, nt, n, out, sizeof(nm_block_##T),                        \
                  offsetof(nm_block_##T, d), UNPACK, MIN, BIAS, VNNI);                             \
    }
#define KQ_KERNEL(T, MIN, BIAS, TILE8, PAD)                                                        \
    KQ_KERNELS(T, vnni, unpack_##T, MIN, BIAS, 1, TILE8, PAD)                                      \
    KQ_KERNELS(T, bw, unpack_##T, MIN, BIAS, 0, NULL, 0)

/* Q4_K's full tiles read the tile-ordered activations (kq_tile8_q4_k). */
static void q4_k_tile8_vnni(const void *w, size_t rb, const void *const *acts, int64_t n,
                            float *out) {
    kq_tile8_q4_k(w, rb, acts, n, out, 0);
}
static void q4_k_tile8_gfni(const void *w, size_t rb, const void *const *acts, int64_t n,
                            float *out) {
    kq_tile8_q4_k(w, rb, acts, n, out, 1);
}

KQ_TILE8(q2_k, vnni, unpack_q2_k, 1, 0)
KQ_TILE8(q3_k, vnni, unpack_q3_k, 0, 1)
KQ_TILE8(q5_k, vnni, unpack_q5_k, 1, 0)
KQ_TILE8(q6_k, vnni, unpack_q6_k, 0, 1)
KQ_TILE8(q2_k, gfni, unpack_q2_k_gf, 1, 0)
KQ_TILE8(q3_k, gfni, unpack_q3_k_gf, 0, 1)

/* Only Q4_K's tile pads groups of 4 to 7 tokens: Q6_K's gained nothing */
KQ_KERNEL(q2_k, 1, 0, q2_k_tile8_vnni, 0)
KQ_KERNEL(q3_k, 0, 1, q3_k_tile8_vnni, 0)
KQ_KERNEL(q4_k, 1, 0, q4_k_tile8_vnni, 1)
KQ_KERNEL(q5_k, 1, 0, q5_k_tile8_vnni, 0)
KQ_KERNEL(q6_k, 0, 1, q6_k_tile8_vnni, 0)
/* GFNI where it saves instructions: the 2-bit codes, and Q4_K's tiles */
KQ_KERNELS(q2_k, gfni, unpack_q2_k_gf, 1, 0, 1, q2_k_tile8_gfni, 0)
KQ_KERNELS(q3_k, gfni, unpack_q3_k_gf, 0, 1, 1, q3_k_tile8_gfni, 0)
KQ_KERNELS(q4_k, gfni, unpack_q4_k, 1, 0, 1, q4_k_tile8_gfni, 1)

#define KQ_SET(T, TYPE, V)                                                                         \
    ks->k[TYPE] = NM_TYPE_KERNELS(T##_rowdot_##V, T##_rows4_##V, T##_tile_##V, KQ_TILE_R, KQ_TILE_T)

void nm_kernels_avx512_kquant(nm_kernel_set *ks, int features) {
    ks->act_quantize_q8k = nm_act_quantize_q8k_avx2;
    if (features & NM_AVX512_VNNI) {
        KQ_SET(q2_k, NM_TYPE_Q2_K, vnni);
        KQ_SET(q3_k, NM_TYPE_Q3_K, vnni);
        ks->k[NM_TYPE_Q3_K].rows4 = q3_k_rows4_offset_vnni;
        KQ_SET(q4_k, NM_TYPE_Q4_K, vnni);
        KQ_SET(q5_k, NM_TYPE_Q5_K, vnni);
        KQ_SET(q6_k, NM_TYPE_Q6_K, vnni);
        if (features & NM_AVX512_GFNI) {
            KQ_SET(q2_k, NM_TYPE_Q2_K, gfni);
            KQ_SET(q3_k, NM_TYPE_Q3_K, gfni);
            ks->k[NM_TYPE_Q2_K].rows4 = q2_k_rows4_table;
            ks->k[NM_TYPE_Q3_K].rows4 = q3_k_rows4_offset_gfni;
            KQ_SET(q4_k, NM_TYPE_Q4_K, gfni);
        }
    } else {
        KQ_SET(q2_k, NM_TYPE_Q2_K, bw);
        KQ_SET(q3_k, NM_TYPE_Q3_K, bw);
        KQ_SET(q4_k, NM_TYPE_Q4_K, bw);
        KQ_SET(q5_k, NM_TYPE_Q5_K, bw);
        KQ_SET(q6_k, NM_TYPE_Q6_K, bw);
    }
}
