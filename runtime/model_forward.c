/* The llama-family forward pass (llama, qwen2, qwen3, qwen3moe), run by
 * every worker of the pool at once.
 *
 * Per layer a worker goes through five phases, separated by barriers:
 *   A  x -> RMSNorm -> its rows of Q, K, V (+ biases); per head: RMSNorm
 *      (qwen3), RoPE; K, V into the KV cache
 *      (node barrier: node n's attention needs only node n's Q/K/V rows)
 *   B  attention for its share of node n's query heads
 *   C  its rows of attn_output, added into x (the residual)
 *   D  x -> RMSNorm -> its rows of gate and up -> SwiGLU
 *   E  its rows of ffn_down, added into x
 * A mixture-of-experts block runs four phases instead of D and E (router,
 * experts' gate and up, experts' down, the weighted sum into x: see
 * model_moe.c).
 * For one token each worker normalizes and prepares (nm_act_prepare) the
 * whole input vector itself, into its own node-local buffer: a few
 * microseconds of redundant work that saves a barrier per phase. A batch's
 * inputs are shared by the node's workers instead (prepare_input). */
#include "model_internal.h"

#include "gguf/ggml_types.h"
#include "kernels.h"
#include "ops.h"
#include "gguf/quant.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Workers split a node's rows on multiples of this (kernels work on row
 * groups; RoPE on pairs). */
#define SPLIT_ALIGN 16

void nm_prepare(const nm_scratch *s, nm_act *a, uint32_t type, const float *x, int64_t n,
                int n_tok) {
    if (a->f32 == x && a->n == n && a->n_tok == n_tok && nm_act_same_format(a->wtype, type)) {
        a->wtype = type; /* e.g. Q6_K after Q4_K: the same Q8_K rows */
        return;
    }
    nm_act_prepare(type, x, n, n_tok, s->act, a);
}

/* Batched passes (several tokens, several workers on the node): the node's
 * workers share the normalization and preparation of a matrix input, each
 * taking a share of the tokens into the scratch of the node's first worker,
 * then a node barrier (and where the batch has token-interleaved lines, a
 * share of those and another barrier); every row is the one a worker
 * computes alone. Each worker normalizing and preparing every token itself
 * was 4 % of a serve --parallel 8 step (Q4_K_M, 2 workers). For one token a
 * worker still does it all: a barrier would cost more than the work. */
static bool share_input(const nm_worker *w, int n_tok) {
    return n_tok > 1 && w->n_local > 1;
}

static nm_scratch *input_scratch(nm_model *m, const nm_worker *w, int n_tok) {
    return &m->scr[share_input(w, n_tok) ? w->id - w->local : w->id];
}

/* The tokens [*t0, *t1) of n_tok that this worker normalizes and prepares. */
static void input_share(const nm_worker *w, int n_tok, int *t0, int *t1) {
    uint64_t a = 0, b = (uint64_t)n_tok;
    if (share_input(w, n_tok))
        nm_split_rows((uint64_t)n_tok, w->local, w->n_local, 1, &a, &b);
    *t0 = (int)a;
    *t1 = (int)b;
}

/* RMSNorm (weights norm) of rows[t] (t when rows is NULL) of x for t <
 * n_tok into the input scratch's xb, which is returned: complete once the
 * prepare_input that follows has passed its barrier. */
static float *norm_input(nm_model *m, const nm_worker *w, const float *x, const int *rows,
                         int n_tok, const float *norm) {
    float *xb = input_scratch(m, w, n_tok)->xb;
    const int64_t E = m->hp.n_embd;
    int t0, t1;
    input_share(w, n_tok, &t0, &t1);
    for (int t = t0; t < t1; t++)
        nm_rmsnorm(xb + t * E, x + (int64_t)(rows ? rows[t] : t) * E, norm, E, m->hp.rms_eps);
    return xb;
}

/* a <- x (n_tok vectors of n) prepared for type in the input scratch, unless
 * a holds x in that format already. in_use: a was prepared earlier in the
 * phase and the node's other workers may still read it, so they are waited
 * for before it is overwritten. */
