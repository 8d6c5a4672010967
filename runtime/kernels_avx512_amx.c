/* AMX int8 tiles for the matmat of Q4_K and Q6_K weights (prompts and
 * batched decode): 16 rows x up to 16 tokens a call, the same bits as the
 * scalar kernels (kernels_scalar_kquant.c defines them).
 *
 * A tdpbusd / tdpbssd multiplies a 16 x K tile of bytes (K <= 64) by a K x
 * 16 one into 16 x 16 exact int32 sums. On the Xeon of docs/benchmarks.md a
 * product takes about 5.6 ns whatever K and the token count are, and so
 * does each tile load and store: the tiles are cheap next to the vector
 * work around them (unpacking the weights, the float steps), which is what
 * these kernels keep small. The weights' codes go to byte buffers (16 rows
 * x 256 per super-block), the activations come from the batch's
 * token-interleaved copy (nm_actk_lines), and the vector units then take
 * each result row's tokens in one register for the scalar kernels' float
 * steps, in their order.
 *
 * The tile shapes are loaded once per matmat call and thread (ldtilecfg
 * costs about 54 ns) and again only when a thread switches shapes; the
 * thread releases the tiles as it leaves the matmat (amx_release, the set's
 * matmat_end). Groups of fewer tokens than
 * the AMX tile wins from, and processes the kernel denies the tile data,
 * run the VNNI tiles. */
#include "kernels_amx.h"
#include "kernels_avx512_kq.h"

#define AMX_R 16 /* rows of a tile */
#define AMX_T 16 /* tokens of a tile */

/* Fewer tokens run the VNNI tiles: the AMX tile costs about the same for 1
 * as for 8 tokens (bench_kernels --hot, Q4_K 2048 x 5632, 1 thread: 2
 * tokens 1.04x the VNNI tile, 3 1.17x, 4 1.32x, 8 1.28x, 16 1.93x). */
#define AMX_MIN_TOK 3

/* ---- tile shapes -------------------------------------------------------- */

/* Q6_K: tmm0, tmm1: C (16 rows x 16 int32); tmm2, tmm3: weight codes (16
 * rows x 16 bytes); tmm4, tmm5: activations (4 lines of 16 tokens x 4
 * bytes). Two of each let one sub-block's product run while the other's
 * is stored. */
static const amx_cfg cfg_q6 __attribute__((aligned(64))) = {
    .palette = 1, .colsb = {64, 64, 16, 16, 64, 64}, .rows = {16, 16, 16, 16, 4, 4}};

/* Q4_K, T tokens (8 or 16): tmm0, tmm1: C (16 rows x T int32); tmm4,
 * tmm5: weight codes (16 rows x 64 bytes); tmm6: activations (16 lines of
 * T tokens x 4 bytes). */
static const amx_cfg cfg_q4_16 __attribute__((aligned(64))) = {
    .palette = 1, .colsb = {64, 64, 0, 0, 64, 64, 64}, .rows = {16, 16, 0, 0, 16, 16, 16}};
static const amx_cfg cfg_q4_8 __attribute__((aligned(64))) = {
    .palette = 1, .colsb = {32, 32, 0, 0, 64, 64, 32}, .rows = {16, 16, 0, 0, 16, 16, 16}};

static _Thread_local const amx_cfg *loaded;

/* The tile state back to the CPU (tilerelease) when this thread holds it:
 * the kernel saves and restores 8 KiB of tile data at each context switch
 * of a thread that does. The next tile loads its shape again. */
static void amx_release(void) {
    if (loaded) {
        _tile_release();
        loaded = NULL;
    }
}

bool nm_amx_use(const amx_cfg *cfg) {
    if (loaded == cfg)
        return true;
    if (!nm_amx_usable())
        return false;
    _tile_loadconfig(cfg);
    loaded = cfg;
    return true;
}

