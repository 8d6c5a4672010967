/* Layers on a device (-ngl): the last blocks of the model, and with all of
 * them the output norm and LM head, run on a device (device.h) with their
 * weights and their KV cache in device memory; the first blocks run on the
 * CPU nodes as before. Per evaluated batch the activations cross once each
 * way: x (and the RoPE table) to the device after the CPU blocks, then x
 * back for the CPU's LM head, or the logits back when the head is on the
 * device. Every device operation is queued on stream 0, in the order of the
 * CPU forward pass, and the stream is synced once at the end.
 *
 * The device runs the same operations as the CPU phases (model_forward.c),
 * so the CPU implementation of the device gives the CPU forward pass's bits:
 * the suite checks exactly that for every split. */
#include "model_internal.h"

#include "common/util.h"
#include "device.h"
#include "gguf/ggml_types.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STREAM 0

typedef struct dev_layer {
    const float *attn_norm, *ffn_norm;
    nm_dev_mat q, k, v, o, gate, up, down;
    void *k_cache, *v_cache; /* [kv head][n_ctx][head_dim] of kv_type */
} dev_layer;

typedef struct nm_offload {
    nm_device *dev;
    int first, n; /* device layers [first, first + n) */
    bool head;
    dev_layer *layers;
    const float *out_norm;
    nm_dev_mat output;
    /* device buffers, n_batch tokens each */
    float *x, *xb, *q, *k, *v, *att, *y, *g, *u, *scores, *rope, *logits;
    void *mem[4]; /* norms, K caches, V caches, activations */
} nm_offload;

/* ---- which tensors -------------------------------------------------- */

static int layer_of(const char *name) {
    int l = -1, n = 0;
    if (sscanf(name, "blk.%d.%n", &l, &n) == 1 && n > 0)
        return l;
    return -1;
}

int nm_offload_select(const nm_gguf *g, uint32_t n_layer, int ngl, uint8_t *mask, int *n_layers,
                      bool *head) {
    int k = ngl < 0 ? 0 : ngl > (int)n_layer ? (int)n_layer : ngl;
    int first = (int)n_layer - k;
    *n_layers = k;
    *head = ngl > (int)n_layer;
    bool tied = nm_gguf_tensor_index(g, "output.weight") < 0;
    memset(mask, 0, g->n_tensors);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const nm_gguf_tensor *t = &g->tensors[i];
        if (t->n_dims < 2)
            continue; /* norms: uploaded as F32 by the model */
        int l = layer_of(t->name);
        if (l >= first && l < (int)n_layer)
            mask[i] = NM_OFFLOAD_DEVICE;
        else if (*head && !strcmp(t->name, "output.weight"))
            mask[i] = NM_OFFLOAD_DEVICE;
        else if (*head && tied && !strcmp(t->name, "token_embd.weight"))
            mask[i] = NM_OFFLOAD_BOTH; /* the LM head, and the CPU's embedding */
    }
    return 0;
}

/* ---- setup ---------------------------------------------------------- */

static int dev_mat(const nm_model *m, const nm_model_offload *o, const nm_mat *mt, nm_dev_mat *dm,
                   nm_error *err) {
    const nm_gguf_tensor *t = &m->w->gguf->tensors[mt->ti];
    const void *p = o->tensor ? o->tensor[mt->ti] : NULL;
    if (!p)
        return nm_fail(err, "-ngl: tensor '%s' is not on the device (it was not uploaded)",
                       t->name);
    if (!o->dev->ops->supports(o->dev, mt->type))
        return nm_fail(err,
                       "-ngl: '%s' has type %s, for which %s device %d has no kernel (offload "
                       "fewer layers)",
                       t->name, nm_type_name(mt->type), o->dev->kind, o->dev->ordinal);
    *dm = (nm_dev_mat){p, mt->type, (int64_t)mt->n_rows, (int64_t)mt->n_cols, mt->row_bytes};
    return 0;
}

