/* numalm plan: where every weight of a model would go and which threads
 * compute on it, for this machine or an hwloc XML export. Nothing is loaded:
 * only the GGUF header is read. */
#include "cli_opt.h"
#include "cmd_common.h"
#include "commands.h"
#include "messages.h"

#include "api/predict.h"
#include "api/session_internal.h"
#include "common/json.h"
#include "common/util.h"
#include "numa/fit.h"
#include "numa/plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: numalm plan -m MODEL [--placement shard|replicate|interleave|node:N|auto]\n"
            "                   [--nodes LIST] [--threads-per-node N | -t N] [-c N]\n"
            "                   [--kv-type f16|f32] [--batch N] [--io MODE]\n"
            "                   [--topology FILE.xml] [--align BYTES] [--verbose] [--json]\n"
            "                   [--predict [--bandwidth SPEC] [--depth N] [-n N]]\n"
            "\n"
            "Prints, per NUMA node: its worker threads (one per allowed core by default),\n"
            "the KV heads and the row range of every tensor role it computes, the bytes\n"
            "it holds, then the arenas and the weight bytes read across nodes per token.\n"
            "The compute split is the same for every placement; placement decides where\n"
            "the bytes live:\n"
            "  shard       each node holds the rows it computes (default; no remote reads)\n"
            "  replicate   each node holds a full copy (n x the memory)\n"
            "  interleave  one arena, pages round-robin over the nodes\n"
            "  node:N      one arena on node N; the other nodes read it remotely\n"
            "  auto        replicate if every node has room for a copy, else shard,\n"
            "              else interleave (decided by the fit table below)\n"
            "\n"
            "Then the memory fit table: for every placement, what each node would hold\n"
            "(weights, the KV cache at -c positions as `numalm run` allocates it, worker\n"
            "scratch, loader buffers) against what it can give: on this machine its free\n"
            "memory plus inactive file pages less a reserve (the zones' high watermark\n"
            "+ 1 %%, at least 16 MiB), with the cgroup memory limit and RLIMIT_AS; for a\n"
            "--topology file each node's memory less the reserve. load, run and\n"
            "perplexity refuse a placement that does not fit, with these figures.\n"
            "\n"
            "With --predict, the traffic model (docs/prediction.md): the bytes each node's\n"
            "workers read per generated token from each node's memory, and the decode\n"
            "tok/s that follows from the bandwidths, for this plan, one socket, llama.cpp's\n"
            "mmap first touch and its --numa distribute with interleaved pages; then every\n"
            "placement side by side, with its fit.\n"
            "\n"
            "  -m, --model MODEL       GGUF file (only its header is read)\n"
            "  --placement P           see above (default shard)\n"
            "  --moe-placement M       rows (default): every expert's rows split across the\n"
            "                          nodes; experts: whole experts per node\n"
            "  --nodes LIST            compute on these nodes only, e.g. 0,1 or 0-3\n"
            "  --threads-per-node N    N workers on every node\n"
            "  -t, --threads N         N workers in all, spread in proportion to cores\n"
            "  --topology FILE.xml     plan for an hwloc XML export instead of this machine\n"
            "  --align BYTES           arena/file offset congruence (default 4096)\n"
            "  -c, --ctx-size N        KV cache positions counted (default: the model's)\n"
            "  --kv-type f16|f32       KV cache element type (default f16)\n"
            "  --batch N               prompt tokens per pass, for the scratch (default 64)\n"
            "  --io MODE               dio | buffered | mmap | auto: the loader's buffers;\n"
            "                          with mmap the weights are page cache (default auto)\n"
            "  --predict               also the traffic model's prediction\n"
            "  --bandwidth SPEC        GB/s for --predict: LOCAL[,LINK[,CORE]] (a node's memory,\n"
            "                          one direction of a socket link (default LOCAL/2), one\n"
            "                          core's stream), a preset (epyc-genoa, sapphirerapids,\n"
            "                          ...: docs/prediction.md), measure (each node's workers\n"
            "                          read a buffer on each node; one node with the model\n"
            "                          file cached: its cached pages), or auto (default: HMAT;\n"
            "                          else measured on this machine; for a --topology file\n"
            "                          the preset of its CPU model, else a generic guess that\n"
            "                          the report names)\n"
            "  --depth N               KV positions before the first generated token (default 0)\n"
            "  -n, --n-predict N       tokens generated, for the KV reads (default 128)\n"
            "  --efficiency F          kernels' fraction of the read bandwidth, every type\n"
            "                          (default: on this machine each matrix type's matvec\n"
            "                          measured against a read, and a barrier's cost; for a\n"
            "                          --topology file 1, an upper bound)\n"
            "  -v, --verbose           also the full per-tensor table\n"
            "  --json                  machine-readable output\n"
            "  -h, --help              this help\n");
}

