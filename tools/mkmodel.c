#include "mkmodel.h"

#include "common/progress.h"
#include "common/rng.h"
#include "common/util.h"
#include "gguf/file_type.h"
#include "gguf/ggml_types.h"
#include "gguf/quant.h"
#include "gguf/gguf_write.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Floats generated per chunk: bounds memory (4 MB of floats plus the encoded
 * copy) whatever the model size. */
#define CHUNK_ELEMS (1u << 20)

/* ------------------------------------------------------------------------
 * Random numbers (common/rng.h): a normal deviate is the
 * Irwin-Hall sum of the four 16-bit quarters of one 64-bit draw, rescaled.
 * Its tails stop at 3.46 sigma, which suits random weights fine, and it costs
 * one draw and no transcendental function per value.
 * ---------------------------------------------------------------------- */

static void fill_normal(nm_rng *r, float *dst, size_t n, float mean, float std) {
    /* the sum of four uniform 0..65535 has mean 131070, std 37837.23 */
    const float scale = std / 37837.23f;
    for (size_t i = 0; i < n; i++) {
        uint64_t v = nm_rng_next(r);
        uint32_t sum = (uint32_t)(v & 0xffff) + (uint32_t)((v >> 16) & 0xffff) +
                       (uint32_t)((v >> 32) & 0xffff) + (uint32_t)(v >> 48);
        dst[i] = mean + ((float)sum - 131070.0f) * scale;
    }
}

/* ------------------------------------------------------------------------
 * Shapes
 * ---------------------------------------------------------------------- */

typedef enum tfill {
    FILL_NORMAL,     /* mean + std * N(0, 1) */
    FILL_ROPE_FREQS, /* Llama 3.1's frequency factors (computed, not random) */
} tfill;

typedef struct tspec {
    char name[64];
    uint32_t n_dims;
    uint64_t ne[3]; /* ne[2]: experts of a stacked expert tensor, else 1 */
    uint32_t type;
    tfill fill;
    float mean, std;
} tspec;

static tspec *new_specs(const nm_mkmodel_shape *s, nm_mkmodel_quant q, uint64_t *n, nm_error *err);

/* "Q4_K_M" for a preset, else the type's name. */
static const char *quant_name(nm_mkmodel_quant q) {
    const nm_file_type *f = q.ftype ? nm_file_type_get(q.ftype) : NULL;
    return f ? f->name : nm_type_name(q.type);
}

static nm_mkmodel_quant opts_quant(const nm_mkmodel_opts *o) {
    return (nm_mkmodel_quant){.type = o->type, .ftype = o->ftype};
}

/* "f32, f16, ..., q6_k": the types mkmodel writes plain (a quantizer in the
 * type table and a file type of their own). */
static const char *type_names(char *buf, size_t cap) {
    size_t len = 0;
    buf[0] = 0;
    for (uint32_t t = 0; t < NM_TYPE_COUNT; t++) {
        if (nm_mkmodel_file_type((nm_mkmodel_quant){.type = t}) < 0)
            continue;
        char lower[16];
        const char *name = nm_type_name(t);
        size_t k = 0;
        for (; name[k] && k + 1 < sizeof lower; k++)
            lower[k] = (char)(name[k] >= 'A' && name[k] <= 'Z' ? name[k] - 'A' + 'a' : name[k]);
        lower[k] = 0;
        int w = snprintf(buf + len, cap - len, "%s%s", len ? ", " : "", lower);
        if (w < 0 || (size_t)w >= cap - len)
            break;
        len += (size_t)w;
    }
    return buf;
}

/* The shapes users run, by name (--preset). 1b: TinyLlama-1.1B's shape.
 * moe-tiny: a small qwen3moe, 8 experts with 2 used. 30b-a3b: Qwen3-30B-A3B's
 * block (embd 2048, 32 query / 4 KV heads of 128, 128 experts of 768 with 8
 * used, Qwen 3's vocab size, untied) in 12 of its 48 blocks, so that a Q8_0
 * file (8.6 GB) and its load fit a 24 GiB machine: a decode step reads the
 * same per block. */
