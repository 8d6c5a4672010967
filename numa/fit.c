/* Memory admission (fit.h): the bill of a plan per node, the table over
 * every placement, the decision and its message.
 *
 * What a node holds, as the loader and the model allocate it:
 *   weights  its arena (shard, replicate), its share of the interleaved
 *            arena (pages round-robin), or the whole arena (node:N);
 *   kv       K and V of its KV heads at n_ctx positions, every layer, for
 *            each of n_seq sequences;
 *   scratch  per worker: the batch's activations in F32, the quantized
 *            copy (bounded by F32), attention scores of n_ctx; plus, on the
 *            first node (the main thread allocates them), the vectors the
 *            nodes exchange and one batch of logits;
 *   staging  the loader's buffers of each node that reads (O_DIRECT bounce
 *            slots), given by the caller. */
#include "fit.h"

#include "common/util.h"

#include <stdio.h>
#include <string.h>

#define PAGE 4096ull
#define CLAIM_BYTES 64ull /* one row-claim counter per matrix per node */
#define CLAIMS_PER_LAYER 8ull

static int mem_index(const nm_mem_state *m, int os_index) {
    for (int i = 0; i < m->n_nodes; i++)
        if (m->nodes[i].os_index == os_index)
            return i;
    return -1;
}

static void add_weights(nm_fit *f, const nm_mem_state *m, int os, uint64_t bytes) {
    int i = mem_index(m, os);
    if (i >= 0)
        f->nodes[i].weights += bytes;
}

static void add_staging(nm_fit *f, const nm_mem_state *m, int os, uint64_t bytes) {
    int i = mem_index(m, os);
    if (i >= 0)
        f->nodes[i].staging += bytes;
}

static void bill_weights(const nm_plan *p, const nm_fit_opts *o, const nm_mem_state *m, nm_fit *f) {
    if (p->placement == NM_PLACE_INTERLEAVE) {
        /* pages round-robin: no node gets more than ceil(pages / n) */
        uint64_t pages = (p->arena_bytes[0] + PAGE - 1) / PAGE;
        uint64_t share = (pages + (uint64_t)p->n_nodes - 1) / (uint64_t)p->n_nodes * PAGE;
        for (int k = 0; k < p->n_nodes; k++) {
            add_weights(f, m, p->nodes[k].os_index, share);
            add_staging(f, m, p->nodes[k].os_index, o->staging_bytes);
        }
        return;
    }
    for (int a = 0; a < p->n_arenas; a++) {
        add_weights(f, m, p->arena_node[a], p->arena_bytes[a]);
        add_staging(f, m, p->arena_node[a], o->staging_bytes);
    }
}

static void bill_model(const nm_plan *p, const nm_fit_opts *o, const nm_mem_state *m, nm_fit *f) {
    if (!o->with_model)
        return;
    const nm_llama_hparams *hp = &p->hp;
    f->n_ctx = o->n_ctx > 0 ? o->n_ctx : (int)hp->n_ctx_train;
    if (o->n_ctx <= 0 && o->ctx_cap > 0 && (f->n_ctx <= 0 || f->n_ctx > o->ctx_cap))
        f->n_ctx = o->ctx_cap;
    f->n_batch = o->n_batch > 0 ? o->n_batch : o->n_batch < 0 ? f->n_ctx : 64;
    if (f->n_batch > 4096)
        f->n_batch = 4096; /* the model's own cap */
    uint64_t ctx = (uint64_t)f->n_ctx, nb = (uint64_t)f->n_batch;
    uint64_t esize = o->kv_elem_bytes ? o->kv_elem_bytes : 2;
    uint64_t E = hp->n_embd, F = hp->n_ff, KV = (uint64_t)hp->n_head_kv * hp->head_dim;
    uint64_t wide = E > F ? E : F;
    uint64_t per_worker = nb * E * 4 + nb * wide * 4 + ctx * 4;
    uint64_t shared = nb * (4 * E + 2 * KV + 2 * F + hp->n_rot + 2) * 4 + nb * hp->n_vocab * 4;
    if (hp->n_expert) { /* a mixture's routing and gathered inputs, its experts' outputs */
        uint64_t ne = hp->n_expert, k = hp->n_expert_used, FX = hp->n_ff_exp;
        per_worker += (3 * nb * k + 2 * (ne + 1)) * 4 + (nb * k + ne) * 4 + nb * E * 4;
        shared += nb * (ne + 2 * k * FX + k * E) * 4;
    }
    for (int k = 0; k < p->n_nodes; k++) {
        int i = mem_index(m, p->nodes[k].os_index);
        if (i < 0)
            continue;
        uint64_t heads = p->nodes[k].kv_head1 - p->nodes[k].kv_head0;
        f->nodes[i].kv += 2 * (uint64_t)hp->n_layer * heads * ctx * hp->head_dim * esize *
                          (uint64_t)(o->n_seq > 1 ? o->n_seq : 1);
        f->nodes[i].scratch += (uint64_t)p->nodes[k].n_threads * per_worker +
                               CLAIM_BYTES * (CLAIMS_PER_LAYER * hp->n_layer + 1);
        if (k == 0)
            f->nodes[i].scratch += shared;
    }
}

