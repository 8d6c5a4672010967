/* The K-quants: Q2_K, Q3_K, Q4_K, Q5_K and Q6_K, with the exact GGUF block
 * layouts (ggml-common.h). Each block is a super-block of 256 values in
 * sub-blocks of 16 (Q2_K, Q3_K, Q6_K) or 32 (Q4_K, Q5_K) that have their
 * own quantized scale (and minimum), scaled in turn by the block's F16 d
 * (and dmin). The element accessors below define where value e (0..255) of
 * a block lives; the dequantizers and the scalar kernels use them, and the
 * SIMD kernels unpack the same bits in bulk. */
#ifndef NM_QUANT_KQUANT_H
#define NM_QUANT_KQUANT_H

#include "quant.h"

#include <stdint.h>

#define NM_QK_K 256 /* values per K-quant super-block */

/* x = d * sc * q - dmin * m, q in 0..3, sc and m 4 bits per 16 values */
typedef struct {
    uint8_t scales[16]; /* sub-block j: scale in the low nibble, min in the high */
    uint8_t qs[64];     /* 2-bit values, see nm_q2k_q */
    nm_fp16 d, dmin;
} nm_block_q2_k;

/* x = d * sc * q, q in -4..3 (two low bits in qs, a high bit in hmask that
 * is set for q >= 0), sc in -32..31 stored in 6 bits as sc + 32 */
typedef struct {
    uint8_t hmask[32];
    uint8_t qs[64];
    uint8_t scales[12]; /* see nm_q3k_scale */
    nm_fp16 d;
} nm_block_q3_k;

/* x = d * sc * q - dmin * m, q in 0..15, sc and m 6 bits per 32 values */
typedef struct {
    nm_fp16 d, dmin;
    uint8_t scales[12]; /* see nm_k4_scale_min */
    uint8_t qs[128];    /* 4-bit values, see nm_q4k_q */
} nm_block_q4_k;

/* as Q4_K with a fifth bit in qh: q in 0..31 */
typedef struct {
    nm_fp16 d, dmin;
    uint8_t scales[12];
    uint8_t qh[32];
    uint8_t qs[128];
} nm_block_q5_k;

/* x = d * sc * q, q in -32..31 stored as q + 32 (low 4 bits in ql, high 2
 * in qh), sc a signed byte per 16 values */
typedef struct {
    uint8_t ql[128];
    uint8_t qh[64];
    int8_t scales[16];
    nm_fp16 d;
} nm_block_q6_k;

#ifndef __cplusplus /* the CUDA kernels include the block layouts too */
_Static_assert(sizeof(nm_block_q2_k) == 84, "Q2_K block layout");
_Static_assert(sizeof(nm_block_q3_k) == 110, "Q3_K block layout");
_Static_assert(sizeof(nm_block_q4_k) == 144, "Q4_K block layout");
_Static_assert(sizeof(nm_block_q5_k) == 176, "Q5_K block layout");
_Static_assert(sizeof(nm_block_q6_k) == 210, "Q6_K block layout");
#endif

/* The accessors below are also device code of the CUDA kernels
 * (runtime/device_math.h), so both unpack the same bits. */
#ifdef __CUDACC__
#define NM_KQ_INLINE __host__ __device__ static inline
#else
#define NM_KQ_INLINE static inline
#endif

/* Q2_K and Q3_K keep value e in a 2-bit field: byte e/128*32 + e%32 of qs,
 * bits 2*(e%128/32). */
NM_KQ_INLINE int nm_k2bits(const uint8_t *qs, int e) {
    return (qs[e / 128 * 32 + e % 32] >> (2 * (e % 128 / 32))) & 3;
}

NM_KQ_INLINE int nm_q2k_q(const nm_block_q2_k *b, int e) {
    return nm_k2bits(b->qs, e);
}