/* Line l of the per-token values at off (nm_actk_dline_off,
 * nm_actk_sline_off) of the group at a0: 16 tokens (T 16) or the first 8
 * twice (T 8, two rows a vector), the lanes of tokens the batch lacks
 * zero. The line writer zeroes their columns too (nm_actk_lines); a
 * subnormal float there makes each float step on it take a microcode
 * assist (prompt passes of serve --parallel 8 ran 2.4x slower with the
 * buffer's old bytes in them). The masked loads cost nothing: without
 * them the tiles measured 1-3 % slower (bench_kernels --hot, 5 and 12
 * tokens). */
AI __m512i token_line(const char *a0, size_t ra, uint64_t off, int64_t l, __mmask16 live,
                      const int T8) {
    const char *p = nm_act_line(a0, ra, off, l);
    return T8 ? _mm512_maskz_mov_epi32(
                    live, _mm512_broadcast_i64x4(_mm256_load_si256((const __m256i *)p)))
              : _mm512_maskz_load_epi32(live, p);
}

/* ---- Q4_K: the scales in the codes -------------------------------------- */

/* isum = sum_j sc_j C_j needs C_j apart for each sub-block j, a tile store
 * each, and tile loads and stores cost about as much as the products. But
 * a 6-bit scale is 8 hi + lo with 3-bit hi and lo, and q lo, q hi <= 105 fit
 * the unsigned bytes tdpbusd multiplies: two code buffers with the scales
 * folded in give two sums over the whole super-block (C_lo, C_hi: four K =
 * 64 products each, one activation load for both), and isum = 8 C_hi +
 * C_lo, exact. A 16-row super-block then takes 8 tile products, 12 loads
 * and 2 stores (54 ns with 8 tokens, 77 with 16, against 136 for a tile a
 * sub-block). */
typedef struct q4_work {
    _Alignas(64) uint8_t lo[AMX_R * NM_QK_K], hi[AMX_R * NM_QK_K]; /* q lo, q hi */
    _Alignas(64) int32_t clo[AMX_R * 16], chi[AMX_R * 16];
    _Alignas(64) int32_t mins[AMX_R][4]; /* the minima as int16 pairs */
    _Alignas(64) float ddm[2 * AMX_R];   /* d and dmin of row r at 2r, 2r + 1 */
} q4_work;

/* kq_k4_scales of 4 rows at once: each 128-bit lane of raw holds a row's
 * first 16 bytes (d, dmin, scales), the shuffles stay in their lanes. */
AI __m512i k4_scales4(__m512i raw) {
    const __m512i a =
        _mm512_shuffle_epi8(raw, _mm512_broadcast_i32x4(_mm_setr_epi8(4, 5, 6, 7, 12, 13, 14, 15, 8,
                                                                      9, 10, 11, 12, 13, 14, 15)));
    const __m512i b =
        _mm512_shuffle_epi8(raw, _mm512_broadcast_i32x4(_mm_setr_epi8(
                                     -1, -1, -1, -1, 4, 5, 6, 7, -1, -1, -1, -1, 8, 9, 10, 11)));
    const __m512i lo =
        _mm512_and_si512(a, _mm512_broadcast_i32x4(_mm_setr_epi8(63, 63, 63, 63, 15, 15, 15, 15, 63,
                                                                 63, 63, 63, 0, 0, 0, 0)));
    const __m512i a4 = _mm512_and_si512(
        _mm512_srli_epi16(a, 4), _mm512_broadcast_i32x4(_mm_setr_epi32(0, 0, 0, 0x0f0f0f0f)));
    const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(b, 2), _mm512_set1_epi8(0x30));
    return _mm512_ternarylogic_epi32(lo, a4, hi, 0xfe); /* lo | a4 | hi */
}

/* Rows 4g .. 4g + 3 of super-block b: codes x scales into s. One vpmullw
 * makes 32 byte products (each below 256, so none carries into its
 * neighbour). */
