/* AVX-512 (F, BW, VL, DQ) kernels of Q4_1, Q5_0, Q5_1, IQ4_NL and IQ4_XS,
 * with a VNNI sub-path, bit for bit the scalar ones (kernels_scalar_legacy.c
 * says what they compute; the float steps are kernels_legacy_x86.h's, as in
 * the AVX2 set).
 *
 * 32-element blocks go eight to a step, two to a 512-bit register: block
 * j's 16 nibble bytes in 128-bit lanes 0 and 1 (the second shifted right by
 * 4), block j + 1's in lanes 2 and 3, so the register holds the two blocks'
 * 64 codes in element order and meets 64 activation bytes as they are
 * stored, with no shuffle per token. The nibble bytes come in by 128-bit
 * broadcasts from memory (load ports; this CPU's one 512-bit shuffle port
 * is what limits these loops); two word permutes of the step's bytes
 * (three 64-byte loads, masked: nothing past the row is read) collect the
 * eight F16 scales (and minima). Q5 fifth bits are a 64-bit mask of the two
 * blocks' qh words: one masked byte add of 16.
 *
 * VNNI's vpdpbusd multiplies unsigned codes by signed activations and sums
 * groups of four into int32 with no saturation. Q5_0 and IQ4_NL have signed
 * values: the kernels feed the unsigned q (Q5_0) or values[q] + 128 (IQ4_NL)
 * and take 16 sum(a) or 128 sum(a) off each block's sum, from the
 * activation row's block sums (nm_actq_s): the integer sums are the signed
 * ones exactly. (Computing sum(a) with a second vpdpbusd per 64 bytes cost
 * 15-20% of the decode loop's speed.) Without VNNI, vpmaddubsw + vpmaddwd; there the
 * signed types move the weight's sign onto the activation (|w| * (sign(w)
 * a)), since values[q] + 128 pairs would saturate int16.
 *
 * The eight blocks' int32 partial sums (four registers, eight lanes per
 * block) are added down to one sum per block in two rounds (unpacks for
 * IQ4_NL; vpackssdw + vpmaddwd for the others, whose lane sums fit int16)
 * and one lane swap, then the float steps run on the eight blocks at once.
 * Decode takes four rows per pass (rows4_32; IQ4_XS: rows4_xs_lanes with
 * VNNI, rows4_xs without). The GFNI sub-path (with VNNI) takes the nibbles
 * out with one vgf2p8affineqb (lane_nibbles). */
#include "kernels_kquant_simd.h"
#include "kernels_legacy_x86.h"

#include <stddef.h>

#include <math.h>

#define TOK_GROUP 8

/* ---- step geometry ------------------------------------------------------ */

/* Scales: word i < 8 is block i's d, word 8 + i its m (bytes 2 on). The
 * first permute takes the words of bytes 0..127 (loads 0 and 1), the second
 * keeps those and takes the rest from load 2. */
#define SB(BS, i) ((i) < 8 ? (i) * (BS) : ((i)-8) * (BS) + 2)
#define S1(BS, i) (SB(BS, i) < 128 ? SB(BS, i) / 2 : 0)
#define S2(BS, i) (SB(BS, i) < 128 ? (i) : 32 + (SB(BS, i) - 128) / 2)
#define S16(F, BS)                                                                                 \
    F(BS, 0), F(BS, 1), F(BS, 2), F(BS, 3), F(BS, 4), F(BS, 5), F(BS, 6), F(BS, 7), F(BS, 8),      \
        F(BS, 9), F(BS, 10), F(BS, 11), F(BS, 12), F(BS, 13), F(BS, 14), F(BS, 15)
#define STAB(BS)                                                                                   \
    {                                                                                              \
        {S16(S1, BS)}, {                                                                           \
            S16(S2, BS)                                                                            \
        }                                                                                          \
    }

/* by T_* (kernels_legacy_x86.h): Q4_1, Q5_0, Q5_1, IQ4_NL */
static const uint16_t scale_words[4][2][32] = {STAB(20), STAB(22), STAB(24), STAB(18)};

/* Bytes [64 i, 64 i + 64) of the k blocks at w; zero past them. */
AI __m512i step_load(const char *w, const int T, const int k, const int i) {
    const int bytes = k * blk_bytes(T) - 64 * i;
    if (bytes >= 64)
        return _mm512_loadu_si512(w + 64 * i);
    if (bytes <= 0)
        return _mm512_setzero_si512();
    return _mm512_maskz_loadu_epi8(((__mmask64)1 << bytes) - 1, w + 64 * i);
}

typedef struct step_w {
    __m512i q[4];  /* pair p: operand bytes of blocks 2p, 2p+1 */
    __m256 dw, mw; /* F16 scales and minima of the 8 blocks, as F32 */
} step_w;

/* The nibbles of every 16-byte lane: (v >> 4 in lanes 1 and 3) & 15.
 * GFNI does the shift and the mask as one affine transform per byte (the
 * matrix per 64-bit lane picks bits 0-3 or 4-7): one instruction of the
 * two. */
