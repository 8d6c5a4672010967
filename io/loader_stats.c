/* The loader's results: per-node statistics of the readers' jobs, the mmap
 * pages left off the policy, and with --verify the placement, checksums and
 * scales of what was loaded. Internal to io/. */
#include "loader.h"

#include "common/util.h"
#include "checksum.h"
#include "loader_stats.h"
#include "reader.h"

#include <numaif.h>
#include <string.h>

static nm_load_node_stats *stats_for(nm_loaded *w, int node_os) {
    for (int i = 0; i < w->n_node_stats; i++)
        if (w->node_stats[i].node == node_os)
            return &w->node_stats[i];
    if (w->n_node_stats >= NM_MAX_NODES)
        return NULL;
    nm_load_node_stats *s = &w->node_stats[w->n_node_stats++];
    memset(s, 0, sizeof *s);
    s->node = node_os;
    s->placed_pct = -1;
    s->share_pct = -1;
    return s;
}

static void add_cpu(nm_load_node_stats *s, int cpu) {
    for (int i = 0; i < s->n_reader_cpus; i++)
        if (s->reader_cpus[i] == cpu)
            return;
    if (s->n_reader_cpus < (int)(sizeof s->reader_cpus / sizeof s->reader_cpus[0]))
        s->reader_cpus[s->n_reader_cpus++] = cpu;
}

static void collect_node_stats(nm_loaded *w, const nm_reader_job *jobs, int n_jobs) {
    /* plan order first, so the report reads node 0, 1, ... */
    for (int i = 0; i < w->plan->n_nodes; i++)
        for (int k = 0; k < n_jobs; k++)
            if (jobs[k].node_os == w->plan->nodes[i].os_index) {
                stats_for(w, jobs[k].node_os);
                break;
            }
    for (int k = 0; k < n_jobs; k++) {
        const nm_reader_job *j = &jobs[k];
        nm_load_node_stats *s = stats_for(w, j->node_os);
        if (!s)
            continue;
        s->bytes += j->bytes;
        s->n_readers++;
        if (j->seconds > s->seconds)
            s->seconds = j->seconds;
        for (int c = 0; c < j->n_cpus; c++)
            add_cpu(s, j->cpus[c]);
        w->mapped_bytes += j->mapped;
    }
}

/* Page placement of one region: bound (expected >= 0) or interleaved over
 * the plan's nodes. Fills placed_pct / share_pct of the node entries. */
static int verify_region(nm_loaded *w, const void *base, uint64_t len, int expected,
                         nm_error *err) {
    uint64_t hist[NM_MAX_NODES];
    double pct;
    if (!base || !len)
        return 0;
    if (nm_pages_on_node(base, len, expected, 0, &pct, hist, NM_MAX_NODES, err) != 0)
        return -1;
    uint64_t pages =
        (nm_align_up((uintptr_t)base + len, 4096) - nm_align_down((uintptr_t)base, 4096)) / 4096;
    if (expected >= 0) {
        nm_load_node_stats *s = stats_for(w, expected);
        if (s)
            s->placed_pct = pct;
        return 0;
    }
    uint64_t in_set = 0;
    for (int i = 0; i < w->plan->n_nodes; i++) {
        int n = w->plan->nodes[i].os_index;
        in_set += n < NM_MAX_NODES ? hist[n] : 0;
    }
    for (int i = 0; i < w->plan->n_nodes; i++) {
        int n = w->plan->nodes[i].os_index;
        nm_load_node_stats *s = stats_for(w, n);
        if (!s)
            continue;
        s->placed_pct = pages ? 100.0 * (double)in_set / (double)pages : 100.0;
        s->share_pct = pages && n < NM_MAX_NODES ? 100.0 * (double)hist[n] / (double)pages : 0.0;
    }
    return 0;
}

static int verify_placement(nm_loaded *w, const nm_read_ctx *ctx, nm_error *err) {
    if (w->map)
        return verify_region(w, (uint8_t *)w->map + w->gguf->data_offset,
                             w->map_len - w->gguf->data_offset,
                             ctx->mpol_mode == MPOL_BIND ? w->plan->fixed_node : -1, err);
    for (int a = 0; a < w->plan->n_arenas; a++)
        if (verify_region(w, w->arenas[a].base, w->arenas[a].size, w->arenas[a].node, err) != 0)
            return nm_fail_prefix(err, "verify of arena %d", a);
    return 0;
}

/* mmap: pages cached before the load keep their node; say how many. */
static int count_off_policy(nm_loaded *w, nm_read_ctx *ctx, int n_jobs, nm_error *err) {
    uint64_t hist[NM_MAX_NODES];
    uint64_t resident;
    if (nm_mmap_placement(ctx, w->map, w->map_len, hist, NM_MAX_NODES, n_jobs, &w->off_policy_pages,
                          &resident, err) != 0)
        return -1;
    if (w->off_policy_pages)
        nm_read_fallback(ctx,
                         "mmap: %llu of %llu pages are not where the policy wants them "
                         "(already in the page cache on another node: pages keep their "
                         "node); drop caches first: `numalm load --drop-caches` or `echo 3 "
                         "> /proc/sys/vm/drop_caches` as root",
                         (unsigned long long)w->off_policy_pages, (unsigned long long)resident);
    return 0;
}

int nm_load_finish_stats(nm_loaded *w, const nm_reader_job *jobs, int n_jobs, nm_read_ctx *ctx,
                         const nm_load_opts *o, nm_error *err) {
    w->readers_per_node = o->readers_per_node;
    collect_node_stats(w, jobs, n_jobs);
    if (w->map && count_off_policy(w, ctx, n_jobs, err) != 0)
        return -1;
    if (!o->verify)
        return 0;
    if (verify_placement(w, ctx, err) != 0 || nm_loaded_verify_checksums(w, err) != 0)
        return -1;
    if (nm_loaded_verify_scales(w, err) != 0)
        return nm_fail_prefix(err, "verify");
    w->verified = true;
    return 0;
}