static const struct mkmodel_preset {
    const char *name;
    nm_mkmodel_shape shape;
} mkmodel_presets[] = {
    // clang-format off
    {"tiny",     {.n_embd = 256,  .n_layer = 4,  .n_ff = 768,  .n_head = 8,  .n_head_kv = 4, .n_vocab = 2048,   .n_ctx = 1024}},
    {"1b",       {.n_embd = 2048, .n_layer = 22, .n_ff = 5632, .n_head = 32, .n_head_kv = 4, .n_vocab = 32000,  .n_ctx = 2048}},
    {"moe-tiny", {.n_embd = 256,  .n_layer = 4,  .n_ff = 768,  .n_head = 8,  .n_head_kv = 4, .n_vocab = 2048,   .n_ctx = 1024,
                  .arch = NM_ARCH_QWEN3MOE, .head_dim = 64,  .n_expert = 8,   .n_expert_used = 2, .n_ff_exp = 128}},
    {"30b-a3b",  {.n_embd = 2048, .n_layer = 12, .n_ff = 6144, .n_head = 32, .n_head_kv = 4, .n_vocab = 151936, .n_ctx = 4096,
                  .arch = NM_ARCH_QWEN3MOE, .head_dim = 128, .n_expert = 128, .n_expert_used = 8, .n_ff_exp = 768}},
    // clang-format on
};

int nm_mkmodel_preset(const char *name, nm_mkmodel_shape *out, nm_error *err) {
    char known[128] = "";
    size_t len = 0;
    for (size_t i = 0; i < sizeof mkmodel_presets / sizeof mkmodel_presets[0]; i++) {
        if (!strcmp(name, mkmodel_presets[i].name)) {
            *out = mkmodel_presets[i].shape;
            return 0;
        }
        int w = snprintf(known + len, sizeof known - len, "%s%s", i ? ", " : "",
                         mkmodel_presets[i].name);
        if (w > 0 && (size_t)w < sizeof known - len)
            len += (size_t)w;
    }
    return nm_fail(err, "unknown preset '%s' (known: %s)", name, known);
}

int nm_mkmodel_file_type(nm_mkmodel_quant q) {
    if (q.ftype)
        return nm_mkmodel_is_mix(q.ftype) ? (int)q.ftype : -1;
    const nm_type_info *ti = nm_type_get(q.type);
    const nm_file_type *f = nm_file_type_for_type(q.type);
    return ti && ti->quantize && f ? (int)f->id : -1;
}

static nm_arch mk_arch(const nm_mkmodel_shape *s) {
    return s->arch == NM_ARCH_OTHER ? NM_ARCH_LLAMA : s->arch;
}

static const char *arch_name(const nm_mkmodel_shape *s) {
    switch (mk_arch(s)) {
    case NM_ARCH_QWEN2:
        return "qwen2";
    case NM_ARCH_QWEN3:
        return "qwen3";
    case NM_ARCH_QWEN3MOE:
        return "qwen3moe";
    default:
        return "llama";
    }
}

static bool is_qwen3(const nm_mkmodel_shape *s) {
    return mk_arch(s) == NM_ARCH_QWEN3 || mk_arch(s) == NM_ARCH_QWEN3MOE;
}

static uint32_t head_dim(const nm_mkmodel_shape *s) {
    return s->head_dim ? s->head_dim : s->n_embd / s->n_head;
}

