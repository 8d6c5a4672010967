#include "ggml_types.h"

#include <stdio.h>
#include <strings.h>

/* Block layouts from the GGUF spec / ggml-common.h; ids 4, 5 and 31-33, 36-38
 * were removed from the format and stay NULL here. */
static const nm_type_info TYPES[NM_TYPE_COUNT] = {
    [NM_TYPE_F32] = {"F32", 1, 4, true},
    [NM_TYPE_F16] = {"F16", 1, 2, true},
    [NM_TYPE_Q4_0] = {"Q4_0", 32, 18, true},
    [NM_TYPE_Q4_1] = {"Q4_1", 32, 20, false},
    [NM_TYPE_Q5_0] = {"Q5_0", 32, 22, false},
    [NM_TYPE_Q5_1] = {"Q5_1", 32, 24, false},
    [NM_TYPE_Q8_0] = {"Q8_0", 32, 34, true},
    [NM_TYPE_Q8_1] = {"Q8_1", 32, 36, false},
    [NM_TYPE_Q2_K] = {"Q2_K", 256, 84, false},
    [NM_TYPE_Q3_K] = {"Q3_K", 256, 110, false},
    [NM_TYPE_Q4_K] = {"Q4_K", 256, 144, false},
    [NM_TYPE_Q5_K] = {"Q5_K", 256, 176, false},
    [NM_TYPE_Q6_K] = {"Q6_K", 256, 210, false},
    [NM_TYPE_Q8_K] = {"Q8_K", 256, 292, false},
    [NM_TYPE_IQ2_XXS] = {"IQ2_XXS", 256, 66, false},
    [NM_TYPE_IQ2_XS] = {"IQ2_XS", 256, 74, false},
    [NM_TYPE_IQ3_XXS] = {"IQ3_XXS", 256, 98, false},
    [NM_TYPE_IQ1_S] = {"IQ1_S", 256, 50, false},
    [NM_TYPE_IQ4_NL] = {"IQ4_NL", 32, 18, false},
    [NM_TYPE_IQ3_S] = {"IQ3_S", 256, 110, false},
    [NM_TYPE_IQ2_S] = {"IQ2_S", 256, 82, false},
    [NM_TYPE_IQ4_XS] = {"IQ4_XS", 256, 136, false},
    [NM_TYPE_I8] = {"I8", 1, 1, false},
    [NM_TYPE_I16] = {"I16", 1, 2, false},
    [NM_TYPE_I32] = {"I32", 1, 4, false},
    [NM_TYPE_I64] = {"I64", 1, 8, false},
    [NM_TYPE_F64] = {"F64", 1, 8, false},
    [NM_TYPE_IQ1_M] = {"IQ1_M", 256, 56, false},
    [NM_TYPE_BF16] = {"BF16", 1, 2, true},
    [NM_TYPE_TQ1_0] = {"TQ1_0", 256, 54, false},
    [NM_TYPE_TQ2_0] = {"TQ2_0", 256, 66, false},
    [NM_TYPE_MXFP4] = {"MXFP4", 32, 17, false},
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

int nm_type_from_name(const char *name) {
    for (int i = 0; i < NM_TYPE_COUNT; i++)
        if (TYPES[i].name && strcasecmp(TYPES[i].name, name) == 0)
            return i;
    return -1;
}
