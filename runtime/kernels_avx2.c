/* AVX2 + FMA + F16C kernels. Compiled with those flags only (CMakeLists.txt)
 * and reached only after kernels.c has checked CPUID.
 *
 * Every row kernel is written once for a compile-time token count NT and
 * instantiated for NT = 1..4 through a switch, so the accumulators stay in
 * registers. With more tokens each weight vector is converted once and used
 * NT times; with one token (decode) every type takes four rows at once
 * (rows4), four streams a quarter of the matrix apart; prompt matmat takes
 * the float types in tiles of 2 rows x 3 tokens, so each load serves
 * several FMAs. */
#include "common/util.h"
#include "kernel_set.h"
#include "device_math.h"
#include "gguf/quant.h"

#include <float.h>
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#define AI static inline __attribute__((always_inline))
#define TOK_GROUP 4
/* matmat tile of float weights: 2 rows x 3 tokens, 12 accumulators, 2
 * weight vectors and one activation vector: 15 of the 16 ymm registers */
#define TILE_R 2
#define TILE_T 3

AI float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Loaders: 8 weights at element i as F32, and one element for the tail. */
AI __m256 ld_f32(const void *p, int64_t i) {
    return _mm256_loadu_ps((const float *)p + i);
}
AI __m256 ld_f16(const void *p, int64_t i) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)p + i)));
}
AI __m256 ld_bf16(const void *p, int64_t i) {
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)p + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
AI float el_f32(const void *p, int64_t i) {
    return ((const float *)p)[i];
}
AI float el_f16(const void *p, int64_t i) {
    return _cvtsh_ss(((const uint16_t *)p)[i]);
}
AI float el_bf16(const void *p, int64_t i) {
    uint32_t u = (uint32_t)((const uint16_t *)p)[i] << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Makes the compiler hold v in a register: otherwise gcc may fold an
 * activation load into each FMA of a tile that uses it. No instruction. */
AI void keep_in_reg(__m256 *v) {
    __asm__("" : "+x"(*v));
}

/* The weight lines of one step (32 elements of es bytes), ahead bytes
 * ahead, into L2. */
AI void prefetch_l2(const char *p, const int es, size_t ahead) {
    _mm_prefetch(p + ahead, _MM_HINT_T1);
    if (es == 4)
        _mm_prefetch(p + ahead + 64, _MM_HINT_T1);
}

/* R rows x NT tokens; out[r * NT + t]. Each dot keeps two accumulators of
 * 8 lanes with the same order of operations whatever R and NT are, so a
 * row's result does not depend on how rows or tokens are grouped. */
#define FLOAT_KERNEL(NAME, ES, LD, EL, XT, XLD, XEL)                                               \
    AI void NAME##_rt(const void *w, size_t rb, const void *const *acts, const int R,              \
                      const int NT, int64_t n, float *out) {                                       \
        const XT *x[TOK_GROUP];                                                                    \
        const char *row[4];                                                                        \
        __m256 acc[4][TOK_GROUP][2];                                                               \
        _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) x[t] = acts[t];                       \
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {                                      \
            row[r] = (const char *)w + (size_t)r * rb;                                             \
            _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) {                                 \
                acc[r][t][0] = _mm256_setzero_ps();                                                \
                acc[r][t][1] = _mm256_setzero_ps();                                                \
            }                                                                                      \
        }                                                                                          \
        int64_t i = 0;                                                                             \
        for (; i + 16 <= n; i += 16) {                                                             \
            if ((i & 31) == 0) /* one prefetch per 64 bytes of F16 */                              \
                _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)                                \
                    prefetch_l2(row[r] + i * ES, ES, NM_PREFETCH_AHEAD(R));                        \
            _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {                                  \
                __m256 wv[4];                                                                      \
                _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) wv[r] = LD(row[r], i + 8 * h); \
                _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) {                             \
                    __m256 xv = XLD(x[t], i + 8 * h);                                              \
                    keep_in_reg(&xv);                                                              \
                    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) acc[r][t][h] =             \
                        _mm256_fmadd_ps(wv[r], xv, acc[r][t][h]);                                  \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        for (; i + 8 <= n; i += 8) {                                                               \
            _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {                                  \
                __m256 wv = LD(row[r], i);                                                         \
                _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) acc[r][t][0] =                \
                    _mm256_fmadd_ps(wv, XLD(x[t], i), acc[r][t][0]);                               \
            }                                                                                      \
        }                                                                                          \
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)                                        \
            _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) {                                 \
            float s = hsum8(_mm256_add_ps(acc[r][t][0], acc[r][t][1]));                            \
            for (int64_t j = i; j < n; j++)                                                        \
                s += EL(row[r], j) * XEL(x[t], j);                                                 \
            out[r * NT + t] = s;                                                                   \
        }                                                                                          \
    }                                                                                              \
    AI void NAME##_nt(const void *w, const void *const *acts, const int NT, int64_t n,             \
                      float *out) {                                                                \
        NAME##_rt(w, 0, acts, 1, NT, n, out);                                                      \
    }                                                                                              \
    __attribute__((unused)) static void NAME##_rows4(const void *w, size_t rb, const void *act,    \
                                                     int64_t n, float *out) {                      \
        NAME##_rt(w, rb, &act, 4, 1, n, out);                                                      \
    }                                                                                              \
    __attribute__((unused)) static void NAME##_tile(                                               \
        const void *w, size_t rb, const void *const *acts, int nt, int64_t n, float *out) {        \
        switch (nt) {                                                                              \
        case 1:                                                                                    \
            NAME##_rt(w, rb, acts, TILE_R, 1, n, out);                                             \
            break;                                                                                 \
        case 2:                                                                                    \
            NAME##_rt(w, rb, acts, TILE_R, 2, n, out);                                             \
            break;                                                                                 \
        default:                                                                                   \
            NAME##_rt(w, rb, acts, TILE_R, 3, n, out);                                             \
            break;                                                                                 \
        }                                                                                          \
    }                                                                                              \
    __attribute__((unused)) static void NAME(const void *w, const void *const *acts, int nt,       \
                                             int64_t n, float *out) {                              \
        switch (nt) {                                                                              \
        case 1:                                                                                    \
            NAME##_nt(w, acts, 1, n, out);                                                         \
            break;                                                                                 \
        case 2:                                                                                    \
            NAME##_nt(w, acts, 2, n, out);                                                         \
            break;                                                                                 \
        case 3:                                                                                    \
            NAME##_nt(w, acts, 3, n, out);                                                         \
            break;                                                                                 \
        default:                                                                                   \
            NAME##_nt(w, acts, 4, n, out);                                                         \
            break;                                                                                 \
        }                                                                                          \
    }

