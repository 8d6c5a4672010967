/* numalm bench's output (bench.h): report.md with the machine, the exact
 * commands, tables of medians and spread, and SVG plots; results.json with
 * every run. */
#include "bench.h"

#include "common/json.h"
#include "common/util.h"
#include "numa/topo.h"
#include "svg.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

void nm_bench_stats(const nm_bench_case *c, double *median, double *lo, double *hi) {
    double v[NM_BENCH_MAX_REPS];
    memcpy(v, c->v, sizeof(double) * (size_t)c->n);
    nm_sort_doubles(v, (size_t)c->n);
    *median = c->n == 0 ? NAN : c->n % 2 == 1 ? v[c->n / 2] : (v[c->n / 2 - 1] + v[c->n / 2]) / 2;
    *lo = c->n ? v[0] : NAN;
    *hi = c->n ? v[c->n - 1] : NAN;
}

void nm_bench_now(char *buf, size_t n) {
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%d %H:%M UTC", &tm);
}

void nm_bench_uptime(char *buf, size_t n) {
    FILE *f = fopen("/proc/loadavg", "r");
    double a = 0, b = 0, c = 0;
    if (f && fscanf(f, "%lf %lf %lf", &a, &b, &c) == 3)
        snprintf(buf, n, "load average %.2f, %.2f, %.2f (1, 5, 15 min)", a, b, c);
    else
        snprintf(buf, n, "load average unknown");
    if (f)
        fclose(f);
}

/* ---- the machine ---- */

static void first_line_with(const char *path, const char *key, char *buf, size_t n) {
    FILE *f = fopen(path, "r");
    char line[512];
    buf[0] = '\0';
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, strlen(key))) {
            const char *v = strchr(line, ':');
            v = v ? v + 1 : line + strlen(key);
            while (*v == ' ' || *v == '\t')
                v++;
            snprintf(buf, n, "%s", v);
            buf[strcspn(buf, "\n")] = '\0';
            break;
        }
    if (f)
        fclose(f);
}

static void read_small(const char *path, char *buf, size_t n) {
    FILE *f = fopen(path, "r");
    buf[0] = '\0';
    if (f && fgets(buf, (int)n, f))
        buf[strcspn(buf, "\n")] = '\0';
    if (f)
        fclose(f);
}

/* The block device holding the model: name, rotational, model string. */
static void disk_of(const char *path, char *buf, size_t n) {
    struct stat st;
    char sys[128], link[256] = "", rot[16], model[128];
    if (stat(path, &st) != 0) {
        snprintf(buf, n, "unknown");
        return;
    }
    snprintf(sys, sizeof sys, "/sys/dev/block/%u:%u", major(st.st_dev), minor(st.st_dev));
    ssize_t l = readlink(sys, link, sizeof link - 1);
    link[l > 0 ? l : 0] = '\0';
    const char *name = strrchr(link, '/') ? strrchr(link, '/') + 1 : "unknown";
    char q[300];
    snprintf(q, sizeof q, "%s/queue/rotational", sys);
    read_small(q, rot, sizeof rot);
    if (!rot[0]) { /* a partition: the disk's queue is one level up */
        snprintf(q, sizeof q, "%s/../queue/rotational", sys);
        read_small(q, rot, sizeof rot);
    }
    snprintf(q, sizeof q, "%s/device/model", sys);
    read_small(q, model, sizeof model);
    snprintf(buf, n, "%s (%s%s%s)", name,
             !strcmp(rot, "0")   ? "not rotational"
             : !strcmp(rot, "1") ? "rotational"
                                 : "type unknown",
             model[0] ? ", " : "", model);
}

typedef struct machine {
    char cpu[256], kernel[256], disk[256], thp[128], topo[512], mem[64];
} machine;

