/* The prediction as text (numalm plan --predict) and JSON. */
#include "traffic.h"

#include "common/json.h"
#include "common/util.h"
#include "gguf/ggml_types.h"

#include <string.h>

static void print_bw(const nm_bw *bw, FILE *out, const int *os) {
    fprintf(out, "bandwidth: %s\n", bw->summary);
    fprintf(out, "  GB/s, reader \\ memory");
    for (int j = 0; j < bw->n; j++)
        fprintf(out, "  node %-3d", os[j]);
    bool mixed = false;
    for (int k = 0; k < bw->n; k++)
        for (int j = 0; j < bw->n; j++)
            mixed |= strcmp(bw->source[k][j], bw->source[0][0]) != 0;
    fprintf(out, "\n");
    for (int k = 0; k < bw->n; k++) {
        fprintf(out, "  node %-16d", os[k]);
        for (int j = 0; j < bw->n; j++)
            fprintf(out, "  %8.1f", bw->gbs[k][j]);
        for (int j = 0; mixed && j < bw->n; j++)
            fprintf(out, "%s%s", j ? "," : "   from: ", bw->source[k][j]);
        fprintf(out, "\n");
    }
    fprintf(out, "  one core reads %.1f GB/s\n", bw->core_gbs);
}

static void print_nodes(const nm_traffic *t, FILE *out) {
    for (int k = 0; k < t->n; k++) {
        if (!t->threads[k])
            continue;
        double local = t->bytes[k][k], remote = 0;
        for (int j = 0; j < t->n; j++)
            remote += j != k ? t->bytes[k][j] : 0;
        char a[32], b[32], c[32];
        fprintf(out, "      node %d: %s from its own memory, %s from other nodes (KV cache %s)\n",
                t->os_index[k], nm_fmt_bytes((uint64_t)local, a, sizeof a),
                nm_fmt_bytes((uint64_t)remote, b, sizeof b),
                nm_fmt_bytes((uint64_t)t->kv_bytes[k], c, sizeof c));
    }
}

void nm_traffic_print(const nm_traffic *t, int n, const nm_bw *bw, const nm_traffic_opts *o,
                      FILE *out) {
    if (n <= 0)
        return;
    fprintf(out,
            "predicted decode (memory-bound model, docs/prediction.md): %d tokens after %d, "
            "%s KV cache, kernels at %.0f%% of the read bandwidth (%s), %.2f us a barrier\n",
            o->n_gen > 0 ? o->n_gen : 128, o->depth, o->kv_elem_bytes == 4 ? "f32" : "f16",
            100 * t[0].efficiency,
            o->efficiency > 0 ? "--efficiency"
            : o->n_kernel > 0 ? "measured"
                              : "assumed: an upper bound",
            t[0].barrier_s * 1e6);
    if (o->n_kernel == 0 && o->kernel_source[0])
        fprintf(out, "  kernels %s\n", o->kernel_source);
    if (o->n_kernel > 0) {
        fprintf(out, "  measured: ");
        for (int i = 0; i < o->n_kernel; i++)
            fprintf(out, "%s%s matvec %.0f%% of a read", i ? ", " : "",
                    nm_type_name(o->kernel_type[i]), 100 * o->kernel_ratio[i]);
        fprintf(out, "; %s\n", o->kernel_source);
        fprintf(out,
                "  non-matrix work (measured): %.1f us a layer per worker, %.1f us shared, "
                "%.1f ns a head and cached position: %.2f ms a token\n",
                o->layer_s * 1e6, o->split_s * 1e6, o->attend_s * 1e9, t[0].vector_s * 1e3);
    }
    if (o->n_expert)
        fprintf(out, "mixture of experts: %u of %u experts read per token\n", o->n_expert_used,
                o->n_expert);
    print_bw(bw, out, t[0].os_index);
    fprintf(out, "  %-44s %9s %12s  %s\n", "scenario", "tok/s", "x one socket", "bottleneck");
    for (int i = 0; i < n; i++) {
        fprintf(out, "  %-44s %9.2f %11.2fx  %s\n", t[i].name, t[i].tok_s, t[i].speedup,
                t[i].bottleneck);
        print_nodes(&t[i], out);
    }
}

