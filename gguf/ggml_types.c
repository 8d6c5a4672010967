#include "ggml_types.h"

#include "quant.h"
#include "quant_kquant.h"
#include "quant_legacy.h"

#include <stdio.h>
#include <strings.h>

/* A type numalm reads and places but has no kernels for. */
#define STORED(NAME, BLOCK, SIZE)                                                                  \
    { .name = NAME, .block_size = BLOCK, .type_size = SIZE }
/* A type numalm computes with: its kernels' activation format, its
 * converters nm_quantize_FN / nm_dequantize_FN and its check nm_check_FN. */
#define COMPUTED(NAME, BLOCK, SIZE, ACT, FN)                                                       \
    { NAME, BLOCK, SIZE, ACT, nm_quantize_##FN, nm_dequantize_##FN, nm_check_##FN }

/* Block layouts from the GGUF spec / ggml-common.h; ids 4, 5 and 31-33, 36-38
 * were removed from the format and stay NULL here. */
static const nm_type_info TYPES[NM_TYPE_COUNT] = {
    [NM_TYPE_F32] = COMPUTED("F32", 1, 4, NM_ACT_F32, f32),
    [NM_TYPE_F16] = COMPUTED("F16", 1, 2, NM_ACT_F16, f16),
    [NM_TYPE_Q4_0] = COMPUTED("Q4_0", 32, 18, NM_ACT_Q8_32, q4_0),
    [NM_TYPE_Q4_1] = COMPUTED("Q4_1", 32, 20, NM_ACT_Q8_32, q4_1),
    [NM_TYPE_Q5_0] = COMPUTED("Q5_0", 32, 22, NM_ACT_Q8_32, q5_0),
    [NM_TYPE_Q5_1] = COMPUTED("Q5_1", 32, 24, NM_ACT_Q8_32, q5_1),
    [NM_TYPE_Q8_0] = COMPUTED("Q8_0", 32, 34, NM_ACT_Q8_32, q8_0),
    [NM_TYPE_Q8_1] = STORED("Q8_1", 32, 36),
    [NM_TYPE_Q2_K] = COMPUTED("Q2_K", 256, 84, NM_ACT_Q8_K, q2_k),
    [NM_TYPE_Q3_K] = COMPUTED("Q3_K", 256, 110, NM_ACT_Q8_K, q3_k),
    [NM_TYPE_Q4_K] = COMPUTED("Q4_K", 256, 144, NM_ACT_Q8_K, q4_k),
    [NM_TYPE_Q5_K] = COMPUTED("Q5_K", 256, 176, NM_ACT_Q8_K, q5_k),
    [NM_TYPE_Q6_K] = COMPUTED("Q6_K", 256, 210, NM_ACT_Q8_K, q6_k),
    [NM_TYPE_Q8_K] = STORED("Q8_K", 256, 292),
    [NM_TYPE_IQ2_XXS] = STORED("IQ2_XXS", 256, 66),
    [NM_TYPE_IQ2_XS] = STORED("IQ2_XS", 256, 74),
    [NM_TYPE_IQ3_XXS] = STORED("IQ3_XXS", 256, 98),
    [NM_TYPE_IQ1_S] = STORED("IQ1_S", 256, 50),
    [NM_TYPE_IQ4_NL] = COMPUTED("IQ4_NL", 32, 18, NM_ACT_Q8_32, iq4_nl),
    [NM_TYPE_IQ3_S] = STORED("IQ3_S", 256, 110),
    [NM_TYPE_IQ2_S] = STORED("IQ2_S", 256, 82),
    [NM_TYPE_IQ4_XS] = COMPUTED("IQ4_XS", 256, 136, NM_ACT_Q8_K, iq4_xs),
    [NM_TYPE_I8] = STORED("I8", 1, 1),
    [NM_TYPE_I16] = STORED("I16", 1, 2),
    [NM_TYPE_I32] = STORED("I32", 1, 4),
    [NM_TYPE_I64] = STORED("I64", 1, 8),
    [NM_TYPE_F64] = STORED("F64", 1, 8),
    [NM_TYPE_IQ1_M] = STORED("IQ1_M", 256, 56),
    [NM_TYPE_BF16] = COMPUTED("BF16", 1, 2, NM_ACT_BF16, bf16),
    [NM_TYPE_TQ1_0] = STORED("TQ1_0", 256, 54),
    [NM_TYPE_TQ2_0] = STORED("TQ2_0", 256, 66),
    [NM_TYPE_MXFP4] = STORED("MXFP4", 32, 17),
};

const nm_type_info *nm_type_get(uint32_t type) {
    if (type >= NM_TYPE_COUNT || !TYPES[type].name)
        return NULL;
    return &TYPES[type];
}

const char *nm_type_name(uint32_t type) {
    const nm_type_info *t = nm_type_get(type);
    return t ? t->name : "unknown";
}

int nm_type_row_bytes(uint32_t type, uint64_t n, uint64_t *out) {
    const nm_type_info *t = nm_type_get(type);
    if (!t || n % t->block_size)
        return -1;
    return __builtin_mul_overflow(n / t->block_size, (uint64_t)t->type_size, out) ? -1 : 0;
}

int64_t nm_type_find_bad_block(uint32_t type, const void *blocks, int64_t n_blocks) {
    const nm_type_info *t = nm_type_get(type);
    return t && t->check ? t->check(blocks, n_blocks) : -1;
}

bool nm_type_computes(uint32_t type) {
    const nm_type_info *t = nm_type_get(type);
    return t && t->act != NM_ACT_NONE;
}

int nm_type_from_name(const char *name) {
    for (int i = 0; i < NM_TYPE_COUNT; i++)
        if (TYPES[i].name && strcasecmp(TYPES[i].name, name) == 0)
            return i;
    return -1;
}
