/* The load report, text and JSON. */
#include "loader.h"

#include "common/json.h"
#include "common/util.h"

#include <string.h>

static double gbps(uint64_t bytes, double s) {
    return s > 0 ? (double)bytes / s / 1e9 : 0.0;
}

void nm_loaded_print(const nm_loaded *w, FILE *out) {
    char b[32], b2[32], cpus[128];
    fprintf(out, "load: %s\n  io %s", w->gguf->path, nm_io_name(w->io));
    if (w->io != w->io_requested)
        fprintf(out, " (asked for %s)", nm_io_name(w->io_requested));
    fprintf(out, ", placement %s", nm_placement_name(w->plan->placement));
    if (w->io == NM_IO_DIO || w->io == NM_IO_AUTO)
        fprintf(out, ", chunk %llu KiB, queue depth %d, O_DIRECT align %u",
                (unsigned long long)(w->chunk_bytes >> 10), w->queue_depth, w->dio_align);
    fprintf(out, "\n");
    if (w->io == NM_IO_AUTO)
        fprintf(out, "  found in the page cache: %s, of which mapped (zero copy): %s\n",
                nm_fmt_bytes(w->cached_bytes, b, sizeof b),
                nm_fmt_bytes(w->mapped_bytes, b2, sizeof b2));
    if (w->map)
        fprintf(out, "  mmap pages not where the policy wants them: %llu\n",
                (unsigned long long)w->off_policy_pages);
    fprintf(out, "  %-6s %7s %12s %9s %8s %8s  %s\n", "node", "readers", "bytes", "seconds", "GB/s",
            "placed", "reader cpus");
    for (int i = 0; i < w->n_node_stats; i++) {
        const nm_load_node_stats *s = &w->node_stats[i];
        char placed[32] = "-";
        if (s->placed_pct >= 0)
            snprintf(placed, sizeof placed, "%.1f%%", s->placed_pct);
        nm_fmt_int_list(s->reader_cpus, s->n_reader_cpus, cpus, sizeof cpus);
        fprintf(out, "  %-6d %7d %12s %9.3f %8.2f %8s  %s", s->node, s->n_readers,
                nm_fmt_bytes(s->bytes, b, sizeof b), s->seconds, gbps(s->bytes, s->seconds), placed,
                cpus);
        if (s->share_pct >= 0)
            fprintf(out, "  (%.1f%% of the pages here)", s->share_pct);
        fprintf(out, "\n");
    }
    fprintf(out, "  %-6s %7s %12s %9.3f %8.2f\n", "total", "", nm_fmt_bytes(w->bytes, b, sizeof b),
            w->seconds, gbps(w->bytes, w->seconds));
    if (w->verified) {
        if (w->checksums_ok)
            fprintf(out, "  checksums: OK (every tensor range equals a plain read of the file)\n");
        else
            fprintf(out, "  checksums: %d MISMATCHES: %s\n", w->n_mismatches, w->mismatches);
        fprintf(out, "  scales: OK (every block's scales are finite)\n");
    }
    for (int i = 0; i < w->n_fallbacks; i++)
        fprintf(out, "  fallback: %s\n", w->fallbacks[i]);
}

static void json_node(nm_json *j, const nm_load_node_stats *s) {
    nm_json_obj_begin(j);
    nm_json_kint(j, "node", s->node);
    nm_json_kint(j, "readers", s->n_readers);
    nm_json_kuint(j, "bytes", s->bytes);
    nm_json_kdouble(j, "seconds", s->seconds);
    nm_json_kdouble(j, "gbps", gbps(s->bytes, s->seconds));
    nm_json_key(j, "placed_pct");
    if (s->placed_pct >= 0)
        nm_json_double(j, s->placed_pct);
    else
        nm_json_null(j);
    if (s->share_pct >= 0)
        nm_json_kdouble(j, "share_pct", s->share_pct);
    nm_json_kint_array(j, "reader_cpus", s->reader_cpus, s->n_reader_cpus);
    nm_json_obj_end(j);
}

void nm_loaded_print_json(const nm_loaded *w, FILE *out) {
    nm_json j;
    nm_json_init(&j, out);
    nm_json_obj_begin(&j);
    nm_loaded_json_fields(w, &j);
    nm_json_obj_end(&j);
    nm_json_finish(&j);
}

void nm_loaded_json_fields(const nm_loaded *w, nm_json *j) {
    nm_json_kstr(j, "model", w->gguf->path);
    nm_json_kstr(j, "io", nm_io_name(w->io));
    nm_json_kstr(j, "io_requested", nm_io_name(w->io_requested));
    nm_json_kstr(j, "placement", nm_placement_name(w->plan->placement));
    nm_json_kuint(j, "bytes", w->bytes);
    nm_json_kdouble(j, "seconds", w->seconds);
    nm_json_kdouble(j, "gbps", gbps(w->bytes, w->seconds));
    nm_json_kuint(j, "chunk_bytes", w->chunk_bytes);
    nm_json_kint(j, "queue_depth", w->queue_depth);
    nm_json_kuint(j, "dio_align", w->dio_align);
    nm_json_kuint(j, "cached_bytes", w->cached_bytes);
    nm_json_kuint(j, "mapped_bytes", w->mapped_bytes);
    nm_json_kbool(j, "thp", w->thp);
    uint64_t hugetlb = 0, locked = 0;
    for (int a = 0; a < w->plan->n_arenas; a++) {
        hugetlb += w->arenas[a].huge ? w->arenas[a].mapped : 0;
        locked += w->arenas[a].locked ? w->arenas[a].mapped : 0;
    }
    nm_json_kuint(j, "hugetlb_bytes", hugetlb); /* --hugepages: MAP_HUGETLB arenas */
    nm_json_kuint(j, "locked_bytes", locked);   /* --mlock */
    if (w->map)
        nm_json_kuint(j, "off_policy_pages", w->off_policy_pages);
    nm_json_key(j, "fallbacks");
    nm_json_arr_begin(j);
    for (int i = 0; i < w->n_fallbacks; i++)
        nm_json_str(j, w->fallbacks[i]);
    nm_json_arr_end(j);
    nm_json_key(j, "nodes");
    nm_json_arr_begin(j);
    for (int i = 0; i < w->n_node_stats; i++)
        json_node(j, &w->node_stats[i]);
    nm_json_arr_end(j);
    nm_json_kbool(j, "verified", w->verified);
    if (w->verified) {
        nm_json_kbool(j, "checksums_ok", w->checksums_ok);
        nm_json_kbool(j, "scales_ok", true); /* else the load fails */
        nm_json_kint(j, "mismatches", w->n_mismatches);
        if (w->n_mismatches)
            nm_json_kstr(j, "mismatched", w->mismatches);
    }
}