AI void q4_unpack4(const char *blk0, size_t rb, int g, q4_work *s, const int GFNI) {
    __m512i raw = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)blk0));
    raw = _mm512_inserti32x4(raw, _mm_loadu_si128((const __m128i *)(blk0 + rb)), 1);
    raw = _mm512_inserti32x4(raw, _mm_loadu_si128((const __m128i *)(blk0 + 2 * rb)), 2);
    raw = _mm512_inserti32x4(raw, _mm_loadu_si128((const __m128i *)(blk0 + 3 * rb)), 3);
    const __m512i sm = k4_scales4(raw); /* a lane a row: scales 0..7, minima 0..7 */
    const __m512i m7 = _mm512_set1_epi8(7);
    const __m512i slo = _mm512_and_si512(sm, m7);
    const __m512i shi = _mm512_and_si512(_mm512_srli_epi16(sm, 3), m7);
    _mm512_store_si512(s->mins[4 * g], _mm512_unpackhi_epi8(sm, _mm512_setzero_si512()));
    /* d, dmin: the first dword of each lane */
    const __m512i dw = _mm512_permutexvar_epi32(
        _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), raw);
    _mm256_store_ps(s->ddm + 8 * g, _mm256_cvtph_ps(_mm512_castsi512_si128(dw)));
    _Pragma("GCC unroll 4") for (int i = 0; i < 4; i++) {
        const nm_block_q4_k *q = (const nm_block_q4_k *)(blk0 + (size_t)i * rb);
        const int r = 4 * g + i;
        /* the 16 rows are one stretch of memory: the next tile's, ahead */
        kq_prefetch((const char *)q, sizeof *q, AMX_R * rb);
        const __m512i lane =
            _mm512_add_epi32(_mm512_setr_epi32(0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3),
                             _mm512_set1_epi32(4 * i));
        const __m512i rlo = _mm512_permutexvar_epi32(lane, slo);
        const __m512i rhi = _mm512_permutexvar_epi32(lane, shi);
        _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {
            /* the lines' order (nm_actk_lines): window 2h the low nibbles
             * of bytes 64h .. 64h + 63, window 2h + 1 their high nibbles */
            const __m512i v = _mm512_loadu_si512(q->qs + 64 * h);
            _Pragma("GCC unroll 2") for (int k = 2 * h; k < 2 * h + 2; k++) {
                const __m512i u = k % 2 ? (GFNI ? bits2_gf(v, 4, 4, 4) : bits2(v, 4, 4, 15))
                                        : _mm512_and_si512(v, _mm512_set1_epi8(15));
                /* vpshufb: each word of 128-bit lane L gets the scale byte of
                 * its sub-block, NM_ACTK_LINE_SUB (and 0x80: a zero high
                 * byte) */
                const __m512i sel = _mm512_inserti64x4(
                    _mm512_castsi256_si512(
                        _mm256_set1_epi16((short)(0x8000 | NM_ACTK_LINE_SUB(2 * k)))),
                    _mm256_set1_epi16((short)(0x8000 | NM_ACTK_LINE_SUB(2 * k + 1))), 1);
                _mm512_store_si512(s->lo + r * NM_QK_K + 64 * k,
                                   _mm512_mullo_epi16(u, _mm512_shuffle_epi8(rlo, sel)));
                _mm512_store_si512(s->hi + r * NM_QK_K + 64 * k,
                                   _mm512_mullo_epi16(u, _mm512_shuffle_epi8(rhi, sel)));
            }
        }
    }
}

/* Super-block b of the 16 rows: C_lo and C_hi stored in s, T = 8 or 16
 * columns. The 16 lines of window k (the codes at lo, hi + 64k) are rows
 * 0..15 of the group at line offset 4b + k (nm_actk_lines). */
AI void q4_products(const char *lines, size_t ra, int64_t b, q4_work *s, const int T8) {
    _tile_zero(0);
    _tile_zero(1);
    _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {
        _tile_loadd(6, lines + (4 * (size_t)b + (size_t)k) * 64, (long)ra);
        _tile_loadd(4, s->lo + 64 * k, NM_QK_K);
        _tile_dpbusd(0, 4, 6);
        _tile_loadd(5, s->hi + 64 * k, NM_QK_K);
        _tile_dpbusd(1, 5, 6);
    }
    _tile_stored(0, s->clo, T8 ? 32 : 64);
    _tile_stored(1, s->chi, T8 ? 32 : 64);
}

/* The float step of one vector: rows' isum (8 C_hi + C_lo) and msum (the
 * minima . the sums of 32 activations, s32[i]: sub-blocks 2i, 2i + 1) */