static int bind(nm_model *m, nm_offload *f, const nm_model_offload *o, nm_error *err) {
    for (int i = 0; i < f->n; i++) {
        const nm_layer *L = &m->layers[f->first + i];
        dev_layer *D = &f->layers[i];
        if (dev_mat(m, o, &L->q, &D->q, err) || dev_mat(m, o, &L->k, &D->k, err) ||
            dev_mat(m, o, &L->v, &D->v, err) || dev_mat(m, o, &L->o, &D->o, err) ||
            dev_mat(m, o, &L->gate, &D->gate, err) || dev_mat(m, o, &L->up, &D->up, err) ||
            dev_mat(m, o, &L->down, &D->down, err))
            return -1;
    }
    return f->head ? dev_mat(m, o, &m->output, &f->output, err) : 0;
}

static int dev_alloc(nm_offload *f, int slot, size_t bytes, const char *what, nm_error *err) {
    if (f->dev->ops->alloc(f->dev, bytes, &f->mem[slot], err) != 0)
        return nm_fail_prefix(err, "-ngl %d: %s", f->n + f->head, what);
    return 0;
}

/* The norms as F32, from the CPU's copies (node 0's). */
static int upload_norms(nm_model *m, nm_offload *f, nm_error *err) {
    const size_t E = m->hp.n_embd;
    if (dev_alloc(f, 0, (2 * (size_t)f->n + 1) * E * sizeof(float), "norm weights", err) != 0)
        return -1;
    float *base = f->mem[0];
    for (int i = 0; i < f->n; i++) {
        const nm_layer *L = &m->layers[f->first + i];
        f->layers[i].attn_norm = base + 2 * i * E;
        f->layers[i].ffn_norm = base + (2 * i + 1) * E;
        if (f->dev->ops->to_device(f->dev, STREAM, (void *)f->layers[i].attn_norm, L->attn_norm[0],
                                   E * sizeof(float), err) ||
            f->dev->ops->to_device(f->dev, STREAM, (void *)f->layers[i].ffn_norm, L->ffn_norm[0],
                                   E * sizeof(float), err))
            return -1;
    }
    f->out_norm = base + 2 * (size_t)f->n * E;
    if (f->head && f->dev->ops->to_device(f->dev, STREAM, (void *)f->out_norm, m->out_norm[0],
                                          E * sizeof(float), err))
        return -1;
    return f->dev->ops->sync(f->dev, STREAM, err); /* the host copies may move */
}

static int alloc_kv(nm_model *m, nm_offload *f, nm_error *err) {
    const size_t per = (size_t)m->hp.n_head_kv * (size_t)m->n_ctx * m->hp.head_dim * m->kv_esize;
    char what[96], b[32];
    snprintf(what, sizeof what, "KV cache on the device (%d positions, %s)", m->n_ctx,
             nm_fmt_bytes(2 * per * (size_t)f->n, b, sizeof b));
    if (dev_alloc(f, 1, per * (size_t)f->n, what, err) != 0 ||
        dev_alloc(f, 2, per * (size_t)f->n, what, err) != 0)
        return -1;
    for (int i = 0; i < f->n; i++) {
        f->layers[i].k_cache = (uint8_t *)f->mem[1] + per * (size_t)i;
        f->layers[i].v_cache = (uint8_t *)f->mem[2] + per * (size_t)i;
    }
    return 0;
}

/* One allocation for every activation buffer, 256-byte aligned pieces. */
static int alloc_activations(nm_model *m, nm_offload *f, nm_error *err) {
    const nm_llama_hparams *hp = &m->hp;
    const size_t nb = (size_t)m->n_batch, E = hp->n_embd, QD = (size_t)hp->n_head * hp->head_dim;
    const size_t KVD = (size_t)hp->n_head_kv * hp->head_dim, F = hp->n_ff;
    size_t sizes[] = {nb * E,
                      nb * E,
                      nb * QD,
                      nb * KVD,
                      nb * KVD,
                      nb * QD,
                      nb * (E > QD ? E : QD),
                      nb * F,
                      nb * F,
                      nb * hp->n_head * (size_t)m->n_ctx,
                      nb * (hp->n_rot + 2),
                      f->head ? nb * hp->n_vocab : 1};
    float **dst[] = {&f->x, &f->xb, &f->q, &f->k,      &f->v,    &f->att,
                     &f->y, &f->g,  &f->u, &f->scores, &f->rope, &f->logits};
    size_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        total += nm_align_up(sizes[i] * sizeof(float), 256);
    char what[96], b[32];
    snprintf(what, sizeof what, "activations on the device (batch %d: %s)", m->n_batch,
             nm_fmt_bytes(total, b, sizeof b));
    if (dev_alloc(f, 3, total, what, err) != 0)
        return -1;
    uint8_t *p = f->mem[3];
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        *dst[i] = (float *)p;
        p += nm_align_up(sizes[i] * sizeof(float), 256);
    }
    return 0;
}

