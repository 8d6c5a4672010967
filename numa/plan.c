/* The placement plan: compute split first (the same for every placement),
 * then what each arena holds and where in the arena it goes.
 *
 * Token embedding: it is split by rows across the nodes like any matrix, in
 * every placement. When output.weight exists, a decoded token reads a single
 * row of it (n_embd values), so holding 1/n of it per node costs at most one
 * remote row per token (reported as embd_row_bytes) and saves (n-1)/n of a
 * tensor that is 0.1-1 GB in real models. When output.weight is absent the
 * embedding is also the LM head and every row is read each token: then the
 * row split is exactly the compute split of a matrix. One rule covers both. */
#include "plan.h"

#include "common/util.h"
#include "gguf/ggml_types.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NM_PLAN_MAX_CPUS 256 /* size of nm_plan_node.cpus */

int nm_placement_parse(const char *s, nm_placement *p, int *node, nm_error *err) {
    if (!strcmp(s, "shard")) {
        *p = NM_PLACE_SHARD;
    } else if (!strcmp(s, "replicate")) {
        *p = NM_PLACE_REPLICATE;
    } else if (!strcmp(s, "interleave")) {
        *p = NM_PLACE_INTERLEAVE;
    } else if (!strcmp(s, "auto")) {
        *p = NM_PLACE_AUTO;
    } else if (!strncmp(s, "node:", 5)) {
        long v;
        if (nm_parse_long(s + 5, 0, 4095, &v, "--placement node:N", err))
            return -1;
        *p = NM_PLACE_NODE;
        if (node)
            *node = (int)v;
    } else {
        return nm_fail(err,
                       "unknown placement '%s': expected shard, replicate, "
                       "interleave, node:N or auto",
                       s);
    }
    return 0;
}

const char *nm_placement_name(nm_placement p) {
    switch (p) {
    case NM_PLACE_SHARD:
        return "shard";
    case NM_PLACE_REPLICATE:
        return "replicate";
    case NM_PLACE_INTERLEAVE:
        return "interleave";
    case NM_PLACE_NODE:
        return "node";
    case NM_PLACE_AUTO:
        return "auto";
    }
    return "unknown";
}

int nm_moe_placement_parse(const char *s, nm_moe_placement *m, nm_error *err) {
    if (!strcmp(s, "rows"))
        *m = NM_MOE_ROWS;
    else if (!strcmp(s, "experts"))
        *m = NM_MOE_EXPERTS;
    else
        return nm_fail(err, "unknown --moe-placement '%s': expected rows or experts", s);
    return 0;
}

const char *nm_moe_placement_name(nm_moe_placement m) {
    return m == NM_MOE_EXPERTS ? "experts" : "rows";
}

const char *nm_role_name(nm_role r) {
    static const char *names[] = {
        [NM_ROLE_OTHER] = "other",
        [NM_ROLE_TOKEN_EMBD] = "token_embd",
        [NM_ROLE_NORM] = "norm",
        [NM_ROLE_ATTN_Q] = "attn_q",
        [NM_ROLE_ATTN_K] = "attn_k",
        [NM_ROLE_ATTN_V] = "attn_v",
        [NM_ROLE_ATTN_OUT] = "attn_output",
        [NM_ROLE_FFN_GATE] = "ffn_gate",
        [NM_ROLE_FFN_UP] = "ffn_up",
        [NM_ROLE_FFN_DOWN] = "ffn_down",
        [NM_ROLE_OUTPUT] = "output",
        [NM_ROLE_BIAS] = "bias",
        [NM_ROLE_ROPE_FREQS] = "rope_freqs",
        [NM_ROLE_FFN_ROUTER] = "ffn_router",
        [NM_ROLE_FFN_GATE_EXPS] = "ffn_gate_exps",
        [NM_ROLE_FFN_UP_EXPS] = "ffn_up_exps",
        [NM_ROLE_FFN_DOWN_EXPS] = "ffn_down_exps",
    };
    return (unsigned)r < sizeof names / sizeof names[0] ? names[r] : "other";
}

