/* Printing a plan: a summary per node (row ranges per tensor role, which is
 * the same in every layer), the full table for --verbose, and JSON. */
#include "plan.h"

#include "common/json.h"
#include "common/util.h"
#include "gguf/ggml_types.h"

#include <string.h>

static uint64_t node_held_bytes(const nm_plan *p, int k) {
    switch (p->placement) {
    case NM_PLACE_SHARD:
    case NM_PLACE_REPLICATE:
        return p->arena_bytes[k];
    case NM_PLACE_INTERLEAVE:
        return p->arena_bytes[0] / (uint64_t)p->n_nodes;
    case NM_PLACE_NODE:
        return p->nodes[k].os_index == p->fixed_node ? p->arena_bytes[0] : 0;
    case NM_PLACE_AUTO: /* never in a built plan */
        break;
    }
    return 0;
}

/* Expected bytes per token of the embedding lookup that come from another
 * node: a token's row is on the reader's node 1/n of the time when split. */
static uint64_t embd_remote(const nm_plan *p) {
    uint64_t n = (uint64_t)p->n_nodes;
    switch (p->placement) {
    case NM_PLACE_SHARD:
    case NM_PLACE_INTERLEAVE:
        return p->embd_row_bytes * (n - 1) / n;
    case NM_PLACE_REPLICATE:
        return 0;
    case NM_PLACE_NODE: {
        bool on_plan = false;
        for (int k = 0; k < p->n_nodes; k++)
            on_plan |= p->nodes[k].os_index == p->fixed_node;
        return on_plan ? p->embd_row_bytes * (n - 1) / n : p->embd_row_bytes;
    }
    case NM_PLACE_AUTO: /* never in a built plan */
        break;
    }
    return 0;
}

static const nm_role SPLIT_ROLES[] = {
    NM_ROLE_TOKEN_EMBD, NM_ROLE_ATTN_Q,        NM_ROLE_ATTN_K,      NM_ROLE_ATTN_V,
    NM_ROLE_ATTN_OUT,   NM_ROLE_FFN_GATE,      NM_ROLE_FFN_UP,      NM_ROLE_FFN_DOWN,
    NM_ROLE_FFN_ROUTER, NM_ROLE_FFN_GATE_EXPS, NM_ROLE_FFN_UP_EXPS, NM_ROLE_FFN_DOWN_EXPS,
    NM_ROLE_OUTPUT,     NM_ROLE_OTHER,
};

static void print_role(const nm_plan *p, int k, nm_role role, FILE *out) {
    const nm_tensor_plan *first = NULL;
    int count = 0;
    bool uniform = true;
    uint64_t bytes = 0;
    for (int i = 0; i < p->n_tensors; i++) {
        const nm_tensor_plan *tp = &p->tensors[i];
        if (tp->role != role || nm_tensor_is_copied(tp->t) || tp->first_expert >= 0)
            continue;
        if (!first)
            first = tp;
        count++;
        bytes += (tp->rows[k].row1 - tp->rows[k].row0) * tp->t->row_bytes;
        uniform &= tp->rows[k].row0 == first->rows[k].row0 &&
                   tp->rows[k].row1 == first->rows[k].row1 && tp->t->n_rows == first->t->n_rows;
    }
    if (!first)
        return;
    char b[32];
    fprintf(out, "    %-14s ", nm_role_name(role));
    if (first->expert >= 0 && p->moe == NM_MOE_EXPERTS) {
        int lo = INT32_MAX, hi = -1;
        for (int i = p->n_file_tensors; i < p->n_tensors; i++) {
            const nm_tensor_plan *tp = &p->tensors[i];
            if (tp->role == role && tp->rows[k].row1 > tp->rows[k].row0) {
                lo = tp->expert < lo ? tp->expert : lo;
                hi = tp->expert > hi ? tp->expert : hi;
            }
        }
        if (hi < 0)
            fprintf(out, "no experts");
        else
            fprintf(out, "whole experts [%d, %d] of %u", lo, hi, p->hp.n_expert);
    } else if (uniform)
        fprintf(out, "rows [%llu, %llu) of %llu", (unsigned long long)first->rows[k].row0,
                (unsigned long long)first->rows[k].row1, (unsigned long long)first->t->n_rows);
    else
        fprintf(out, "row ranges differ between tensors (see --verbose)");
    fprintf(out, "  x%d %s%s, %s%s\n", count, first->expert >= 0 ? "expert" : "tensor",
            count == 1 ? "" : "s", nm_fmt_bytes(bytes, b, sizeof b),
            role == NM_ROLE_TOKEN_EMBD && p->embd_row_bytes ? " (held; one row read per token)"
                                                            : "");
}

