/* numalm bench: one command, one report (bench.h). The order of the runs:
 * every repetition goes once through every case (loads: each io mode cold,
 * then each warm; then each placement x thread count, with llama-bench at
 * the same thread count right after numalm's), so a machine that gets
 * busier or quieter during the bench touches every case alike. */
#include "bench.h"
#include "cli_opt.h"
#include "commands.h"
#include "messages.h"

#include "common/util.h"
#include "gguf/ggml_types.h"
#include "io/loader.h"
#include "numa/plan.h"
#include "tools/mkmodel.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_MODEL "build/demo-1b-q8_0.gguf"

static void usage(FILE *out) {
    fprintf(out,
            "usage: numalm bench [-m MODEL] [-o DIR] [-r N] [-p N] [-n N] [-t LIST]\n"
            "                    [--placements LIST] [--io LIST] [--llama-bench PATH]\n"
            "                    [--bandwidth SPEC] [--efficiency F] [--skip-load]\n"
            "                    [--skip-run] [--json] [--no-progress]\n"
            "\n"
            "Measures, repeating every case and alternating them: loads into node memory\n"
            "for each io mode, cold (the model evicted from the page cache) and warm;\n"
            "prompt (pp) and decode (tg) tok/s for each placement and thread count; the\n"
            "traffic model's predicted decode for the same plans (plan --predict); with\n"
            "--llama-bench, llama.cpp's llama-bench on the same file and threads. Writes\n"
            "DIR/report.md (the machine, the commands, medians and spread), the plots\n"
            "DIR/load.svg, decode.svg, prompt.svg, predicted.svg, and DIR/results.json.\n"
            "A placement whose run would not fit the nodes' memory (numalm plan's fit\n"
            "table) is left out, with the figures in the report's notes.\n"
            "\n"
            "  -m, --model FILE        GGUF model (default %s, written by numalm mkmodel\n"
            "                          --preset 1b --type q8_0 when absent)\n"
            "  -o, --out DIR           report directory (default bench-report)\n"
            "  -r, --reps N            repetitions of every case (default 3)\n"
            "  -p, --n-prompt N        prompt tokens (default 64)\n"
            "  -n, --n-gen N           generated tokens (default 32)\n"
            "  -t, --threads LIST      thread counts (default 1 and every allowed core)\n"
            "  --placements LIST       e.g. shard,replicate,interleave,node:0 (default: those\n"
            "                          three on a multi-node machine, shard on one node)\n"
            "  --io LIST               load modes (default dio,buffered,auto,mmap)\n"
            "  --llama-bench PATH      also run llama.cpp's llama-bench (pp and tg)\n"
            "  --bandwidth SPEC        for the predictions, as numalm plan --bandwidth\n"
            "  --efficiency F          for the predictions, as numalm plan --efficiency\n"
            "                          (default: the kernel probe's ratios)\n"
            "  --skip-load, --skip-run leave out the loads / the prompt and decode runs\n"
            "  --json                  the results as JSON on stdout too\n"
            "  --no-progress           no progress lines on a TTY\n"
            "  -h, --help              this help\n",
            DEFAULT_MODEL);
}

static int parse_placements(const char *v, nm_bench_opts *o, nm_error *err) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", v);
    o->n_placements = 0;
    for (char *save, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        nm_placement p;
        int node = 0;
        if (o->n_placements == 8)
            return nm_fail(err, "--placements: at most 8");
        if (nm_placement_parse(tok, &p, &node, err) < 0)
            return nm_fail_prefix(err, "--placements");
        o->placements[o->n_placements] = (numalm_placement)p;
        o->fixed_node[o->n_placements++] = node;
    }
    return o->n_placements ? 0 : nm_fail(err, "--placements: empty list");
}