static void prepare_input(nm_model *m, const nm_worker *w, nm_act *a, uint32_t type, const float *x,
                          int64_t n, int n_tok, bool in_use) {
    if (!share_input(w, n_tok)) {
        nm_prepare(&m->scr[w->id], a, type, x, n, n_tok);
        return;
    }
    if (a->f32 == x && a->n == n && a->n_tok == n_tok && nm_act_same_format(a->wtype, type)) {
        a->wtype = type;
        return;
    }
    if (in_use)
        nm_pool_node_barrier(w);
    int t0, t1;
    input_share(w, n_tok, &t0, &t1);
    nm_act_prepare_rows(type, x, n, n_tok, t0, t1, input_scratch(m, w, n_tok)->act, a);
    nm_pool_node_barrier(w);
    if (nm_act_has_lines(a)) { /* from every token's row: a second share */
        nm_act_lines(a, w->local, w->n_local);
        nm_pool_node_barrier(w);
    }
}

/* y (row i of token t at y[t * ldy + i]) for n_rows rows of weights at wp. */
void nm_multiply(const uint8_t *wp, uint64_t n_rows, const nm_act *a, float *y, int64_t ldy) {
    if (a->n_tok == 1)
        nm_matvec(wp, (int64_t)n_rows, a, y);
    else
        nm_matmat(wp, (int64_t)n_rows, a, y, ldy);
}

static uint64_t lcm(uint64_t a, uint64_t b) {
    uint64_t x = a, y = b;
    while (y) {
        uint64_t r = x % y;
        x = y;
        y = r;
    }
    return a / x * b;
}

/* Smallest claim: about this many weight bytes (and SPLIT_ALIGN rows), so
 * the claims' atomic operations stay a small fraction of the streaming. */
#define CLAIM_MIN_BYTES (32 * 1024)

/* Claims the worker's next chunk of the node's rows of mt (slot: its claim
 * counter) and multiplies it into y (row i of token t at y[t * ldy + i]).
 * Returns false when the node's rows are all taken; else the chunk as
 * absolute rows [*a0, *a1). A chunk is 1 / (2 x the node's workers) of what
 * is left, so the last ones are small and the workers finish together.
 * Which worker computes a row does not change its bits. */
bool nm_claim_rows(nm_model *m, const nm_mat *mt, int slot, const nm_worker *w, const nm_act *a,
                   float *y, int64_t ldy, uint64_t *a0, uint64_t *a1) {
    const uint64_t r0 = mt->row0[w->node], n = mt->row1[w->node] - r0;
    uint64_t min_rows = mt->row_bytes ? CLAIM_MIN_BYTES / mt->row_bytes : 1;
    /* Prompt matmat runs tiles of 2 or 3 rows: chunks of 48 rows leave none
     * over (a lone row runs at half speed). */
    const uint64_t align = lcm(a->n_tok > 1 ? 3 * SPLIT_ALIGN : SPLIT_ALIGN, mt->unit_rows);
    min_rows = min_rows > align ? min_rows / align * align : align;
    _Atomic uint64_t *next = &m->claims[w->node][slot].next;
    uint64_t lo = atomic_load_explicit(next, memory_order_relaxed), hi;
    do {
        if (lo >= n)
            return false;
        uint64_t take = (n - lo) / (2 * (uint64_t)w->n_local);
        take = take > min_rows ? (take + align - 1) / align * align : min_rows;
        hi = n - lo > take ? lo + take : n;
    } while (!atomic_compare_exchange_weak_explicit(next, &lo, hi, memory_order_relaxed,
                                                    memory_order_relaxed));
    *a0 = r0 + lo;
    *a1 = r0 + hi;
    if (m->n_tok == 1)
        m->traffic[w->id].weights += (hi - lo) * mt->row_bytes;
    nm_multiply(mt->base[w->node] + lo * mt->row_bytes, hi - lo, a, y + *a0, ldy);
    return true;
}

