/* Binding the weights and allocating per-node state. The forward pass itself
 * is in model_forward.c. */
#include "model_internal.h"

#include "common/util.h"
#include "gguf/ggml_types.h"
#include "kernels.h"

#include <numa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

nm_model_opts nm_model_opts_default(void) {
    return (nm_model_opts){.n_ctx = 0, .kv_type = NM_TYPE_F16, .n_batch = 64};
}

/* Node-local memory for KV caches and worker scratch. On a foreign (XML)
 * topology or without libnuma, plain zeroed memory. */
void *nm_model_alloc(nm_model *m, size_t bytes, int os_node, nm_error *err) {
    if (bytes == 0)
        bytes = 64;
    nm_alloc_rec *r = nm_grow(m->allocs, &m->cap_allocs, (size_t)m->n_allocs, 64, sizeof *r);
    if (!r) {
        nm_fail(err, "model: out of memory for bookkeeping");
        return NULL;
    }
    m->allocs = r;
    void *p = NULL;
    bool numa = m->numa_alloc && os_node >= 0;
    if (numa)
        p = numa_alloc_onnode(bytes, os_node);
    else if ((p = aligned_alloc(64, nm_align_up(bytes, 64))) != NULL)
        memset(p, 0, bytes);
    if (!p) {
        char b[32];
        nm_fail(err, "model: cannot allocate %s%s%d", nm_fmt_bytes(bytes, b, sizeof b),
                numa ? " on NUMA node " : " (node ", os_node);
        return NULL;
    }
    m->allocs[m->n_allocs++] = (nm_alloc_rec){p, bytes, numa};
    return p;
}

static int find_tensor(const nm_model *m, const char *name, nm_error *err) {
    int64_t ti = nm_gguf_tensor_index(m->w->gguf, name);
    if (ti < 0)
        return nm_fail(err, "%s: tensor '%s' is missing", m->w->gguf->path, name);
    return (int)ti;
}

/* A vector (norm weights, a bias, rope factors) of n F32 values, one
 * pointer per node into memory local to it; absent and optional: NULLs. */
static int bind_vec(nm_model *m, const char *name, uint64_t n, bool optional, const float **dst,
                    nm_error *err) {
    int64_t ti = nm_gguf_tensor_index(m->w->gguf, name);
    if (ti < 0 && optional)
        return 0;
    if (ti < 0)
        return nm_fail(err, "%s: tensor '%s' is missing", m->w->gguf->path, name);
    const nm_gguf_tensor *t = &m->w->gguf->tensors[ti];
    if (t->ne[0] != n || t->n_rows != 1 || t->type != NM_TYPE_F32)
        return nm_fail(err, "%s: '%s' is %llu x %llu %s, expected %llu F32 values",
                       m->w->gguf->path, name, (unsigned long long)t->ne[0],
                       (unsigned long long)t->n_rows, nm_type_name(t->type), (unsigned long long)n);
    for (int k = 0; k < m->plan->n_nodes; k++)
        if (!(dst[k] = nm_loaded_tensor(m->w, (int)ti, k)))
            return nm_fail(err, "%s: the loader holds no full copy of '%s' for node %d",
                           m->w->gguf->path, name, m->plan->nodes[k].os_index);
    return 0;
}

/* A weight matrix: the plan must split its rows over the nodes in order
 * and without gaps; node n reads its rows from nm_loaded_rows. */
