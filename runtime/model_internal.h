/* Private to model.c / model_forward.c / model_moe.c / model_offload.c. */
#ifndef NM_MODEL_INTERNAL_H
#define NM_MODEL_INTERNAL_H

#include "kernels.h"
#include "model.h"

#include <stdbool.h>
#include <stddef.h>

/* A weight matrix as the nodes see it: node n computes rows
 * [row0[n], row1[n]) from base[n] (its first row, in its own arena). A
 * worker claims rows in multiples of unit_rows (Q and K: whole heads, for
 * the per-head norm and RoPE). bias[n]: the matrix's bias vector (n_rows
 * floats) on node n, NULL when the file has none. */
typedef struct nm_mat {
    int ti;
    uint32_t type;
    uint64_t n_cols, n_rows, row_bytes, unit_rows;
    const uint8_t *base[NM_MAX_NODES];
    uint64_t row0[NM_MAX_NODES], row1[NM_MAX_NODES];
    const float *bias[NM_MAX_NODES];
} nm_mat;

/* A mixture-of-experts FFN (qwen3moe): the router (ffn_gate_inp, n_expert
 * rows) and each expert's three matrices, as the plan's expert units split
 * them (gate[e], up[e], down[e]). */
typedef struct nm_moe_layer {
    nm_mat router;
    nm_mat *gate, *up, *down; /* n_expert each */
} nm_moe_layer;

/* Vectors are per node (each node reads its own copy); q_norm/k_norm are
 * NULL when the architecture has none. moe: NULL for a dense FFN (gate, up,
 * down), else the mixture (gate, up, down unused). */
typedef struct nm_layer {
    const float *attn_norm[NM_MAX_NODES], *ffn_norm[NM_MAX_NODES];
    const float *q_norm[NM_MAX_NODES], *k_norm[NM_MAX_NODES];
    nm_mat q, k, v, o, gate, up, down;
    nm_moe_layer *moe;
} nm_layer;

/* A worker's routing of the batch in flight (model_moe.c): token t's j-th
 * expert (by descending probability) is sel[t * k + j] with weight
 * wt[t * k + j]; the (token, expert) pairs sorted by expert are pair
 * positions 0 .. n_tok * k - 1, expert e's from off[e] to off[e + 1], in
 * token order: pos[t * k + j] is the pair's position, tok[position] its
 * token. */
typedef struct nm_route {
    int *sel, *pos, *tok, *off, *fill;
    float *wt, *probs;
} nm_route;

/* Node n's KV cache: its KV heads only, laid out
 * [layer][head - head0][sequence][position][head_dim], F16 or F32. */
typedef struct nm_kv_node {
    void *k, *v;
    uint32_t head0, head1;
} nm_kv_node;

/* Per worker, on the worker's node. */
typedef struct nm_scratch {
    float *xb;      /* n_batch x n_embd: normalized input */
    void *act;      /* prepared activations */
    float *scores;  /* n_ctx attention scores */
    float *head;    /* 2 x head_dim: a query and a sum of values */
    nm_route route; /* mixture of experts only */
    float *xg;      /* n_batch x n_embd: an expert's tokens, gathered */
} nm_scratch;

/* Workers of a node claim a matrix's rows from the node's share in shrinking
 * chunks (guided scheduling), so a worker slowed by a busy neighbour on its
 * core does not hold up the barrier: the others take more rows. `next` is
 * the first unclaimed row, relative to the node's share; one cache line
 * each. */
typedef struct nm_claim {
    _Atomic uint64_t next;
    char pad[56];
} nm_claim;

/* Claim slots per layer: one per weight matrix, in the order a forward
 * pass reads them (a mixture's router instead of gate, up and down; its
 * experts have slots of their own after every layer's, see
 * nm_expert_slot). */
enum {
    NM_CLAIM_Q,
    NM_CLAIM_K,
    NM_CLAIM_V,
    NM_CLAIM_O,
    NM_CLAIM_GATE,
    NM_CLAIM_UP,
    NM_CLAIM_DOWN,
    NM_CLAIM_ROUTER,
    NM_CLAIMS_PER_LAYER
};

/* A layer's weight matrices that every decode step reads (for a mixture:
 * the router, not the experts); returns their count. */
static inline int nm_layer_mats(const nm_layer *L, const nm_mat *out[NM_CLAIMS_PER_LAYER]) {
    int n = 0;
    out[n++] = &L->q;
    out[n++] = &L->k;
    out[n++] = &L->v;
    out[n++] = &L->o;
    if (L->moe) {
        out[n++] = &L->moe->router;
        return n;
    }
    out[n++] = &L->gate;
    out[n++] = &L->up;
    out[n++] = &L->down;
    return n;
}

typedef struct nm_alloc_rec {
    void *p;
    size_t bytes;
    bool numa;
} nm_alloc_rec;

/* What a worker read in single-token passes (decode), on its own cache
 * line: the runtime's side of the traffic model's byte counts. */
typedef struct nm_traffic_count {
    uint64_t weights; /* rows of matrices claimed, x their row bytes */
    uint64_t kv;      /* K and V of each KV head up to the position */
    char pad[48];
} nm_traffic_count;