static nm_role role_of(const char *name, int *layer) {
    *layer = -1;
    if (!strcmp(name, "token_embd.weight"))
        return NM_ROLE_TOKEN_EMBD;
    if (!strcmp(name, "output.weight"))
        return NM_ROLE_OUTPUT;
    if (!strcmp(name, "output_norm.weight"))
        return NM_ROLE_NORM;
    if (!strcmp(name, "output.bias"))
        return NM_ROLE_BIAS;
    if (!strcmp(name, "rope_freqs.weight"))
        return NM_ROLE_ROPE_FREQS;
    switch (nm_blk_tensor_parse(name, layer)) {
    case NM_BLK_ATTN_NORM:
    case NM_BLK_FFN_NORM:
    case NM_BLK_Q_NORM:
    case NM_BLK_K_NORM:
        return NM_ROLE_NORM;
    case NM_BLK_Q:
        return NM_ROLE_ATTN_Q;
    case NM_BLK_K:
        return NM_ROLE_ATTN_K;
    case NM_BLK_V:
        return NM_ROLE_ATTN_V;
    case NM_BLK_O:
        return NM_ROLE_ATTN_OUT;
    case NM_BLK_GATE:
        return NM_ROLE_FFN_GATE;
    case NM_BLK_UP:
        return NM_ROLE_FFN_UP;
    case NM_BLK_DOWN:
        return NM_ROLE_FFN_DOWN;
    case NM_BLK_Q_BIAS:
    case NM_BLK_K_BIAS:
    case NM_BLK_V_BIAS:
    case NM_BLK_O_BIAS:
    case NM_BLK_GATE_BIAS:
    case NM_BLK_UP_BIAS:
    case NM_BLK_DOWN_BIAS:
        return NM_ROLE_BIAS;
    case NM_BLK_ROUTER:
        return NM_ROLE_FFN_ROUTER;
    case NM_BLK_GATE_EXPS:
        return NM_ROLE_FFN_GATE_EXPS;
    case NM_BLK_UP_EXPS:
        return NM_ROLE_FFN_UP_EXPS;
    case NM_BLK_DOWN_EXPS:
        return NM_ROLE_FFN_DOWN_EXPS;
    default:
        return NM_ROLE_OTHER;
    }
}

/* Vectors (norms, rope factors) are too small to split and every node reads
 * all of them, so each node gets a copy. */
bool nm_tensor_is_copied(const nm_gguf_tensor *t) {
    return t->n_dims <= 1 || t->n_rows <= 1;
}

/* ---- nodes and threads ---- */

static int cmp_int(const void *a, const void *b) {
    return *(const int *)a - *(const int *)b;
}

static void append_int(char *buf, size_t n, int v) {
    size_t len = strlen(buf);
    snprintf(buf + len, n - len, "%s%d", len ? ", " : "", v);
}

/* Fills idx[] with topo node indexes; returns the count. */
static int select_nodes(const nm_topo *topo, const nm_plan_opts *o, int *idx, nm_error *err) {
    int n = 0;
    if (o->n_nodes_req <= 0) {
        for (int i = 0; i < topo->n_nodes && n < NM_MAX_NODES; i++)
            if (topo->nodes[i].allowed && topo->nodes[i].n_cores > 0)
                idx[n++] = i;
        if (n == 0)
            return nm_fail(err,
                           "%s: no NUMA node this process may use has CPUs "
                           "(allowed cpus %s, allowed nodes %s)",
                           topo->source, topo->allowed_cpuset, topo->allowed_nodeset);
        return n;
    }
    if (o->n_nodes_req > NM_MAX_NODES)
        return nm_fail(err, "--nodes: at most %d nodes", NM_MAX_NODES);
    int req[NM_MAX_NODES];
    memcpy(req, o->nodes_req, sizeof(int) * (size_t)o->n_nodes_req);
    qsort(req, (size_t)o->n_nodes_req, sizeof req[0], cmp_int);
    char not_allowed[256] = "", no_cpus[256] = "";
    for (int k = 0; k < o->n_nodes_req; k++) {
        if (k > 0 && req[k] == req[k - 1])
            return nm_fail(err, "--nodes: node %d is named twice", req[k]);
        int i = nm_topo_node_index(topo, req[k]);
        if (i < 0 || !topo->nodes[i].allowed)
            append_int(not_allowed, sizeof not_allowed, req[k]);
        else if (topo->nodes[i].n_cores == 0)
            append_int(no_cpus, sizeof no_cpus, req[k]);
        else
            idx[n++] = i;
    }
    if (not_allowed[0])
        return nm_fail(err,
                       "--nodes: node %s not allowed for this process "
                       "(allowed nodes on %s: %s)",
                       not_allowed, topo->source, topo->allowed_nodeset);
    if (no_cpus[0])
        return nm_fail(err,
                       "--nodes: node %s has no CPUs this process may use "
                       "(memory-only or outside the cpuset %s); workers need CPUs",
                       no_cpus, topo->allowed_cpuset);
    return n;
}