static int parse_ios(const char *v, nm_bench_opts *o, nm_error *err) {
    char buf[128];
    snprintf(buf, sizeof buf, "%s", v);
    o->n_ios = 0;
    for (char *save, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        nm_io_mode m;
        if (o->n_ios == 4 || nm_io_parse(tok, &m, err) < 0)
            return o->n_ios == 4 ? nm_fail(err, "--io: at most 4 modes")
                                 : nm_fail_prefix(err, "--io");
        o->ios[o->n_ios++] = (numalm_io)m;
    }
    return o->n_ios ? 0 : nm_fail(err, "--io: empty list");
}

static int value(nm_bench_opts *o, const char *opt, const char *v, nm_error *err) {
    long n;
    if (!strcmp(opt, "--model"))
        o->model = v;
    else if (!strcmp(opt, "--out"))
        o->out_dir = v;
    else if (!strcmp(opt, "--llama-bench"))
        o->llama_bench = v;
    else if (!strcmp(opt, "--bandwidth"))
        o->bandwidth = v;
    else if (!strcmp(opt, "--efficiency")) {
        char *end;
        o->efficiency = strtod(v, &end);
        if (*end || !(o->efficiency > 0 && o->efficiency <= 1))
            return nm_fail(err, "--efficiency %s: expected a fraction in (0, 1]", v);
    } else if (!strcmp(opt, "--placements"))
        return parse_placements(v, o, err);
    else if (!strcmp(opt, "--io"))
        return parse_ios(v, o, err);
    else if (!strcmp(opt, "--threads")) {
        int c = nm_parse_int_list(v, o->threads, 16, 4096, err);
        if (c <= 0)
            return c < 0 ? nm_fail_prefix(err, "-t") : nm_fail(err, "-t: empty list");
        o->n_threads = c;
    } else {
        int max = !strcmp(opt, "--reps") ? NM_BENCH_MAX_REPS : 1 << 16;
        if (nm_parse_long(v, !strcmp(opt, "--reps") ? 1 : 0, max, &n, opt, err) < 0)
            return -1;
        *(!strcmp(opt, "--reps")       ? &o->reps
          : !strcmp(opt, "--n-prompt") ? &o->n_prompt
                                       : &o->n_gen) = (int)n;
    }
    return 0;
}

static int parse(int argc, char **argv, nm_bench_opts *o, nm_error *err) {
    static const struct {
        const char *name, *alias;
    } OPTS[] = {{"--model", "-m"},      {"--out", "-o"},       {"--reps", "-r"},
                {"--n-prompt", "-p"},   {"--n-gen", "-n"},     {"--threads", "-t"},
                {"--placements", NULL}, {"--io", NULL},        {"--llama-bench", NULL},
                {"--bandwidth", NULL},  {"--efficiency", NULL}};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json") || !strcmp(a, "--no-progress") || !strcmp(a, "--skip-load") ||
            !strcmp(a, "--skip-run")) {
            o->json |= !strcmp(a, "--json");
            o->progress &= strcmp(a, "--no-progress") != 0;
            o->skip_load |= !strcmp(a, "--skip-load");
            o->skip_run |= !strcmp(a, "--skip-run");
            continue;
        }
        int found = 0;
        for (size_t k = 0; k < sizeof OPTS / sizeof OPTS[0] && !found; k++) {
            const char *v;
            found = nm_cli_opt(argc, argv, &i, OPTS[k].name, OPTS[k].alias, &v, err);
            if (found < 0 || (found && value(o, OPTS[k].name, v, err) < 0))
                return -1;
        }
        if (!found)
            return nm_fail(err, "unknown argument '%s' (see numalm bench --help)", a);
    }
    if (o->llama_bench && access(o->llama_bench, X_OK) != 0)
        return nm_fail(err, "--llama-bench %s: not an executable file", o->llama_bench);
    return 0;
}

/* Thread counts and placements left at their defaults: 1 and all cores;
 * three placements where there is more than one node. */
