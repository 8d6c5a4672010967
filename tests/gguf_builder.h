/* A tiny in-memory GGUF writer for tests and fuzz seeds. It writes exactly
 * the bytes it is told to, so tests can also write broken files. */
#ifndef NM_TEST_GGUF_BUILDER_H
#define NM_TEST_GGUF_BUILDER_H

#include "common/util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct gb {
    unsigned char *p;
    size_t n, cap;
} gb;

static inline void gb_bytes(gb *b, const void *src, size_t n) {
    if (!(b->p = nm_grow(b->p, &b->cap, b->n + n, 256, 1)))
        abort();
    if (n)
        memcpy(b->p + b->n, src, n);
    b->n += n;
}

static inline void gb_free(gb *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

static inline void gb_u8(gb *b, uint8_t v) {
    gb_bytes(b, &v, 1);
}
static inline void gb_u16(gb *b, uint16_t v) {
    gb_bytes(b, &v, 2);
}
static inline void gb_u32(gb *b, uint32_t v) {
    gb_bytes(b, &v, 4);
}
static inline void gb_u64(gb *b, uint64_t v) {
    gb_bytes(b, &v, 8);
}
static inline void gb_f32(gb *b, float v) {
    gb_bytes(b, &v, 4);
}
static inline void gb_f64(gb *b, double v) {
    gb_bytes(b, &v, 8);
}

static inline void gb_strn(gb *b, const char *s, size_t n) {
    gb_u64(b, n);
    gb_bytes(b, s, n);
}
static inline void gb_str(gb *b, const char *s) {
    gb_strn(b, s, strlen(s));
}

static inline void gb_header(gb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    gb_bytes(b, "GGUF", 4);
    gb_u32(b, version);
    gb_u64(b, n_tensors);
    gb_u64(b, n_kv);
}

/* value types, as in the spec */
enum {
    GB_U8,
    GB_I8,
    GB_U16,
    GB_I16,
    GB_U32,
    GB_I32,
    GB_F32,
    GB_BOOL,
    GB_STR,
    GB_ARR,
    GB_U64,
    GB_I64,
    GB_F64
};

static inline void gb_key(gb *b, const char *key, uint32_t type) {
    gb_str(b, key);
    gb_u32(b, type);
}
static inline void gb_kv_u32(gb *b, const char *key, uint32_t v) {
    gb_key(b, key, GB_U32);
    gb_u32(b, v);
}
static inline void gb_kv_f32(gb *b, const char *key, float v) {
    gb_key(b, key, GB_F32);
    gb_f32(b, v);
}
static inline void gb_kv_str(gb *b, const char *key, const char *v) {
    gb_key(b, key, GB_STR);
    gb_str(b, v);
}
static inline void gb_kv_arr_header(gb *b, const char *key, uint32_t elem_type, uint64_t count) {
    gb_key(b, key, GB_ARR);
    gb_u32(b, elem_type);
    gb_u64(b, count);
}

static inline void gb_tensor_info(gb *b, const char *name, uint32_t n_dims, const uint64_t *ne,
                                  uint32_t type, uint64_t offset) {
    gb_str(b, name);
    gb_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++)
        gb_u64(b, ne[d]);
    gb_u32(b, type);
    gb_u64(b, offset);
}

static inline void gb_zeros(gb *b, size_t n) {
    static const unsigned char z[256];
    while (n) {
        size_t k = n < sizeof z ? n : sizeof z;
        gb_bytes(b, z, k);
        n -= k;
    }
}

static inline void gb_pad(gb *b, size_t align) {
    gb_zeros(b, (align - b->n % align) % align);
}

/* ---- a complete, valid tiny llama ---- */

typedef struct gb_llama {
    uint32_t version;   /* 2 or 3 */
    uint32_t alignment; /* 0: no general.alignment key (32) */
    uint32_t n_layer, n_embd, n_ff, n_head, n_head_kv, n_vocab;
    uint32_t matrix_type; /* 0 = F32, 8 = Q8_0, ... */
    int with_tokens;      /* write tokenizer.ggml.tokens */
    int with_output;      /* write output.weight (else tied) */
    const char *arch;
    const char *extra_key; /* optional extra kv: string value */
    const char *extra_val;
    uint32_t key_length;      /* ARCH.attention.key_length/value_length; 0: absent */
    int qk_norm;              /* write attn_q_norm / attn_k_norm */
    int qkv_bias;             /* write attn_q/k/v.bias */
    const char *extra_tensor; /* an extra F32 vector of n_embd values */
} gb_llama;

static inline gb_llama gb_llama_default(void) {
    gb_llama o = {3, 0, 2, 32, 64, 4, 2, 40, 0, 1, 1, "llama", NULL, NULL, 0, 0, 0, NULL};
    return o;
}

#define GB_LLAMA_MAX_TENSORS(o) (4 + 14 * (size_t)(o)->n_layer)

typedef struct gb_tensor {
    char name[64];
    uint32_t n_dims;
    uint64_t ne[2];
    uint32_t type;
    uint64_t nbytes;
} gb_tensor;

static inline uint64_t gb_nbytes(uint32_t type, uint64_t ne0, uint64_t ne1) {
    switch (type) {
    case 0:
        return ne0 * ne1 * 4; /* F32 */
    case 1:
    case 30:
        return ne0 * ne1 * 2; /* F16, BF16 */
    case 2:
        return ne0 / 32 * 18 * ne1; /* Q4_0 */
    case 8:
        return ne0 / 32 * 34 * ne1; /* Q8_0 */
    case 13:
        return ne0 / 256 * 176 * ne1; /* Q5_K */
    case 16:
        return ne0 / 256 * 66 * ne1; /* IQ2_XXS */
    default:
        abort();
    }
}

