/* The llama forward pass on node-local weights. The workers of node n
 * compute the rows the plan gives node n (claimed in shrinking chunks),
 * reading them from node n's arena; node n keeps the KV cache of its KV
 * heads and computes attention for the query heads of those KV heads.
 * What crosses nodes is only activation vectors (x, attention output, FFN
 * hidden: a few KiB per token). */
#ifndef NM_MODEL_H
#define NM_MODEL_H

#include "io/loader.h"
#include "threadpool.h"

#include <stdbool.h>
#include <stdint.h>

struct nm_device;

/* Blocks on a device (runtime/device.h; -ngl): the last n_layers blocks,
 * and with head (only with every block) the output norm and the LM head,
 * run on dev from weights already in its memory (tensor[i]: the device
 * address of file tensor i, NULL if not there: cuda/upload.h fills it).
 * The KV cache of those blocks lives on the device. */
typedef struct nm_model_offload {
    struct nm_device *dev; /* NULL: everything on the CPU */
    const void *const *tensor;
    int n_layers;
    bool head;
} nm_model_offload;

typedef struct nm_model_opts {
    int n_ctx;        /* KV cache positions per sequence; 0: llama.context_length */
    uint32_t kv_type; /* NM_TYPE_F16 or NM_TYPE_F32 */
    int n_batch;      /* tokens per batched pass; 0: 64 */
    int n_seq;        /* KV sequences (nm_model_eval_batch); 0: 1 */
    nm_model_offload offload;
} nm_model_opts;

/* -ngl N as llama.cpp reads it: the last min(N, n_layer) blocks, and the
 * LM head too when N > n_layer. Fills mask (one byte per file tensor) with
 * NM_OFFLOAD_DEVICE for the matrices to upload, NM_OFFLOAD_BOTH for one
 * the CPU needs as well (a tied embedding that is also the LM head). */
enum { NM_OFFLOAD_DEVICE = 1, NM_OFFLOAD_BOTH = 2 };
int nm_offload_select(const nm_gguf *g, uint32_t n_layer, int ngl, uint8_t *mask, int *n_layers,
                      bool *head);

/* The defaults (NM_TYPE_F32 is 0, so start from these, not from {0}). */
nm_model_opts nm_model_opts_default(void);

typedef struct nm_model nm_model;

/* Checks the hyperparameters strictly (refuses rope scaling and other
 * unsupported settings) and the tensors, binds every weight to its
 * node-local rows, allocates the per-node KV caches and scratch and starts
 * the pool. w, its plan and gguf, and topo must outlive the model. */
nm_model *nm_model_create(const nm_loaded *w, const nm_topo *topo, const nm_model_opts *opts,
                          nm_error *err);
void nm_model_free(nm_model *m);

const nm_llama_hparams *nm_model_hparams(const nm_model *m);
int nm_model_n_ctx(const nm_model *m);
int nm_model_n_seq(const nm_model *m);
int nm_model_n_batch(const nm_model *m);
int nm_model_n_vocab(const nm_model *m);
int nm_model_n_threads(const nm_model *m);
uint32_t nm_model_kv_type(const nm_model *m);
/* What plan node `node`'s workers read in single-token evaluations since
 * the model was created: bytes of weight matrices (the rows they claimed)
 * and of KV cache (each KV head's K and V up to the position, once per
 * head); *evals: how many such evaluations ran. numalm plan --predict
 * counts the same per token (numa/traffic.h); the NUMA VM checks compare. */
void nm_model_traffic(const nm_model *m, int node, uint64_t *weights, uint64_t *kv,
                      uint64_t *evals);

/* Weight bytes one decode step reads (every matrix + one embedding row). */
uint64_t nm_model_weight_bytes_per_token(const nm_model *m);

/* The read probe: the model's workers read every weight byte a decode step
 * reads (the node-local rows of each matrix, one contiguous share per
 * worker, no compute and no barriers) and sum it as nm_sum_words words.
 * *bytes gets the bytes read, *sum the sum, which does not depend on the
 * placement or the thread count when rows are whole 8-byte words (every
 * share then starts on a word of its tensor). A decode step's time against this pass's,
 * alternated in one process, is its fraction of the read bandwidth of the
 * same pages with the same threads. -1: out of memory. */
int nm_model_read_pass(nm_model *m, uint64_t *sum, uint64_t *bytes);

/* Runs tokens[0..n) at positions pos..pos+n-1; the cache must hold
 * positions 0..pos-1 (pos 0 starts a new sequence). Logits of tokens
 * [logits_from, n) go to logits[(i - logits_from) * n_vocab]; logits_from
 * == n computes none. Fails (without touching the cache) when pos + n
 * exceeds the context. */
int nm_model_eval(nm_model *m, const int32_t *tokens, int n, int pos, int logits_from,
                  float *logits, nm_error *err);

/* One token of a batch over several sequences. */
typedef struct nm_batch_tok {
    int32_t token;
    int seq;     /* its KV sequence, 0 .. n_seq - 1 */
    int pos;     /* its position in that sequence */
    bool logits; /* return its logits */
} nm_batch_tok;

/* Runs b[0..n) (n <= n_batch) as one pass over the weights: every matrix
 * multiplies all n tokens at once, each token attends within its own
 * sequence. A sequence's tokens come in order of consecutive positions; its
 * cache must hold the positions before its first token here (pos 0 starts
 * the sequence anew). The logits of the tokens with .logits go to
 * logits[k * n_vocab], k counting those tokens in batch order. A token's
 * results do not depend on the other sequences in the batch: its logits
 * are bit for bit those of the same tokens of its sequence evaluated as a
 * batch of their own (test_batch checks it). */
int nm_model_eval_batch(nm_model *m, const nm_batch_tok *b, int n, float *logits, nm_error *err);

#endif
