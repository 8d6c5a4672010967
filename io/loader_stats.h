/* Internal to io/: what nm_load() does once the readers are done. */
#ifndef NM_LOADER_STATS_H
#define NM_LOADER_STATS_H

#include "loader.h"
#include "reader.h"

/* Fills w's per-node statistics from the finished jobs, counts mmap pages
 * off the policy (a fallback line through ctx), and with o->verify checks the
 * pages' nodes, the checksums and every block's scales. */
int nm_load_finish_stats(nm_loaded *w, const nm_reader_job *jobs, int n_jobs, nm_read_ctx *ctx,
                         const nm_load_opts *o, nm_error *err);

#endif