int nm_bind_mat_index(nm_model *m, int ti, uint64_t want_cols, nm_mat *mt, nm_error *err) {
    const nm_gguf_tensor *t = m->plan->tensors[ti].t; /* a file tensor or an expert */
    const nm_tensor_plan *tp = &m->plan->tensors[ti];
    memset(mt, 0, sizeof *mt);
    mt->ti = ti;
    mt->type = t->type;
    mt->n_cols = t->ne[0];
    mt->n_rows = t->n_rows;
    mt->row_bytes = t->row_bytes;
    mt->unit_rows = 1;
    if (t->ne[0] != want_cols)
        return nm_fail(err, "%s: '%s' rows have %llu elements, expected %llu", m->w->gguf->path,
                       t->name, (unsigned long long)t->ne[0], (unsigned long long)want_cols);
    uint64_t next = 0;
    for (int n = 0; n < m->plan->n_nodes; n++) {
        uint64_t r0 = tp->rows[n].row0, r1 = tp->rows[n].row1;
        if (r0 != next || r1 < r0 || r1 > t->n_rows)
            return nm_fail(err,
                           "plan: rows of '%s' for node %d are [%llu, %llu), "
                           "expected to start at %llu",
                           t->name, m->plan->nodes[n].os_index, (unsigned long long)r0,
                           (unsigned long long)r1, (unsigned long long)next);
        mt->row0[n] = r0;
        mt->row1[n] = r1;
        next = r1;
        if (r1 == r0)
            continue;
        mt->base[n] = nm_loaded_rows(m->w, ti, n);
        if (!mt->base[n])
            return nm_fail(err, "loader: no rows of '%s' for node %d", t->name,
                           m->plan->nodes[n].os_index);
    }
    if (next != t->n_rows)
        return nm_fail(err, "plan: the nodes compute %llu of the %llu rows of '%s'",
                       (unsigned long long)next, (unsigned long long)t->n_rows, t->name);
    return 0;
}

/* blk.l.<kind> as a matrix of rows of want_cols, with its optional bias. */
static int bind_blk_mat(nm_model *m, int l, nm_blk_tensor kind, nm_blk_tensor bias,
                        uint64_t want_cols, nm_mat *mt, nm_error *err) {
    char name[96];
    snprintf(name, sizeof name, "blk.%d.%s", l, nm_blk_tensor_suffix(kind));
    int ti = find_tensor(m, name, err);
    if (ti < 0 || nm_bind_mat_index(m, ti, want_cols, mt, err) < 0)
        return -1;
    snprintf(name, sizeof name, "blk.%d.%s", l, nm_blk_tensor_suffix(bias));
    return bind_vec(m, name, mt->n_rows, true, mt->bias, err);
}

static int bind_blk_vec(nm_model *m, int l, nm_blk_tensor kind, uint64_t n, const float **dst,
                        nm_error *err) {
    char name[96];
    snprintf(name, sizeof name, "blk.%d.%s", l, nm_blk_tensor_suffix(kind));
    return bind_vec(m, name, n, nm_blk_tensor_use(&m->hp, kind) < 2, dst, err);
}

static bool rows_are(const nm_mat *mt, int n, uint64_t r0, uint64_t r1) {
    return mt->row0[n] == r0 && mt->row1[n] == r1;
}