static int slot_of(int layer, int which) {
    return layer * NM_CLAIMS_PER_LAYER + which;
}

/* buf[t * ld + r] += bias[r] for rows [a0, a1) of every token. */
static void add_bias(const nm_model *m, float *buf, int64_t ld, const float *bias, uint64_t a0,
                     uint64_t a1) {
    if (!bias)
        return;
    for (int t = 0; t < m->n_tok; t++)
        for (uint64_t r = a0; r < a1; r++)
            buf[t * ld + r] += bias[r];
}

/* Rows [a0, a1) of Q or K (whole heads), every token: the bias, the
 * per-head RMSNorm when the architecture has one (qwen3), then RoPE, in
 * llama.cpp's order. */
static void finish_heads(const nm_model *m, float *buf, int64_t ld, const float *bias,
                         const float *norm, uint64_t a0, uint64_t a1) {
    const int hd = (int)m->hp.head_dim, n_rot = (int)m->hp.n_rot;
    add_bias(m, buf, ld, bias, a0, a1);
    for (int t = 0; t < m->n_tok; t++) {
        const float *cs = m->rope + (size_t)t * (n_rot + 2);
        for (uint64_t r = a0; r < a1; r += (uint64_t)hd) {
            float *head = buf + t * ld + r;
            if (norm)
                nm_rmsnorm(head, head, norm, hd, m->hp.rms_eps);
            if (m->hp.rope_type == NM_ROPE_NEOX)
                nm_rope_head_neox(head, cs, n_rot);
            else
                nm_rope_head(head, cs, n_rot);
        }
    }
}

/* Where position 0 of KV head `head`, sequence `seq`, layer `layer` is in
 * its node's cache, in head_dim units. */
static size_t kv_start(const nm_model *m, const nm_kv_node *kv, int layer, uint64_t head, int seq) {
    size_t nh = kv->head1 - kv->head0;
    return (((size_t)layer * nh + (head - kv->head0)) * (size_t)m->n_seq + (size_t)seq) *
           (size_t)m->n_ctx;
}

/* Rows [a0, a1) of K or V (all tokens) into the owning nodes' caches. */
static void store_kv(const nm_model *m, int layer, const float *src, int64_t ld, uint64_t a0,
                     uint64_t a1, bool is_v) {
    const uint64_t hd = m->hp.head_dim;
    for (uint64_t r = a0; r < a1;) {
        uint64_t head = r / hd, d0 = r % hd;
        uint64_t d1 = (a1 - head * hd) < hd ? a1 - head * hd : hd;
        const nm_kv_node *kv = &m->kv[m->kv_owner[head]];
        for (int t = 0; t < m->n_tok; t++) {
            size_t at = (kv_start(m, kv, layer, head, m->tok_seq[t]) + (size_t)m->tok_pos[t]) * hd;
            const float *x = src + t * ld + head * hd;
            if (m->kv_type == NM_TYPE_F16) {
                uint16_t *dst = (uint16_t *)(is_v ? kv->v : kv->k) + at;
                for (uint64_t d = d0; d < d1; d++)
                    dst[d] = nm_f32_to_fp16(x[d]);
            } else {
                float *dst = (float *)(is_v ? kv->v : kv->k) + at;
                memcpy(dst + d0, x + d0, (d1 - d0) * sizeof(float));
            }
        }
        r = head * hd + d1;
    }
}

