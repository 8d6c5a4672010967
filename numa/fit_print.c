/* The fit table as text (numalm plan) and JSON. */
#include "fit.h"

#include "common/json.h"
#include "common/util.h"

#include <string.h>

/* "1.22 GB" with "?" for an unknown figure. */
static const char *fmt_avail(uint64_t v, char *buf, size_t n) {
    return v == UINT64_MAX ? snprintf(buf, n, "?"), buf : nm_fmt_bytes(v, buf, n);
}

static void print_limits(const nm_fit_table *tab, FILE *out) {
    const nm_mem_state *m = &tab->mem;
    char a[32], b[32], c[32], d[32];
    if (m->capacity_only)
        return;
    if (m->cg_limited)
        fprintf(out, "  cgroup v%d limit %s = %s, %s in use (%s reclaimable): %s available\n",
                m->cg_version, m->cg_file, nm_fmt_bytes(m->cg_max, a, sizeof a),
                nm_fmt_bytes(m->cg_usage, b, sizeof b),
                nm_fmt_bytes(m->cg_reclaimable, c, sizeof c),
                nm_fmt_bytes(nm_cgroup_avail(m), d, sizeof d));
    else
        fprintf(out, "  no cgroup memory limit\n");
    if (m->as_limited)
        fprintf(out, "  RLIMIT_AS %s, %s mapped: %s available\n",
                nm_fmt_bytes(m->as_max, a, sizeof a), nm_fmt_bytes(m->as_used, b, sizeof b),
                nm_fmt_bytes(nm_as_avail(m), c, sizeof c));
}

static void print_row(const nm_fit *f, FILE *out) {
    char name[32], cell[48], a[32], b[32];
    if (f->placement == NM_PLACE_NODE)
        snprintf(name, sizeof name, "node:%d", f->fixed_node);
    else
        snprintf(name, sizeof name, "%s", nm_placement_name(f->placement));
    fprintf(out, "  %-11s", name);
    if (!f->built) {
        fprintf(out, " cannot plan: %s\n", f->err);
        return;
    }
    for (int i = 0; i < f->n_nodes; i++) {
        snprintf(cell, sizeof cell, "%s / %s", nm_fmt_bytes(f->nodes[i].need, a, sizeof a),
                 fmt_avail(f->nodes[i].avail, b, sizeof b));
        fprintf(out, " %-21s", cell);
    }
    fprintf(out, " %-10s", nm_fmt_bytes(f->need_total, a, sizeof a));
    if (f->fits) {
        fprintf(out, " yes\n");
        return;
    }
    fprintf(out, " no:");
    for (int i = 0; i < f->n_nodes; i++)
        if (!f->nodes[i].fits)
            fprintf(out, " node %d", f->nodes[i].os_index);
    fprintf(out, "%s%s\n", f->cgroup_fits ? "" : " cgroup", f->as_fits ? "" : " RLIMIT_AS");
}

void nm_fit_print(const nm_fit_table *tab, FILE *out) {
    const nm_fit_opts *o = &tab->opts;
    char a[32];
    fprintf(out, "memory fit on %s (needed / available per node; available = %s):\n",
            tab->mem.source,
            tab->mem.capacity_only ? "the node's memory - a reserve"
                                   : "free + inactive file pages - a reserve");
    fprintf(out, "  %-11s", "placement");
    for (int i = 0; i < tab->mem.n_nodes; i++) {
        char h[24];
        snprintf(h, sizeof h, "node %d", tab->mem.nodes[i].os_index);
        fprintf(out, " %-21s", h);
    }
    fprintf(out, " %-10s fits\n", "all nodes");
    for (int r = 0; r < tab->n_rows; r++)
        print_row(&tab->rows[r], out);
    const nm_fit *f0 = NULL;
    for (int r = 0; r < tab->n_rows && !f0; r++)
        f0 = tab->rows[r].built ? &tab->rows[r] : NULL;
    if (o->with_model && f0)
        fprintf(out,
                "  needed = weights + KV cache at %d positions (%s) + scratch for %d-token "
                "batches + loader buffers (%s per reading node)%s%s\n",
                f0->n_ctx, o->kv_elem_bytes == 4 ? "f32" : "f16", f0->n_batch,
                nm_fmt_bytes(o->staging_bytes, a, sizeof a),
                o->weights_unchecked ? "; weights not counted: " : "",
                o->weights_unchecked ? o->weights_unchecked : "");
    else
        fprintf(out, "  needed = weights + loader buffers (%s per reading node)%s%s\n",
                nm_fmt_bytes(o->staging_bytes, a, sizeof a),
                o->weights_unchecked ? "; weights not counted: " : "",
                o->weights_unchecked ? o->weights_unchecked : "");
    print_limits(tab, out);
    if (tab->auto_row >= 0) {
        const nm_fit *f = &tab->rows[tab->auto_row];
        fprintf(out, "--placement auto: %s (%s)\n", nm_placement_name(f->placement), tab->auto_why);
    } else {
        fprintf(out, "--placement auto: nothing fits\n");
    }
}

