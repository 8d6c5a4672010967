/* O_DIRECT reads straight into the arenas, with io_uring keeping queue_depth
 * chunks in flight per reader (or plain preadv when io_uring is off).
 *
 * The plan keeps every arena offset congruent to its file offset modulo the
 * placement alignment, so after the first partial block of a range both the
 * file offset and the destination are block aligned: the middle of a range
 * needs no copy at all. Only a head and a tail shorter than a block go
 * through a small bounce buffer. */
#include "reader.h"

#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>

/* Bounce slots (NM_DIO_BOUNCE_BYTES): one per queue entry. Large enough
 * that small tensors (norms) go in one read with their neighbours' blocks. */

/* ---- probes ---------------------------------------------------------- */

static uint32_t sysfs_logical_block(dev_t dev) {
    char path[128];
    unsigned v = 0;
    /* a partition has no queue/ of its own: try it, then its parent disk */
    const char *fmts[] = {"/sys/dev/block/%u:%u/queue/logical_block_size",
                          "/sys/dev/block/%u:%u/../queue/logical_block_size"};
    for (int i = 0; i < 2 && !v; i++) {
        snprintf(path, sizeof path, fmts[i], major(dev), minor(dev));
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        if (fscanf(f, "%u", &v) != 1)
            v = 0;
        fclose(f);
    }
    return v;
}

int nm_dio_open(const char *path, uint32_t force_align, int *fd_direct, uint32_t *align,
                uint32_t *mem_align, char *why, size_t why_len) {
    int fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, why_len, "open(O_DIRECT) refused: %s", strerror(errno));
        return -1;
    }
    struct statx sx;
    uint32_t a = 0, m = 0;
    if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 && (sx.stx_mask & STATX_DIOALIGN)) {
        if (sx.stx_dio_offset_align == 0) {
            close(fd);
            snprintf(why, why_len,
                     "the filesystem reports no direct I/O "
                     "support (statx dio_offset_align 0)");
            return -1;
        }
        a = sx.stx_dio_offset_align;
        m = sx.stx_dio_mem_align;
    }
    if (!a) {
        /* statx did not say: the device's logical block size, then
         * st_blksize (usually the page size, always safe) */
        struct stat st;
        if (fstat(fd, &st) == 0) {
            a = sysfs_logical_block(st.st_dev);
            /* st_blksize is the preferred I/O size, not an alignment: 9p
             * says 512 KiB (its iounit). No block device behind the file
             * (network and FUSE filesystems): a page, which the probe
             * read checks. */
            if (!a && st.st_blksize > 0)
                a = (uint32_t)(st.st_blksize < 4096 ? st.st_blksize : 4096);
        }
        if (!a)
            a = 4096;
        m = a;
    }
    if (!m)
        m = a;
    /* Tests: pretend the filesystem wants a larger alignment (a multiple of
     * the real one, so the reads stay valid), as 9p once seemed to. */
    uint32_t v = force_align;
    if (v >= a && v >= m && v <= (1u << 20) && !(v & (v - 1)))
        a = v;
    if ((a & (a - 1)) || (m & (m - 1)) || a > (1u << 20)) {
        close(fd);
        snprintf(why, why_len, "unusable O_DIRECT alignment (offset %u, memory %u)", a, m);
        return -1;
    }
    *fd_direct = fd;
    *align = a;
    *mem_align = m;
    return 0;
}

int nm_dio_probe_read(int fd_direct, uint64_t file_size, uint32_t align, uint32_t mem_align,
                      char *why, size_t why_len) {
    if (file_size < align)
        return 0; /* nothing aligned to read; the readers will see */
    void *buf = NULL;
    if (posix_memalign(&buf, mem_align > align ? mem_align : align, align)) {
        snprintf(why, why_len, "out of memory for the O_DIRECT probe");
        return -1;
    }
    ssize_t r;
    do
        r = pread(fd_direct, buf, align, 0);
    while (r < 0 && errno == EINTR);
    int e = errno;
    free(buf);
    if (r < 0) {
        snprintf(why, why_len, "O_DIRECT refused at the first read: %s", strerror(e));
        return -1;
    }
    return 0;
}

static int uring_disabled_sysctl(void) {
    FILE *f = fopen("/proc/sys/kernel/io_uring_disabled", "r");
    int v = 0;
    if (f) {
        if (fscanf(f, "%d", &v) != 1)
            v = 0;
        fclose(f);
    }
    return v;
}