int nm_mkmodel_check(const nm_mkmodel_shape *s, nm_mkmodel_quant q, nm_error *err) {
    if (nm_mkmodel_file_type(q) < 0) {
        char names[256];
        return nm_fail(err, "type %s: mkmodel writes %s and the K-quant presets",
                       q.ftype ? "mixture" : nm_type_name(q.type), type_names(names, sizeof names));
    }
    const struct {
        const char *what;
        uint32_t v, max;
    } ranges[] = {
        {"embd", s->n_embd, 65536}, {"blocks", s->n_layer, 1024},     {"ff", s->n_ff, 262144},
        {"heads", s->n_head, 1024}, {"kv-heads", s->n_head_kv, 1024}, {"ctx", s->n_ctx, 1u << 20},
    };
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++)
        if (ranges[i].v < 1 || ranges[i].v > ranges[i].max)
            return nm_fail(err, "--%s %u is out of range (1..%u)", ranges[i].what, ranges[i].v,
                           ranges[i].max);
    if (s->n_vocab < NM_MKMODEL_MIN_VOCAB || s->n_vocab > NM_MKMODEL_MAX_VOCAB)
        return nm_fail(err, "--vocab %u is out of range (%d..%d)", s->n_vocab, NM_MKMODEL_MIN_VOCAB,
                       NM_MKMODEL_MAX_VOCAB);
    if (!s->head_dim && s->n_embd % s->n_head)
        return nm_fail(err, "--embd %u is not a multiple of --heads %u", s->n_embd, s->n_head);
    if (!s->head_dim && head_dim(s) % 2)
        return nm_fail(err, "head dimension %u (embd %u / heads %u) must be even for RoPE",
                       head_dim(s), s->n_embd, s->n_head);
    if (s->head_dim % 2 || s->head_dim > 4096)
        return nm_fail(err, "--head-dim %u must be even (RoPE) and at most 4096", s->head_dim);
    if (s->n_head % s->n_head_kv)
        return nm_fail(err, "--heads %u is not a multiple of --kv-heads %u", s->n_head,
                       s->n_head_kv);
    nm_arch arch = mk_arch(s);
    if (arch != NM_ARCH_LLAMA && arch != NM_ARCH_QWEN2 && !is_qwen3(s))
        return nm_fail(err, "architecture %d: mkmodel writes llama, qwen2, qwen3 or qwen3moe",
                       (int)arch);
    bool moe = arch == NM_ARCH_QWEN3MOE;
    if (moe != (s->n_expert > 0) ||
        (moe && (s->n_expert > 512 || s->n_expert_used < 1 || s->n_expert_used > s->n_expert ||
                 !s->n_ff_exp || s->n_ff_exp > 262144)))
        return nm_fail(err,
                       "experts %u, used %u, expert ff %u: qwen3moe needs 1 to 512 experts, 1 "
                       "to that many used and an expert ff of 1 to 262144; other "
                       "architectures none",
                       s->n_expert, s->n_expert_used, s->n_ff_exp);
    if (arch == NM_ARCH_QWEN2 && head_dim(s) * s->n_head != s->n_embd)
        return nm_fail(err, "qwen2 needs --head-dim x --heads == --embd (%u x %u != %u)",
                       head_dim(s), s->n_head, s->n_embd);
    if (s->rope_freqs && arch != NM_ARCH_LLAMA)
        return nm_fail(err, "rope_freqs.weight is read by llama only");
    /* every row of every matrix is embd, ff or heads x head_dim long; a
     * preset falls back to a type whose blocks fit (which must be one
     * mkmodel writes) */
    uint64_t n;
    tspec *specs = new_specs(s, q, &n, err);
    if (!specs)
        return -1;
    int rc = 0;
    for (uint64_t i = 0; i < n && !rc; i++) {
        const nm_type_info *ti = nm_type_get(specs[i].type);
        if (!ti->quantize)
            rc = nm_fail(err, "tensor %s would be %s, which mkmodel cannot write yet",
                         specs[i].name, ti->name);
        else if (specs[i].ne[0] % ti->block_size)
            rc = nm_fail(err,
                         "%s rows are %u-element blocks: --embd %u, --ff %u and heads x head "
                         "dim %u must be multiples of %u",
                         ti->name, ti->block_size, s->n_embd, s->n_ff, head_dim(s) * s->n_head,
                         ti->block_size);
    }
    free(specs);
    return rc;
}

/* The type of a matrix: the plain type, or as the preset mixes them. */
static uint32_t matrix_type(const nm_mkmodel_shape *s, nm_mkmodel_quant q, nm_role role,
                            uint32_t layer, uint64_t ncols) {
    return q.ftype ? nm_mkmodel_mix_type(q.ftype, s, role, layer, ncols)
                   : nm_mkmodel_fallback(q.type, ncols);
}

/* Bytes of a tensor of ne1 rows of ne0 elements, padded as in the file. */
static uint64_t padded_bytes(uint32_t type, uint64_t ne0, uint64_t ne1) {
    uint64_t row = 0;
    if (nm_type_row_bytes(type, ne0, &row))
        return 0; /* nm_mkmodel_check refuses such shapes before anything is written */
    return nm_align_up(row * ne1, NM_GGUF_DEFAULT_ALIGNMENT);
}

/* Llama 3.1's rope scaling (factor 8, low 1, high 4, original context
 * 8192), as its converter writes rope_freqs.weight: dimensions that turn
 * slower than the original context are divided by the factor, fast ones
 * kept, the ones between interpolated. */
