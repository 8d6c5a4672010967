/* The type mixtures of llama-quantize's K-quant presets, for the llama
 * architecture as mkmodel writes it (no experts, output.weight present):
 * which weight type each matrix of a Q2_K, Q3_K_S/M/L, Q4_K_S/M, Q5_K_S/M
 * or Q6_K file gets (the rules of llama.cpp's src/llama-quant.cpp,
 * llama_tensor_get_type, for these presets). */
#include "mkmodel.h"

#include "gguf/file_type.h"
#include "gguf/ggml_types.h"

/* llama_ftype values of the presets mixed here */
enum {
    FT_Q2_K = 10,
    FT_Q3_K_S = 11,
    FT_Q3_K_M = 12,
    FT_Q3_K_L = 13,
    FT_Q4_K_S = 14,
    FT_Q4_K_M = 15,
    FT_Q5_K_S = 16,
    FT_Q5_K_M = 17,
    FT_Q6_K = 18,
};

bool nm_mkmodel_is_mix(uint32_t ftype) {
    return ftype >= FT_Q2_K && ftype <= FT_Q6_K;
}

/* The layers that get more bits: the first and last eighth, and every third
 * one in between. */
static bool use_more_bits(uint32_t i, uint32_t n) {
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

static uint32_t attn_v_type(uint32_t ft, uint32_t t, uint32_t i, const nm_mkmodel_shape *s) {
    uint32_t gqa = s->n_head / s->n_head_kv;
    switch (ft) {
    case FT_Q2_K:
        t = gqa >= 4 ? NM_TYPE_Q4_K : NM_TYPE_Q3_K;
        break;
    case FT_Q3_K_M:
        t = i < 2 ? NM_TYPE_Q5_K : NM_TYPE_Q4_K;
        break;
    case FT_Q3_K_L:
        t = NM_TYPE_Q5_K;
        break;
    case FT_Q4_K_M:
    case FT_Q5_K_M:
        if (use_more_bits(i, s->n_layer))
            t = NM_TYPE_Q6_K;
        break;
    case FT_Q4_K_S:
        if (i < 4)
            t = NM_TYPE_Q5_K;
        break;
    }
    /* llama.cpp's 70B shape (80 blocks, grouped KV heads): 8 heads share
     * attn_v, which is small, so it gets more bits */
    if (s->n_layer == 80 && s->n_head != s->n_head_kv && (t == NM_TYPE_Q3_K || t == NM_TYPE_Q4_K))
        t = NM_TYPE_Q5_K;
    return t;
}

static uint32_t ffn_down_type(uint32_t ft, uint32_t t, uint32_t i, uint32_t n) {
    switch (ft) {
    case FT_Q2_K:
        return NM_TYPE_Q3_K;
    case FT_Q3_K_M:
        return i < n / 16 ? NM_TYPE_Q5_K : NM_TYPE_Q4_K;
    case FT_Q3_K_L:
        return NM_TYPE_Q5_K;
    case FT_Q4_K_M:
    case FT_Q5_K_M:
        return use_more_bits(i, n) ? NM_TYPE_Q6_K : t;
    case FT_Q4_K_S:
        return i < n / 8 ? NM_TYPE_Q5_K : t;
    }
    return t;
}

static uint32_t attn_output_type(uint32_t ft, uint32_t t) {
    switch (ft) {
    case FT_Q2_K:
        return NM_TYPE_Q3_K;
    case FT_Q3_K_M:
        return NM_TYPE_Q4_K;
    case FT_Q3_K_L:
        return NM_TYPE_Q5_K;
    }
    return t;
}

uint32_t nm_mkmodel_fallback(uint32_t t, uint64_t ncols) {
    if (ncols % nm_type_get(t)->block_size == 0)
        return t;
    switch (t) {
    case NM_TYPE_Q2_K:
    case NM_TYPE_Q3_K:
        t = NM_TYPE_Q4_0;
        break;
    case NM_TYPE_Q4_K:
        t = NM_TYPE_Q5_0;
        break;
    case NM_TYPE_Q5_K:
        t = NM_TYPE_Q5_1;
        break;
    case NM_TYPE_Q6_K:
        t = NM_TYPE_Q8_0;
        break;
    case NM_TYPE_IQ4_XS:
        t = NM_TYPE_IQ4_NL;
        break;
    default: /* none defined: nm_mkmodel_check refuses the shape */
        return t;
    }
    return ncols % nm_type_get(t)->block_size == 0 ? t : NM_TYPE_F16;
}

uint32_t nm_mkmodel_mix_type(uint32_t ftype, const nm_mkmodel_shape *s, nm_role role,
                             uint32_t layer, uint64_t ncols) {
    const nm_file_type *f = nm_file_type_get(ftype);
    uint32_t t = f->base;
    switch (role) {
    case NM_ROLE_OUTPUT:
        /* Q8_0 when the rows do not fit the base type's blocks */
        return ncols % nm_type_get(t)->block_size ? NM_TYPE_Q8_0 : NM_TYPE_Q6_K;
    case NM_ROLE_ATTN_V:
        t = attn_v_type(ftype, t, layer, s);
        break;
    case NM_ROLE_FFN_DOWN:
        t = ffn_down_type(ftype, t, layer, s->n_layer);
        break;
    case NM_ROLE_ATTN_OUT:
        t = attn_output_type(ftype, t);
        break;
    default:
        break;
    }
    return nm_mkmodel_fallback(t, ncols);
}
