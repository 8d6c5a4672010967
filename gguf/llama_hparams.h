/* The hyperparameters a GGUF file of the llama family declares (keys under
 * "<arch>."), with llama.cpp's defaults for absent keys, and the tensors each
 * architecture's graph reads. Architectures numalm runs: llama (Llama 1-3,
 * Mistral; rope_freqs and linear rope scaling), qwen2 (Q/K/V biases), qwen3
 * (per-head Q/K RMSNorm, head size from key_length) and qwen3moe (qwen3
 * attention, mixture-of-experts FFN). Anything numalm would compute wrongly
 * (another architecture, YaRN or LongRoPE scaling, a tensor the graph does
 * not read) is refused here, naming the key or tensor. */
#ifndef NM_LLAMA_HPARAMS_H
#define NM_LLAMA_HPARAMS_H

#include "gguf.h"

typedef enum nm_arch {
    NM_ARCH_OTHER = 0, /* not one numalm runs (read leniently for `info`) */
    NM_ARCH_LLAMA,
    NM_ARCH_QWEN2,
    NM_ARCH_QWEN3,
    NM_ARCH_QWEN3MOE,
} nm_arch;

/* llama.cpp's rope types: NORM rotates pairs (x[2i], x[2i+1]) (llama), NEOX
 * pairs (x[i], x[i + n_rot/2]) (qwen2, qwen3, qwen3moe). */
typedef enum nm_rope_type {
    NM_ROPE_NORM,
    NM_ROPE_NEOX,
} nm_rope_type;

typedef struct nm_llama_hparams {
    char arch[64];
    nm_arch arch_id;
    uint32_t n_layer;     /* ARCH.block_count */
    uint32_t n_embd;      /* ARCH.embedding_length */
    uint32_t n_ff;        /* ARCH.feed_forward_length */
    uint32_t n_head;      /* ARCH.attention.head_count */
    uint32_t n_head_kv;   /* ARCH.attention.head_count_kv (default n_head) */
    uint32_t n_ctx_train; /* ARCH.context_length */
    uint32_t n_rot;       /* ARCH.rope.dimension_count (default head_dim) */
    float rope_freq_base; /* ARCH.rope.freq_base (default 10000) */
    float rms_eps;        /* ARCH.attention.layer_norm_rms_epsilon (1e-5) */
    uint32_t n_vocab;     /* tokenizer.ggml.tokens count, else token_embd rows */
    /* Head size of keys and values: ARCH.attention.key_length (default
     * embedding / heads), equal to value_length in every graph numalm runs.
     * Q has n_head * head_dim rows, K and V n_head_kv * head_dim. */
    uint32_t head_dim;
    nm_rope_type rope_type;
    /* Linear rope scaling: positions times rope_freq_scale (1 / the
     * rope.scaling.factor), cos and sin times rope_attn_factor. */
    float rope_freq_scale, rope_attn_factor;
    /* Mixture of experts (qwen3moe): ARCH.expert_count, expert_used_count,
     * expert_feed_forward_length (default n_ff / n_expert_used); 0 dense. */
    uint32_t n_expert, n_expert_used, n_ff_exp;
} nm_llama_hparams;

/* Reads and checks the hyperparameters (divisibility, ranges). For `info`,
 * strict=false reads what is there without refusing the architecture or
 * rope scaling. */
int nm_llama_hparams_read(const nm_gguf *g, nm_llama_hparams *hp, bool strict, nm_error *err);

/* Checks that every tensor the architecture's graph needs is present with
 * the right shape and a type numalm computes with, and that the file holds
 * no tensor the graph would not read (llama.cpp refuses those too; running
 * without them would give silently wrong results). */
int nm_llama_check_tensors(const nm_gguf *g, const nm_llama_hparams *hp, nm_error *err);

/* The tensors of a block, blk.N.<suffix>. */
typedef enum nm_blk_tensor {
    NM_BLK_ATTN_NORM,
    NM_BLK_Q,
    NM_BLK_K,
    NM_BLK_V,
    NM_BLK_Q_BIAS,
    NM_BLK_K_BIAS,
    NM_BLK_V_BIAS,
    NM_BLK_Q_NORM, /* per-head RMSNorm weights, head_dim */
    NM_BLK_K_NORM,
    NM_BLK_O,
    NM_BLK_O_BIAS,
    NM_BLK_FFN_NORM,
    NM_BLK_GATE,
    NM_BLK_UP,
    NM_BLK_DOWN,
    NM_BLK_GATE_BIAS,
    NM_BLK_UP_BIAS,
    NM_BLK_DOWN_BIAS,
    NM_BLK_ROUTER,    /* ffn_gate_inp: n_expert rows of n_embd */
    NM_BLK_GATE_EXPS, /* [n_embd, n_ff_exp, n_expert] */
    NM_BLK_UP_EXPS,
    NM_BLK_DOWN_EXPS, /* [n_ff_exp, n_embd, n_expert] */
    NM_BLK_COUNT
} nm_blk_tensor;

/* "attn_q.weight", "attn_q.bias", ... */
const char *nm_blk_tensor_suffix(nm_blk_tensor k);

/* Which kind blk.N.<suffix> is (and N), or -1 when the name is not of a
 * block tensor numalm knows. */
int nm_blk_tensor_parse(const char *name, int *layer);

/* The shape [ne0, ne1, ne2] a block tensor has under hp (ne1 = ne2 = 1 for
 * vectors, ne2 = 1 for matrices). */
void nm_blk_tensor_shape(const nm_llama_hparams *hp, nm_blk_tensor k, uint64_t ne[3]);

/* Whether hp's architecture reads kind k: 0 never, 1 when present, 2 always. */
int nm_blk_tensor_use(const nm_llama_hparams *hp, nm_blk_tensor k);

#endif
