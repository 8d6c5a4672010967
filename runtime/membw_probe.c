/* Node-to-node read bandwidth (membw_probe.h): the same summing loop as
 * bench/membw and the read probe (nm_read_sum), on node-bound buffers. */
#include "membw_probe.h"

#include "common/util.h"
#include "kernels.h"
#include "numa/arena.h"
#include "numa/meminfo.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MIB (1ull << 20)

/* Readers wait here until all of them exist (go 1), or leave (go -1) when
 * one could not be started: the barriers below need every one of them. */
typedef struct gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int go;
} gate;

typedef struct reader {
    gate *gate;
    const nm_topo *topo;
    int cpu;
    const uint8_t *p;
    size_t len;
    pthread_barrier_t *start, *end;
    int passes;
    double seconds[16];
    uint64_t sink;
} reader;

static void *read_main(void *arg) {
    reader *r = arg;
    nm_error e;
    (void)nm_pin_thread_to_cpu(r->topo, r->cpu, &e); /* unpinned still measures */
    pthread_mutex_lock(&r->gate->lock);
    while (r->gate->go == 0)
        pthread_cond_wait(&r->gate->cond, &r->gate->lock);
    int go = r->gate->go;
    pthread_mutex_unlock(&r->gate->lock);
    for (int i = 0; go > 0 && i < r->passes; i++) {
        pthread_barrier_wait(r->start);
        double t0 = nm_now();
        r->sink += nm_read_sum(r->p, r->len);
        r->seconds[i] = nm_now() - t0;
        pthread_barrier_wait(r->end);
    }
    return NULL;
}

/* `threads` readers on cpus[] over buf; the median pass's GB/s (a pass
 * ends with its slowest reader). The median, not the best: on a shared
 * machine the best pass overstates what a minute of decoding gets. */
static double measure(const nm_topo *t, const int *cpus, int threads, const uint8_t *buf,
                      uint64_t bytes, int passes) {
    reader *rs = calloc((size_t)threads, sizeof *rs);
    pthread_t *th = calloc((size_t)threads, sizeof *th);
    if (!rs || !th) {
        free(rs);
        free(th);
        return 0; /* no rate: the caller reports it */
    }
    gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    pthread_barrier_t start, end;
    pthread_barrier_init(&start, NULL, (unsigned)threads);
    pthread_barrier_init(&end, NULL, (unsigned)threads);
    size_t share = (size_t)(bytes / (uint64_t)threads) / 4096 * 4096;
    int started = 0;
    for (int i = 0; i < threads; i++) {
        rs[i] =
            (reader){&g, t, cpus[i], buf + (size_t)i * share, share, &start, &end, passes, {0}, 0};
        if (pthread_create(&th[i], NULL, read_main, &rs[i]) == 0)
            started++;
        else
            break;
    }
    pthread_mutex_lock(&g.lock);
    g.go = started == threads ? 1 : -1;
    pthread_cond_broadcast(&g.cond);
    pthread_mutex_unlock(&g.lock);
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    double rates[16];
    for (int p = 0; p < passes && started == threads; p++) {
        double slowest = 0;
        for (int i = 0; i < threads; i++)
            slowest = rs[i].seconds[p] > slowest ? rs[i].seconds[p] : slowest;
        rates[p] = slowest > 0 ? (double)share * threads / slowest / 1e9 : 0;
    }
    double median = 0;
    if (started == threads) {
        nm_sort_doubles(rates, (size_t)passes);
        median = rates[passes / 2];
    }
    pthread_barrier_destroy(&start);
    pthread_barrier_destroy(&end);
    free(rs);
    free(th);
    return median;
}

