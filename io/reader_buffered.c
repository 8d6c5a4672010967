/* Buffered reads (pread through the page cache) by node-pinned threads, and
 * the helpers every reader shares. */
#include "reader.h"

#include "common/util.h"

#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096u
/* pread size: big enough to keep syscall overhead negligible, small enough
 * that the progress bar and the first-touch stay close to the copy. */
#define BUFFERED_PIECE (4u << 20)

void nm_read_fallback(nm_read_ctx *c, const char *fmt, ...) {
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&c->lock);
    bool seen = false;
    for (int i = 0; i < c->n_fallbacks; i++)
        seen |= strcmp(c->fallbacks[i], line) == 0;
    if (!seen && c->n_fallbacks < 8)
        memcpy(c->fallbacks[c->n_fallbacks++], line, sizeof line);
    pthread_mutex_unlock(&c->lock);
}

void nm_reader_sample_cpu(nm_reader_job *j) {
    int cpu = sched_getcpu();
    if (cpu < 0)
        return;
    for (int i = 0; i < j->n_cpus; i++)
        if (j->cpus[i] == cpu)
            return;
    if (j->n_cpus < NM_MAX_SEEN_CPUS)
        j->cpus[j->n_cpus++] = cpu;
}

/* Touch one byte per page without changing it: an atomic add of zero is a
 * write fault (so the page is really allocated) that cannot race with the
 * data another reader is writing into the same page. */
static void touch_pages(uint8_t *p, uint8_t *end) {
    for (; p < end; p += PAGE)
        __atomic_fetch_add(p, 0, __ATOMIC_RELAXED);
}

int nm_reader_populate(nm_reader_job *j, uint8_t *dst, uint64_t len) {
    uint8_t *start = (uint8_t *)nm_align_down((uintptr_t)dst, PAGE);
    uint8_t *end = (uint8_t *)nm_align_up((uintptr_t)dst + len, PAGE);
    if (j->populated_to > start)
        start = j->populated_to;
    if (end <= start)
        return 0;
    if (atomic_load(&j->ctx->failed)) {
        j->cancelled = true;
        return nm_fail(&j->err, "stopped: another reader failed");
    }
    if (nm_mem_guard_take_nodes(j->ctx->guard, j->mem_nodes, j->n_mem_nodes,
                                (uint64_t)(end - start), &j->err))
        return -1;
    /* MADV_POPULATE_WRITE (5.14+) faults without touching the contents;
     * older kernels do not know it (EINVAL): touch the pages instead. */
    if (madvise(start, (size_t)(end - start), MADV_POPULATE_WRITE) != 0) {
        if (errno != EINVAL)
            return nm_fail(&j->err, "populating %llu KiB of arena memory%s: %s",
                           (unsigned long long)((end - start) >> 10),
                           j->n_mem_nodes == 1 ? " bound to a node" : "", strerror(errno));
        touch_pages(start, end);
    }
    j->populated_to = end;
    return 0;
}

int nm_read_truncated(const nm_read_ctx *c, const nm_read_op *op, uint64_t at, nm_error *err) {
    const char *name = "?";
    uint64_t toff = 0;
    if (op->tensor >= 0 && (uint64_t)op->tensor < c->g->n_tensors) {
        const nm_gguf_tensor *t = &c->g->tensors[op->tensor];
        name = t->name;
        toff = t->file_offset;
        /* name the tensor the failing byte really belongs to */
        for (uint64_t i = 0; i < c->g->n_tensors; i++) {
            const nm_gguf_tensor *u = &c->g->tensors[i];
            if (at >= u->file_offset && at < u->file_offset + u->nbytes) {
                name = u->name;
                toff = u->file_offset;
                break;
            }
        }
    }
    return nm_fail(err,
                   "%s: file ends early: tensor '%s' (data at offset %llu) "
                   "needs byte %llu, but the read stopped there (file "
                   "truncated or changed after its header was read; expected "
                   "%llu bytes)",
                   c->g->path, name, (unsigned long long)toff, (unsigned long long)at,
                   (unsigned long long)c->file_size);
}

int nm_read_range(nm_reader_job *j, const nm_read_op *op) {
    nm_read_ctx *c = j->ctx;
    uint64_t done = 0;
    while (done < op->nbytes) {
        uint64_t want = op->nbytes - done;
        if (want > BUFFERED_PIECE)
            want = BUFFERED_PIECE;
        if (nm_reader_populate(j, op->dst + done, want))
            return -1;
        ssize_t r = pread(c->fd, op->dst + done, want, (off_t)(op->file_offset + done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return nm_fail(&j->err, "%s: read of %llu bytes at offset %llu: %s", c->g->path,
                           (unsigned long long)want, (unsigned long long)(op->file_offset + done),
                           strerror(errno));
        if (r == 0)
            return nm_read_truncated(c, op, op->file_offset + done, &j->err);
        done += (uint64_t)r;
        if (c->progress)
            nm_progress_add(c->progress, (uint64_t)r);
        nm_reader_sample_cpu(j);
    }
    return 0;
}

int nm_read_buffered(nm_reader_job *j) {
    nm_reader_sample_cpu(j);
    for (size_t i = 0; i < j->n_ops; i++)
        if (nm_read_range(j, &j->ops[i]) != 0)
            return -1;
    return 0;
}

void nm_reader_finish(nm_reader_job *j, int rc) {
    if (rc)
        atomic_store(&j->ctx->failed, 1);
    pthread_mutex_lock(&j->ctx->lock);
    j->state = rc == 0 ? 1 : -1;
    pthread_cond_broadcast(&j->ctx->job_done);
    pthread_mutex_unlock(&j->ctx->lock);
}

int nm_read_copy(nm_reader_job *j) {
    nm_read_ctx *c = j->ctx;
    nm_reader_sample_cpu(j);
    pthread_mutex_lock(&c->lock);
    while (j->src->state == 0)
        pthread_cond_wait(&c->job_done, &c->lock);
    int ok = j->src->state > 0;
    pthread_mutex_unlock(&c->lock);
    if (!ok)
        return nm_fail(&j->err, "replica copy: the reader of its source failed");
    for (size_t i = 0; i < j->n_ops; i++) {
        const nm_read_op *op = &j->ops[i];
        for (uint64_t done = 0; done < op->nbytes; done += BUFFERED_PIECE) {
            uint64_t len = op->nbytes - done;
            if (len > BUFFERED_PIECE)
                len = BUFFERED_PIECE;
            if (nm_reader_populate(j, op->dst + done, len))
                return -1;
            memcpy(op->dst + done, op->dst + done + j->src_delta, len);
            if (c->progress)
                nm_progress_add(c->progress, len);
            nm_reader_sample_cpu(j);
        }
    }
    return 0;
}
