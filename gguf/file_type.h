/* general.file_type: llama.cpp's file types (llama_ftype), the presets of
 * llama-quantize. A file type names what most matrices of a file are
 * ("mostly Q4_K") and, for the mixtures, which preset chose the type of
 * each tensor ("Q4_K_M"). tools/mkmodel_mix.c writes the mixtures. */
#ifndef NM_FILE_TYPE_H
#define NM_FILE_TYPE_H

#include <stdint.h>

typedef struct nm_file_type {
    uint32_t id;      /* the general.file_type value */
    const char *name; /* llama-quantize's name: "Q4_K_M", "F16", ... */
    uint32_t base;    /* the weight type of most matrices (enum nm_type) */
} nm_file_type;

/* NULL when id is not a file type llama.cpp defines. */
const nm_file_type *nm_file_type_get(uint32_t id);

/* By llama-quantize's name or alias, case-insensitive ("q4_k_m"; "q4_k"
 * is Q4_K_M as in llama-quantize); NULL when unknown. */
const nm_file_type *nm_file_type_from_name(const char *name);

/* The file type of a file whose matrices all have weight type `type`: the
 * one llama-quantize's name for the type selects (Q4_K: Q4_K_M, as
 * llama-quantize --pure writes); NULL when there is none. */
const nm_file_type *nm_file_type_for_type(uint32_t type);

/* "mostly Q4_K (Q4_K_M)", "all F32", or "unknown file type 77". */
const char *nm_file_type_describe(uint32_t id, char *buf, unsigned cap);

#endif
