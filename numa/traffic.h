/* The NUMA traffic model: for a plan (or llama.cpp's ways of running on the
 * same nodes), the bytes each node's workers read per decoded token from
 * each node's memory, and a decode rate predicted from them.
 *
 * Decode is memory-bound: every token reads every active weight once, the
 * KV cache up to its position, and a few activation vectors per layer. The
 * predicted time of a token is that of its busiest resource (a node's
 * memory, a link between two nodes, or a node's cores), divided by the
 * kernels' fraction of the read bandwidth they reach, plus the barriers
 * between phases. docs/prediction.md gives the assumptions and the checks:
 * the byte counts against the runtime's own counters in the NUMA VM, the
 * one-node rate against decode measured on this machine. */
#ifndef NM_TRAFFIC_H
#define NM_TRAFFIC_H

#include "bandwidth.h"
#include "plan.h"

typedef enum nm_scenario {
    NM_SCEN_PLAN,        /* numalm with the plan as built */
    NM_SCEN_ONE_NODE,    /* one socket: the nodes of node 0's package, each from its own memory
                            (numactl --cpunodebind=S --membind=S) */
    NM_SCEN_FIRST_TOUCH, /* llama.cpp mmap: pages where first touched (node 0), threads on all nodes
                          */
    NM_SCEN_DISTRIBUTE, /* llama.cpp --numa distribute, pages interleaved (numactl --interleave=all)
                         */
} nm_scenario;

#define NM_TRAFFIC_MAX_TYPES 4

/* What is counted per token. */
typedef struct nm_traffic_opts {
    int depth;              /* KV positions before the first generated token */
    int n_gen;              /* tokens generated (the KV read grows with each); 0: 128 */
    uint32_t kv_elem_bytes; /* 2 (f16) or 4; 0: 2 */
    double efficiency;      /* kernels' fraction of the read bandwidth, every type
                               (--efficiency); 0: kernel_ratio, else 1 */
    /* Measured on the machine it predicts (runtime/kernel_probe.h), none
     * for a topology file: each matrix type's matvec rate as a fraction of
     * a read (a type left out counts as 1), and one barrier's seconds (0:
     * the assumed BARRIER_S_* of traffic.c). */
    int n_kernel;
    uint32_t kernel_type[NM_TRAFFIC_MAX_TYPES];
    double kernel_ratio[NM_TRAFFIC_MAX_TYPES];
    double barrier_s;
    /* the non-matrix work of a layer, seconds (runtime/kernel_probe.h's
     * nm_vector_cost): each worker's, the node's workers' together, and
     * one query head at one cached position; 0: not counted */
    double layer_s, split_s, attend_s;
    char kernel_source[200]; /* what measured them, "" when nothing did */
    /* mixture of experts (nm_traffic_moe): each token reads n_expert_used of
     * the n_expert experts of every *_exps tensor; 0: not a MoE model */
    uint32_t n_expert, n_expert_used;
} nm_traffic_opts;

/* The expert counts of g (its architecture's expert_count and
 * expert_used_count keys) into o; zeros for a dense model. */
void nm_traffic_moe(const nm_gguf *g, nm_traffic_opts *o);

/* Per reader node k: its bytes per token, by kind, and from which node. */
typedef struct nm_traffic {
    nm_scenario scenario;
    char name[64];
    int n; /* plan nodes (the matrices' index space) */
    int os_index[NM_MAX_NODES];
    int threads[NM_MAX_NODES];
    /* [reader k][memory j], bytes per token */
    double bytes[NM_MAX_NODES][NM_MAX_NODES];
    /* what node k's workers read per token, by kind (the runtime counts
     * the matrices and the KV cache the same way: nm_model_traffic) */
    uint64_t matrix_bytes[NM_MAX_NODES];
    uint64_t vector_bytes[NM_MAX_NODES];
    uint64_t embd_bytes[NM_MAX_NODES];
    uint64_t kv_bytes_per_pos[NM_MAX_NODES]; /* K and V of one cached position */
    double kv_bytes[NM_MAX_NODES];           /* at the mean position of the run */
    double act_bytes[NM_MAX_NODES];
    /* prediction */
    int barriers;                   /* per token */
    double efficiency;              /* the kernels' fraction of the read bandwidth used */
    double barrier_s;               /* seconds per barrier used */
    double vector_s;                /* non-matrix work per token (layer_s, split_s, attend_s) */
    double seconds, tok_s, speedup; /* speedup: against NM_SCEN_ONE_NODE, one socket */
    char bottleneck[64];
} nm_traffic;

/* The traffic of plan p run as scenario s; bw (may be NULL: bytes only)
 * gives the prediction. dist: the topology's SLIT distances for the plan's
 * nodes (n x n, may be NULL: 10 local, 20 remote). */
void nm_traffic_compute(const nm_plan *p, nm_scenario s, const nm_traffic_opts *o, const nm_bw *bw,
                        const uint64_t *dist, nm_traffic *out);

/* Every scenario for plan p (the plan itself first), with speedups over
 * one socket. Returns the count (at most 4). */
int nm_traffic_all(const nm_plan *p, const nm_traffic_opts *o, const nm_bw *bw,
                   const uint64_t *dist, nm_traffic *out);

/* The weight types of the matrices a token reads, most bytes first, with
 * their bytes per token (all nodes); at most max. Returns the count. */
int nm_traffic_matrix_types(const nm_plan *p, const nm_traffic_opts *o, uint32_t *types,
                            double *bytes, int max);

/* Fraction of a tensor read per token: n_expert_used / n_expert for an
 * expert tensor (name with "_exps"), 1 for every other. The expected value
 * over tokens whose router picks experts evenly. */
double nm_tensor_active_fraction(const nm_traffic_opts *o, const nm_tensor_plan *tp);

void nm_traffic_print(const nm_traffic *t, int n, const nm_bw *bw, const nm_traffic_opts *o,
                      FILE *out);
struct nm_json;
void nm_traffic_json(const nm_traffic *t, int n, const nm_bw *bw, const nm_traffic_opts *o,
                     struct nm_json *j);

#endif
