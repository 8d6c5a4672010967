/* The traffic model's prediction for a session's plan (numa/traffic.h),
 * with bandwidths from HMAT, --bandwidth, a preset or a measurement on
 * this machine (numa/bandwidth.h, runtime/membw_probe.h). For the command
 * (plan --predict, bench) and tests; not part of numalm.h. */
#ifndef NM_API_PREDICT_H
#define NM_API_PREDICT_H

#include "session_internal.h"

#include "numa/traffic.h"

typedef struct nm_prediction {
    nm_traffic_opts opts;
    nm_bw bw;
    int n;           /* scenarios */
    nm_traffic t[4]; /* the plan first, then one node and llama.cpp's ways */
} nm_prediction;

/* For s (stage PLAN or later): bw_spec as --bandwidth takes it (NULL:
 * auto). o->kv_elem_bytes 0 takes the session's KV type; the expert counts
 * are read from the model. 0 or -1 (s's error). */
int nm_session_predict(numalm_session *s, const char *bw_spec, const nm_traffic_opts *o,
                       nm_prediction *out);

#endif