FLOAT_KERNEL(rowdot_f32, 4, ld_f32, el_f32, float, ld_f32, el_f32)
/* F16 weights take F16 activations, as in kernels_avx512.c */
FLOAT_KERNEL(rowdot_f16, 2, ld_f16, el_f16, uint16_t, ld_f16, el_f16)
/* attention: the F16 KV cache against the F32 query */
FLOAT_KERNEL(rowdot_f16_f32act, 2, ld_f16, el_f16, float, ld_f32, el_f32)
/* BF16 weights take BF16 activations (see nm_act_prepare) */
FLOAT_KERNEL(rowdot_bf16, 2, ld_bf16, el_bf16, uint16_t, ld_bf16, el_bf16)

/* Q8_0: maddubs wants unsigned x signed bytes, so the weight's sign moves
 * onto the activation (|w| * sign(w)a), then pairs of int16 widen to int32:
 * a block's products as eight F32 partial sums. */
AI __m256 q8_products(__m256i wq, __m256i a) {
    __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(wq, wq), _mm256_sign_epi8(a, wq));
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

AI void q8_nt(const void *row, const void *const *acts, const int NT, int64_t n, float *out) {
    const nm_block_q8_0 *w = row;
    const int8_t *qa[TOK_GROUP];
    const float *da[TOK_GROUP];
    __m256 acc[TOK_GROUP];
    _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) {
        qa[t] = nm_actq_qs(acts[t]);
        da[t] = nm_actq_d(acts[t], n);
        acc[t] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < n / 32; b++) {
        _mm_prefetch((const char *)(w + b) + NM_PREFETCH_BYTES, _MM_HINT_T1);
        __m256i wq = _mm256_loadu_si256((const __m256i *)w[b].qs);
        float dw = _cvtsh_ss(w[b].d);
        _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) {
            __m256 f = q8_products(wq, _mm256_loadu_si256((const __m256i *)(qa[t] + b * 32)));
            acc[t] = _mm256_fmadd_ps(f, _mm256_set1_ps(dw * da[t][b]), acc[t]);
        }
    }
    _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) out[t] = hsum8(acc[t]);
}

