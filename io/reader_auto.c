/* Cache-aware reading: what the page cache already holds is copied by
 * node-local threads (at memory speed), only the rest goes to the disk with
 * O_DIRECT (which would otherwise read cached data from the device again).
 * The loader runs both lists at the same time on each node. */
#include "reader.h"

#include "common/util.h"
#include "numa/arena.h"

#include <errno.h>
#include <numa.h>
#include <numaif.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef __NR_cachestat
#define __NR_cachestat 451
#endif

/* Linux 6.5 uapi, declared here so older headers build. */
struct nm_cachestat_range {
    uint64_t off;
    uint64_t len;
};
struct nm_cachestat {
    uint64_t nr_cache;
    uint64_t nr_dirty;
    uint64_t nr_writeback;
    uint64_t nr_evicted;
    uint64_t nr_recently_evicted;
};

/* Pages of [off, off+len): a mapping + mincore, for kernels before 6.5. */
static int64_t mincore_bytes(int fd, uint64_t off, uint64_t len) {
    long page = sysconf(_SC_PAGESIZE);
    uint64_t a0 = nm_align_down(off, (uint64_t)page);
    uint64_t maplen = len + (off - a0);
    void *map = mmap(NULL, maplen, PROT_READ, MAP_SHARED, fd, (off_t)a0);
    if (map == MAP_FAILED)
        return -1;
    size_t n = (maplen + (uint64_t)page - 1) / (uint64_t)page;
    unsigned char *vec = malloc(n);
    int64_t bytes = -1;
    if (vec && mincore(map, maplen, vec) == 0) {
        bytes = 0;
        for (size_t i = 0; i < n; i++)
            bytes += (vec[i] & 1) ? page : 0;
    }
    free(vec);
    munmap(map, maplen);
    return bytes;
}

int64_t nm_cached_bytes(int fd, uint64_t off, uint64_t len) {
    static _Atomic int no_cachestat;
    if (!no_cachestat) {
        struct nm_cachestat_range r = {off, len};
        struct nm_cachestat cs;
        memset(&cs, 0, sizeof cs);
        if (syscall(__NR_cachestat, fd, &r, &cs, 0) == 0)
            return (int64_t)(cs.nr_cache * (uint64_t)sysconf(_SC_PAGESIZE));
        if (errno == ENOSYS || errno == EPERM)
            no_cachestat = 1;
    }
    return mincore_bytes(fd, off, len);
}

typedef struct op_list {
    nm_read_op *v;
    size_t n, cap;
} op_list;

/* Appends, merging with the previous op when both are contiguous in the
 * file and in memory. */
static int push(op_list *l, const nm_read_op *op) {
    if (l->n) {
        nm_read_op *last = &l->v[l->n - 1];
        if (last->file_offset + last->nbytes == op->file_offset &&
            last->dst + last->nbytes == op->dst) {
            last->nbytes += op->nbytes;
            return 0;
        }
    }
    nm_read_op *v = nm_grow(l->v, &l->cap, l->n, 64, sizeof *v);
    if (!v)
        return -1;
    l->v = v;
    l->v[l->n++] = *op;
    return 0;
}

int nm_auto_split(const nm_read_ctx *c, const nm_read_op *ops, size_t n, nm_read_op **cached,
                  size_t *n_cached, nm_read_op **cold, size_t *n_cold, uint64_t *cached_bytes,
                  nm_error *err) {
    op_list hot = {0}, miss = {0};
    /* cut at chunk boundaries of the file so that the cold parts keep the
     * O_DIRECT alignment of the op they come from */
    uint64_t chunk = c->chunk_bytes ? c->chunk_bytes : (4u << 20);
    if (c->dio_align && chunk % c->dio_align)
        chunk = nm_align_up(chunk, c->dio_align);
    uint64_t hot_bytes = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t f = ops[i].file_offset, end = f + ops[i].nbytes;
        while (f < end) {
            uint64_t next = nm_align_down(f, chunk) + chunk;
            if (next > end)
                next = end;
            int64_t in = nm_cached_bytes(c->fd, f, next - f);
            if (in < 0) {
                free(hot.v);
                free(miss.v);
                return nm_fail(err, "%s: page-cache query at offset %llu: %s", c->g->path,
                               (unsigned long long)f, strerror(errno));
            }
            /* mostly cached: a buffered read finds the few missing pages
             * itself; mostly not: the disk at O_DIRECT speed */
            bool is_hot = (uint64_t)in * 2 >= next - f;
            nm_read_op part = {f, next - f, ops[i].dst + (f - ops[i].file_offset), ops[i].tensor};
            if (push(is_hot ? &hot : &miss, &part) != 0) {
                free(hot.v);
                free(miss.v);
                return nm_fail(err, "out of memory splitting the reads");
            }
            hot_bytes += is_hot ? next - f : 0;
            f = next;
        }
    }
    *cached = hot.v;
    *n_cached = hot.n;
    *cold = miss.v;
    *n_cold = miss.n;
    *cached_bytes = hot_bytes;
    return 0;
}