static void phase_qkv(nm_model *m, const nm_worker *w, int l) {
    const nm_layer *L = &m->layers[l];
    const int n = w->node;
    const int64_t E = m->hp.n_embd, Q = m->q_dim, KV = m->kv_dim;
    const float *xb = norm_input(m, w, m->x, NULL, m->n_tok, L->attn_norm[n]);
    nm_act a = {0};
    uint64_t a0, a1;
    prepare_input(m, w, &a, L->q.type, xb, E, m->n_tok, false);
    while (nm_claim_rows(m, &L->q, slot_of(l, NM_CLAIM_Q), w, &a, m->q, Q, &a0, &a1))
        finish_heads(m, m->q, Q, L->q.bias[n], L->q_norm[n], a0, a1);
    prepare_input(m, w, &a, L->k.type, xb, E, m->n_tok, true);
    while (nm_claim_rows(m, &L->k, slot_of(l, NM_CLAIM_K), w, &a, m->k, KV, &a0, &a1)) {
        finish_heads(m, m->k, KV, L->k.bias[n], L->k_norm[n], a0, a1);
        store_kv(m, l, m->k, KV, a0, a1, false);
    }
    prepare_input(m, w, &a, L->v.type, xb, E, m->n_tok, true);
    while (nm_claim_rows(m, &L->v, slot_of(l, NM_CLAIM_V), w, &a, m->v, KV, &a0, &a1)) {
        add_bias(m, m->v, KV, L->v.bias[n], a0, a1);
        store_kv(m, l, m->v, KV, a0, a1, true);
    }
}

/* One query head of one token against the cached positions of its
 * sequence up to its own. */
static void attend(const nm_model *m, nm_scratch *s, int l, int t, int h) {
    const int hd = (int)m->hp.head_dim;
    const int node = m->kv_owner[h / m->gqa];
    const nm_kv_node *kv = &m->kv[node];
    size_t base = kv_start(m, kv, l, (uint64_t)(h / m->gqa), m->tok_seq[t]) * hd;
    const float *q = m->q + (size_t)t * m->q_dim + (size_t)h * hd;
    float *out = m->att + (size_t)t * m->q_dim + (size_t)h * hd;
    nm_attend_head(q, (const uint8_t *)kv->k + base * m->kv_esize,
                   (const uint8_t *)kv->v + base * m->kv_esize, m->kv_type, hd, m->tok_pos[t] + 1,
                   m->tok_online[t], s->scores, s->head, out);
}

/* Node n answers for the query heads of its KV heads. */
static void phase_attention(nm_model *m, const nm_worker *w, int l) {
    const nm_kv_node *kv = &m->kv[w->node];
    uint64_t h0 = (uint64_t)kv->head0 * m->gqa, nh = (uint64_t)(kv->head1 - kv->head0) * m->gqa;
    uint64_t lo, hi;
    nm_split_rows(nh * (uint64_t)m->n_tok, w->local, w->n_local, 1, &lo, &hi);
    for (uint64_t i = lo; i < hi; i++) {
        int t = (int)(i / nh), h = (int)(h0 + i % nh);
        attend(m, &m->scr[w->id], l, t, h);
        if (m->n_tok == 1 && h % m->gqa == 0) /* each KV head's cache once */
            m->traffic[w->id].kv +=
                2 * (uint64_t)(m->tok_pos[t] + 1) * m->hp.head_dim * m->kv_esize;
    }
}

/* x += in @ mt^T (+ bias) for the worker's rows. */
static void phase_proj_residual(nm_model *m, const nm_worker *w, const nm_mat *mt, int slot,
                                const float *in) {
    const int64_t E = m->hp.n_embd;
    nm_act a = {0};
    uint64_t a0, a1;
    prepare_input(m, w, &a, mt->type, in, (int64_t)mt->n_cols, m->n_tok, false);
    while (nm_claim_rows(m, mt, slot, w, &a, m->y, E, &a0, &a1)) {
        add_bias(m, m->y, E, mt->bias[w->node], a0, a1);
        for (int t = 0; t < m->n_tok; t++) {
            float *x = m->x + t * E;
            const float *y = m->y + t * E;
            for (uint64_t r = a0; r < a1; r++)
                x[r] += y[r];
        }
    }
}