/* Q8_0 decode: four rows rb apart, each activation block loaded once for
 * them; each row's sequence is q8_nt's with one token (the same bits). */
static void rows4_q8_0(const void *w, size_t rb, const void *act, int64_t n, float *out) {
    const nm_block_q8_0 *row[4];
    const int8_t *qa = nm_actq_qs(act);
    const float *da = nm_actq_d(act, n);
    __m256 acc[4];
    _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) {
        row[r] = (const nm_block_q8_0 *)((const char *)w + (size_t)r * rb);
        acc[r] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < n / 32; b++) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(qa + b * 32));
        _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) {
            _mm_prefetch((const char *)(row[r] + b) + NM_PREFETCH_ROWS4_BYTES, _MM_HINT_T1);
            __m256 f = q8_products(_mm256_loadu_si256((const __m256i *)row[r][b].qs), a);
            acc[r] = _mm256_fmadd_ps(f, _mm256_set1_ps(_cvtsh_ss(row[r][b].d) * da[b]), acc[r]);
        }
    }
    _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) out[r] = hsum8(acc[r]);
}

/* Q4_0: four blocks (72 bytes) per step. Each block's 16 nibble bytes are
 * loaded into both 128-bit lanes and the upper lane shifted by 4, so one
 * AND leaves the block's 32 elements in order, as unsigned bytes 0..15 that
 * vpmaddubsw takes as they are. Its int16 pair sums (at most 2 * 15 * 127)
 * of the four blocks are interleaved and added by two rounds of unpacks
 * (pairs of words, then quadwords), which stay below 2^15 (8 products,
 * 15240), and one vpmaddwd: lanes k and k + 4 then hold the two partial
 * sums of block k, so the scales apply lane by lane. (Three vphaddw did the
 * same 20% slower.) The -8 offset is m = 8 d_a sum(a) per block
 * (nm_actq_m), subtracted in lanes 0-3:
 *     acc += d_w * (d_a * isum - m)      (isum from the unsigned nibbles)
 * Each dot has this one sequence whatever the tokens per call. */

typedef struct q4_wstep {
    __m256i q[4]; /* block k's 32 nibbles, as bytes in element order */
    __m256 d;     /* d_w of blocks 0..3, twice */
} q4_wstep;

/* k = blocks in this step (1..4); k < 4 only for a row's last step, which
 * reads nothing past its blocks and zeroes the others. */
AI q4_wstep q4_unpack(const nm_block_q4_0 *w, const int k) {
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m256i shift = _mm256_set_epi64x(4, 4, 0, 0);
    q4_wstep s;
    uint64_t dh = 0;
    _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) {
        if (j < k) {
            __m256i raw = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)w[j].qs));
            s.q[j] = _mm256_and_si256(_mm256_srlv_epi64(raw, shift), m4);
            dh |= (uint64_t)w[j].d << (16 * j);
        } else {
            s.q[j] = _mm256_setzero_si256();
        }
    }
    __m128i h = _mm_cvtsi64_si128((long long)dh);
    s.d = _mm256_cvtph_ps(_mm_unpacklo_epi64(h, h));
    return s;
}