/* Largest-remainder split of total over weights; every count within one of
 * proportional. */
static void spread(int total, const int *weight, int n, int *out) {
    long wsum = 0;
    for (int i = 0; i < n; i++)
        wsum += weight[i];
    int given = 0;
    long rem[NM_MAX_NODES];
    for (int i = 0; i < n; i++) {
        out[i] = (int)((long)total * weight[i] / wsum);
        rem[i] = (long)total * weight[i] % wsum;
        given += out[i];
    }
    while (given < total) {
        int best = 0;
        for (int i = 1; i < n; i++)
            if (rem[i] > rem[best])
                best = i;
        out[best]++;
        rem[best] = -1;
        given++;
    }
}

/* Workers go on distinct cores first (one PU per core), then on the
 * remaining hyperthreads. More workers than PUs would only time-slice. */
static int pick_cpus(const nm_topo_node *tn, int count, nm_plan_node *pn, nm_error *err) {
    if (count > tn->n_pus)
        return nm_fail(err,
                       "node %d: %d worker threads asked for, but only %d CPUs "
                       "of it are allowed",
                       tn->os_index, count, tn->n_pus);
    if (count > NM_PLAN_MAX_CPUS)
        return nm_fail(err, "node %d: %d worker threads asked for; at most %d per node",
                       tn->os_index, count, NM_PLAN_MAX_CPUS);
    int n = 0;
    for (int c = 0; c < tn->n_cores && n < count; c++)
        pn->cpus[n++] = tn->core_first_pu[c];
    for (int k = 0; k < tn->n_pus && n < count; k++) {
        bool used = false;
        for (int j = 0; j < n; j++)
            used |= pn->cpus[j] == tn->cpus[k];
        if (!used)
            pn->cpus[n++] = tn->cpus[k];
    }
    pn->n_threads = n;
    return 0;
}

static int assign_threads(nm_plan *p, const nm_topo *topo, const int *idx, int n,
                          const nm_plan_opts *o, nm_error *err) {
    if (o->threads_per_node > 0 && o->n_threads > 0)
        return nm_fail(err, "-t and --threads-per-node both given: use one");
    int count[NM_MAX_NODES], cores[NM_MAX_NODES];
    for (int i = 0; i < n; i++) {
        cores[i] = topo->nodes[idx[i]].n_cores;
        count[i] = cores[i] < NM_PLAN_MAX_CPUS ? cores[i] : NM_PLAN_MAX_CPUS;
        if (o->threads_per_node > 0)
            count[i] = o->threads_per_node;
    }
    if (o->n_threads > 0) {
        if (o->n_nodes_req > 0 && o->n_threads < n)
            return nm_fail(err,
                           "-t %d is fewer threads than the %d nodes named by "
                           "--nodes: every node needs a worker",
                           o->n_threads, n);
        spread(o->n_threads, cores, n, count);
    }
    p->n_nodes = 0;
    for (int i = 0; i < n; i++) {
        if (count[i] == 0)
            continue; /* -t below the node count: that node computes nothing */
        nm_plan_node *pn = &p->nodes[p->n_nodes];
        pn->os_index = topo->nodes[idx[i]].os_index;
        if (pick_cpus(&topo->nodes[idx[i]], count[i], pn, err))
            return -1;
        p->n_nodes++;
    }
    return 0;
}

/* ---- compute split ---- */

/* Boundaries of units split over the plan nodes in proportion to their
 * threads: bound[k] = round(units * threads[0..k) / threads). Cumulative
 * rounding covers every unit exactly once, and each node's share is within
 * one unit of proportional. */
static void split_units(const nm_plan *p, uint64_t units, uint64_t *bound) {
    uint64_t total = 0, cum = 0;
    for (int k = 0; k < p->n_nodes; k++)
        total += (uint64_t)p->nodes[k].n_threads;
    for (int k = 0; k <= p->n_nodes; k++) {
        unsigned __int128 x = (unsigned __int128)units * cum * 2 + total;
        bound[k] = (uint64_t)(x / (2 * (unsigned __int128)total));
        if (k < p->n_nodes)
            cum += (uint64_t)p->nodes[k].n_threads;
    }
}

