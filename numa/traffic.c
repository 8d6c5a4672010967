/* The traffic model (traffic.h).
 *
 * Who reads what, per token:
 *   matrices    node k's workers read their rows of every matrix (the plan's
 *               compute split; llama.cpp splits rows by threads the same
 *               way); an expert tensor only n_expert_used / n_expert of it;
 *   vectors     every node its copy of the norms (copied tensors);
 *   embedding   one row, read by the main thread (node 0), when output.weight
 *               exists (else the embedding is the LM head, a matrix);
 *   KV cache    K and V of the node's KV heads at every cached position;
 *   activations each layer, every node reads the vectors the phases share
 *               (3 x n_embd + n_ff floats) from the main thread's node.
 * Where it lives: numalm's placement (shard/replicate local, interleave even
 * over the nodes, node:N on N; its KV cache is always local); llama.cpp's
 * mmap first touch puts every page on node 0 (the loading thread's);
 * --numa distribute with numactl --interleave=all spreads them evenly; one
 * node reads everything locally with its own cores. */
#include "traffic.h"

#include "common/util.h"

#include <stdio.h>
#include <string.h>

/* Barriers per layer: numalm's forward pass has 4 global and 1 per node;
 * llama.cpp's graph ~20 ops a layer, a barrier after each (an estimate). */
#define NUMALM_BARRIERS_PER_LAYER 5
#define LLAMA_BARRIERS_PER_LAYER 20
/* One barrier, unless measured (nm_traffic_opts.barrier_s): ~1 us among
 * the cores of a node, ~2 us across nodes (the last arrival's cache line
 * has to cross the link; an assumption). */
#define BARRIER_S_LOCAL 1e-6
#define BARRIER_S_REMOTE 2e-6

void nm_traffic_moe(const nm_gguf *g, nm_traffic_opts *o) {
    const char *arch = NULL;
    char key[96];
    uint32_t n = 0, used = 0;
    o->n_expert = o->n_expert_used = 0;
    if (nm_gguf_get_str(g, "general.architecture", &arch, NULL) != 1)
        return;
    snprintf(key, sizeof key, "%s.expert_count", arch);
    if (nm_gguf_get_u32(g, key, &n, NULL) != 1 || n == 0)
        return;
    snprintf(key, sizeof key, "%s.expert_used_count", arch);
    if (nm_gguf_get_u32(g, key, &used, NULL) != 1 || used == 0 || used > n)
        return;
    o->n_expert = n;
    o->n_expert_used = used;
}

double nm_tensor_active_fraction(const nm_traffic_opts *o, const nm_tensor_plan *tp) {
    if (!o || !o->n_expert || !strstr(tp->t->name, "_exps"))
        return 1.0;
    return (double)o->n_expert_used / (double)o->n_expert;
}

static int plan_index(const nm_plan *p, int os) {
    for (int k = 0; k < p->n_nodes; k++)
        if (p->nodes[k].os_index == os)
            return k;
    return -1;
}

/* NM_SCEN_ONE_NODE is one socket: the plan nodes in node 0's package
 * (just node 0 when packages are unknown), each doing a share of the work
 * in proportion to its threads, from its own memory. share[k] 0: idle. */
static void socket_share(const nm_plan *p, nm_scenario s, const nm_bw *bw, double *share) {
    int total = 0;
    for (int k = 0; k < p->n_nodes; k++) {
        bool in = s != NM_SCEN_ONE_NODE || k == 0 ||
                  (bw && bw->package[0] >= 0 && bw->package[k] == bw->package[0]);
        share[k] = in ? p->nodes[k].n_threads : 0;
        total += in ? p->nodes[k].n_threads : 0;
    }
    for (int k = 0; k < p->n_nodes; k++)
        share[k] = total ? share[k] / total : 0;
}

/* Where scenario s keeps the weights: 'L' local to the reader, 'E' even
 * over the nodes, or the index of one node. */
static int weights_home(const nm_plan *p, nm_scenario s) {
    switch (s) {
    case NM_SCEN_PLAN:
        if (p->placement == NM_PLACE_INTERLEAVE)
            return 'E';
        if (p->placement == NM_PLACE_NODE) {
            int j = plan_index(p, p->fixed_node);
            return j >= 0 ? j : 0; /* a memory-only node: counted as node 0 */
        }
        return 'L';
    case NM_SCEN_ONE_NODE:
        return 'L';
    case NM_SCEN_FIRST_TOUCH:
        return 0;
    case NM_SCEN_DISTRIBUTE:
        return 'E';
    }
    return 'L';
}

static void add(nm_traffic *t, int k, int home, double bytes) {
    if (home == 'L') {
        t->bytes[k][k] += bytes;
    } else if (home == 'E') {
        for (int j = 0; j < t->n; j++)
            t->bytes[k][j] += bytes / t->n;
    } else {
        t->bytes[k][home] += bytes;
    }
}