/* kernel.io_uring_disabled (6.6+): 2 refuses io_uring to everyone, so do
 * not try; 1 allows it to root and to members of kernel.io_uring_group, so
 * try, and name the sysctl when the kernel says no. */
int nm_uring_probe(char *why, size_t why_len) {
    int sys = uring_disabled_sysctl();
    if (sys >= 2) {
        snprintf(why, why_len,
                 "io_uring disabled for all processes (kernel.io_uring_disabled = %d)", sys);
        return -1;
    }
    struct io_uring ring;
    int r = io_uring_queue_init(4, &ring, 0);
    if (r < 0) {
        if (sys == 1)
            snprintf(why, why_len,
                     "io_uring unavailable (%s; kernel.io_uring_disabled = 1: only root "
                     "and kernel.io_uring_group may use it)",
                     strerror(-r));
        else
            snprintf(why, why_len, "io_uring unavailable (%s)", strerror(-r));
        return -1;
    }
    io_uring_queue_exit(&ring);
    return 0;
}

int nm_dio_setup(nm_read_ctx *c, char *why, size_t why_len, char *uring_why, size_t uring_len) {
    if (c->no_odirect)
        snprintf(why, why_len, "O_DIRECT turned off (option no_odirect)");
    if (c->no_odirect ||
        nm_dio_open(c->g->path, c->force_dio_align, &c->fd_direct, &c->dio_align, &c->dio_mem_align,
                    why, why_len) != 0 ||
        nm_dio_probe_read(c->fd_direct, c->file_size, c->dio_align, c->dio_mem_align, why,
                          why_len) != 0) {
        if (c->fd_direct >= 0)
            close(c->fd_direct);
        c->fd_direct = -1;
        c->dio_align = 0;
        return -1;
    }
    uring_why[0] = 0;
    if (c->no_uring)
        snprintf(uring_why, uring_len, "io_uring turned off (option no_uring)");
    c->use_uring = !c->no_uring && nm_uring_probe(uring_why, uring_len) == 0;
    return 0;
}

/* ---- pieces ---------------------------------------------------------- */

/* One read: either straight into the destination, or into a bounce slot
 * from which [copy_off, copy_off + copy_len) goes to copy_dst. */
typedef struct piece {
    uint64_t foff;
    uint32_t len;
    uint32_t done;
    uint8_t *buf;
    uint8_t *copy_dst; /* NULL: direct */
    uint32_t copy_off, copy_len;
    const nm_read_op *op;
} piece;

typedef struct piece_gen {
    const nm_read_op *ops;
    size_t n, i;
    uint64_t pos;
    uint32_t a; /* max(offset alignment, memory alignment) */
    uint64_t chunk;
    uint64_t bounce; /* slot size, at least 2 * a: see next_piece */
    bool stuck;      /* a piece would not have moved pos: a bug, not a loop */
} piece_gen;

/* Next piece of the op list; bounce is the slot to use if it needs one.
 * Returns false when everything has been handed out. Every piece moves
 * g->pos forward: a bounce window starts at most a - 1 bytes before the
 * wanted byte and is at least 2 * a long. (With a 512 KiB alignment, 9p's
 * st_blksize, and 256 KiB slots, a range starting 256 KiB past a block
 * boundary got zero-byte pieces forever: the NUMA VM hang.) */
static bool next_piece(piece_gen *g, uint8_t *bounce, piece *p) {
    while (g->i < g->n && g->pos >= g->ops[g->i].nbytes) {
        g->i++;
        g->pos = 0;
    }
    if (g->i >= g->n)
        return false;
    const nm_read_op *op = &g->ops[g->i];
    uint64_t f = op->file_offset + g->pos, r = op->nbytes - g->pos;
    uint8_t *d = op->dst + g->pos;
    /* g->a is the larger of the offset and memory alignments: a direct read
     * starts where both the file offset and the destination are aligned */
    uint64_t head = f % g->a;
    bool congruent = (uintptr_t)d % g->a == head;
    memset(p, 0, sizeof *p);
    p->op = op;
    if (head == 0 && congruent && r >= g->a) {
        uint64_t len = nm_align_down(r, g->a);
        p->foff = f;
        p->len = (uint32_t)(len < g->chunk ? len : g->chunk);
        p->buf = d;
        g->pos += p->len;
        return true;
    }
    uint64_t a0 = f - head, end = nm_align_up(f + r, g->a);
    if (end - a0 > g->bounce)
        /* congruent: bounce only up to the next block, then go direct */
        end = congruent ? a0 + g->a : a0 + g->bounce;
    p->foff = a0;
    p->len = (uint32_t)(end - a0);
    p->buf = bounce;
    p->copy_dst = d;
    p->copy_off = (uint32_t)head;
    p->copy_len = (uint32_t)((end - f) < r ? (end - f) : r);
    if (end <= f || p->copy_len == 0 || p->len > g->bounce) {
        g->stuck = true;
        return false;
    }
    g->pos += p->copy_len;
    return true;
}