static void describe(const nm_bench *b, machine *m) {
    first_line_with("/proc/cpuinfo", "model name", m->cpu, sizeof m->cpu);
    struct utsname u;
    if (uname(&u) == 0)
        snprintf(m->kernel, sizeof m->kernel, "%s %s %s", u.sysname, u.release, u.machine);
    disk_of(b->o.model, m->disk, sizeof m->disk);
    read_small("/sys/kernel/mm/transparent_hugepage/enabled", m->thp, sizeof m->thp);
    char kb[64];
    first_line_with("/proc/meminfo", "MemTotal", kb, sizeof kb);
    nm_fmt_bytes(strtoull(kb, NULL, 10) * 1024, m->mem, sizeof m->mem);
    nm_error err;
    nm_topo *t = nm_topo_load(NULL, &err);
    if (!t) {
        snprintf(m->topo, sizeof m->topo, "unknown (%.400s)", err.msg);
        return;
    }
    size_t k =
        (size_t)snprintf(m->topo, sizeof m->topo, "%d NUMA node%s, %d cores, %d PUs:", t->n_nodes,
                         t->n_nodes == 1 ? "" : "s", t->n_cores, t->n_pus);
    for (int i = 0; i < t->n_nodes && k < sizeof m->topo; i++) {
        char b1[32];
        k += (size_t)snprintf(m->topo + k, sizeof m->topo - k, "%s node %d: %d cores, %s",
                              i ? ";" : "", t->nodes[i].os_index, t->nodes[i].n_cores,
                              nm_fmt_bytes(t->nodes[i].sysfs_meminfo_bytes
                                               ? t->nodes[i].sysfs_meminfo_bytes
                                               : t->nodes[i].memory_bytes,
                                           b1, sizeof b1));
    }
    nm_topo_free(t);
}

static const char *kind_name(nm_bench_kind k) {
    static const char *names[] = {"load", "prompt", "decode", "predicted"};
    return names[k];
}

/* ---- tables and charts ---- */

/* Distinct groups and series of a kind, in the order they first came. */
static int distinct(const nm_bench *b, nm_bench_kind kind, bool groups, const char **out, int max) {
    int n = 0;
    for (int i = 0; i < b->n_cases; i++) {
        const nm_bench_case *c = &b->cases[i];
        const char *v = groups ? c->group : c->series;
        bool seen = false;
        for (int k = 0; k < n; k++)
            seen |= !strcmp(out[k], v);
        if (c->kind == kind && !seen && n < max)
            out[n++] = v;
    }
    return n;
}

static const nm_bench_case *find(const nm_bench *b, nm_bench_kind kind, const char *g,
                                 const char *s) {
    for (int i = 0; i < b->n_cases; i++)
        if (b->cases[i].kind == kind && !strcmp(b->cases[i].group, g) &&
            !strcmp(b->cases[i].series, s))
            return &b->cases[i];
    return NULL;
}

/* "1.23 (1.10-1.31)" or "-". */
static const char *cell(const nm_bench_case *c, char *buf, size_t n) {
    double m, lo, hi;
    if (!c || !c->n)
        return "-";
    nm_bench_stats(c, &m, &lo, &hi);
    char a[32], b[32], d[32];
    snprintf(buf, n, "%s (%s-%s)", nm_svg_num(m, a, sizeof a), nm_svg_num(lo, b, sizeof b),
             nm_svg_num(hi, d, sizeof d));
    return buf;
}

/* One chart of `kind` (groups x series), or of decode measured against
 * predicted when kind is NM_BENCH_PREDICTED. */