/* The bytes node k reads of tensor tp per token: its rows, or for one
 * socket its share of all of them. */
static double tensor_bytes(const nm_tensor_plan *tp, int k, nm_scenario s, const double *share,
                           const nm_traffic_opts *o) {
    double rows = s == NM_SCEN_ONE_NODE ? (double)tp->t->n_rows * share[k]
                                        : (double)(tp->rows[k].row1 - tp->rows[k].row0);
    if (nm_tensor_is_copied(tp->t))
        rows = s == NM_SCEN_ONE_NODE && share[k] == 0 ? 0 : (double)tp->t->n_rows;
    return rows * (double)tp->t->row_bytes * nm_tensor_active_fraction(o, tp);
}

static void count_weights(const nm_plan *p, nm_scenario s, const nm_traffic_opts *o, int home,
                          const double *share, nm_traffic *t) {
    for (int i = 0; i < p->n_tensors; i++) {
        const nm_tensor_plan *tp = &p->tensors[i];
        if (tp->role == NM_ROLE_TOKEN_EMBD && p->embd_row_bytes)
            continue; /* a row lookup, below */
        if (tp->first_expert >= 0)
            continue; /* a stacked expert tensor: counted as its experts */
        bool copied = nm_tensor_is_copied(tp->t);
        for (int k = 0; k < p->n_nodes; k++) {
            double b = tensor_bytes(tp, k, s, share, o);
            if (copied)
                t->vector_bytes[k] += (uint64_t)b;
            else
                t->matrix_bytes[k] += (uint64_t)b;
            add(t, k, home, b);
        }
    }
    if (!p->embd_row_bytes)
        return;
    /* the row is wherever its arena is: a shard holds rows in proportion
     * to the nodes' threads, so a random token's row is there as often */
    t->embd_bytes[0] = p->embd_row_bytes;
    if (s == NM_SCEN_PLAN && p->placement == NM_PLACE_SHARD) {
        const nm_tensor_plan *e = NULL;
        for (int i = 0; i < p->n_tensors && !e; i++)
            e = p->tensors[i].role == NM_ROLE_TOKEN_EMBD ? &p->tensors[i] : NULL;
        for (int j = 0; e && j < p->n_nodes; j++)
            t->bytes[0][j] += (double)p->embd_row_bytes *
                              (double)(e->rows[j].row1 - e->rows[j].row0) / (double)e->t->n_rows;
    } else {
        add(t, 0, home, (double)p->embd_row_bytes);
    }
}

/* The mean number of cached positions a generated token reads. */
static double mean_position(const nm_traffic_opts *o) {
    return (double)o->depth + (double)((o->n_gen > 0 ? o->n_gen : 128) + 1) / 2.0;
}

/* K and V per position for node k's heads (all heads when one node). */
static void count_kv(const nm_plan *p, nm_scenario s, const nm_traffic_opts *o, const double *share,
                     nm_traffic *t) {
    const nm_llama_hparams *hp = &p->hp;
    uint64_t esize = o->kv_elem_bytes ? o->kv_elem_bytes : 2;
    double mean_pos = mean_position(o);
    for (int k = 0; k < p->n_nodes; k++) {
        /* numalm: the plan's KV heads; one socket and llama.cpp: by threads */
        double heads = s == NM_SCEN_PLAN ? p->nodes[k].kv_head1 - p->nodes[k].kv_head0
                                         : hp->n_head_kv * share[k];
        double per_pos = 2.0 * hp->n_layer * heads * hp->head_dim * (double)esize;
        t->kv_bytes_per_pos[k] = (uint64_t)per_pos;
        t->kv_bytes[k] = per_pos * mean_pos;
        /* numalm keeps each node's KV heads on that node; llama.cpp's cache
         * is one buffer, cleared (first touched) by the main thread */
        int home = s == NM_SCEN_PLAN || s == NM_SCEN_ONE_NODE ? 'L'
                   : s == NM_SCEN_DISTRIBUTE                  ? 'E'
                                                              : 0;
        add(t, k, home, t->kv_bytes[k]);
    }
}

static void count_activations(const nm_plan *p, const double *share, nm_traffic *t) {
    const nm_llama_hparams *hp = &p->hp;
    double per_layer = (3.0 * hp->n_embd + hp->n_ff) * 4.0;
    for (int k = 0; k < p->n_nodes; k++) {
        if (share[k] == 0)
            continue;
        t->act_bytes[k] = per_layer * hp->n_layer;
        t->bytes[k][0] += t->act_bytes[k];
    }
}