static void print_copied(const nm_plan *p, FILE *out) {
    int count = 0;
    uint64_t bytes = 0;
    for (int i = 0; i < p->n_tensors; i++)
        if (nm_tensor_is_copied(p->tensors[i].t)) {
            count++;
            bytes += p->tensors[i].t->nbytes;
        }
    char b[32];
    if (count)
        fprintf(out, "    %-14s whole, on every node: %d tensor%s, %s\n", "vectors", count,
                count == 1 ? "" : "s", nm_fmt_bytes(bytes, b, sizeof b));
}

static void print_node(const nm_plan *p, int k, FILE *out) {
    const nm_plan_node *pn = &p->nodes[k];
    char cpus[512], b1[32], b2[32];
    fprintf(out, "node %d: %d worker thread%s on cpus %s; kv heads [%u, %u) of %u\n", pn->os_index,
            pn->n_threads, pn->n_threads == 1 ? "" : "s",
            nm_fmt_int_list(pn->cpus, pn->n_threads, cpus, sizeof cpus), pn->kv_head0, pn->kv_head1,
            p->hp.n_head_kv);
    const char *where = p->placement == NM_PLACE_INTERLEAVE
                            ? " (its share of the interleaved arena)"
                        : p->placement == NM_PLACE_NODE ? ""
                                                        : " in its own arena";
    fprintf(out, "  holds %s%s; its workers read %s per token\n",
            nm_fmt_bytes(node_held_bytes(p, k), b1, sizeof b1), where,
            nm_fmt_bytes(nm_plan_node_read_bytes(p, k), b2, sizeof b2));
    if (p->hp.n_expert) {
        char b3[32];
        fprintf(out,
                "  experts (%s): %s of expert rows; a token makes it read %s of them on "
                "average, %s at most (%u of %u experts active)\n",
                p->moe == NM_MOE_ROWS ? "every expert's rows split" : "whole experts",
                nm_fmt_bytes(nm_plan_node_expert_bytes(p, k), b1, sizeof b1),
                nm_fmt_bytes(nm_plan_node_expert_bytes(p, k) * p->hp.n_expert_used / p->hp.n_expert,
                             b2, sizeof b2),
                nm_fmt_bytes(nm_plan_node_expert_bytes_max(p, k), b3, sizeof b3),
                p->hp.n_expert_used, p->hp.n_expert);
    }
    for (size_t r = 0; r < sizeof SPLIT_ROLES / sizeof SPLIT_ROLES[0]; r++)
        print_role(p, k, SPLIT_ROLES[r], out);
    print_copied(p, out);
}

static void print_arenas(const nm_plan *p, FILE *out) {
    char b[32];
    fprintf(out, "arenas (offsets congruent to file offsets mod %llu):\n",
            (unsigned long long)p->align);
    for (int a = 0; a < p->n_arenas; a++) {
        if (p->arena_node[a] >= 0)
            fprintf(out, "  arena %d: %s bound to node %d\n", a,
                    nm_fmt_bytes(p->arena_bytes[a], b, sizeof b), p->arena_node[a]);
        else
            fprintf(out, "  arena %d: %s interleaved over all %d plan nodes\n", a,
                    nm_fmt_bytes(p->arena_bytes[a], b, sizeof b), p->n_nodes);
    }
}

static const char *remote_why(const nm_plan *p) {
    switch (p->placement) {
    case NM_PLACE_SHARD:
        return "every worker reads only rows held on its own node";
    case NM_PLACE_REPLICATE:
        return "every node holds a full copy";
    case NM_PLACE_INTERLEAVE:
        return "(n-1)/n of every node's pages are on other nodes";
    case NM_PLACE_NODE:
        return "everything computed on other nodes is read from the bound node";
    case NM_PLACE_AUTO: /* never in a built plan */
        break;
    }
    return "";
}