static void json_avail(nm_json *j, const char *key, uint64_t v) {
    nm_json_key(j, key);
    if (v == UINT64_MAX)
        nm_json_null(j);
    else
        nm_json_uint(j, v);
}

static void json_row(const nm_fit *f, nm_json *j) {
    nm_json_obj_begin(j);
    nm_json_kstr(j, "placement", nm_placement_name(f->placement));
    if (f->placement == NM_PLACE_NODE)
        nm_json_kint(j, "fixed_node", f->fixed_node);
    if (!f->built) {
        nm_json_kstr(j, "error", f->err);
        nm_json_obj_end(j);
        return;
    }
    nm_json_kbool(j, "fits", f->fits);
    nm_json_kbool(j, "nodes_fit", f->nodes_fit);
    nm_json_kbool(j, "cgroup_fits", f->cgroup_fits);
    nm_json_kbool(j, "rlimit_as_fits", f->as_fits);
    nm_json_kuint(j, "need_total", f->need_total);
    nm_json_kuint(j, "address_space", f->vm_bytes);
    nm_json_key(j, "nodes");
    nm_json_arr_begin(j);
    for (int i = 0; i < f->n_nodes; i++) {
        const nm_fit_node *n = &f->nodes[i];
        nm_json_obj_begin(j);
        nm_json_kint(j, "node", n->os_index);
        nm_json_kuint(j, "weights", n->weights);
        nm_json_kuint(j, "kv_cache", n->kv);
        nm_json_kuint(j, "scratch", n->scratch);
        nm_json_kuint(j, "staging", n->staging);
        nm_json_kuint(j, "need", n->need);
        json_avail(j, "available", n->avail);
        nm_json_kbool(j, "fits", n->fits);
        nm_json_obj_end(j);
    }
    nm_json_arr_end(j);
    nm_json_obj_end(j);
}

static void json_mem(const nm_mem_state *m, nm_json *j) {
    nm_json_kstr(j, "source", m->source);
    nm_json_kbool(j, "capacity_only", m->capacity_only);
    nm_json_key(j, "nodes");
    nm_json_arr_begin(j);
    for (int i = 0; i < m->n_nodes; i++) {
        const nm_node_mem *n = &m->nodes[i];
        nm_json_obj_begin(j);
        nm_json_kint(j, "node", n->os_index);
        nm_json_kbool(j, "known", n->known);
        nm_json_kuint(j, "total", n->total);
        nm_json_kuint(j, "free", n->free);
        nm_json_kuint(j, "reclaimable", n->reclaimable);
        nm_json_kuint(j, "reserve", n->margin);
        json_avail(j, "available", nm_node_mem_avail(m, i));
        nm_json_obj_end(j);
    }
    nm_json_arr_end(j);
    nm_json_key(j, "cgroup");
    if (m->cg_limited) {
        nm_json_obj_begin(j);
        nm_json_kint(j, "version", m->cg_version);
        nm_json_kstr(j, "file", m->cg_file);
        nm_json_kuint(j, "limit", m->cg_max);
        nm_json_kuint(j, "usage", m->cg_usage);
        nm_json_kuint(j, "reclaimable", m->cg_reclaimable);
        nm_json_kuint(j, "available", nm_cgroup_avail(m));
        nm_json_obj_end(j);
    } else {
        nm_json_null(j);
    }
    json_avail(j, "rlimit_as_available", nm_as_avail(m));
}

void nm_fit_json(const nm_fit_table *tab, nm_json *j) {
    nm_json_obj_begin(j);
    json_mem(&tab->mem, j);
    for (int r = 0; r < tab->n_rows; r++)
        if (tab->rows[r].built) {
            nm_json_kint(j, "n_ctx", tab->rows[r].n_ctx);
            nm_json_kint(j, "n_batch", tab->rows[r].n_batch);
            break;
        }
    nm_json_kuint(j, "staging_per_node", tab->opts.staging_bytes);
    if (tab->opts.weights_unchecked)
        nm_json_kstr(j, "weights_not_counted", tab->opts.weights_unchecked);
    nm_json_key(j, "placements");
    nm_json_arr_begin(j);
    for (int r = 0; r < tab->n_rows; r++)
        json_row(&tab->rows[r], j);
    nm_json_arr_end(j);
    nm_json_key(j, "auto");
    if (tab->auto_row >= 0)
        nm_json_str(j, nm_placement_name(tab->rows[tab->auto_row].placement));
    else
        nm_json_null(j);
    nm_json_kstr(j, "auto_why", tab->auto_why);
    nm_json_obj_end(j);
}
