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
#include "kernels_avx512_kq.h"

/* Prompt tile: rows x tokens sharing unpacked blocks and activation loads */
#define KQ_TILE_R 2
#define KQ_TILE_T 8

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
        KQ_SET(q4_k, NM_TYPE_Q4_K, vnni);
        KQ_SET(q5_k, NM_TYPE_Q5_K, vnni);
        KQ_SET(q6_k, NM_TYPE_Q6_K, vnni);
        if (features & NM_AVX512_GFNI) {
            KQ_SET(q2_k, NM_TYPE_Q2_K, gfni);
            KQ_SET(q3_k, NM_TYPE_Q3_K, gfni);
            KQ_SET(q4_k, NM_TYPE_Q4_K, gfni);
        }
        nm_kernels_avx512_kqlow(ks, features);
    } else {
        KQ_SET(q2_k, NM_TYPE_Q2_K, bw);
        KQ_SET(q3_k, NM_TYPE_Q3_K, bw);
        KQ_SET(q4_k, NM_TYPE_Q4_K, bw);
        KQ_SET(q5_k, NM_TYPE_Q5_K, bw);
        KQ_SET(q6_k, NM_TYPE_Q6_K, bw);
    }
}
