/* nm_session_predict: bandwidths, then the traffic of every scenario. */
#include "predict.h"

#include "runtime/membw_probe.h"

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
        int rc = gbs ? nm_membw_probe(s->plan, s->topo, 0, 0, gbs, &core, how, sizeof how, &s->err)
                     : nm_fail(&s->err, "out of memory for the bandwidth matrix");
        if (rc == 0)
            nm_bw_set_measured(&out->bw, gbs, core, how);
        free(gbs);
        if (rc != 0)
            return -1;
    }
    uint64_t *dist = plan_distances(s->topo, s->plan);
    out->n = nm_traffic_all(s->plan, &out->opts, &out->bw, dist, out->t);
    free(dist);
    return 0;
}
