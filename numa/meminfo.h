/* What memory the machine can give a load, per NUMA node and in all: the
 * nodes' meminfo (free + reclaimable page cache, less a margin the kernel
 * keeps for itself), the process's cgroup memory limit and RLIMIT_AS. For an
 * hwloc XML export (another machine) only each node's capacity is known.
 *
 * Why per node: numalm binds its arenas to nodes (mbind MPOL_BIND), so the
 * kernel cannot fall back to another node when one runs out; the OOM killer
 * ends the process instead, even from MADV_POPULATE_WRITE (tested on Linux
 * 6.1: a bound populate past the node's memory gets exit 137, not ENOMEM).
 * Knowing the figures before anything is taken is the only clean answer. */
#ifndef NM_MEMINFO_H
#define NM_MEMINFO_H

#include "common/error.h"
#include "topo.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define NM_MEM_MAX_NODES 64

typedef struct nm_node_mem {
    int os_index;
    uint64_t total;       /* MemTotal (XML: hwloc's local memory) */
    uint64_t free;        /* MemFree */
    uint64_t reclaimable; /* Inactive(file): clean cache the kernel drops first */
    uint64_t margin;      /* kept back: the zones' high watermark + 1 %, >= 16 MiB */
    bool known;           /* false: no figures for this node */
} nm_node_mem;

typedef struct nm_mem_state {
    char source[64]; /* "this machine" or "topology file (capacity only)" */
    bool capacity_only;
    int n_nodes; /* same order as the topology's nodes */
    nm_node_mem nodes[NM_MEM_MAX_NODES];
    /* the tightest cgroup memory limit on the way to the root */
    bool cg_limited;
    int cg_version;          /* 1 or 2 */
    char cg_file[640];       /* e.g. /sys/fs/cgroup/numalm/memory.max */
    uint64_t cg_max;         /* the limit */
    uint64_t cg_usage;       /* memory.current / memory.usage_in_bytes */
    uint64_t cg_reclaimable; /* inactive_file of that cgroup */
    /* RLIMIT_AS */
    bool as_limited;
    uint64_t as_max, as_used; /* rlim_cur, VmSize */
} nm_mem_state;

/* Fills m for t: this machine's figures now, or capacities for an XML
 * topology. Nodes without figures (no sysfs) get known = false and are not
 * checked. Never fails on missing files: the check is then skipped for what
 * is unknown. */
void nm_mem_probe(const nm_topo *t, nm_mem_state *m);

/* Bytes node n can give: free + reclaimable - margin (0 when negative);
 * total - margin for capacity-only figures. UINT64_MAX when unknown. */
uint64_t nm_node_mem_avail(const nm_mem_state *m, int n);

/* Bytes the cgroup limit leaves: max - usage + reclaimable, UINT64_MAX when
 * there is no limit. Same for the address space: as_max - as_used. */
uint64_t nm_cgroup_avail(const nm_mem_state *m);
uint64_t nm_as_avail(const nm_mem_state *m);

/* The margin for a node of `total` bytes whose zones' high watermarks sum to
 * `high` (the kernel reclaims to keep that much free). */
uint64_t nm_node_mem_margin(uint64_t total, uint64_t high);

/* Parsers, exposed for the unit tests. A sysfs node meminfo text ("Node 0
 * MemFree:  123 kB" lines) into total/free/reclaimable; 0 or -1 when a
 * field is missing. */
int nm_parse_node_meminfo(const char *text, nm_node_mem *out);
/* Sum of the "high" watermarks (in pages) of node `node`'s zones in a
 * /proc/zoneinfo text; 0 when absent. */
uint64_t nm_parse_zoneinfo_high(const char *text, int node);
/* A cgroup limit file's value: "max" or a v1 "unlimited" figure (>= 2^62)
 * give UINT64_MAX; -1 when not a number. */
int nm_parse_cgroup_limit(const char *text, uint64_t *out);

/* Shared by the readers of one load: before a reader faults in pages bound
 * to a node, it takes them from that node's budget here, which is the
 * node's available memory as last read from sysfs, less what was taken
 * since. The figures are read again when the budget runs low, so a load
 * that another process squeezes out stops with a message instead of the
 * OOM killer's SIGKILL (the margin still covers a chunk's race). */
typedef struct nm_mem_guard {
    pthread_mutex_t lock;
    bool enabled;
    int n_nodes;
    int os_index[NM_MEM_MAX_NODES];
    int64_t budget[NM_MEM_MAX_NODES];
    bool primed[NM_MEM_MAX_NODES];
    uint64_t taken[NM_MEM_MAX_NODES];
    uint64_t margin[NM_MEM_MAX_NODES]; /* 0 until first read */
    int64_t cg_budget;
    bool cg_primed;
} nm_mem_guard;

/* enabled false: every take succeeds (foreign topology, --no-mem-check). */
void nm_mem_guard_init(nm_mem_guard *g, const nm_topo *t, bool enabled);
void nm_mem_guard_destroy(nm_mem_guard *g);

/* Takes bytes spread evenly over nodes[0..n) (OS indexes; n 0: only the
 * cgroup) and from the cgroup. 0, or -1 with a message saying how much was
 * left. g NULL: nothing checked. */
int nm_mem_guard_take_nodes(nm_mem_guard *g, const int *nodes, int n, uint64_t bytes,
                            nm_error *err);

#endif