AI __m512i lane_nibbles(__m512i v, const int GFNI) {
    if (GFNI) {
        const long long lo = (long long)kq_gf_bits(0, 4), hi = (long long)kq_gf_bits(4, 4);
        return _mm512_gf2p8affine_epi64_epi8(v, _mm512_set_epi64(hi, hi, lo, lo, hi, hi, lo, lo),
                                             0);
    }
    const __m512i shift = _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0);
    return _mm512_and_si512(_mm512_srlv_epi64(v, shift), _mm512_set1_epi8(0x0f));
}

/* The weights of k <= 8 blocks at w, as the dot products take them. F:
 * the NM_AVX512_* sub-paths. */
AI step_w unpack_step(const char *w, const int T, const int k, const int F) {
    const int VNNI = F & NM_AVX512_VNNI, GFNI = F & NM_AVX512_GFNI;
    const __m512i l[3] = {step_load(w, T, k, 0), step_load(w, T, k, 1), step_load(w, T, k, 2)};
    step_w s;
    _Pragma("GCC unroll 4") for (int p = 0; p < 4; p++) {
        if (2 * p >= k) {
            s.q[p] = _mm512_setzero_si512();
            continue;
        }
        /* blocks 2p and 2p+1 into lanes 0-1 and 2-3 with broadcasts from
         * memory: load-port work, none on the shuffle port */
        const char *qs = w + 2 * p * blk_bytes(T) + qs_off(T);
        __m512i raw = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)qs));
        if (2 * p + 1 < k)
            raw = _mm512_mask_broadcast_i32x4(
                raw, 0xff00, _mm_loadu_si128((const __m128i *)(qs + blk_bytes(T))));
        __m512i q = lane_nibbles(raw, GFNI);
        if (T == T_Q5_0 || T == T_Q5_1) {
            const char *b0 = w + 2 * p * blk_bytes(T) + qh_off(T);
            uint64_t qh = load_u32(b0);
            if (2 * p + 1 < k)
                qh |= (uint64_t)load_u32(b0 + blk_bytes(T)) << 32;
            q = _mm512_mask_add_epi8(q, _cvtu64_mask64(qh), q, _mm512_set1_epi8(16));
            if (T == T_Q5_0 && !VNNI)
                q = _mm512_sub_epi8(q, _mm512_set1_epi8(16));
        }
        if (T == T_IQ4_NL) {
            __m128i v = _mm_loadu_si128((const __m128i *)nm_iq4nl_values);
            if (VNNI) /* values + 128, unsigned */
                v = _mm_xor_si128(v, _mm_set1_epi8((char)0x80));
            q = _mm512_shuffle_epi8(_mm512_broadcast_i32x4(v), q);
        }
        s.q[p] = q;
    }
    __m512i dm = _mm512_permutex2var_epi16(l[0], _mm512_loadu_si512(scale_words[T][0]), l[1]);
    dm = _mm512_permutex2var_epi16(dm, _mm512_loadu_si512(scale_words[T][1]), l[2]);
    s.dw = _mm256_cvtph_ps(_mm512_castsi512_si128(dm));
    s.mw = has_min(T) ? _mm256_cvtph_ps(_mm512_extracti32x4_epi32(dm, 1)) : _mm256_setzero_ps();
    return s;
}

/* The offset the VNNI kernels take off a signed type's products. */
AI int value_offset(const int T) {
    return T == T_Q5_0 ? 16 : T == T_IQ4_NL ? 128 : 0;
}

/* 16 int32 partial sums of the 64 products q . a (a signed). signed_w:
 * q holds signed values (the non-VNNI path of Q5_0 / IQ4_NL); VNNI takes
 * unsigned q (the values + value_offset, taken off per block later). */
AI __m512i pair_dot(__m512i q, __m512i a, const int signed_w, const int VNNI) {
    if (VNNI)
        return _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, a);
    if (signed_w) {
        a = _mm512_mask_sub_epi8(a, _mm512_movepi8_mask(q), _mm512_setzero_si512(), a);
        q = _mm512_abs_epi8(q);
    }
    return _mm512_madd_epi16(_mm512_maddubs_epi16(q, a), _mm512_set1_epi16(1));
}

/* [sum of block 0's lanes, ..., block 7's] from p[k] = blocks 2k (lanes
 * 0-7) and 2k + 1 (lanes 8-15). */
AI __m256i reduce_pairs(const __m512i p[4]) {
    __m512i s01 =
        _mm512_add_epi32(_mm512_unpacklo_epi32(p[0], p[1]), _mm512_unpackhi_epi32(p[0], p[1]));
    __m512i s23 =
        _mm512_add_epi32(_mm512_unpacklo_epi32(p[2], p[3]), _mm512_unpackhi_epi32(p[2], p[3]));
    /* each 128-bit lane: [p0, p1, p2, p3] summed over that lane */
    __m512i s = _mm512_add_epi32(_mm512_unpacklo_epi64(s01, s23), _mm512_unpackhi_epi64(s01, s23));
    /* lanes 0+1 -> blocks 0, 2, 4, 6; lanes 2+3 -> blocks 1, 3, 5, 7 */
    s = _mm512_add_epi32(s, _mm512_shuffle_i64x2(s, s, _MM_SHUFFLE(2, 3, 0, 1)));
    const __m512i order = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 11, 3, 10, 2, 9, 1, 8, 0);
    return _mm512_castsi512_si256(_mm512_permutexvar_epi32(order, s));
}