AI __m512 q4_step(__m512 acc, __m512i clo, __m512i chi, __m512 d, __m512 dm, __m512 da,
                  const __m512i *s32, const __m512i *mins) {
    __m512i is = _mm512_add_epi32(_mm512_slli_epi32(chi, 3), clo);
    __m512i ms = _mm512_setzero_si512();
    _Pragma("GCC unroll 4") for (int i = 0; i < 4; i++) ms =
        _mm512_dpwssd_epi32(ms, s32[i], mins[i]);
    __m512 t = _mm512_mul_ps(_mm512_mul_ps(d, da), _mm512_cvtepi32_ps(is));
    t = _mm512_sub_ps(t, _mm512_mul_ps(_mm512_mul_ps(dm, da), _mm512_cvtepi32_ps(ms)));
    return _mm512_add_ps(acc, t);
}

/* 16 rows x nt tokens (AMX_MIN_TOK <= nt <= 16) of a batch's group
 * (kernel_set.h); T8 when nt <= 8: 8-column tiles, rows 2p and 2p + 1 in
 * one vector. Token lanes from nt compute on zero columns and are not
 * stored. */
AI void q4_tile(const void *w, size_t rb, const void *const *acts, int nt, int64_t n, float *out,
                q4_work *s, const int T8, const int GFNI) {
    const size_t ra = (size_t)nm_actk_batch_row_bytes(n);
    const char *a0 = acts[0], *lines = a0 + nm_actk_vnni_off(n);
    const __mmask16 m = (__mmask16)((1u << nt) - 1), live = T8 ? (__mmask16)(m | m << 8) : m;
    const uint64_t d_o = nm_actk_dline_off(n), so = nm_actk_sline_off(n);
    const int NV = T8 ? AMX_R / 2 : AMX_R; /* vectors of results */
    __m512 acc[AMX_R];
    for (int v = 0; v < NV; v++)
        acc[v] = _mm512_setzero_ps();
    for (int64_t b = 0; b < n / NM_QK_K; b++) {
        for (int g = 0; g < AMX_R / 4; g++)
            q4_unpack4((const char *)w + (size_t)(4 * g) * rb + (size_t)b * sizeof(nm_block_q4_k),
                       rb, g, s, GFNI);
        q4_products(lines, ra, b, s, T8);
        const __m512 da = _mm512_castsi512_ps(token_line(a0, ra, d_o, b, live, T8));
        __m512i s32[4];
        _Pragma("GCC unroll 4") for (int i = 0; i < 4; i++) s32[i] =
            token_line(a0, ra, so, 4 * b + i, live, T8);
        const __m512 d0 = _mm512_load_ps(s->ddm), d1 = _mm512_load_ps(s->ddm + 16);
        const __m512 dv = _mm512_permutex2var_ps(
            d0, _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30), d1);
        const __m512 dmv = _mm512_permutex2var_ps(
            d0, _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31), d1);
        for (int v = 0; v < NV; v++) {
            /* T8: vector v holds rows 2v (lanes 0..7) and 2v + 1 */
            const __m512i ri =
                T8 ? _mm512_setr_epi32(2 * v, 2 * v, 2 * v, 2 * v, 2 * v, 2 * v, 2 * v, 2 * v,
                                       2 * v + 1, 2 * v + 1, 2 * v + 1, 2 * v + 1, 2 * v + 1,
                                       2 * v + 1, 2 * v + 1, 2 * v + 1)
                   : _mm512_set1_epi32(v);
            __m512i mins[4];
            /* rows 2v, 2v + 1's minima pairs (adjacent), or row v's */
            const __m512i mv =
                T8 ? _mm512_castsi256_si512(_mm256_load_si256((const __m256i *)s->mins[2 * v]))
                   : _mm512_castsi128_si512(_mm_load_si128((const __m128i *)s->mins[v]));
            _Pragma("GCC unroll 4") for (int i = 0; i < 4; i++) mins[i] = _mm512_permutexvar_epi32(
                T8 ? _mm512_setr_epi32(i, i, i, i, i, i, i, i, 4 + i, 4 + i, 4 + i, 4 + i, 4 + i,
                                       4 + i, 4 + i, 4 + i)
                   : _mm512_set1_epi32(i),
                mv);
            acc[v] = q4_step(acc[v], _mm512_load_si512(s->clo + 16 * v),
                             _mm512_load_si512(s->chi + 16 * v), _mm512_permutexvar_ps(ri, dv),
                             _mm512_permutexvar_ps(ri, dmv), da, s32, mins);
        }
    }
    nm_amx_store_results(out, acc, nt, m, T8);
}

