/* numalm plan: where every weight of a model would go and which threads
 * compute on it, for this machine or an hwloc XML export. Nothing is loaded:
 * only the GGUF header is read. */
#include "cli_opt.h"
#include "commands.h"
#include "messages.h"

#include "api/session_internal.h"
#include "common/util.h"
#include "numa/plan.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *out) {
    fprintf(out, "usage: numalm plan -m MODEL [--placement shard|replicate|interleave|node:N]\n"
                 "                   [--nodes LIST] [--threads-per-node N | -t N]\n"
                 "                   [--topology FILE.xml] [--align BYTES] [--verbose] [--json]\n"
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
                 "\n"
                 "  -m, --model MODEL       GGUF file (only its header is read)\n"
                 "  --placement P           see above (default shard)\n"
                 "  --nodes LIST            compute on these nodes only, e.g. 0,1 or 0-3\n"
                 "  --threads-per-node N    N workers on every node\n"
                 "  -t, --threads N         N workers in all, spread in proportion to cores\n"
                 "  --topology FILE.xml     plan for an hwloc XML export instead of this machine\n"
                 "  --align BYTES           arena/file offset congruence (default 4096)\n"
                 "  -v, --verbose           also the full per-tensor table\n"
                 "  --json                  machine-readable output\n"
                 "  -h, --help              this help\n");
}

typedef struct plan_args {
    bool json, verbose;
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
        {"--model", "-m"},   {"--placement", NULL},        {"--nodes", NULL},
        {"--threads", "-t"}, {"--threads-per-node", NULL}, {"--topology", NULL},
        {"--align", NULL},
    };
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            pa->json = true;
            continue;
        }
        if (!strcmp(argv[i], "--verbose") || !strcmp(argv[i], "-v")) {
            pa->verbose = true;
            continue;
        }
        int found = 0;
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
    if (pa.json) {
        nm_plan_print_json(s->plan, stdout);
    } else {
        printf("model %s on %s\n", pa.opts.model_path, s->topo->source);
        nm_plan_print(s->plan, stdout);
        if (pa.verbose)
            nm_plan_print_table(s->plan, stdout);
    }
    numalm_close(s);
    return 0;
}