static int check_rows(const nm_gguf_tensor *t, uint64_t want, const char *what, nm_error *err) {
    if (t->n_rows != want)
        return nm_fail(err, "tensor '%s' (info at byte %llu): %llu rows, expected %llu (%s)",
                       t->name, (unsigned long long)t->info_offset, (unsigned long long)t->n_rows,
                       (unsigned long long)want, what);
    return 0;
}

static int split_tensor(nm_plan *p, nm_tensor_plan *tp, nm_error *err) {
    const nm_gguf_tensor *t = tp->t;
    const nm_llama_hparams *hp = &p->hp;
    uint64_t hd = hp->head_dim, group = hp->n_head / hp->n_head_kv;
    for (int k = 0; k < p->n_nodes; k++) {
        uint64_t kv0 = p->nodes[k].kv_head0, kv1 = p->nodes[k].kv_head1;
        tp->rows[k].row0 = 0;
        tp->rows[k].row1 = t->n_rows;
        if (nm_tensor_is_copied(t))
            continue;
        if (tp->role == NM_ROLE_ATTN_Q) {
            if (check_rows(t, (uint64_t)hp->n_head * hd, "head_count x head_dim", err))
                return -1;
            tp->rows[k].row0 = kv0 * group * hd;
            tp->rows[k].row1 = kv1 * group * hd;
        } else if (tp->role == NM_ROLE_ATTN_K || tp->role == NM_ROLE_ATTN_V) {
            if (check_rows(t, (uint64_t)hp->n_head_kv * hd, "head_count_kv x head_dim", err))
                return -1;
            tp->rows[k].row0 = kv0 * hd;
            tp->rows[k].row1 = kv1 * hd;
        }
    }
    if (nm_tensor_is_copied(t) || tp->role == NM_ROLE_ATTN_Q || tp->role == NM_ROLE_ATTN_K ||
        tp->role == NM_ROLE_ATTN_V)
        return 0;
    uint64_t bound[NM_MAX_NODES + 1];
    split_units(p, t->n_rows, bound);
    for (int k = 0; k < p->n_nodes; k++) {
        tp->rows[k].row0 = bound[k];
        tp->rows[k].row1 = bound[k + 1];
    }
    return 0;
}

/* ---- experts ---- */

static bool is_experts(nm_role r) {
    return r == NM_ROLE_FFN_GATE_EXPS || r == NM_ROLE_FFN_UP_EXPS || r == NM_ROLE_FFN_DOWN_EXPS;
}

/* Expert units of a 3-D expert tensor: one per expert, ne[2] of them. */
static uint64_t n_units_of(const nm_gguf_tensor *t, nm_role r) {
    return is_experts(r) && t->n_dims == 3 ? t->ne[2] : 0;
}

/* "%.80s#%llu": 80 characters of the name, '#', up to 20 digits, NUL. */
#define EXPERT_NAME 104

/* Expert e of the tensor at file index fi: its matrix, named NAME#e. */
static void make_expert_unit(nm_plan *p, int fi, uint64_t e, int ui) {
    const nm_gguf_tensor *t = p->tensors[fi].t;
    nm_gguf_tensor *u = &p->expert_t[ui - p->n_file_tensors];
    char *name = p->expert_names + (size_t)(ui - p->n_file_tensors) * EXPERT_NAME;
    snprintf(name, EXPERT_NAME, "%.80s#%llu", t->name, (unsigned long long)e);
    *u = *t;
    u->name = name;
    u->n_dims = 2;
    u->ne[2] = 1;
    u->n_rows = t->ne[1];
    u->nbytes = u->n_rows * t->row_bytes;
    u->offset = t->offset + e * u->nbytes;
    u->file_offset = t->file_offset + e * u->nbytes;
    nm_tensor_plan *tp = &p->tensors[ui];
    tp->t = u;
    tp->role = p->tensors[fi].role;
    tp->layer = p->tensors[fi].layer;
    tp->first_expert = -1;
    tp->expert = (int)e;
    tp->file_tensor = fi;
}

/* Rows of expert e for every node: split like a matrix's (NM_MOE_ROWS), or
 * all on the node that owns e (experts split over the nodes in proportion
 * to threads, node k owning [bound[k], bound[k + 1])); the other nodes get
 * empty ranges at the right end so the rows stay in node order. */
