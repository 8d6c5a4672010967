/* numalm: NUMA-aware GGUF loader and llama inference runtime. */
#include "commands.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} COMMANDS[] = {
    {"info", cmd_info, "MODEL [--json]            metadata, hyperparameters, tensors"},
    {"topo", cmd_topo, "[--topology X.xml] [--json] NUMA nodes, cores, distances, PCI"},
    {"mkmodel", cmd_mkmodel, "OUT.gguf [--preset tiny|1b] [--size 4G] [--type T]  demo model"},
    {"plan", cmd_plan, "-m MODEL [--placement P] [--predict] [--json]  where every weight goes"},
    {"load", cmd_load, "-m MODEL --io dio|buffered|mmap|auto  load into node arenas"},
    {"bench", cmd_bench, "[-m MODEL] [--llama-bench PATH]  loads, decode, a report with plots"},
    {"run", cmd_run, "-m MODEL -p PROMPT [-n N]   generate text"},
    {"perplexity", cmd_perplexity, "-m MODEL -f TEXT [-c N]  llama.cpp's perplexity"},
    {"serve", cmd_serve, "-m MODEL [--port 8080] [-np N]  OpenAI-compatible HTTP server"},
    {"chat", cmd_chat, "-m MODEL [--system TEXT] [--chat-template NAME]  talk to the model"},
    {"tokenize", cmd_tokenize, "-m MODEL -p TEXT [--ids] [--special] [--json]  token ids"},
    {"version", cmd_version, "[--json]  (or --version) version, commit, what was compiled in"},
};

static void usage(FILE *out) {
    fprintf(out, "usage: numalm COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        fprintf(out, "  %-11s %s\n", COMMANDS[i].name, COMMANDS[i].help);
    fprintf(out, "\n`numalm COMMAND --help` for a command's options.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V"))
        return cmd_version(argc - 1, argv + 1);
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (!strcmp(argv[1], COMMANDS[i].name))
            return COMMANDS[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "numalm: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