/* Gate and up biases (llama), then SwiGLU, on rows [a0, a1). */
static void swiglu_rows(nm_model *m, const nm_layer *L, int node, uint64_t a0, uint64_t a1) {
    const int64_t F = m->hp.n_ff;
    add_bias(m, m->g, F, L->gate.bias[node], a0, a1);
    add_bias(m, m->u, F, L->up.bias[node], a0, a1);
    for (int t = 0; t < m->n_tok; t++)
        nm_swiglu(m->g + t * F + a0, m->g + t * F + a0, m->u + t * F + a0, (int64_t)(a1 - a0));
}

static void phase_ffn_up(nm_model *m, const nm_worker *w, int l) {
    const nm_layer *L = &m->layers[l];
    const int64_t E = m->hp.n_embd, F = m->hp.n_ff;
    const float *xb = norm_input(m, w, m->x, NULL, m->n_tok, L->ffn_norm[w->node]);
    nm_act a = {0};
    uint64_t a0, a1;
    prepare_input(m, w, &a, L->gate.type, xb, E, m->n_tok, false);
    if (m->gate_up_same && L->up.type == L->gate.type) {
        /* up rows [a0, a1) right after the same gate rows, then SwiGLU on
         * them: one claim counter (gate's) serves both matrices. */
        while (nm_claim_rows(m, &L->gate, slot_of(l, NM_CLAIM_GATE), w, &a, m->g, F, &a0, &a1)) {
            const uint8_t *up = L->up.base[w->node] + (a0 - L->up.row0[w->node]) * L->up.row_bytes;
            if (m->n_tok == 1)
                m->traffic[w->id].weights += (a1 - a0) * L->up.row_bytes;
            nm_multiply(up, a1 - a0, &a, m->u + a0, F);
            swiglu_rows(m, L, w->node, a0, a1);
        }
        return;
    }
    while (nm_claim_rows(m, &L->gate, slot_of(l, NM_CLAIM_GATE), w, &a, m->g, F, &a0, &a1))
        ;
    prepare_input(m, w, &a, L->up.type, xb, E, m->n_tok, true); /* kept when the formats match */
    while (nm_claim_rows(m, &L->up, slot_of(l, NM_CLAIM_UP), w, &a, m->u, F, &a0, &a1))
        ;
    /* Other workers computed some of the matching rows: wait, then combine
     * a global slice. */
    nm_pool_barrier(w);
    nm_split_rows((uint64_t)F, w->id, nm_pool_n_workers(m->pool), SPLIT_ALIGN, &a0, &a1);
    swiglu_rows(m, L, w->node, a0, a1);
}

static void phase_lm_head(nm_model *m, const nm_worker *w) {
    int n_out = m->n_out;
    if (n_out <= 0)
        return;
    const int64_t E = m->hp.n_embd;
    const float *xb = norm_input(m, w, m->x, m->out_tok, n_out, m->out_norm[w->node]);
    nm_act a = {0};
    uint64_t a0, a1;
    prepare_input(m, w, &a, m->output.type, xb, E, n_out, false);
    int slot = (int)m->hp.n_layer * NM_CLAIMS_PER_LAYER;
    const float *bias = m->output.bias[w->node]; /* qwen2's output.bias */
    while (nm_claim_rows(m, &m->output, slot, w, &a, m->logits, m->hp.n_vocab, &a0, &a1))
        for (int t = 0; bias && t < n_out; t++)
            for (uint64_t r = a0; r < a1; r++)
                m->logits[(size_t)t * m->hp.n_vocab + r] += bias[r];
}

static void forward_job(void *ctx, const nm_worker *w) {
    nm_model *m = ctx;
    for (int l = m->l0; l < m->l1; l++) {
        nm_layer *L = &m->layers[l];
        phase_qkv(m, w, l);
        if (m->attn_local)
            nm_pool_node_barrier(w);
        else
            nm_pool_barrier(w);
        phase_attention(m, w, l);
        nm_pool_barrier(w);
        phase_proj_residual(m, w, &L->o, slot_of(l, NM_CLAIM_O), m->att);
        nm_pool_barrier(w);
        if (L->moe) {
            nm_moe_router(m, w, l);
            nm_pool_barrier(w);
            nm_moe_up(m, w, l);
            nm_pool_barrier(w);
            nm_moe_down(m, w, l);
            nm_pool_barrier(w);
            nm_moe_combine(m, w, l);
            nm_pool_barrier(w);
            continue;
        }
        phase_ffn_up(m, w, l);
        nm_pool_barrier(w);
        phase_proj_residual(m, w, &L->down, slot_of(l, NM_CLAIM_DOWN), m->g);
        nm_pool_barrier(w);
    }
    if (m->head_now)
        phase_lm_head(m, w);
}