/* The error for a piece generator that stopped without progress. */
static int stuck_error(nm_reader_job *j, const piece_gen *g) {
    const nm_read_op *op = &g->ops[g->i];
    const nm_gguf_tensor *t = op->tensor >= 0 && (uint64_t)op->tensor < j->ctx->g->n_tensors
                                  ? &j->ctx->g->tensors[op->tensor]
                                  : NULL;
    return nm_fail(&j->err,
                   "%s: O_DIRECT read of tensor '%s' at offset %llu cannot make progress "
                   "(alignment %u, bounce slot %llu bytes)",
                   j->ctx->g->path, t ? t->name : "?",
                   (unsigned long long)(op->file_offset + g->pos), g->a,
                   (unsigned long long)g->bounce);
}

/* Bytes of the piece that must be present (a bounce read may run past the
 * end of the file: that is fine as long as the wanted part is there). */
static uint32_t piece_needed(const piece *p) {
    return p->copy_dst ? p->copy_off + p->copy_len : p->len;
}

/* A completed read of res bytes: 1 = piece finished, 0 = resubmit the
 * rest, -1 = error (in j->err). */
static int piece_complete(nm_reader_job *j, piece *p, int64_t res) {
    nm_read_ctx *c = j->ctx;
    if (res < 0)
        return nm_fail(&j->err, "%s: O_DIRECT read of %u bytes at offset %llu: %s", c->g->path,
                       p->len - p->done, (unsigned long long)(p->foff + p->done),
                       strerror((int)-res));
    if (res == 0) {
        uint64_t at = p->foff + p->done;
        if (p->copy_dst && at < p->foff + p->copy_off)
            at = p->foff + p->copy_off;
        return nm_read_truncated(c, p->op, at, &j->err);
    }
    p->done += (uint32_t)res;
    if (p->done < piece_needed(p)) {
        /* O_DIRECT stops short of a block boundary only at the end of file */
        if (p->done % c->dio_align)
            return nm_read_truncated(c, p->op, p->foff + p->done, &j->err);
        return 0;
    }
    if (p->copy_dst)
        memcpy(p->copy_dst, p->buf + p->copy_off, p->copy_len);
    if (c->progress)
        nm_progress_add(c->progress, p->copy_dst ? p->copy_len : p->len);
    return 1;
}

static int piece_populate(nm_reader_job *j, const piece *p) {
    return p->copy_dst ? nm_reader_populate(j, p->copy_dst, p->copy_len)
                       : nm_reader_populate(j, p->buf, p->len);
}

/* ---- engines --------------------------------------------------------- */

typedef struct slot {
    piece p;
    uint8_t *bounce;
    bool busy;
} slot;

static void prep_read(struct io_uring *ring, int fd, slot *s) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    io_uring_prep_read(sqe, fd, s->p.buf + s->p.done, s->p.len - s->p.done, s->p.foff + s->p.done);
    io_uring_sqe_set_data(sqe, s);
}

