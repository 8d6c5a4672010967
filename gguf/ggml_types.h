/* The ggml tensor types of the GGUF spec: ids, block sizes and type sizes.
 * Every type is known here, including those numalm cannot compute with yet,
 * so that a file using one is refused as "not supported yet", not as corrupt. */
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

typedef struct nm_type_info {
    const char *name;    /* NULL for ids that were removed from the spec */
    uint32_t block_size; /* elements per block */
    uint32_t type_size;  /* bytes per block */
    bool compute;        /* numalm has kernels for it */
} nm_type_info;

/* NULL when the id is unknown or was removed from the spec. */
const nm_type_info *nm_type_get(uint32_t type);
const char *nm_type_name(uint32_t type); /* "type#N" style for unknown */

/* Bytes of a row of n elements; -1 if n is not a whole number of blocks or
 * the type is unknown. */
int nm_type_row_bytes(uint32_t type, uint64_t n, uint64_t *out);

/* Parses "f32", "Q8_0", ... (case-insensitive); -1 when unknown. */
int nm_type_from_name(const char *name);

#endif