static void rope_freq_factors(float *out, uint32_t n, float base, uint32_t n_rot) {
    const double factor = 8, low = 1, high = 4, orig = 8192, pi = 3.14159265358979323846;
    for (uint32_t i = 0; i < n; i++) {
        double freq = pow(base, -2.0 * i / n_rot), wavelen = 2 * pi / freq;
        double f;
        if (wavelen < orig / high) {
            f = 1;
        } else if (wavelen > orig / low) {
            f = factor;
        } else {
            double smooth = (orig / wavelen - low) / (high - low);
            f = 1 / ((1 - smooth) / factor + smooth);
        }
        out[i] = (float)f;
    }
}

static float rope_base(const nm_mkmodel_shape *s) {
    return mk_arch(s) == NM_ARCH_LLAMA ? 10000.0f : 1e6f; /* Qwen's */
}

/* The tensors in llama.cpp's order for the architecture into out (may be
 * NULL), their padded data bytes added to *bytes (may be NULL); returns the
 * count. Qwen 2's biases have std 0.5: large enough that a pass ignoring
 * them gives other logits. */
static uint64_t build_specs(const nm_mkmodel_shape *s, nm_mkmodel_quant q, tspec *out,
                            uint64_t *bytes) {
    const nm_arch arch = mk_arch(s);
    const uint64_t embd = s->n_embd, ff = s->n_ff, hd = head_dim(s);
    const uint64_t qd = hd * s->n_head, kv = hd * s->n_head_kv;
    const float in_embd = 1.0f / sqrtf((float)embd);
    const float branch = 1.0f / sqrtf((float)(s->n_layer ? s->n_layer : 1));
    uint64_t n = 0;
#define SPEC3(nd, e0, e1, e2, ty, mu, sd, ...)                                                     \
    do {                                                                                           \
        if (out) {                                                                                 \
            tspec *t = &out[n];                                                                    \
            snprintf(t->name, sizeof t->name, __VA_ARGS__);                                        \
            t->n_dims = (nd);                                                                      \
            t->ne[0] = (e0);                                                                       \
            t->ne[1] = (e1);                                                                       \
            t->ne[2] = (e2);                                                                       \
            t->type = (ty);                                                                        \
            t->fill = FILL_NORMAL;                                                                 \
            t->mean = (mu);                                                                        \
            t->std = (sd);                                                                         \
        }                                                                                          \
        if (bytes)                                                                                 \
            *bytes += padded_bytes((ty), (e0), (uint64_t)(e1) * (e2));                             \
        n++;                                                                                       \
    } while (0)
#define SPEC(nd, e0, e1, ty, mu, sd, ...) SPEC3(nd, e0, e1, 1, ty, mu, sd, __VA_ARGS__)
#define MT(role, layer, ncols) matrix_type(s, q, role, layer, ncols)
#define VEC(len, mu, sd, ...) SPEC(1, len, 1, NM_TYPE_F32, mu, sd, __VA_ARGS__)
    /* Tied, token_embd is also the LM head: std 2/sqrt(embd) keeps the logits
     * at std ~2 (the norms rescale the small inputs); a preset gives it the
     * LM head's type, as llama-quantize does. */
    SPEC(2, embd, s->n_vocab, MT(s->tied ? NM_ROLE_OUTPUT : NM_ROLE_TOKEN_EMBD, 0, embd), 0.0f,
         s->tied ? 2.0f * in_embd : 1.0f, "token_embd.weight");
    if (s->rope_freqs) {
        VEC(hd / 2, 0.0f, 0.0f, "rope_freqs.weight");
        if (out)
            out[n - 1].fill = FILL_ROPE_FREQS;
    }
    for (uint32_t b = 0; b < s->n_layer; b++) {
        VEC(embd, 1.0f, 0.05f, "blk.%u.attn_norm.weight", b);
        SPEC(2, embd, qd, MT(NM_ROLE_ATTN_Q, b, embd), 0.0f, in_embd, "blk.%u.attn_q.weight", b);
        SPEC(2, embd, kv, MT(NM_ROLE_ATTN_K, b, embd), 0.0f, in_embd, "blk.%u.attn_k.weight", b);
        SPEC(2, embd, kv, MT(NM_ROLE_ATTN_V, b, embd), 0.0f, in_embd, "blk.%u.attn_v.weight", b);
        if (arch == NM_ARCH_QWEN2) {
            VEC(qd, 0.0f, 0.5f, "blk.%u.attn_q.bias", b);
            VEC(kv, 0.0f, 0.5f, "blk.%u.attn_k.bias", b);
            VEC(kv, 0.0f, 0.5f, "blk.%u.attn_v.bias", b);
        }
        if (is_qwen3(s)) {
            VEC(hd, 1.0f, 0.05f, "blk.%u.attn_q_norm.weight", b);
            VEC(hd, 1.0f, 0.05f, "blk.%u.attn_k_norm.weight", b);
        }
        SPEC(2, qd, embd, MT(NM_ROLE_ATTN_OUT, b, qd), 0.0f, branch / sqrtf((float)qd),
             "blk.%u.attn_output.weight", b);
        VEC(embd, 1.0f, 0.05f, "blk.%u.ffn_norm.weight", b);
        if (arch == NM_ARCH_QWEN3MOE) {
            /* the router stays F32 (llama-quantize never quantizes it); the
             * experts' types follow the dense FFN's rules (down_exps is an
             * ffn_down to llama-quantize) */
            const uint64_t ne = s->n_expert, fe = s->n_ff_exp;
            SPEC(2, embd, ne, NM_TYPE_F32, 0.0f, in_embd, "blk.%u.ffn_gate_inp.weight", b);
            SPEC3(3, embd, fe, ne, MT(NM_ROLE_FFN_GATE, b, embd), 0.0f, in_embd,
                  "blk.%u.ffn_gate_exps.weight", b);
            SPEC3(3, embd, fe, ne, MT(NM_ROLE_FFN_UP, b, embd), 0.0f, in_embd,
                  "blk.%u.ffn_up_exps.weight", b);
            SPEC3(3, fe, embd, ne, MT(NM_ROLE_FFN_DOWN, b, fe), 0.0f, branch / sqrtf((float)fe),
                  "blk.%u.ffn_down_exps.weight", b);
            continue;
        }
        SPEC(2, embd, ff, MT(NM_ROLE_FFN_GATE, b, embd), 0.0f, in_embd, "blk.%u.ffn_gate.weight",
             b);
        SPEC(2, embd, ff, MT(NM_ROLE_FFN_UP, b, embd), 0.0f, in_embd, "blk.%u.ffn_up.weight", b);
        SPEC(2, ff, embd, MT(NM_ROLE_FFN_DOWN, b, ff), 0.0f, branch / sqrtf((float)ff),
             "blk.%u.ffn_down.weight", b);
    }
    VEC(embd, 1.0f, 0.05f, "output_norm.weight");
    if (!s->tied)
        SPEC(2, embd, s->n_vocab, MT(NM_ROLE_OUTPUT, 0, embd), 0.0f, 2.0f * in_embd,
             "output.weight");
#undef VEC
#undef MT
#undef SPEC
#undef SPEC3
    return n;
}

