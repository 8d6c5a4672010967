/* membw: the machine's memory read bandwidth, the ceiling of a memory-bound
 * decode step. N pinned threads each allocate, first-touch and then sum
 * their own slice of a large buffer (so on a NUMA machine each slice lives
 * on its reader's node), several passes; the best pass is reported.
 *
 * --populate times what a load into fresh memory pays before any byte is
 * read: each thread faults its share of new anonymous memory in with
 * MADV_POPULATE_WRITE (4 KiB pages unless --thp, as numalm's arenas on a
 * VM whose balloon returns freed memory: docs/loading.md), a fresh mapping
 * every pass; bench/bench_load.sh sets it beside fio and numalm's cold load.
 *
 * --file PATH sums the page cache of a file instead (mapped, read in first):
 * the very pages a decode of that model reads when it maps them (numalm
 * --io auto/mmap, llama.cpp's mmap). On a virtual machine the bandwidth a
 * fresh anonymous buffer gets depends on where the host put it (here one
 * process read 32 GB/s, the next 47), so a ratio against the same pages is
 * the steadier figure.
 *
 *   membw [-t THREADS] [-s SIZE] [-p PASSES] [--file PATH | --populate [--thp]] [--json]
 *   defaults: all CPUs this process may run on, 1G, 5 passes */
#include "common/error.h"
#include "common/json.h"
#include "common/util.h"
#include "runtime/kernels.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_THREADS 1024
#define MAX_PASSES 100

typedef struct worker {
    int index, cpu;
    size_t bytes;
    const uint64_t *file_slice; /* --file: this thread's share, else NULL */
    pthread_barrier_t *barrier;
    int passes;
    double seconds[MAX_PASSES];
    uint64_t sink;
    int failed;
} worker;

