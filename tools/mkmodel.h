/* mkmodel: deterministic GGUF files of the llama family (llama, qwen2,
 * qwen3, qwen3moe) with random weights and a generated SentencePiece-style vocab, for
 * tests, demos and benchmarks. Same options and seed -> byte-identical file.
 *
 * Weights: each tensor has its own random stream (seed, tensor index), so a
 * tensor's values do not depend on how the file is written. Matrices are
 * normal with std 1/sqrt(row length) (the residual-branch outputs attn_output
 * and ffn_down further divided by sqrt(n_layer)), so every activation stays
 * O(1); token_embd has std 1, output.weight std 2/sqrt(n_embd) (logits of
 * std ~2), norms are 1 + 0.05 * normal, F32. */
#ifndef NM_MKMODEL_H
#define NM_MKMODEL_H

#include "common/error.h"
#include "common/progress.h"
#include "gguf/llama_hparams.h"
#include "numa/plan.h"

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#define NM_MKMODEL_N_SPECIAL 3 /* <unk> <s> </s> */
#define NM_MKMODEL_N_BYTES 256 /* <0x00>..<0xFF> */
#define NM_MKMODEL_MIN_VOCAB 300
#define NM_MKMODEL_MAX_VOCAB 262144

typedef struct nm_mkmodel_shape {
    uint32_t n_embd;
    uint32_t n_layer;
    uint32_t n_ff;
    uint32_t n_head;
    uint32_t n_head_kv;
    uint32_t n_vocab;
    uint32_t n_ctx;
    /* What the architectures add (zero: a plain llama file): */
    nm_arch arch;      /* NM_ARCH_OTHER (0) writes llama; qwen2 adds Q/K/V
                          biases, qwen3 Q/K norms and key_length */
    uint32_t head_dim; /* 0: n_embd / n_head */
    bool tied;         /* no output.weight: the LM head is token_embd */
    bool rope_freqs;   /* llama: a Llama 3.1-style rope_freqs.weight */
    /* qwen3moe: experts per block, used per token, each one's feed-forward
     * length (n_ff stays the dense length the file declares) */
    uint32_t n_expert, n_expert_used, n_ff_exp;
} nm_mkmodel_shape;

typedef struct nm_mkmodel_opts {
    nm_mkmodel_shape shape;
    /* Every matrix's weight type (enum nm_type: any type with a quantizer in
     * the type table), unless ftype is a K-quant preset */
    uint32_t type;
    /* 0, or a K-quant preset of llama-quantize (general.file_type Q2_K,
     * Q3_K_S/M/L, Q4_K_S/M, Q5_K_S/M, Q6_K): the types of the matrices mix
     * as that preset mixes them (nm_mkmodel_mix_type); type is ignored */
    uint32_t ftype;
    uint64_t seed;
    const char *name;        /* general.name; NULL: derived from shape and type */
    nm_progress_fn progress; /* NULL: no progress reports */
    void *progress_ud;
    bool sparse; /* header only: the tensor data is a hole (zeros) */
    /* Checked between chunks: when it becomes non-zero (a signal handler
     * sets it) the write stops with an error and OUT.tmp is removed. */
    const volatile sig_atomic_t *stop;
} nm_mkmodel_opts;

typedef struct nm_mkmodel_result {
    uint64_t file_bytes;
    uint64_t n_tensors;
    uint64_t n_params;
    double seconds;
} nm_mkmodel_result;

/* "tiny" or "1b". */
int nm_mkmodel_preset(const char *name, nm_mkmodel_shape *out, nm_error *err);

/* The weights of a file: type and ftype as in nm_mkmodel_opts. */
typedef struct nm_mkmodel_quant {
    uint32_t type, ftype;
} nm_mkmodel_quant;

/* A llama-like shape whose file is about target bytes with the given
 * weights and vocab: the number of blocks grows first, then the width
 * (embd/ff/heads step up a ladder of common llama widths). */
int nm_mkmodel_shape_for_size(uint64_t target, nm_mkmodel_quant q, uint32_t n_vocab,
                              nm_mkmodel_shape *out, nm_error *err);

/* Refuses shapes llama.cpp or numalm cannot use (divisibility, block-size
 * multiples for quantized rows, ranges) and types mkmodel cannot write;
 * names the offending field. */
int nm_mkmodel_check(const nm_mkmodel_shape *s, nm_mkmodel_quant q, nm_error *err);

/* Sum of tensor data bytes (no header) and the parameter count. */
uint64_t nm_mkmodel_data_bytes(const nm_mkmodel_shape *s, nm_mkmodel_quant q);
uint64_t nm_mkmodel_n_params(const nm_mkmodel_shape *s);

/* llama.cpp's general.file_type for the weights (ALL_F32 = 0, ...; a plain
 * type gets the file type its llama-quantize name selects); -1 when mkmodel
 * cannot write them. */
int nm_mkmodel_file_type(nm_mkmodel_quant q);

/* True for the presets whose types mkmodel mixes (tools/mkmodel_mix.c). */
bool nm_mkmodel_is_mix(uint32_t ftype);

/* The type a matrix of `type` is stored as when its rows of ncols values
 * are not a whole number of the type's blocks: llama-quantize's fallback
 * (Q4_K -> Q5_0, IQ4_XS -> IQ4_NL, ...; F16 when that does not fit either),
 * or the type itself where llama-quantize defines none. */
uint32_t nm_mkmodel_fallback(uint32_t type, uint64_t ncols);

/* The weight type of a matrix of role `role` in block `layer` (rows of
 * ncols values) in a file of preset ftype, as llama-quantize chooses it. */
uint32_t nm_mkmodel_mix_type(uint32_t ftype, const nm_mkmodel_shape *s, nm_role role,
                             uint32_t layer, uint64_t ncols);

/* --seed's default: the demo models of the docs and benchmarks. */
#define NM_MKMODEL_DEFAULT_SEED 42

/* Writes path (via path.tmp + rename). res may be NULL. */
int nm_mkmodel_write(const char *path, const nm_mkmodel_opts *o, nm_mkmodel_result *res,
                     nm_error *err);

/* The generated vocab: <unk> <s> </s>, the 256 byte tokens, then unique
 * pieces with decreasing scores ("▁", letters, "▁"+letters, words grown one
 * letter at a time, letter n-grams), each multi-character piece being the
 * concatenation of two earlier pieces so SentencePiece merges reach it. */
typedef struct nm_mkmodel_vocab {
    uint32_t n;
    char **pieces;
    float *scores;
    int32_t *types; /* 1 normal, 2 unknown, 3 control, 6 byte */
} nm_mkmodel_vocab;

int nm_mkmodel_vocab_build(uint32_t n, nm_mkmodel_vocab *v, nm_error *err);
void nm_mkmodel_vocab_free(nm_mkmodel_vocab *v);

#endif