void nm_fit_compute(const nm_plan *p, const nm_fit_opts *o, const nm_mem_state *m, nm_fit *f) {
    memset(f, 0, sizeof *f);
    f->placement = p->placement;
    f->fixed_node = p->fixed_node;
    f->built = true;
    f->n_nodes = m->n_nodes;
    for (int i = 0; i < m->n_nodes; i++)
        f->nodes[i].os_index = m->nodes[i].os_index;
    bill_weights(p, o, m, f);
    bill_model(p, o, m, f);
    f->nodes_fit = true;
    for (int i = 0; i < f->n_nodes; i++) {
        nm_fit_node *n = &f->nodes[i];
        n->need = (o->weights_unchecked ? 0 : n->weights) + n->kv + n->scratch + n->staging;
        n->avail = nm_node_mem_avail(m, i);
        n->fits = n->need == 0 || n->avail == UINT64_MAX || n->need <= n->avail;
        f->nodes_fit &= n->fits;
        f->need_total += n->need;
        /* every arena is mapped with up to 2 MiB of slack (its phase) */
        if (!o->weights_mapped)
            f->vm_bytes += n->weights ? n->weights + (2ull << 20) : 0;
        f->vm_bytes += n->kv + n->scratch + n->staging;
    }
    f->cgroup_fits = f->need_total <= nm_cgroup_avail(m);
    f->as_fits = f->vm_bytes <= nm_as_avail(m);
    f->fits = f->nodes_fit && f->cgroup_fits && f->as_fits;
}

/* ---- the table ---- */

static void add_row(nm_fit_table *tab, const nm_gguf *g, const nm_topo *t, nm_plan_opts po,
                    nm_placement pl, int node) {
    nm_fit *f = &tab->rows[tab->n_rows++];
    po.placement = pl;
    po.fixed_node = node;
    nm_error e = {{0}};
    nm_plan *p = nm_plan_build(g, t, &po, &e);
    if (!p) {
        memset(f, 0, sizeof *f);
        f->placement = pl;
        f->fixed_node = node;
        snprintf(f->err, sizeof f->err, "%.255s", e.msg);
        return;
    }
    nm_fit_compute(p, &tab->opts, &tab->mem, f);
    nm_plan_free(p);
}

/* replicate when every node has room for a copy, else shard, else
 * interleave (shard and replicate are the same plan on one node). */
static void choose_auto(nm_fit_table *tab) {
    static const struct {
        nm_placement p;
        const char *why;
    } order[] = {
        {NM_PLACE_REPLICATE, "every node has room for a full copy"},
        {NM_PLACE_SHARD, "a full copy does not fit on every node; each node's shard does"},
        {NM_PLACE_INTERLEAVE, "neither a copy nor a shard fits on every node; interleaved "
                              "pages do"},
    };
    tab->auto_row = -1;
    snprintf(tab->auto_why, sizeof tab->auto_why, "no placement fits");
    int shard = nm_fit_table_row(tab, NM_PLACE_SHARD, -1), holders = 0;
    for (int k = 0; shard >= 0 && k < tab->rows[shard].n_nodes; k++)
        holders += tab->rows[shard].nodes[k].weights > 0;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        int r = nm_fit_table_row(tab, order[i].p, -1);
        if (r < 0 || !tab->rows[r].built || !tab->rows[r].fits)
            continue;
        if (order[i].p == NM_PLACE_REPLICATE && holders <= 1 && shard >= 0) {
            /* one node: shard is the same plan, under its usual name */
            r = shard;
            snprintf(tab->auto_why, sizeof tab->auto_why, "one node: shard (= replicate) fits");
        } else {
            snprintf(tab->auto_why, sizeof tab->auto_why, "%s", order[i].why);
        }
        tab->auto_row = r;
        return;
    }
}

