/* AVX2 kernels of the K-quants (Q2_K .. Q6_K) against Q8_K activations.
 * They give the scalar kernels' results bit for bit (kernels_scalar_kquant.c
 * defines them): the integer sums of a super-block are exact in any order,
 * and each (row, token) then takes the scalar float steps in the scalar
 * order, four (row, token) pairs in the lanes of one vector.
 *
 * A super-block is unpacked once into eight vectors of 32 unsigned codes in
 * activation order and the 16 scales of its 16-value groups. Per 32 values
 * and token, vpmaddubsw and vpmaddwd with ones give sums of 4 products (at
 * most 4 * 63 * 127 < 2^15), two chunks of which are packed to int16 and
 * multiplied by their groups' scales with one more vpmaddwd. Minima (Q2_K,
 * Q4_K, Q5_K) and the offsets of codes stored unsigned (Q3_K -4, Q6_K -32)
 * are integer sums of the activations' bsums. Several rows and tokens share
 * each unpacked block and each activation load (rows4 for decode, tiles
 * for prompts), as in kernels_avx512_kquant.c. */
#include "kernels_kquant_simd.h"

#define AI KQ_AI

#define KQ_TILE_R 2
#define KQ_TILE_T 4 /* the AVX2 set's token group */

/* One super-block, unpacked. */
typedef struct ksb {
    __m256i u[8]; /* codes of values 32i .. 32i+31, unsigned */
    __m128i s8;   /* scale of each 16 values, int8 */
    __m256i bias; /* int16: isum += bias . bsums (the unsigned codes' offset) */
    __m256i mins; /* int16: msum = mins . bsums */
} ksb;

AI __m256i ld256(const void *p) {
    return _mm256_loadu_si256((const __m256i *)p);
}

AI __m256i bits(__m256i v, int shift, int mask) {
    return _mm256_and_si256(_mm256_srli_epi16(v, shift), _mm256_set1_epi8((char)mask));
}

/* Q4_K / Q5_K scales and minima, per 16 values. */
AI void k4_scales(const void *blk, ksb *w) {
    __m128i sm = kq_k4_scales(blk); /* scales 0..7, minima 0..7 */
    w->s8 = _mm_unpacklo_epi8(sm, sm);
    w->mins = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(sm, sm));
}

AI void unpack_q4_k(const void *blk, ksb *w) {
    const nm_block_q4_k *b = blk;
    _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {
        __m256i q = ld256(b->qs + 32 * k);
        w->u[2 * k] = bits(q, 0, 15);
        w->u[2 * k + 1] = bits(q, 4, 15);
    }
    k4_scales(b, w);
}

AI void unpack_q5_k(const void *blk, ksb *w) {
    const nm_block_q5_k *b = blk;
    __m256i qh = ld256(b->qh);
    _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {
        __m256i q = ld256(b->qs + 32 * k);
        w->u[2 * k] = _mm256_or_si256(bits(q, 0, 15), _mm256_slli_epi16(bits(qh, 2 * k, 1), 4));
        w->u[2 * k + 1] =
            _mm256_or_si256(bits(q, 4, 15), _mm256_slli_epi16(bits(qh, 2 * k + 1, 1), 4));
    }
    k4_scales(b, w);
}

AI void unpack_q6_k(const void *blk, ksb *w) {
    const nm_block_q6_k *b = blk;
    _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {
        __m256i l0 = ld256(b->ql + 64 * h), l1 = ld256(b->ql + 64 * h + 32);
        __m256i qh = ld256(b->qh + 32 * h);
        __m256i lo[4] = {bits(l0, 0, 15), bits(l1, 0, 15), bits(l0, 4, 15), bits(l1, 4, 15)};
        _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) w->u[4 * h + k] =
            _mm256_or_si256(lo[k], _mm256_slli_epi16(bits(qh, 2 * k, 3), 4));
    }
    w->s8 = _mm_loadu_si128((const __m128i *)b->scales);
    w->bias = kq_bias(w->s8, 5);
}

AI void unpack_q2_k(const void *blk, ksb *w) {
    const nm_block_q2_k *b = blk;
    _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {
        __m256i q = ld256(b->qs + 32 * h);
        _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) w->u[4 * h + j] = bits(q, 2 * j, 3);
    }
    __m128i s = _mm_loadu_si128((const __m128i *)b->scales);
    const __m128i m4 = _mm_set1_epi8(15);
    w->s8 = _mm_and_si128(s, m4);
    w->mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(s, 4), m4));
}