/* reduce_pairs for sums that fit int16: each lane of p[k] at most 4 * 31 *
 * 127 in magnitude (Q4_1, Q5_0, Q5_1: codes below 32; not IQ4_NL), the
 * sums of 8 at most 8 * 31 * 127 < 2^15. vpackssdw + vpmaddwd by ones add
 * lane pairs with one shuffle, where unpacks take two. */
AI __m256i reduce_pairs16(const __m512i p[4]) {
    const __m512i one = _mm512_set1_epi16(1);
    /* each 128-bit lane: [p0 (2 sums), p1 (2)] and [p2, p3] */
    __m512i s01 = _mm512_madd_epi16(_mm512_packs_epi32(p[0], p[1]), one);
    __m512i s23 = _mm512_madd_epi16(_mm512_packs_epi32(p[2], p[3]), one);
    /* each 128-bit lane: [p0, p1, p2, p3] summed over that lane */
    __m512i s = _mm512_madd_epi16(_mm512_packs_epi32(s01, s23), one);
    s = _mm512_add_epi32(s, _mm512_shuffle_i64x2(s, s, _MM_SHUFFLE(2, 3, 0, 1)));
    const __m512i order = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 11, 3, 10, 2, 9, 1, 8, 0);
    return _mm512_castsi512_si256(_mm512_permutexvar_epi32(order, s));
}

/* One token's products with the step's unpacked blocks b .. b+k-1 (s),
 * added to acc. */
AI __m256 tok32(const step_w *s, int64_t b, const void *act, int64_t n, __m256 acc, const int T,
                const int k, const int F) {
    const int VNNI = F & NM_AVX512_VNNI;
    const int signed_w = is_signed(T) && !VNNI;
    const int8_t *qa = nm_actq_qs(act) + b * 32;
    __m512i p[4];
    _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) {
        if (2 * j >= k) {
            p[j] = _mm512_setzero_si512();
            continue;
        }
        __m512i a =
            2 * j + 1 < k
                ? _mm512_loadu_si512(qa + 64 * j)
                : _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)(qa + 64 * j)));
        p[j] = pair_dot(s->q[j], a, signed_w, VNNI);
    }
    __m256i isum = T == T_IQ4_NL ? reduce_pairs(p) : reduce_pairs16(p);
    if (VNNI && value_offset(T)) { /* - offset * sum(a) per block */
        const int32_t *sa = nm_actq_s(act, n) + b;
        __m256i sv = k == 8 ? _mm256_loadu_si256((const __m256i *)sa)
                            : _mm256_maskz_loadu_epi32((__mmask8)((1u << k) - 1), sa);
        isum = _mm256_sub_epi32(isum, _mm256_slli_epi32(sv, value_offset(T) == 16 ? 4 : 7));
    }
    return scale_acc(isum, s->dw, s->mw, nm_actq_d(act, n) + b, nm_actq_m(act, n) + b, acc, T, k);
}

/* A step's weights ahead bytes on (past a row's end: the next row's, which
 * the next call reads) into L2: three lines, at least a step's bytes. */
AI void step_prefetch(const char *w, size_t ahead) {
    _mm_prefetch(w + ahead, _MM_HINT_T1);
    _mm_prefetch(w + ahead + 64, _MM_HINT_T1);
    _mm_prefetch(w + ahead + 128, _MM_HINT_T1);
}

/* Blocks b .. b+k-1 of one row for NT tokens. */
AI void step32(const char *row, int64_t b, const void *const *acts, int64_t n, __m256 *acc,
               const int T, const int NT, const int k, const int F, size_t ahead) {
    const char *w = row + b * blk_bytes(T);
    step_prefetch(w, ahead);
    const step_w s = unpack_step(w, T, k, F);
    _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++) acc[t] =
        tok32(&s, b, acts[t], n, acc[t], T, k, F);
}

/* The last k < 8 blocks of a row for nt tokens: step32 wants k known at
 * compile time, so a switch of seven steps, with the tokens in a loop. It
 * is two functions per type and sub-path (tails: any token count; tails1:
 * rows4's one token, acc by value, since through memory rows4 decode ran
 * 19 % slower in cache), shared by every row-dot and rows4 instance:
 * inlined into each of the 96 row-dot instances, with their tokens
 * unrolled, the seven steps were most of this file's compile time. Rows
 * whose block count is a multiple of 8 (most models' widths) never come
 * here. */
AI void tail32(const char *row, int64_t b, const void *const *acts, int nt, int64_t n, __m256 *acc,
               const int T, const int k, const int F, size_t ahead) {
    const char *w = row + b * blk_bytes(T);
    step_prefetch(w, ahead);
    const step_w s = unpack_step(w, T, k, F);
    _Pragma("GCC unroll 1") for (int t = 0; t < nt; t++) acc[t] =
        tok32(&s, b, acts[t], n, acc[t], T, k, F);
}