/* ---- the read probe: the same workers read the same weight bytes with
 * no compute, no claims and no barriers (each worker one contiguous share
 * of its node's rows of each matrix, in the forward pass's order). */

typedef struct read_job {
    nm_model *m;
    uint64_t *sums; /* per worker, NM_READ_STRIDE apart (own cache line) */
    uint64_t *bytes;
} read_job;

#define NM_READ_STRIDE 8

static void read_mat(const nm_mat *mt, const nm_worker *w, uint64_t *sum, uint64_t *bytes) {
    uint64_t lo, hi;
    nm_split_rows(mt->row1[w->node] - mt->row0[w->node], w->local, w->n_local, 1, &lo, &hi);
    *sum += nm_read_sum(mt->base[w->node] + lo * mt->row_bytes, (hi - lo) * mt->row_bytes);
    *bytes += (hi - lo) * mt->row_bytes;
}

static void read_weights_job(void *ctx, const nm_worker *w) {
    read_job *j = ctx;
    const nm_model *m = j->m;
    uint64_t sum = 0, bytes = 0;
    for (int l = 0; l < nm_offload_first_layer(m); l++) { /* the CPU's weights */
        const nm_layer *L = &m->layers[l];
        const nm_mat *e[NM_CLAIMS_PER_LAYER];
        int n = nm_layer_mats(L, e);
        for (int i = 0; i < n; i++)
            read_mat(e[i], w, &sum, &bytes);
        /* a mixture: the first expert_used_count experts, as many as a
         * decode step reads */
        for (uint32_t x = 0; L->moe && x < m->hp.n_expert_used; x++) {
            read_mat(&L->moe->gate[x], w, &sum, &bytes);
            read_mat(&L->moe->up[x], w, &sum, &bytes);
            read_mat(&L->moe->down[x], w, &sum, &bytes);
        }
    }
    if (!nm_offload_has_head(m))
        read_mat(&m->output, w, &sum, &bytes);
    j->sums[w->id * NM_READ_STRIDE] = sum;
    j->bytes[w->id * NM_READ_STRIDE] = bytes;
}

int nm_model_read_pass(nm_model *m, uint64_t *sum, uint64_t *bytes) {
    int nw = nm_pool_n_workers(m->pool);
    uint64_t *buf = calloc((size_t)nw * NM_READ_STRIDE * 2, sizeof *buf);
    if (!buf)
        return -1;
    read_job j = {.m = m, .sums = buf, .bytes = buf + (size_t)nw * NM_READ_STRIDE};
    nm_pool_run(m->pool, read_weights_job, &j);
    *sum = *bytes = 0;
    for (int i = 0; i < nw; i++) {
        *sum += j.sums[i * NM_READ_STRIDE];
        *bytes += j.bytes[i * NM_READ_STRIDE];
    }
    free(buf);
    return 0;
}

static nm_rope_params rope_params(const nm_model *m) {
    return (nm_rope_params){.base = m->hp.rope_freq_base,
                            .freq_scale = m->hp.rope_freq_scale,
                            .attn_factor = m->hp.rope_attn_factor,
                            .freq_factors = m->rope_freqs};
}

static void clear_claims(nm_model *m) {
    for (int node = 0; node < m->plan->n_nodes; node++)
        memset(m->claims[node], 0, (size_t)m->n_claims * sizeof(nm_claim));
}

