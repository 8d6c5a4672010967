/* Hyperparameters of the llama family from GGUF metadata. Absent keys take
 * llama.cpp's defaults (llama-model.cpp, load_hparams and each
 * architecture's load_arch_hparams); anything numalm would compute wrongly
 * (another architecture, YaRN or LongRoPE, shapes that do not divide) is
 * refused, naming the key. */
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
#define MAX_EXPERTS 512u /* llama.cpp's LLAMA_MAX_EXPERTS */

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

/* ---- architectures ---- */

static const struct arch_info {
    const char *name;
    nm_arch id;
    nm_rope_type rope; /* llama.cpp's llama_model_rope_type() */
    bool runs;         /* the forward pass computes it */
} ARCHS[] = {
    {"llama", NM_ARCH_LLAMA, NM_ROPE_NORM, true},
    {"qwen2", NM_ARCH_QWEN2, NM_ROPE_NEOX, true},
    {"qwen3", NM_ARCH_QWEN3, NM_ROPE_NEOX, true},
    {"qwen3moe", NM_ARCH_QWEN3MOE, NM_ROPE_NEOX, true},
};

/* Mixture-of-experts architectures users ask about; docs/design.md says
 * what each would take. */
static const char *const OTHER_MOE[] = {"deepseek2", "gpt-oss", "qwen2moe", "mixtral"};

static int read_arch(const nm_gguf *g, nm_llama_hparams *hp, bool strict, nm_error *err) {
    const char *arch = NULL;
    int rc = nm_gguf_get_str(g, "general.architecture", &arch, err);
    if (rc < 0)
        return -1;
    if (rc == 0)
        return missing(g, "general.architecture", err);
    if (strlen(arch) >= sizeof hp->arch || !arch[0])
        return nm_fail(err,
                       "%s: key 'general.architecture': '%.64s' is not a valid "
                       "architecture name",
                       g->path, arch);
    snprintf(hp->arch, sizeof hp->arch, "%s", arch);
    hp->arch_id = NM_ARCH_OTHER;
    hp->rope_type = NM_ROPE_NORM;
    bool runs = false;
    for (size_t i = 0; i < sizeof ARCHS / sizeof ARCHS[0]; i++)
        if (!strcmp(arch, ARCHS[i].name)) {
            hp->arch_id = ARCHS[i].id;
            hp->rope_type = ARCHS[i].rope;
            runs = ARCHS[i].runs;
        }
    if (!strict || runs)
        return 0;
    const char *kind = "";
    for (size_t i = 0; i < sizeof OTHER_MOE / sizeof OTHER_MOE[0]; i++)
        if (!strcmp(arch, OTHER_MOE[i]))
            kind = " (a mixture of experts: docs/design.md says what it would take)";
    return nm_fail(err,
                   "%s: key 'general.architecture': architecture '%.64s' is not "
                   "supported yet%s; numalm runs llama, qwen2, qwen3 and qwen3moe",
                   g->path, arch, kind);
}

/* Rope scaling as llama.cpp reads it: ARCH.rope.scaling.type (default
 * "linear"), the factor from rope.scaling.factor or the older
 * rope.scale_linear (0 or absent: none), rope.scaling.attn_factor (1).
 * Linear scaling is a factor on the positions and numalm applies it; YaRN
 * and LongRoPE change the frequencies per dimension and are refused by
 * name. Llama 3.1's scaling is a tensor (rope_freqs.weight), not a key. */
