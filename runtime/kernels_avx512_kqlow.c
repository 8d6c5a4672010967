/* AVX-512 decode kernels (rows4) of the 2- and 3-bit K-quants, Q2_K and
 * Q3_K, with VNNI (and GFNI): the shared parts are kernels_avx512_kq.h's,
 * the other K-quant kernels kernels_avx512_kquant.c's. Bit for bit the
 * scalar kernels (test_kernels). */
#include "kernels_avx512_kq.h"

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

/* The start of each chunk's vpdpbusd chain: -4 * bsum(j) in int32 lane 0
 * of 128-bit lane l of chunk c (sub-block j = 4c + l). */
AI void q3k_starts(const kact *x, __m512i start[4]) {
    const __m512i off = _mm512_sub_epi32(_mm512_setzero_si512(),
                                         _mm512_slli_epi32(_mm512_cvtepi16_epi32(x->bsums), 2));
    _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) start[c] =
        _mm512_maskz_permutexvar_epi32(0x1111,
                                       _mm512_set_epi32(0, 0, 0, 4 * c + 3, 0, 0, 0, 4 * c + 2, 0,
                                                        0, 0, 4 * c + 1, 0, 0, 0, 4 * c),
                                       off);
}

/* A row's isum of one super-block in 8 int32 lanes: codes u, the pair
 * scales sc of chunks (0, 1) and (2, 3), the chains' starts. */
