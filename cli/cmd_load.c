/* numalm load: executes the plan (per-node readers into node-local arenas, or
 * the mmap baseline) and reports per node how many bytes came in, how fast,
 * and how much of them landed on the intended node. */
#include "commands.h"

#include "cli_opt.h"
#include "cmd_common.h"

#include "api/session_internal.h"
#include "common/json.h"
#include "common/util.h"
#include "cuda/upload.h"
#include "io/loader.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: numalm load -m MODEL [--io dio|buffered|mmap|auto]\n"
            "                   [--placement shard|replicate|interleave|node:N|auto]\n"
            "                   [--nodes LIST] [--threads-per-node N] [--chunk 4M] [--qd 16]\n"
            "                   [--readers N]\n"
            "                   [--verify] [--drop-caches | --drop-file-cache] [--mlock]\n"
            "                   [--hugepages] [--thp on|off|auto] [--no-map] [--no-mem-check]\n"
            "                   [--json]\n"
            "                   [--gpu DEV [-ngl N] [--gpu-staging-node N] [--gpu-slots N]\n"
            "                    [--gpu-slot-size SIZE] [--gpu-pageable]]\n"
            "\n"
            "Loads the weights as the plan says and reports, per node: bytes, seconds,\n"
            "GB/s and (with --verify) the %% of its pages on the intended node.\n"
            "  dio       O_DIRECT + io_uring straight into the node arenas\n"
            "  buffered  pread (through the page cache) by node-pinned threads\n"
            "  mmap      the baseline: map the file, interleave/bind policy, prefault\n"
            "  auto      copy what the page cache holds, O_DIRECT the rest (default)\n"
            "Before anything is mapped, what every node will hold is compared with what it\n"
            "can give (free + inactive file pages - a reserve), the cgroup memory limit and\n"
            "RLIMIT_AS; a load that does not fit stops with the figures per node and the\n"
            "placements that would fit (the fit table of `numalm plan`; --no-mem-check).\n"
            "Fallbacks (O_DIRECT refused -> buffered, no io_uring -> preadv) are taken\n"
            "automatically and printed, one line each.\n"
            "With --gpu, the blocks on the GPU (all of them unless -ngl says fewer) are\n"
            "read by a reader pinned to the GPU's node into page-locked staging buffers\n"
            "there and copied to the GPU while the next ones are read; the report gives\n"
            "disk -> host and host -> device GB/s and the staging node (docs/gpu.md).\n"
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
            "  --gpu-staging-node N    stage on node N instead of the GPU's own\n"
            "  --gpu-slots N           staging slots, one copy stream each (default 4)\n"
            "  --gpu-slot-size SIZE    bytes per staging slot (default 32M)\n"
            "  --gpu-pageable          stage in memory that is not page-locked\n"
            "  -h, --help              this help\n" NM_CLI_ENV_HELP);
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
    if (!strcmp(a, "--gpu-staging-node") || !strcmp(a, "--gpu-slots")) {
        bool node = !strcmp(a, "--gpu-staging-node");
        if (!(v = nm_cli_value(argc, argv, i, err)) ||
            nm_parse_long(v, node ? 0 : 2, node ? 4095 : NM_DEV_MAX_STREAMS, &n, a, err) < 0)
            return -1;
        *(node ? &o->gpu_staging_node : &o->gpu_slots) = (int)n;
        return 1;
    }
    if (!strcmp(a, "--gpu-slot-size")) {
        if (!(v = nm_cli_value(argc, argv, i, err)) ||
            nm_parse_size(v, &o->gpu_slot_bytes, err) < 0)
            return -1;
        if (o->gpu_slot_bytes < (64u << 10) || o->gpu_slot_bytes > (1u << 30))
            return nm_fail(err, "--gpu-slot-size %s: expected 64K to 1G", v);
        return 1;
    }
    if (!strcmp(a, "--gpu-pageable")) {
        o->gpu_pageable = true;
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

/* The loader's report; with a GPU, its upload under "gpu". */
static void print_json(const numalm_session *s) {
    nm_json j;
    nm_json_init(&j, stdout);
    nm_json_obj_begin(&j);
    nm_loaded_json_fields(s->loaded, &j);
    if (s->upload) {
        nm_json_key(&j, "gpu");
        nm_json_obj_begin(&j);
        nm_json_kint(&j, "layers", s->gpu_layers);
        nm_json_kbool(&j, "head", s->gpu_head);
        nm_upload_json_fields(s->upload, &j);
        nm_json_obj_end(&j);
    }
    nm_json_obj_end(&j);
    nm_json_finish(&j);
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
    const nm_upload *u = s->upload;
    if (c.json)
        print_json(s);
    else
        nm_loaded_print(w, stdout);
    if (u && !c.json)
        nm_upload_print(u, stdout);
    int rc = w->verified && !w->checksums_ok ? 1 : 0;
    if (rc)
        fprintf(stderr, "numalm load: verify: %d tensor ranges differ from the file: %s\n",
                w->n_mismatches, w->mismatches);
    if (u && u->verified && !u->verify_ok) {
        fprintf(stderr, "numalm load: verify: %d tensors differ on the device from the file: %s\n",
                u->n_mismatches, u->mismatches);
        rc = 1;
    }
    numalm_close(s);
    return rc;
}
