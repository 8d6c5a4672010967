/* The GGUF block layouts of Q4_1, Q5_0, Q5_1, IQ4_NL and IQ4_XS, their
 * dequantization (the values the format defines) and numalm's own
 * quantizers for them. The layouts are byte for byte those of ggml
 * (ggml-common.h); the quantizers are not llama.cpp's and need not give its
 * bytes, only blocks that any reader of the format decodes the same way.
 *
 * Element order inside a 32-element block, for every type here: byte j of
 * qs holds element j in its low nibble and element j + 16 in its high one.
 * Q5 types keep the fifth bit of element j in bit j of the 32-bit qh. */
#ifndef NM_QUANT_LEGACY_H
#define NM_QUANT_LEGACY_H

#include "quant.h"

#include <stdint.h>

#define NM_QK_K 256 /* elements per IQ4_XS super-block */

typedef struct {
    nm_fp16 d, m;          /* scale and minimum */
    uint8_t qs[NM_QK / 2]; /* x = q * d + m, q in 0..15 */
} nm_block_q4_1;           /* 20 bytes */

typedef struct {
    nm_fp16 d;
    uint8_t qh[4];         /* fifth bits, little-endian uint32 */
    uint8_t qs[NM_QK / 2]; /* x = (q - 16) * d, q in 0..31 */
} nm_block_q5_0;           /* 22 bytes */

typedef struct {
    nm_fp16 d, m;
    uint8_t qh[4];
    uint8_t qs[NM_QK / 2]; /* x = q * d + m, q in 0..31 */
} nm_block_q5_1;           /* 24 bytes */

typedef struct {
    nm_fp16 d;
    uint8_t qs[NM_QK / 2]; /* x = d * nm_iq4nl_values[q] */
} nm_block_iq4_nl;         /* 18 bytes */

/* 8 sub-blocks of 32; sub-block j has the 6-bit scale
 *   ls = (scales_l[j / 2] >> 4 (j % 2) & 15) | (scales_h >> 2 j & 3) << 4
 * and x = d * (ls - 32) * nm_iq4nl_values[q]. */
typedef struct {
    nm_fp16 d;
    uint16_t scales_h;
    uint8_t scales_l[NM_QK_K / 64];
    uint8_t qs[NM_QK_K / 2]; /* sub-block j at qs[16 j], as a 32-block */
} nm_block_iq4_xs;           /* 136 bytes */

_Static_assert(sizeof(nm_block_q4_1) == 20, "Q4_1 block layout");
_Static_assert(sizeof(nm_block_q5_0) == 22, "Q5_0 block layout");
_Static_assert(sizeof(nm_block_q5_1) == 24, "Q5_1 block layout");
_Static_assert(sizeof(nm_block_iq4_nl) == 18, "IQ4_NL block layout");
_Static_assert(sizeof(nm_block_iq4_xs) == 136, "IQ4_XS block layout");

/* The 16 values of the IQ4_NL / IQ4_XS 4-bit codes (the format's table). */
extern const int8_t nm_iq4nl_values[16];

/* Sub-block j's signed scale ls - 32 (-32..31). */
static inline int nm_iq4xs_scale(const nm_block_iq4_xs *b, int j) {
    int lo = (b->scales_l[j / 2] >> 4 * (j % 2)) & 15;
    int hi = (b->scales_h >> 2 * j) & 3;
    return (lo | hi << 4) - 32;
}

/* The 32-bit fifth-bit word of a Q5 block. */
static inline uint32_t nm_q5_qh(const uint8_t qh[4]) {
    return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
}

/* Row converters (n a whole number of blocks), as the type table wants. */
void nm_quantize_q4_1(const float *src, void *dst, int64_t n);
void nm_dequantize_q4_1(const void *src, float *dst, int64_t n);
void nm_quantize_q5_0(const float *src, void *dst, int64_t n);
void nm_dequantize_q5_0(const void *src, float *dst, int64_t n);
void nm_quantize_q5_1(const float *src, void *dst, int64_t n);
void nm_dequantize_q5_1(const void *src, float *dst, int64_t n);
void nm_quantize_iq4_nl(const float *src, void *dst, int64_t n);
void nm_dequantize_iq4_nl(const void *src, float *dst, int64_t n);
void nm_quantize_iq4_xs(const float *src, void *dst, int64_t n);
void nm_dequantize_iq4_xs(const void *src, float *dst, int64_t n);

/* --verify's checks: the index of the first of n blocks whose scale (or
 * minimum) is not finite, or -1. IQ4_XS's sub-block scales are integers. */
int64_t nm_check_q4_1(const void *blocks, int64_t n);
int64_t nm_check_q5_0(const void *blocks, int64_t n);
int64_t nm_check_q5_1(const void *blocks, int64_t n);
int64_t nm_check_iq4_nl(const void *blocks, int64_t n);
int64_t nm_check_iq4_xs(const void *blocks, int64_t n);

#endif