static int defaults(nm_bench_opts *o, nm_error *err) {
    nm_topo *t = nm_topo_load(NULL, err);
    if (!t)
        return -1;
    if (!o->n_threads) {
        o->threads[o->n_threads++] = 1;
        if (t->n_cores > 1)
            o->threads[o->n_threads++] = t->n_cores;
    }
    if (!o->n_placements) {
        static const numalm_placement multi[] = {NUMALM_PLACE_SHARD, NUMALM_PLACE_REPLICATE,
                                                 NUMALM_PLACE_INTERLEAVE};
        int n = 0;
        for (int i = 0; i < t->n_nodes; i++)
            n += t->nodes[i].n_cores > 0;
        o->n_placements = n > 1 ? 3 : 1;
        memcpy(o->placements, multi, sizeof multi);
    }
    nm_topo_free(t);
    return 0;
}

/* The demo model, as `numalm mkmodel PATH --preset 1b --type q8_0` writes it. */
static int make_default_model(const char *path, nm_error *err) {
    struct stat st;
    if (stat(path, &st) == 0)
        return 0;
    fprintf(stderr,
            "numalm bench: writing the demo model: numalm mkmodel %s --preset 1b "
            "--type q8_0\n",
            path);
    nm_mkmodel_opts o = {.type = NM_TYPE_Q8_0, .seed = NM_MKMODEL_DEFAULT_SEED};
    if (nm_cli_progress_wanted())
        o.progress = nm_cli_progress;
    if (nm_mkmodel_preset("1b", &o.shape, err) || nm_mkmodel_write(path, &o, NULL, err))
        return nm_fail_prefix(err, "writing the demo model");
    return 0;
}

static void progress(nm_bench *b, const char *what) {
    b->steps_done++;
    if (b->o.progress)
        fprintf(stderr, "\r\033[K[%3d/%d] %s", b->steps_done, b->steps, what);
}

/* Leaves out the placements whose runs would not fit the nodes' memory
 * (replicate of a model larger than a node, say), with a note naming each
 * node's bytes, so that the bench measures the others instead of stopping
 * at the first such run; an error when none fits. Checked with the most
 * threads (the most scratch). */
static int keep_placements_that_fit(nm_bench *b, nm_error *err) {
    nm_bench_opts *o = &b->o;
    int threads = 0, kept = 0;
    for (int t = 0; t < o->n_threads; t++)
        threads = o->threads[t] > threads ? o->threads[t] : threads;
    for (int p = 0; p < o->n_placements; p++) {
        nm_error why = {{0}};
        int fits = nm_bench_fits(b, o->placements[p], o->fixed_node[p], threads, &why);
        if (fits < 0)
            return nm_fail(err, "%s", why.msg);
        if (fits) {
            o->placements[kept] = o->placements[p];
            o->fixed_node[kept++] = o->fixed_node[p];
        } else if (kept == 0 && p == o->n_placements - 1) {
            return nm_fail(err, "%s", why.msg);
        } else {
            nm_bench_note(b, "left out: %.650s", why.msg);
        }
    }
    o->n_placements = kept;
    return 0;
}

