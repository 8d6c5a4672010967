/* The measurements of numalm bench (bench.h): each function runs one
 * repetition of one case through the library, as the command would, and
 * adds the value to its case. */
#include "bench.h"

#include "api/predict.h"
#include "api/session_internal.h"
#include "common/rng.h"
#include "common/util.h"
#include "numa/fit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

nm_bench_case *nm_bench_case_get(nm_bench *b, nm_bench_kind kind, const char *group,
                                 const char *series) {
    for (int i = 0; i < b->n_cases; i++) {
        nm_bench_case *c = &b->cases[i];
        if (c->kind == kind && !strcmp(c->group, group) && !strcmp(c->series, series))
            return c;
    }
    nm_bench_case *v = nm_grow(b->cases, &b->cap_cases, (size_t)b->n_cases + 1, 16, sizeof *v);
    if (!v)
        return NULL;
    b->cases = v;
    nm_bench_case *c = &b->cases[b->n_cases++];
    memset(c, 0, sizeof *c);
    c->kind = kind;
    snprintf(c->group, sizeof c->group, "%s", group);
    snprintf(c->series, sizeof c->series, "%s", series);
    return c;
}

static int add_value(nm_bench *b, nm_bench_kind kind, const char *group, const char *series,
                     double v, nm_error *err) {
    nm_bench_case *c = nm_bench_case_get(b, kind, group, series);
    if (!c)
        return nm_fail(err, "out of memory for the bench results");
    if (c->n < NM_BENCH_MAX_REPS)
        c->v[c->n++] = v;
    return 0;
}

