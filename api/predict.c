/* nm_session_predict: bandwidths, then the traffic of every scenario. */
#include "predict.h"

#include "common/util.h"
#include "gguf/ggml_types.h"
#include "runtime/kernel_probe.h"
#include "runtime/kernels.h"
#include "runtime/membw_probe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The SLIT distances between the plan's nodes (NULL when unknown). */
static uint64_t *plan_distances(const nm_topo *t, const nm_plan *p) {
    if (!t->distances)
        return NULL;
    int n = p->n_nodes;
    uint64_t *d = calloc((size_t)n * (size_t)n, sizeof *d);
    for (int k = 0; d && k < n; k++)
        for (int j = 0; j < n; j++) {
            int a = nm_topo_node_index(t, p->nodes[k].os_index);
            int b = nm_topo_node_index(t, p->nodes[j].os_index);
            d[k * n + j] = a >= 0 && b >= 0 ? t->distances[a * t->n_nodes + b] : 20;
        }
    return d;
}

/* On the machine it predicts: the matvec rate of each weight type with at
 * least 5 % of a token's matrix bytes against a read, a barrier's cost and
 * the non-matrix work of a layer (runtime/kernel_probe.h). Types without
 * kernels are left at 1; a probe that cannot run leaves everything as
 * assumed, with the reason in kernel_source (never an error). */
static void measure_kernels(const nm_plan *p, const nm_topo *t, nm_traffic_opts *o, nm_error *err) {
    uint32_t types[NM_TRAFFIC_MAX_TYPES], probe_types[NM_TRAFFIC_MAX_TYPES];
    double bytes[NM_TRAFFIC_MAX_TYPES], total = 0;
    int n = nm_traffic_matrix_types(p, o, types, bytes, NM_TRAFFIC_MAX_TYPES), m = 0;
    for (int i = 0; i < n; i++)
        total += bytes[i];
    uint64_t rb;
    for (int i = 0; i < n; i++)
        if (bytes[i] >= 0.05 * total && nm_kernels_supports(types[i]) &&
            nm_type_row_bytes(types[i], p->hp.n_embd, &rb) == 0)
            probe_types[m++] = types[i];
    nm_kernel_rate rates[NM_TRAFFIC_MAX_TYPES];
    nm_vector_cost vc;
    if (m == 0)
        return; /* no matrix type numalm has kernels for: nothing to measure */
    if (nm_kernel_probe(p, t, probe_types, m, p->hp.n_embd, rates, &o->barrier_s, o->kernel_source,
                        sizeof o->kernel_source, err) != 0 ||
        nm_vector_probe(&p->hp, probe_types[0], &vc, err) != 0) {
        /* no room or no threads for the probe: predict without it, and say so */
        snprintf(o->kernel_source, sizeof o->kernel_source, "not measured: %.180s", err->msg);
        o->barrier_s = 0;
        memset(err, 0, sizeof *err);
        return;
    }
    o->layer_s = vc.layer_s;
    o->split_s = vc.split_s;
    o->attend_s = vc.attend_s;
    o->n_kernel = m;
    for (int i = 0; i < m; i++) {
        o->kernel_type[i] = rates[i].type;
        o->kernel_ratio[i] = rates[i].ratio;
    }
}

int nm_session_predict(numalm_session *s, const char *bw_spec, const nm_traffic_opts *o,
                       nm_prediction *out) {
    memset(out, 0, sizeof *out);
    out->opts = *o;
    if (!out->opts.kv_elem_bytes)
        out->opts.kv_elem_bytes = s->opts.kv_type == NUMALM_KV_F32 ? 4 : 2;
    nm_traffic_moe(s->gguf, &out->opts);
    nm_bw_opts bo = {.spec = bw_spec};
    bool measure = false;
    if (nm_bw_resolve(s->topo, s->plan, &bo, &out->bw, &measure, &s->err) != 0)
        return -1;
    if (measure) {
        int n = s->plan->n_nodes;
        double *gbs = calloc((size_t)n * (size_t)n, sizeof *gbs), core = 0;
        char how[200];
        /* decode reads the page cache itself when the file is cached and
         * the loader maps it (auto, mmap): measure those pages then */
        bool maps = s->opts.io == NUMALM_IO_AUTO || s->opts.io == NUMALM_IO_MMAP;
        int rc = !gbs ? nm_fail(&s->err, "out of memory for the bandwidth matrix")
                 : maps && nm_membw_probe_file(s->plan, s->topo, s->opts.model_path, gbs, &core,
                                               how, sizeof how) == 1
                     ? 0
                     : nm_membw_probe(s->plan, s->topo, 0, 0, gbs, &core, how, sizeof how, &s->err);
        if (rc == 0)
            nm_bw_set_measured(&out->bw, gbs, core, how);
        free(gbs);
        if (rc != 0)
            return -1;
    }
    if (!s->topo->from_xml && out->opts.efficiency <= 0)
        measure_kernels(s->plan, s->topo, &out->opts, &s->err);
    uint64_t *dist = plan_distances(s->topo, s->plan);
    out->n = nm_traffic_all(s->plan, &out->opts, &out->bw, dist, out->t);
    free(dist);
    return 0;
}

int nm_session_predict_placements(numalm_session *s, nm_prediction *pred) {
    double one_socket = pred->n > 0 ? pred->t[0].tok_s : 0;
    for (int i = 0; i < pred->n; i++)
        if (pred->t[i].scenario == NM_SCEN_ONE_NODE)
            one_socket = pred->t[i].tok_s;
    nm_traffic *t = nm_calloc(1, sizeof *t, "the prediction", &s->err);
    uint64_t *dist = plan_distances(s->topo, s->plan);
    int rc = t ? 0 : -1;
    pred->n_placements = 0;
    for (int r = 0; rc == 0 && r < s->fit->n_rows; r++) {
        const nm_fit *f = &s->fit->rows[r];
        nm_plan_opts po = s->plan_opts;
        po.placement = f->placement;
        po.fixed_node = f->fixed_node;
        nm_plan *p = nm_plan_build(s->gguf, s->topo, &po, &s->err);
        if (!p) {
            rc = -1;
            break;
        }
        nm_traffic_compute(p, NM_SCEN_PLAN, &pred->opts, &pred->bw, dist, t);
        nm_plan_free(p);
        nm_placement_prediction *o = &pred->placements[pred->n_placements++];
        *o = (nm_placement_prediction){.placement = f->placement,
                                       .fixed_node = f->fixed_node,
                                       .tok_s = t->tok_s,
                                       .speedup = one_socket > 0 ? t->tok_s / one_socket : 0,
                                       .fits = f->fits};
        snprintf(o->bottleneck, sizeof o->bottleneck, "%s", t->bottleneck);
    }
    free(dist);
    free(t);
    return rc;
}