/* tail32 with k known in each case */
AI void tail32_k(const char *row, int64_t b, const void *const *acts, int nt, int64_t n,
                 __m256 *acc, const int T, int k, const int F, size_t ahead) {
    switch (k) {
    case 7:
        tail32(row, b, acts, nt, n, acc, T, 7, F, ahead);
        break;
    case 6:
        tail32(row, b, acts, nt, n, acc, T, 6, F, ahead);
        break;
    case 5:
        tail32(row, b, acts, nt, n, acc, T, 5, F, ahead);
        break;
    case 4:
        tail32(row, b, acts, nt, n, acc, T, 4, F, ahead);
        break;
    case 3:
        tail32(row, b, acts, nt, n, acc, T, 3, F, ahead);
        break;
    case 2:
        tail32(row, b, acts, nt, n, acc, T, 2, F, ahead);
        break;
    case 1:
        tail32(row, b, acts, nt, n, acc, T, 1, F, ahead);
        break;
    }
}

typedef void (*tail_fn)(const char *row, int64_t b, const void *const *acts, int nt, int64_t n,
                        __m256 *acc, int k, size_t ahead);
typedef __m256 (*tail1_fn)(const char *row, int64_t b, const void *act, int64_t n, __m256 acc,
                           int k, size_t ahead);
#define VG (NM_AVX512_VNNI | NM_AVX512_GFNI)
#define TAIL32(T, F, NAME)                                                                         \
    static __attribute__((noinline)) void NAME(const char *row, int64_t b,                         \
                                               const void *const *acts, int nt, int64_t n,         \
                                               __m256 *acc, int k, size_t ahead) {                 \
        tail32_k(row, b, acts, nt, n, acc, T, k, F, ahead);                                        \
    }                                                                                              \
    static __attribute__((noinline)) __m256 NAME##_1(const char *row, int64_t b, const void *act,  \
                                                     int64_t n, __m256 acc, int k, size_t ahead) { \
        const void *const acts[1] = {act};                                                         \
        tail32_k(row, b, acts, 1, n, &acc, T, k, F, ahead);                                        \
        return acc;                                                                                \
    }
#define TAILS32(T, NAME)                                                                           \
    TAIL32(T, 0, tail_##NAME##_bw)                                                                 \
    TAIL32(T, NM_AVX512_VNNI, tail_##NAME##_vnni)                                                  \
    TAIL32(T, VG, tail_##NAME##_gfni)
TAILS32(T_Q4_1, q4_1)
TAILS32(T_Q5_0, q5_0)
TAILS32(T_Q5_1, q5_1)
TAILS32(T_IQ4_NL, iq4_nl)

/* by T_* and sub-path (bw, vnni, gfni) */
static const tail_fn tails[4][3] = {{tail_q4_1_bw, tail_q4_1_vnni, tail_q4_1_gfni},
                                    {tail_q5_0_bw, tail_q5_0_vnni, tail_q5_0_gfni},
                                    {tail_q5_1_bw, tail_q5_1_vnni, tail_q5_1_gfni},
                                    {tail_iq4_nl_bw, tail_iq4_nl_vnni, tail_iq4_nl_gfni}};

static const tail1_fn tails1[4][3] = {{tail_q4_1_bw_1, tail_q4_1_vnni_1, tail_q4_1_gfni_1},
                                      {tail_q5_0_bw_1, tail_q5_0_vnni_1, tail_q5_0_gfni_1},
                                      {tail_q5_1_bw_1, tail_q5_1_vnni_1, tail_q5_1_gfni_1},
                                      {tail_iq4_nl_bw_1, tail_iq4_nl_vnni_1, tail_iq4_nl_gfni_1}};

AI int sub_path(const int F) {
    return F & NM_AVX512_GFNI ? 2 : F & NM_AVX512_VNNI ? 1 : 0;
}

AI void rowdot32(const void *row, const void *const *acts, int64_t n, float *out, const int T,
                 const int NT, const int F) {
    const int64_t nb = n / 32;
    __m256 acc[TOK_GROUP];
    _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 8 <= nb; b += 8)
        step32(row, b, acts, n, acc, T, NT, 8, F, NM_PREFETCH_BYTES);
    /* the tail on a copy: acc's address never taken, it stays in registers
     * in the loop above (in memory, it was stored every step: Q4_1 matmat
     * -2.5 %) */
    __m256 last[TOK_GROUP];
    _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++) last[t] = acc[t];
    if (b < nb)
        tails[T][sub_path(F)](row, b, acts, NT, n, last, (int)(nb - b), NM_PREFETCH_BYTES);
    _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++) out[t] = hsum8(last[t]);
}

/* Decode: 4 rows at w, w + rb, ... x one token, step by step in turn, so
 * four rows stream from memory at once (as in the K-quants' rows4); each
 * row keeps its own accumulators and rowdot32's steps, so its bits. */
AI void rows4_32(const void *w, size_t rb, const void *act, int64_t n, float *out, const int T,
                 const int F) {
    const int64_t nb = n / 32;
    const void *const acts[1] = {act};
    __m256 acc[4];
    _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) acc[r] = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 8 <= nb; b += 8)
        _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) step32(
            (const char *)w + r * rb, b, acts, n, &acc[r], T, 1, 8, F, NM_PREFETCH_ROWS4_BYTES);
    _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) {
        if (b < nb)
            acc[r] = tails1[T][sub_path(F)]((const char *)w + r * rb, b, act, n, acc[r],
                                            (int)(nb - b), NM_PREFETCH_ROWS4_BYTES);
        out[r] = hsum8(acc[r]);
    }
}

