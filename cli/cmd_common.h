/* Options shared by the commands that load a model (load, run, perplexity):
 * -m, --io, --placement, --nodes, -t/--threads, --threads-per-node, ...,
 * gathered into the numalm_options of the session they open. */
#ifndef NM_CMD_COMMON_H
#define NM_CMD_COMMON_H

#include "numalm.h"

#include "common/error.h"

#include <stdbool.h>

typedef struct nm_cli_common {
    numalm_options opts; /* model_path, topology_xml (--topology: plans only) */
    bool json;
    bool ngl_given; /* -ngl on the command line (--gpu alone means -ngl all) */
} nm_cli_common;

/* Lines for a command's --help. */
#define NM_CLI_COMMON_HELP                                                                         \
    "  -m, --model FILE        GGUF model\n"                                                       \
    "  --io MODE               dio | buffered | mmap | auto (default auto)\n"                      \
    "  --placement P           shard | replicate | interleave | node:N | auto (default\n"          \
    "                          shard; auto: replicate if every node has room for a copy,\n"        \
    "                          else shard, else interleave; `numalm plan` shows the fit)\n"        \
    "  --moe-placement M       rows | experts: mixture-of-experts models compute every\n"          \
    "                          expert's rows on every node (default), or whole experts\n"          \
    "                          per node\n"                                                         \
    "  --nodes LIST            NUMA nodes to use, e.g. 0,1 (default: all allowed)\n"               \
    "  -t, --threads N         worker threads in all (default: all allowed cores)\n"               \
    "  --threads-per-node N    worker threads on each node\n"                                      \
    "  --mlock, --hugepages    lock the weights / use explicit huge pages\n"                       \
    "  --thp on|off|auto|collapse  huge pages for the arenas (default auto; collapse:\n"           \
    "                          fill with 4K pages, then MADV_COLLAPSE; pays off on long runs)\n"   \
    "  --verify                check page placement and checksums after loading\n"                 \
    "  --drop-caches           drop the page cache first (root)\n"                                 \
    "  --no-mem-check          load even when the nodes' free memory, the cgroup limit or\n"       \
    "                          RLIMIT_AS says it will not fit (default: refuse, with the\n"        \
    "                          figures; a node that runs out mid-load still stops it)\n"           \
    "  --no-progress           no progress bar\n"                                                  \
    "  --json                  machine-readable report\n"                                          \
    "  -ngl, --n-gpu-layers N  the last N blocks on the GPU (all: every block and the LM head)\n"  \
    "  --gpu DEV               the GPU: a CUDA device number (default 0), or cpu[:NODE], the\n"    \
    "                          device interface's CPU implementation; alone: -ngl all\n"

/* -ngl all: more blocks than any model has (the LM head goes too). */
#define NM_CLI_NGL_ALL 100000

/* Environment variables the loading commands read (the library reads none):
 * each sets one of the session options, before the command line. */
#define NM_CLI_ENV_HELP                                                                            \
    "Environment (overrides for tests and broken machines):\n"                                     \
    "  NUMALM_SIMD=scalar|avx2|avx512|amx  highest kernel level (default: the CPU's best)\n"       \
    "  NUMALM_DISABLE_ODIRECT=1        as if the filesystem refused O_DIRECT\n"                    \
    "  NUMALM_DISABLE_URING=1          as if the kernel had no io_uring (preadv)\n"                \
    "  NUMALM_DIO_ALIGN=N              O_DIRECT offset alignment N when a multiple of the\n"       \
    "                                  filesystem's (power of two, at most 1M)\n"                  \
    "  NUMALM_NO_STAGING=1             replicate: each node reads its whole copy from disk\n"      \
    "  NUMALM_NO_MAP=1                 as --no-map\n"                                              \
    "  NUMALM_NO_PROGRESS=1            no progress bar even on a terminal\n"

/* The library's defaults, then the environment's overrides (NM_CLI_ENV_HELP),
 * with messages printed by the command (log lines on stderr, a progress bar
 * on a TTY). */
void nm_cli_common_init(nm_cli_common *c);

/* Looks at argv[*i]: 1 if it was a common option (its value consumed and *i
 * moved to the last argument used), 0 if not, -1 on a bad value (err). */
int nm_cli_common_arg(nm_cli_common *c, int argc, char **argv, int *i, nm_error *err);

/* The value of option argv[*i] (advances *i); NULL + err when missing. */
const char *nm_cli_value(int argc, char **argv, int *i, nm_error *err);

/* Model options of run and perplexity: -c, --kv-type, --batch. */
#define NM_CLI_MODEL_HELP                                                                          \
    "  -c, --ctx-size N        context (KV cache) length (default: the model's)\n"                 \
    "  --kv-type f16|f32       KV cache element type (default f16)\n"                              \
    "  --batch N               prompt tokens per batched pass (default 64)\n"

int nm_cli_model_arg(numalm_options *o, int argc, char **argv, int *i, nm_error *err);

/* A command's own options: 1 when it took argv[*i] (moving *i past a
 * value), 0 when argv[*i] is not one of them, -1 with err. */
typedef int (*nm_cli_arg_fn)(void *cmd_opts, int argc, char **argv, int *i, nm_error *err);

/* The arguments of a command that runs a model (`numalm CMD`): each one is
 * the command's own (own, tried first), a common option or a model option;
 * anything else is refused naming CMD's --help, and so is --topology (a
 * plan for another machine is `numalm plan`'s). 0, or -1 with err. */
int nm_cli_parse_run(nm_cli_common *c, const char *cmd, int argc, char **argv, nm_cli_arg_fn own,
                     void *cmd_opts, nm_error *err);

/* numalm_open with c's options; NULL + err when no model was given or the
 * open failed. */
numalm_session *nm_cli_open(const nm_cli_common *c, nm_error *err);

/* The fields every model-running report shares (io, placement, threads,
 * SIMD level, KV type), as JSON keys of the object being written. */
struct nm_json;
void nm_cli_json_run_setup(struct nm_json *j, const numalm_session *s);

/* "traffic": what each node's workers read in the single-token passes
 * (weight matrix bytes, KV cache bytes) and how many there were: the
 * runtime's side of `numalm plan --predict`'s byte counts. */
void nm_cli_json_traffic(struct nm_json *j, const numalm_session *s);

#endif