static void split_expert(nm_plan *p, nm_tensor_plan *tp, uint64_t n_expert) {
    uint64_t bound[NM_MAX_NODES + 1], rows = tp->t->n_rows, e = (uint64_t)tp->expert;
    if (p->moe == NM_MOE_ROWS) {
        split_units(p, rows, bound);
        for (int k = 0; k < p->n_nodes; k++) {
            tp->rows[k].row0 = bound[k];
            tp->rows[k].row1 = bound[k + 1];
        }
        return;
    }
    split_units(p, n_expert, bound);
    for (int k = 0; k < p->n_nodes; k++) {
        bool after_owner = e < bound[k], before_owner = e >= bound[k + 1];
        tp->rows[k].row0 = after_owner ? rows : 0;
        tp->rows[k].row1 = before_owner ? 0 : rows;
    }
}

/* ---- arenas ---- */

static void set_held(nm_range *r, const nm_gguf_tensor *t, uint64_t row0, uint64_t row1) {
    r->row0 = row0;
    r->row1 = row1;
    r->file_offset = t->file_offset + row0 * t->row_bytes;
    r->nbytes = (row1 - row0) * t->row_bytes;
    r->arena_offset = 0;
}

static void fill_held(nm_plan *p, nm_tensor_plan *tp) {
    const nm_gguf_tensor *t = tp->t;
    for (int a = 0; a < p->n_arenas; a++) {
        if (tp->first_expert >= 0) /* held as its experts */
            set_held(&tp->held[a], t, 0, 0);
        else if (p->placement == NM_PLACE_SHARD && !nm_tensor_is_copied(t))
            set_held(&tp->held[a], t, tp->rows[a].row0, tp->rows[a].row1);
        else
            set_held(&tp->held[a], t, 0, t->n_rows);
    }
}

static int cmp_file_order(const void *a, const void *b, void *tensors) {
    const nm_tensor_plan *tp = tensors;
    uint64_t x = tp[*(const int *)a].t->file_offset;
    uint64_t y = tp[*(const int *)b].t->file_offset;
    return x < y ? -1 : x > y;
}

/* Packs one arena's ranges in file order with arena_offset == file_offset
 * (mod align), so an O_DIRECT read lands in place. A reader rounds a range
 * out to align on both ends; so that the rounded read never writes other
 * file bytes over a neighbour, a range shares an align block with the
 * previous one only when both map file to arena with the same shift (then
 * the shared bytes are the same file bytes). Whole tensors consecutive in
 * the file therefore pack as one contiguous copy of the data section. */
static int pack_arena(nm_plan *p, int a, const int *order, nm_error *err) {
    uint64_t cursor = 0, al = p->align;
    bool have_prev = false;
    uint64_t prev_shift = 0;
    for (int i = 0; i < p->n_tensors; i++) {
        nm_range *r = &p->tensors[order[i]].held[a];
        if (r->nbytes == 0)
            continue;
        uint64_t ao = cursor + (r->file_offset - cursor % al + al) % al;
        if (have_prev && r->file_offset - ao != prev_shift) {
            uint64_t fresh = nm_align_up(cursor, al);
            ao = fresh + r->file_offset % al;
        }
        r->arena_offset = ao;
        prev_shift = r->file_offset - ao;
        have_prev = true;
        if (nm_add_u64(ao, r->nbytes, &cursor))
            return nm_fail(err, "arena %d: size overflows at tensor '%s'", a,
                           p->tensors[order[i]].t->name);
    }
    p->arena_bytes[a] = nm_align_up(cursor, al);
    return 0;
}

static int layout_arenas(nm_plan *p, nm_error *err) {
    bool per_node = p->placement == NM_PLACE_SHARD || p->placement == NM_PLACE_REPLICATE;
    p->n_arenas = per_node ? p->n_nodes : 1;
    for (int a = 0; a < p->n_arenas; a++)
        p->arena_node[a] = per_node                        ? p->nodes[a].os_index
                           : p->placement == NM_PLACE_NODE ? p->fixed_node
                                                           : -1;
    for (int i = 0; i < p->n_tensors; i++)
        fill_held(p, &p->tensors[i]);
    int *order = nm_calloc((size_t)p->n_tensors, sizeof(int), "the plan's tensor order", err);
    if (!order)
        return -1;
    for (int i = 0; i < p->n_tensors; i++)
        order[i] = i;
    qsort_r(order, (size_t)p->n_tensors, sizeof(int), cmp_file_order, p->tensors);
    int rc = 0;
    for (int a = 0; a < p->n_arenas && rc == 0; a++)
        rc = pack_arena(p, a, order, err);
    free(order);
    return rc;
}