static int run_all(nm_bench *b, nm_error *err) {
    const nm_bench_opts *o = &b->o;
    if (!o->skip_run && keep_placements_that_fit(b, err) != 0)
        return -1;
    int per_rep = (o->skip_load ? 0 : 2 * o->n_ios) +
                  (o->skip_run ? 0 : o->n_threads * (o->n_placements + !!o->llama_bench));
    b->steps = o->reps * per_rep + (o->skip_run ? 0 : o->n_threads * o->n_placements);
    char what[160];
    for (int r = 0; r < o->reps; r++) {
        for (int cold = 1; !o->skip_load && cold >= 0; cold--)
            for (int i = 0; i < o->n_ios; i++) {
                snprintf(what, sizeof what, "load %s %s, repetition %d", numalm_io_name(o->ios[i]),
                         cold ? "cold" : "warm", r + 1);
                progress(b, what);
                if (nm_bench_load(b, o->ios[i], cold, err) != 0)
                    return nm_fail_prefix(err, "%s", what);
            }
        for (int t = 0; !o->skip_run && t < o->n_threads; t++) {
            for (int p = 0; p < o->n_placements; p++) {
                snprintf(what, sizeof what, "run %s, %d threads, repetition %d",
                         numalm_placement_name(o->placements[p]), o->threads[t], r + 1);
                progress(b, what);
                if (nm_bench_model(b, o->placements[p], o->fixed_node[p], o->threads[t], err))
                    return nm_fail_prefix(err, "%s", what);
            }
            if (o->llama_bench) {
                snprintf(what, sizeof what, "llama-bench, %d threads, repetition %d", o->threads[t],
                         r + 1);
                progress(b, what);
                nm_error e = {{0}};
                /* llama.cpp's failure is a result to report, not ours */
                if (nm_bench_llama(b, o->threads[t], &e) != 0)
                    nm_bench_note(b, "%.120s: %.500s", what, e.msg);
            }
        }
    }
    /* the predictions (they measure the bandwidth when no other source
     * gives it), once per plan */
    for (int t = 0; !o->skip_run && t < o->n_threads; t++)
        for (int p = 0; p < o->n_placements; p++) {
            snprintf(what, sizeof what, "predict %s, %d threads",
                     numalm_placement_name(o->placements[p]), o->threads[t]);
            progress(b, what);
            if (nm_bench_predict(b, o->placements[p], o->fixed_node[p], o->threads[t], err))
                return nm_fail_prefix(err, "%s", what);
        }
    if (o->progress)
        fprintf(stderr, "\r\033[K");
    return 0;
}

int cmd_bench(int argc, char **argv) {
    if (nm_cli_help_asked(argc, argv)) {
        usage(stdout);
        return 0;
    }
    nm_bench b = {.o = {.model = DEFAULT_MODEL,
                        .out_dir = "bench-report",
                        .reps = 3,
                        .n_prompt = 64,
                        .n_gen = 32,
                        .ios = {NUMALM_IO_DIO, NUMALM_IO_BUFFERED, NUMALM_IO_AUTO, NUMALM_IO_MMAP},
                        .n_ios = 4,
                        .progress = isatty(STDERR_FILENO) != 0}};
    size_t k = (size_t)snprintf(b.o.argv_line, sizeof b.o.argv_line, "numalm");
    for (int i = 0; i < argc && k < sizeof b.o.argv_line; i++)
        k += (size_t)snprintf(b.o.argv_line + k, sizeof b.o.argv_line - k, " %s", argv[i]);
    nm_error err = {{0}};
    if (parse(argc, argv, &b.o, &err) < 0) {
        fprintf(stderr, "numalm bench: %s\n", err.msg);
        return 2;
    }
    int rc = 1;
    if ((b.o.model != (const char *)DEFAULT_MODEL || make_default_model(b.o.model, &err) == 0) &&
        defaults(&b.o, &err) == 0) {
        nm_bench_now(b.started, sizeof b.started);
        nm_bench_uptime(b.uptime_before, sizeof b.uptime_before);
        double t0 = nm_now();
        if (run_all(&b, &err) == 0) {
            b.seconds = nm_now() - t0;
            nm_bench_uptime(b.uptime_after, sizeof b.uptime_after);
            rc = nm_bench_write(&b, b.o.json ? stdout : NULL, &err) == 0 ? 0 : 1;
        }
    }
    if (rc)
        fprintf(stderr, "%snumalm bench: %s\n", b.o.progress ? "\r\033[K" : "", err.msg);
    else
        fprintf(stderr, "numalm bench: wrote %s/report.md, its plots and results.json in %.0f s\n",
                b.o.out_dir, b.seconds);
    free(b.cases);
    return rc;
}