/* ---- IQ4_XS: a super-block's 128 code bytes are contiguous -------------- */

AI void rowdot_xs(const void *row, const void *const *acts, int64_t n, float *out, const int NT,
                  const int F) {
    const int VNNI = F & NM_AVX512_VNNI, GFNI = F & NM_AVX512_GFNI;
    const nm_block_iq4_xs *w = row;
    __m128i v = _mm_loadu_si128((const __m128i *)nm_iq4nl_values);
    if (VNNI)
        v = _mm_xor_si128(v, _mm_set1_epi8((char)0x80));
    const __m512i table = _mm512_broadcast_i32x4(v);
    float acc[TOK_GROUP];
    _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++) acc[t] = 0.0f;
    for (int64_t s = 0; s < n / NM_QK_K; s++) {
        const char *blk = (const char *)(w + s);
        _mm_prefetch(blk + NM_PREFETCH_BYTES, _MM_HINT_T1);
        _mm_prefetch(blk + NM_PREFETCH_BYTES + 64, _MM_HINT_T1);
        _mm_prefetch(blk + NM_PREFETCH_BYTES + 128, _MM_HINT_T1);
        const __m512i x[2] = {_mm512_loadu_si512(w[s].qs), _mm512_loadu_si512(w[s].qs + 64)};
        __m512i q[4];
        _Pragma("GCC unroll 4") for (int p = 0; p < 4; p++) {
            __m512i raw = p % 2 ? _mm512_shuffle_i64x2(x[p / 2], x[p / 2], _MM_SHUFFLE(3, 3, 2, 2))
                                : _mm512_shuffle_i64x2(x[p / 2], x[p / 2], _MM_SHUFFLE(1, 1, 0, 0));
            q[p] = _mm512_shuffle_epi8(table, lane_nibbles(raw, GFNI));
        }
        __m256i ls = xs_scales(&w[s]);
        float dw = _cvtsh_ss(w[s].d);
        _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++) {
            const int8_t *qa = nm_actk_qs(acts[t]) + s * NM_QK_K;
            __m512i p[4];
            _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) p[j] =
                pair_dot(q[j], _mm512_loadu_si512(qa + 64 * j), !VNNI, VNNI);
            __m256i isum = reduce_pairs(p);
            if (VNNI) { /* take off 128 sum(a) per sub-block, from the act's sums of 16 */
                __m256i bs = _mm256_loadu_si256(
                    (const __m256i *)(nm_actk_bsums(acts[t], n) + s * (NM_QK_K / 16)));
                __m256i sa = _mm256_madd_epi16(bs, _mm256_set1_epi16(1));
                isum = _mm256_sub_epi32(isum, _mm256_slli_epi32(sa, 7));
            }
            int32_t sumi = hsum_i32(_mm256_mullo_epi32(isum, ls));
            acc[t] = fmaf(dw * nm_actk_d(acts[t], n)[s], (float)sumi, acc[t]);
        }
    }
    _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++) out[t] = acc[t];
}

/* Decode without VNNI: 4 rows at w, w + rb, ... x one token. The rows
 * share the activation loads, and their sums are added across lanes
 * together (kq_hsum4), four rows to a vector: their float steps run in the
 * lanes of one vector, each lane the scalar's. */
AI void rows4_xs(const void *w, size_t rb, const void *act, int64_t n, float *out) {
    const __m512i table = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)nm_iq4nl_values));
    __m128 acc = _mm_setzero_ps();
    for (int64_t s = 0; s < n / NM_QK_K; s++) {
        const int8_t *qa = nm_actk_qs(act) + s * NM_QK_K;
        __m512i a[4];
        _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) a[j] = _mm512_loadu_si512(qa + 64 * j);
        __m256i sums[4];
        _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) {
            const nm_block_iq4_xs *blk = (const nm_block_iq4_xs *)((const char *)w + r * rb) + s;
            kq_prefetch((const char *)blk, sizeof *blk, NM_PREFETCH_ROWS4_BYTES);
            const __m512i x[2] = {_mm512_loadu_si512(blk->qs), _mm512_loadu_si512(blk->qs + 64)};
            __m512i p[4];
            _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) {
                __m512i raw =
                    j % 2 ? _mm512_shuffle_i64x2(x[j / 2], x[j / 2], _MM_SHUFFLE(3, 3, 2, 2))
                          : _mm512_shuffle_i64x2(x[j / 2], x[j / 2], _MM_SHUFFLE(1, 1, 0, 0));
                p[j] = pair_dot(_mm512_shuffle_epi8(table, lane_nibbles(raw, 0)), a[j], 1, 0);
            }
            sums[r] = _mm256_mullo_epi32(reduce_pairs(p), xs_scales(blk));
        }
        __m128 d, dm;
        kq_gather_d4((const char *)w + s * sizeof(nm_block_iq4_xs), rb,
                     offsetof(nm_block_iq4_xs, d), 0, &d, &dm);
        __m128 dd = _mm_mul_ps(d, _mm_set1_ps(nm_actk_d(act, n)[s]));
        acc = _mm_fmadd_ps(dd, _mm_cvtepi32_ps(kq_hsum4(sums)), acc);
    }
    _mm_storeu_ps(out, acc);
}