static int bind_layer(nm_model *m, int l, nm_error *err) {
    nm_layer *L = &m->layers[l];
    const nm_llama_hparams *hp = &m->hp;
    const uint64_t E = hp->n_embd, hd = hp->head_dim;
    if (bind_blk_vec(m, l, NM_BLK_ATTN_NORM, E, L->attn_norm, err) < 0 ||
        bind_blk_vec(m, l, NM_BLK_FFN_NORM, E, L->ffn_norm, err) < 0 ||
        bind_blk_vec(m, l, NM_BLK_Q_NORM, hd, L->q_norm, err) < 0 ||
        bind_blk_vec(m, l, NM_BLK_K_NORM, hd, L->k_norm, err) < 0 ||
        bind_blk_mat(m, l, NM_BLK_Q, NM_BLK_Q_BIAS, E, &L->q, err) < 0 ||
        bind_blk_mat(m, l, NM_BLK_K, NM_BLK_K_BIAS, E, &L->k, err) < 0 ||
        bind_blk_mat(m, l, NM_BLK_V, NM_BLK_V_BIAS, E, &L->v, err) < 0 ||
        bind_blk_mat(m, l, NM_BLK_O, NM_BLK_O_BIAS, (uint64_t)m->q_dim, &L->o, err) < 0)
        return -1;
    if (hp->n_expert
            ? nm_moe_bind_layer(m, l, err) < 0
            : bind_blk_mat(m, l, NM_BLK_GATE, NM_BLK_GATE_BIAS, E, &L->gate, err) < 0 ||
                  bind_blk_mat(m, l, NM_BLK_UP, NM_BLK_UP_BIAS, E, &L->up, err) < 0 ||
                  bind_blk_mat(m, l, NM_BLK_DOWN, NM_BLK_DOWN_BIAS, hp->n_ff, &L->down, err) < 0)
        return -1;
    /* Q and K are claimed in whole heads: the per-head norm and RoPE run on
     * a worker's own rows right after it computed them. */
    L->q.unit_rows = L->k.unit_rows = hd;
    for (int n = 0; n < m->plan->n_nodes; n++) {
        uint64_t h0 = m->kv[n].head0, h1 = m->kv[n].head1;
        /* Attention then needs only what this node computed: a node-local
         * barrier suffices between the QKV and attention phases. */
        if (!rows_are(&L->q, n, h0 * m->gqa * hd, h1 * m->gqa * hd) ||
            !rows_are(&L->k, n, h0 * hd, h1 * hd) || !rows_are(&L->v, n, h0 * hd, h1 * hd))
            m->attn_local = false;
        if (!L->moe && !rows_are(&L->up, n, L->gate.row0[n], L->gate.row1[n]))
            m->gate_up_same = false;
        if ((L->q.row0[n] | L->k.row0[n]) % hd)
            return nm_fail(err, "plan: blk.%d attention rows of node %d do not start on a head", l,
                           m->plan->nodes[n].os_index);
    }
    return 0;
}

static int setup_kv(nm_model *m, nm_error *err) {
    const nm_llama_hparams *hp = &m->hp;
    if (!(m->kv_owner = nm_calloc(hp->n_head_kv, sizeof *m->kv_owner, "the KV head owners", err)))
        return -1;
    uint32_t next = 0;
    for (int n = 0; n < m->plan->n_nodes; n++) {
        const nm_plan_node *pn = &m->plan->nodes[n];
        if (pn->kv_head0 != next || pn->kv_head1 < pn->kv_head0 || pn->kv_head1 > hp->n_head_kv)
            return nm_fail(err, "plan: node %d owns KV heads [%u, %u), expected to start at %u",
                           pn->os_index, pn->kv_head0, pn->kv_head1, next);
        next = pn->kv_head1;
        nm_kv_node *kv = &m->kv[n];
        kv->head0 = pn->kv_head0;
        kv->head1 = pn->kv_head1;
        for (uint32_t h = kv->head0; h < kv->head1; h++)
            m->kv_owner[h] = n;
        size_t bytes = (size_t)hp->n_layer * (kv->head1 - kv->head0) * (size_t)m->n_seq *
                       (size_t)m->n_ctx * hp->head_dim * m->kv_esize;
        kv->k = nm_model_alloc(m, bytes, pn->os_index, err);
        kv->v = kv->k ? nm_model_alloc(m, bytes, pn->os_index, err) : NULL;
        if (!kv->v)
            return nm_fail_prefix(err, "KV cache of node %d (%d sequences of %d positions)",
                                  pn->os_index, m->n_seq, m->n_ctx);
    }
    if (next != hp->n_head_kv)
        return nm_fail(err, "plan: the nodes own %u of the %u KV heads", next, hp->n_head_kv);
    return 0;
}