int nm_fit_table_build(const nm_gguf *g, const nm_topo *t, const nm_plan_opts *po,
                       const nm_fit_opts *fo, const nm_mem_state *m, nm_fit_table *tab,
                       nm_error *err) {
    memset(tab, 0, sizeof *tab);
    tab->opts = *fo;
    tab->mem = *m;
    add_row(tab, g, t, *po, NM_PLACE_REPLICATE, -1);
    add_row(tab, g, t, *po, NM_PLACE_SHARD, -1);
    add_row(tab, g, t, *po, NM_PLACE_INTERLEAVE, -1);
    for (int i = 0; i < t->n_nodes && i < NM_FIT_MAX_NODE_ROWS; i++)
        if (t->nodes[i].allowed && t->nodes[i].memory_bytes + t->nodes[i].sysfs_meminfo_bytes > 0)
            add_row(tab, g, t, *po, NM_PLACE_NODE, t->nodes[i].os_index);
    bool any = false;
    for (int r = 0; r < tab->n_rows; r++)
        any |= tab->rows[r].built;
    if (!any)
        return nm_fail(err, "%s", tab->rows[0].err);
    choose_auto(tab);
    return 0;
}

int nm_fit_table_row(const nm_fit_table *tab, nm_placement p, int fixed_node) {
    if (p == NM_PLACE_AUTO)
        return tab->auto_row;
    for (int r = 0; r < tab->n_rows; r++)
        if (tab->rows[r].placement == p &&
            (p != NM_PLACE_NODE || tab->rows[r].fixed_node == fixed_node))
            return r;
    return -1;
}

/* ---- messages ---- */

static const char *row_name(const nm_fit *f, char *buf, size_t n) {
    if (f->placement == NM_PLACE_NODE)
        snprintf(buf, n, "node:%d", f->fixed_node);
    else
        snprintf(buf, n, "%s", nm_placement_name(f->placement));
    return buf;
}

/* The largest need of a row, and whether every node that holds something
 * needs the same. */
static uint64_t max_need(const nm_fit *f, bool *uniform) {
    uint64_t mx = 0, first = 0;
    *uniform = true;
    for (int i = 0; i < f->n_nodes; i++) {
        uint64_t n = f->nodes[i].need;
        if (!n)
            continue;
        if (!first)
            first = n;
        /* within 1 %: the split rounds to whole rows and KV heads */
        *uniform &= n / 100 + 1 >= (n > first ? n - first : first - n);
        mx = n > mx ? n : mx;
    }
    return mx;
}

/* "needs 1.17 GB on each of its 2 nodes" or "needs 0.60 GB on node 0 and
 * 0.59 GB on node 1". */
static void need_phrase(const nm_fit *f, char *buf, size_t n) {
    bool uniform;
    uint64_t mx = max_need(f, &uniform);
    char b[32];
    int holders = 0;
    for (int i = 0; i < f->n_nodes; i++)
        holders += f->nodes[i].need > 0;
    if (uniform && holders > 1) {
        snprintf(buf, n, "needs %s on each of its %d nodes", nm_fmt_bytes(mx, b, sizeof b),
                 holders);
        return;
    }
    size_t len = (size_t)snprintf(buf, n, "needs");
    for (int i = 0, shown = 0; i < f->n_nodes && len < n; i++) {
        if (!f->nodes[i].need)
            continue;
        len += (size_t)snprintf(buf + len, n - len, "%s %s on node %d", shown++ ? "," : "",
                                nm_fmt_bytes(f->nodes[i].need, b, sizeof b), f->nodes[i].os_index);
    }
}

static size_t avail_phrase(const nm_fit *f, char *buf, size_t n) {
    size_t len = 0;
    char b[32];
    for (int i = 0, shown = 0; i < f->n_nodes && len < n; i++) {
        const nm_fit_node *x = &f->nodes[i];
        if (!x->need || x->avail == UINT64_MAX)
            continue;
        len += (size_t)snprintf(buf + len, n - len, "%snode %d has %s available%s",
                                shown++ ? ", " : "", x->os_index,
                                nm_fmt_bytes(x->avail, b, sizeof b), x->fits ? "" : " (short)");
    }
    return len;
}

/* What the bill is made of, for the first node that is short. */
static void parts_phrase(const nm_fit *f, bool weights_checked, char *buf, size_t n) {
    const nm_fit_node *x = NULL;
    for (int i = 0; i < f->n_nodes && !x; i++)
        if (!f->nodes[i].fits)
            x = &f->nodes[i];
    buf[0] = '\0';
    if (!x)
        return;
    char a[32], b[32], c[32], d[32];
    snprintf(buf, n, "node %d: weights %s%s, KV cache %s, scratch %s, loader buffers %s",
             x->os_index, nm_fmt_bytes(x->weights, a, sizeof a),
             weights_checked ? "" : " (not counted)", nm_fmt_bytes(x->kv, b, sizeof b),
             nm_fmt_bytes(x->scratch, c, sizeof c), nm_fmt_bytes(x->staging, d, sizeof d));
}