static void json_bw(const nm_bw *bw, nm_json *j) {
    nm_json_key(j, "bandwidth");
    nm_json_obj_begin(j);
    nm_json_kstr(j, "summary", bw->summary);
    nm_json_kdouble(j, "core_gbs", bw->core_gbs);
    nm_json_key(j, "gbs");
    nm_json_arr_begin(j);
    for (int k = 0; k < bw->n; k++) {
        nm_json_arr_begin(j);
        for (int m = 0; m < bw->n; m++)
            nm_json_double(j, bw->gbs[k][m]);
        nm_json_arr_end(j);
    }
    nm_json_arr_end(j);
    nm_json_key(j, "source");
    nm_json_arr_begin(j);
    for (int k = 0; k < bw->n; k++) {
        nm_json_arr_begin(j);
        for (int m = 0; m < bw->n; m++)
            nm_json_str(j, bw->source[k][m]);
        nm_json_arr_end(j);
    }
    nm_json_arr_end(j);
    nm_json_obj_end(j);
}

static void json_scenario(const nm_traffic *t, nm_json *j) {
    nm_json_obj_begin(j);
    nm_json_kstr(j, "name", t->name);
    nm_json_kdouble(j, "tok_s", t->tok_s);
    nm_json_kdouble(j, "seconds_per_token", t->seconds);
    nm_json_kdouble(j, "vector_seconds_per_token", t->vector_s);
    nm_json_kdouble(j, "speedup_vs_one_node", t->speedup);
    nm_json_kstr(j, "bottleneck", t->bottleneck);
    nm_json_kint(j, "barriers_per_token", t->barriers);
    nm_json_key(j, "nodes");
    nm_json_arr_begin(j);
    for (int k = 0; k < t->n; k++) {
        nm_json_obj_begin(j);
        nm_json_kint(j, "node", t->os_index[k]);
        nm_json_kint(j, "threads", t->threads[k]);
        nm_json_kuint(j, "matrix_bytes", t->matrix_bytes[k]);
        nm_json_kuint(j, "vector_bytes", t->vector_bytes[k]);
        nm_json_kuint(j, "embd_bytes", t->embd_bytes[k]);
        nm_json_kuint(j, "kv_bytes_per_pos", t->kv_bytes_per_pos[k]);
        nm_json_kdouble(j, "kv_bytes", t->kv_bytes[k]);
        nm_json_kdouble(j, "act_bytes", t->act_bytes[k]);
        nm_json_key(j, "from_node_bytes");
        nm_json_arr_begin(j);
        for (int m = 0; m < t->n; m++)
            nm_json_double(j, t->bytes[k][m]);
        nm_json_arr_end(j);
        nm_json_obj_end(j);
    }
    nm_json_arr_end(j);
    nm_json_obj_end(j);
}

void nm_traffic_json(const nm_traffic *t, int n, const nm_bw *bw, const nm_traffic_opts *o,
                     nm_json *j) {
    nm_json_obj_begin(j);
    nm_json_kint(j, "depth", o->depth);
    nm_json_kint(j, "n_gen", o->n_gen > 0 ? o->n_gen : 128);
    nm_json_kint(j, "kv_elem_bytes", o->kv_elem_bytes ? o->kv_elem_bytes : 2);
    nm_json_kdouble(j, "efficiency", n > 0 ? t[0].efficiency : 1.0);
    nm_json_kstr(j, "efficiency_source",
                 o->efficiency > 0 ? "option"
                 : o->n_kernel > 0 ? "measured"
                                   : "assumed");
    nm_json_kdouble(j, "barrier_s", n > 0 ? t[0].barrier_s : 0);
    nm_json_key(j, "kernels");
    nm_json_arr_begin(j);
    for (int i = 0; i < o->n_kernel; i++) {
        nm_json_obj_begin(j);
        nm_json_kstr(j, "type", nm_type_name(o->kernel_type[i]));
        nm_json_kdouble(j, "of_read", o->kernel_ratio[i]);
        nm_json_obj_end(j);
    }
    nm_json_arr_end(j);
    nm_json_kstr(j, "kernel_source", o->kernel_source);
    nm_json_kdouble(j, "layer_s", o->layer_s);
    nm_json_kdouble(j, "split_s", o->split_s);
    nm_json_kdouble(j, "attend_s", o->attend_s);
    nm_json_kint(j, "n_expert", o->n_expert);
    nm_json_kint(j, "n_expert_used", o->n_expert_used);
    json_bw(bw, j);
    nm_json_key(j, "scenarios");
    nm_json_arr_begin(j);
    for (int i = 0; i < n; i++)
        json_scenario(&t[i], j);
    nm_json_arr_end(j);
    nm_json_obj_end(j);
}