static size_t act_bytes_max(const nm_model *m) {
    size_t best = 0;
    int nb = m->n_batch;
    for (uint32_t l = 0; l < m->hp.n_layer; l++) {
        const nm_layer *L = &m->layers[l];
        const nm_mat *e[NM_CLAIMS_PER_LAYER];
        int n = nm_layer_mats(L, e);
        for (int i = 0; i < n; i++) {
            size_t b = nm_act_buffer_bytes(e[i]->type, (int64_t)e[i]->n_cols, nb);
            best = b > best ? b : best;
        }
        for (uint32_t x = 0; L->moe && x < m->hp.n_expert; x++) {
            const nm_mat *ex[] = {&L->moe->gate[x], &L->moe->up[x], &L->moe->down[x]};
            for (int i = 0; i < 3; i++) {
                size_t b = nm_act_buffer_bytes(ex[i]->type, (int64_t)ex[i]->n_cols, nb);
                best = b > best ? b : best;
            }
        }
    }
    size_t b = nm_act_buffer_bytes(m->output.type, m->hp.n_embd, nb);
    return b > best ? b : best;
}

static int setup_scratch(nm_model *m, nm_error *err) {
    const nm_llama_hparams *hp = &m->hp;
    size_t nb = (size_t)m->n_batch;
    int nw = nm_pool_n_workers(m->pool);
    if (!(m->scr = nm_calloc((size_t)nw, sizeof *m->scr, "the worker scratch list", err)))
        return -1;
    m->traffic = aligned_alloc(64, (size_t)nw * sizeof *m->traffic);
    if (!m->traffic)
        return nm_fail(err, "model: out of memory for %d traffic counters", nw);
    memset(m->traffic, 0, (size_t)nw * sizeof *m->traffic);
    size_t act = act_bytes_max(m);
    int id = 0;
    for (int n = 0; n < m->plan->n_nodes; n++) {
        int os = m->plan->nodes[n].os_index;
        for (int l = 0; l < m->plan->nodes[n].n_threads; l++, id++) {
            nm_scratch *s = &m->scr[id];
            s->xb = nm_model_alloc(m, nb * hp->n_embd * sizeof(float), os, err);
            s->act = s->xb ? nm_model_alloc(m, act, os, err) : NULL;
            s->scores =
                s->act ? nm_model_alloc(m, (size_t)m->n_ctx * sizeof(float), os, err) : NULL;
            s->head = s->scores
                          ? nm_model_alloc(m, 2 * (size_t)hp->head_dim * sizeof(float), os, err)
                          : NULL;
            if (!s->head || (hp->n_expert && nm_moe_setup_scratch(m, s, os, err) < 0))
                return nm_fail_prefix(err, "worker scratch");
        }
    }
    /* every layer's slots, the LM head's, then each expert's two */
    m->expert_slot0 = (int)hp->n_layer * NM_CLAIMS_PER_LAYER + 1;
    m->n_claims = m->expert_slot0 + (int)(hp->n_layer * hp->n_expert * 2);
    for (int n = 0; n < m->plan->n_nodes; n++)
        if (!(m->claims[n] = nm_model_alloc(m, (size_t)m->n_claims * sizeof(nm_claim),
                                            m->plan->nodes[n].os_index, err)))
            return nm_fail_prefix(err, "row claims");
    /* The vectors exchanged between nodes: small, so one copy. */
    size_t E = hp->n_embd, Q = (size_t)m->q_dim, KV = (size_t)m->kv_dim, F = hp->n_ff;
    if (!(m->x = nm_model_alloc(m, nb * E * sizeof(float), -1, err)) ||
        !(m->y = nm_model_alloc(m, nb * E * sizeof(float), -1, err)) ||
        !(m->q = nm_model_alloc(m, nb * Q * sizeof(float), -1, err)) ||
        !(m->att = nm_model_alloc(m, nb * Q * sizeof(float), -1, err)) ||
        !(m->k = nm_model_alloc(m, nb * KV * sizeof(float), -1, err)) ||
        !(m->v = nm_model_alloc(m, nb * KV * sizeof(float), -1, err)) ||
        !(m->g = nm_model_alloc(m, nb * F * sizeof(float), -1, err)) ||
        !(m->u = nm_model_alloc(m, nb * F * sizeof(float), -1, err)) ||
        !(m->rope = nm_model_alloc(m, nb * (hp->n_rot + 2) * sizeof(float), -1, err)) ||
        !(m->tok_seq = nm_model_alloc(m, nb * sizeof(int), -1, err)) ||
        !(m->tok_pos = nm_model_alloc(m, nb * sizeof(int), -1, err)) ||
        !(m->out_tok = nm_model_alloc(m, nb * sizeof(int), -1, err)) ||
        !(m->tok_ids = nm_model_alloc(m, nb * sizeof(int32_t), -1, err)) ||
        !(m->tok_online = nm_model_alloc(m, nb * sizeof(bool), -1, err)) ||
        !(m->seq_next = nm_model_alloc(m, (size_t)m->n_seq * sizeof(int), -1, err)) ||
        !(m->seq_len = nm_model_alloc(m, (size_t)m->n_seq * sizeof(int), -1, err)) ||
        (hp->n_expert && nm_moe_setup_shared(m, err) < 0))
        return -1;
    return 0;
}

