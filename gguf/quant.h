/* Scalar reference conversions between F32 and the float and Q8_0 / Q4_0
 * weight types, with the exact GGUF block layouts; the K-quants are in
 * quant_kquant.h. The type table (ggml_types.c) points at each type's
 * converters; mkmodel writes files with them, tests and the embedding lookup
 * read weights back with them. */
#ifndef NM_QUANT_H
#define NM_QUANT_H

#include <stddef.h>
#include <stdint.h>

#define NM_QK 32 /* elements per Q8_0 / Q4_0 block */

typedef uint16_t nm_fp16;
typedef uint16_t nm_bf16;

typedef struct {
    nm_fp16 d;        /* scale */
    int8_t qs[NM_QK]; /* x = qs * d */
} nm_block_q8_0;      /* 34 bytes */

typedef struct {
    nm_fp16 d;             /* scale */
    uint8_t qs[NM_QK / 2]; /* low nibble: element j, high: j+16; x = (q-8)*d */
} nm_block_q4_0;           /* 18 bytes */

#ifndef __cplusplus /* the CUDA kernels include the block layouts too */
_Static_assert(sizeof(nm_block_q8_0) == 34, "Q8_0 block layout");
_Static_assert(sizeof(nm_block_q4_0) == 18, "Q4_0 block layout");
#endif

float nm_fp16_to_f32(nm_fp16 h);
nm_fp16 nm_f32_to_fp16(float f); /* round to nearest even */
float nm_bf16_to_f32(nm_bf16 h);
nm_bf16 nm_f32_to_bf16(float f); /* round to nearest even, NaN kept */

/* Through the type table: -1 for a type without a converter or when n is
 * not a whole number of blocks. */
int nm_quantize_row(uint32_t type, const float *src, void *dst, int64_t n);
int nm_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n);

/* Random weights of a quantized type for the buffers that benchmarks and
 * probes stream: a pool of n blocks quantized from uniform [-1, 1) values
 * (every scale a real one, no denormal slow paths), from which fill picks
 * one block at random per block of dst, so no two pages are the same (a
 * hypervisor could merge identical pages into one cached copy and fake the
 * bandwidth). make returns -1 for a type without a quantizer or without
 * memory for the pool. */
typedef struct nm_block_pool {
    uint32_t type;
    size_t block_bytes;
    int n;
    uint8_t *blocks;
} nm_block_pool;
int nm_block_pool_make(nm_block_pool *pool, uint32_t type, int n, uint64_t seed);
/* Whole blocks only: a tail shorter than a block is left as it is. */
void nm_block_pool_fill(const nm_block_pool *pool, void *dst, size_t bytes, uint64_t seed);
void nm_block_pool_free(nm_block_pool *pool);

/* The converters and checks of the type table (n a whole number of
 * blocks; the checks take a count of blocks). */
void nm_quantize_f32(const float *src, void *dst, int64_t n);
void nm_dequantize_f32(const void *src, float *dst, int64_t n);
void nm_quantize_f16(const float *src, void *dst, int64_t n);
void nm_dequantize_f16(const void *src, float *dst, int64_t n);
void nm_quantize_bf16(const float *src, void *dst, int64_t n);
void nm_dequantize_bf16(const void *src, float *dst, int64_t n);
void nm_quantize_q8_0(const float *src, void *dst, int64_t n);
void nm_dequantize_q8_0(const void *src, float *dst, int64_t n);
void nm_quantize_q4_0(const float *src, void *dst, int64_t n);
void nm_dequantize_q4_0(const void *src, float *dst, int64_t n);
int64_t nm_check_f32(const void *blocks, int64_t n);
int64_t nm_check_f16(const void *blocks, int64_t n);
int64_t nm_check_bf16(const void *blocks, int64_t n);
int64_t nm_check_q8_0(const void *blocks, int64_t n);
int64_t nm_check_q4_0(const void *blocks, int64_t n);

/* True when an F16 value is an infinity or a NaN. */
static inline int nm_fp16_nonfinite(nm_fp16 h) {
    return (h & 0x7c00) == 0x7c00;
}

#endif
