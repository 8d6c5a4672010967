/* The amx set's Q8_0 kernels: AMX int8 tiles for the matmat (prompts and
 * batched decode, 16 rows x up to 16 tokens a call) and vector kernels of
 * the same definition for decode (rows4) and single rows (rowdot).
 *
 * The definition. Q8_0 is a tolerance type (a set need not give the scalar
 * set's bits), but within a set matvec and matmat must give the same bits:
 * serve's greedy text must be the same alone and in a batch. The VNNI
 * kernels (kernels_avx512_q8.c) sum 8 products per int32 lane and add
 * floats per lane, which a tile cannot reproduce: a tdpbssd over K = 32
 * bytes gives each (row, token) the exact int32 sum of one block. So for
 * row w and token a, blocks b = 0 .. nb - 1, the amx set computes
 *     isum_b = the sum of block b's 32 products w_i a_i (exact int32)
 *     acc = 0, then in block order acc = fma(d_w[b] * d_a[b], isum_b, acc)
 * (d_w the block's F16 scale, d_a the activation block's F32 scale). The
 * integer sums are exact in any order, so the vector kernels take them as
 * they like; only the float chain, one per row and token, has a fixed
 * order, and it costs them one FMA per block and row.
 *
 * The tile. A block's codes are the 32 bytes at 34 b + 2 of each row, so
 * the 16 rows' codes of a block are one tile load straight from the
 * weights with the row stride: no repacking. The activations come from the
 * batch's token-interleaved copy (nm_actq_lines): 8 lines a block and a line
 * of the 16 tokens' scales. Per block one product into C (16 rows x 16 or,
 * for up to 8 tokens, 8 int32), a store, and the float step of each row's
 * tokens in one vector (8 tokens: two rows a vector). The rows' scales come
 * with one gather a block.
 *
 * Decode (rows4, one token) takes four blocks of four rows a step, loaded
 * as in the VNNI kernel, with the weights made unsigned (w + 128: vpdpbusd
 * multiplies unsigned by signed bytes) and 128 times the activation block's
 * sum (nm_actq_s) taken off after a 4 x 4 transpose per 128-bit lane has
 * added the four rows' partial sums into exact block sums; then four
 * 128-bit FMAs, one a block, step the four rows' chains. rowdot does the
 * same for one row and up to four tokens. */
#include "kernel_set.h"
#include "kernels_amx.h"
#include "kernels_avx512_q8_0.h"
#include "gguf/quant.h"

#include <immintrin.h>

#define AI static inline __attribute__((always_inline))

#define AMX_R 16 /* rows of a tile */
#define AMX_T 16 /* tokens of a tile */
#define QB ((int64_t)sizeof(nm_block_q8_0))

/* ---- vector kernels: four (row, token) pairs, four blocks a step -------- */

/* One row's nblk (1..4) blocks at p (kernels_avx512_q8_0.h), the codes
 * made unsigned (w + 128); FULL: nblk == 4, plain loads. */
AI q8_0_w4 q8a_weights(const char *p, int nblk, const int FULL) {
    const __m512i flip = _mm512_set1_epi8(-128);
    q8_0_w4 w = q8_0_weights4(p, nblk, FULL);
    w.lo = _mm512_xor_si512(w.lo, flip);
    w.hi = _mm512_xor_si512(w.hi, flip);
    return w;
}

/* One token's nblk blocks: low and high 16 of block k in 128-bit lane k,
 * its scales and its sums (4 each). */
typedef struct q8a_a {
    __m512i lo, hi;
    __m128 d;
    __m128i s;
} q8a_a;

AI q8a_a q8a_act(const void *row, int64_t n, int64_t b, int nblk, const int FULL) {
    const float *da = nm_actq_d(row, n) + b;
    const int32_t *sa = nm_actq_s(row, n) + b;
    const __mmask8 m = (__mmask8)((1u << nblk) - 1);
    q8a_a a;
    q8_0_act4(nm_actq_qs(row) + 32 * b, nblk, FULL, &a.lo, &a.hi);
    a.d = FULL ? _mm_loadu_ps(da) : _mm_maskz_loadu_ps(m, da);
    a.s = FULL ? _mm_loadu_si128((const __m128i *)sa) : _mm_maskz_loadu_epi32(m, sa);
    return a;
}

/* Pair j's sums over the four blocks (int32 lanes 4k .. 4k + 3: block k's
 * partial sums) into lane 4k + j, exact. */