static int chart(const nm_bench *b, nm_bench_kind kind, const char *file, const char *title,
                 const char *ylabel, nm_error *err) {
    const char *groups[64], *series[16];
    int ng = distinct(b, kind, true, groups, 64), ns = distinct(b, kind, false, series, 16);
    if (!ng || !ns)
        return 0;
    char gnames[64][96];
    const char *pseries[2] = {"measured", "predicted"};
    const char *glist[64];
    if (kind == NM_BENCH_PREDICTED) { /* one group per (series, group) */
        int k = 0;
        for (int s = 0; s < ns; s++)
            for (int g = 0; g < ng && k < 64; g++, k++)
                snprintf(gnames[k], sizeof gnames[k], "%s, %s", series[s], groups[g]);
        for (int i = 0; i < k; i++)
            glist[i] = gnames[i];
        ng = k;
    }
    int nser = kind == NM_BENCH_PREDICTED ? 2 : ns;
    double *v = calloc((size_t)(ng * nser * 3), sizeof *v);
    if (!v)
        return nm_fail(err, "out of memory for a chart");
    double *med = v, *lo = v + ng * nser, *hi = v + 2 * ng * nser;
    for (int g = 0; g < ng; g++)
        for (int s = 0; s < nser; s++) {
            const nm_bench_case *c;
            if (kind == NM_BENCH_PREDICTED) {
                int gs = g / (ng / ns), gg = g % (ng / ns);
                c = find(b, s ? NM_BENCH_PREDICTED : NM_BENCH_DECODE, groups[gg], series[gs]);
            } else {
                c = find(b, kind, groups[g], series[s]);
            }
            int i = g * nser + s;
            if (c && c->n)
                nm_bench_stats(c, &med[i], &lo[i], &hi[i]);
            else
                med[i] = lo[i] = hi[i] = NAN;
        }
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", b->o.out_dir, file);
    FILE *f = fopen(path, "w");
    if (!f) {
        free(v);
        return nm_fail(err, "%s: %s", path, strerror(errno));
    }
    char caption[160];
    snprintf(caption, sizeof caption, "median of %d runs, whiskers min to max; %s", b->o.reps,
             b->started);
    nm_svg_chart c = {title,
                      ylabel,
                      ng,
                      nser,
                      kind == NM_BENCH_PREDICTED ? glist : groups,
                      kind == NM_BENCH_PREDICTED ? pseries : series,
                      med,
                      lo,
                      hi,
                      caption};
    nm_svg_bars(&c, f);
    free(v);
    return fclose(f) == 0 ? 0 : nm_fail(err, "%s: %s", path, strerror(errno));
}

static void table_loads(const nm_bench *b, FILE *md) {
    const char *groups[16], *series[4];
    int ng = distinct(b, NM_BENCH_LOAD, true, groups, 16);
    int ns = distinct(b, NM_BENCH_LOAD, false, series, 4);
    if (!ng)
        return;
    fprintf(md,
            "## Loads\n\nGB/s of weights into node memory (the loader's own time), median "
            "(min-max) of %d runs; cold: the model evicted from the page cache first "
            "(`--drop-file-cache`), warm: read just before.\n\n| io |",
            b->o.reps);
    for (int s = 0; s < ns; s++)
        fprintf(md, " %s GB/s |", series[s]);
    fprintf(md, "\n|---|");
    for (int s = 0; s < ns; s++)
        fprintf(md, "---:|");
    fprintf(md, "\n");
    for (int g = 0; g < ng; g++) {
        char buf[64];
        fprintf(md, "| %s |", groups[g]);
        for (int s = 0; s < ns; s++)
            fprintf(md, " %s |",
                    cell(find(b, NM_BENCH_LOAD, groups[g], series[s]), buf, sizeof buf));
        fprintf(md, "\n");
    }
    fprintf(md, "\n![loads](load.svg)\n\n");
}

