/* Memory admission: what every node will hold under a plan (weights, KV
 * cache, worker scratch, loader buffers) against what it can give
 * (meminfo.h), plus the cgroup limit and RLIMIT_AS. Computed before any
 * arena is mapped, for every placement, so a load that cannot fit stops
 * with the figures and the placements that would fit, and `--placement
 * auto` can pick one: replicate when every node has room for a copy, else
 * shard, else interleave. */
#ifndef NM_FIT_H
#define NM_FIT_H

#include "meminfo.h"
#include "plan.h"

#include <stdio.h>

typedef struct nm_fit_opts {
    bool with_model; /* count a KV cache and scratch (run, perplexity);
                        false: the weights only (load) */
    int n_ctx;       /* KV cache positions; 0: the model's context length,
                        capped at ctx_cap when that is > 0 */
    int ctx_cap;
    int n_seq;              /* KV sequences of n_ctx each (a server's slots); 0: 1 */
    uint32_t kv_elem_bytes; /* 2 (f16) or 4 (f32); 0: 2 */
    int n_batch;            /* prompt tokens per pass; 0: 64; -1: n_ctx */
    uint64_t staging_bytes; /* loader buffers of each node that reads */
    /* The weights are not anonymous memory of the nodes: the file's page
     * cache (io mmap, which the kernel can drop) or the huge-page pool
     * (--hugepages). Then they are shown but not checked; why says so. */
    const char *weights_unchecked;
    /* The weights are in the address space already (the check after the
     * load, before the KV cache): not counted against RLIMIT_AS again. */
    bool weights_mapped;
} nm_fit_opts;

/* One node's bill under one placement. */
typedef struct nm_fit_node {
    int os_index;
    uint64_t weights, kv, scratch, staging;
    uint64_t need;  /* what is checked: the four (weights unless unchecked) */
    uint64_t avail; /* nm_node_mem_avail; UINT64_MAX: unknown, not checked */
    bool fits;
} nm_fit_node;

typedef struct nm_fit {
    nm_placement placement;
    int fixed_node;     /* node:N */
    bool built;         /* false: no plan for it (err says why) */
    int n_ctx, n_batch; /* as counted (0 without a model) */
    char err[256];      /* why the plan could not be built */
    int n_nodes;        /* the memory state's nodes, in its order */
    nm_fit_node nodes[NM_MEM_MAX_NODES];
    uint64_t need_total; /* every node's need: against the cgroup */
    uint64_t vm_bytes;   /* address space it maps: against RLIMIT_AS */
    bool nodes_fit, cgroup_fits, as_fits, fits;
} nm_fit;

/* The bill of one plan. */
void nm_fit_compute(const nm_plan *p, const nm_fit_opts *o, const nm_mem_state *m, nm_fit *f);

/* Every placement for the same model, nodes and threads: replicate, shard,
 * interleave, then node:N for each allowed node. */
#define NM_FIT_MAX_NODE_ROWS 16 /* node:N rows for the first 16 nodes */
#define NM_FIT_MAX_ROWS (3 + NM_FIT_MAX_NODE_ROWS)
typedef struct nm_fit_table {
    int n_rows;
    nm_fit rows[NM_FIT_MAX_ROWS];
    int auto_row;       /* the row --placement auto takes; -1 when none fits */
    char auto_why[160]; /* one line: why that row */
    nm_fit_opts opts;   /* as given */
    nm_mem_state mem;   /* as given */
} nm_fit_table;

/* Builds the table (po->placement is ignored). -1 only when no placement
 * can be planned at all (then err is the plan's own error). */
int nm_fit_table_build(const nm_gguf *g, const nm_topo *t, const nm_plan_opts *po,
                       const nm_fit_opts *fo, const nm_mem_state *m, nm_fit_table *tab,
                       nm_error *err);

/* The row of a placement (NM_PLACE_AUTO: auto_row), -1 if absent. */
int nm_fit_table_row(const nm_fit_table *tab, nm_placement p, int fixed_node);

/* The admission decision for the placement asked for (auto included):
 * 0 with *chosen set to the row to plan, or -1 with a message naming, per
 * node, what is needed and available and which placements would fit. */
int nm_fit_admit(const nm_fit_table *tab, nm_placement want, int fixed_node, int *chosen,
                 nm_error *err);

void nm_fit_print(const nm_fit_table *tab, FILE *out);
struct nm_json;
void nm_fit_json(const nm_fit_table *tab, struct nm_json *j);

#endif