AI __m512i q8a_block_sums(const __m512i s[4]) {
    const __m512i ab =
        _mm512_add_epi32(_mm512_unpacklo_epi32(s[0], s[1]), _mm512_unpackhi_epi32(s[0], s[1]));
    const __m512i cd =
        _mm512_add_epi32(_mm512_unpacklo_epi32(s[2], s[3]), _mm512_unpackhi_epi32(s[2], s[3]));
    return _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd));
}

/* The pairs: four rows and one token (rows4), or one row and four tokens
 * (rowdot). */
enum { PAIRS_ROWS, PAIRS_TOKENS };

/* Blocks [b, b + nblk) of the four pairs, stepping acc (lane j: pair j). */
AI __m128 q8a_step(const char *const *row, const void *const *act, int64_t n, int64_t b, int nblk,
                   __m128 acc, const int FULL, const int PAIRS) {
    const int NR = PAIRS == PAIRS_ROWS ? 4 : 1, NA = PAIRS == PAIRS_ROWS ? 1 : 4;
    q8_0_w4 w[4];
    q8a_a a[4];
    _Pragma("GCC unroll 4") for (int r = 0; r < NR; r++) {
        const char *p = row[r] + b * QB;
        /* 136 bytes a step: three lines ahead cover them */
        const size_t ahead = NM_PREFETCH_AHEAD(PAIRS == PAIRS_ROWS ? 4 : 1);
        _mm_prefetch(p + ahead, _MM_HINT_T1);
        _mm_prefetch(p + ahead + 64, _MM_HINT_T1);
        _mm_prefetch(p + ahead + 128, _MM_HINT_T1);
        w[r] = q8a_weights(p, nblk, FULL);
    }
    _Pragma("GCC unroll 4") for (int t = 0; t < NA; t++) a[t] = q8a_act(act[t], n, b, nblk, FULL);
    __m512i s[4];
    _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) {
        const q8_0_w4 *wj = &w[PAIRS == PAIRS_ROWS ? j : 0];
        const q8a_a *aj = &a[PAIRS == PAIRS_ROWS ? 0 : j];
        s[j] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wj->lo, aj->lo);
        s[j] = _mm512_dpbusd_epi32(s[j], wj->hi, aj->hi);
    }
    __m512i dwh, sa;
    __m512 da;
    const __m512i spread = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    if (PAIRS == PAIRS_ROWS) {
        dwh = _mm512_or_si512(
            _mm512_or_si512(q8_0_scale_words(&w[0], 0x1111), q8_0_scale_words(&w[1], 0x2222)),
            _mm512_or_si512(q8_0_scale_words(&w[2], 0x4444), q8_0_scale_words(&w[3], 0x8888)));
        da = _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(a[0].d));
        sa = _mm512_permutexvar_epi32(spread, _mm512_castsi128_si512(a[0].s));
    } else {
        dwh = q8_0_scale_words(&w[0], 0xffff);
        /* [token 0's 4, token 1's 4, ...] to lane 4k + j: token j, block k */
        const __m512i tr = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
        const __m512 d = _mm512_insertf32x4(
            _mm512_insertf32x4(_mm512_insertf32x4(_mm512_castps128_ps512(a[0].d), a[1].d, 1),
                               a[2].d, 2),
            a[3].d, 3);
        const __m512i si = _mm512_inserti32x4(
            _mm512_inserti32x4(_mm512_inserti32x4(_mm512_castsi128_si512(a[0].s), a[1].s, 1),
                               a[2].s, 2),
            a[3].s, 3);
        da = _mm512_permutexvar_ps(tr, d);
        sa = _mm512_permutexvar_epi32(tr, si);
    }
    /* sum (w + 128) a - 128 sum a = sum w a */
    const __m512i isum = _mm512_sub_epi32(q8a_block_sums(s), _mm512_slli_epi32(sa, 7));
    const __m512 f = _mm512_cvtepi32_ps(isum);
    const __m512 p = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_castsi512_si256(dwh)), da);
    acc = _mm_fmadd_ps(_mm512_castps512_ps128(p), _mm512_castps512_ps128(f), acc);
    if (nblk > 1)
        acc = _mm_fmadd_ps(_mm512_extractf32x4_ps(p, 1), _mm512_extractf32x4_ps(f, 1), acc);
    if (nblk > 2)
        acc = _mm_fmadd_ps(_mm512_extractf32x4_ps(p, 2), _mm512_extractf32x4_ps(f, 2), acc);
    if (nblk > 3)
        acc = _mm_fmadd_ps(_mm512_extractf32x4_ps(p, 3), _mm512_extractf32x4_ps(f, 3), acc);
    return acc;
}

