/* The traffic model's prediction for a session's plan (numa/traffic.h),
 * with bandwidths from HMAT, --bandwidth, a preset or a measurement on
 * this machine (numa/bandwidth.h, runtime/membw_probe.h). For the command
 * (plan --predict, bench) and tests; not part of numalm.h. */
#ifndef NM_API_PREDICT_H
#define NM_API_PREDICT_H

#include "session_internal.h"

#include "numa/fit.h"
#include "numa/traffic.h"

/* The plan of one placement run as it is planned (NM_SCEN_PLAN). */
typedef struct nm_placement_prediction {
    nm_placement placement;
    int fixed_node;        /* node:N */
    double tok_s, speedup; /* speedup: over one socket, as the scenarios' */
    char bottleneck[64];
    bool fits; /* the session's memory fit table says it fits */
} nm_placement_prediction;

typedef struct nm_prediction {
    nm_traffic_opts opts;
    nm_bw bw;
    int n;           /* scenarios */
    nm_traffic t[4]; /* the plan first, then one node and llama.cpp's ways */
    /* every row of the fit table (nm_session_predict_placements) */
    int n_placements;
    nm_placement_prediction placements[NM_FIT_MAX_ROWS];
} nm_prediction;

/* For s (stage PLAN or later): bw_spec as --bandwidth takes it (NULL:
 * auto). o->kv_elem_bytes 0 takes the session's KV type; the expert counts
 * are read from the model. 0 or -1 (s's error). */
int nm_session_predict(numalm_session *s, const char *bw_spec, const nm_traffic_opts *o,
                       nm_prediction *out);

/* After nm_session_predict: the same prediction for every placement of the
 * session's fit table (replicate, shard, interleave, node:N) on the same
 * nodes, threads and bandwidths, with the table's fits. 0 or -1 (s's
 * error). */
int nm_session_predict_placements(numalm_session *s, nm_prediction *pred);

#endif
