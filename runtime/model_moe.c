/* The mixture-of-experts FFN of qwen3moe blocks, as llama.cpp's
 * build_moe_ffn computes it for that architecture (softmax gating,
 * expert_used_count experts, weights renormalised, SwiGLU experts):
 *
 *   F1  x -> RMSNorm -> xb; its rows of the router (ffn_gate_inp)
 *   F2  every worker routes the batch itself (same logits, same code: the
 *       same routing everywhere): per token the softmax of the router
 *       logits, the top experts by probability, their weights divided by
 *       their sum; then, expert by expert, its rows of gate and up for the
 *       tokens routed to it (one matmat over them), SwiGLU
 *   F3  expert by expert, its rows of down for those tokens
 *   F4  x += the experts' outputs times their weights, summed in the
 *       token's order of experts, over a slice of x's rows
 * with a global barrier after each. Each node computes only the rows the
 * plan gave it of each active expert (every expert's rows split across the
 * nodes, or whole experts per node), so a decode step reads only the
 * active experts' rows and every node reads its own. */
#include "model_internal.h"

#include "common/util.h"
#include "gguf/ggml_types.h"
#include "ops.h"

#include <stdio.h>
#include <string.h>

/* ---- binding ---- */

/* The expert units of blk.l.<kind>: n_expert matrices of want_cols
 * columns. */
static int bind_experts(nm_model *m, int l, nm_blk_tensor kind, uint64_t want_cols, nm_mat *out,
                        nm_error *err) {
    char name[96];
    snprintf(name, sizeof name, "blk.%d.%s", l, nm_blk_tensor_suffix(kind));
    int64_t ti = nm_gguf_tensor_index(m->w->gguf, name);
    if (ti < 0)
        return nm_fail(err, "%s: tensor '%s' is missing", m->w->gguf->path, name);
    const nm_tensor_plan *tp = &m->plan->tensors[ti];
    if (tp->first_expert < 0 || tp->t->ne[2] != m->hp.n_expert)
        return nm_fail(err, "plan: '%s' is not planned as %u experts", name, m->hp.n_expert);
    for (uint32_t e = 0; e < m->hp.n_expert; e++)
        if (nm_bind_mat_index(m, tp->first_expert + (int)e, want_cols, &out[e], err) < 0)
            return -1;
    return 0;
}

int nm_moe_bind_layer(nm_model *m, int l, nm_error *err) {
    nm_layer *L = &m->layers[l];
    const nm_llama_hparams *hp = &m->hp;
    const size_t n = hp->n_expert;
    L->moe = nm_model_alloc(m, sizeof *L->moe + 3 * n * sizeof(nm_mat), -1, err);
    if (!L->moe)
        return -1;
    L->moe->gate = (nm_mat *)(L->moe + 1);
    L->moe->up = L->moe->gate + n;
    L->moe->down = L->moe->up + n;
    char name[96];
    snprintf(name, sizeof name, "blk.%d.%s", l, nm_blk_tensor_suffix(NM_BLK_ROUTER));
    int64_t ti = nm_gguf_tensor_index(m->w->gguf, name);
    if (ti < 0)
        return nm_fail(err, "%s: tensor '%s' is missing", m->w->gguf->path, name);
    if (nm_bind_mat_index(m, (int)ti, hp->n_embd, &L->moe->router, err) < 0 ||
        bind_experts(m, l, NM_BLK_GATE_EXPS, hp->n_embd, L->moe->gate, err) < 0 ||
        bind_experts(m, l, NM_BLK_UP_EXPS, hp->n_embd, L->moe->up, err) < 0 ||
        bind_experts(m, l, NM_BLK_DOWN_EXPS, hp->n_ff_exp, L->moe->down, err) < 0)
        return -1;
    /* gate and up rows [a0, a1) of a chunk go together (one claim) when the
     * plan splits them alike, as it does in both modes */
    for (size_t e = 0; e < n; e++)
        for (int k = 0; k < m->plan->n_nodes; k++)
            if (L->moe->up[e].row0[k] != L->moe->gate[e].row0[k] ||
                L->moe->up[e].row1[k] != L->moe->gate[e].row1[k] ||
                L->moe->up[e].type != L->moe->gate[e].type)
                return nm_fail(err, "plan: blk.%d expert %zu: gate and up split differently", l, e);
    return 0;
}

uint64_t nm_moe_step_bytes(const nm_model *m, int l) {
    const nm_moe_layer *M = m->layers[l].moe;
    uint64_t per = 0;
    for (uint32_t e = 0; e < m->hp.n_expert_used; e++)
        per += (M->gate[e].n_rows + M->up[e].n_rows) * M->gate[e].row_bytes +
               M->down[e].n_rows * M->down[e].row_bytes;
    return per;
}