/* Is tensor i a matrix that decode reads (not a copied vector, not the
 * embedding when only its row is looked up, not a stacked expert tensor)? */
static bool is_read_matrix(const nm_plan *p, int i) {
    const nm_tensor_plan *tp = &p->tensors[i];
    return !(tp->role == NM_ROLE_TOKEN_EMBD && p->embd_row_bytes) && tp->first_expert < 0 &&
           !nm_tensor_is_copied(tp->t);
}

/* Bytes of a matrix a token reads (its active experts' share for MoE). */
static double token_matrix_bytes(const nm_traffic_opts *o, const nm_tensor_plan *tp) {
    return (double)tp->t->n_rows * (double)tp->t->row_bytes * nm_tensor_active_fraction(o, tp);
}

int nm_traffic_matrix_types(const nm_plan *p, const nm_traffic_opts *o, uint32_t *types,
                            double *bytes, int max) {
    int n = 0;
    for (int i = 0; i < p->n_tensors; i++) {
        if (!is_read_matrix(p, i))
            continue;
        const nm_tensor_plan *tp = &p->tensors[i];
        double b = token_matrix_bytes(o, tp);
        int k = 0;
        while (k < n && types[k] != tp->t->type)
            k++;
        if (k == n) {
            if (n == max) {
                /* keep the max largest: replace the smallest if this is larger */
                int small = 0;
                for (int j = 1; j < n; j++)
                    small = bytes[j] < bytes[small] ? j : small;
                if (bytes[small] >= b)
                    continue;
                k = small;
                bytes[k] = 0;
            } else {
                bytes[n++] = 0;
            }
            types[k] = tp->t->type;
        }
        bytes[k] += b;
    }
    for (int a = 1; a < n; a++) /* most bytes first */
        for (int b = a; b > 0 && bytes[b] > bytes[b - 1]; b--) {
            double tb = bytes[b];
            uint32_t tt = types[b];
            bytes[b] = bytes[b - 1], types[b] = types[b - 1];
            bytes[b - 1] = tb, types[b - 1] = tt;
        }
    return n;
}

/* The kernels' fraction of the read bandwidth over a token's matrices:
 * their bytes over the time each type's bytes take at its measured ratio
 * (the byte-weighted harmonic mean). --efficiency overrides it. */
static double kernel_efficiency(const nm_plan *p, const nm_traffic_opts *o) {
    if (o->efficiency > 0)
        return o->efficiency;
    if (o->n_kernel <= 0)
        return 1.0;
    double bytes = 0, time = 0;
    for (int i = 0; i < p->n_tensors; i++) {
        if (!is_read_matrix(p, i))
            continue;
        const nm_tensor_plan *tp = &p->tensors[i];
        double b = token_matrix_bytes(o, tp);
        double r = 1.0;
        for (int k = 0; k < o->n_kernel && k < NM_TRAFFIC_MAX_TYPES; k++)
            if (o->kernel_type[k] == tp->t->type && o->kernel_ratio[k] > 0)
                r = o->kernel_ratio[k];
        bytes += b;
        time += b / r;
    }
    return time > 0 ? bytes / time : 1.0;
}

/* ---- prediction ---- */

static void predict(nm_traffic *t, const nm_bw *bw, const uint64_t *dist,
                    const nm_traffic_opts *o) {
    int n = t->n;
    double worst = 0;
    for (int j = 0; j < n; j++) { /* each node's memory */
        double b = 0;
        for (int k = 0; k < n; k++)
            b += t->bytes[k][j];
        double s = b / (bw->gbs[j][j] * 1e9);
        if (b > 0 && s > worst) {
            worst = s;
            snprintf(t->bottleneck, sizeof t->bottleneck, "node %d memory", t->os_index[j]);
        }
    }
    for (int k = 0; k < n; k++)
        for (int j = 0; j < n; j++) { /* each link, one direction */
            if (k == j)
                continue;
            double b = t->bytes[k][j], cap = bw->gbs[k][j];
            int pk = bw->package[k], pj = bw->package[j];
            if (pk >= 0 && pj >= 0 && pk != pj) {
                /* every node pair between two packages shares their link */
                b = 0;
                for (int a = 0; a < n; a++)
                    for (int c = 0; c < n; c++)
                        if (bw->package[a] == pk && bw->package[c] == pj) {
                            b += t->bytes[a][c];
                            cap = bw->gbs[a][c] < cap ? bw->gbs[a][c] : cap;
                        }
            }
            double s = b / (cap * 1e9);
            if (s > worst) {
                worst = s;
                snprintf(t->bottleneck, sizeof t->bottleneck, "link node %d -> node %d",
                         t->os_index[j], t->os_index[k]);
            }
        }
    for (int k = 0; k < n; k++) { /* each node's cores; a remote line takes
                                     longer (SLIT distance as a latency ratio) */
        double s = 0;
        for (int j = 0; j < n && t->threads[k] > 0; j++) {
            double d = dist ? (double)dist[k * n + j] : (j == k ? 10.0 : 20.0);
            double ratio = d > 10.0 ? 10.0 / d : 1.0;
            s += t->bytes[k][j] / (t->threads[k] * bw->core_gbs * 1e9 * ratio);
        }
        if (s > worst) {
            worst = s;
            snprintf(t->bottleneck, sizeof t->bottleneck, "node %d cores (%d threads)",
                     t->os_index[k], t->threads[k]);
        }
    }
    int spans = 0;
    for (int k = 0; k < n; k++)
        spans += t->threads[k] > 0;
    t->barrier_s = o->barrier_s > 0 ? o->barrier_s : spans > 1 ? BARRIER_S_REMOTE : BARRIER_S_LOCAL;
    t->seconds = worst / t->efficiency + t->barriers * t->barrier_s + t->vector_s;
    t->tok_s = t->seconds > 0 ? 1.0 / t->seconds : 0;
}