static int embed(nm_model *m, const int32_t *tokens, int n, nm_error *err) {
    const nm_gguf_tensor *t = &m->w->gguf->tensors[m->embd_ti];
    for (int i = 0; i < n; i++) {
        const void *row = nm_loaded_row(m->w, m->embd_ti, (uint64_t)tokens[i]);
        if (!row ||
            nm_dequantize_row(t->type, row, m->x + (size_t)i * m->hp.n_embd, m->hp.n_embd) < 0)
            return nm_fail(err, "token_embd.weight: cannot read row %d (type %s)", tokens[i],
                           nm_type_name(t->type));
    }
    return 0;
}

/* The device's blocks, then the CPU's LM head when the head stayed here:
 * activations cross once each way. */
static int run_device_share(nm_model *m, nm_error *err) {
    if (nm_offload_eval(m, err) < 0)
        return -1;
    if (nm_offload_has_head(m) || m->logits_from >= m->n_tok)
        return 0;
    m->l0 = m->l1 = (int)m->hp.n_layer;
    m->head_now = true;
    nm_pool_run(m->pool, forward_job, m);
    return 0;
}

/* A sequence continues where its cache ends or earlier (pos 0 starts it
 * anew): a later position would attend over positions never computed. */
static int check_continues(const nm_model *m, int seq, int pos, nm_error *err) {
    if (pos <= m->seq_len[seq])
        return 0;
    return nm_fail(err,
                   "model eval: sequence %d continues at position %d, but its cache holds %d "
                   "positions (continue at %d at most; 0 starts it anew)",
                   seq, pos, m->seq_len[seq], m->seq_len[seq]);
}

int nm_model_eval(nm_model *m, const int32_t *tokens, int n, int pos, int logits_from,
                  float *logits, nm_error *err) {
    if (n < 0 || pos < 0 || pos > m->n_ctx - n)
        return nm_fail(err,
                       "context full: positions %d..%d do not fit in a context of "
                       "%d tokens",
                       pos, pos + n - 1, m->n_ctx);
    if (check_continues(m, 0, pos, err) < 0)
        return -1;
    if (logits_from < 0 || logits_from > n || (logits_from < n && !logits))
        return nm_fail(err, "model eval: bad logits range %d of %d", logits_from, n);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= m->hp.n_vocab)
            return nm_fail(err, "token id %d is outside the vocabulary of %u", tokens[i],
                           m->hp.n_vocab);
    const int n_rot = (int)m->hp.n_rot;
    const nm_rope_params rope = rope_params(m);
    for (int b = 0; b < n; b += m->n_batch) {
        int nt = n - b < m->n_batch ? n - b : m->n_batch;
        m->seq_len[0] = pos + b; /* the positions from here on are being rewritten */
        if (embed(m, tokens + b, nt, err) < 0)
            return -1;
        for (int t = 0; t < nt; t++)
            nm_rope_table(m->rope + (size_t)t * (n_rot + 2), pos + b + t, n_rot, &rope);
        int first = logits_from > b ? logits_from : b; /* first token with logits */
        if (first > b + nt)
            first = b + nt;
        m->n_tok = nt;
        m->pos = pos + b;
        /* llama.cpp evaluates up to 512 tokens at a time (its n_ubatch) and
         * attends in F32 tiles when there are at least 64 of them, else
         * with its F16 one-query path (nm_attend_f16_online). */
        bool online = n - b / 512 * 512 < 64;
        m->attn_f16_online = online;
        m->logits_from = first - b;
        m->logits = logits ? logits + (size_t)(first - logits_from) * m->hp.n_vocab : NULL;
        m->n_out = nt - m->logits_from;
        for (int t = 0; t < nt; t++) {
            m->tok_seq[t] = 0;
            m->tok_pos[t] = pos + b + t;
            m->tok_online[t] = online;
            m->out_tok[t] = m->logits_from + t; /* the first n_out are used */
        }
        clear_claims(m);
        m->l0 = 0;
        m->l1 = nm_offload_first_layer(m);
        m->head_now = !m->off;
        m->decode_evals += nt == 1;
        if (m->l1 > 0 || m->head_now)
            nm_pool_run(m->pool, forward_job, m);
        if (m->off && run_device_share(m, err) < 0)
            return -1;
        m->seq_len[0] = pos + b + nt;
    }
    return 0;
}

