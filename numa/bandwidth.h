/* Memory bandwidths for the traffic model (traffic.h): each node's local
 * read bandwidth, the bandwidth of the link between two nodes, and what
 * one core can pull. Where they come from, best first:
 *   1. hwloc memory attributes (ACPI HMAT on the machine, or an XML export
 *      that has them): Bandwidth of node j as seen from node k's CPUs;
 *   2. --bandwidth: numbers (LOCAL[,LINK[,CORE]] in GB/s) or the name of a
 *      platform preset (nm_bw_presets: channel count x transfer rate from
 *      the vendors' specifications, derated to what STREAM reaches);
 *   3. a preset chosen by the topology's CPU model string;
 *   4. measured on this machine (runtime/membw_probe.c fills them in);
 *   5. generic defaults (a stated guess), flagged as such.
 * Every figure keeps the name of its source, so a report can say it. */
#ifndef NM_BANDWIDTH_H
#define NM_BANDWIDTH_H

#include "common/error.h"
#include "plan.h"
#include "topo.h"

typedef struct nm_bw_preset {
    const char *name;   /* --bandwidth NAME */
    const char *match;  /* substring of hwloc's CPUModel, NULL: never matched */
    const char *what;   /* "2-socket Xeon E5-2600 (Sandy Bridge-EP), 4 x DDR3-1600" */
    double local_gbs;   /* per node, sustained read */
    double link_gbs;    /* node to node, one direction, sustained */
    double core_gbs;    /* one core's read stream */
    const char *source; /* where the figures come from */
} nm_bw_preset;

/* The table (NULL-named entry ends it). */
const nm_bw_preset *nm_bw_presets(void);
const nm_bw_preset *nm_bw_preset_find(const char *name);
/* The preset whose pattern matches hwloc's CPUModel string, NULL if none. */
const nm_bw_preset *nm_bw_preset_for_model(const char *model);

/* Bandwidths between the nodes of a plan (plan node order). */
typedef struct nm_bw {
    int n;                                  /* plan nodes */
    double gbs[NM_MAX_NODES][NM_MAX_NODES]; /* [reader k][memory j], GB/s; [k][k] local */
    double core_gbs;                        /* one core's read stream */
    /* the package (socket) of each plan node, -1 unknown: the links
     * between two packages are shared by all their nodes' traffic */
    int package[NM_MAX_NODES];
    char source[NM_MAX_NODES][NM_MAX_NODES][16]; /* "hmat", "preset", "option", ... */
    char summary[256];                           /* one line: where the figures come from */
} nm_bw;

/* How --bandwidth was given. */
typedef struct nm_bw_opts {
    const char *spec; /* NULL/"auto", "measure", a preset name or "L[,LINK[,CORE]]" */
} nm_bw_opts;

/* Fills bw for plan p on topology t from sources 1, 2, 3 and 5 above.
 * *want_measure is set when the best source left is a measurement on this
 * machine (the caller runs it and calls nm_bw_set_measured). -1 + err for
 * a bad --bandwidth. */
int nm_bw_resolve(const nm_topo *t, const nm_plan *p, const nm_bw_opts *o, nm_bw *bw,
                  bool *want_measure, nm_error *err);

/* Overwrites the figures that were not from hmat or an option with
 * measured ones: gbs[k][j] for plan nodes k, j, and one core's rate. */
void nm_bw_set_measured(nm_bw *bw, const double *gbs, double core_gbs, const char *how);

#endif
