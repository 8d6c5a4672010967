/* Node-local arenas. The policy (mbind) is set on the mapping before any
 * page exists, so every page is allocated under it no matter which thread
 * faults it in; prefaulting from a thread pinned to the node also keeps the
 * kernel's own bookkeeping local and makes the cost visible at load time
 * rather than in the first token. */
#include "arena.h"

#include "common/util.h"

#include <errno.h>
#include <numa.h>
#include <numaif.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

static uint64_t page_size(void) {
    long ps = sysconf(_SC_PAGESIZE);
    return ps > 0 ? (uint64_t)ps : 4096;
}

/* A "Key: value" number from /proc/meminfo (kB for sizes); def if absent. */
static uint64_t meminfo_value(const char *key, uint64_t def) {
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f)) {
        unsigned long long v;
        if (!strncmp(line, key, n) && line[n] == ':' && sscanf(line + n + 1, "%llu", &v) == 1) {
            def = v;
            break;
        }
    }
    if (f)
        fclose(f);
    return def;
}

/* len bytes of anonymous memory at an address == phase mod
 * NM_ARENA_PHASE_ALIGN: over-reserve, then unmap the slack on both sides
 * (nothing is touched yet, so this costs no memory). */
static void *map_phased(uint64_t len, uint64_t phase) {
    const uint64_t al = NM_ARENA_PHASE_ALIGN;
    uint8_t *raw = mmap(NULL, len + al, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        return MAP_FAILED;
    /* the first address >= raw that is == phase mod al: b - raw < al, so
     * there is always slack after the arena */
    uint8_t *b = (uint8_t *)(nm_align_up((uintptr_t)raw - phase % al, al) + phase % al);
    if (b > raw)
        munmap(raw, (size_t)(b - raw));
    munmap(b + len, (size_t)(raw + al - b));
    return b;
}

static int map_memory(nm_arena *a, uint64_t size, const nm_arena_opts *o, uint64_t phase,
                      nm_error *err) {
    if (o && o->hugepages) {
        uint64_t hps = meminfo_value("Hugepagesize", 2048) * 1024;
        uint64_t len = nm_align_up(size, hps);
        void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB,
                       -1, 0);
        if (p != MAP_FAILED) {
            a->base = p;
            a->mapped = len;
            a->huge = true;
            return 0;
        }
        /* the pool is shared: the advice is what is there plus this arena */
        snprintf(a->note, sizeof a->note,
                 "no huge pages reserved for %llu MiB (%s): using normal pages; reserve "
                 "them with: echo %llu > /proc/sys/vm/nr_hugepages",
                 (unsigned long long)(len >> 20), strerror(errno),
                 (unsigned long long)(meminfo_value("HugePages_Total", 0) + len / hps));
    }
    uint64_t len = nm_align_up(size, page_size());
    void *p = map_phased(len, phase);
    if (p == MAP_FAILED)
        return nm_fail(err, "mmap of %llu bytes for an arena failed: %s", (unsigned long long)len,
                       strerror(errno));
    a->base = p;
    a->mapped = len;
    /* Transparent huge pages cut TLB misses on the weight scans; the kernel
     * may refuse (THP "never"), which only costs speed. */
    (void)madvise(p, len, MADV_HUGEPAGE);
    return 0;
}

static int bind_memory(nm_arena *a, nm_error *err) {
    int max_node = numa_max_possible_node();
    struct bitmask *bm = numa_bitmask_alloc((unsigned)max_node + 1);
    if (!bm)
        return nm_fail(err, "out of memory for a node mask");
    int mode = a->node >= 0 ? MPOL_BIND : MPOL_INTERLEAVE;
    char nodes[256] = "";
    if (a->node >= 0) {
        if (a->node > max_node) {
            numa_bitmask_free(bm);
            return nm_fail(err, "arena: node %d does not exist (highest possible %d)", a->node,
                           max_node);
        }
        numa_bitmask_setbit(bm, (unsigned)a->node);
        snprintf(nodes, sizeof nodes, "%d", a->node);
    }
    for (int i = 0; a->node < 0 && i < a->n_interleave; i++) {
        if (a->interleave_nodes[i] < 0 || a->interleave_nodes[i] > max_node) {
            numa_bitmask_free(bm);
            return nm_fail(err, "arena: interleave node %d does not exist (highest possible %d)",
                           a->interleave_nodes[i], max_node);
        }
        numa_bitmask_setbit(bm, (unsigned)a->interleave_nodes[i]);
        size_t len = strlen(nodes);
        snprintf(nodes + len, sizeof nodes - len, "%s%d", i ? "," : "", a->interleave_nodes[i]);
    }
    long rc = mbind(a->base, a->mapped, mode, bm->maskp, bm->size + 1, 0);
    int e = errno;
    numa_bitmask_free(bm);
    if (rc != 0)
        return nm_fail(err, "mbind(%s, nodes %s) of a %llu-byte arena failed: %s%s",
                       mode == MPOL_BIND ? "MPOL_BIND" : "MPOL_INTERLEAVE", nodes,
                       (unsigned long long)a->mapped, strerror(e),
                       e == EINVAL ? " (node offline or outside this process's cpuset?)" : "");
    return 0;
}

/* mlock failures are nearly always RLIMIT_MEMLOCK: say which limit, its
 * value and what is needed, since that is what the user has to change. */