/* ---- Q6_K: a tile product per sub-block ---------------------------------- */

/* Q6_K's signed 8-bit scales do not split into byte-sized products with
 * its 6-bit codes, so each sub-block of 16 is one product (tdpbssd, codes
 * -32..31) stored as int32, and the vector units take isum += sc_j C_j. */
typedef struct q6_work {
    _Alignas(64) int8_t codes[AMX_R * NM_QK_K];
    _Alignas(64) int32_t c[16][AMX_R * AMX_T]; /* row r, token t at c[j][16 r + t] */
    int32_t sc[AMX_R][16];
    float d[AMX_R];
} q6_work;

AI void q6_unpack(const char *blk, int r, q6_work *s) {
    ksb wb;
    unpack_q6_k(blk, &wb);
    _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) _mm512_store_si512(
        s->codes + r * NM_QK_K + 64 * c, _mm512_sub_epi8(wb.u[c], _mm512_set1_epi8(32)));
    const nm_block_q6_k *q = (const nm_block_q6_k *)blk;
    _mm512_storeu_si512(s->sc[r],
                        _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)q->scales)));
    s->d[r] = kq_f16((const char *)&q->d);
}

/* Sub-block j of super-block b: codes (tile AT) x activation lines (BT)
 * into CT, stored to s->c[j]. Its 4 lines start at line w0 = 64 b + 4 p, p
 * its position in the lines' order (half j % 2 of 32-value sub-block
 * NM_ACTK_LINE_SUB(j / 2)), in group row w0 % 16 (nm_actk_lines). */
#define Q6_SUB(CT, AT, BT, J)                                                                      \
    do {                                                                                           \
        const size_t w0 = 64 * (size_t)b + 8 * NM_ACTK_LINE_SUB((J) / 2) + 4 * ((J) % 2);          \
        _tile_zero(CT);                                                                            \
        _tile_loadd(AT, s->codes + 16 * (J), NM_QK_K);                                             \
        _tile_loadd(BT, lines + (w0 % 16) * ra + (w0 / 16) * 64, (long)ra);                        \
        _tile_dpbssd(CT, AT, BT);                                                                  \
        _tile_stored(CT, s->c[J], 64);                                                             \
    } while (0)

/* 16 rows x nt tokens, as q4_tile with T 16. */
static void q6_tile(const void *w, size_t rb, const void *const *acts, int nt, int64_t n,
                    float *out, q6_work *s) {
    const size_t ra = (size_t)nm_actk_batch_row_bytes(n);
    const char *a0 = acts[0], *lines = a0 + nm_actk_vnni_off(n);
    const __mmask16 live = (__mmask16)((1u << nt) - 1);
    const uint64_t d_o = nm_actk_dline_off(n);
    __m512 acc[AMX_R];
    for (int r = 0; r < AMX_R; r++)
        acc[r] = _mm512_setzero_ps();
    for (int64_t b = 0; b < n / NM_QK_K; b++) {
        for (int r = 0; r < AMX_R; r++) {
            const char *blk = (const char *)w + (size_t)r * rb + (size_t)b * sizeof(nm_block_q6_k);
            kq_prefetch(blk, sizeof(nm_block_q6_k), AMX_R * rb);
            q6_unpack(blk, r, s);
        }
        _Pragma("GCC unroll 16") for (int j = 0; j < 16; j += 2) {
            Q6_SUB(0, 2, 4, j);
            Q6_SUB(1, 3, 5, j + 1);
        }
        const __m512 da = _mm512_castsi512_ps(token_line(a0, ra, d_o, b, live, 0));
        for (int r = 0; r < AMX_R; r++) {
            __m512i is = _mm512_setzero_si512();
            _Pragma("GCC unroll 16") for (int j = 0; j < 16; j++) is =
                _mm512_add_epi32(is, _mm512_mullo_epi32(_mm512_load_si512(s->c[j] + AMX_T * r),
                                                        _mm512_set1_epi32(s->sc[r][j])));
            __m512 t =
                _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(s->d[r]), da), _mm512_cvtepi32_ps(is));
            acc[r] = _mm512_add_ps(acc[r], t);
        }
    }
    for (int r = 0; r < AMX_R; r++)
        _mm512_mask_storeu_ps(out + r * nt, live, acc[r]);
}

