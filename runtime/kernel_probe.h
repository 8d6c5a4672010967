/* What decode spends beyond streaming the weights, measured on this
 * machine for the traffic model (numa/traffic.h): each weight type's
 * matvec rate as a fraction of a plain read of the same buffer, and the
 * cost of one barrier of the plan's thread pool. plan --predict runs it
 * on the machine it predicts, never on a topology file. */
#ifndef NM_KERNEL_PROBE_H
#define NM_KERNEL_PROBE_H

#include "common/error.h"
#include "numa/plan.h"
#include "numa/topo.h"

typedef struct nm_kernel_rate {
    uint32_t type;
    double read_gbs;   /* node 0's workers summing the buffer (median pass) */
    double matvec_gbs; /* the same workers' matvec over it (median pass) */
    double ratio;      /* median of the rounds' matvec / read, at most 1 */
} nm_kernel_rate;

/* For each of types[0..n) (weight types with kernels): node 0's workers of
 * plan p (pinned to its CPUs) alternate a read pass and a matvec pass over
 * the same rows of n_cols elements, a buffer bound to node 0 that is at
 * least twice the last-level cache (nm_probe_buffer_bytes), 5 rounds after
 * a warm-up. *barrier_s: the seconds of one barrier of p's whole pool (the
 * median of 3 runs of 2000). *how gets a line saying what ran. 0 or -1 +
 * err. */
int nm_kernel_probe(const nm_plan *p, const nm_topo *t, const uint32_t *types, int n,
                    uint64_t n_cols, nm_kernel_rate *out, double *barrier_s, char *how,
                    size_t how_len, nm_error *err);

#endif