/* ---- memory ---- */

int nm_moe_setup_scratch(nm_model *m, nm_scratch *s, int os_node, nm_error *err) {
    const size_t pairs = (size_t)m->n_batch * m->hp.n_expert_used, ne = m->hp.n_expert;
    nm_route *r = &s->route;
    size_t ints = 3 * pairs + 2 * (ne + 1), floats = pairs + ne;
    int *iv = nm_model_alloc(m, ints * sizeof(int), os_node, err);
    float *fv = iv ? nm_model_alloc(m, floats * sizeof(float), os_node, err) : NULL;
    s->xg = fv ? nm_model_alloc(m, (size_t)m->n_batch * m->hp.n_embd * sizeof(float), os_node, err)
               : NULL;
    if (!s->xg)
        return -1;
    r->sel = iv;
    r->pos = iv + pairs;
    r->tok = iv + 2 * pairs;
    r->off = iv + 3 * pairs;
    r->fill = r->off + ne + 1;
    r->wt = fv;
    r->probs = fv + pairs;
    return 0;
}

int nm_moe_setup_shared(nm_model *m, nm_error *err) {
    const size_t nb = (size_t)m->n_batch, k = m->hp.n_expert_used;
    if (!(m->router = nm_model_alloc(m, nb * m->hp.n_expert * sizeof(float), -1, err)) ||
        !(m->moe_g = nm_model_alloc(m, nb * k * m->hp.n_ff_exp * sizeof(float), -1, err)) ||
        !(m->moe_u = nm_model_alloc(m, nb * k * m->hp.n_ff_exp * sizeof(float), -1, err)) ||
        !(m->moe_out = nm_model_alloc(m, nb * k * m->hp.n_embd * sizeof(float), -1, err)))
        return -1;
    return 0;
}

/* Claim slot of expert e's gate (and up) rows (which 0) or down rows (1). */
static int expert_slot(const nm_model *m, int l, uint32_t e, int which) {
    return m->expert_slot0 + ((l * (int)m->hp.n_expert + (int)e) * 2) + which;
}

/* ---- the phases ---- */

void nm_moe_router(nm_model *m, const nm_worker *w, int l) {
    const nm_layer *L = &m->layers[l];
    nm_scratch *s = &m->scr[w->id];
    const int64_t E = m->hp.n_embd;
    for (int t = 0; t < m->n_tok; t++)
        nm_rmsnorm(s->xb + t * E, m->x + t * E, L->ffn_norm[w->node], E, m->hp.rms_eps);
    nm_act a = {0};
    uint64_t a0, a1;
    nm_prepare(s, &a, L->moe->router.type, s->xb, E, m->n_tok);
    while (nm_claim_rows(m, &L->moe->router, l * NM_CLAIMS_PER_LAYER + NM_CLAIM_ROUTER, w, &a,
                         m->router, m->hp.n_expert, &a0, &a1))
        ;
}

/* The routing of the batch (nm_route) from the router logits, as
 * llama.cpp's build_moe_ffn with softmax gating and normalised weights:
 * probabilities by ggml_soft_max, the top k by descending probability
 * (ties: the lower expert first), their sum in double rounded to float and
 * clamped at 2^-14 (6.1e-5, as llama.cpp clamps it), each weight divided
 * by it. */
static void route(const nm_model *m, nm_route *r) {
    const int k = (int)m->hp.n_expert_used, ne = (int)m->hp.n_expert;
    memset(r->off, 0, (size_t)(ne + 1) * sizeof *r->off);
    for (int t = 0; t < m->n_tok; t++) {
        memcpy(r->probs, m->router + (size_t)t * ne, (size_t)ne * sizeof(float));
        nm_softmax(r->probs, ne);
        int *sel = r->sel + t * k;
        double sum = 0;
        for (int j = 0; j < k; j++) {
            int best = -1;
            for (int e = 0; e < ne; e++) {
                bool taken = false;
                for (int i = 0; i < j; i++)
                    taken |= sel[i] == e;
                if (!taken && (best < 0 || r->probs[e] > r->probs[best]))
                    best = e;
            }
            sel[j] = best;
            sum += r->probs[best];
            r->off[best + 1]++;
        }
        float total = (float)sum;
        if (total < 6.103515625e-5f)
            total = 6.103515625e-5f;
        for (int j = 0; j < k; j++)
            r->wt[t * k + j] = r->probs[sel[j]] / total;
    }
    for (int e = 0; e < ne; e++) {
        r->off[e + 1] += r->off[e];
        r->fill[e] = 0;
    }
    for (int t = 0; t < m->n_tok; t++)
        for (int j = 0; j < k; j++) {
            int e = r->sel[t * k + j], p = r->off[e] + r->fill[e]++;
            r->pos[t * k + j] = p;
            r->tok[p] = t;
        }
}

