/* Decode speed against the read bandwidth of the same weights, measured in
 * one process: after each decode step the same workers read the same
 * weight bytes with no compute (nm_model_read_pass), and each pair of
 * times gives the step's fraction of the read bandwidth. On a shared
 * machine whose memory bandwidth changes from second to second (the dev
 * VM's moves between about 30 and 55 GB/s; docs/benchmarks.md), pairs taken tens of milliseconds
 * apart compare like with like; a probe run in another process does not. */
#ifndef NM_READ_PROBE_H
#define NM_READ_PROBE_H

#include "model.h"

typedef struct nm_read_probe {
    int n;
    size_t cap;
    struct nm_probe_times {
        double step_s, read_s;
    } * pairs;
    uint64_t step_bytes; /* weight bytes a decode step reads */
    uint64_t read_bytes, checksum;
} nm_read_probe;

typedef struct nm_read_probe_stats {
    int pairs;
    double decode_gbps, read_gbps; /* medians over the pairs */
    /* per pair: decode GB/s / read GB/s; the median and quartiles */
    double of_read, of_read_q25, of_read_q75;
    uint64_t read_bytes, checksum; /* of the last pass */
} nm_read_probe_stats;

/* Runs one read pass after a decode step of step_s seconds and records the
 * pair. Returns the pass's seconds, or -1 when out of memory. */
double nm_read_probe_pair(nm_read_probe *p, nm_model *m, double step_s);
/* Medians and quartiles of the pairs so far (all zero without pairs). */
void nm_read_probe_summary(const nm_read_probe *p, nm_read_probe_stats *out);
void nm_read_probe_free(nm_read_probe *p);

#endif