/* The tensor list (malloc'd), its length in *n. */
static tspec *new_specs(const nm_mkmodel_shape *s, nm_mkmodel_quant q, uint64_t *n, nm_error *err) {
    *n = build_specs(s, q, NULL, NULL);
    tspec *specs = nm_calloc(*n, sizeof *specs, "the tensor list", err);
    if (specs)
        build_specs(s, q, specs, NULL);
    return specs;
}

uint64_t nm_mkmodel_data_bytes(const nm_mkmodel_shape *s, nm_mkmodel_quant q) {
    uint64_t total = 0;
    build_specs(s, q, NULL, &total);
    return total;
}

uint64_t nm_mkmodel_n_params(const nm_mkmodel_shape *s) {
    const uint64_t embd = s->n_embd, ff = s->n_ff, hd = head_dim(s);
    const uint64_t qd = hd * s->n_head, kv = hd * s->n_head_kv;
    uint64_t block = 2 * embd + 2 * embd * qd + 2 * embd * kv + 3 * embd * ff;
    if (mk_arch(s) == NM_ARCH_QWEN2)
        block += qd + 2 * kv; /* biases */
    if (is_qwen3(s))
        block += 2 * hd; /* Q/K norms */
    if (s->n_expert)     /* the router and the experts instead of the dense FFN */
        block += embd * s->n_expert + 3ull * s->n_expert * s->n_ff_exp * embd - 3 * embd * ff;
    return (s->tied ? 1 : 2) * embd * s->n_vocab + embd + (s->rope_freqs ? hd / 2 : 0) +
           s->n_layer * block;
}