/* ---- zero copy ------------------------------------------------------- */

#define MAP_PAGE 4096u
#define QUERY_PAGES 1024

/* Puts anonymous memory bound to the node back over [p, p+len). */
static int unmap_back(uint8_t *p, uint64_t len, int node) {
    void *m = mmap(p, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (m == MAP_FAILED)
        return -1;
    unsigned long mask[16] = {0};
    if (node >= 0 && node < 1024) {
        mask[node / 64] = 1ul << (node % 64);
        (void)mbind(p, len, MPOL_BIND, mask, sizeof mask * 8, 0);
    }
    return 0;
}

/* Whether every page of [p, p+len) is on the node (move_pages query). */
static bool pages_on(const uint8_t *p, uint64_t len, int node) {
    if (numa_max_node() == 0)
        return true; /* one memory node: nowhere else to be */
    void *addr[QUERY_PAGES];
    int status[QUERY_PAGES];
    for (uint64_t off = 0; off < len;) {
        unsigned long n = 0;
        for (; n < QUERY_PAGES && off < len; n++, off += MAP_PAGE)
            addr[n] = (void *)(p + off);
        if (numa_move_pages(0, n, addr, NULL, status, 0) != 0)
            return false;
        for (unsigned long i = 0; i < n; i++)
            if (status[i] != node)
                return false;
    }
    return true;
}

/* 1 mapped, 0 not (copy it), -1 error (the range could not be restored). */
static int map_piece(nm_reader_job *j, uint8_t *p, uint64_t len, uint64_t foff) {
    nm_read_ctx *c = j->ctx;
    void *m = mmap(p, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, c->fd, (off_t)foff);
    if (m == MAP_FAILED)
        return unmap_back(p, len, j->node_os) == 0 ? 0 : -1;
    /* page tables now, so decoding never takes a fault */
    if (madvise(p, len, MADV_POPULATE_READ) == 0 && pages_on(p, len, j->node_os))
        return 1;
    return unmap_back(p, len, j->node_os) == 0 ? 0 : -1;
}

static int copy_part(nm_reader_job *j, const nm_read_op *op, uint8_t *from, uint8_t *to) {
    if (to <= from)
        return 0;
    nm_read_op part = {op->file_offset + (uint64_t)(from - op->dst), (uint64_t)(to - from), from,
                       op->tensor};
    return nm_read_range(j, &part);
}

static int map_op(nm_reader_job *j, const nm_read_op *op) {
    nm_read_ctx *c = j->ctx;
    uint8_t *p0 = (uint8_t *)nm_align_up((uintptr_t)op->dst, MAP_PAGE);
    uint8_t *p1 = (uint8_t *)nm_align_down((uintptr_t)op->dst + op->nbytes, MAP_PAGE);
    uint64_t f0 = op->file_offset + (uint64_t)(p0 - op->dst);
    if (p1 <= p0 || f0 % MAP_PAGE)
        return nm_read_range(j, op); /* no whole page, or not congruent */
    if (copy_part(j, op, op->dst, p0) != 0)
        return -1;
    /* Pieces end on file offsets that are multiples of 2 MiB, which the
     * arena's phase (nm_arena_create_phased) makes 2 MiB-aligned addresses
     * too: a piece is populated before the next one is mapped, so a 2 MiB
     * block cut by a piece boundary would get 4 KiB entries for good, not
     * one PMD entry for a 2 MiB page-cache folio (with 4 MiB pieces cut
     * anywhere, 14% of a warm F16 model lost its huge mappings). */
    uint64_t piece =
        c->chunk_bytes ? nm_align_up(c->chunk_bytes, NM_ARENA_PHASE_ALIGN) : (4u << 20);
    for (uint8_t *q = p0; q < p1;) {
        uint64_t f = f0 + (uint64_t)(q - p0), next = nm_align_down(f, piece) + piece;
        uint64_t len = (uint64_t)(p1 - q) < next - f ? (uint64_t)(p1 - q) : next - f;
        int r = map_piece(j, q, len, f);
        if (r < 0)
            return nm_fail(&j->err,
                           "auto: cannot restore the arena at %p after a failed "
                           "mapping: %s",
                           (void *)q, strerror(errno));
        if (r == 0 && copy_part(j, op, q, q + len) != 0)
            return -1;
        if (r == 1) {
            j->mapped += len;
            if (c->progress)
                nm_progress_add(c->progress, len);
        }
        nm_reader_sample_cpu(j);
        q += len;
    }
    return copy_part(j, op, p1, op->dst + op->nbytes);
}

int nm_read_map(nm_reader_job *j) {
    nm_reader_sample_cpu(j);
    for (size_t i = 0; i < j->n_ops; i++)
        if (map_op(j, &j->ops[i]) != 0)
            return -1;
    return 0;
}