/* 1 when EINVAL says the kernel refuses O_DIRECT for this request. */
static int run_uring(nm_reader_job *j, slot *slots, int qd, piece_gen *g, bool *einval) {
    nm_read_ctx *c = j->ctx;
    struct io_uring ring;
    int r = io_uring_queue_init((unsigned)qd, &ring, 0);
    if (r < 0)
        return nm_fail(&j->err, "io_uring_queue_init(%d): %s", qd, strerror(-r));
    int inflight = 0, rc = 0;
    bool more = true;
    while (rc == 0) {
        for (int s = 0; s < qd && more; s++) {
            if (slots[s].busy)
                continue;
            if (!(more = next_piece(g, slots[s].bounce, &slots[s].p)))
                break;
            if (piece_populate(j, &slots[s].p)) {
                rc = -1;
                more = false;
                break;
            }
            slots[s].busy = true;
            prep_read(&ring, c->fd_direct, &slots[s]);
            inflight++;
        }
        if (inflight == 0)
            break;
        struct io_uring_cqe *cqe;
        r = io_uring_submit_and_wait(&ring, 1);
        if (r < 0 && r != -EINTR) {
            rc = nm_fail(&j->err, "io_uring_submit: %s", strerror(-r));
            break;
        }
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&ring, head, cqe) {
            slot *s = io_uring_cqe_get_data(cqe);
            seen++;
            if (cqe->res == -EINVAL && rc == 0) {
                *einval = true;
                rc = -1;
            }
            int done = rc ? 1 : piece_complete(j, &s->p, cqe->res);
            if (done < 0)
                rc = -1;
            if (done == 0) {
                prep_read(&ring, c->fd_direct, s);
                continue;
            }
            s->busy = false;
            inflight--;
        }
        io_uring_cq_advance(&ring, seen);
        nm_reader_sample_cpu(j);
    }
    /* reap whatever is still in flight before the buffers go away */
    while (inflight > 0) {
        struct io_uring_cqe *cqe;
        if (io_uring_wait_cqe(&ring, &cqe) < 0)
            break;
        io_uring_cqe_seen(&ring, cqe);
        inflight--;
    }
    io_uring_queue_exit(&ring);
    return rc;
}

static int run_preadv(nm_reader_job *j, slot *s, piece_gen *g, bool *einval) {
    nm_read_ctx *c = j->ctx;
    while (next_piece(g, s->bounce, &s->p)) {
        if (piece_populate(j, &s->p))
            return -1;
        for (;;) {
            struct iovec iov = {s->p.buf + s->p.done, s->p.len - s->p.done};
            ssize_t r = preadv(c->fd_direct, &iov, 1, (off_t)(s->p.foff + s->p.done));
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0 && errno == EINVAL) {
                *einval = true;
                return -1;
            }
            int done = piece_complete(j, &s->p, r < 0 ? -errno : r);
            if (done < 0)
                return -1;
            if (done)
                break;
        }
        nm_reader_sample_cpu(j);
    }
    return 0;
}

int nm_read_dio(nm_reader_job *j) {
    nm_read_ctx *c = j->ctx;
    int qd = c->use_uring ? c->queue_depth : 1;
    uint32_t balign = c->dio_mem_align > c->dio_align ? c->dio_mem_align : c->dio_align;
    if (balign < 4096)
        balign = 4096;
    slot *slots = calloc((size_t)qd, sizeof *slots);
    void *bounce = NULL;
    piece_gen g = {.ops = j->ops, .n = j->n_ops, .chunk = c->chunk_bytes};
    g.a = c->dio_align > c->dio_mem_align ? c->dio_align : c->dio_mem_align;
    g.bounce = NM_DIO_BOUNCE_BYTES > 2 * (uint64_t)g.a ? NM_DIO_BOUNCE_BYTES : 2 * (uint64_t)g.a;
    if (!slots || posix_memalign(&bounce, balign, (size_t)qd * g.bounce)) {
        free(slots);
        return nm_fail(&j->err, "out of memory for %d O_DIRECT bounce buffers", qd);
    }
    for (int s = 0; s < qd; s++)
        slots[s].bounce = (uint8_t *)bounce + (size_t)s * g.bounce;
    if (g.chunk < g.a)
        g.chunk = g.a;
    g.chunk = nm_align_down(g.chunk, g.a);
    if (g.chunk > (1u << 30))
        g.chunk = 1u << 30;
    nm_reader_sample_cpu(j);
    bool einval = false;
    int rc =
        c->use_uring ? run_uring(j, slots, qd, &g, &einval) : run_preadv(j, slots, &g, &einval);
    if (rc == 0 && g.stuck)
        rc = stuck_error(j, &g);
    free(bounce);
    free(slots);
    if (rc != 0 && einval) {
        /* e.g. a filesystem that accepts the open but not the read */
        nm_read_fallback(c,
                         "O_DIRECT read refused (EINVAL) on %s: buffered "
                         "reads instead",
                         c->g->path);
        j->populated_to = NULL;
        j->kind = NM_JOB_BUFFERED;
        return nm_read_buffered(j);
    }
    return rc;
}
