/* numalm load: executes the plan (per-node readers into node-local arenas, or
 * the mmap baseline) and reports per node how many bytes came in, how fast,
 * and how much of them landed on the intended node. */
#include "commands.h"

#include "cli_opt.h"
#include "cmd_common.h"

#include "api/session_internal.h"
#include "common/util.h"
#include "io/loader.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: numalm load -m MODEL [--io dio|buffered|mmap|auto]\n"
            "                   [--placement shard|replicate|interleave|node:N] [--nodes LIST]\n"
            "                   [--threads-per-node N] [--chunk 4M] [--qd 16] [--readers N]\n"
            "                   [--verify] [--drop-caches | --drop-file-cache] [--mlock]\n"
            "                   [--hugepages] [--thp on|off|auto] [--no-map] [--json]\n"
            "\n"
            "Loads the weights as the plan says and reports, per node: bytes, seconds,\n"
            "GB/s and (with --verify) the %% of its pages on the intended node.\n"
            "  dio       O_DIRECT + io_uring straight into the node arenas\n"
            "  buffered  pread (through the page cache) by node-pinned threads\n"
            "  mmap      the baseline: map the file, interleave/bind policy, prefault\n"
            "  auto      copy what the page cache holds, O_DIRECT the rest (default)\n"
            "Fallbacks (O_DIRECT refused -> buffered, no io_uring -> preadv) are taken\n"
            "automatically and printed, one line each.\n"
            "\n" NM_CLI_COMMON_HELP "  --chunk SIZE            O_DIRECT request size (default 4M)\n"
            "  --qd N                  io_uring queue depth per reader (default 32)\n"
            "  --readers N             reader threads per node (default: 1 for O_DIRECT,\n"
            "                          up to 4 for copies)\n"
            "  --thp on|off|auto       transparent huge pages for the arenas (default\n"
            "                          auto: on, except in a VM whose balloon returns\n"
            "                          freed memory to the host)\n"
            "  --no-map                auto: copy cached pages, never map them\n"
            "  --drop-file-cache       evict only this model from the page cache first\n"
            "                          (posix_fadvise DONTNEED; no root needed)\n"
            "  -h, --help              this help\n"
            "Environment: NUMALM_DISABLE_URING=1, NUMALM_DISABLE_ODIRECT=1 simulate a\n"
            "kernel without io_uring / a filesystem without O_DIRECT.\n");
}

static int load_arg(nm_cli_common *c, int argc, char **argv, int *i, nm_error *err) {
    const char *a = argv[*i], *v;
    long n;
    numalm_options *o = &c->opts;
    if (!strcmp(a, "--chunk")) {
        if (!(v = nm_cli_value(argc, argv, i, err)) || nm_parse_size(v, &o->chunk_bytes, err) < 0)
            return -1;
        if (o->chunk_bytes < 4096 || o->chunk_bytes > (1u << 30))
            return nm_fail(err, "--chunk %s: expected 4K to 1G", v);
        return 1;
    }
    if (!strcmp(a, "--qd") || !strcmp(a, "--readers")) {
        if (!(v = nm_cli_value(argc, argv, i, err)) ||
            nm_parse_long(v, 1, strcmp(a, "--qd") ? 256 : 4096, &n, a, err) < 0)
            return -1;
        if (!strcmp(a, "--qd"))
            o->queue_depth = (int)n;
        else
            o->readers_per_node = (int)n;
        return 1;
    }
    if (!strcmp(a, "--no-map")) {
        o->no_map = true;
        return 1;
    }
    if (!strcmp(a, "--drop-file-cache")) {
        o->drop_file_cache = true;
        return 1;
    }
    return nm_cli_common_arg(c, argc, argv, i, err);
}

static int parse(nm_cli_common *c, int argc, char **argv, nm_error *err) {
    for (int i = 1; i < argc; i++) {
        int r = load_arg(c, argc, argv, &i, err);
        if (r < 0)
            return -1;
        if (r == 0) {
            if (!c->opts.model_path && argv[i][0] != '-') {
                c->opts.model_path = argv[i];
                continue;
            }
            return nm_fail(err, "unknown argument '%s' (see numalm load --help)", argv[i]);
        }
    }
    if (!c->opts.model_path)
        return nm_fail(err, "no model: give -m MODEL.gguf");
    if (c->opts.topology_xml)
        return nm_fail(err,
                       "--topology %s: load runs on this machine; an XML topology is "
                       "for `numalm plan` only",
                       c->opts.topology_xml);
    return 0;
}

int cmd_load(int argc, char **argv) {
    if (nm_cli_help_asked(argc, argv)) {
        usage(stdout);
        return 0;
    }
    nm_cli_common c;
    nm_cli_common_init(&c);
    c.opts.stage = NUMALM_STAGE_WEIGHTS;
    nm_error err = {{0}};
    if (parse(&c, argc, argv, &err) < 0) {
        fprintf(stderr, "numalm load: %s\n", err.msg);
        return 2;
    }
    numalm_session *s = nm_cli_open(&c, &err);
    if (!s) {
        fprintf(stderr, "numalm load: %s\n", err.msg);
        return 1;
    }
    const nm_loaded *w = s->loaded;
    if (c.json)
        nm_loaded_print_json(w, stdout);
    else
        nm_loaded_print(w, stdout);
    int rc = w->verified && !w->checksums_ok ? 1 : 0;
    if (rc)
        fprintf(stderr, "numalm load: verify: %d tensor ranges differ from the file: %s\n",
                w->n_mismatches, w->mismatches);
    numalm_close(s);
    return rc;
}
