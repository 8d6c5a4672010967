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
/* The work of a layer that is not a matrix product, on the plan model's
 * shapes, timed on the calling thread (in cache: the cost of the
 * arithmetic, not of memory, which the traffic model counts as bytes). */
typedef struct nm_vector_cost {
    double layer_s;  /* each worker: 2 RMSNorms of n_embd, preparing the 4 matrix inputs */
    double split_s;  /* shared by the node's workers: RoPE of Q and K, SwiGLU */
    double attend_s; /* one query head against one cached position (f16 cache) */
} nm_vector_cost;

/* wtype: the type whose activation format the inputs are prepared in. 0
 * or -1 + err. */
int nm_vector_probe(const nm_llama_hparams *hp, uint32_t wtype, nm_vector_cost *out, nm_error *err);

int nm_kernel_probe(const nm_plan *p, const nm_topo *t, const uint32_t *types, int n,
                    uint64_t n_cols, nm_kernel_rate *out, double *barrier_s, char *how,
                    size_t how_len, nm_error *err);

#endif