AI __m256 q4_fma(const q4_wstep *w, const void *act, int64_t n, int64_t b, __m256 acc,
                 const int k) {
    const int8_t *qa = nm_actq_qs(act) + b * 32;
    __m256i p[4];
    _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) {
        const __m256i *a = (const __m256i *)(qa + 32 * j);
        p[j] =
            j < k ? _mm256_maddubs_epi16(w->q[j], _mm256_loadu_si256(a)) : _mm256_setzero_si256();
    }
    __m256i u01 =
        _mm256_add_epi16(_mm256_unpacklo_epi32(p[0], p[1]), _mm256_unpackhi_epi32(p[0], p[1]));
    __m256i u23 =
        _mm256_add_epi16(_mm256_unpacklo_epi32(p[2], p[3]), _mm256_unpackhi_epi32(p[2], p[3]));
    __m256i h = _mm256_add_epi16(_mm256_unpacklo_epi64(u01, u23), _mm256_unpackhi_epi64(u01, u23));
    __m256 f = _mm256_cvtepi32_ps(_mm256_madd_epi16(h, _mm256_set1_epi16(1)));
    __m128 d4, m4;
    if (k == 4) {
        d4 = _mm_loadu_ps(nm_actq_d(act, n) + b);
        m4 = _mm_loadu_ps(nm_actq_m(act, n) + b);
    } else { /* the scales end at the row's end: load only k of them */
        const __m128i lanes = _mm_set_epi32(3, 2, 1, 0);
        __m128i mask = _mm_cmpgt_epi32(_mm_set1_epi32(k), lanes);
        d4 = _mm_maskload_ps(nm_actq_d(act, n) + b, mask);
        m4 = _mm_maskload_ps(nm_actq_m(act, n) + b, mask);
    }
    __m256 t = _mm256_fmsub_ps(f, _mm256_set_m128(d4, d4), _mm256_zextps128_ps256(m4));
    return _mm256_fmadd_ps(t, w->d, acc);
}

/* One step of k blocks for NT tokens; the step's 72 bytes span two lines,
 * prefetched ahead bytes ahead. */
AI void q4_step(const nm_block_q4_0 *w, int64_t b, const void *const *acts, int64_t n, __m256 *acc,
                const int NT, const int k, const size_t ahead) {
    _mm_prefetch((const char *)(w + b) + ahead, _MM_HINT_T1);
    _mm_prefetch((const char *)(w + b) + ahead + 64, _MM_HINT_T1);
    q4_wstep ws = q4_unpack(w + b, k);
    _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) acc[t] =
        q4_fma(&ws, acts[t], n, b, acc[t], k);
}

/* A row's last k < 4 blocks (none when k is 0). */
AI void q4_tail(const nm_block_q4_0 *w, int64_t b, const void *const *acts, int64_t n, __m256 *acc,
                const int NT, const int k, const size_t ahead) {
    switch (k) {
    case 3:
        q4_step(w, b, acts, n, acc, NT, 3, ahead);
        break;
    case 2:
        q4_step(w, b, acts, n, acc, NT, 2, ahead);
        break;
    case 1:
        q4_step(w, b, acts, n, acc, NT, 1, ahead);
        break;
    }
}

AI void q4_nt(const void *row, const void *const *acts, const int NT, int64_t n, float *out) {
    const nm_block_q4_0 *w = row;
    const int64_t nb = n / 32;
    __m256 acc[TOK_GROUP];
    _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4)
        q4_step(w, b, acts, n, acc, NT, 4, NM_PREFETCH_BYTES);
    q4_tail(w, b, acts, n, acc, NT, (int)(nb - b), NM_PREFETCH_BYTES);
    _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) out[t] = hsum8(acc[t]);
}

/* Q4_0 decode: four rows rb apart, step by step in turn, so four streams
 * a quarter of the matrix apart are read at once, each prefetched
 * NM_PREFETCH_ROWS4_BYTES ahead (as the Q8_0 and AVX-512 rows4). A step's
 * activations and scales are loaded again for each row, from L1. Each row
 * keeps q4_nt's one-token sequence, so its bits. */
static void rows4_q4_0(const void *w, size_t rb, const void *act, int64_t n, float *out) {
    const nm_block_q4_0 *row[4];
    const void *const acts[1] = {act};
    const int64_t nb = n / 32;
    __m256 acc[4];
    _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) {
        row[r] = (const nm_block_q4_0 *)((const char *)w + (size_t)r * rb);
        acc[r] = _mm256_setzero_ps();
    }
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4)
        _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++)
            q4_step(row[r], b, acts, n, &acc[r], 1, 4, NM_PREFETCH_ROWS4_BYTES);
    _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) {
        q4_tail(row[r], b, acts, n, &acc[r], 1, (int)(nb - b), NM_PREFETCH_ROWS4_BYTES);
        out[r] = hsum8(acc[r]);
    }
}