/* The activations of expert e's tokens: the normalised input itself for a
 * single token, else its tokens' rows gathered. */
static void expert_input(const nm_model *m, nm_scratch *s, nm_act *a, uint32_t type, int e) {
    const int64_t E = m->hp.n_embd;
    const nm_route *r = &s->route;
    int n = r->off[e + 1] - r->off[e];
    if (m->n_tok == 1) {
        nm_prepare(s, a, type, s->xb, E, 1);
        return;
    }
    for (int i = 0; i < n; i++)
        memcpy(s->xg + i * E, s->xb + r->tok[r->off[e] + i] * E, (size_t)E * sizeof(float));
    nm_act_prepare(type, s->xg, E, n, s->act, a); /* the gathered rows change */
}

void nm_moe_up(nm_model *m, const nm_worker *w, int l) {
    const nm_moe_layer *M = m->layers[l].moe;
    nm_scratch *s = &m->scr[w->id];
    const nm_route *r = &s->route;
    const int64_t F = m->hp.n_ff_exp;
    route(m, &s->route);
    nm_act a = {0};
    for (uint32_t e = 0; e < m->hp.n_expert; e++) {
        int p0 = r->off[e], n = r->off[e + 1] - p0;
        const nm_mat *gate = &M->gate[e], *up = &M->up[e];
        if (n == 0 || gate->row1[w->node] == gate->row0[w->node])
            continue;
        expert_input(m, s, &a, gate->type, (int)e);
        float *g = m->moe_g + (size_t)p0 * F, *u = m->moe_u + (size_t)p0 * F;
        uint64_t a0, a1;
        /* up rows [a0, a1) right after the same gate rows, then SwiGLU on
         * them: one claim counter serves both matrices */
        while (nm_claim_rows(m, gate, expert_slot(m, l, e, 0), w, &a, g, F, &a0, &a1)) {
            nm_multiply(up->base[w->node] + (a0 - up->row0[w->node]) * up->row_bytes, a1 - a0, &a,
                        u + a0, F);
            if (m->n_tok == 1)
                m->traffic[w->id].weights += (a1 - a0) * up->row_bytes;
            for (int i = 0; i < n; i++)
                nm_swiglu(g + i * F + a0, g + i * F + a0, u + i * F + a0, (int64_t)(a1 - a0));
        }
    }
}

void nm_moe_down(nm_model *m, const nm_worker *w, int l) {
    const nm_moe_layer *M = m->layers[l].moe;
    nm_scratch *s = &m->scr[w->id];
    const nm_route *r = &s->route;
    const int64_t E = m->hp.n_embd, F = m->hp.n_ff_exp;
    nm_act a = {0};
    for (uint32_t e = 0; e < m->hp.n_expert; e++) {
        int p0 = r->off[e], n = r->off[e + 1] - p0;
        const nm_mat *down = &M->down[e];
        if (n == 0 || down->row1[w->node] == down->row0[w->node])
            continue;
        /* the expert's hidden rows are consecutive pair positions */
        nm_act_prepare(down->type, m->moe_g + (size_t)p0 * F, F, n, s->act, &a);
        uint64_t a0, a1;
        while (nm_claim_rows(m, down, expert_slot(m, l, e, 1), w, &a, m->moe_out + (size_t)p0 * E,
                             E, &a0, &a1))
            ;
    }
}

/* llama.cpp multiplies each expert's output by its weight, adds the
 * products in the token's order of experts, then adds that to the
 * residual; the same roundings here. */
void nm_moe_combine(nm_model *m, const nm_worker *w, int l) {
    (void)l;
    const nm_route *r = &m->scr[w->id].route;
    const int64_t E = m->hp.n_embd;
    const int k = (int)m->hp.n_expert_used;
    uint64_t r0, r1;
    nm_split_rows((uint64_t)E, w->id, nm_pool_n_workers(m->pool), 16, &r0, &r1);
    for (int t = 0; t < m->n_tok; t++) {
        const int *pos = r->pos + t * k;
        const float *wt = r->wt + t * k;
        float *x = m->x + t * E;
        for (uint64_t i = r0; i < r1; i++) {
            float acc = m->moe_out[(size_t)pos[0] * E + i] * wt[0];
            for (int j = 1; j < k; j++) {
                float p = m->moe_out[(size_t)pos[j] * E + i] * wt[j];
                acc = acc + p;
            }
            x[i] = acc + x[i];
        }
    }
}