static void table_runs(const nm_bench *b, FILE *md) {
    const char *groups[16], *series[16];
    int ng = distinct(b, NM_BENCH_DECODE, true, groups, 16);
    int ns = distinct(b, NM_BENCH_DECODE, false, series, 16);
    if (!ng)
        return;
    fprintf(md,
            "## Prompt and decode\n\ntok/s, median (min-max) of %d runs: prompt = %d tokens in "
            "one evaluation, decode = %d single-token evaluations from position 0 (llama-bench's "
            "pp%d and tg%d); predicted = `numalm plan --predict` for the same plan "
            "(docs/prediction.md).\n\n"
            "| threads | run | prompt tok/s | decode tok/s | predicted decode | measured / "
            "predicted |\n|---|---|---:|---:|---:|---:|\n",
            b->o.reps, b->o.n_prompt, b->o.n_gen, b->o.n_prompt, b->o.n_gen);
    for (int g = 0; g < ng; g++)
        for (int s = 0; s < ns; s++) {
            const nm_bench_case *d = find(b, NM_BENCH_DECODE, groups[g], series[s]);
            const nm_bench_case *p = find(b, NM_BENCH_PREDICTED, groups[g], series[s]);
            if (!d)
                continue;
            char b1[64], b2[64], b3[64], ratio[32] = "-";
            double dm, pm, lo, hi;
            nm_bench_stats(d, &dm, &lo, &hi);
            if (p && p->n) {
                nm_bench_stats(p, &pm, &lo, &hi);
                snprintf(ratio, sizeof ratio, "%.2f", dm / pm);
            }
            fprintf(md, "| %s | %s | %s | %s | %s | %s |\n", groups[g], series[s],
                    cell(find(b, NM_BENCH_PROMPT, groups[g], series[s]), b1, sizeof b1),
                    cell(d, b2, sizeof b2), cell(p, b3, sizeof b3), ratio);
        }
    fprintf(md, "\n![decode](decode.svg)\n\n![prompt](prompt.svg)\n\n");
    for (int i = 0; i < b->n_cases; i++)
        if (b->cases[i].kind == NM_BENCH_PREDICTED && b->cases[i].note[0]) {
            fprintf(md, "![predicted against measured decode](predicted.svg)\n\nPredictions: ");
            for (int k = i; k < b->n_cases; k++)
                if (b->cases[k].kind == NM_BENCH_PREDICTED)
                    fprintf(md, "%s, %s: %s. ", b->cases[k].series, b->cases[k].group,
                            b->cases[k].note);
            fprintf(md, "\n\n");
            break;
        }
}

static void commands(const nm_bench *b, FILE *md) {
    fprintf(md,
            "## Commands\n\nThis report: `%s`\n\nEach case does what this command does "
            "(the bench calls the library in one process, alternating the cases):\n\n",
            b->o.argv_line);
    for (int i = 0; i < b->n_cases; i++)
        if (b->cases[i].command[0])
            fprintf(md, "- %s, %s, %s: `%s`\n", kind_name(b->cases[i].kind), b->cases[i].group,
                    b->cases[i].series, b->cases[i].command);
    fprintf(md, "\n");
}

static int write_md(const nm_bench *b, const machine *m, nm_error *err) {
    char path[1200], b1[32];
    snprintf(path, sizeof path, "%s/report.md", b->o.out_dir);
    FILE *md = fopen(path, "w");
    if (!md)
        return nm_fail(err, "%s: %s", path, strerror(errno));
    struct stat st;
    uint64_t size = stat(b->o.model, &st) == 0 ? (uint64_t)st.st_size : 0;
    fprintf(md,
            "# numalm bench\n\n%s, numalm %s, %.0f s. %d repetitions of every case, the cases "
            "alternating in each.\n\n"
            "- machine: %s; %s; memory %s\n- kernel: %s; transparent huge pages: %s\n"
            "- disk holding the model: %s\n- load before: %s\n- load after: %s\n"
            "- model: %s (%s)\n\n",
            b->started, numalm_version(), b->seconds, b->o.reps, m->cpu, m->topo, m->mem, m->kernel,
            m->thp, m->disk, b->uptime_before, b->uptime_after, b->o.model,
            nm_fmt_bytes(size, b1, sizeof b1));
    for (int i = 0; i < b->n_notes; i++)
        fprintf(md, "%s- %s\n%s", i ? "" : "Notes:\n\n", b->notes[i],
                i == b->n_notes - 1 ? "\n" : "");
    table_loads(b, md);
    table_runs(b, md);
    commands(b, md);
    return fclose(md) == 0 ? 0 : nm_fail(err, "%s: %s", path, strerror(errno));
}

