/* AVX2 kernels of Q4_1, Q5_0, Q5_1, IQ4_NL (Q8 activations per 32) and
 * IQ4_XS (Q8_K activations), bit for bit the scalar ones
 * (kernels_scalar_legacy.c says what they compute).
 *
 * 32-element blocks go eight to a step. Each block is unpacked to its 32
 * codes in element order in one register: its 16 nibble bytes broadcast to
 * both 128-bit lanes, the upper lane shifted right by 4, masked to 0..15;
 * Q5 types add the fifth bits, which a byte shuffle of qh, a test against
 * 1 << (j % 8) and a compare spread to bytes. vpmaddubsw wants unsigned x
 * signed bytes: the unsigned Q4_1 / Q5_1 codes go in as they are; the
 * signed Q5_0 and IQ4_NL values (IQ4_NL's from a 16-byte table by vpshufb)
 * move their sign onto the activation, |w| * (sign(w) a). Pair sums stay
 * below 2^15 (at most 2 * 127 * 127). vpmaddwd gives eight int32 partial
 * sums per block, and three rounds of vphaddd plus one add of the lanes
 * leave the eight block sums in one register, so the float steps (scale,
 * FMA into the eight lane accumulators) run once per eight blocks. A row's
 * last step takes the remaining blocks with zero scales in the empty lanes,
 * which leaves those accumulators as they were. Decode takes four rows a
 * call (rows4_32, rows4_iq4_xs): each row's steps as rowdot's. */
#include "kernels_legacy_x86.h"

#include <math.h>
#include <string.h>

#define TOK_GROUP 4

/* Block blk's 32 weights as bytes: unsigned codes (Q4_1, Q5_1) or signed
 * values (Q5_0, IQ4_NL). */
AI __m256i unpack(const char *blk, const int T) {
    __m256i q = nibbles(blk + qs_off(T));
    if (T == T_IQ4_NL) {
        const __m256i table =
            _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)nm_iq4nl_values));
        return _mm256_shuffle_epi8(table, q);
    }
    if (T == T_Q4_1)
        return q;
    q = _mm256_or_si256(q, fifth_bits(load_u32(blk + qh_off(T))));
    return T == T_Q5_0 ? _mm256_sub_epi8(q, _mm256_set1_epi8(16)) : q;
}

/* The |w| operand of a block for vpmaddubsw (w itself when unsigned). */
AI __m256i weight_operand(__m256i w, const int T) {
    return is_signed(T) ? _mm256_sign_epi8(w, w) : w;
}

/* Eight int32 partial sums of w . a. */
AI __m256i block_prod(__m256i wop, __m256i w, const int8_t *a, const int T) {
    __m256i av = _mm256_loadu_si256((const __m256i *)a);
    if (is_signed(T))
        av = _mm256_sign_epi8(av, w);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(wop, av), _mm256_set1_epi16(1));
}

/* Blocks b .. b+k-1 of one row for NT tokens: each block is unpacked once
 * for all tokens. The step's 144-192 bytes are prefetched ahead bytes
 * ahead. */
AI void step32(const char *row, int64_t b, const void *const *acts, int64_t n, __m256 *acc,
               const int T, const int NT, const int k, const size_t ahead) {
    const char *w = row + b * blk_bytes(T);
    _mm_prefetch(w + ahead, _MM_HINT_T1);
    _mm_prefetch(w + ahead + 64, _MM_HINT_T1);
    _mm_prefetch(w + ahead + 128, _MM_HINT_T1);
    __m256i p[TOK_GROUP][8];
    _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++) {
        if (j >= k) {
            _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) p[t][j] = _mm256_setzero_si256();
            continue;
        }
        __m256i wv = unpack(w + j * blk_bytes(T), T);
        __m256i wop = weight_operand(wv, T);
        _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) p[t][j] =
            block_prod(wop, wv, nm_actq_qs(acts[t]) + (b + j) * 32, T);
    }
    __m256 dw, mw = _mm256_setzero_ps();
    block_scales(w, T, k, &dw, &mw);
    _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) acc[t] = scale_acc(
        reduce8(p[t]), dw, mw, nm_actq_d(acts[t], n) + b, nm_actq_m(acts[t], n) + b, acc[t], T, k);
}