/* Each sequence's tokens in order of consecutive positions, inside the
 * context, of valid ids. */
static int check_batch(nm_model *m, const nm_batch_tok *b, int n, const float *logits,
                       nm_error *err) {
    if (n < 0 || n > m->n_batch)
        return nm_fail(err, "model eval: a batch of %d tokens (at most %d)", n, m->n_batch);
    for (int s = 0; s < m->n_seq; s++)
        m->seq_next[s] = -1;
    for (int i = 0; i < n; i++) {
        const nm_batch_tok *t = &b[i];
        if (t->seq < 0 || t->seq >= m->n_seq)
            return nm_fail(err, "model eval: token %d of the batch is in sequence %d of %d", i,
                           t->seq, m->n_seq);
        if (t->pos < 0 || t->pos >= m->n_ctx)
            return nm_fail(err,
                           "context full: position %d of sequence %d does not fit in a "
                           "context of %d tokens",
                           t->pos, t->seq, m->n_ctx);
        if (m->seq_next[t->seq] >= 0 && t->pos != m->seq_next[t->seq])
            return nm_fail(err, "model eval: sequence %d has position %d after %d in the batch",
                           t->seq, t->pos, m->seq_next[t->seq] - 1);
        if (m->seq_next[t->seq] < 0 && check_continues(m, t->seq, t->pos, err) < 0)
            return -1;
        m->seq_next[t->seq] = t->pos + 1;
        if (t->token < 0 || (uint32_t)t->token >= m->hp.n_vocab)
            return nm_fail(err, "token id %d is outside the vocabulary of %u", t->token,
                           m->hp.n_vocab);
        if (t->logits && !logits)
            return nm_fail(err, "model eval: logits asked for and no buffer");
    }
    return 0;
}

int nm_model_eval_batch(nm_model *m, const nm_batch_tok *b, int n, float *logits, nm_error *err) {
    if (check_batch(m, b, n, logits, err) < 0)
        return -1;
    if (m->off)
        return nm_fail(err, "model eval: batches of several sequences do not run on a device "
                            "(-ngl)");
    if (n == 0)
        return 0;
    const int n_rot = (int)m->hp.n_rot;
    const nm_rope_params rope = rope_params(m);
    int *count = m->seq_next; /* each sequence's tokens in this batch */
    memset(count, 0, (size_t)m->n_seq * sizeof *count);
    for (int t = 0; t < n; t++)
        count[b[t].seq]++;
    m->n_out = 0;
    for (int t = 0; t < n; t++) {
        m->tok_ids[t] = b[t].token;
        m->tok_seq[t] = b[t].seq;
        m->tok_pos[t] = b[t].pos;
        /* a sequence attends as it would in a batch of its own tokens
         * (nm_model_eval's rule), whatever the other sequences bring */
        m->tok_online[t] = count[b[t].seq] < 64;
        if (b[t].logits)
            m->out_tok[m->n_out++] = t;
        nm_rope_table(m->rope + (size_t)t * (n_rot + 2), b[t].pos, n_rot, &rope);
    }
    if (embed(m, m->tok_ids, n, err) < 0)
        return -1;
    m->n_tok = n;
    m->pos = -1; /* several sequences: only the arrays above hold positions */
    m->logits_from = n;
    m->logits = logits;
    clear_claims(m);
    m->l0 = 0;
    m->l1 = (int)m->hp.n_layer;
    m->head_now = true;
    m->decode_evals += n == 1;
    nm_pool_run(m->pool, forward_job, m);
    for (int t = 0; t < n; t++) /* a sequence's last token here ends its cache */
        m->seq_len[b[t].seq] = b[t].pos + 1;
    return 0;
}
