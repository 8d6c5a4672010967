/* Node-local memory: one arena per node, anonymous memory bound to the node
 * (mbind MPOL_BIND) or interleaved, with transparent huge pages requested and
 * pages faulted in by a thread running on that node. This is also the pinned
 * memory a CUDA upload registers. */
#ifndef NM_ARENA_H
#define NM_ARENA_H

#include "common/error.h"
#include "topo.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct nm_arena_opts {
    bool mlock;     /* pin the pages; a clear message on RLIMIT_MEMLOCK */
    bool hugepages; /* explicit MAP_HUGETLB, falls back with a message */
} nm_arena_opts;

typedef struct nm_arena {
    void *base;
    uint64_t size;   /* requested */
    uint64_t mapped; /* rounded to the page size in use */
    int node;        /* OS index; -1 = interleaved over interleave_nodes */
    int n_interleave;
    int interleave_nodes[64];
    bool huge; /* MAP_HUGETLB in use */
    bool locked;
    char note[256]; /* fallback taken, if any ("no huge pages reserved...") */
} nm_arena;

/* Maps and binds (does not fault in). node >= 0: MPOL_BIND to it; node -1:
 * MPOL_INTERLEAVE over nodes[0..n). */
int nm_arena_create(nm_arena *a, uint64_t size, int node, const int *nodes, int n_nodes,
                    const nm_arena_opts *opts, nm_error *err);

/* The same, with base % NM_ARENA_PHASE_ALIGN == phase: an arena whose
 * bytes at offset o hold file offset f gets phase (f - o) mod 2 MiB, so
 * page-cache pages mapped into it (io auto) sit at the virtual alignment
 * their file offset has, as in a plain mmap of the file. Only then can the
 * kernel map the cache's 2 MiB folios with one PMD entry (fewer TLB misses:
 * the F16 decode read 15-20 % faster). Ignored for MAP_HUGETLB arenas. */
#define NM_ARENA_PHASE_ALIGN (2u << 20)
int nm_arena_create_phased(nm_arena *a, uint64_t size, int node, const int *nodes, int n_nodes,
                           const nm_arena_opts *opts, uint64_t phase, nm_error *err);

/* Faults every page in from the calling thread (pin it to the node first).
 * Contents are kept: it may run before or after data is written. */
void nm_arena_prefault(nm_arena *a, uint64_t offset, uint64_t len);

void nm_arena_destroy(nm_arena *a);

/* move_pages(2) query over every page (or an even sample of at most
 * max_samples pages) of [base, base+len): percentage on the expected node,
 * and a histogram by node. expected -1 means "any node in the interleave
 * set". Returns -1 with err when the kernel refuses the query.
 * per_node (may be NULL) has max_node entries, per_node[i] counting pages on
 * node i < max_node; pages not faulted in count nowhere. max_samples 0 means
 * every page. */
int nm_pages_on_node(const void *base, uint64_t len, int expected, uint64_t max_samples,
                     double *pct, uint64_t *per_node, int max_node, nm_error *err);

#endif