/* "shard needs 0.59 GB per node and fits" for the first fitting of
 * replicate/shard/interleave/node rows (not the refused one). */
static void alternative_phrase(const nm_fit_table *tab, int refused, char *buf, size_t n) {
    char name[32], need[160];
    for (int r = 0; r < tab->n_rows; r++) {
        const nm_fit *f = &tab->rows[r];
        if (r == refused || !f->built || !f->fits)
            continue;
        need_phrase(f, need, sizeof need);
        row_name(f, name, sizeof name);
        snprintf(buf, n, "%.31s %.159s and fits: run with --placement %.31s (or --placement auto)",
                 name, need, name);
        return;
    }
    snprintf(buf, n,
             "No placement fits: %sa smaller model or quantization, or nodes with "
             "more free memory",
             tab->opts.with_model ? "a smaller context (-c), " : "");
}

static int refuse(const nm_fit_table *tab, int r, bool is_auto, nm_error *err) {
    const nm_fit *f = &tab->rows[r];
    const nm_mem_state *m = &tab->mem;
    char name[32], head[64], it[64], need[200], avail[400], parts[200], alt[320];
    char b1[32], b2[32], b3[32], b4[32], b5[32];
    row_name(f, name, sizeof name);
    /* "--placement shard: it needs" or "any placement (--placement auto):
     * shard, the smallest per node, needs" */
    snprintf(head, sizeof head, is_auto ? "any placement (--placement auto)" : "--placement %s",
             name);
    snprintf(it, sizeof it, is_auto ? "%s, the smallest per node," : "it", name);
    if (!f->nodes_fit) {
        need_phrase(f, need, sizeof need);
        parts_phrase(f, !tab->opts.weights_unchecked, parts, sizeof parts);
        alternative_phrase(tab, r, alt, sizeof alt);
        avail_phrase(f, avail, sizeof avail);
        return nm_fail(err,
                       "not enough memory for %s: %s %s (%s); %s. %s. Available = free + "
                       "inactive file pages - a reserve (/sys/devices/system/node/nodeN/"
                       "meminfo); --no-mem-check skips this check",
                       head, it, need, parts, avail, alt);
    }
    if (!f->cgroup_fits)
        return nm_fail(err,
                       "not enough memory under the cgroup limit for %s: %s needs %s in all; "
                       "%s is %s with %s in use (%s of it reclaimable page cache): %s "
                       "available. Raise the limit, or load less (-c, a smaller model); "
                       "--no-mem-check skips this check",
                       head, it, nm_fmt_bytes(f->need_total, b1, sizeof b1), m->cg_file,
                       nm_fmt_bytes(m->cg_max, b2, sizeof b2),
                       nm_fmt_bytes(m->cg_usage, b3, sizeof b3),
                       nm_fmt_bytes(m->cg_reclaimable, b4, sizeof b4),
                       nm_fmt_bytes(nm_cgroup_avail(m), b5, sizeof b5));
    return nm_fail(err,
                   "not enough address space for %s: %s maps %s; RLIMIT_AS (ulimit -v) is %s "
                   "with %s mapped already. Raise it (ulimit -v unlimited); --no-mem-check "
                   "skips this check",
                   head, it, nm_fmt_bytes(f->vm_bytes, b1, sizeof b1),
                   nm_fmt_bytes(m->as_max, b2, sizeof b2), nm_fmt_bytes(m->as_used, b3, sizeof b3));
}

int nm_fit_admit(const nm_fit_table *tab, nm_placement want, int fixed_node, int *chosen,
                 nm_error *err) {
    if (want == NM_PLACE_AUTO) {
        if (tab->auto_row >= 0) {
            *chosen = tab->auto_row;
            return 0;
        }
        /* nothing fits: explain with the smallest bill per node, shard */
        int r = nm_fit_table_row(tab, NM_PLACE_SHARD, -1);
        return refuse(tab, r >= 0 ? r : 0, true, err);
    }
    int r = nm_fit_table_row(tab, want, fixed_node);
    if (r < 0)
        return nm_fail(err, "placement %s:%d is not in the fit table", nm_placement_name(want),
                       fixed_node);
    if (!tab->rows[r].built)
        return nm_fail(err, "%s", tab->rows[r].err);
    if (!tab->rows[r].fits)
        return refuse(tab, r, false, err);
    *chosen = r;
    return 0;
}
