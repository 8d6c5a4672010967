/* The ggml tensor types of the GGUF spec: ids, block sizes and type sizes,
 * and for the types numalm computes with, the activation format their
 * kernels take and the row converters (gguf/quant*.c). Every type is known
 * here, including those numalm cannot compute with yet, so that a file using
 * one is refused as "not supported yet", not as corrupt.
 *
 * Adding a weight type: its entry here (act format, converters, scale
 * check), its block layout, converters and check in a gguf/quant_FAMILY.c, its kernels in the
 * scalar and ISA family files (runtime/kernels_scalar.c says how). */
#ifndef NM_GGML_TYPES_H
#define NM_GGML_TYPES_H

#include <stdbool.h>
#include <stdint.h>

enum nm_type {
    NM_TYPE_F32 = 0,
    NM_TYPE_F16 = 1,
    NM_TYPE_Q4_0 = 2,
    NM_TYPE_Q4_1 = 3,
    NM_TYPE_Q5_0 = 6,
    NM_TYPE_Q5_1 = 7,
    NM_TYPE_Q8_0 = 8,
    NM_TYPE_Q8_1 = 9,
    NM_TYPE_Q2_K = 10,
    NM_TYPE_Q3_K = 11,
    NM_TYPE_Q4_K = 12,
    NM_TYPE_Q5_K = 13,
    NM_TYPE_Q6_K = 14,
    NM_TYPE_Q8_K = 15,
    NM_TYPE_IQ2_XXS = 16,
    NM_TYPE_IQ2_XS = 17,
    NM_TYPE_IQ3_XXS = 18,
    NM_TYPE_IQ1_S = 19,
    NM_TYPE_IQ4_NL = 20,
    NM_TYPE_IQ3_S = 21,
    NM_TYPE_IQ2_S = 22,
    NM_TYPE_IQ4_XS = 23,
    NM_TYPE_I8 = 24,
    NM_TYPE_I16 = 25,
    NM_TYPE_I32 = 26,
    NM_TYPE_I64 = 27,
    NM_TYPE_F64 = 28,
    NM_TYPE_IQ1_M = 29,
    NM_TYPE_BF16 = 30,
    NM_TYPE_TQ1_0 = 34,
    NM_TYPE_TQ2_0 = 35,
    NM_TYPE_MXFP4 = 39,
    NM_TYPE_COUNT = 40,
};

/* The activation format a weight type's kernels take. runtime/kernels.c
 * prepares activations by format, never by type, so a new weight type that
 * takes an existing format needs no edit there. */
typedef enum nm_act_format {
    NM_ACT_NONE = 0, /* no kernels: the type can be read but not computed with */
    NM_ACT_F32,      /* the F32 vector as is */
    NM_ACT_F16,      /* rounded to F16 (several tokens: stored widened to F32) */
    NM_ACT_BF16,     /* rounded to BF16 */
    NM_ACT_Q8_32,    /* int8 per block of 32 with F32 scale and offset (nm_actq_*) */
    NM_ACT_Q8_K,     /* int8 per block of 256 with F32 scale and per-16 sums (nm_actk_*) */
} nm_act_format;

/* Row converters; n is a whole number of blocks (nm_quantize_row checks). */
typedef void (*nm_quantize_fn)(const float *src, void *dst, int64_t n);
typedef void (*nm_dequantize_fn)(const void *src, float *dst, int64_t n);
/* The first of n_blocks blocks whose scales (float types: whose values)
 * are not finite, or -1: --verify's check, as llama.cpp's tensor check. */
typedef int64_t (*nm_check_fn)(const void *blocks, int64_t n_blocks);

typedef struct nm_type_info {
    const char *name;            /* NULL for ids that were removed from the spec */
    uint32_t block_size;         /* elements per block */
    uint32_t type_size;          /* bytes per block */
    nm_act_format act;           /* NM_ACT_NONE: numalm has no kernels for it */
    nm_quantize_fn quantize;     /* NULL: numalm cannot write it */
    nm_dequantize_fn dequantize; /* NULL: numalm cannot read its values */
    nm_check_fn check;           /* NULL: no check of its scales */
} nm_type_info;

/* NULL when the id is unknown or was removed from the spec. */
const nm_type_info *nm_type_get(uint32_t type);
const char *nm_type_name(uint32_t type); /* "type#N" style for unknown */

/* Bytes of a row of n elements; -1 if n is not a whole number of blocks or
 * the type is unknown. */
int nm_type_row_bytes(uint32_t type, uint64_t n, uint64_t *out);

/* The first of n_blocks blocks of type whose scales are not finite, -1 when
 * there is none or the type has no check. */
int64_t nm_type_find_bad_block(uint32_t type, const void *blocks, int64_t n_blocks);

/* True when numalm has kernels for the type (its act format is not NONE). */
bool nm_type_computes(uint32_t type);

/* Parses "f32", "Q8_0", ... (case-insensitive); -1 when unknown. */
int nm_type_from_name(const char *name);

#endif