static int lock_memory(nm_arena *a, nm_error *err) {
    if (mlock(a->base, a->mapped) == 0) {
        a->locked = true;
        return 0;
    }
    int e = errno;
    struct rlimit rl;
    if ((e == EPERM || e == ENOMEM) && getrlimit(RLIMIT_MEMLOCK, &rl) == 0 &&
        rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < a->mapped) {
        return nm_fail(err,
                       "--mlock: cannot lock %llu KiB (%s): RLIMIT_MEMLOCK is too "
                       "small: `ulimit -l` is %llu KiB, at least %llu KiB is needed "
                       "for this arena. Raise it (ulimit -l unlimited, memlock in "
                       "/etc/security/limits.conf, LimitMEMLOCK= for systemd, "
                       "--ulimit memlock=-1 for docker) or run without --mlock",
                       (unsigned long long)(a->mapped >> 10), strerror(e),
                       (unsigned long long)(rl.rlim_cur >> 10),
                       (unsigned long long)((a->mapped + 1023) >> 10));
    }
    return nm_fail(err, "--mlock: cannot lock %llu KiB on node %d: %s%s",
                   (unsigned long long)(a->mapped >> 10), a->node, strerror(e),
                   e == ENOMEM ? " (not enough free memory on the node)" : "");
}

int nm_arena_create(nm_arena *a, uint64_t size, int node, const int *nodes, int n_nodes,
                    const nm_arena_opts *opts, nm_error *err) {
    return nm_arena_create_phased(a, size, node, nodes, n_nodes, opts, 0, err);
}

int nm_arena_create_phased(nm_arena *a, uint64_t size, int node, const int *nodes, int n_nodes,
                           const nm_arena_opts *opts, uint64_t phase, nm_error *err) {
    memset(a, 0, sizeof *a);
    a->size = size;
    a->node = node;
    if (node < 0) {
        if (n_nodes <= 0 || n_nodes > (int)(sizeof a->interleave_nodes / sizeof(int)) || !nodes)
            return nm_fail(err, "arena: interleave needs 1 to 64 nodes, got %d", n_nodes);
        a->n_interleave = n_nodes;
        memcpy(a->interleave_nodes, nodes, sizeof(int) * (size_t)n_nodes);
    }
    if (size == 0)
        return 0;
    if (map_memory(a, size, opts, phase, err))
        return -1;
    if (bind_memory(a, err) || (opts && opts->mlock && lock_memory(a, err))) {
        nm_arena_destroy(a);
        return -1;
    }
    return 0;
}

void nm_arena_prefault(nm_arena *a, uint64_t offset, uint64_t len) {
    if (!a->base || offset >= a->mapped)
        return;
    if (len > a->mapped - offset)
        len = a->mapped - offset;
    uint64_t ps = page_size();
    uint64_t start = nm_align_down(offset, ps), end = nm_align_up(offset + len, ps);
    char *base = a->base;
    if (madvise(base + start, end - start, MADV_POPULATE_WRITE) == 0)
        return;
    /* Older kernels: a read-write of each page's first byte faults it in
     * writable without changing what a reader may already have put there. */
    for (uint64_t off = start; off < end; off += ps) {
        volatile char *c = base + off;
        *c = *c;
    }
}

void nm_arena_destroy(nm_arena *a) {
    if (a->base && a->mapped)
        munmap(a->base, a->mapped);
    a->base = NULL;
    a->mapped = 0;
}

#define QUERY_BATCH 4096

int nm_pages_on_node(const void *base, uint64_t len, int expected, uint64_t max_samples,
                     double *pct, uint64_t *per_node, int max_node, nm_error *err) {
    uint64_t ps = page_size();
    uintptr_t start = nm_align_down((uintptr_t)base, ps);
    uint64_t pages = (nm_align_up((uintptr_t)base + len, ps) - start) / ps;
    uint64_t samples = max_samples && pages > max_samples ? max_samples : pages;
    if (per_node)
        memset(per_node, 0, sizeof(uint64_t) * (size_t)(max_node > 0 ? max_node : 0));
    void *addr[QUERY_BATCH];
    int status[QUERY_BATCH];
    uint64_t hits = 0;
    for (uint64_t done = 0; done < samples;) {
        unsigned long n =
            samples - done < QUERY_BATCH ? (unsigned long)(samples - done) : QUERY_BATCH;
        for (unsigned long i = 0; i < n; i++) {
            /* even sample: page floor(s * pages / samples) */
            uint64_t page = (uint64_t)((unsigned __int128)(done + i) * pages / samples);
            addr[i] = (void *)(start + page * ps);
        }
        if (numa_move_pages(0, n, addr, NULL, status, 0) != 0)
            return nm_fail(err, "move_pages query of %lu pages at %p failed: %s", n, addr[0],
                           strerror(errno));
        for (unsigned long i = 0; i < n; i++) {
            int s = status[i]; /* node, or -errno (-ENOENT: not faulted in) */
            if (s >= 0 && per_node && s < max_node)
                per_node[s]++;
            hits += expected >= 0 ? s == expected : s >= 0;
        }
        done += n;
    }
    if (pct)
        *pct = samples ? 100.0 * (double)hits / (double)samples : 100.0;
    return 0;
}