typedef struct plan_args {
    bool json, verbose, predict;
    const char *bandwidth;
    nm_traffic_opts traffic;
    numalm_options opts; /* stage PLAN */
} plan_args;

static int parse_value(const char *opt, const char *v, plan_args *pa, nm_error *err) {
    long n;
    uint64_t bytes;
    if (!strcmp(opt, "--placement")) {
        nm_placement p;
        if (nm_placement_parse(v, &p, &pa->opts.fixed_node, err))
            return -1;
        pa->opts.placement = (numalm_placement)p;
        return 0;
    }
    if (!strcmp(opt, "--moe-placement")) {
        nm_moe_placement m;
        if (nm_moe_placement_parse(v, &m, err))
            return -1;
        pa->opts.moe = (numalm_moe_placement)m;
        return 0;
    }
    if (!strcmp(opt, "--nodes")) {
        int c = nm_parse_int_list(v, pa->opts.nodes, NUMALM_MAX_NODES, 4095, err);
        if (c < 0)
            return nm_fail_prefix(err, "--nodes");
        pa->opts.n_nodes = c;
        return 0;
    }
    if (!strcmp(opt, "--threads-per-node")) {
        if (nm_parse_long(v, 1, 256, &n, "--threads-per-node", err))
            return -1;
        pa->opts.threads_per_node = (int)n;
        return 0;
    }
    if (!strcmp(opt, "--threads")) {
        if (nm_parse_long(v, 1, 256 * NM_MAX_NODES, &n, "-t", err))
            return -1;
        pa->opts.n_threads = (int)n;
        return 0;
    }
    if (!strcmp(opt, "--align")) {
        if (nm_parse_size(v, &bytes, err))
            return nm_fail_prefix(err, "--align");
        pa->opts.align = bytes;
        return bytes && !(bytes & (bytes - 1))
                   ? 0
                   : nm_fail(err, "--align %s: expected a power of two", v);
    }
    if (!strcmp(opt, "--bandwidth")) {
        pa->bandwidth = v;
        return 0;
    }
    if (!strcmp(opt, "--depth") || !strcmp(opt, "--n-predict")) {
        if (nm_parse_long(v, 0, 1 << 24, &n, opt, err))
            return -1;
        *(!strcmp(opt, "--depth") ? &pa->traffic.depth : &pa->traffic.n_gen) = (int)n;
        return 0;
    }
    if (!strcmp(opt, "--efficiency")) {
        char *end;
        pa->traffic.efficiency = strtod(v, &end);
        return *end || !(pa->traffic.efficiency > 0 && pa->traffic.efficiency <= 1)
                   ? nm_fail(err, "--efficiency %s: expected a fraction in (0, 1]", v)
                   : 0;
    }
    if (!strcmp(opt, "--io")) {
        nm_io_mode io;
        if (nm_io_parse(v, &io, err))
            return -1;
        pa->opts.io = (numalm_io)io;
        return 0;
    }
    if (!strcmp(opt, "--model"))
        pa->opts.model_path = v;
    else
        pa->opts.topology_xml = v;
    return 0;
}

static int parse_args(int argc, char **argv, plan_args *pa, nm_error *err) {
    static const struct {
        const char *name, *alias;
    } OPTS[] = {
        {"--model", "-m"},      {"--placement", NULL}, {"--moe-placement", NULL},
        {"--nodes", NULL},      {"--threads", "-t"},   {"--threads-per-node", NULL},
        {"--topology", NULL},   {"--align", NULL},     {"--io", NULL},
        {"--bandwidth", NULL},  {"--depth", NULL},     {"--n-predict", "-n"},
        {"--efficiency", NULL},
    };
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            pa->json = true;
            continue;
        }
        if (!strcmp(argv[i], "--predict")) {
            pa->predict = true;
            continue;
        }
        if (!strcmp(argv[i], "--verbose") || !strcmp(argv[i], "-v")) {
            pa->verbose = true;
            continue;
        }
        int found = nm_cli_model_arg(&pa->opts, argc, argv, &i, err);
        if (found < 0)
            return -1;
        for (size_t k = 0; k < sizeof OPTS / sizeof OPTS[0] && !found; k++) {
            const char *v;
            found = nm_cli_opt(argc, argv, &i, OPTS[k].name, OPTS[k].alias, &v, err);
            if (found < 0 || (found && parse_value(OPTS[k].name, v, pa, err)))
                return -1;
        }
        if (!found)
            return nm_fail(err, "unknown argument '%s' (see numalm plan --help)", argv[i]);
    }
    if (!pa->opts.model_path)
        return nm_fail(err, "no model: give -m MODEL.gguf");
    return 0;
}

