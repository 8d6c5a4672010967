/* numalm bench: loads per io mode and cache state, prompt and decode per
 * placement and thread count, the traffic model's prediction beside them,
 * optionally llama-bench on the same file and threads; repeated, in
 * alternating order; then a markdown report with SVG plots and JSON.
 * cmd_bench.c parses and orders the runs, bench_run.c measures,
 * bench_report.c writes. */
#ifndef NM_CLI_BENCH_H
#define NM_CLI_BENCH_H

#include "numalm.h"

#include "common/error.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define NM_BENCH_MAX_REPS 32

typedef enum nm_bench_kind {
    NM_BENCH_LOAD,      /* GB/s */
    NM_BENCH_PROMPT,    /* tok/s */
    NM_BENCH_DECODE,    /* tok/s */
    NM_BENCH_PREDICTED, /* tok/s: the traffic model, for the decode case of the same group */
} nm_bench_kind;

typedef struct nm_bench_case {
    nm_bench_kind kind;
    char group[64];    /* "dio", "shard, 2 threads", "llama.cpp, 2 threads" */
    char series[32];   /* "cold", "warm", "numalm", "llama.cpp", "predicted" */
    char command[600]; /* the command line that does the same thing */
    int n;
    double v[NM_BENCH_MAX_REPS];
    char note[160]; /* e.g. the prediction's bottleneck */
} nm_bench_case;

typedef struct nm_bench_opts {
    const char *model, *out_dir, *llama_bench, *bandwidth;
    double efficiency; /* --efficiency; 0: the kernel probe's */
    int reps, n_prompt, n_gen;
    int threads[16], n_threads;
    numalm_placement placements[8];
    int fixed_node[8];
    int n_placements;
    numalm_io ios[4];
    int n_ios;
    bool skip_load, skip_run, json, progress;
    char argv_line[1024]; /* how the bench was started */
} nm_bench_opts;

typedef struct nm_bench {
    nm_bench_opts o;
    nm_bench_case *cases;
    int n_cases;
    size_t cap_cases;
    char uptime_before[128], uptime_after[128];
    char started[64]; /* UTC */
    double seconds;
    int steps, steps_done; /* progress */
    char notes[8][700];    /* what went wrong but did not stop the bench */
    int n_notes;
} nm_bench;

/* The case (kind, group, series), made on first use; NULL: out of memory. */
nm_bench_case *nm_bench_case_get(nm_bench *b, nm_bench_kind kind, const char *group,
                                 const char *series);

/* bench_run.c: one repetition of each measurement; each adds its value to
 * its case. 0 or -1 (err). */
int nm_bench_load(nm_bench *b, numalm_io io, bool cold, nm_error *err);
int nm_bench_model(nm_bench *b, numalm_placement p, int fixed_node, int threads, nm_error *err);
int nm_bench_llama(nm_bench *b, int threads, nm_error *err);
int nm_bench_predict(nm_bench *b, numalm_placement p, int fixed_node, int threads, nm_error *err);

/* Would the run of placement p with `threads` workers fit the nodes' memory
 * now (the admission of numalm run)? 1 yes; 0 no, with the admission's
 * message (each node's bytes needed and available) in why; -1 error. */
int nm_bench_fits(const nm_bench *b, numalm_placement p, int fixed_node, int threads,
                  nm_error *why);

/* A note for the report (and stderr), kept when there is room. */
void nm_bench_note(nm_bench *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The group name of a numalm run ("shard, 2 threads"). */
void nm_bench_run_group(numalm_placement p, int fixed_node, int threads, char *buf, size_t n);

/* bench_report.c: report.md, the SVG plots and results.json in o.out_dir;
 * JSON on `json` too when not NULL. */
int nm_bench_write(const nm_bench *b, FILE *json, nm_error *err);

/* Median, min and max of a case's values. */
void nm_bench_stats(const nm_bench_case *c, double *median, double *lo, double *hi);

/* "2026-12-06 15:09 UTC" and the load average line, for the report. */
void nm_bench_now(char *buf, size_t n);
void nm_bench_uptime(char *buf, size_t n);

#endif