static void write_json(const nm_bench *b, const machine *m, FILE *out) {
    nm_json j;
    nm_json_init(&j, out);
    nm_json_obj_begin(&j);
    nm_json_kstr(&j, "started", b->started);
    nm_json_kstr(&j, "numalm", numalm_version());
    nm_json_kstr(&j, "command", b->o.argv_line);
    nm_json_kstr(&j, "model", b->o.model);
    nm_json_kint(&j, "reps", b->o.reps);
    nm_json_kint(&j, "n_prompt", b->o.n_prompt);
    nm_json_kint(&j, "n_gen", b->o.n_gen);
    nm_json_kdouble(&j, "seconds", b->seconds);
    nm_json_key(&j, "machine");
    nm_json_obj_begin(&j);
    nm_json_kstr(&j, "cpu", m->cpu);
    nm_json_kstr(&j, "topology", m->topo);
    nm_json_kstr(&j, "memory", m->mem);
    nm_json_kstr(&j, "kernel", m->kernel);
    nm_json_kstr(&j, "thp", m->thp);
    nm_json_kstr(&j, "disk", m->disk);
    nm_json_kstr(&j, "load_before", b->uptime_before);
    nm_json_kstr(&j, "load_after", b->uptime_after);
    nm_json_obj_end(&j);
    nm_json_key(&j, "cases");
    nm_json_arr_begin(&j);
    for (int i = 0; i < b->n_cases; i++) {
        const nm_bench_case *c = &b->cases[i];
        double med, lo, hi;
        nm_bench_stats(c, &med, &lo, &hi);
        nm_json_obj_begin(&j);
        nm_json_kstr(&j, "kind", kind_name(c->kind));
        nm_json_kstr(&j, "group", c->group);
        nm_json_kstr(&j, "series", c->series);
        nm_json_kstr(&j, "unit", c->kind == NM_BENCH_LOAD ? "GB/s" : "tok/s");
        nm_json_kdouble(&j, "median", med);
        nm_json_kdouble(&j, "min", lo);
        nm_json_kdouble(&j, "max", hi);
        nm_json_key(&j, "values");
        nm_json_arr_begin(&j);
        for (int k = 0; k < c->n; k++)
            nm_json_double(&j, c->v[k]);
        nm_json_arr_end(&j);
        nm_json_kstr(&j, "command", c->command);
        if (c->note[0])
            nm_json_kstr(&j, "note", c->note);
        nm_json_obj_end(&j);
    }
    nm_json_arr_end(&j);
    nm_json_key(&j, "notes");
    nm_json_arr_begin(&j);
    for (int i = 0; i < b->n_notes; i++)
        nm_json_str(&j, b->notes[i]);
    nm_json_arr_end(&j);
    nm_json_obj_end(&j);
    nm_json_finish(&j);
}

int nm_bench_write(const nm_bench *b, FILE *json, nm_error *err) {
    if (mkdir(b->o.out_dir, 0755) != 0 && errno != EEXIST)
        return nm_fail(err, "--out %s: %s", b->o.out_dir, strerror(errno));
    machine m;
    describe(b, &m);
    if (chart(b, NM_BENCH_LOAD, "load.svg", "Loads: GB/s into node memory", "GB/s", err) ||
        chart(b, NM_BENCH_DECODE, "decode.svg", "Decode: tok/s", "tok/s", err) ||
        chart(b, NM_BENCH_PROMPT, "prompt.svg", "Prompt: tok/s", "tok/s", err) ||
        chart(b, NM_BENCH_PREDICTED, "predicted.svg", "Decode: measured and predicted", "tok/s",
              err) ||
        write_md(b, &m, err))
        return -1;
    char path[1200];
    snprintf(path, sizeof path, "%s/results.json", b->o.out_dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return nm_fail(err, "%s: %s", path, strerror(errno));
    write_json(b, &m, f);
    if (fclose(f) != 0)
        return nm_fail(err, "%s: %s", path, strerror(errno));
    if (json)
        write_json(b, &m, json);
    return 0;
}