void nm_plan_print(const nm_plan *p, FILE *out) {
    int threads = 0;
    for (int k = 0; k < p->n_nodes; k++)
        threads += p->nodes[k].n_threads;
    fprintf(out, "placement %s", nm_placement_name(p->placement));
    if (p->placement == NM_PLACE_NODE)
        fprintf(out, ":%d", p->fixed_node);
    fprintf(out, " over %d node%s, %d worker threads\n", p->n_nodes, p->n_nodes == 1 ? "" : "s",
            threads);
    fprintf(out, "compute split (same for every placement): matrices by rows in "
                 "proportion to worker threads, attention on whole KV-head groups\n");
    for (int k = 0; k < p->n_nodes; k++)
        print_node(p, k, out);
    print_arenas(p, out);
    char b1[32], b2[32];
    fprintf(out,
            "exchanged between nodes each layer: activations only, never weights "
            "(the attention output, %u values; the FFN hidden vector, %u values; "
            "each matrix's output slice)\n",
            p->hp.n_head * p->hp.head_dim, p->hp.n_ff);
    if (p->embd_row_bytes)
        fprintf(out,
                "token_embd: split by rows like a matrix; a token reads one %s row "
                "of it, from another node %s per token on average\n",
                nm_fmt_bytes(p->embd_row_bytes, b1, sizeof b1),
                nm_fmt_bytes(embd_remote(p), b2, sizeof b2));
    else
        fprintf(out, "token_embd: no output.weight, so the embedding is also the LM head: "
                     "split by rows and read like a matrix\n");
    fprintf(out, "remote weight bytes per token: %s (%s)\n",
            nm_fmt_bytes(p->remote_bytes_per_token, b1, sizeof b1), remote_why(p));
}

void nm_plan_print_table(const nm_plan *p, FILE *out) {
    fprintf(out, "%-28s %-5s %8s", "tensor", "type", "rows");
    for (int k = 0; k < p->n_nodes; k++)
        fprintf(out, "  node%-3d rows    ", p->nodes[k].os_index);
    fprintf(out, "  held (arena: offset+bytes)\n");
    for (int i = 0; i < p->n_tensors; i++) {
        const nm_tensor_plan *tp = &p->tensors[i];
        fprintf(out, "%-28s %-5s %8llu", tp->t->name, nm_type_name(tp->t->type),
                (unsigned long long)tp->t->n_rows);
        for (int k = 0; k < p->n_nodes; k++) {
            char r[40];
            snprintf(r, sizeof r, "[%llu,%llu)", (unsigned long long)tp->rows[k].row0,
                     (unsigned long long)tp->rows[k].row1);
            fprintf(out, "  %-16s", r);
        }
        for (int a = 0; a < p->n_arenas; a++)
            if (tp->held[a].nbytes)
                fprintf(out, "  %d:%llu+%llu", a, (unsigned long long)tp->held[a].arena_offset,
                        (unsigned long long)tp->held[a].nbytes);
        fputc('\n', out);
    }
}

static void json_pair(nm_json *j, uint64_t a, uint64_t b) {
    nm_json_arr_begin(j);
    nm_json_uint(j, a);
    nm_json_uint(j, b);
    nm_json_arr_end(j);
}

static void json_nodes(const nm_plan *p, nm_json *j) {
    nm_json_key(j, "nodes");
    nm_json_arr_begin(j);
    for (int k = 0; k < p->n_nodes; k++) {
        const nm_plan_node *pn = &p->nodes[k];
        nm_json_obj_begin(j);
        nm_json_kint(j, "node", pn->os_index);
        nm_json_kint(j, "threads", pn->n_threads);
        nm_json_kint_array(j, "cpus", pn->cpus, pn->n_threads);
        nm_json_kuint(j, "bytes", node_held_bytes(p, k));
        nm_json_kuint(j, "read_bytes_per_token", nm_plan_node_read_bytes(p, k));
        if (p->hp.n_expert) {
            uint64_t eb = nm_plan_node_expert_bytes(p, k);
            nm_json_kuint(j, "expert_bytes", eb);
            nm_json_kuint(j, "expert_read_bytes_per_token",
                          eb * p->hp.n_expert_used / p->hp.n_expert);
            nm_json_kuint(j, "expert_read_bytes_max_per_token",
                          nm_plan_node_expert_bytes_max(p, k));
        }
        nm_json_key(j, "kv_heads");
        json_pair(j, pn->kv_head0, pn->kv_head1);
        nm_json_obj_end(j);
    }
    nm_json_arr_end(j);
}