/* VNNI decode of IQ4_XS, 4 rows, with the activations arranged per super-block
 * instead of the weights: 64 code bytes (sub-blocks k..k+3, 16 bytes each)
 * give their low nibbles (values 0-15 of sub-block k + lane) and high
 * nibbles (values 16-31) as they lie, and the activations are gathered to
 * match (two 128-bit lane shuffles per 64 bytes, once for the four rows),
 * where rows4_xs spreads each row's code bytes (a lane shuffle per 32
 * values and row). Each chain of two vpdpbusd starts from -128 sum(a) of
 * its sub-block in one int32 lane (the values + 128 offset, built once per
 * super-block). One unpack round leaves sub-blocks k and 4 + k in the
 * int32 lanes of 128-bit lane k, which meet the scales in that order (two
 * variable shifts of broadcast scale words); every lane is at most 8 * 241 *
 * 127 + 128 * 32 * 127 in magnitude, times a scale below 2^5: the int32
 * sums are the scalar sumi exactly, and the float step is rows4_xs's.
 * In cache (one thread, 64 x 5632) 18.7 -> 25.2 GB/s with GFNI. */
AI void rows4_xs_lanes(const void *w, size_t rb, const void *act, int64_t n, float *out,
                       const int GFNI) {
    const __m512i table = _mm512_broadcast_i32x4(_mm_xor_si128(
        _mm_loadu_si128((const __m128i *)nm_iq4nl_values), _mm_set1_epi8((char)0x80)));
    /* int32 lane l holds sub-block j = l / 4 + 4 (l % 2): its 4-bit scale at
     * bit 4j of scales_l, its 2-bit high part at bit 2j of scales_h (bit
     * 16 + 2j of the word at the block's start), moved to bits 4-5 */
#define XS_J(l) ((l) / 4 + 4 * ((l) % 2))
#define XS_SET16(F)                                                                                \
    _mm512_set_epi32(F(15), F(14), F(13), F(12), F(11), F(10), F(9), F(8), F(7), F(6), F(5), F(4), \
                     F(3), F(2), F(1), F(0))
#define XS_LO(l) (4 * XS_J(l))
#define XS_HI(l) (12 + 2 * XS_J(l))
    const __m512i lo_shift = XS_SET16(XS_LO), hi_shift = XS_SET16(XS_HI);
#undef XS_HI
#undef XS_LO
#undef XS_SET16
#undef XS_J
    const __m512i m_lo = _mm512_set1_epi64((long long)kq_gf_bits(0, 4));
    const __m512i m_hi = _mm512_set1_epi64((long long)kq_gf_bits(4, 4));
    /* sub-block k's offset into int32 lane 0 of 128-bit lane k */
    const __m512i to_a = _mm512_set_epi32(0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0);
    const __m512i to_b = _mm512_add_epi32(to_a, _mm512_set1_epi32(4));
    __m128 acc = _mm_setzero_ps();
    for (int64_t s = 0; s < n / NM_QK_K; s++) {
        const int8_t *qa = nm_actk_qs(act) + s * NM_QK_K;
        __m512i a[4];
        _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) a[j] = _mm512_loadu_si512(qa + 64 * j);
        /* [first 16 of sub-blocks 0..3], [last 16 of 0..3], the same for 4..7 */
        const __m512i alo0 = _mm512_shuffle_i64x2(a[0], a[1], 0x88);
        const __m512i ahi0 = _mm512_shuffle_i64x2(a[0], a[1], 0xdd);
        const __m512i alo1 = _mm512_shuffle_i64x2(a[2], a[3], 0x88);
        const __m512i ahi1 = _mm512_shuffle_i64x2(a[2], a[3], 0xdd);
        const __m256i bs =
            _mm256_loadu_si256((const __m256i *)(nm_actk_bsums(act, n) + s * (NM_QK_K / 16)));
        const __m512i off = _mm512_castsi256_si512(
            _mm256_sub_epi32(_mm256_setzero_si256(),
                             _mm256_slli_epi32(_mm256_madd_epi16(bs, _mm256_set1_epi16(1)), 7)));
        const __m512i start_a = _mm512_maskz_permutexvar_epi32(0x1111, to_a, off);
        const __m512i start_b = _mm512_maskz_permutexvar_epi32(0x1111, to_b, off);
        __m512i p[4];
        _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) {
            const char *blk = (const char *)w + r * rb + s * sizeof(nm_block_iq4_xs);
            kq_prefetch(blk, sizeof(nm_block_iq4_xs), NM_PREFETCH_ROWS4_BYTES);
            const __m512i x0 = _mm512_loadu_si512(blk + offsetof(nm_block_iq4_xs, qs));
            const __m512i x1 = _mm512_loadu_si512(blk + offsetof(nm_block_iq4_xs, qs) + 64);
            __m512i lo0, hi0, lo1, hi1;
            if (GFNI) {
                lo0 = _mm512_gf2p8affine_epi64_epi8(x0, m_lo, 0);
                hi0 = _mm512_gf2p8affine_epi64_epi8(x0, m_hi, 0);
                lo1 = _mm512_gf2p8affine_epi64_epi8(x1, m_lo, 0);
                hi1 = _mm512_gf2p8affine_epi64_epi8(x1, m_hi, 0);
            } else {
                const __m512i m4 = _mm512_set1_epi8(0x0f);
                lo0 = _mm512_and_si512(x0, m4);
                hi0 = _mm512_and_si512(_mm512_srli_epi16(x0, 4), m4);
                lo1 = _mm512_and_si512(x1, m4);
                hi1 = _mm512_and_si512(_mm512_srli_epi16(x1, 4), m4);
            }
            __m512i sa = _mm512_dpbusd_epi32(start_a, _mm512_shuffle_epi8(table, lo0), alo0);
            sa = _mm512_dpbusd_epi32(sa, _mm512_shuffle_epi8(table, hi0), ahi0);
            __m512i sb = _mm512_dpbusd_epi32(start_b, _mm512_shuffle_epi8(table, lo1), alo1);
            sb = _mm512_dpbusd_epi32(sb, _mm512_shuffle_epi8(table, hi1), ahi1);
            /* 128-bit lane k: sub-blocks [k, 4 + k, k, 4 + k] */
            const __m512i t =
                _mm512_add_epi32(_mm512_unpacklo_epi32(sa, sb), _mm512_unpackhi_epi32(sa, sb));
            const __m512i sl =
                _mm512_set1_epi32((int)load_u32(blk + offsetof(nm_block_iq4_xs, scales_l)));
            const __m512i sh = _mm512_set1_epi32((int)load_u32(blk));
            const __m512i ls = _mm512_sub_epi32(
                _mm512_or_si512(
                    _mm512_and_si512(_mm512_srlv_epi32(sl, lo_shift), _mm512_set1_epi32(15)),
                    _mm512_and_si512(_mm512_srlv_epi32(sh, hi_shift), _mm512_set1_epi32(0x30))),
                _mm512_set1_epi32(32));
            p[r] = _mm512_mullo_epi32(t, ls);
        }
        /* the four rows' sums, row r in lane r */
        const __m512i u01 =
            _mm512_add_epi32(_mm512_unpacklo_epi32(p[0], p[1]), _mm512_unpackhi_epi32(p[0], p[1]));
        const __m512i u23 =
            _mm512_add_epi32(_mm512_unpacklo_epi32(p[2], p[3]), _mm512_unpackhi_epi32(p[2], p[3]));
        __m512i v =
            _mm512_add_epi32(_mm512_unpacklo_epi64(u01, u23), _mm512_unpackhi_epi64(u01, u23));
        __m256i v8 = _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
        __m128i sumi = _mm_add_epi32(_mm256_castsi256_si128(v8), _mm256_extracti128_si256(v8, 1));
        __m128 d, dm;
        kq_gather_d4((const char *)w + s * sizeof(nm_block_iq4_xs), rb,
                     offsetof(nm_block_iq4_xs, d), 0, &d, &dm);
        __m128 dd = _mm_mul_ps(d, _mm_set1_ps(nm_actk_d(act, n)[s]));
        acc = _mm_fmadd_ps(dd, _mm_cvtepi32_ps(sumi), acc);
    }
    _mm_storeu_ps(out, acc);
}