static inline int gb_llama_tensors(const gb_llama *o, gb_tensor *t) {
    int n = 0;
    uint64_t e = o->n_embd, ff = o->n_ff;
    uint64_t hd = o->key_length ? o->key_length : o->n_embd / o->n_head;
    uint64_t q = hd * o->n_head, kv = hd * o->n_head_kv;
#define GB_T(nm, d0, d1, ty)                                                                       \
    do {                                                                                           \
        snprintf(t[n].name, sizeof t[n].name, "%s", nm);                                           \
        t[n].n_dims = (d1) ? 2 : 1;                                                                \
        t[n].ne[0] = d0;                                                                           \
        t[n].ne[1] = (d1) ? (d1) : 1;                                                              \
        t[n].type = ty;                                                                            \
        t[n].nbytes = gb_nbytes(ty, d0, t[n].ne[1]);                                               \
        n++;                                                                                       \
    } while (0)
    GB_T("token_embd.weight", e, o->n_vocab, o->matrix_type);
    GB_T("output_norm.weight", e, 0, 0);
    if (o->with_output)
        GB_T("output.weight", e, o->n_vocab, o->matrix_type);
    if (o->extra_tensor)
        GB_T(o->extra_tensor, e, 0, 0);
    for (uint32_t l = 0; l < o->n_layer; l++) {
        static const char *const sfx[] = {
            "attn_norm.weight",   "attn_q.weight",      "attn_k.weight",      "attn_v.weight",
            "attn_output.weight", "ffn_norm.weight",    "ffn_gate.weight",    "ffn_up.weight",
            "ffn_down.weight",    "attn_q_norm.weight", "attn_k_norm.weight", "attn_q.bias",
            "attn_k.bias",        "attn_v.bias"};
        const uint64_t sh[][2] = {{e, 0},  {e, q},  {e, kv}, {e, kv}, {q, e}, {e, 0},  {e, ff},
                                  {e, ff}, {ff, e}, {hd, 0}, {hd, 0}, {q, 0}, {kv, 0}, {kv, 0}};
        for (int i = 0; i < 14; i++) {
            if ((i == 9 || i == 10) && !o->qk_norm)
                continue;
            if (i >= 11 && !o->qkv_bias)
                continue;
            char name[64];
            snprintf(name, sizeof name, "blk.%u.%s", l, sfx[i]);
            GB_T(name, sh[i][0], sh[i][1], sh[i][1] ? o->matrix_type : 0);
        }
    }
#undef GB_T
    return n;
}

/* Writes the file; data bytes hold a pattern so that offsets matter. */
static inline void gb_write_llama(gb *b, const gb_llama *o) {
    gb_tensor *t = calloc(GB_LLAMA_MAX_TENSORS(o), sizeof *t);
    int nt = gb_llama_tensors(o, t);
    uint32_t align = o->alignment ? o->alignment : 32;
    int n_kv = 8 + (o->alignment != 0) + (o->with_tokens != 0) + (o->extra_key != NULL) +
               2 * (o->key_length != 0);
    gb_header(b, o->version, (uint64_t)nt, (uint64_t)n_kv);
    gb_kv_str(b, "general.architecture", o->arch);
    char key[128];
#define GB_AK(sfx) (snprintf(key, sizeof key, "%s.%s", o->arch, sfx), key)
    gb_kv_u32(b, GB_AK("block_count"), o->n_layer);
    gb_kv_u32(b, GB_AK("embedding_length"), o->n_embd);
    gb_kv_u32(b, GB_AK("feed_forward_length"), o->n_ff);
    gb_kv_u32(b, GB_AK("attention.head_count"), o->n_head);
    gb_kv_u32(b, GB_AK("attention.head_count_kv"), o->n_head_kv);
    gb_kv_u32(b, GB_AK("context_length"), 128);
    gb_kv_f32(b, GB_AK("attention.layer_norm_rms_epsilon"), 1e-5f);
    if (o->key_length) {
        gb_kv_u32(b, GB_AK("attention.key_length"), o->key_length);
        gb_kv_u32(b, GB_AK("attention.value_length"), o->key_length);
    }
#undef GB_AK
    if (o->alignment)
        gb_kv_u32(b, "general.alignment", o->alignment);
    if (o->with_tokens) {
        gb_kv_arr_header(b, "tokenizer.ggml.tokens", GB_STR, o->n_vocab);
        for (uint32_t i = 0; i < o->n_vocab; i++) {
            char tok[16];
            snprintf(tok, sizeof tok, "t%u", i);
            gb_str(b, tok);
        }
    }
    if (o->extra_key)
        gb_kv_str(b, o->extra_key, o->extra_val);
    uint64_t off = 0;
    for (int i = 0; i < nt; i++) {
        gb_tensor_info(b, t[i].name, t[i].n_dims, t[i].ne, t[i].type, off);
        off += (t[i].nbytes + align - 1) / align * align;
    }
    gb_pad(b, align);
    for (int i = 0; i < nt; i++) {
        for (uint64_t k = 0; k < t[i].nbytes; k++)
            gb_u8(b, (uint8_t)(i * 7 + k));
        gb_pad(b, align);
    }
    free(t);
}

#endif