/* The high bit of value e is bit e/32 of hmask[e%32]. */
NM_KQ_INLINE int nm_q3k_q(const nm_block_q3_k *b, int e) {
    return nm_k2bits(b->qs, e) + 4 * ((b->hmask[e % 32] >> (e / 32)) & 1) - 4;
}

/* Sub-block j's scale (0..15): low 4 bits in the nibbles of bytes 0..7
 * (j < 8 low, else high of byte j-8), high 2 bits in bytes 8..11 (byte
 * 8 + j%4, bits 2*(j/4)); stored plus 32. */
NM_KQ_INLINE int nm_q3k_scale(const uint8_t *s, int j) {
    int lo = j < 8 ? s[j] & 15 : s[j - 8] >> 4;
    int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (lo | hi << 4) - 32;
}

/* Q4_K / Q5_K: sub-block j's 6-bit scale and min. j < 4: the low 6 bits of
 * bytes j and j+4; j >= 4: the nibbles of byte j+4 with the top 2 bits of
 * bytes j-4 (scale) and j (min) above them. */
NM_KQ_INLINE void nm_k4_scale_min(const uint8_t *s, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 15) | (s[j - 4] >> 6) << 4;
        *m = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
    }
}

/* Value e of Q4_K: byte e/64*32 + e%32 of qs, low nibble when e%64 < 32. */
NM_KQ_INLINE int nm_q4k_q(const uint8_t *qs, int e) {
    return (qs[e / 64 * 32 + e % 32] >> (4 * (e % 64 / 32))) & 15;
}

/* Q5_K's fifth bit of value e is bit e/32 of qh[e%32]. */
NM_KQ_INLINE int nm_q5k_q(const nm_block_q5_k *b, int e) {
    return nm_q4k_q(b->qs, e) | ((b->qh[e % 32] >> (e / 32)) & 1) << 4;
}

/* Value e of Q6_K, in the 128-value half e/128, quarter k = e%128/32, lane
 * l = e%32: low 4 bits in byte half*64 + (k&1)*32 + l of ql (low nibble for
 * k < 2), high 2 bits in byte half*32 + l of qh, bits 2k. */
NM_KQ_INLINE int nm_q6k_q(const nm_block_q6_k *b, int e) {
    int half = e / 128, k = e % 128 / 32, l = e % 32;
    int lo = (b->ql[half * 64 + (k & 1) * 32 + l] >> (4 * (k >> 1))) & 15;
    int hi = (b->qh[half * 32 + l] >> (2 * k)) & 3;
    return (lo | hi << 4) - 32;
}

/* The converters of the type table (n a multiple of 256). The quantizers
 * are numalm's own: per sub-block a least-squares fit of scale (and min)
 * over a few candidate ranges, then the sub-block scales quantized against
 * the block's d (and dmin), then every value rounded with the scales as
 * stored. */
void nm_quantize_q2_k(const float *src, void *dst, int64_t n);
void nm_dequantize_q2_k(const void *src, float *dst, int64_t n);
void nm_quantize_q3_k(const float *src, void *dst, int64_t n);
void nm_dequantize_q3_k(const void *src, float *dst, int64_t n);
void nm_quantize_q4_k(const float *src, void *dst, int64_t n);
void nm_dequantize_q4_k(const void *src, float *dst, int64_t n);
void nm_quantize_q5_k(const float *src, void *dst, int64_t n);
void nm_dequantize_q5_k(const void *src, float *dst, int64_t n);
void nm_quantize_q6_k(const float *src, void *dst, int64_t n);
void nm_dequantize_q6_k(const void *src, float *dst, int64_t n);
/* --verify's checks: the first block whose d (or dmin) is not finite */
int64_t nm_check_q2_k(const void *blocks, int64_t n);
int64_t nm_check_q3_k(const void *blocks, int64_t n);
int64_t nm_check_q4_k(const void *blocks, int64_t n);
int64_t nm_check_q5_k(const void *blocks, int64_t n);
int64_t nm_check_q6_k(const void *blocks, int64_t n);

#endif