void nm_offload_free(nm_model *m) {
    nm_offload *f = m->off;
    if (!f)
        return;
    for (int i = 0; i < 4; i++)
        if (f->mem[i])
            f->dev->ops->free(f->dev, f->mem[i]);
    free(f->layers);
    free(f);
    m->off = NULL;
}

/* The device runs llama blocks as they were before qwen2/qwen3: no
 * biases, no per-head Q/K norms, normal RoPE. Anything else stays on the
 * CPU (refused here rather than computed wrongly). */
static int plain_llama_blocks(const nm_model *m, int first, nm_error *err) {
    bool plain = m->hp.rope_type == NM_ROPE_NORM && !m->output.bias[0];
    for (int l = first; l < (int)m->hp.n_layer && plain; l++) {
        const nm_layer *L = &m->layers[l];
        const nm_mat *e[NM_CLAIMS_PER_LAYER];
        int n = nm_layer_mats(L, e);
        plain = !L->q_norm[0] && !L->k_norm[0] && !L->moe;
        for (int i = 0; i < n; i++)
            plain = plain && !e[i]->bias[0];
    }
    if (!plain)
        return nm_fail(err,
                       "-ngl: the device runs llama blocks without biases, Q/K norms, neox "
                       "RoPE or experts yet; this %s model's blocks stay on the CPU (-ngl 0)",
                       m->hp.arch);
    return 0;
}

int nm_offload_create(nm_model *m, const nm_model_offload *o, nm_error *err) {
    const int n_layer = (int)m->hp.n_layer;
    if (!o->dev || (o->n_layers <= 0 && !o->head))
        return 0;
    if (o->n_layers > n_layer || (o->head && o->n_layers != n_layer))
        return nm_fail(err, "-ngl: %d blocks%s on the device, but the model has %d blocks",
                       o->n_layers, o->head ? " and the LM head" : "", n_layer);
    if (plain_llama_blocks(m, n_layer - o->n_layers, err) != 0)
        return -1;
    nm_offload *f = nm_calloc(1, sizeof *f, "the offload table", err);
    if (!f)
        return -1;
    m->off = f;
    f->dev = o->dev;
    f->n = o->n_layers;
    f->first = n_layer - f->n;
    f->head = o->head;
    if (!(f->layers =
              nm_calloc((size_t)f->n + 1, sizeof *f->layers, "the offloaded layers", err)) ||
        bind(m, f, o, err) != 0 || upload_norms(m, f, err) != 0 || alloc_kv(m, f, err) != 0 ||
        alloc_activations(m, f, err) != 0) {
        nm_offload_free(m);
        return -1;
    }
    return 0;
}

int nm_offload_first_layer(const nm_model *m) {
    return m->off ? m->off->first : (int)m->hp.n_layer;
}

bool nm_offload_has_head(const nm_model *m) {
    return m->off && m->off->head;
}

/* ---- the forward pass on the device ----------------------------------- */