static const char *scenario_name(const nm_plan *p, nm_scenario s, const nm_bw *bw, char *buf,
                                 size_t n) {
    switch (s) {
    case NM_SCEN_PLAN:
        if (p->placement == NM_PLACE_NODE)
            snprintf(buf, n, "numalm node:%d", p->fixed_node);
        else
            snprintf(buf, n, "numalm %s", nm_placement_name(p->placement));
        break;
    case NM_SCEN_ONE_NODE:
        if (bw && bw->package[0] >= 0)
            snprintf(buf, n, "one socket (node %d's package)", p->nodes[0].os_index);
        else
            snprintf(buf, n, "one node (node %d; packages unknown)", p->nodes[0].os_index);
        break;
    case NM_SCEN_FIRST_TOUCH:
        snprintf(buf, n, "llama.cpp mmap, first touch");
        break;
    case NM_SCEN_DISTRIBUTE:
        snprintf(buf, n, "llama.cpp --numa distribute, interleaved");
        break;
    }
    return buf;
}

void nm_traffic_compute(const nm_plan *p, nm_scenario s, const nm_traffic_opts *o, const nm_bw *bw,
                        const uint64_t *dist, nm_traffic *t) {
    memset(t, 0, sizeof *t);
    t->scenario = s;
    t->n = p->n_nodes;
    scenario_name(p, s, bw, t->name, sizeof t->name);
    double share[NM_MAX_NODES];
    socket_share(p, s, bw, share);
    for (int k = 0; k < p->n_nodes; k++) {
        t->os_index[k] = p->nodes[k].os_index;
        t->threads[k] = share[k] > 0 ? p->nodes[k].n_threads : 0;
    }
    count_weights(p, s, o, weights_home(p, s), share, t);
    count_kv(p, s, o, share, t);
    count_activations(p, share, t);
    t->efficiency = kernel_efficiency(p, o);
    /* the non-matrix work: each worker's own, and the shared part split
     * over every working thread (each node does its heads' and rows' share) */
    int threads = 0;
    for (int k = 0; k < p->n_nodes; k++)
        threads += t->threads[k];
    double shared = o->split_s + p->hp.n_head * mean_position(o) * o->attend_s;
    t->vector_s = threads > 0 ? p->hp.n_layer * (o->layer_s + shared / threads) : 0;
    bool llama = s == NM_SCEN_FIRST_TOUCH || s == NM_SCEN_DISTRIBUTE;
    t->barriers =
        (int)p->hp.n_layer * (llama ? LLAMA_BARRIERS_PER_LAYER : NUMALM_BARRIERS_PER_LAYER) + 1;
    if (bw)
        predict(t, bw, dist, o);
}

int nm_traffic_all(const nm_plan *p, const nm_traffic_opts *o, const nm_bw *bw,
                   const uint64_t *dist, nm_traffic *out) {
    static const nm_scenario order[] = {NM_SCEN_PLAN, NM_SCEN_ONE_NODE, NM_SCEN_FIRST_TOUCH,
                                        NM_SCEN_DISTRIBUTE};
    int n = 0;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        if (p->n_nodes == 1 && order[i] != NM_SCEN_PLAN)
            continue; /* on one node they are all the same run */
        nm_traffic_compute(p, order[i], o, bw, dist, &out[n++]);
    }
    double base = 0;
    for (int i = 0; i < n; i++)
        if (out[i].scenario == NM_SCEN_ONE_NODE || n == 1)
            base = out[i].tok_s;
    for (int i = 0; i < n; i++)
        out[i].speedup = base > 0 ? out[i].tok_s / base : 0;
    return n;
}