#define QUANT_ROWDOT(NAME, IMPL)                                                                   \
    __attribute__((unused)) static void NAME(const void *w, const void *const *acts, int nt,       \
                                             int64_t n, float *out) {                              \
        switch (nt) {                                                                              \
        case 1:                                                                                    \
            IMPL(w, acts, 1, n, out);                                                              \
            break;                                                                                 \
        case 2:                                                                                    \
            IMPL(w, acts, 2, n, out);                                                              \
            break;                                                                                 \
        case 3:                                                                                    \
            IMPL(w, acts, 3, n, out);                                                              \
            break;                                                                                 \
        default:                                                                                   \
            IMPL(w, acts, 4, n, out);                                                              \
            break;                                                                                 \
        }                                                                                          \
    }

QUANT_ROWDOT(rowdot_q8_0, q8_nt)
QUANT_ROWDOT(rowdot_q4_0, q4_nt)

static float dot_f32(const float *a, const float *b, int64_t n) {
    const void *acts[1] = {b};
    float r;
    rowdot_f32_nt(a, acts, 1, n, &r);
    return r;
}

static float dot_f16_f32(const uint16_t *a, const float *b, int64_t n) {
    const void *acts[1] = {b};
    float r;
    rowdot_f16_f32act_nt(a, acts, 1, n, &r);
    return r;
}

#define AXPY(NAME, T, LD, EL)                                                                      \
    static void NAME(float *y, float a, const T *x, int64_t n) {                                   \
        __m256 va = _mm256_set1_ps(a);                                                             \
        int64_t i = 0;                                                                             \
        for (; i + 16 <= n; i += 16) {                                                             \
            __m256 y0 = _mm256_fmadd_ps(va, LD(x, i), _mm256_loadu_ps(y + i));                     \
            __m256 y1 = _mm256_fmadd_ps(va, LD(x, i + 8), _mm256_loadu_ps(y + i + 8));             \
            _mm256_storeu_ps(y + i, y0);                                                           \
            _mm256_storeu_ps(y + i + 8, y1);                                                       \
        }                                                                                          \
        for (; i + 8 <= n; i += 8)                                                                 \
            _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, LD(x, i), _mm256_loadu_ps(y + i)));        \
        for (; i < n; i++)                                                                         \
            y[i] += a * EL(x, i);                                                                  \
    }

AXPY(axpy_f32, float, ld_f32, el_f32)
AXPY(axpy_f16, uint16_t, ld_f16, el_f16)

static void round_f16(const float *x, int64_t n, uint16_t *h, float *w) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i v = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT);
        if (h)
            _mm_storeu_si128((__m128i *)(h + i), v);
        else
            _mm256_storeu_ps(w + i, _mm256_cvtph_ps(v));
    }
    if (i < n) /* the last n % 8 */
        nm_kernels_scalar()->round_f16(x + i, n - i, h ? h + i : NULL, h ? NULL : w + i);
}

/* nm_dm_swiglu, 8 at a time: nm_dm_exp's steps lane by lane (max with the
 * bound second takes a NaN to the low end, as the scalar test does; above
 * the high end, infinity) */
void nm_swiglu_avx2(float *h, const float *g, const float *u, int64_t n) {
    const __m256 round = _mm256_set1_ps(NM_EXP_ROUND), one = _mm256_set1_ps(1.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 gv = _mm256_loadu_ps(g + i);
        const __m256 x0 = _mm256_xor_ps(gv, _mm256_set1_ps(-0.0f)), hi = _mm256_set1_ps(NM_EXP_HI);
        const __m256 x = _mm256_min_ps(_mm256_max_ps(x0, _mm256_set1_ps(NM_EXP_LO)), hi);
        __m256 nf = _mm256_sub_ps(
            _mm256_add_ps(_mm256_mul_ps(x, _mm256_set1_ps(NM_EXP_LOG2E)), round), round);
        __m256 r = _mm256_sub_ps(x, _mm256_mul_ps(nf, _mm256_set1_ps(NM_EXP_LN2_HI)));
        r = _mm256_sub_ps(r, _mm256_mul_ps(nf, _mm256_set1_ps(NM_EXP_LN2_LO)));
        __m256 p = _mm256_set1_ps(NM_EXP_P0);
        p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(NM_EXP_P1));
        p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(NM_EXP_P2));
        p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(NM_EXP_P3));
        p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(NM_EXP_P4));
        p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(NM_EXP_P5));
        __m256 y = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(p, _mm256_mul_ps(r, r)), r), one);
        __m256i e =
            _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(nf), _mm256_set1_epi32(127)), 23);
        __m256 ex = _mm256_blendv_ps(_mm256_mul_ps(y, _mm256_castsi256_ps(e)),
                                     _mm256_set1_ps(INFINITY), _mm256_cmp_ps(x0, hi, _CMP_GT_OQ));
        __m256 v = _mm256_div_ps(gv, _mm256_add_ps(one, ex));
        _mm256_storeu_ps(h + i, _mm256_mul_ps(v, _mm256_loadu_ps(u + i)));
    }
    if (i < n)
        nm_kernels_scalar()->swiglu(h + i, g + i, u + i, n - i);
}