static int bind_all(nm_model *m, nm_error *err) {
    const nm_llama_hparams *hp = &m->hp;
    if (!(m->layers = nm_calloc(hp->n_layer, sizeof *m->layers, "the layer table", err)))
        return -1;
    m->attn_local = true;
    m->gate_up_same = true;
    if (setup_kv(m, err) < 0)
        return -1;
    for (uint32_t l = 0; l < hp->n_layer; l++)
        if (bind_layer(m, (int)l, err) < 0)
            return -1;
    const float *freqs[NM_MAX_NODES] = {0};
    if (bind_vec(m, "output_norm.weight", hp->n_embd, false, m->out_norm, err) < 0 ||
        bind_vec(m, "rope_freqs.weight", hp->n_rot / 2, true, freqs, err) < 0)
        return -1;
    m->rope_freqs = freqs[0]; /* read by the thread that builds the rope table */
    m->embd_ti = find_tensor(m, "token_embd.weight", err);
    if (m->embd_ti < 0)
        return -1;
    /* No output.weight: the LM head is the (tied) embedding matrix. */
    int64_t out = nm_gguf_tensor_index(m->w->gguf, "output.weight");
    if (nm_bind_mat_index(m, out >= 0 ? (int)out : m->embd_ti, hp->n_embd, &m->output, err) < 0 ||
        bind_vec(m, "output.bias", hp->n_vocab, true, m->output.bias, err) < 0)
        return -1;
    if (m->output.n_rows != hp->n_vocab)
        return nm_fail(err, "%s: the LM head has %llu rows for a vocabulary of %u",
                       m->w->gguf->path, (unsigned long long)m->output.n_rows, hp->n_vocab);
    return 0;
}

static int check_options(nm_model *m, const nm_model_opts *o, nm_error *err) {
    if (o->kv_type != NM_TYPE_F16 && o->kv_type != NM_TYPE_F32)
        return nm_fail(err, "KV cache type %s is not supported (f16 or f32)",
                       nm_type_name(o->kv_type));
    m->kv_type = o->kv_type;
    m->kv_esize = o->kv_type == NM_TYPE_F16 ? 2 : 4;
    m->n_ctx = o->n_ctx > 0 ? o->n_ctx : (int)m->hp.n_ctx_train;
    if (m->n_ctx <= 0 || m->n_ctx > (1 << 24))
        return nm_fail(err, "%s: context of %d tokens is out of range (set -c)", m->w->gguf->path,
                       m->n_ctx);
    m->n_batch = o->n_batch > 0 ? o->n_batch : 64;
    if (m->n_batch > 4096)
        m->n_batch = 4096;
    m->n_seq = o->n_seq > 0 ? o->n_seq : 1;
    if (m->n_seq > 4096)
        return nm_fail(err, "%d KV sequences: at most 4096", m->n_seq);
    if (m->n_seq > 1 && o->offload.dev && (o->offload.n_layers > 0 || o->offload.head))
        return nm_fail(err, "blocks on a device (-ngl) run one sequence; %d asked for", m->n_seq);
    if (m->hp.n_rot % 2 || m->hp.n_rot > m->hp.head_dim || m->hp.head_dim % 2)
        return nm_fail(err, "%s: rope dimension %u / head size %u are not supported",
                       m->w->gguf->path, m->hp.n_rot, m->hp.head_dim);
    m->gqa = (int)(m->hp.n_head / m->hp.n_head_kv);
    m->q_dim = (int64_t)m->hp.n_head * m->hp.head_dim;
    m->kv_dim = (int64_t)m->hp.n_head_kv * m->hp.head_dim;
    return 0;
}