static int layer(nm_model *m, const dev_layer *D, int n_tok, nm_error *err) {
    nm_offload *f = m->off;
    nm_device *d = f->dev;
    const nm_device_ops *op = d->ops;
    const nm_llama_hparams *hp = &m->hp;
    const int64_t E = hp->n_embd, QD = (int64_t)hp->n_head * hp->head_dim;
    const int64_t KVD = (int64_t)hp->n_head_kv * hp->head_dim, F = hp->n_ff;
    const int hd = (int)hp->head_dim, rot = (int)hp->n_rot;
    nm_dev_attn a = {
        f->q, f->att,   D->k_cache, D->v_cache, m->kv_type, (int)hp->n_head,   (int)hp->n_head_kv,
        hd,   m->n_ctx, m->pos,     n_tok,      f->scores,  m->attn_f16_online};
    if (op->rmsnorm(d, STREAM, f->xb, f->x, D->attn_norm, E, n_tok, hp->rms_eps, err) ||
        op->matmul(d, STREAM, &D->q, f->xb, n_tok, f->q, err) ||
        op->matmul(d, STREAM, &D->k, f->xb, n_tok, f->k, err) ||
        op->matmul(d, STREAM, &D->v, f->xb, n_tok, f->v, err) ||
        op->rope(d, STREAM, f->q, QD, n_tok, hd, rot, f->rope, err) ||
        op->rope(d, STREAM, f->k, KVD, n_tok, hd, rot, f->rope, err) ||
        op->kv_store(d, STREAM, D->k_cache, m->kv_type, f->k, (int)hp->n_head_kv, hd, m->n_ctx,
                     m->pos, n_tok, err) ||
        op->kv_store(d, STREAM, D->v_cache, m->kv_type, f->v, (int)hp->n_head_kv, hd, m->n_ctx,
                     m->pos, n_tok, err) ||
        op->attention(d, STREAM, &a, err) ||
        op->matmul(d, STREAM, &D->o, f->att, n_tok, f->y, err) ||
        op->add(d, STREAM, f->x, f->y, n_tok * E, err))
        return -1;
    if (op->rmsnorm(d, STREAM, f->xb, f->x, D->ffn_norm, E, n_tok, hp->rms_eps, err) ||
        op->matmul(d, STREAM, &D->gate, f->xb, n_tok, f->g, err) ||
        op->matmul(d, STREAM, &D->up, f->xb, n_tok, f->u, err) ||
        op->swiglu(d, STREAM, f->g, f->u, n_tok * F, err) ||
        op->matmul(d, STREAM, &D->down, f->g, n_tok, f->y, err) ||
        op->add(d, STREAM, f->x, f->y, n_tok * E, err))
        return -1;
    return 0;
}

int nm_offload_eval(nm_model *m, nm_error *err) {
    nm_offload *f = m->off;
    nm_device *d = f->dev;
    const nm_device_ops *op = d->ops;
    const int n_tok = m->n_tok;
    const size_t E = m->hp.n_embd, rope = (size_t)n_tok * (m->hp.n_rot + 2) * sizeof(float);
    if (op->to_device(d, STREAM, f->x, m->x, (size_t)n_tok * E * sizeof(float), err) ||
        op->to_device(d, STREAM, f->rope, m->rope, rope, err))
        goto fail;
    for (int i = 0; i < f->n; i++)
        if (layer(m, &f->layers[i], n_tok, err) != 0)
            goto fail;
    int n_out = n_tok - m->logits_from;
    if (f->head && n_out > 0) {
        const size_t V = m->hp.n_vocab;
        if (op->rmsnorm(d, STREAM, f->xb, f->x + (size_t)m->logits_from * E, f->out_norm,
                        (int64_t)E, n_out, m->hp.rms_eps, err) ||
            op->matmul(d, STREAM, &f->output, f->xb, n_out, f->logits, err) ||
            op->to_host(d, STREAM, m->logits, f->logits, (size_t)n_out * V * sizeof(float), err))
            goto fail;
    } else if (!f->head &&
               op->to_host(d, STREAM, m->x, f->x, (size_t)n_tok * E * sizeof(float), err)) {
        goto fail;
    }
    if (op->sync(d, STREAM, err) != 0)
        return nm_fail_prefix(err, "offloaded blocks");
    return 0;
fail : {
    nm_error e; /* nothing queued may run on after we return */
    op->sync(d, STREAM, &e);
    return nm_fail_prefix(err, "offloaded blocks");
}
}