/* A row's last k < 8 blocks (none when k is 0). */
AI void step32_tail(const char *row, int64_t b, const void *const *acts, int64_t n, __m256 *acc,
                    const int T, const int NT, const int k, const size_t ahead) {
    switch (k) {
    case 7:
        step32(row, b, acts, n, acc, T, NT, 7, ahead);
        break;
    case 6:
        step32(row, b, acts, n, acc, T, NT, 6, ahead);
        break;
    case 5:
        step32(row, b, acts, n, acc, T, NT, 5, ahead);
        break;
    case 4:
        step32(row, b, acts, n, acc, T, NT, 4, ahead);
        break;
    case 3:
        step32(row, b, acts, n, acc, T, NT, 3, ahead);
        break;
    case 2:
        step32(row, b, acts, n, acc, T, NT, 2, ahead);
        break;
    case 1:
        step32(row, b, acts, n, acc, T, NT, 1, ahead);
        break;
    }
}

AI void rowdot32(const void *row, const void *const *acts, int64_t n, float *out, const int T,
                 const int NT) {
    const int64_t nb = n / 32;
    __m256 acc[TOK_GROUP];
    _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 8 <= nb; b += 8)
        step32(row, b, acts, n, acc, T, NT, 8, NM_PREFETCH_BYTES);
    step32_tail(row, b, acts, n, acc, T, NT, (int)(nb - b), NM_PREFETCH_BYTES);
    _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) out[t] = hsum8(acc[t]);
}

/* Decode: 4 rows at w, w + rb, ... x one token, step by step in turn, so
 * four streams a quarter of the matrix apart are read at once, each
 * prefetched NM_PREFETCH_ROWS4_BYTES ahead (as the AVX-512 rows4_32). A
 * step's activations are loaded again for each row, from L1; each row
 * keeps rowdot32's steps, so its bits. */
AI void rows4_32(const void *w, size_t rb, const void *act, int64_t n, float *out, const int T) {
    const int64_t nb = n / 32;
    const void *const acts[1] = {act};
    __m256 acc[4];
    _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) acc[r] = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 8 <= nb; b += 8)
        _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++)
            step32((const char *)w + r * rb, b, acts, n, &acc[r], T, 1, 8, NM_PREFETCH_ROWS4_BYTES);
    _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) {
        step32_tail((const char *)w + r * rb, b, acts, n, &acc[r], T, 1, (int)(nb - b),
                    NM_PREFETCH_ROWS4_BYTES);
        out[r] = hsum8(acc[r]);
    }
}

/* ---- IQ4_XS: one super-block (8 sub-blocks of 32) per step ------------- */

/* Super-block s of one row for NT tokens (its 136 bytes prefetched ahead
 * bytes ahead): one scalar fmaf per token, as the scalar kernel. */
AI void step_xs(const nm_block_iq4_xs *w, int64_t s, const void *const *acts, int64_t n, float *acc,
                const int NT, const size_t ahead) {
    const __m256i table =
        _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)nm_iq4nl_values));
    _mm_prefetch((const char *)(w + s) + ahead, _MM_HINT_T1);
    _mm_prefetch((const char *)(w + s) + ahead + 64, _MM_HINT_T1);
    _mm_prefetch((const char *)(w + s) + ahead + 128, _MM_HINT_T1);
    __m256i p[TOK_GROUP][8];
    _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++) {
        __m256i wv = _mm256_shuffle_epi8(table, nibbles((const char *)w[s].qs + 16 * j));
        __m256i wop = _mm256_sign_epi8(wv, wv);
        _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) p[t][j] =
            block_prod(wop, wv, nm_actk_qs(acts[t]) + s * NM_QK_K + 32 * j, T_IQ4_NL);
    }
    __m256i ls = xs_scales(&w[s]);
    float dw = _cvtsh_ss(w[s].d);
    _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) {
        int32_t sumi = hsum_i32(_mm256_mullo_epi32(reduce8(p[t]), ls));
        acc[t] = fmaf(dw * nm_actk_d(acts[t], n)[s], (float)sumi, acc[t]);
    }
}