nm_model *nm_model_create(const nm_loaded *w, const nm_topo *topo, const nm_model_opts *opts,
                          nm_error *err) {
    nm_model *m = nm_calloc(1, sizeof *m, "the model", err);
    if (!m)
        return NULL;
    m->w = w;
    m->plan = w->plan;
    m->numa_alloc = topo && !topo->from_xml && numa_available() >= 0;
    nm_model_opts def = nm_model_opts_default();
    if (nm_llama_hparams_read(w->gguf, &m->hp, true, err) < 0 ||
        nm_llama_check_tensors(w->gguf, &m->hp, err) < 0 ||
        check_options(m, opts ? opts : &def, err) < 0)
        goto fail;
    if (!(m->pool = nm_pool_create(m->plan, topo, err)))
        goto fail;
    if (bind_all(m, err) < 0 || setup_scratch(m, err) < 0 ||
        (opts && nm_offload_create(m, &opts->offload, err) < 0))
        goto fail;
    return m;
fail:
    nm_model_free(m);
    return NULL;
}

void nm_model_free(nm_model *m) {
    if (!m)
        return;
    nm_offload_free(m);
    nm_pool_free(m->pool);
    for (int i = 0; i < m->n_allocs; i++) {
        if (m->allocs[i].numa)
            numa_free(m->allocs[i].p, m->allocs[i].bytes);
        else
            free(m->allocs[i].p);
    }
    free(m->allocs);
    free(m->layers);
    free(m->kv_owner);
    free(m->scr);
    free(m->traffic);
    free(m);
}

const nm_llama_hparams *nm_model_hparams(const nm_model *m) {
    return &m->hp;
}
int nm_model_n_ctx(const nm_model *m) {
    return m->n_ctx;
}
int nm_model_n_seq(const nm_model *m) {
    return m->n_seq;
}
int nm_model_n_batch(const nm_model *m) {
    return m->n_batch;
}
int nm_model_n_vocab(const nm_model *m) {
    return (int)m->hp.n_vocab;
}
int nm_model_n_threads(const nm_model *m) {
    return nm_pool_n_workers(m->pool);
}
uint32_t nm_model_kv_type(const nm_model *m) {
    return m->kv_type;
}

void nm_model_traffic(const nm_model *m, int node, uint64_t *weights, uint64_t *kv,
                      uint64_t *evals) {
    *weights = *kv = 0;
    for (int i = 0, id = 0; i < m->plan->n_nodes; i++)
        for (int t = 0; t < m->plan->nodes[i].n_threads; t++, id++)
            if (i == node) {
                *weights += m->traffic[id].weights;
                *kv += m->traffic[id].kv;
            }
    *evals = m->decode_evals;
}

uint64_t nm_model_weight_bytes_per_token(const nm_model *m) {
    const nm_gguf *g = m->w->gguf;
    uint64_t sum = g->tensors[m->output.ti].nbytes + g->tensors[m->embd_ti].row_bytes;
    for (uint32_t l = 0; l < m->hp.n_layer; l++) {
        const nm_mat *e[NM_CLAIMS_PER_LAYER];
        int n = nm_layer_mats(&m->layers[l], e);
        for (int i = 0; i < n; i++)
            sum += g->tensors[e[i]->ti].nbytes;
        if (m->layers[l].moe)
            sum += nm_moe_step_bytes(m, (int)l);
    }
    return sum;
}