AI void unpack_q3_k(const void *blk, ksb *w) {
    const nm_block_q3_k *b = blk;
    __m256i hm = ld256(b->hmask);
    _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {
        __m256i q = ld256(b->qs + 32 * h);
        _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) {
            __m256i hi = _mm256_slli_epi16(bits(hm, 4 * h + j, 1), 2);
            w->u[4 * h + j] = _mm256_or_si256(bits(q, 2 * j, 3), hi);
        }
    }
    w->s8 = kq_q3k_scales(b->scales);
    w->bias = kq_bias(w->s8, 2);
}

/* The int16 scales (every scale fits int8: Q4_K's are 0..63) of chunks 2k and 2k + 1 after packing
 * their sums of 4 products (ksb_dot): int16 position 8h + i holds 4 values of chunk 2k (i < 4) or
 * 2k + 1 (i >= 4) in 16-value group h of the chunk; the groups are 4k + h (chunk 2k) and 4k + 2 + h
 * (chunk 2k + 1). */
AI __m256i pair_scales(__m128i s8, int k) {
    const char a = (char)(4 * k), b = (char)(4 * k + 2), c = (char)(4 * k + 1),
               d = (char)(4 * k + 3);
    __m128i idx = _mm_setr_epi8(a, a, a, a, b, b, b, b, c, c, c, c, d, d, d, d);
    return _mm256_cvtepi8_epi16(_mm_shuffle_epi8(s8, idx));
}

/* A token's activations for one super-block. */
typedef struct kact {
    __m256i a[8];
    __m256i bsums;
    float d;
} kact;

AI void load_act(const void *act, int64_t n, int64_t b, kact *x) {
    const int8_t *qa = nm_actk_qs(act) + b * NM_QK_K;
    _Pragma("GCC unroll 8") for (int i = 0; i < 8; i++) x->a[i] = ld256(qa + 32 * i);
    x->bsums = ld256(nm_actk_bsums(act, n) + b * 16);
    x->d = nm_actk_d(act, n)[b];
}

/* Sums of 4 products of codes and activations, 8 int32 lanes. */
AI __m256i dot4(__m256i u, __m256i a) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, a), _mm256_set1_epi16(1));
}

/* isum as 8 int32 lanes (their sum is the scalar kernel's isum), and
 * msum's lanes when MIN. */
AI void ksb_dot(const ksb *w, const __m256i *sc, const kact *x, __m256i *isum, __m256i *msum,
                const int MIN, const int BIAS) {
    __m256i acc = BIAS ? _mm256_madd_epi16(x->bsums, w->bias) : _mm256_setzero_si256();
    _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {
        __m256i p = _mm256_packs_epi32(dot4(w->u[2 * k], x->a[2 * k]),
                                       dot4(w->u[2 * k + 1], x->a[2 * k + 1]));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, sc[k]));
    }
    *isum = acc;
    if (MIN)
        *msum = _mm256_madd_epi16(x->bsums, w->mins);
}

/* Unpacks row r's block b and its scale vectors (ksb_dot's sc). */
AI void unpack_row(const void *w, size_t rb, int r, int64_t b, size_t bsize,
                   void (*unpack)(const void *, ksb *), ksb *wb, __m256i *sc, size_t ahead) {
    const char *blk = (const char *)w + (size_t)r * rb + (size_t)b * bsize;
    kq_prefetch(blk, bsize, ahead);
    unpack(blk, wb);
    _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) sc[k] = pair_scales(wb->s8, k);
}

/* Decode: 4 rows at w, w + rb, ... x one token, the rows in the lanes of
 * the float step. */
AI void kq_rows4(const void *w, size_t rb, const void *act, int64_t n, float *out, size_t bsize,
                 size_t doff, void (*unpack)(const void *, ksb *), const int MIN, const int BIAS) {
    __m128 acc = _mm_setzero_ps();
    for (int64_t b = 0; b < n / NM_QK_K; b++) {
        kact x;
        load_act(act, n, b, &x);
        __m256i is[4], ms[4];
        _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) {
            ksb wb;
            __m256i sc[4];
            unpack_row(w, rb, r, b, bsize, unpack, &wb, sc, NM_PREFETCH_ROWS4_BYTES);
            ksb_dot(&wb, sc, &x, &is[r], &ms[r], MIN, BIAS);
        }
        __m128 d, dm;
        kq_gather_d4((const char *)w + (size_t)b * bsize, rb, doff, MIN, &d, &dm);
        acc = kq_step4(acc, d, dm, _mm_set1_ps(x.d), is, ms, MIN);
    }
    _mm_storeu_ps(out, acc);
}