/* Common llama widths, narrowest first; a --size target takes the first one
 * that reaches it within max_blocks. */
static const struct rung {
    uint32_t embd, ff, heads, kv_heads, max_blocks;
} LADDER[] = {
    {256, 768, 8, 4, 8},      {512, 1536, 8, 4, 12},      {1024, 2816, 16, 4, 16},
    {2048, 5632, 32, 4, 32},  {3072, 8192, 24, 8, 32},    {4096, 11008, 32, 8, 40},
    {5120, 13824, 40, 8, 48}, {8192, 28672, 64, 8, 1024},
};

/* Metadata bytes, roughly: the vocab dominates (string, score, type). */
static uint64_t meta_estimate(uint32_t n_vocab) {
    return 8192 + 28ull * n_vocab;
}

int nm_mkmodel_shape_for_size(uint64_t target, nm_mkmodel_quant q, uint32_t n_vocab,
                              nm_mkmodel_shape *out, nm_error *err) {
    const size_t n_rungs = sizeof LADDER / sizeof LADDER[0];
    char b1[32], b2[32];
    for (size_t i = 0; i < n_rungs; i++) {
        const struct rung *r = &LADDER[i];
        nm_mkmodel_shape s = {.n_embd = r->embd,
                              .n_layer = 0,
                              .n_ff = r->ff,
                              .n_head = r->heads,
                              .n_head_kv = r->kv_heads,
                              .n_vocab = n_vocab,
                              .n_ctx = 2048};
        uint64_t fixed = nm_mkmodel_data_bytes(&s, q) + meta_estimate(n_vocab);
        s.n_layer = 1;
        uint64_t per = nm_mkmodel_data_bytes(&s, q) + meta_estimate(n_vocab) - fixed;
        if (i == 0 && target < fixed + per)
            return nm_fail(err,
                           "--size %s is too small: the smallest --size shape (embd %u, "
                           "1 block, vocab %u) takes %s as %s; use --preset tiny",
                           nm_fmt_bytes(target, b1, sizeof b1), r->embd, n_vocab,
                           nm_fmt_bytes(fixed + per, b2, sizeof b2), quant_name(q));
        if (target > fixed + (uint64_t)r->max_blocks * per && i + 1 < n_rungs)
            continue;
        uint64_t blocks = (target - fixed + per / 2) / per;
        if (blocks > r->max_blocks)
            return nm_fail(err, "--size %s is too large (at most about %s as %s)",
                           nm_fmt_bytes(target, b1, sizeof b1),
                           nm_fmt_bytes(fixed + (uint64_t)r->max_blocks * per, b2, sizeof b2),
                           quant_name(q));
        s.n_layer = blocks ? (uint32_t)blocks : 1;
        *out = s;
        return 0;
    }
    return nm_fail(err, "--size: no shape found"); /* not reached: the last rung answers */
}

/* ------------------------------------------------------------------------
 * Writing
 * ---------------------------------------------------------------------- */