/* ---- traffic ---- */

/* Bytes node k's workers read per decoded token: their rows of every split
 * matrix plus the whole of every copied vector. An untied token embedding is
 * a row lookup, counted apart (embd_row_bytes). */
uint64_t nm_plan_node_read_bytes(const nm_plan *p, int k) {
    uint64_t sum = 0;
    for (int i = 0; i < p->n_tensors; i++) {
        const nm_tensor_plan *tp = &p->tensors[i];
        if ((tp->role == NM_ROLE_TOKEN_EMBD && p->embd_row_bytes) || tp->expert >= 0)
            continue;
        sum += (tp->rows[k].row1 - tp->rows[k].row0) * tp->t->row_bytes;
    }
    if (!p->hp.n_expert)
        return sum;
    return sum + nm_plan_node_expert_bytes(p, k) * p->hp.n_expert_used / p->hp.n_expert;
}

uint64_t nm_plan_node_expert_bytes(const nm_plan *p, int k) {
    uint64_t sum = 0;
    for (int i = p->n_file_tensors; i < p->n_tensors; i++)
        sum +=
            (p->tensors[i].rows[k].row1 - p->tensors[i].rows[k].row0) * p->tensors[i].t->row_bytes;
    return sum;
}

/* Per layer: the expert_used_count largest experts' bytes of node k (the
 * three matrices of an expert together). */
uint64_t nm_plan_node_expert_bytes_max(const nm_plan *p, int k) {
    if (!p->hp.n_expert)
        return 0;
    if (p->moe == NM_MOE_ROWS)
        return nm_plan_node_expert_bytes(p, k) * p->hp.n_expert_used / p->hp.n_expert;
    uint64_t sum = 0;
    for (int i = 0; i < p->n_file_tensors; i++) {
        const nm_tensor_plan *tp = &p->tensors[i];
        if (tp->first_expert < 0)
            continue;
        uint64_t owned = 0, n = tp->t->ne[2];
        for (uint64_t e = 0; e < n; e++) {
            const nm_tensor_plan *u = &p->tensors[tp->first_expert + (int)e];
            owned += u->rows[k].row1 > u->rows[k].row0;
        }
        uint64_t used = owned < p->hp.n_expert_used ? owned : p->hp.n_expert_used;
        sum += used * tp->t->ne[1] * tp->t->row_bytes;
    }
    return sum;
}

static void compute_traffic(nm_plan *p, bool tied_embd) {
    const nm_gguf_tensor *embd = NULL;
    for (int i = 0; i < p->n_tensors; i++)
        if (p->tensors[i].role == NM_ROLE_TOKEN_EMBD)
            embd = p->tensors[i].t;
    /* embd_row_bytes stays 0 when the embedding is the LM head: then it is
     * read in full and counted like a matrix. */
    p->embd_row_bytes = embd && !tied_embd ? embd->row_bytes : 0;
    uint64_t remote = 0;
    for (int k = 0; k < p->n_nodes; k++) {
        uint64_t bytes = nm_plan_node_read_bytes(p, k);
        if (p->placement == NM_PLACE_INTERLEAVE)
            remote += bytes * (uint64_t)(p->n_nodes - 1) / (uint64_t)p->n_nodes;
        else if (p->placement == NM_PLACE_NODE && p->nodes[k].os_index != p->fixed_node)
            remote += bytes;
    }
    p->remote_bytes_per_token = remote;
}

/* ---- build ---- */

static int check_fixed_node(const nm_plan *p, const nm_topo *topo, nm_error *err) {
    int i = nm_topo_node_index(topo, p->fixed_node);
    if (i < 0 || !topo->nodes[i].allowed)
        return nm_fail(err,
                       "--placement node:%d: node %d is not allowed for this "
                       "process (allowed nodes on %s: %s)",
                       p->fixed_node, p->fixed_node, topo->source, topo->allowed_nodeset);
    return 0;
}

