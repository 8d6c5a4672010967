/* llama hyperparameters from GGUF metadata. Absent keys take llama.cpp's
 * defaults; anything numalm would compute wrongly (rope scaling, another
 * architecture, shapes that do not divide) is refused, naming the key. */
#include "llama_hparams.h"

#include "ggml_types.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Generous sanity bounds: far above any released model, low enough that the
 * products the planner and the KV cache compute cannot overflow. */
#define MAX_LAYERS 4096u
#define MAX_EMBD (1u << 20)
#define MAX_FF (1u << 22)
#define MAX_HEADS 65536u
#define MAX_CTX (1u << 28)

static int missing(const nm_gguf *g, const char *key, nm_error *err) {
    return nm_fail(err, "%s: key '%s' is missing", g->path, key);
}

/* One element of an integer array, widened; -1 when negative or not an
 * integer. */
static int arr_elem_u64(const nm_gguf_kv *kv, uint64_t i, uint64_t *out) {
    nm_gguf_kv e = nm_gguf_arr_elem(kv, i);
    switch (e.type) {
    case NM_GGUF_UINT8:
    case NM_GGUF_UINT16:
    case NM_GGUF_UINT32:
    case NM_GGUF_UINT64:
        *out = e.v.u64;
        return 0;
    case NM_GGUF_INT8:
    case NM_GGUF_INT16:
    case NM_GGUF_INT32:
    case NM_GGUF_INT64:
        if (e.v.i64 < 0)
            return -1;
        *out = (uint64_t)e.v.i64;
        return 0;
    default:
        return -1;
    }
}

/* llama.cpp lets head counts and feed-forward sizes be per-layer arrays.
 * numalm's graph has one value for all layers, so an array is accepted only
 * when every element is the same. */
static int get_uniform_u32(const nm_gguf *g, const char *key, uint32_t *out, nm_error *err) {
    const nm_gguf_kv *kv = nm_gguf_find(g, key);
    if (!kv || kv->type != NM_GGUF_ARRAY)
        return nm_gguf_get_u32(g, key, out, err);
    uint64_t first = 0, v = 0;
    if (kv->v.arr.count == 0)
        return nm_fail(err, "%s: key '%s' (at byte %llu) is an empty array", g->path, key,
                       (unsigned long long)kv->file_offset);
    for (uint64_t i = 0; i < kv->v.arr.count; i++) {
        if (arr_elem_u64(kv, i, &v) || v > UINT32_MAX)
            return nm_fail(err,
                           "%s: key '%s' (at byte %llu): element %llu is not an integer "
                           "in [0, 2^32)",
                           g->path, key, (unsigned long long)kv->file_offset,
                           (unsigned long long)i);
        if (i == 0)
            first = v;
        else if (v != first)
            return nm_fail(err,
                           "%s: key '%s' (at byte %llu): per-layer values that differ "
                           "(%llu, then %llu at layer %llu) are not supported yet",
                           g->path, key, (unsigned long long)kv->file_offset,
                           (unsigned long long)first, (unsigned long long)v, (unsigned long long)i);
    }
    *out = (uint32_t)first;
    return 1;
}

/* Reads ARCH.suffix into *out, in [1, max]; def is used when absent and
 * nonzero, otherwise the key is required. */
static int get_dim(const nm_gguf *g, const char *arch, const char *suffix, uint32_t def,
                   uint32_t max, uint32_t *out, nm_error *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int rc = get_uniform_u32(g, key, out, err);
    if (rc < 0)
        return -1;
    if (rc == 0) {
        if (!def)
            return missing(g, key, err);
        *out = def;
        return 0;
    }
    if (*out < 1 || *out > max) {
        const nm_gguf_kv *kv = nm_gguf_find(g, key);
        return nm_fail(err, "%s: key '%s' (at byte %llu) is %u; expected 1 to %u", g->path, key,
                       (unsigned long long)kv->file_offset, *out, max);
    }
    return 0;
}

static int get_positive_f32(const nm_gguf *g, const char *arch, const char *suffix, float def,
                            float *out, nm_error *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int rc = nm_gguf_get_f32(g, key, out, err);
    if (rc < 0)
        return -1;
    if (rc == 0)
        *out = def;
    else if (!isfinite(*out) || *out <= 0)
        return nm_fail(err, "%s: key '%s' (at byte %llu) is %g; expected a positive number",
                       g->path, key, (unsigned long long)nm_gguf_find(g, key)->file_offset,
                       (double)*out);
    return 0;
}