static int write_metadata(nm_gguf_writer *w, const nm_mkmodel_opts *o, const nm_mkmodel_vocab *v,
                          nm_error *err) {
    const nm_mkmodel_shape *s = &o->shape;
    char name[128];
    if (o->name)
        snprintf(name, sizeof name, "%s", o->name);
    else
        snprintf(name, sizeof name, "numalm-mkmodel %uL-%ue %s seed %llu", s->n_layer, s->n_embd,
                 quant_name(opts_quant(o)), (unsigned long long)o->seed);
#define TRY(call)                                                                                  \
    do {                                                                                           \
        if (call)                                                                                  \
            return -1;                                                                             \
    } while (0)
    char key[96];
#define AK(sfx) (snprintf(key, sizeof key, "%s.%s", arch_name(s), sfx), key)
    TRY(nm_gguf_w_str(w, "general.architecture", arch_name(s), err));
    TRY(nm_gguf_w_str(w, "general.name", name, err));
    TRY(nm_gguf_w_u32(w, "general.alignment", NM_GGUF_DEFAULT_ALIGNMENT, err));
    TRY(nm_gguf_w_u32(w, "general.file_type", (uint32_t)nm_mkmodel_file_type(opts_quant(o)), err));
    TRY(nm_gguf_w_u64(w, "numalm.mkmodel.seed", o->seed, err));
    TRY(nm_gguf_w_u32(w, AK("context_length"), s->n_ctx, err));
    TRY(nm_gguf_w_u32(w, AK("embedding_length"), s->n_embd, err));
    TRY(nm_gguf_w_u32(w, AK("block_count"), s->n_layer, err));
    TRY(nm_gguf_w_u32(w, AK("feed_forward_length"), s->n_ff, err));
    TRY(nm_gguf_w_u32(w, AK("attention.head_count"), s->n_head, err));
    TRY(nm_gguf_w_u32(w, AK("attention.head_count_kv"), s->n_head_kv, err));
    TRY(nm_gguf_w_u32(w, AK("rope.dimension_count"), head_dim(s), err));
    TRY(nm_gguf_w_f32(w, AK("rope.freq_base"), rope_base(s), err));
    TRY(nm_gguf_w_f32(w, AK("attention.layer_norm_rms_epsilon"), 1e-5f, err));
    TRY(nm_gguf_w_u32(w, AK("vocab_size"), s->n_vocab, err));
    if (s->head_dim || is_qwen3(s)) { /* as Qwen 3's converter writes */
        TRY(nm_gguf_w_u32(w, AK("attention.key_length"), head_dim(s), err));
        TRY(nm_gguf_w_u32(w, AK("attention.value_length"), head_dim(s), err));
    }
    if (s->n_expert) {
        TRY(nm_gguf_w_u32(w, AK("expert_count"), s->n_expert, err));
        TRY(nm_gguf_w_u32(w, AK("expert_used_count"), s->n_expert_used, err));
        TRY(nm_gguf_w_u32(w, AK("expert_feed_forward_length"), s->n_ff_exp, err));
    }
#undef AK
    TRY(nm_gguf_w_str(w, "tokenizer.ggml.model", "llama", err));
    TRY(nm_gguf_w_str_arr(w, "tokenizer.ggml.tokens", (const char *const *)v->pieces, v->n, err));
    TRY(nm_gguf_w_arr(w, "tokenizer.ggml.scores", NM_GGUF_FLOAT32, v->scores, v->n, err));
    TRY(nm_gguf_w_arr(w, "tokenizer.ggml.token_type", NM_GGUF_INT32, v->types, v->n, err));
    TRY(nm_gguf_w_u32(w, "tokenizer.ggml.bos_token_id", 1, err));
    TRY(nm_gguf_w_u32(w, "tokenizer.ggml.eos_token_id", 2, err));
    TRY(nm_gguf_w_u32(w, "tokenizer.ggml.unknown_token_id", 0, err));
    TRY(nm_gguf_w_bool(w, "tokenizer.ggml.add_bos_token", true, err));
    TRY(nm_gguf_w_bool(w, "tokenizer.ggml.add_eos_token", false, err));
    return 0;
#undef TRY
}

/* Generates and streams one tensor, a chunk of rows at a time. */
static int write_tensor(nm_gguf_writer *w, const nm_mkmodel_shape *s, const tspec *t,
                        uint64_t index, uint64_t seed, float *f, uint8_t *enc, nm_progress *prog,
                        const volatile sig_atomic_t *stop, nm_error *err) {
    nm_rng r;
    nm_rng_seed(&r, seed, index);
    uint64_t row_bytes = 0;
    if (nm_type_row_bytes(t->type, t->ne[0], &row_bytes))
        return nm_fail(err, "tensor '%s': bad row length %llu", t->name,
                       (unsigned long long)t->ne[0]);
    uint64_t rows_per_chunk = CHUNK_ELEMS / t->ne[0] ? CHUNK_ELEMS / t->ne[0] : 1;
    const uint64_t rows = t->ne[1] * t->ne[2];
    for (uint64_t row = 0; row < rows; row += rows_per_chunk) {
        uint64_t k = rows - row < rows_per_chunk ? rows - row : rows_per_chunk;
        if (stop && *stop)
            return nm_fail(err, "interrupted while writing tensor '%s'", t->name);
        if (t->fill == FILL_ROPE_FREQS)
            rope_freq_factors(f, (uint32_t)t->ne[0], rope_base(s), head_dim(s));
        else
            fill_normal(&r, f, (size_t)(k * t->ne[0]), t->mean, t->std);
        for (uint64_t i = 0; i < k; i++)
            if (nm_quantize_row(t->type, f + i * t->ne[0], enc + i * row_bytes, (int64_t)t->ne[0]))
                return nm_fail(err, "tensor '%s': cannot encode as %s", t->name,
                               nm_type_name(t->type));
        if (nm_gguf_w_data(w, enc, (size_t)(k * row_bytes), err))
            return -1;
        if (prog)
            nm_progress_add(prog, k * row_bytes);
    }
    return 0;
}