static int build(nm_plan *p, const nm_gguf *g, const nm_topo *topo, const nm_plan_opts *o,
                 nm_error *err) {
    if (nm_llama_hparams_read(g, &p->hp, false, err))
        return -1;
    if (p->hp.n_head_kv == 0 || p->hp.head_dim == 0 || p->hp.n_head % p->hp.n_head_kv)
        return nm_fail(err, "%s: head_count %u is not a multiple of head_count_kv %u",
                       g->path ? g->path : "model", p->hp.n_head, p->hp.n_head_kv);
    if (p->placement == NM_PLACE_NODE && check_fixed_node(p, topo, err))
        return -1;
    int idx[NM_MAX_NODES];
    int n = select_nodes(topo, o, idx, err);
    if (n < 0 || assign_threads(p, topo, idx, n, o, err))
        return -1;
    uint64_t kv[NM_MAX_NODES + 1];
    split_units(p, p->hp.n_head_kv, kv);
    for (int k = 0; k < p->n_nodes; k++) {
        p->nodes[k].kv_head0 = (uint32_t)kv[k];
        p->nodes[k].kv_head1 = (uint32_t)kv[k + 1];
    }
    uint64_t n_units = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        int l;
        n_units += n_units_of(&g->tensors[i], role_of(g->tensors[i].name, &l));
    }
    if (n_units > (uint64_t)INT32_MAX - g->n_tensors)
        return nm_fail(err, "%s: %llu expert matrices are too many to plan",
                       g->path ? g->path : "model", (unsigned long long)n_units);
    size_t n_all = (size_t)(g->n_tensors + n_units);
    p->tensors = nm_calloc(n_all, sizeof *p->tensors, "the plan's tensor table", err);
    p->expert_t = nm_calloc(n_units + 1, sizeof *p->expert_t, "the plan's expert table", err);
    p->expert_names = nm_calloc(n_units + 1, EXPERT_NAME, "the plan's expert names", err);
    if (!p->tensors || !p->expert_t || !p->expert_names)
        return -1;
    p->n_file_tensors = (int)g->n_tensors;
    p->n_tensors = (int)n_all;
    int next_unit = p->n_file_tensors;
    for (int i = 0; i < p->n_file_tensors; i++) {
        nm_tensor_plan *tp = &p->tensors[i];
        tp->t = &g->tensors[i];
        tp->role = role_of(tp->t->name, &tp->layer);
        tp->first_expert = tp->expert = -1;
        tp->file_tensor = i;
        uint64_t n = n_units_of(tp->t, tp->role);
        if (n == 0) {
            if (split_tensor(p, tp, err))
                return -1;
            continue;
        }
        tp->first_expert = next_unit; /* its own rows stay empty */
        for (uint64_t e = 0; e < n; e++, next_unit++) {
            make_expert_unit(p, i, e, next_unit);
            split_expert(p, &p->tensors[next_unit], n);
        }
    }
    if (layout_arenas(p, err))
        return -1;
    compute_traffic(p, nm_gguf_find_tensor(g, "output.weight") == NULL);
    return 0;
}

nm_plan *nm_plan_build(const nm_gguf *g, const nm_topo *topo, const nm_plan_opts *opts,
                       nm_error *err) {
    nm_plan_opts def = {0};
    const nm_plan_opts *o = opts ? opts : &def;
    if (o->align & (o->align - 1)) {
        nm_fail(err, "plan alignment %llu is not a power of two", (unsigned long long)o->align);
        return NULL;
    }
    if (o->placement == NM_PLACE_AUTO) {
        nm_fail(err, "--placement auto is decided against the machine's memory: "
                     "numalm_open decides it from the fit table (numa/fit.h)");
        return NULL;
    }
    nm_plan *p = nm_calloc(1, sizeof *p, "the plan", err);
    if (!p)
        return NULL;
    p->placement = o->placement;
    p->moe = o->moe;
    p->fixed_node = o->placement == NM_PLACE_NODE ? o->fixed_node : -1;
    p->align = o->align ? o->align : 4096;
    if (build(p, g, topo, o, err)) {
        nm_plan_free(p);
        return NULL;
    }
    return p;
}

void nm_plan_free(nm_plan *p) {
    if (!p)
        return;
    free(p->tensors);
    free(p->expert_t);
    free(p->expert_names);
    free(p);
}

uint64_t nm_plan_arena_phase(const nm_plan *p, int a, uint64_t align) {
    uint64_t first = UINT64_MAX, phase = 0;
    for (int i = 0; i < p->n_tensors; i++) {
        const nm_range *r = &p->tensors[i].held[a];
        if (r->nbytes && r->arena_offset < first) {
            first = r->arena_offset;
            phase = (r->file_offset - r->arena_offset) % align;
        }
    }
    return phase;
}