static void json_arenas(const nm_plan *p, nm_json *j) {
    nm_json_key(j, "arenas");
    nm_json_arr_begin(j);
    for (int a = 0; a < p->n_arenas; a++) {
        nm_json_obj_begin(j);
        nm_json_kint(j, "arena", a);
        nm_json_kint(j, "node", p->arena_node[a]);
        nm_json_kuint(j, "bytes", p->arena_bytes[a]);
        nm_json_obj_end(j);
    }
    nm_json_arr_end(j);
}

static void json_tensor(const nm_plan *p, const nm_tensor_plan *tp, nm_json *j) {
    nm_json_obj_begin(j);
    nm_json_kstr(j, "name", tp->t->name);
    nm_json_kstr(j, "role", nm_role_name(tp->role));
    nm_json_kint(j, "layer", tp->layer);
    if (tp->expert >= 0)
        nm_json_kint(j, "expert", tp->expert);
    nm_json_kstr(j, "type", nm_type_name(tp->t->type));
    nm_json_kbool(j, "copied", nm_tensor_is_copied(tp->t));
    nm_json_key(j, "rows");
    nm_json_arr_begin(j);
    for (int k = 0; k < p->n_nodes; k++)
        json_pair(j, tp->rows[k].row0, tp->rows[k].row1);
    nm_json_arr_end(j);
    nm_json_key(j, "held");
    nm_json_arr_begin(j);
    for (int a = 0; a < p->n_arenas; a++) {
        if (!tp->held[a].nbytes)
            continue;
        nm_json_obj_begin(j);
        nm_json_kint(j, "arena", a);
        nm_json_kuint(j, "offset", tp->held[a].arena_offset);
        nm_json_kuint(j, "file_offset", tp->held[a].file_offset);
        nm_json_kuint(j, "bytes", tp->held[a].nbytes);
        nm_json_obj_end(j);
    }
    nm_json_arr_end(j);
    nm_json_obj_end(j);
}

void nm_plan_json_fields(const nm_plan *p, nm_json *j) {
    nm_json_kstr(j, "placement", nm_placement_name(p->placement));
    if (p->placement == NM_PLACE_NODE)
        nm_json_kint(j, "fixed_node", p->fixed_node);
    nm_json_kuint(j, "align", p->align);
    if (p->hp.n_expert) {
        nm_json_key(j, "moe");
        nm_json_obj_begin(j);
        nm_json_kstr(j, "placement", nm_moe_placement_name(p->moe));
        nm_json_kuint(j, "n_expert", p->hp.n_expert);
        nm_json_kuint(j, "n_expert_used", p->hp.n_expert_used);
        nm_json_obj_end(j);
    }
    json_nodes(p, j);
    json_arenas(p, j);
    nm_json_kuint(j, "remote_bytes_per_token", p->remote_bytes_per_token);
    nm_json_kuint(j, "embd_row_bytes", p->embd_row_bytes);
    nm_json_kuint(j, "embd_remote_bytes_per_token", embd_remote(p));
    nm_json_key(j, "tensors");
    nm_json_arr_begin(j);
    for (int i = 0; i < p->n_tensors; i++)
        json_tensor(p, &p->tensors[i], j);
    nm_json_arr_end(j);
}

void nm_plan_print_json(const nm_plan *p, FILE *out) {
    nm_json j;
    nm_json_init(&j, out);
    nm_json_obj_begin(&j);
    nm_plan_json_fields(p, &j);
    nm_json_obj_end(&j);
    nm_json_finish(&j);
}