static int read_rope_scaling(const nm_gguf *g, nm_llama_hparams *hp, bool strict, nm_error *err) {
    const char *a = hp->arch, *type = "linear";
    char key[128];
    hp->rope_freq_scale = 1.0f;
    hp->rope_attn_factor = 1.0f;
    snprintf(key, sizeof key, "%s.rope.scaling.type", a);
    int rc = nm_gguf_get_str(g, key, &type, err);
    if (rc < 0)
        return -1;
    if (strict && strcmp(type, "none") && strcmp(type, "linear"))
        return nm_fail(err,
                       "%s: key '%s' (at byte %llu) is '%.64s': %s rope scaling is not "
                       "supported yet (numalm applies none and linear)",
                       g->path, key, (unsigned long long)nm_gguf_find(g, key)->file_offset, type,
                       strcmp(type, "yarn") && strcmp(type, "longrope") ? "this" : type);
    static const char *const FACTORS[] = {"rope.scaling.factor", "rope.scale_linear",
                                          "rope.scaling.attn_factor"};
    float v[3] = {0.0f, 0.0f, 1.0f};
    bool found_factor = false;
    for (size_t i = 0; i < 3; i++) {
        if (i == 1 && found_factor)
            continue; /* the newer key wins, as in llama.cpp */
        snprintf(key, sizeof key, "%s.%s", a, FACTORS[i]);
        rc = nm_gguf_get_f32(g, key, &v[i], err);
        if (rc < 0)
            return -1;
        found_factor |= i == 0 && rc == 1;
        if (rc == 1 && (!isfinite(v[i]) || v[i] < 0 || (i == 2 && v[i] == 0)))
            return nm_fail(err, "%s: key '%s' (at byte %llu) is %g; expected a positive number",
                           g->path, key, (unsigned long long)nm_gguf_find(g, key)->file_offset,
                           (double)v[i]);
    }
    float factor = found_factor ? v[0] : v[1];
    if (strcmp(type, "none") && factor != 0.0f)
        hp->rope_freq_scale = 1.0f / factor;
    hp->rope_attn_factor = v[2];
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

/* Head counts, then the head size: attention.key_length and value_length
 * default to embedding / heads (llama.cpp); every graph numalm runs uses one
 * size for both. */
static int read_heads(const nm_gguf *g, nm_llama_hparams *hp, nm_error *err) {
    const char *a = hp->arch;
    if (hp->n_head_kv > hp->n_head || hp->n_head % hp->n_head_kv)
        return nm_fail(err,
                       "%s: %s.attention.head_count %u is not a multiple of "
                       "%s.attention.head_count_kv %u",
                       g->path, a, hp->n_head, a, hp->n_head_kv);
    uint32_t def = hp->n_embd / hp->n_head, v_len = 0;
    char key[128];
    snprintf(key, sizeof key, "%s.attention.key_length", a);
    bool have_key = nm_gguf_find(g, key) != NULL;
    if (!have_key && hp->n_embd % hp->n_head)
        return nm_fail(err,
                       "%s: %s.embedding_length %u is not a multiple of "
                       "%s.attention.head_count %u (and %s is absent)",
                       g->path, a, hp->n_embd, a, hp->n_head, key);
    if (get_dim(g, a, "attention.key_length", def, MAX_EMBD, &hp->head_dim, err) ||
        get_dim(g, a, "attention.value_length", def, MAX_EMBD, &v_len, err))
        return -1;
    if (v_len != hp->head_dim)
        return nm_fail(err,
                       "%s: %s.attention.value_length %u differs from key_length %u; "
                       "not supported (llama.cpp's graphs for this architecture need them "
                       "equal)",
                       g->path, a, v_len, hp->head_dim);
    if (hp->arch_id == NM_ARCH_QWEN2 && (uint64_t)hp->head_dim * hp->n_head != hp->n_embd)
        return nm_fail(err,
                       "%s: qwen2 with head size %u x %u heads != embedding %u: llama.cpp's "
                       "qwen2 graph needs them equal",
                       g->path, hp->head_dim, hp->n_head, hp->n_embd);
    return 0;
}

/* llama.cpp requires rope.dimension_count == key_length for llama and
 * asserts it in the qwen2/qwen3/qwen3moe graphs: every dimension rotates. */
static int read_rope(const nm_gguf *g, nm_llama_hparams *hp, bool strict, nm_error *err) {
    const char *a = hp->arch;
    if (get_dim(g, a, "rope.dimension_count", hp->head_dim, MAX_EMBD, &hp->n_rot, err))
        return -1;
    if (hp->n_rot > hp->head_dim || hp->n_rot % 2 || (strict && hp->n_rot != hp->head_dim))
        return nm_fail(err,
                       "%s: key '%s.rope.dimension_count' is %u; expected %s the head size "
                       "%u (attention.key_length)",
                       g->path, a, hp->n_rot, strict ? "equal to" : "an even number up to",
                       hp->head_dim);
    if (get_positive_f32(g, a, "rope.freq_base", 10000.0f, &hp->rope_freq_base, err))
        return -1;
    return read_rope_scaling(g, hp, strict, err);
}

/* Experts: qwen3moe needs them; llama.cpp's llama graph has a Mixtral-style
 * MoE branch that numalm does not run yet, and other architectures here have
 * none. */
static int read_experts(const nm_gguf *g, nm_llama_hparams *hp, bool strict, nm_error *err) {
    const char *a = hp->arch;
    char key[128];
    snprintf(key, sizeof key, "%s.expert_count", a);
    int rc = get_uniform_u32(g, key, &hp->n_expert, err);
    if (rc < 0)
        return -1;
    bool moe = hp->arch_id == NM_ARCH_QWEN3MOE;
    if (rc == 0 || hp->n_expert == 0) {
        hp->n_expert = 0;
        if (moe && strict)
            return missing(g, key, err);
        return 0;
    }
    if (strict && !moe)
        return nm_fail(err,
                       "%s: key '%s' is %u: %s with experts (a Mixtral-style mixture) is not "
                       "supported yet",
                       g->path, key, hp->n_expert, a);
    if (get_dim(g, a, "expert_count", 0, MAX_EXPERTS, &hp->n_expert, err) ||
        get_dim(g, a, "expert_used_count", 0, hp->n_expert, &hp->n_expert_used, err))
        return -1;
    uint32_t groups = 0;
    snprintf(key, sizeof key, "%s.expert_group_count", a);
    if (get_uniform_u32(g, key, &groups, err) < 0)
        return -1;
    if (strict && groups > 1)
        return nm_fail(err, "%s: key '%s' is %u: grouped expert selection is not supported yet",
                       g->path, key, groups);
    uint32_t def = hp->n_ff / hp->n_expert_used;
    return get_dim(g, a, "expert_feed_forward_length", def, MAX_FF, &hp->n_ff_exp, err);
}

/* feed_forward_length sizes the dense FFN; a qwen3moe file has only experts
 * and may leave it out (0). */
static int read_n_ff(const nm_gguf *g, nm_llama_hparams *hp, nm_error *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.feed_forward_length", hp->arch);
    if (hp->arch_id == NM_ARCH_QWEN3MOE && !nm_gguf_find(g, key)) {
        hp->n_ff = 0;
        return 0;
    }
    return get_dim(g, hp->arch, "feed_forward_length", 0, MAX_FF, &hp->n_ff, err);
}

int nm_llama_hparams_read(const nm_gguf *g, nm_llama_hparams *hp, bool strict, nm_error *err) {
    memset(hp, 0, sizeof *hp);
    if (read_arch(g, hp, strict, err))
        return -1;
    const char *a = hp->arch;
    if (get_dim(g, a, "block_count", 0, MAX_LAYERS, &hp->n_layer, err) ||
        get_dim(g, a, "embedding_length", 0, MAX_EMBD, &hp->n_embd, err) || read_n_ff(g, hp, err) ||
        get_dim(g, a, "attention.head_count", 0, MAX_HEADS, &hp->n_head, err) ||
        get_dim(g, a, "attention.head_count_kv", hp->n_head, MAX_HEADS, &hp->n_head_kv, err) ||
        get_dim(g, a, "context_length", 0, MAX_CTX, &hp->n_ctx_train, err))
        return -1;
    if (read_heads(g, hp, err) || read_rope(g, hp, strict, err) ||
        get_positive_f32(g, a, "attention.layer_norm_rms_epsilon", 1e-5f, &hp->rms_eps, err) ||
        read_experts(g, hp, strict, err))
        return -1;
    return read_n_vocab(g, hp, err);
}

/* ---- tensors ---- */

/* Which architectures read each block tensor, from llama.cpp's
 * load_arch_tensors: create_tensor_qkv gives every architecture optional
 * Q/K/V biases; llama alone has optional output and FFN biases. */
enum { NO = 0, OPT = 1, REQ = 2 };
static const struct blk_info {
    const char *suffix;
    uint8_t use[5]; /* by nm_arch: other, llama, qwen2, qwen3, qwen3moe */
} BLK[NM_BLK_COUNT] = {
    [NM_BLK_ATTN_NORM] = {"attn_norm.weight", {NO, REQ, REQ, REQ, REQ}},
    [NM_BLK_Q] = {"attn_q.weight", {NO, REQ, REQ, REQ, REQ}},
    [NM_BLK_K] = {"attn_k.weight", {NO, REQ, REQ, REQ, REQ}},
    [NM_BLK_V] = {"attn_v.weight", {NO, REQ, REQ, REQ, REQ}},
    [NM_BLK_Q_BIAS] = {"attn_q.bias", {NO, OPT, OPT, OPT, OPT}},
    [NM_BLK_K_BIAS] = {"attn_k.bias", {NO, OPT, OPT, OPT, OPT}},
    [NM_BLK_V_BIAS] = {"attn_v.bias", {NO, OPT, OPT, OPT, OPT}},
    [NM_BLK_Q_NORM] = {"attn_q_norm.weight", {NO, NO, NO, REQ, REQ}},
    [NM_BLK_K_NORM] = {"attn_k_norm.weight", {NO, NO, NO, REQ, REQ}},
    [NM_BLK_O] = {"attn_output.weight", {NO, REQ, REQ, REQ, REQ}},
    [NM_BLK_O_BIAS] = {"attn_output.bias", {NO, OPT, NO, NO, NO}},
    [NM_BLK_FFN_NORM] = {"ffn_norm.weight", {NO, REQ, REQ, REQ, REQ}},
    [NM_BLK_GATE] = {"ffn_gate.weight", {NO, REQ, REQ, REQ, NO}},
    [NM_BLK_UP] = {"ffn_up.weight", {NO, REQ, REQ, REQ, NO}},
    [NM_BLK_DOWN] = {"ffn_down.weight", {NO, REQ, REQ, REQ, NO}},
    [NM_BLK_GATE_BIAS] = {"ffn_gate.bias", {NO, OPT, NO, NO, NO}},
    [NM_BLK_UP_BIAS] = {"ffn_up.bias", {NO, OPT, NO, NO, NO}},
    [NM_BLK_DOWN_BIAS] = {"ffn_down.bias", {NO, OPT, NO, NO, NO}},
    [NM_BLK_ROUTER] = {"ffn_gate_inp.weight", {NO, NO, NO, NO, REQ}},
    [NM_BLK_GATE_EXPS] = {"ffn_gate_exps.weight", {NO, NO, NO, NO, REQ}},
    [NM_BLK_UP_EXPS] = {"ffn_up_exps.weight", {NO, NO, NO, NO, REQ}},
    [NM_BLK_DOWN_EXPS] = {"ffn_down_exps.weight", {NO, NO, NO, NO, REQ}},
};

const char *nm_blk_tensor_suffix(nm_blk_tensor k) {
    return (unsigned)k < NM_BLK_COUNT ? BLK[k].suffix : "?";
}

int nm_blk_tensor_use(const nm_llama_hparams *hp, nm_blk_tensor k) {
    return (unsigned)k < NM_BLK_COUNT ? BLK[k].use[hp->arch_id] : NO;
}

int nm_blk_tensor_parse(const char *name, int *layer) {
    int l, n = 0;
    if (sscanf(name, "blk.%d.%n", &l, &n) != 1 || n == 0 || l < 0)
        return -1;
    for (int k = 0; k < NM_BLK_COUNT; k++)
        if (!strcmp(name + n, BLK[k].suffix)) {
            *layer = l;
            return k;
        }
    return -1;
}

void nm_blk_tensor_shape(const nm_llama_hparams *hp, nm_blk_tensor k, uint64_t ne[3]) {
    const uint64_t e = hp->n_embd, hd = hp->head_dim, q = (uint64_t)hp->n_head * hd;
    const uint64_t kv = (uint64_t)hp->n_head_kv * hd, ff = hp->n_ff, fe = hp->n_ff_exp;
    const uint64_t shapes[NM_BLK_COUNT][3] = {
        [NM_BLK_ATTN_NORM] = {e, 1, 1},
        [NM_BLK_Q] = {e, q, 1},
        [NM_BLK_K] = {e, kv, 1},
        [NM_BLK_V] = {e, kv, 1},
        [NM_BLK_Q_BIAS] = {q, 1, 1},
        [NM_BLK_K_BIAS] = {kv, 1, 1},
        [NM_BLK_V_BIAS] = {kv, 1, 1},
        [NM_BLK_Q_NORM] = {hd, 1, 1},
        [NM_BLK_K_NORM] = {hd, 1, 1},
        [NM_BLK_O] = {q, e, 1},
        [NM_BLK_O_BIAS] = {e, 1, 1},
        [NM_BLK_FFN_NORM] = {e, 1, 1},
        [NM_BLK_GATE] = {e, ff, 1},
        [NM_BLK_UP] = {e, ff, 1},
        [NM_BLK_DOWN] = {ff, e, 1},
        [NM_BLK_GATE_BIAS] = {ff, 1, 1},
        [NM_BLK_UP_BIAS] = {ff, 1, 1},
        [NM_BLK_DOWN_BIAS] = {e, 1, 1},
        [NM_BLK_ROUTER] = {e, hp->n_expert, 1},
        [NM_BLK_GATE_EXPS] = {e, fe, hp->n_expert},
        [NM_BLK_UP_EXPS] = {e, fe, hp->n_expert},
        [NM_BLK_DOWN_EXPS] = {fe, e, hp->n_expert},
    };
    memcpy(ne, shapes[(unsigned)k < NM_BLK_COUNT ? k : 0], 3 * sizeof ne[0]);
}

/* Checks one tensor against [ne0, ne1, ne2]. Returns 1 when present and
 * right, 0 when absent and optional. */
static int check_tensor(const nm_gguf *g, const char *name, const uint64_t ne[3], bool optional,
                        nm_error *err) {
    const nm_gguf_tensor *t = nm_gguf_find_tensor(g, name);
    if (!t) {
        if (optional)
            return 0;
        return nm_fail(err, "%s: tensor '%s' is missing; the graph needs it", g->path, name);
    }
    uint64_t want[NM_GGUF_MAX_DIMS] = {ne[0], ne[1], ne[2], 1};
    if (memcmp(want, t->ne, sizeof want))
        return nm_fail(err,
                       "%s: tensor '%s' (info at byte %llu) has shape [%llu, %llu, %llu, "
                       "%llu]; expected [%llu, %llu, %llu, 1] from the hyperparameters",
                       g->path, name, (unsigned long long)t->info_offset,
                       (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
                       (unsigned long long)t->ne[2], (unsigned long long)t->ne[3],
                       (unsigned long long)want[0], (unsigned long long)want[1],
                       (unsigned long long)want[2]);
    const nm_type_info *ti = nm_type_get(t->type); /* known: the reader checked */
    bool vector = ne[1] == 1 && ne[2] == 1;
    if (!vector && !nm_type_computes(t->type))
        return nm_fail(err, "%s: tensor '%s' has type %s, which is not supported yet", g->path,
                       name, ti->name);
    /* norms, biases and rope factors are read as plain floats; llama.cpp
     * always writes vectors F32 */
    if (vector && t->type != NM_TYPE_F32)
        return nm_fail(err,
                       "%s: tensor '%s' has type %s; numalm supports only F32 vectors (norms, "
                       "biases) yet",
                       g->path, name, ti->name);
    return 1;
}

static int check_block(const nm_gguf *g, const nm_llama_hparams *hp, uint32_t layer,
                       nm_error *err) {
    for (int k = 0; k < NM_BLK_COUNT; k++) {
        int use = nm_blk_tensor_use(hp, (nm_blk_tensor)k);
        if (use == NO)
            continue;
        char name[96];
        uint64_t ne[3];
        snprintf(name, sizeof name, "blk.%u.%s", layer, BLK[k].suffix);
        nm_blk_tensor_shape(hp, (nm_blk_tensor)k, ne);
        if (check_tensor(g, name, ne, use == OPT, err) < 0)
            return -1;
    }
    return 0;
}

/* A tensor outside the graph: llama.cpp refuses such a file ("wrong number
 * of tensors"), and numalm running without it would compute something else
 * than the file's author meant. */
static int check_known(const nm_gguf *g, const nm_llama_hparams *hp, const nm_gguf_tensor *t,
                       nm_error *err) {
    static const char *const GLOBAL[] = {"token_embd.weight", "output_norm.weight",
                                         "output.weight"};
    for (size_t i = 0; i < sizeof GLOBAL / sizeof GLOBAL[0]; i++)
        if (!strcmp(t->name, GLOBAL[i]))
            return 0;
    if (!strcmp(t->name, "output.bias") && hp->arch_id == NM_ARCH_QWEN2)
        return 0;
    if (!strcmp(t->name, "rope_freqs.weight") && hp->arch_id == NM_ARCH_LLAMA)
        return 0;
    int layer = -1, k = nm_blk_tensor_parse(t->name, &layer);
    if (k >= 0 && (uint32_t)layer < hp->n_layer && nm_blk_tensor_use(hp, (nm_blk_tensor)k))
        return 0;
    return nm_fail(err,
                   "%s: tensor '%s' (info at byte %llu) is not part of the %s graph numalm "
                   "runs (%s); refusing rather than ignoring it",
                   g->path, t->name, (unsigned long long)t->info_offset, hp->arch,
                   k >= 0 && (uint32_t)layer >= hp->n_layer ? "block beyond block_count"
                                                            : "unknown to this architecture");
}

int nm_llama_check_tensors(const nm_gguf *g, const nm_llama_hparams *hp, nm_error *err) {
    const uint64_t e = hp->n_embd, v = hp->n_vocab;
    if (check_tensor(g, "token_embd.weight", (uint64_t[3]){e, v, 1}, false, err) < 0 ||
        check_tensor(g, "output_norm.weight", (uint64_t[3]){e, 1, 1}, false, err) < 0 ||
        check_tensor(g, "output.weight", (uint64_t[3]){e, v, 1}, true, err) < 0)
        return -1;
    /* qwen2's optional LM-head bias; llama's per-dimension rope frequency
     * factors (Llama 3.1+: n_rot / 2 divisors of the angles). */
    if (hp->arch_id == NM_ARCH_QWEN2 &&
        check_tensor(g, "output.bias", (uint64_t[3]){v, 1, 1}, true, err) < 0)
        return -1;
    if (hp->arch_id == NM_ARCH_LLAMA &&
        check_tensor(g, "rope_freqs.weight", (uint64_t[3]){hp->n_rot / 2, 1, 1}, true, err) < 0)
        return -1;
    for (uint32_t l = 0; l < hp->n_layer; l++)
        if (check_block(g, hp, l, err))
            return -1;
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (check_known(g, hp, &g->tensors[i], err))
            return -1;
    return 0;
}
