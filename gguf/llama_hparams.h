/* The llama hyperparameters a GGUF file declares, with llama.cpp's defaults
 * for absent keys. Unsupported settings (rope scaling, other architectures)
 * are refused here with the key's name. */
#ifndef NM_LLAMA_HPARAMS_H
#define NM_LLAMA_HPARAMS_H

#include "gguf.h"

typedef struct nm_llama_hparams {
    char arch[64];
    uint32_t n_layer;     /* llama.block_count */
    uint32_t n_embd;      /* llama.embedding_length */
    uint32_t n_ff;        /* llama.feed_forward_length */
    uint32_t n_head;      /* llama.attention.head_count */
    uint32_t n_head_kv;   /* llama.attention.head_count_kv (default n_head) */
    uint32_t n_ctx_train; /* llama.context_length */
    uint32_t n_rot;       /* llama.rope.dimension_count (default head dim) */
    float rope_freq_base; /* llama.rope.freq_base (default 10000) */
    float rms_eps;        /* llama.attention.layer_norm_rms_epsilon (1e-5) */
    uint32_t n_vocab;     /* tokenizer.ggml.tokens count, else token_embd rows */
    uint32_t head_dim;    /* n_embd / n_head */
} nm_llama_hparams;

/* Reads and checks the hyperparameters (divisibility, ranges). For `info`,
 * strict=false reads what is there without refusing rope scaling. */
int nm_llama_hparams_read(const nm_gguf *g, nm_llama_hparams *hp, bool strict, nm_error *err);

/* Checks every tensor the llama graph needs is present with the right shape
 * and a type numalm computes with. */
int nm_llama_check_tensors(const nm_gguf *g, const nm_llama_hparams *hp, nm_error *err);

#endif