AI void q8a_pairs(const char *const *row, const void *const *act, int64_t n, float *out,
                  const int PAIRS) {
    const int64_t nb = n / 32;
    __m128 acc = _mm_setzero_ps();
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4)
        acc = q8a_step(row, act, n, b, 4, acc, 1, PAIRS);
    if (b < nb)
        acc = q8a_step(row, act, n, b, (int)(nb - b), acc, 0, PAIRS);
    _mm_storeu_ps(out, acc);
}

/* Decode: four rows rb apart, one token. */
static void rows4_q8_0_amx(const void *w, size_t rb, const void *act, int64_t n, float *out) {
    const char *row[4];
    for (int r = 0; r < 4; r++)
        row[r] = (const char *)w + (size_t)r * rb;
    q8a_pairs(row, &act, n, out, PAIRS_ROWS);
}

/* One row, nt tokens, four at a time (the last four repeat a token). */
static void rowdot_q8_0_amx(const void *w, const void *const *acts, int nt, int64_t n, float *out) {
    const char *row = w;
    for (int t0 = 0; t0 < nt; t0 += 4) {
        const void *a4[4];
        float o[4];
        for (int j = 0; j < 4; j++)
            a4[j] = acts[t0 + j < nt ? t0 + j : nt - 1];
        q8a_pairs(&row, a4, n, o, PAIRS_TOKENS);
        for (int j = 0; j < 4 && t0 + j < nt; j++)
            out[t0 + j] = o[j];
    }
}

/* ---- the AMX tile ------------------------------------------------------- */

/* tmm0, tmm1: C (16 rows x T int32); tmm2, tmm3: a block's codes (16 rows x
 * 32 bytes); tmm4, tmm5: its activation lines (8 lines of T tokens x 4
 * bytes). Two of each let one block's product run while the other's is
 * stored. T is 16, or 8 for up to 8 tokens. */
static const amx_cfg cfg_16 __attribute__((aligned(64))) = {
    .palette = 1, .colsb = {64, 64, 32, 32, 64, 64}, .rows = {16, 16, 16, 16, 8, 8}};
static const amx_cfg cfg_8 __attribute__((aligned(64))) = {
    .palette = 1, .colsb = {32, 32, 32, 32, 32, 32}, .rows = {16, 16, 16, 16, 8, 8}};

typedef struct q8a_work {
    _Alignas(64) int32_t c[2][AMX_R * AMX_T]; /* row r, token t at 16 r + t (T 8: 8 r + t) */
    _Alignas(64) float dw[AMX_R];
} q8a_work;

/* Block B's product into C tile CT (codes in AT, lines in BT), stored to
 * BUF. Its 8 lines are group rows 8 (B % 2) .. + 7, line B / 2. */
#define Q8A_PRODUCT(CT, AT, BT, B, BUF)                                                            \
    do {                                                                                           \
        _tile_zero(CT);                                                                            \
        _tile_loadd(AT, wq + (B)*QB + 2, (long)rb);                                                \
        _tile_loadd(BT, lines + (size_t)((B) % 2) * 8 * ra + (size_t)((B) / 2) * 64, (long)ra);    \
        _tile_dpbssd(CT, AT, BT);                                                                  \
        _tile_stored(CT, BUF, T8 ? 32 : 64);                                                       \
    } while (0)

/* The 16 rows' scales of block b as floats (a gather of the dwords at the
 * blocks' starts, their low words). */
AI __m512 q8a_row_scales(const char *wq, __m512i roff, int64_t b) {
    const __m512i g = _mm512_i32gather_epi32(roff, wq + b * QB, 1);
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(g));
}

/* Block b's float step for the 16 rows: c its sums, dw the rows' scales,
 * dline the tokens' scales, loaded zero for the tokens not in live (their
 * columns are zero as well, nm_actq_lines: token_line in
 * kernels_avx512_amx.c says why both). */
