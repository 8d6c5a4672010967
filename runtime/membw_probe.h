/* Read bandwidth between the nodes of a plan, measured: the traffic
 * model's bandwidth when neither HMAT nor --bandwidth gives it
 * (numa/bandwidth.h). */
#ifndef NM_MEMBW_PROBE_H
#define NM_MEMBW_PROBE_H

#include "common/error.h"
#include "numa/plan.h"
#include "numa/topo.h"

/* For every reader node k and memory node j of p: node k's workers (its
 * plan CPUs, pinned) each sum their share of a buffer bound to node j;
 * the median of `passes` passes (0: 5), in GB/s, into gbs[k * p->n_nodes + j].
 * *core_gbs: one thread of node 0 on node 0's buffer. bytes per buffer (0:
 * nm_probe_buffer_bytes). *how gets a line saying what was run. */
int nm_membw_probe(const nm_plan *p, const nm_topo *t, uint64_t bytes, int passes, double *gbs,
                   double *core_gbs, char *how, size_t how_len, nm_error *err);

/* One node, and every page of the model file at path in the page cache
 * (what decode reads when --io auto or mmap maps it): node 0's workers,
 * then one of them, sum the file's pages instead of a fresh buffer, into
 * gbs[0] and *core_gbs: on the dev VM a fresh buffer read 1.2-1.3 x
 * faster than the model's cached pages with 1 thread.
 * 1 when measured, 0 when not applicable (then nm_membw_probe). */
int nm_membw_probe_file(const nm_plan *p, const nm_topo *t, const char *path, double *gbs,
                        double *core_gbs, char *how, size_t how_len);

/* A probe buffer that the caches do not hold: 256 MiB or twice the
 * last-level cache (sysconf), whichever is larger (the dev VM's Intel Xeon
 * host reports a 480 MiB L3), less where a plan node has less than 8 times
 * that available. */
uint64_t nm_probe_buffer_bytes(const nm_plan *p, const nm_topo *t);

#endif