/* The 64-bit lane sums of one 64-byte line */
static inline __m256i line_words(const char *p) {
    return _mm256_add_epi64(_mm256_loadu_si256((const __m256i *)p),
                            _mm256_loadu_si256((const __m256i *)(p + 32)));
}

/* Four streams, each a quarter of the buffer, read side by side (the
 * AVX-512 set uses this read too). One sequential stream a core reads
 * 15-30 % slower than four on the dev VM (Intel Xeon host; two threads,
 * 1 GiB: 19-22 vs 23-27 GB/s): the hardware prefetchers follow each
 * stream, and one keeps too few lines in flight. Decode's matvec reads
 * four streams a thread (nm_matvec_set), and this read is the limit it is
 * compared against (the read probes, bench_kernels, plan --predict's
 * bandwidth), so it must not be the slower pattern. The words are summed
 * mod 2^64: the order leaves the result nm_sum_words's. */
uint64_t nm_sum_words_avx2(const void *p, size_t bytes) {
    const char *b = p;
    const size_t q = bytes / 4 / 64 * 64; /* each stream's bytes, whole lines */
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < q; i += 64) {
        a0 = _mm256_add_epi64(a0, line_words(b + i));
        a1 = _mm256_add_epi64(a1, line_words(b + q + i));
        a2 = _mm256_add_epi64(a2, line_words(b + 2 * q + i));
        a3 = _mm256_add_epi64(a3, line_words(b + 3 * q + i));
    }
    __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
    uint64_t lanes[4];
    _mm256_storeu_si256((__m256i *)lanes, s);
    return lanes[0] + lanes[1] + lanes[2] + lanes[3] + nm_sum_words(b + 4 * q, bytes - 4 * q);
}

/* The scalar quantizers' act_quantize_block (kernels_scalar.c) with AVX2:
 * the same float operations lane by lane (|x| and its maximum, x * (127 /
 * amax) rounded by adding and taking off 1.5 * 2^23, the clamp), so the
 * same bits. count values (32 or 256) into qs, the sum of each group of
 * values (32 or 16) into sums; returns the block scale. Every matrix input
 * of every token of a batch is prepared with it (Q8_0 / Q4_0 with the Q8
 * row, the K-quants and IQ4_XS with the Q8_K row; 5% of a serve step of 8
 * sequences when the Q8 one was scalar). */
static inline __attribute__((always_inline)) float
quantize_block_avx2(const float *x, const int count, int8_t *qs, const int group, int *sums) {
    const __m256 sign = _mm256_set1_ps(-0.0f), magic = _mm256_set1_ps(0x1.8p23f);
    const __m256i lim = _mm256_set1_epi32(127);
    __m256 amax = _mm256_setzero_ps(), bad = _mm256_setzero_ps();
    for (int i = 0; i < count; i += 8) {
        __m256 a = _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i));
        /* inf or NaN: not <= FLT_MAX */
        bad = _mm256_or_ps(bad, _mm256_cmp_ps(a, _mm256_set1_ps(FLT_MAX), _CMP_NLE_UQ));
        amax = _mm256_max_ps(amax, a);
    }
    if (_mm256_movemask_ps(bad)) { /* as the scalar code: NaN scale, zeros */
        memset(qs, 0, (size_t)count);
        memset(sums, 0, (size_t)(count / group) * sizeof *sums);
        return NAN;
    }
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    float am = _mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4)));
    float db = am / 127.0f;
    float id = am > 0.0f ? 127.0f / am : 0.0f;
    if (id > FLT_MAX)
        db = id = 0.0f;
    const __m256 vid = _mm256_set1_ps(id);
    for (int i = 0; i < count; i += 32) {
        __m256i q[4];
        for (int k = 0; k < 4; k++) {
            __m256 t = _mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * k), vid);
            t = _mm256_sub_ps(_mm256_add_ps(t, magic), magic);
            q[k] = _mm256_max_epi32(_mm256_min_epi32(_mm256_cvttps_epi32(t), lim),
                                    _mm256_sub_epi32(_mm256_setzero_si256(), lim));
        }
        /* the packs leave dwords of 4 values in the order 0 2 4 6 1 3 5 7 */
        __m256i p =
            _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(qs + i), p);
        /* the two 16-value groups' sums in lanes 0 and 1 */
        __m256i t = _mm256_hadd_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        t = _mm256_hadd_epi32(t, t);
        __m128i s2 = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
        if (group == 16) {
            sums[i / 16] = _mm_cvtsi128_si32(s2);
            sums[i / 16 + 1] = _mm_extract_epi32(s2, 1);
        } else {
            sums[i / 32] = _mm_cvtsi128_si32(s2) + _mm_extract_epi32(s2, 1);
        }
    }
    return db;
}