AI __m256i q3k_isum(const __m512i *u, const __m512i *sc, const __m512i *start, const kact *x) {
    __m512i s = _mm512_setzero_si512();
    _Pragma("GCC unroll 2") for (int c = 0; c < 4; c += 2) {
        __m512i p0 = _mm512_dpbusd_epi32(start[c], u[c], x->a[c]);
        __m512i p1 = _mm512_dpbusd_epi32(start[c + 1], u[c + 1], x->a[c + 1]);
        s = _mm512_dpwssd_epi32(s, _mm512_packs_epi32(p0, p1), sc[c / 2]);
    }
    return _mm256_add_epi32(_mm512_castsi512_si256(s), _mm512_extracti64x4_epi64(s, 1));
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
        __m512i start[4];
        q3k_starts(&x, start);
        __m256i is[4];
        _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) {
            ksb wb;
            __m512i sc[4];
            unpack_row(w, rb, r, b, bsize, unpack, &wb, sc, 1, NM_PREFETCH_ROWS4_BYTES);
            is[r] = q3k_isum(wb.u, sc, start, &x);
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

/* GFNI: Q3_K decode with the four rows' scales unpacked together. The 16
 * bytes before each row's d (two code bytes, then the 12 scale bytes) go
 * into one 128-bit lane each (a broadcast and three masked broadcasts from
 * memory); two vpshufb, one vgf2p8affineqb (the low nibbles), one rotate
 * (the high bits to bits 4-5) and one vpternlogd make the 64 signed scales
 * of the four rows, two sign extensions their int16 forms, and one vpermw
 * per chunk pair and row spreads them as pair_scales does (pair_idx). Per row that
 * replaces kq_q3k_scales' eight 128-bit operations, a sign extension and a
 * vpermw from 128 to 512 bits. Codes and sums are q3k_rows4_offset's. */
AI void q3k_rows4_gf(const void *w, size_t rb, const void *act, int64_t n, float *out) {
    const size_t bsize = sizeof(nm_block_q3_k), doff = offsetof(nm_block_q3_k, d);
    const size_t soff = doff - 14; /* the scales start 12 bytes before d */
    /* per lane: the 8 bytes of low nibbles twice (sub-blocks 0-7, 8-15),
     * the 4 bytes of high bits four times */
    const __m512i pick_lo =
        _mm512_broadcast_i32x4(_mm_setr_epi8(2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5, 6, 7, 8, 9));
    const __m512i pick_hi = _mm512_broadcast_i32x4(
        _mm_setr_epi8(10, 11, 12, 13, 10, 11, 12, 13, 10, 11, 12, 13, 10, 11, 12, 13));
    const long long nl = (long long)kq_gf_bits(0, 4), nh = (long long)kq_gf_bits(4, 4);
    const __m512i nib = _mm512_set_epi64(nh, nl, nh, nl, nh, nl, nh, nl);
    /* dword k of a lane: bits 2k, 2k + 1 of each byte to bits 4, 5 */
    const __m512i rot = _mm512_set4_epi32(30, 0, 2, 4);
    __m128 acc = _mm_setzero_ps();
    for (int64_t b = 0; b < n / NM_QK_K; b++) {
        kact x;
        load_act(act, n, b, &x);
        __m512i start[4];
        q3k_starts(&x, start);
        const char *s0 = (const char *)w + (size_t)b * bsize + soff;
        __m512i raw = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)s0));
        raw = _mm512_mask_broadcast_i32x4(raw, 0x00f0, _mm_loadu_si128((const __m128i *)(s0 + rb)));
        raw = _mm512_mask_broadcast_i32x4(raw, 0x0f00,
                                          _mm_loadu_si128((const __m128i *)(s0 + 2 * rb)));
        raw = _mm512_mask_broadcast_i32x4(raw, 0xf000,
                                          _mm_loadu_si128((const __m128i *)(s0 + 3 * rb)));
        const __m512i lo = _mm512_gf2p8affine_epi64_epi8(_mm512_shuffle_epi8(raw, pick_lo), nib, 0);
        const __m512i hi = _mm512_rolv_epi32(_mm512_shuffle_epi8(raw, pick_hi), rot);
        /* row r's 16 scales in bytes 16r .. 16r + 15: lo | (hi & 0x30), - 32 */
        const __m512i s8 = _mm512_sub_epi8(
            _mm512_ternarylogic_epi32(lo, hi, _mm512_set1_epi8(0x30), 0xf8), _mm512_set1_epi8(32));
        const __m512i s16[2] = {_mm512_cvtepi8_epi16(_mm512_castsi512_si256(s8)),
                                _mm512_cvtepi8_epi16(_mm512_extracti64x4_epi64(s8, 1))};
        __m256i is[4];
        _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) {
            const nm_block_q3_k *blk =
                (const nm_block_q3_k *)((const char *)w + (size_t)r * rb + (size_t)b * bsize);
            kq_prefetch((const char *)blk, bsize, NM_PREFETCH_ROWS4_BYTES);
            const __m512i hm = bcast256(blk->hmask);
            __m512i u[4];
            _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) {
                const int sh = 4 * (c % 2);
                __m512i q = bits2_gf(bcast256(blk->qs + 32 * (c / 2)), sh, sh + 2, 2);
                u[c] = _mm512_ternarylogic_epi32(q, high_at(hm, 2 * c, 2 * c + 1, 2),
                                                 _mm512_set1_epi8(4), 0xf8);
            }
            const __m512i sc[2] = {_mm512_permutexvar_epi16(pair_idx(0, 16 * (r % 2)), s16[r / 2]),
                                   _mm512_permutexvar_epi16(pair_idx(2, 16 * (r % 2)), s16[r / 2])};
            is[r] = q3k_isum(u, sc, start, &x);
        }
        __m128 d, dm;
        kq_gather_d4((const char *)w + (size_t)b * bsize, rb, doff, 0, &d, &dm);
        acc = kq_step4(acc, d, dm, _mm_set1_ps(x.d), is, is, 0);
    }
    _mm_storeu_ps(out, acc);
}

static void q3_k_rows4_gf(const void *w, size_t rb, const void *act, int64_t n, float *out) {
    q3k_rows4_gf(w, rb, act, n, out);
}

void nm_kernels_avx512_kqlow(nm_kernel_set *ks, int features) {
    if (!(features & NM_AVX512_VNNI))
        return;
    ks->k[NM_TYPE_Q3_K].rows4 = q3_k_rows4_offset_vnni;
    if (features & NM_AVX512_GFNI) {
        ks->k[NM_TYPE_Q2_K].rows4 = q2_k_rows4_table;
        ks->k[NM_TYPE_Q3_K].rows4 = q3_k_rows4_gf;
    }
}