static int read_arch(const nm_gguf *g, nm_llama_hparams *hp, bool strict, nm_error *err) {
    const char *arch = NULL;
    int rc = nm_gguf_get_str(g, "general.architecture", &arch, err);
    if (rc < 0)
        return -1;
    if (rc == 0)
        return missing(g, "general.architecture", err);
    if (strict && strcmp(arch, "llama"))
        return nm_fail(err,
                       "%s: key 'general.architecture': architecture '%.64s' is not "
                       "supported yet (numalm runs 'llama')",
                       g->path, arch);
    if (strlen(arch) >= sizeof hp->arch || !arch[0])
        return nm_fail(err,
                       "%s: key 'general.architecture': '%.64s' is not a valid "
                       "architecture name",
                       g->path, arch);
    snprintf(hp->arch, sizeof hp->arch, "%s", arch);
    return 0;
}

/* numalm applies plain RoPE; a file that asks for scaled positions would run
 * but give wrong logits, so it is refused by key. A factor of 0 or 1 is
 * llama.cpp's "no scaling" and passes. */
static int check_rope_scaling(const nm_gguf *g, const char *arch, nm_error *err) {
    char key[128];
    const char *type = NULL;
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    int rc = nm_gguf_get_str(g, key, &type, err);
    if (rc < 0)
        return -1;
    if (rc == 1 && strcmp(type, "none"))
        return nm_fail(err,
                       "%s: key '%s' (at byte %llu) is '%.64s': rope scaling is not "
                       "supported yet",
                       g->path, key, (unsigned long long)nm_gguf_find(g, key)->file_offset, type);
    static const char *const FACTORS[] = {"rope.scale_linear", "rope.scaling.factor",
                                          "rope.scaling.attn_factor"};
    for (size_t i = 0; i < sizeof FACTORS / sizeof FACTORS[0]; i++) {
        float f;
        snprintf(key, sizeof key, "%s.%s", arch, FACTORS[i]);
        rc = nm_gguf_get_f32(g, key, &f, err);
        if (rc < 0)
            return -1;
        if (rc == 1 && f != 0.0f && f != 1.0f)
            return nm_fail(err,
                           "%s: key '%s' (at byte %llu) is %g: rope scaling is not "
                           "supported yet",
                           g->path, key, (unsigned long long)nm_gguf_find(g, key)->file_offset,
                           (double)f);
    }
    return 0;
}

static int read_n_vocab(const nm_gguf *g, nm_llama_hparams *hp, nm_error *err) {
    uint64_t count = 0;
    const void *data;
    int rc = nm_gguf_get_arr(g, "tokenizer.ggml.tokens", NM_GGUF_STRING, &count, &data, err);
    if (rc < 0)
        return -1;
    if (rc == 0) {
        const nm_gguf_tensor *t = nm_gguf_find_tensor(g, "token_embd.weight");
        if (!t)
            return nm_fail(err,
                           "%s: neither key 'tokenizer.ggml.tokens' nor tensor "
                           "'token_embd.weight' is present: the vocabulary size is unknown",
                           g->path);
        count = t->ne[1];
    }
    if (count < 1 || count > INT32_MAX)
        return nm_fail(err, "%s: vocabulary of %llu tokens (from %s) is not in [1, 2^31)", g->path,
                       (unsigned long long)count,
                       rc ? "key 'tokenizer.ggml.tokens'" : "tensor 'token_embd.weight'");
    hp->n_vocab = (uint32_t)count;
    return 0;
}

static int check_divisibility(const nm_gguf *g, nm_llama_hparams *hp, nm_error *err) {
    const char *a = hp->arch;
    if (hp->n_embd % hp->n_head)
        return nm_fail(err,
                       "%s: %s.embedding_length %u is not a multiple of "
                       "%s.attention.head_count %u",
                       g->path, a, hp->n_embd, a, hp->n_head);
    if (hp->n_head_kv > hp->n_head || hp->n_head % hp->n_head_kv)
        return nm_fail(err,
                       "%s: %s.attention.head_count %u is not a multiple of "
                       "%s.attention.head_count_kv %u",
                       g->path, a, hp->n_head, a, hp->n_head_kv);
    hp->head_dim = hp->n_embd / hp->n_head;
    return 0;
}

