/* The per-node worker pool: workers are created once, pinned to the plan's
 * CPUs and grouped by node; a job is one function every worker runs (the
 * calling thread is worker 0). Inside a job, workers meet at NUMA-aware
 * barriers: arrivals are counted per node and only the last arriver of each
 * node touches the global counter, so a barrier moves one cache line per
 * node across the interconnect instead of one per thread. */
#ifndef NM_THREADPOOL_H
#define NM_THREADPOOL_H

#include "common/error.h"
#include "numa/plan.h"
#include "numa/topo.h"

#include <stdbool.h>

typedef struct nm_pool nm_pool;

typedef struct nm_worker {
    nm_pool *pool;
    int id;      /* 0 .. n_workers-1; 0 is the thread that called run */
    int node;    /* plan node index */
    int local;   /* index among the node's workers */
    int n_local; /* workers on this node */
    int cpu;     /* OS PU it is pinned to (-1: not pinned) */
} nm_worker;

typedef void (*nm_pool_fn)(void *ctx, const nm_worker *w);

/* One worker per plan->nodes[n].cpus[i]. topo NULL or from an XML file:
 * workers are not pinned (tests on a foreign topology). The calling thread
 * becomes worker 0 and is pinned to node 0's first CPU while the pool lives;
 * its old affinity is restored by nm_pool_free. */
nm_pool *nm_pool_create(const nm_plan *plan, const nm_topo *topo, nm_error *err);
void nm_pool_free(nm_pool *p);

int nm_pool_n_workers(const nm_pool *p);
int nm_pool_n_nodes(const nm_pool *p);
int nm_pool_node_workers(const nm_pool *p, int node);

/* Runs fn(ctx, w) on every worker and returns when all have finished. */
void nm_pool_run(nm_pool *p, nm_pool_fn fn, void *ctx);

/* All workers of the pool meet here (memory written before it by any worker
 * is visible after it to all). */
void nm_pool_barrier(const nm_worker *w);
/* Only the workers of w's node meet here. */
void nm_pool_node_barrier(const nm_worker *w);

/* Rows [*r0, *r1) of [0, n) for worker `local` of `n_local`, on multiples
 * of `align` rows (the last worker takes the remainder). Static: the same
 * worker gets the same rows every token. */
void nm_split_rows(uint64_t n, int local, int n_local, uint64_t align, uint64_t *r0, uint64_t *r1);

#endif