static void set_command(nm_bench *b, nm_bench_kind kind, const char *group, const char *series,
                        const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void set_command(nm_bench *b, nm_bench_kind kind, const char *group, const char *series,
                        const char *fmt, ...) {
    nm_bench_case *c = nm_bench_case_get(b, kind, group, series);
    if (!c || c->command[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->command, sizeof c->command, fmt, ap);
    va_end(ap);
}

static void base_options(const nm_bench *b, numalm_options *o, numalm_stage stage) {
    numalm_options_init(o);
    o->model_path = b->o.model;
    o->stage = stage;
}

/* ---- loads ---- */

/* The whole file through the page cache, so a warm load finds it there
 * (some VMs page unmapped cache out within a minute, e.g. the dev VM's
 * DAMON scheme in docs/loading.md: read it just before, every time). */
static int warm_file(const char *path, nm_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return nm_fail(err, "%s: %s", path, strerror(errno));
    static char buf[4 << 20];
    ssize_t r;
    while ((r = read(fd, buf, sizeof buf)) > 0)
        ;
    int e = errno;
    close(fd);
    return r < 0 ? nm_fail(err, "%s: read: %s", path, strerror(e)) : 0;
}

int nm_bench_load(nm_bench *b, numalm_io io, bool cold, nm_error *err) {
    numalm_options o;
    base_options(b, &o, NUMALM_STAGE_WEIGHTS);
    o.io = io;
    o.drop_file_cache = cold;
    if (!cold && warm_file(b->o.model, err) != 0)
        return -1;
    numalm_session *s = numalm_open(&o, err->msg, sizeof err->msg);
    if (!s)
        return -1;
    double gbs = s->loaded->seconds > 0 ? (double)s->loaded->bytes / s->loaded->seconds / 1e9 : 0;
    numalm_close(s);
    const char *mode = numalm_io_name(io), *state = cold ? "cold" : "warm";
    set_command(b, NM_BENCH_LOAD, mode, state, "%snumalm load -m %s --io %s%s",
                cold ? "" : "cat MODEL >/dev/null; ", b->o.model, mode,
                cold ? " --drop-file-cache" : "");
    return add_value(b, NM_BENCH_LOAD, mode, state, gbs, err);
}

/* ---- prompt and decode ---- */

void nm_bench_run_group(numalm_placement p, int fixed_node, int threads, char *buf, size_t n) {
    (void)p;
    (void)fixed_node;
    snprintf(buf, n, "%d thread%s", threads, threads == 1 ? "" : "s");
}

static void series_name(numalm_placement p, int fixed_node, char *buf, size_t n) {
    if (p == NUMALM_PLACE_NODE)
        snprintf(buf, n, "numalm node:%d", fixed_node);
    else
        snprintf(buf, n, "numalm %s", numalm_placement_name(p));
}

static void placement_arg(numalm_placement p, int fixed_node, char *buf, size_t n) {
    if (p == NUMALM_PLACE_NODE)
        snprintf(buf, n, "node:%d", fixed_node);
    else
        snprintf(buf, n, "%s", numalm_placement_name(p));
}

/* Token ids as llama-bench uses them: any from the vocabulary, seeded. */
static void random_tokens(int32_t *t, int n, int n_vocab) {
    nm_rng r;
    nm_rng_seed(&r, 1234, 0);
    for (int i = 0; i < n; i++)
        t[i] = 1 + (int32_t)(nm_rng_next(&r) % (uint64_t)(n_vocab > 1 ? n_vocab - 1 : 1));
}

/* Prompt: n_prompt tokens in one evaluation (logits of the last); decode:
 * n_gen single-token evaluations from position 0, as llama-bench's pp and
 * tg tests; one untimed token first (page tables, caches). */
static int eval_run(numalm_session *s, int n_prompt, int n_gen, double *pp, double *tg,
                    nm_error *err) {
    int n_vocab = numalm_n_vocab(s), n = n_prompt > n_gen ? n_prompt : n_gen;
    int32_t *tok = calloc((size_t)n, sizeof *tok);
    float *logits = calloc((size_t)n_vocab, sizeof *logits);
    int rc = tok && logits ? 0 : nm_fail(err, "out of memory for the benchmark's tokens");
    if (rc == 0) {
        random_tokens(tok, n, n_vocab);
        rc = numalm_eval(s, tok, 1, 0, 1, NULL);
    }
    double t0 = nm_now();
    if (rc == 0 && n_prompt > 0)
        rc = numalm_eval(s, tok, n_prompt, 0, n_prompt - 1, logits);
    double t1 = nm_now();
    for (int i = 0; rc == 0 && i < n_gen; i++)
        rc = numalm_eval(s, &tok[i], 1, i, 0, logits);
    double t2 = nm_now();
    if (rc != 0 && !err->msg[0])
        nm_fail(err, "%s", numalm_last_error(s));
    *pp = n_prompt > 0 && t1 > t0 ? n_prompt / (t1 - t0) : 0;
    *tg = n_gen > 0 && t2 > t1 ? n_gen / (t2 - t1) : 0;
    free(tok);
    free(logits);
    return rc;
}

/* The options of a prompt and decode run of placement p (stage MODEL) or
 * of its plan (stage PLAN: its fit table counts what the run will hold). */
static void run_options(const nm_bench *b, numalm_placement p, int fixed_node, int threads,
                        numalm_stage stage, numalm_options *o) {
    base_options(b, o, stage);
    o->placement = p;
    o->fixed_node = fixed_node;
    o->n_threads = threads;
    o->n_ctx = (b->o.n_prompt > b->o.n_gen ? b->o.n_prompt : b->o.n_gen) + 8;
}

int nm_bench_fits(const nm_bench *b, numalm_placement p, int fixed_node, int threads,
                  nm_error *why) {
    numalm_options o;
    run_options(b, p, fixed_node, threads, NUMALM_STAGE_PLAN, &o);
    numalm_session *s = numalm_open(&o, why->msg, sizeof why->msg);
    if (!s)
        return -1;
    int chosen, r = nm_fit_table_row(s->fit, s->plan->placement, s->plan->fixed_node);
    int fits = r >= 0 && s->fit->rows[r].fits;
    if (!fits)
        nm_fit_admit(s->fit, s->plan->placement, s->plan->fixed_node, &chosen, why);
    numalm_close(s);
    return fits;
}

void nm_bench_note(nm_bench *b, const char *fmt, ...) {
    char line[sizeof b->notes[0]];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%snumalm bench: %s\n", b->o.progress ? "\r\033[K" : "", line);
    if (b->n_notes < (int)(sizeof b->notes / sizeof b->notes[0]))
        memcpy(b->notes[b->n_notes++], line, sizeof line);
}

int nm_bench_model(nm_bench *b, numalm_placement p, int fixed_node, int threads, nm_error *err) {
    numalm_options o;
    run_options(b, p, fixed_node, threads, NUMALM_STAGE_MODEL, &o);
    if (warm_file(b->o.model, err) != 0)
        return -1;
    numalm_session *s = numalm_open(&o, err->msg, sizeof err->msg);
    if (!s)
        return -1;
    double pp = 0, tg = 0;
    int rc = eval_run(s, b->o.n_prompt, b->o.n_gen, &pp, &tg, err);
    numalm_close(s);
    if (rc != 0)
        return -1;
    char group[64], series[32], place[32];
    nm_bench_run_group(p, fixed_node, threads, group, sizeof group);
    series_name(p, fixed_node, series, sizeof series);
    placement_arg(p, fixed_node, place, sizeof place);
    set_command(b, NM_BENCH_PROMPT, group, series,
                "numalm run -m %s --placement %s -t %d -p <%d tokens> -n 0 --json", b->o.model,
                place, threads, b->o.n_prompt);
    set_command(b, NM_BENCH_DECODE, group, series,
                "numalm run -m %s --placement %s -t %d -n %d --json (decode_tok_s)", b->o.model,
                place, threads, b->o.n_gen);
    if (add_value(b, NM_BENCH_PROMPT, group, series, pp, err) != 0)
        return -1;
    return add_value(b, NM_BENCH_DECODE, group, series, tg, err);
}

int nm_bench_predict(nm_bench *b, numalm_placement p, int fixed_node, int threads, nm_error *err) {
    numalm_options o;
    run_options(b, p, fixed_node, threads, NUMALM_STAGE_PLAN, &o);
    numalm_session *s = numalm_open(&o, err->msg, sizeof err->msg);
    if (!s)
        return -1;
    nm_prediction *pr = nm_calloc(1, sizeof *pr, "the prediction", err);
    nm_traffic_opts to = {.n_gen = b->o.n_gen, .efficiency = b->o.efficiency};
    int rc = pr ? nm_session_predict(s, b->o.bandwidth, &to, pr) : -1;
    if (pr && rc != 0)
        nm_fail(err, "%s", numalm_last_error(s));
    char group[64], series[32], place[32];
    nm_bench_run_group(p, fixed_node, threads, group, sizeof group);
    series_name(p, fixed_node, series, sizeof series);
    placement_arg(p, fixed_node, place, sizeof place);
    if (rc == 0) {
        char eff[32] = "";
        if (b->o.efficiency > 0)
            snprintf(eff, sizeof eff, " --efficiency %g", b->o.efficiency);
        set_command(b, NM_BENCH_PREDICTED, group, series,
                    "numalm plan -m %s --placement %s -t %d --predict -n %d%s%s%s", b->o.model,
                    place, threads, b->o.n_gen, b->o.bandwidth ? " --bandwidth " : "",
                    b->o.bandwidth ? b->o.bandwidth : "", eff);
        nm_bench_case *c = nm_bench_case_get(b, NM_BENCH_PREDICTED, group, series);
        if (c)
            snprintf(c->note, sizeof c->note,
                     "bound by %.60s; node %d reads %.1f GB/s locally (%s)", pr->t[0].bottleneck,
                     pr->t[0].os_index[0], pr->bw.gbs[0][0], pr->bw.source[0][0]);
        rc = add_value(b, NM_BENCH_PREDICTED, group, series, pr->t[0].tok_s, err);
    }
    free(pr);
    numalm_close(s);
    return rc;
}

/* ---- llama-bench ---- */

/* 'text' for a shell, single-quoted. */
static void quote(const char *s, char *buf, size_t n) {
    size_t k = 0;
    if (k + 1 < n)
        buf[k++] = '\'';
    for (; *s && k + 5 < n; s++) {
        if (*s == '\'') {
            memcpy(buf + k, "'\\''", 4);
            k += 4;
        } else {
            buf[k++] = *s;
        }
    }
    if (k + 1 < n)
        buf[k++] = '\'';
    buf[k < n ? k : n - 1] = '\0';
}

int nm_bench_llama(nm_bench *b, int threads, nm_error *err) {
    char bin[600], model[600], cmd[1400];
    quote(b->o.llama_bench, bin, sizeof bin);
    quote(b->o.model, model, sizeof model);
    snprintf(cmd, sizeof cmd, "%s -m %s -t %d -p %d -n %d -r 1 -o json 2>/dev/null", bin, model,
             threads, b->o.n_prompt, b->o.n_gen);
    if (warm_file(b->o.model, err) != 0)
        return -1;
    FILE *f = popen(cmd, "r");
    if (!f)
        return nm_fail(err, "cannot run %s: %s", b->o.llama_bench, strerror(errno));
    json_error_t je;
    json_t *root = json_loadf(f, JSON_DISABLE_EOF_CHECK, &je);
    int status = pclose(f);
    if (!root || !json_is_array(root)) {
        json_decref(root);
        return nm_fail(err, "%s: no JSON array from llama-bench (exit status %d): %s", cmd, status,
                       je.text);
    }
    char group[64];
    nm_bench_run_group(NUMALM_PLACE_SHARD, 0, threads, group, sizeof group);
    int rc = 0;
    size_t i;
    json_t *e;
    json_array_foreach(root, i, e) {
        json_int_t np = json_integer_value(json_object_get(e, "n_prompt"));
        json_int_t ng = json_integer_value(json_object_get(e, "n_gen"));
        double ts = json_number_value(json_object_get(e, "avg_ts"));
        nm_bench_kind k = ng > 0 ? NM_BENCH_DECODE : np > 0 ? NM_BENCH_PROMPT : NM_BENCH_LOAD;
        if (k == NM_BENCH_LOAD || rc != 0)
            continue;
        set_command(b, k, group, "llama.cpp", "llama-bench -m %s -t %d -%c %d -r 1 -o json",
                    b->o.model, threads, k == NM_BENCH_DECODE ? 'n' : 'p',
                    k == NM_BENCH_DECODE ? b->o.n_gen : b->o.n_prompt);
        rc = add_value(b, k, group, "llama.cpp", ts, err);
    }
    json_decref(root);
    return rc;
}