static void pin_to(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static void *run_worker(void *arg) {
    worker *w = arg;
    pin_to(w->cpu);
    const uint64_t *buf = w->file_slice;
    if (!buf) {
        uint64_t *own =
            mmap(NULL, w->bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        w->failed = own == MAP_FAILED;
        if (!w->failed) /* first touch from the reading thread places the pages */
            memset(own, w->index + 1, w->bytes);
        buf = own;
    } else { /* an untimed pass: the mapping's page tables, any page not yet cached */
        w->sink += nm_read_sum(buf, w->bytes);
    }
    pthread_barrier_wait(w->barrier);
    for (int p = 0; p < w->passes; p++) {
        pthread_barrier_wait(w->barrier);
        double t0 = nm_now();
        if (!w->failed)
            w->sink += nm_read_sum(buf, w->bytes);
        w->seconds[p] = nm_now() - t0;
    }
    if (!w->failed && !w->file_slice)
        munmap((void *)buf, w->bytes);
    return NULL;
}

/* The whole file, mapped read-only and read into the page cache before any
 * pass is timed. */
static int map_file(const char *path, const char **map, uint64_t *size) {
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        fprintf(stderr, "membw: %s: cannot open: %s\n", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    void *p = st.st_size > 0
                  ? mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0)
                  : MAP_FAILED;
    close(fd);
    if (p == MAP_FAILED) {
        fprintf(stderr, "membw: %s: cannot map %lld bytes: %s\n", path, (long long)st.st_size,
                strerror(errno));
        return -1;
    }
    *map = p;
    *size = (uint64_t)st.st_size;
    return 0;
}

static void usage(void) {
    fprintf(stderr, "usage: membw [-t THREADS] [-s SIZE] [-p PASSES] [--file PATH | --populate "
                    "[--thp]] [--json]\n");
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

typedef struct populater {
    int cpu;
    size_t bytes;
    bool thp;
    pthread_barrier_t *barrier;
    double seconds;
    int failed;
} populater;

static void *run_populate(void *arg) {
    populater *w = arg;
    pin_to(w->cpu);
    void *p = mmap(NULL, w->bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    w->failed = p == MAP_FAILED;
    if (!w->failed)
        (void)madvise(p, w->bytes, w->thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
    pthread_barrier_wait(w->barrier);
    double t0 = nm_now();
    if (!w->failed && madvise(p, w->bytes, MADV_POPULATE_WRITE) != 0)
        w->failed = 2;
    w->seconds = nm_now() - t0;
    if (p != MAP_FAILED)
        munmap(p, w->bytes);
    return NULL;
}

/* One pass: every thread populates its share at once; the pass's time is
 * its slowest thread's. -1 when a thread could not map or populate. */
static double populate_pass(const int *cpus, int ncpu, long threads, uint64_t size, bool thp) {
    populater ws[MAX_THREADS];
    pthread_t tids[MAX_THREADS];
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, (unsigned)threads);
    size_t share = (size_t)(size / (uint64_t)threads) / 4096 * 4096;
    for (long i = 0; i < threads; i++) {
        ws[i] = (populater){cpus[i % ncpu], share, thp, &barrier, 0, 0};
        if (pthread_create(&tids[i], NULL, run_populate, &ws[i]) != 0) {
            /* the started ones wait at the barrier for this one */
            fprintf(stderr, "membw: cannot start thread %ld\n", i);
            exit(1);
        }
    }
    double slowest = 0;
    int failed = 0;
    for (long i = 0; i < threads; i++) {
        pthread_join(tids[i], NULL);
        failed |= ws[i].failed;
        slowest = ws[i].seconds > slowest ? ws[i].seconds : slowest;
    }
    pthread_barrier_destroy(&barrier);
    return failed ? -1 : slowest;
}

static int populate_main(const int *cpus, int ncpu, long threads, uint64_t size, long passes,
                         bool thp, int json) {
    double s[MAX_PASSES];
    for (long p = 0; p < passes; p++)
        if ((s[p] = populate_pass(cpus, ncpu, threads, size, thp)) < 0) {
            fprintf(stderr,
                    "membw: --populate: could not map or populate %llu bytes "
                    "(MADV_POPULATE_WRITE needs Linux 5.14)\n",
                    (unsigned long long)size);
            return 1;
        }
    double sorted[MAX_PASSES];
    memcpy(sorted, s, sizeof(double) * (size_t)passes);
    nm_sort_doubles(sorted, (size_t)passes);
    double median = sorted[passes / 2];
    if (json) {
        nm_json j;
        nm_json_init(&j, stdout);
        nm_json_obj_begin(&j);
        nm_json_kint(&j, "threads", threads);
        nm_json_kuint(&j, "bytes", size);
        nm_json_kbool(&j, "thp", thp);
        nm_json_kdouble(&j, "median_seconds", median);
        nm_json_kdouble(&j, "median_gbps", (double)size / median / 1e9);
        nm_json_key(&j, "passes_seconds");
        nm_json_arr_begin(&j);
        for (long p = 0; p < passes; p++)
            nm_json_double(&j, s[p]);
        nm_json_arr_end(&j);
        nm_json_obj_end(&j);
        nm_json_finish(&j);
    } else {
        printf("membw --populate: %ld threads, %.2f GiB of %s pages: median %.3f s (%.2f GB/s)\n",
               threads, (double)size / (1 << 30), thp ? "huge" : "4 KiB", median,
               (double)size / median / 1e9);
    }
    return 0;
}

int main(int argc, char **argv) {
    static int cpus[MAX_THREADS];
    int ncpu = nm_allowed_cpus(cpus, MAX_THREADS);
    long threads = ncpu > 0 ? ncpu : 1, passes = 5;
    uint64_t size = 1ull << 30;
    int json = 0;
    bool populate = false, thp = false;
    const char *file = NULL;
    nm_error err;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(a, "--json"))
            json = 1;
        else if (!strcmp(a, "--populate"))
            populate = true;
        else if (!strcmp(a, "--thp"))
            thp = true;
        else if (!strcmp(a, "-t") && v)
            bad = nm_parse_long(argv[++i], 1, MAX_THREADS, &threads, "-t", &err);
        else if (!strcmp(a, "-p") && v)
            bad = nm_parse_long(argv[++i], 1, MAX_PASSES, &passes, "-p", &err);
        else if (!strcmp(a, "--file") && v)
            file = argv[++i];
        else if (!strcmp(a, "-s") && v)
            bad = nm_parse_size(argv[++i], &size, &err);
        else {
            usage();
            return 2;
        }
        if (bad) {
            fprintf(stderr, "membw: %s\n", err.msg);
            return 2;
        }
    }
    if (ncpu < 1) {
        fprintf(stderr, "membw: cannot read this process's CPU affinity\n");
        return 1;
    }
    if (populate)
        return populate_main(cpus, ncpu, threads, size, passes, thp, json);
    const char *map = NULL;
    if (file && map_file(file, &map, &size) < 0)
        return 1;
    if (size < (uint64_t)threads * 4096) {
        fprintf(stderr, "membw: -s %llu is too small for %ld threads\n", (unsigned long long)size,
                threads);
        return 2;
    }
    static worker ws[MAX_THREADS];
    pthread_t tids[MAX_THREADS];
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, (unsigned)threads + 1);
    size_t slice = (size_t)(size / (uint64_t)threads) / 4096 * 4096;
    for (int i = 0; i < threads; i++) {
        ws[i] = (worker){.index = i,
                         .cpu = cpus[i % ncpu],
                         .bytes = slice,
                         .file_slice = map ? (const uint64_t *)(map + (size_t)i * slice) : NULL,
                         .barrier = &barrier,
                         .passes = (int)passes};
        if (pthread_create(&tids[i], NULL, run_worker, &ws[i]) != 0) {
            fprintf(stderr, "membw: cannot start thread %d\n", i);
            return 1;
        }
    }
    pthread_barrier_wait(&barrier); /* all slices allocated and touched */
    for (int p = 0; p < passes; p++)
        pthread_barrier_wait(&barrier);
    for (int i = 0; i < threads; i++)
        pthread_join(tids[i], NULL);
    double best = 0;
    double gbps[MAX_PASSES];
    for (int p = 0; p < passes; p++) {
        double slowest = 0;
        for (int i = 0; i < threads; i++) {
            if (ws[i].failed) {
                fprintf(stderr, "membw: thread %d could not map %zu bytes\n", i, slice);
                return 1;
            }
            if (ws[i].seconds[p] > slowest)
                slowest = ws[i].seconds[p];
        }
        gbps[p] = (double)slice * (double)threads / slowest / 1e9;
        if (gbps[p] > best)
            best = gbps[p];
    }
    if (json) {
        nm_json j;
        nm_json_init(&j, stdout);
        nm_json_obj_begin(&j);
        nm_json_kint(&j, "threads", threads);
        if (file)
            nm_json_kstr(&j, "file", file);
        nm_json_kuint(&j, "bytes", (uint64_t)slice * (uint64_t)threads);
        nm_json_kdouble(&j, "best_gbps", best);
        nm_json_key(&j, "passes_gbps");
        nm_json_arr_begin(&j);
        for (int p = 0; p < passes; p++)
            nm_json_double(&j, gbps[p]);
        nm_json_arr_end(&j);
        nm_json_obj_end(&j);
        nm_json_finish(&j);
    } else {
        printf("membw: %ld threads, %.2f GiB%s%s: ", threads,
               (double)slice * (double)threads / (1 << 30), file ? " of " : "", file ? file : "");
        for (int p = 0; p < passes; p++)
            printf("%s%.2f", p ? " " : "", gbps[p]);
        printf(" GB/s; best %.2f GB/s\n", best);
    }
    return 0;
}