static void rows4_iq4_xs_vnni(const void *w, size_t rb, const void *act, int64_t n, float *out) {
    rows4_xs_lanes(w, rb, act, n, out, 0);
}
static void rows4_iq4_xs_gfni(const void *w, size_t rb, const void *act, int64_t n, float *out) {
    rows4_xs_lanes(w, rb, act, n, out, NM_AVX512_GFNI);
}

static void rows4_iq4_xs_bw(const void *w, size_t rb, const void *act, int64_t n, float *out) {
    rows4_xs(w, rb, act, n, out);
}

/* ---- entry points: one instance per type, token count and sub-path ------ */

#define DISPATCH_NT(CALL)                                                                          \
    switch (nt) {                                                                                  \
    case 1:                                                                                        \
        CALL(1);                                                                                   \
        break;                                                                                     \
    case 2:                                                                                        \
        CALL(2);                                                                                   \
        break;                                                                                     \
    case 3:                                                                                        \
        CALL(3);                                                                                   \
        break;                                                                                     \
    case 4:                                                                                        \
        CALL(4);                                                                                   \
        break;                                                                                     \
    case 5:                                                                                        \
        CALL(5);                                                                                   \
        break;                                                                                     \
    case 6:                                                                                        \
        CALL(6);                                                                                   \
        break;                                                                                     \
    case 7:                                                                                        \
        CALL(7);                                                                                   \
        break;                                                                                     \
    default:                                                                                       \
        CALL(8);                                                                                   \
        break;                                                                                     \
    }

/* F: the NM_AVX512_* sub-paths; GFNI is used with VNNI only (every CPU
 * with AVX-512 GFNI has VNNI, not the other way round). */