AI void q8a_float(__m512 *acc, const int32_t *c, __m512 dw, const float *dline, __mmask16 live,
                  q8a_work *s, const int T8) {
    if (!T8) {
        const __m512 da = _mm512_maskz_loadu_ps(live, dline);
        _mm512_store_ps(s->dw, dw);
        _Pragma("GCC unroll 16") for (int r = 0; r < AMX_R; r++) {
            const __m512 p = _mm512_mul_ps(_mm512_set1_ps(s->dw[r]), da);
            acc[r] = _mm512_fmadd_ps(p, _mm512_cvtepi32_ps(_mm512_load_si512(c + 16 * r)), acc[r]);
        }
        return;
    }
    /* vector v: rows 2v (lanes 0..7) and 2v + 1 */
    const __m512 da = _mm512_maskz_broadcast_f32x8(live, _mm256_loadu_ps(dline));
    _Pragma("GCC unroll 8") for (int v = 0; v < AMX_R / 2; v++) {
        const __m512i rr = _mm512_setr_epi32(2 * v, 2 * v, 2 * v, 2 * v, 2 * v, 2 * v, 2 * v, 2 * v,
                                             2 * v + 1, 2 * v + 1, 2 * v + 1, 2 * v + 1, 2 * v + 1,
                                             2 * v + 1, 2 * v + 1, 2 * v + 1);
        const __m512 p = _mm512_mul_ps(_mm512_permutexvar_ps(rr, dw), da);
        acc[v] = _mm512_fmadd_ps(p, _mm512_cvtepi32_ps(_mm512_load_si512(c + 16 * v)), acc[v]);
    }
}

/* 16 rows x nt tokens (nt <= 16; T8: nt <= 8) of a batch's group: acts[0]
 * is the group's first row (kernel_set.h). */
AI void q8a_tile(const void *w, size_t rb, const void *const *acts, int nt, int64_t n, float *out,
                 q8a_work *s, const int T8) {
    const size_t ra = (size_t)nm_actq_batch_row_bytes(n);
    const char *a0 = acts[0], *wq = w;
    const char *lines = a0 + nm_actq_vnni_off(n), *dlines = a0 + nm_actq_dline_off(n);
    const int64_t nb = n / 32;
    const __mmask16 m = (__mmask16)((1u << nt) - 1), live = T8 ? (__mmask16)(m | m << 8) : m;
    const __m512i roff =
        _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                           _mm512_set1_epi32((int)rb));
    const int NV = T8 ? AMX_R / 2 : AMX_R;
    __m512 acc[AMX_R];
    for (int v = 0; v < NV; v++)
        acc[v] = _mm512_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        /* the 16 rows are one stretch of memory: the next tile's, ahead */
        for (int r = 0; r < AMX_R; r++)
            _mm_prefetch(wq + (size_t)(AMX_R + r) * rb + b * QB, _MM_HINT_T1);
        const __m512 dw0 = q8a_row_scales(wq, roff, b), dw1 = q8a_row_scales(wq, roff, b + 1);
        Q8A_PRODUCT(0, 2, 4, b, s->c[0]);
        Q8A_PRODUCT(1, 3, 5, b + 1, s->c[1]);
        q8a_float(acc, s->c[0], dw0, (const float *)(dlines + (b % 16) * ra + (b / 16) * 64), live,
                  s, T8);
        q8a_float(acc, s->c[1], dw1,
                  (const float *)(dlines + ((b + 1) % 16) * ra + ((b + 1) / 16) * 64), live, s, T8);
    }
    if (b < nb) {
        const __m512 dw0 = q8a_row_scales(wq, roff, b);
        Q8A_PRODUCT(0, 2, 4, b, s->c[0]);
        q8a_float(acc, s->c[0], dw0, (const float *)(dlines + (b % 16) * ra + (b / 16) * 64), live,
                  s, T8);
    }
    nm_amx_store_results(out, acc, nt, m, T8);
}

static void tile_q8_0_amx(const void *w, size_t rb, const void *const *acts, int nt, int64_t n,
                          float *out) {
    const bool t8 = nt <= 8;
    /* One token: a batch of one has no interleaved lines, and a product
     * costs as much as for 8 tokens. No tile data: the same. Both take the
     * rows4 kernel, token by token (the same bits). */
    if (nt == 1 || !nm_amx_use(t8 ? &cfg_8 : &cfg_16)) {
        for (int t = 0; t < nt; t++)
            for (int r0 = 0; r0 < AMX_R; r0 += 4) {
                float o[4];
                rows4_q8_0_amx((const char *)w + (size_t)r0 * rb, rb, acts[t], n, o);
                for (int j = 0; j < 4; j++)
                    out[(r0 + j) * nt + t] = o[j];
            }
        return;
    }
    q8a_work s;
    if (t8)
        q8a_tile(w, rb, acts, nt, n, out, &s, 1);
    else
        q8a_tile(w, rb, acts, nt, n, out, &s, 0);
}

void nm_kernels_avx512_q8_0_amx(nm_kernel_set *ks) {
    ks->k[NM_TYPE_Q8_0] =
        NM_TYPE_KERNELS(rowdot_q8_0_amx, rows4_q8_0_amx, tile_q8_0_amx, AMX_R, AMX_T);
}