/* R rows x nt tokens (nt <= KQ_TILE_T), the tokens in the lanes of the
 * float step; out[r * nt + t]. */
AI void kq_rt(const void *w, size_t rb, const void *const *acts, const int R, int nt, int64_t n,
              float *out, size_t bsize, size_t doff, void (*unpack)(const void *, ksb *),
              const int MIN, const int BIAS) {
    __m128 acc[KQ_TILE_R];
    for (int r = 0; r < R; r++)
        acc[r] = _mm_setzero_ps();
    for (int64_t b = 0; b < n / NM_QK_K; b++) {
        ksb wb[KQ_TILE_R];
        __m256i sc[KQ_TILE_R][4];
        __m128 d[KQ_TILE_R], dm[KQ_TILE_R];
        _Pragma("GCC unroll 2") for (int r = 0; r < R; r++) {
            unpack_row(w, rb, r, b, bsize, unpack, &wb[r], sc[r], NM_PREFETCH_BYTES);
            const char *blk = (const char *)w + (size_t)r * rb + (size_t)b * bsize + doff;
            d[r] = _mm_set1_ps(kq_f16(blk));
            dm[r] = MIN ? _mm_set1_ps(kq_f16(blk + 2)) : d[r];
        }
        __m256i is[KQ_TILE_R][4], ms[KQ_TILE_R][4];
        float da[4] = {0};
        _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {
            _Pragma("GCC unroll 2") for (int r = 0; r < R; r++) is[r][k] = ms[r][k] =
                _mm256_setzero_si256();
            if (k >= nt)
                continue;
            kact x;
            load_act(acts[k], n, b, &x);
            da[k] = x.d;
            _Pragma("GCC unroll 2") for (int r = 0; r < R; r++)
                ksb_dot(&wb[r], sc[r], &x, &is[r][k], &ms[r][k], MIN, BIAS);
        }
        __m128 dav = _mm_loadu_ps(da);
        _Pragma("GCC unroll 2") for (int r = 0; r < R; r++) acc[r] =
            kq_step4(acc[r], d[r], dm[r], dav, is[r], ms[r], MIN);
    }
    for (int r = 0; r < R; r++) {
        float v[4];
        _mm_storeu_ps(v, acc[r]);
        for (int k = 0; k < nt; k++)
            out[r * nt + k] = v[k];
    }
}

#define KQ_KERNEL(T, MIN, BIAS)                                                                    \
    static void T##_rowdot(const void *w, const void *const *acts, int nt, int64_t n,              \
                           float *out) {                                                           \
        kq_rt(w, 0, acts, 1, nt, n, out, sizeof(nm_block_##T), offsetof(nm_block_##T, d),          \
              unpack_##T, MIN, BIAS);                                                              \
    }                                                                                              \
    static void T##_rows4(const void *w, size_t rb, const void *act, int64_t n, float *out) {      \
        kq_rows4(w, rb, act, n, out, sizeof(nm_block_##T), offsetof(nm_block_##T, d), unpack_##T,  \
                 MIN, BIAS);                                                                       \
    }                                                                                              \
    static void T##_tile(const void *w, size_t rb, const void *const *acts, int nt, int64_t n,     \
                         float *out) {                                                             \
        kq_rt(w, rb, acts, KQ_TILE_R, nt, n, out, sizeof(nm_block_##T), offsetof(nm_block_##T, d), \
              unpack_##T, MIN, BIAS);                                                              \
    }

KQ_KERNEL(q2_k, 1, 0)
KQ_KERNEL(q3_k, 0, 1)
KQ_KERNEL(q4_k, 1, 0)
KQ_KERNEL(q5_k, 1, 0)
KQ_KERNEL(q6_k, 0, 1)

#define KQ_SET(T, TYPE)                                                                            \
    ks->k[TYPE] = NM_TYPE_KERNELS(T##_rowdot, T##_rows4, T##_tile, KQ_TILE_R, KQ_TILE_T)

void nm_kernels_avx2_kquant(nm_kernel_set *ks) {
    ks->act_quantize_q8k = nm_act_quantize_q8k_avx2;
    KQ_SET(q2_k, NM_TYPE_Q2_K);
    KQ_SET(q3_k, NM_TYPE_Q3_K);
    KQ_SET(q4_k, NM_TYPE_Q4_K);
    KQ_SET(q5_k, NM_TYPE_Q5_K);
    KQ_SET(q6_k, NM_TYPE_Q6_K);
}