#define ROWDOT32(NAME, T, F)                                                                       \
    static void NAME(const void *w, const void *const *acts, int nt, int64_t n, float *out) {      \
        DISPATCH_NT(CALL32_##T##_##F)                                                              \
    }
#define ROWDOTS32(T, NAME)                                                                         \
    ROWDOT32(rowdot_##NAME##_bw, T, 0)                                                             \
    ROWDOT32(rowdot_##NAME##_vnni, T, NM_AVX512_VNNI)                                              \
    ROWDOT32(rowdot_##NAME##_gfni, T, VG)
#define CALL32(T, F, NT) rowdot32(w, acts, n, out, T, NT, F)
#define CALL32_T_Q4_1_0(NT) CALL32(T_Q4_1, 0, NT)
#define CALL32_T_Q4_1_NM_AVX512_VNNI(NT) CALL32(T_Q4_1, NM_AVX512_VNNI, NT)
#define CALL32_T_Q4_1_VG(NT) CALL32(T_Q4_1, VG, NT)
#define CALL32_T_Q5_0_0(NT) CALL32(T_Q5_0, 0, NT)
#define CALL32_T_Q5_0_NM_AVX512_VNNI(NT) CALL32(T_Q5_0, NM_AVX512_VNNI, NT)
#define CALL32_T_Q5_0_VG(NT) CALL32(T_Q5_0, VG, NT)
#define CALL32_T_Q5_1_0(NT) CALL32(T_Q5_1, 0, NT)
#define CALL32_T_Q5_1_NM_AVX512_VNNI(NT) CALL32(T_Q5_1, NM_AVX512_VNNI, NT)
#define CALL32_T_Q5_1_VG(NT) CALL32(T_Q5_1, VG, NT)
#define CALL32_T_IQ4_NL_0(NT) CALL32(T_IQ4_NL, 0, NT)
#define CALL32_T_IQ4_NL_NM_AVX512_VNNI(NT) CALL32(T_IQ4_NL, NM_AVX512_VNNI, NT)
#define CALL32_T_IQ4_NL_VG(NT) CALL32(T_IQ4_NL, VG, NT)
ROWDOTS32(T_Q4_1, q4_1)
ROWDOTS32(T_Q5_0, q5_0)
ROWDOTS32(T_Q5_1, q5_1)
ROWDOTS32(T_IQ4_NL, iq4_nl)

#define ROWS4_32(NAME, T, F)                                                                       \
    static void NAME(const void *w, size_t rb, const void *act, int64_t n, float *out) {           \
        rows4_32(w, rb, act, n, out, T, F);                                                        \
    }
#define ROWS4S_32(T, NAME)                                                                         \
    ROWS4_32(rows4_##NAME##_bw, T, 0)                                                              \
    ROWS4_32(rows4_##NAME##_vnni, T, NM_AVX512_VNNI)                                               \
    ROWS4_32(rows4_##NAME##_gfni, T, VG)
ROWS4S_32(T_Q4_1, q4_1)
ROWS4S_32(T_Q5_0, q5_0)
ROWS4S_32(T_Q5_1, q5_1)
ROWS4S_32(T_IQ4_NL, iq4_nl)

#define ROWDOT_XS(NAME, F)                                                                         \
    static void NAME(const void *w, const void *const *acts, int nt, int64_t n, float *out) {      \
        DISPATCH_NT(CALL_XS_##F)                                                                   \
    }
#define CALL_XS_0(NT) rowdot_xs(w, acts, n, out, NT, 0)
#define CALL_XS_NM_AVX512_VNNI(NT) rowdot_xs(w, acts, n, out, NT, NM_AVX512_VNNI)
#define CALL_XS_VG(NT) rowdot_xs(w, acts, n, out, NT, VG)
ROWDOT_XS(rowdot_iq4_xs_bw, 0)
ROWDOT_XS(rowdot_iq4_xs_vnni, NM_AVX512_VNNI)
ROWDOT_XS(rowdot_iq4_xs_gfni, VG)

void nm_kernels_avx512_legacy(nm_kernel_set *ks, int features) {
    const int vnni = features & NM_AVX512_VNNI, gfni = vnni && (features & NM_AVX512_GFNI);
#define LEGACY_ALL(SUFFIX)                                                                         \
    do {                                                                                           \
        ks->k[NM_TYPE_Q4_1].rowdot = rowdot_q4_1_##SUFFIX;                                         \
        ks->k[NM_TYPE_Q4_1].rows4 = rows4_q4_1_##SUFFIX;                                           \
        ks->k[NM_TYPE_Q5_0].rows4 = rows4_q5_0_##SUFFIX;                                           \
        ks->k[NM_TYPE_Q5_1].rows4 = rows4_q5_1_##SUFFIX;                                           \
        ks->k[NM_TYPE_IQ4_NL].rows4 = rows4_iq4_nl_##SUFFIX;                                       \
        ks->k[NM_TYPE_Q5_0].rowdot = rowdot_q5_0_##SUFFIX;                                         \
        ks->k[NM_TYPE_Q5_1].rowdot = rowdot_q5_1_##SUFFIX;                                         \
        ks->k[NM_TYPE_IQ4_NL].rowdot = rowdot_iq4_nl_##SUFFIX;                                     \
        ks->k[NM_TYPE_IQ4_XS].rowdot = rowdot_iq4_xs_##SUFFIX;                                     \
        ks->k[NM_TYPE_IQ4_XS].rows4 = rows4_iq4_xs_##SUFFIX;                                       \
    } while (0)
    if (gfni)
        LEGACY_ALL(gfni);
    else if (vnni)
        LEGACY_ALL(vnni);
    else
        LEGACY_ALL(bw);
#undef LEGACY_ALL
}
