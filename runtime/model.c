/* Binding the weights and allocating per-node state. The forward pass itself
 * is in model_forward.c. */
#include "model_internal.h"

#include "common/util.h"
#include "gguf/ggml_types.h"
#include "kernels.h"
#include "gguf/quant.h"

#include <numa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

nm_model_opts nm_model_opts_default(void) {
    return (nm_model_opts){.n_ctx = 0, .kv_type = NM_TYPE_F16, .n_batch = 64};
}

/* Node-local memory for KV caches and worker scratch. On a foreign (XML)
 * topology or without libnuma, plain zeroed memory. */
static void *model_alloc(nm_model *m, size_t bytes, int os_node, nm_error *err) {
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

/* Norm weights as F32, one pointer per node into memory local to it. */
static int bind_norm(nm_model *m, const char *name, const float **dst, nm_error *err) {
    int ti = find_tensor(m, name, err);
    if (ti < 0)
        return -1;
    const nm_gguf_tensor *t = &m->w->gguf->tensors[ti];
    if (t->ne[0] != m->hp.n_embd || t->n_rows != 1)
        return nm_fail(err, "%s: '%s' has %llu x %llu elements, expected %u", m->w->gguf->path,
                       name, (unsigned long long)t->ne[0], (unsigned long long)t->n_rows,
                       m->hp.n_embd);
    for (int n = 0; n < m->plan->n_nodes; n++) {
        const void *p = nm_loaded_tensor(m->w, ti, n);
        if (!p)
            return nm_fail(err, "%s: the loader holds no full copy of '%s' for node %d",
                           m->w->gguf->path, name, m->plan->nodes[n].os_index);
        if (t->type == NM_TYPE_F32) {
            dst[n] = p;
            continue;
        }
        float *f = model_alloc(m, m->hp.n_embd * sizeof(float), m->plan->nodes[n].os_index, err);
        if (!f)
            return -1;
        if (nm_dequantize_row(t->type, p, f, m->hp.n_embd) < 0)
            return nm_fail(err, "%s: '%s' has type %s, which numalm cannot read as a norm",
                           m->w->gguf->path, name, nm_type_name(t->type));
        dst[n] = f;
    }
    return 0;
}

/* A weight matrix: the plan must split its rows over the nodes in order
 * and without gaps; node n reads its rows from nm_loaded_rows. */
static int bind_mat_index(nm_model *m, int ti, uint64_t want_cols, nm_mat *mt, nm_error *err) {
    const nm_gguf_tensor *t = &m->w->gguf->tensors[ti];
    const nm_tensor_plan *tp = &m->plan->tensors[ti];
    memset(mt, 0, sizeof *mt);
    mt->ti = ti;
    mt->type = t->type;
    mt->n_cols = t->ne[0];
    mt->n_rows = t->n_rows;
    mt->row_bytes = t->row_bytes;
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

static int bind_mat(nm_model *m, const char *name, uint64_t want_cols, nm_mat *mt, nm_error *err) {
    int ti = find_tensor(m, name, err);
    return ti < 0 ? -1 : bind_mat_index(m, ti, want_cols, mt, err);
}

static bool rows_are(const nm_mat *mt, int n, uint64_t r0, uint64_t r1) {
    return mt->row0[n] == r0 && mt->row1[n] == r1;
}

static int bind_layer(nm_model *m, int l, nm_error *err) {
    nm_layer *L = &m->layers[l];
    const nm_llama_hparams *hp = &m->hp;
    char name[96];
#define NAME(s) (snprintf(name, sizeof name, "blk.%d." s ".weight", l), name)
    if (bind_norm(m, NAME("attn_norm"), L->attn_norm, err) < 0 ||
        bind_norm(m, NAME("ffn_norm"), L->ffn_norm, err) < 0 ||
        bind_mat(m, NAME("attn_q"), hp->n_embd, &L->q, err) < 0 ||
        bind_mat(m, NAME("attn_k"), hp->n_embd, &L->k, err) < 0 ||
        bind_mat(m, NAME("attn_v"), hp->n_embd, &L->v, err) < 0 ||
        bind_mat(m, NAME("attn_output"), hp->n_embd, &L->o, err) < 0 ||
        bind_mat(m, NAME("ffn_gate"), hp->n_embd, &L->gate, err) < 0 ||
        bind_mat(m, NAME("ffn_up"), hp->n_embd, &L->up, err) < 0 ||
        bind_mat(m, NAME("ffn_down"), hp->n_ff, &L->down, err) < 0)
        return -1;
#undef NAME
    uint64_t hd = hp->head_dim;
    for (int n = 0; n < m->plan->n_nodes; n++) {
        uint64_t h0 = m->kv[n].head0, h1 = m->kv[n].head1;
        /* Attention then needs only what this node computed: a node-local
         * barrier suffices between the QKV and attention phases. */
        if (!rows_are(&L->q, n, h0 * m->gqa * hd, h1 * m->gqa * hd) ||
            !rows_are(&L->k, n, h0 * hd, h1 * hd) || !rows_are(&L->v, n, h0 * hd, h1 * hd))
            m->attn_local = false;
        if (!rows_are(&L->up, n, L->gate.row0[n], L->gate.row1[n]))
            m->gate_up_same = false;
        /* RoPE rotates pairs: a worker's rows must start on an even row. */
        if ((L->q.row0[n] | L->k.row0[n]) & 1)
            return nm_fail(err, "plan: blk.%d attention rows of node %d start on an odd row", l,
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
        size_t bytes = (size_t)hp->n_layer * (kv->head1 - kv->head0) * (size_t)m->n_ctx *
                       hp->head_dim * m->kv_esize;
        kv->k = model_alloc(m, bytes, pn->os_index, err);
        kv->v = kv->k ? model_alloc(m, bytes, pn->os_index, err) : NULL;
        if (!kv->v)
            return nm_fail_prefix(err, "KV cache of node %d (%d positions)", pn->os_index,
                                  m->n_ctx);
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
        const nm_mat *e[] = {&L->q, &L->k, &L->v, &L->o, &L->gate, &L->up};
        for (size_t i = 0; i < sizeof e / sizeof e[0]; i++) {
            size_t b = nm_act_buffer_bytes(e[i]->type, m->hp.n_embd, nb);
            best = b > best ? b : best;
        }
        size_t b = nm_act_buffer_bytes(L->down.type, m->hp.n_ff, nb);
        best = b > best ? b : best;
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
            s->xb = model_alloc(m, nb * hp->n_embd * sizeof(float), os, err);
            s->act = s->xb ? model_alloc(m, act, os, err) : NULL;
            s->scores = s->act ? model_alloc(m, (size_t)m->n_ctx * sizeof(float), os, err) : NULL;
            if (!s->scores)
                return nm_fail_prefix(err, "worker scratch");
        }
    }
    m->n_claims = (int)hp->n_layer * NM_CLAIMS_PER_LAYER + 1; /* + the LM head */
    for (int n = 0; n < m->plan->n_nodes; n++)
        if (!(m->claims[n] = model_alloc(m, (size_t)m->n_claims * sizeof(nm_claim),
                                         m->plan->nodes[n].os_index, err)))
            return nm_fail_prefix(err, "row claims");
    /* The vectors exchanged between nodes: small, so one copy. */
    size_t E = hp->n_embd, KV = (size_t)hp->n_head_kv * hp->head_dim, F = hp->n_ff;
    float **bufs[] = {&m->x, &m->q, &m->att, &m->y};
    for (size_t i = 0; i < 4; i++)
        if (!(*bufs[i] = model_alloc(m, nb * E * sizeof(float), -1, err)))
            return -1;
    if (!(m->k = model_alloc(m, nb * KV * sizeof(float), -1, err)) ||
        !(m->v = model_alloc(m, nb * KV * sizeof(float), -1, err)) ||
        !(m->g = model_alloc(m, nb * F * sizeof(float), -1, err)) ||
        !(m->u = model_alloc(m, nb * F * sizeof(float), -1, err)) ||
        !(m->rope = model_alloc(m, nb * (hp->n_rot + 2) * sizeof(float), -1, err)))
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
    if (bind_norm(m, "output_norm.weight", m->out_norm, err) < 0)
        return -1;
    m->embd_ti = find_tensor(m, "token_embd.weight", err);
    if (m->embd_ti < 0)
        return -1;
    /* No output.weight: the LM head is the (tied) embedding matrix. */
    int64_t out = nm_gguf_tensor_index(m->w->gguf, "output.weight");
    if (bind_mat_index(m, out >= 0 ? (int)out : m->embd_ti, hp->n_embd, &m->output, err) < 0)
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
    if (m->hp.n_rot % 2 || m->hp.n_rot > m->hp.head_dim || m->hp.head_dim % 2)
        return nm_fail(err, "%s: rope dimension %u / head size %u are not supported",
                       m->w->gguf->path, m->hp.n_rot, m->hp.head_dim);
    m->gqa = (int)(m->hp.n_head / m->hp.n_head_kv);
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
        nm_layer_mats(&m->layers[l], e);
        for (int i = 0; i < NM_CLAIMS_PER_LAYER; i++)
            sum += g->tensors[e[i]->ti].nbytes;
    }
    return sum;
}