/* The VNNI tiles the AMX ones replace, for the groups with fewer tokens:
 * by type (Q4_K, Q6_K) and GFNI (the Q4_K tile differs), set when the sets
 * are built. */
static nm_type_kernels few[2][2];

static void tile_few(const nm_type_kernels *k, const void *w, size_t rb, const void *const *acts,
                     int nt, int64_t n, float *out) {
    float o[AMX_R * NM_K_MAX_TOK];
    for (int r0 = 0; r0 < AMX_R; r0 += k->tile_rows)
        for (int t0 = 0; t0 < nt; t0 += k->tile_tok) {
            int m = nt - t0 < k->tile_tok ? nt - t0 : k->tile_tok;
            k->tile((const char *)w + (size_t)r0 * rb, rb, acts + t0, m, n, o);
            for (int r = 0; r < k->tile_rows; r++)
                for (int t = 0; t < m; t++)
                    out[(r0 + r) * nt + t0 + t] = o[r * m + t];
        }
}

/* Q6_K's tile, with its 16 stored sub-block sums, wins only over 8 tokens
 * (bench_kernels, 1 thread, against the VNNI tile: 8 tokens 0.8x, 12 1.29x,
 * 16 1.49x with the weights in cache). */
#define Q6_MIN_TOK 9

#define AMX_KERNELS(G)                                                                             \
    static void q4_k_tile_amx##G(const void *w, size_t rb, const void *const *acts, int nt,        \
                                 int64_t n, float *out) {                                          \
        const bool t8 = nt <= 8;                                                                   \
        if (nt < AMX_MIN_TOK || !nm_amx_use(t8 ? &cfg_q4_8 : &cfg_q4_16)) {                        \
            tile_few(&few[0][G], w, rb, acts, nt, n, out);                                         \
            return;                                                                                \
        }                                                                                          \
        q4_work s;                                                                                 \
        if (t8)                                                                                    \
            q4_tile(w, rb, acts, nt, n, out, &s, 1, G);                                            \
        else                                                                                       \
            q4_tile(w, rb, acts, nt, n, out, &s, 0, G);                                            \
    }                                                                                              \
    static void q6_k_tile_amx##G(const void *w, size_t rb, const void *const *acts, int nt,        \
                                 int64_t n, float *out) {                                          \
        if (nt < Q6_MIN_TOK || !nm_amx_use(&cfg_q6)) {                                             \
            tile_few(&few[1][G], w, rb, acts, nt, n, out);                                         \
            return;                                                                                \
        }                                                                                          \
        q6_work s;                                                                                 \
        q6_tile(w, rb, acts, nt, n, out, &s);                                                      \
    }

AMX_KERNELS(0)
AMX_KERNELS(1)

void nm_kernels_avx512_amx(nm_kernel_set *ks, int features) {
    static const nm_tile_fn tiles[2][2] = {{q4_k_tile_amx0, q4_k_tile_amx1},
                                           {q6_k_tile_amx0, q6_k_tile_amx1}};
    static const uint32_t types[2] = {NM_TYPE_Q4_K, NM_TYPE_Q6_K};
    const int g = (features & NM_AVX512_GFNI) != 0;
    for (int q6 = 0; q6 < 2; q6++) {
        nm_type_kernels *k = &ks->k[types[q6]];
        few[q6][g] = *k;
        k->tile = tiles[q6][g];
        k->tile_rows = AMX_R;
        k->tile_tok = AMX_T;
    }
    ks->matmat_end = amx_release;
}