int nm_llama_hparams_read(const nm_gguf *g, nm_llama_hparams *hp, bool strict, nm_error *err) {
    memset(hp, 0, sizeof *hp);
    if (read_arch(g, hp, strict, err))
        return -1;
    const char *a = hp->arch;
    if (get_dim(g, a, "block_count", 0, MAX_LAYERS, &hp->n_layer, err) ||
        get_dim(g, a, "embedding_length", 0, MAX_EMBD, &hp->n_embd, err) ||
        get_dim(g, a, "feed_forward_length", 0, MAX_FF, &hp->n_ff, err) ||
        get_dim(g, a, "attention.head_count", 0, MAX_HEADS, &hp->n_head, err) ||
        get_dim(g, a, "attention.head_count_kv", hp->n_head, MAX_HEADS, &hp->n_head_kv, err) ||
        get_dim(g, a, "context_length", 0, MAX_CTX, &hp->n_ctx_train, err))
        return -1;
    if (check_divisibility(g, hp, err))
        return -1;
    if (get_dim(g, a, "rope.dimension_count", hp->head_dim, MAX_EMBD, &hp->n_rot, err))
        return -1;
    if (hp->n_rot > hp->head_dim || hp->n_rot % 2)
        return nm_fail(err,
                       "%s: key '%s.rope.dimension_count' is %u; expected an even number "
                       "no larger than the head dimension %u",
                       g->path, a, hp->n_rot, hp->head_dim);
    if (get_positive_f32(g, a, "rope.freq_base", 10000.0f, &hp->rope_freq_base, err) ||
        get_positive_f32(g, a, "attention.layer_norm_rms_epsilon", 1e-5f, &hp->rms_eps, err))
        return -1;
    if (strict && check_rope_scaling(g, a, err))
        return -1;
    return read_n_vocab(g, hp, err);
}

/* ---- tensors ---- */

/* Checks one tensor against [ne0, ne1] (ne1 = 0: a vector). Returns 1 when
 * present and right, 0 when absent and optional. */
static int check_tensor(const nm_gguf *g, const char *name, uint64_t ne0, uint64_t ne1,
                        bool optional, nm_error *err) {
    const nm_gguf_tensor *t = nm_gguf_find_tensor(g, name);
    if (!t) {
        if (optional)
            return 0;
        return nm_fail(err, "%s: tensor '%s' is missing; the llama graph needs it", g->path, name);
    }
    uint64_t want[NM_GGUF_MAX_DIMS] = {ne0, ne1 ? ne1 : 1, 1, 1};
    if (memcmp(want, t->ne, sizeof want))
        return nm_fail(err,
                       "%s: tensor '%s' (info at byte %llu) has shape [%llu, %llu, %llu, "
                       "%llu]; expected [%llu, %llu, 1, 1] from the hyperparameters",
                       g->path, name, (unsigned long long)t->info_offset,
                       (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
                       (unsigned long long)t->ne[2], (unsigned long long)t->ne[3],
                       (unsigned long long)want[0], (unsigned long long)want[1]);
    const nm_type_info *ti = nm_type_get(t->type); /* known: the reader checked */
    if (ne1 && !nm_type_computes(t->type))
        return nm_fail(err, "%s: tensor '%s' has type %s, which is not supported yet", g->path,
                       name, ti->name);
    /* norm weights are read as plain floats; llama.cpp always writes them F32 */
    if (!ne1 && t->type != NM_TYPE_F32)
        return nm_fail(err,
                       "%s: tensor '%s' has type %s; numalm supports only F32 norm "
                       "weights yet",
                       g->path, name, ti->name);
    return 1;
}

static int check_block(const nm_gguf *g, const nm_llama_hparams *hp, uint32_t layer,
                       nm_error *err) {
    uint64_t e = hp->n_embd, kv = (uint64_t)hp->n_head_kv * hp->head_dim, ff = hp->n_ff;
    static const char *const SUFFIX[] = {"attn_norm", "attn_q",      "attn_k",
                                         "attn_v",    "attn_output", "ffn_norm",
                                         "ffn_gate",  "ffn_up",      "ffn_down"};
    const uint64_t shape[][2] = {{e, 0}, {e, e},  {e, kv}, {e, kv}, {e, e},
                                 {e, 0}, {e, ff}, {e, ff}, {ff, e}};
    for (size_t i = 0; i < sizeof SUFFIX / sizeof SUFFIX[0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "blk.%u.%s.weight", layer, SUFFIX[i]);
        if (check_tensor(g, name, shape[i][0], shape[i][1], false, err) < 0)
            return -1;
    }
    return 0;
}

int nm_llama_check_tensors(const nm_gguf *g, const nm_llama_hparams *hp, nm_error *err) {
    if (check_tensor(g, "token_embd.weight", hp->n_embd, hp->n_vocab, false, err) < 0 ||
        check_tensor(g, "output_norm.weight", hp->n_embd, 0, false, err) < 0 ||
        check_tensor(g, "output.weight", hp->n_embd, hp->n_vocab, true, err) < 0)
        return -1;
    /* Llama 3.1-style rope scaling ships as a tensor of frequency factors. */
    const nm_gguf_tensor *rf = nm_gguf_find_tensor(g, "rope_freqs.weight");
    if (rf)
        return nm_fail(err,
                       "%s: tensor 'rope_freqs.weight' (info at byte %llu): rope "
                       "frequency scaling is not supported yet",
                       g->path, (unsigned long long)rf->info_offset);
    for (uint32_t l = 0; l < hp->n_layer; l++)
        if (check_block(g, hp, l, err))
            return -1;
    return 0;
}
