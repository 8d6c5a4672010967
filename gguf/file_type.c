#include "file_type.h"

#include "ggml_types.h"

#include <stdio.h>
#include <strings.h>

/* llama.h's llama_ftype, with llama-quantize's names; ids 4-6 and 33-35 were
 * removed from the format. */
static const nm_file_type FILE_TYPES[] = {
    {0, "F32", NM_TYPE_F32},          {1, "F16", NM_TYPE_F16},
    {2, "Q4_0", NM_TYPE_Q4_0},        {3, "Q4_1", NM_TYPE_Q4_1},
    {7, "Q8_0", NM_TYPE_Q8_0},        {8, "Q5_0", NM_TYPE_Q5_0},
    {9, "Q5_1", NM_TYPE_Q5_1},        {10, "Q2_K", NM_TYPE_Q2_K},
    {11, "Q3_K_S", NM_TYPE_Q3_K},     {12, "Q3_K_M", NM_TYPE_Q3_K},
    {13, "Q3_K_L", NM_TYPE_Q3_K},     {14, "Q4_K_S", NM_TYPE_Q4_K},
    {15, "Q4_K_M", NM_TYPE_Q4_K},     {16, "Q5_K_S", NM_TYPE_Q5_K},
    {17, "Q5_K_M", NM_TYPE_Q5_K},     {18, "Q6_K", NM_TYPE_Q6_K},
    {19, "IQ2_XXS", NM_TYPE_IQ2_XXS}, {20, "IQ2_XS", NM_TYPE_IQ2_XS},
    {21, "Q2_K_S", NM_TYPE_Q2_K},     {22, "IQ3_XS", NM_TYPE_IQ3_S},
    {23, "IQ3_XXS", NM_TYPE_IQ3_XXS}, {24, "IQ1_S", NM_TYPE_IQ1_S},
    {25, "IQ4_NL", NM_TYPE_IQ4_NL},   {26, "IQ3_S", NM_TYPE_IQ3_S},
    {27, "IQ3_M", NM_TYPE_IQ3_S},     {28, "IQ2_S", NM_TYPE_IQ2_S},
    {29, "IQ2_M", NM_TYPE_IQ2_S},     {30, "IQ4_XS", NM_TYPE_IQ4_XS},
    {31, "IQ1_M", NM_TYPE_IQ1_M},     {32, "BF16", NM_TYPE_BF16},
    {36, "TQ1_0", NM_TYPE_TQ1_0},     {37, "TQ2_0", NM_TYPE_TQ2_0},
    {38, "MXFP4_MOE", NM_TYPE_MXFP4},
};

#define N_FILE_TYPES (sizeof FILE_TYPES / sizeof FILE_TYPES[0])

/* llama-quantize's aliases */
static const struct {
    const char *alias, *name;
} ALIASES[] = {{"Q3_K", "Q3_K_M"}, {"Q4_K", "Q4_K_M"}, {"Q5_K", "Q5_K_M"}};

const nm_file_type *nm_file_type_get(uint32_t id) {
    for (size_t i = 0; i < N_FILE_TYPES; i++)
        if (FILE_TYPES[i].id == id)
            return &FILE_TYPES[i];
    return NULL;
}

const nm_file_type *nm_file_type_from_name(const char *name) {
    for (size_t i = 0; i < sizeof ALIASES / sizeof ALIASES[0]; i++)
        if (!strcasecmp(name, ALIASES[i].alias))
            name = ALIASES[i].name;
    for (size_t i = 0; i < N_FILE_TYPES; i++)
        if (!strcasecmp(name, FILE_TYPES[i].name))
            return &FILE_TYPES[i];
    return NULL;
}

const nm_file_type *nm_file_type_for_type(uint32_t type) {
    const nm_file_type *f = nm_type_get(type) ? nm_file_type_from_name(nm_type_name(type)) : NULL;
    return f && f->base == type ? f : NULL;
}

const char *nm_file_type_describe(uint32_t id, char *buf, unsigned cap) {
    const nm_file_type *f = nm_file_type_get(id);
    if (!f)
        snprintf(buf, cap, "unknown file type %u", id);
    else if (id == 0)
        snprintf(buf, cap, "all F32");
    else if (!strcasecmp(f->name, nm_type_name(f->base)))
        snprintf(buf, cap, "mostly %s", f->name);
    else
        snprintf(buf, cap, "mostly %s (%s)", nm_type_name(f->base), f->name);
    return buf;
}