uint64_t nm_probe_buffer_bytes(const nm_plan *p, const nm_topo *t) {
    uint64_t b = 256 * MIB;
    long llc = sysconf(_SC_LEVEL3_CACHE_SIZE);
    if (llc > 0 && 2 * (uint64_t)llc > b)
        b = 2 * (uint64_t)llc;
    nm_mem_state m;
    nm_mem_probe(t, &m);
    for (int i = 0; i < m.n_nodes; i++) {
        uint64_t a = nm_node_mem_avail(&m, i);
        for (int k = 0; k < p->n_nodes; k++)
            if (m.nodes[i].os_index == p->nodes[k].os_index && a / 8 < b)
                b = a / 8;
    }
    return b < 16 * MIB ? 16 * MIB : nm_align_down(b, MIB);
}

int nm_membw_probe(const nm_plan *p, const nm_topo *t, uint64_t bytes, int passes, double *gbs,
                   double *core_gbs, char *how, size_t how_len, nm_error *err) {
    int n = p->n_nodes;
    bytes = bytes ? bytes : nm_probe_buffer_bytes(p, t);
    passes = passes > 0 && passes <= 16 ? passes : 5;
    nm_arena *bufs = nm_calloc((size_t)n, sizeof *bufs, "the bandwidth probe's buffers", err);
    if (!bufs)
        return -1;
    int rc = 0;
    for (int j = 0; j < n && rc == 0; j++) {
        rc = nm_arena_create(&bufs[j], bytes, p->nodes[j].os_index, NULL, 0, NULL, err);
        if (rc == 0)
            memset(bufs[j].base, 1 + j, bytes); /* faulted in, bound to node j */
    }
    for (int k = 0; k < n && rc == 0; k++)
        for (int j = 0; j < n && rc == 0; j++) {
            gbs[k * n + j] =
                measure(t, p->nodes[k].cpus, p->nodes[k].n_threads, bufs[j].base, bytes, passes);
            if (!(gbs[k * n + j] > 0))
                rc = nm_fail(err,
                             "bandwidth probe: node %d's readers of node %d did not run "
                             "(no memory or threads for them)",
                             p->nodes[k].os_index, p->nodes[j].os_index);
        }
    if (rc == 0 &&
        !((*core_gbs = measure(t, p->nodes[0].cpus, 1, bufs[0].base, bytes, passes)) > 0))
        rc = nm_fail(err, "bandwidth probe: one reader on node %d did not run",
                     p->nodes[0].os_index);
    for (int j = 0; j < n; j++)
        nm_arena_destroy(&bufs[j]);
    free(bufs);
    if (rc == 0)
        snprintf(how, how_len,
                 "each node's workers summing a %llu MiB buffer bound to each node, median of "
                 "%d passes",
                 (unsigned long long)(bytes / MIB), passes);
    return rc;
}

int nm_membw_probe_file(const nm_plan *p, const nm_topo *t, const char *path, double *gbs,
                        double *core_gbs, char *how, size_t how_len) {
    if (p->n_nodes != 1 || !path)
        return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_size < (off_t)(16 * MIB)) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    size_t len = (size_t)st.st_size / 4096 * 4096, pages = len / 4096, resident = 0;
    uint8_t *base = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    unsigned char *vec = base != MAP_FAILED ? malloc(pages) : NULL;
    if (vec && mincore(base, len, vec) == 0)
        for (size_t i = 0; i < pages; i++)
            resident += vec[i] & 1;
    free(vec);
    int used = 0;
    /* every page cached: what decode maps with --io auto or mmap; else
     * reading the file would time the disk */
    if (base != MAP_FAILED && resident == pages) {
        (void)madvise(base, len, MADV_HUGEPAGE);
        (void)nm_read_sum(base, len); /* maps the pages in before timing */
        gbs[0] = measure(t, p->nodes[0].cpus, p->nodes[0].n_threads, base, len, 5);
        *core_gbs = measure(t, p->nodes[0].cpus, 1, base, len, 5);
        used = gbs[0] > 0 && *core_gbs > 0;
        if (used)
            snprintf(how, how_len,
                     "node %d's workers summing the model file's cached pages (what decode "
                     "maps with --io auto or mmap), %llu MiB, median of 5 passes",
                     p->nodes[0].os_index, (unsigned long long)(len / MIB));
    }
    if (base != MAP_FAILED)
        munmap(base, len);
    return used;
}