void nm_act_quantize_q8_avx2(const float *x, int64_t n, void *row) {
    int8_t *qs = (int8_t *)row;
    float *d = (float *)((char *)row + n);
    float *m = d + n / 32;
    int32_t *s = (int32_t *)(m + n / 32);
    for (int64_t b = 0; b < n / 32; b++) {
        int sum;
        d[b] = quantize_block_avx2(x + b * 32, 32, qs + b * 32, 32, &sum);
        m[b] = 8.0f * d[b] * (float)sum;
        s[b] = sum;
    }
}

void nm_act_quantize_q8k_avx2(const float *x, int64_t n, void *row) {
    int8_t *qs = (int8_t *)row;
    float *d = (float *)((char *)row + n);
    int16_t *bsums = (int16_t *)(d + n / 256);
    for (int64_t b = 0; b < n / 256; b++) {
        int sums[16];
        d[b] = quantize_block_avx2(x + b * 256, 256, qs + b * 256, 16, sums);
        for (int g = 0; g < 16; g++) /* |sum| <= 16 * 127 */
            bsums[b * 16 + g] = (int16_t)sums[g];
    }
}

_Static_assert(TILE_R < 4, "NM_PREFETCH_AHEAD: four rows are rows4");

static nm_kernel_set avx2_set;

/* Float tiles: TILE_R rows x TILE_T tokens. */
#define FLOAT_KERNELS(NAME) NM_TYPE_KERNELS(NAME, NAME##_rows4, NAME##_tile, TILE_R, TILE_T)

static void build_avx2_set(void) {
    nm_kernel_set *ks = &avx2_set;
    *ks = *nm_kernels_scalar();
    ks->name = "avx2";
    ks->tok_group = TOK_GROUP;
    ks->k[NM_TYPE_F32] = FLOAT_KERNELS(rowdot_f32);
    ks->k[NM_TYPE_F16] = FLOAT_KERNELS(rowdot_f16);
    ks->k[NM_TYPE_BF16] = FLOAT_KERNELS(rowdot_bf16);
    ks->k[NM_TYPE_Q8_0] = NM_TYPE_KERNELS(rowdot_q8_0, rows4_q8_0, NULL, 0, 0);
    ks->k[NM_TYPE_Q4_0] = NM_TYPE_KERNELS(rowdot_q4_0, rows4_q4_0, NULL, 0, 0);
    ks->f16_wide = FLOAT_KERNELS(rowdot_f16_f32act);
    ks->f16_wide.rows4 = NULL; /* decode never takes widened activations */
    ks->dot_f32 = dot_f32;
    ks->dot_f16_f32 = dot_f16_f32;
    ks->axpy_f32 = axpy_f32;
    ks->axpy_f16 = axpy_f16;
    ks->round_f16 = round_f16;
    ks->swiglu = nm_swiglu_avx2;
    ks->sum_words = nm_sum_words_avx2;
    ks->act_quantize_q8 = nm_act_quantize_q8_avx2;
    nm_kernels_avx2_kquant(ks);
    nm_kernels_avx2_legacy(ks);
}

const nm_kernel_set *nm_kernels_avx2(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, build_avx2_set);
    return &avx2_set;
}