struct nm_model {
    const nm_loaded *w;
    const nm_plan *plan;
    nm_llama_hparams hp;
    nm_pool *pool;
    int n_ctx, n_batch, gqa;
    int64_t q_dim, kv_dim; /* n_head x head_dim, n_head_kv x head_dim */
    int n_seq;             /* KV sequences, each of n_ctx positions */
    uint32_t kv_type;
    size_t kv_esize;
    bool numa_alloc;
    bool attn_local;   /* Q/K/V rows of each node == its KV heads */
    bool gate_up_same; /* gate and up split identically */
    nm_layer *layers;
    const float *out_norm[NM_MAX_NODES];
    nm_mat output; /* bias: qwen2's optional output.bias */
    int embd_ti;
    const float *rope_freqs; /* llama's rope_freqs.weight (n_rot/2), or NULL */
    nm_kv_node kv[NM_MAX_NODES];
    int *kv_owner;                  /* plan node of each KV head */
    nm_scratch *scr;                /* one per worker */
    nm_traffic_count *traffic;      /* one per worker */
    uint64_t decode_evals;          /* single-token passes counted there */
    nm_claim *claims[NM_MAX_NODES]; /* n_claims per node, on the node */
    int n_claims;
    int expert_slot0; /* claim slot of layer 0's expert 0 (mixtures) */
    /* Activations shared by all workers, n_batch rows each: x, y n_embd;
     * q, att q_dim; k, v kv_dim; g, u n_ff. */
    float *x, *q, *k, *v, *att, *y, *g, *u;
    /* Mixtures: router logits (n_batch x n_expert); each (token, expert)
     * pair's gate and up rows (n_batch x n_expert_used x n_ff_exp, in pair
     * position order, see nm_route) and down output (... x n_embd). */
    float *router, *moe_g, *moe_u, *moe_out;
    float *rope; /* n_batch x (n_rot + 2): cos/sin per position */
    nm_alloc_rec *allocs;
    int n_allocs;
    size_t cap_allocs;
    /* The job in flight: n_tok tokens, token t of sequence tok_seq[t] at
     * position tok_pos[t]; the LM head runs on tokens out_tok[0..n_out)
     * into logits (rows in that order). pos and logits_from describe a
     * one-sequence batch (nm_model_eval) for the device's share. */
    int n_tok, pos, logits_from;
    bool attn_f16_online; /* the device's share: as tok_online, one sequence */
    int *tok_seq, *tok_pos, *out_tok;
    int n_out;
    /* F16 cache: token t attends as llama.cpp's one-query path (batches
     * of its sequence under 64 tokens), else as its F32 tiles */
    bool *tok_online;
    int32_t *tok_ids; /* n_batch: the batch's token ids */
    int *seq_next;    /* n_seq: eval_batch's count and check of each sequence */
    int *seq_len;     /* n_seq: positions 0 .. seq_len - 1 of each sequence are cached */
    float *logits;
    /* Blocks [l0, l1) run on the CPU in this pass, then the LM head if
     * head_now; the device's share is in off (model_offload.c). */
    int l0, l1;
    bool head_now;
    struct nm_offload *off;
};

/* model_forward.c: claims the worker's next chunk of the node's rows of mt
 * and multiplies it into y (row i of token t at y[t * ldy + i]); false
 * when the node's rows are all taken, else the chunk as rows [*a0, *a1). */
bool nm_claim_rows(nm_model *m, const nm_mat *mt, int slot, const nm_worker *w, const nm_act *a,
                   float *y, int64_t ldy, uint64_t *a0, uint64_t *a1);
/* y (row i of token t at y[t * ldy + i]) for n_rows rows of weights at wp. */
void nm_multiply(const uint8_t *wp, uint64_t n_rows, const nm_act *a, float *y, int64_t ldy);
/* Prepares x (n_tok vectors of n) for type into the worker's buffer,
 * unless a already holds exactly that. */
void nm_prepare(const nm_scratch *s, nm_act *a, uint32_t type, const float *x, int64_t n,
                int n_tok);

/* model_moe.c: the mixture phases (see model_forward.c) and setup. */
int nm_moe_bind_layer(nm_model *m, int l, nm_error *err);
int nm_moe_setup_scratch(nm_model *m, nm_scratch *s, int os_node, nm_error *err);
int nm_moe_setup_shared(nm_model *m, nm_error *err);
void nm_moe_router(nm_model *m, const nm_worker *w, int l);
void nm_moe_up(nm_model *m, const nm_worker *w, int l);
void nm_moe_down(nm_model *m, const nm_worker *w, int l);
void nm_moe_combine(nm_model *m, const nm_worker *w, int l);
/* Weight bytes of expert_used_count experts of layer l: what a decode step
 * reads of them. */
uint64_t nm_moe_step_bytes(const nm_model *m, int l);

/* model.c: memory on a node (os_node -1: anywhere), freed with the model;
 * plan unit ti (a file tensor or an expert) as a matrix of rows of
 * want_cols. */
void *nm_model_alloc(nm_model *m, size_t bytes, int os_node, nm_error *err);
int nm_bind_mat_index(nm_model *m, int ti, uint64_t want_cols, nm_mat *mt, nm_error *err);

/* model_offload.c */
int nm_offload_create(nm_model *m, const nm_model_offload *o, nm_error *err);
void nm_offload_free(nm_model *m);
/* The first block on the device (n_layer: none). */
int nm_offload_first_layer(const nm_model *m);
bool nm_offload_has_head(const nm_model *m);
/* The device blocks (and head) for the batch in flight: x, after the CPU
 * blocks, to the device; x back, or the logits. */
int nm_offload_eval(nm_model *m, nm_error *err);

#endif