AI void rowdot_xs(const void *row, const void *const *acts, int64_t n, float *out, const int NT) {
    float acc[TOK_GROUP];
    _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) acc[t] = 0.0f;
    for (int64_t s = 0; s < n / NM_QK_K; s++)
        step_xs(row, s, acts, n, acc, NT, NM_PREFETCH_BYTES);
    _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) out[t] = acc[t];
}

/* Decode: 4 rows x one token, super-block by super-block in turn (four
 * streams, as rows4_32); each row keeps rowdot_xs's steps, so its bits. */
static void rows4_iq4_xs(const void *w, size_t rb, const void *act, int64_t n, float *out) {
    const void *const acts[1] = {act};
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int64_t s = 0; s < n / NM_QK_K; s++)
        _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++)
            step_xs((const nm_block_iq4_xs *)((const char *)w + r * rb), s, acts, n, &acc[r], 1,
                    NM_PREFETCH_ROWS4_BYTES);
    memcpy(out, acc, sizeof acc);
}

/* ---- entry points: one instance per type and token count ---------------- */

#define ROWDOT_NT(NAME, CALL)                                                                      \
    static void NAME(const void *w, const void *const *acts, int nt, int64_t n, float *out) {      \
        switch (nt) {                                                                              \
        case 1:                                                                                    \
            CALL(1);                                                                               \
            break;                                                                                 \
        case 2:                                                                                    \
            CALL(2);                                                                               \
            break;                                                                                 \
        case 3:                                                                                    \
            CALL(3);                                                                               \
            break;                                                                                 \
        default:                                                                                   \
            CALL(4);                                                                               \
            break;                                                                                 \
        }                                                                                          \
    }

#define CALL_Q4_1(NT) rowdot32(w, acts, n, out, T_Q4_1, NT)
#define CALL_Q5_0(NT) rowdot32(w, acts, n, out, T_Q5_0, NT)
#define CALL_Q5_1(NT) rowdot32(w, acts, n, out, T_Q5_1, NT)
#define CALL_IQ4_NL(NT) rowdot32(w, acts, n, out, T_IQ4_NL, NT)
#define CALL_IQ4_XS(NT) rowdot_xs(w, acts, n, out, NT)
ROWDOT_NT(rowdot_q4_1, CALL_Q4_1)
ROWDOT_NT(rowdot_q5_0, CALL_Q5_0)
ROWDOT_NT(rowdot_q5_1, CALL_Q5_1)
ROWDOT_NT(rowdot_iq4_nl, CALL_IQ4_NL)
ROWDOT_NT(rowdot_iq4_xs, CALL_IQ4_XS)

#define ROWS4_32(NAME, T)                                                                          \
    static void NAME(const void *w, size_t rb, const void *act, int64_t n, float *out) {           \
        rows4_32(w, rb, act, n, out, T);                                                           \
    }
ROWS4_32(rows4_q4_1, T_Q4_1)
ROWS4_32(rows4_q5_0, T_Q5_0)
ROWS4_32(rows4_q5_1, T_Q5_1)
ROWS4_32(rows4_iq4_nl, T_IQ4_NL)

void nm_kernels_avx2_legacy(nm_kernel_set *ks) {
    ks->k[NM_TYPE_Q4_1].rowdot = rowdot_q4_1;
    ks->k[NM_TYPE_Q5_0].rowdot = rowdot_q5_0;
    ks->k[NM_TYPE_Q5_1].rowdot = rowdot_q5_1;
    ks->k[NM_TYPE_IQ4_NL].rowdot = rowdot_iq4_nl;
    ks->k[NM_TYPE_IQ4_XS].rowdot = rowdot_iq4_xs;
    ks->k[NM_TYPE_Q4_1].rows4 = rows4_q4_1;
    ks->k[NM_TYPE_Q5_0].rows4 = rows4_q5_0;
    ks->k[NM_TYPE_Q5_1].rows4 = rows4_q5_1;
    ks->k[NM_TYPE_IQ4_NL].rows4 = rows4_iq4_nl;
    ks->k[NM_TYPE_IQ4_XS].rows4 = rows4_iq4_xs;
}
