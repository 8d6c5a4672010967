/* numalm topo: what the loader will see: NUMA nodes, cores, distances, PCI
 * devices and their nodes, of this machine or of an hwloc XML export. */
#include "cli_opt.h"
#include "commands.h"

#include "numa/topo.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *out) {
    fprintf(out, "usage: numalm topo [--topology FILE.xml] [--json]\n"
                 "\n"
                 "Shows the NUMA nodes this process may use (memory, cores, PUs, cpu\n"
                 "lists), package/core/PU totals, the node distance matrix, the GPUs,\n"
                 "disks and NICs with their nearest node, and the allowed cpu/node sets.\n"
                 "Runs under numactl, taskset or a cgroup see only what they may use.\n"
                 "\n"
                 "  --topology FILE.xml  describe an hwloc XML export instead of this machine\n"
                 "  --json               machine-readable output\n"
                 "  -h, --help           this help\n");
}

int cmd_topo(int argc, char **argv) {
    if (nm_cli_help_asked(argc, argv)) {
        usage(stdout);
        return 0;
    }
    const char *xml = NULL;
    int json = 0;
    nm_error err = {{0}};
    for (int i = 1; i < argc; i++) {
        int r = nm_cli_opt(argc, argv, &i, "--topology", NULL, &xml, &err);
        if (r < 0) {
            fprintf(stderr, "numalm topo: %s (an hwloc XML file)\n", err.msg);
            return 2;
        } else if (r == 0 && !strcmp(argv[i], "--json")) {
            json = 1;
        } else if (r == 0) {
            fprintf(stderr, "numalm topo: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    nm_topo *t = nm_topo_load(xml, &err);
    if (!t) {
        fprintf(stderr, "numalm topo: %s\n", err.msg);
        return 1;
    }
    if (json)
        nm_topo_print_json(t, stdout);
    else
        nm_topo_print(t, stdout);
    nm_topo_free(t);
    return 0;
}