/* "node:1", "shard" */
static void placement_label(const nm_placement_prediction *p, char *buf, size_t n) {
    if (p->placement == NM_PLACE_NODE)
        snprintf(buf, n, "node:%d", p->fixed_node);
    else
        snprintf(buf, n, "%s", nm_placement_name(p->placement));
}

/* Every placement side by side: the choice --placement makes, with the
 * memory fit table's verdict next to it. */
static void placements_print(const nm_prediction *pred) {
    printf("every placement, the same nodes and threads:\n");
    printf("  %-12s %9s %12s  %-4s  %s\n", "placement", "tok/s", "x one socket", "fits",
           "bottleneck");
    for (int i = 0; i < pred->n_placements; i++) {
        const nm_placement_prediction *p = &pred->placements[i];
        char label[32];
        placement_label(p, label, sizeof label);
        printf("  %-12s %9.2f %11.2fx  %-4s  %s\n", label, p->tok_s, p->speedup,
               p->fits ? "yes" : "no", p->bottleneck);
    }
}

static void placements_json(const nm_prediction *pred, nm_json *j) {
    nm_json_arr_begin(j);
    for (int i = 0; i < pred->n_placements; i++) {
        const nm_placement_prediction *p = &pred->placements[i];
        char label[32];
        placement_label(p, label, sizeof label);
        nm_json_obj_begin(j);
        nm_json_kstr(j, "placement", label);
        nm_json_kdouble(j, "tok_s", p->tok_s);
        nm_json_kdouble(j, "speedup_vs_one_node", p->speedup);
        nm_json_kstr(j, "bottleneck", p->bottleneck);
        nm_json_kbool(j, "fits", p->fits);
        nm_json_obj_end(j);
    }
    nm_json_arr_end(j);
}

int cmd_plan(int argc, char **argv) {
    if (nm_cli_help_asked(argc, argv)) {
        usage(stdout);
        return 0;
    }
    plan_args pa = {0};
    numalm_options_init(&pa.opts);
    pa.opts.stage = NUMALM_STAGE_PLAN;
    pa.opts.log = nm_cli_log;
    nm_error err = {{0}};
    if (parse_args(argc, argv, &pa, &err)) {
        fprintf(stderr, "numalm plan: %s\n", err.msg);
        return 2;
    }
    numalm_session *s = numalm_open(&pa.opts, err.msg, sizeof err.msg);
    if (!s) {
        fprintf(stderr, "numalm plan: %s\n", err.msg);
        return 1;
    }
    nm_prediction *pred = pa.predict ? nm_calloc(1, sizeof *pred, "the prediction", &err) : NULL;
    if (pa.predict && (!pred || nm_session_predict(s, pa.bandwidth, &pa.traffic, pred) != 0 ||
                       nm_session_predict_placements(s, pred) != 0)) {
        fprintf(stderr, "numalm plan: %s\n", pred ? numalm_last_error(s) : err.msg);
        free(pred);
        numalm_close(s);
        return 1;
    }
    if (pa.json) {
        nm_json j;
        nm_json_init(&j, stdout);
        nm_json_obj_begin(&j);
        nm_plan_json_fields(s->plan, &j);
        nm_json_key(&j, "memory_fit");
        nm_fit_json(s->fit, &j);
        if (pred) {
            nm_json_key(&j, "predict");
            nm_traffic_json(pred->t, pred->n, &pred->bw, &pred->opts, &j);
            nm_json_key(&j, "predict_placements");
            placements_json(pred, &j);
        }
        nm_json_obj_end(&j);
        nm_json_finish(&j);
    } else {
        printf("model %s on %s\n", pa.opts.model_path, s->topo->source);
        nm_plan_print(s->plan, stdout);
        if (pa.verbose)
            nm_plan_print_table(s->plan, stdout);
        nm_fit_print(s->fit, stdout);
        if (pred) {
            nm_traffic_print(pred->t, pred->n, &pred->bw, &pred->opts, stdout);
            placements_print(pred);
        }
    }
    free(pred);
    numalm_close(s);
    return 0;
}