static int write_all_tensors(nm_gguf_writer *w, const tspec *specs, uint64_t n,
                             const nm_mkmodel_opts *o, nm_progress *prog, nm_error *err) {
    uint32_t max_row = o->shape.n_embd > o->shape.n_ff ? o->shape.n_embd : o->shape.n_ff;
    uint32_t q_dim = head_dim(&o->shape) * o->shape.n_head;
    max_row = q_dim > max_row ? q_dim : max_row;
    size_t elems = CHUNK_ELEMS > max_row ? CHUNK_ELEMS : max_row;
    float *f = malloc(elems * sizeof *f);
    uint8_t *enc = malloc(elems * sizeof *f); /* no encoding is larger than F32 */
    int rc = 0;
    if (!f || !enc)
        rc = nm_fail(err, "out of memory for %zu-element buffers", elems);
    for (uint64_t i = 0; !rc && i < n; i++)
        rc = write_tensor(w, &o->shape, &specs[i], i, o->seed, f, enc, prog, o->stop, err);
    free(f);
    free(enc);
    return rc;
}

static int declare(nm_gguf_writer *w, const nm_mkmodel_opts *o, const tspec *specs, uint64_t n,
                   nm_error *err) {
    nm_mkmodel_vocab v = {0};
    if (nm_mkmodel_vocab_build(o->shape.n_vocab, &v, err))
        return -1;
    int rc = write_metadata(w, o, &v, err);
    nm_mkmodel_vocab_free(&v);
    for (uint64_t i = 0; !rc && i < n; i++)
        rc = nm_gguf_w_tensor(w, specs[i].name, specs[i].n_dims, specs[i].ne, specs[i].type, err);
    return rc;
}

int nm_mkmodel_write(const char *path, const nm_mkmodel_opts *o, nm_mkmodel_result *res,
                     nm_error *err) {
    double t0 = nm_now();
    if (nm_mkmodel_check(&o->shape, opts_quant(o), err))
        return -1;
    uint64_t n;
    tspec *specs = new_specs(&o->shape, opts_quant(o), &n, err);
    if (!specs)
        return -1;
    nm_gguf_writer *w = nm_gguf_writer_new(NM_GGUF_DEFAULT_ALIGNMENT);
    if (!w) {
        free(specs);
        return nm_fail(err, "%s: out of memory for the GGUF writer", path);
    }
    nm_progress prog;
    int rc = declare(w, o, specs, n, err);
    if (!rc) {
        nm_progress_begin(&prog, "mkmodel", nm_gguf_w_file_size(w), o->progress, o->progress_ud);
        rc = nm_gguf_w_begin(w, path, err);
    }
    if (!rc) {
        nm_progress_add(&prog,
                        nm_gguf_w_file_size(w) - nm_mkmodel_data_bytes(&o->shape, opts_quant(o)));
        rc = o->sparse ? nm_gguf_w_hole(w, err) : write_all_tensors(w, specs, n, o, &prog, err);
        nm_progress_end(&prog);
    }
    if (!rc)
        rc = nm_gguf_w_finish(w, err);
    if (!rc && res) {
        res->file_bytes = nm_gguf_w_file_size(w);
        res->n_tensors = n;
        res->n_params = nm_mkmodel_n_params(&o->shape);
        res->seconds = nm_now() - t0;
    }
    nm_gguf_writer_free(w); /* removes path.tmp after a failure */
    free(specs);
    return rc;
}
