/* The staging pipeline (upload.h): layout on the device, the staging arena,
 * the reader thread that feeds the slots, and --verify. */
#include "upload.h"

#include "common/progress.h"
#include "common/util.h"
#include "io/reader.h"
#include "numa/arena.h"
#include "runtime/device_math.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_SLOT (32u << 20)
#define DEFAULT_SLOTS 4
#define DEFAULT_QD 32
/* Tensors closer than this in the file share one region (the gap is
 * alignment padding: copying it costs less than another copy). */
#define REGION_GAP 4096
#define DEV_ALIGN 256
#define VERIFY_BUF (8u << 20)

/* A contiguous file range and where it goes on the device. */
typedef struct span {
    uint64_t f0, f1, dev_off;
    int tensor; /* first tensor in it, for messages */
} span;

typedef struct pipeline {
    nm_upload *u;
    const nm_upload_opts *o;
    nm_read_ctx ctx;
    nm_reader_job job;
    nm_arena staging;
    uint32_t align; /* reads start on multiples of this */
    span *pieces;
    int n_pieces;
    double *read_t; /* 2 per piece: read start, end */
    double *copy_t; /* 2 per piece: copy start, end (device stamps) */
    int rc;
    nm_error err;
    nm_progress prog;
    double t_first; /* the first read's start */
} pipeline;

static void note(nm_upload *u, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(nm_upload *u, const char *fmt, ...) {
    if (u->n_notes >= 4)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(u->notes[u->n_notes++], sizeof u->notes[0], fmt, ap);
    va_end(ap);
}

/* ---- layout ----------------------------------------------------------- */

static int cmp_offset(const void *a, const void *b, void *g) {
    const nm_gguf_tensor *t = ((const nm_gguf *)g)->tensors;
    uint64_t x = t[*(const int *)a].file_offset, y = t[*(const int *)b].file_offset;
    return x < y ? -1 : x > y;
}

/* Regions of wanted tensors, their device offsets, and each tensor's
 * device address relative to a zero base (fixed up after the alloc). */
static int layout(pipeline *p, const uint8_t *want, span **regions, int *n_regions, nm_error *err) {
    const nm_gguf *g = p->u->gguf;
    int *idx = malloc(((size_t)g->n_tensors + 1) * sizeof *idx);
    span *r = malloc(((size_t)g->n_tensors + 1) * sizeof *r);
    if (!idx || !r) {
        free(idx);
        free(r);
        return nm_fail(err, "out of memory for the upload list");
    }
    int n = 0, m = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (want[i] && g->tensors[i].nbytes)
            idx[n++] = (int)i;
    qsort_r(idx, (size_t)n, sizeof *idx, cmp_offset, (void *)g);
    uint64_t dev = 0;
    for (int k = 0; k < n; k++) {
        const nm_gguf_tensor *t = &g->tensors[idx[k]];
        if (m && t->file_offset <= r[m - 1].f1 + REGION_GAP) {
            if (t->file_offset + t->nbytes > r[m - 1].f1) {
                dev += t->file_offset + t->nbytes - r[m - 1].f1;
                r[m - 1].f1 = t->file_offset + t->nbytes;
            }
        } else {
            dev = nm_align_up(dev, DEV_ALIGN);
            r[m++] = (span){t->file_offset, t->file_offset + t->nbytes, dev, idx[k]};
            dev += t->nbytes;
        }
        p->u->tensor[idx[k]] =
            (const void *)(uintptr_t)(r[m - 1].dev_off + (t->file_offset - r[m - 1].f0));
    }
    p->u->n_uploaded = n;
    p->u->dev_bytes = nm_align_up(dev, DEV_ALIGN);
    free(idx);
    *regions = r;
    *n_regions = m;
    return 0;
}

/* Cuts the regions into pieces that fit a slot with their read rounded out
 * to the alignment; cuts fall on aligned file offsets. */
static int cut_pieces(pipeline *p, const span *r, int n, nm_error *err) {
    const uint64_t A = p->align, max = p->u->slot_bytes - 2 * A;
    int cap = 0;
    for (int i = 0; i < n; i++)
        cap += (int)((r[i].f1 - r[i].f0) / max) + 2;
    p->pieces = malloc((size_t)(cap ? cap : 1) * sizeof *p->pieces);
    if (!p->pieces)
        return nm_fail(err, "out of memory for the upload pieces");
    for (int i = 0; i < n; i++)
        for (uint64_t f = r[i].f0; f < r[i].f1;) {
            uint64_t end = r[i].f1;
            if (end - f > max)
                end = nm_align_down(f + max, A);
            p->pieces[p->n_pieces++] = (span){f, end, r[i].dev_off + (f - r[i].f0), r[i].tensor};
            f = end;
        }
    return 0;
}

/* ---- reading ---------------------------------------------------------- */

static int open_reads(pipeline *p, nm_error *err) {
    nm_read_ctx *c = &p->ctx;
    nm_upload *u = p->u;
    char why[256];
    c->g = u->gguf;
    c->fd = c->fd_direct = -1;
    c->file_size = u->gguf->file_size;
    c->chunk_bytes = 4u << 20;
    c->queue_depth = p->o->queue_depth > 0 ? p->o->queue_depth : DEFAULT_QD;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->job_done, NULL);
    c->fd = open(u->gguf->path, O_RDONLY | O_CLOEXEC);
    if (c->fd < 0)
        return nm_fail(err, "%s: %s", u->gguf->path, strerror(errno));
    p->align = 4096;
    if (p->o->buffered)
        return 0;
    char uring_why[256];
    if (nm_dio_setup(c, why, sizeof why, uring_why, sizeof uring_why) != 0) {
        note(u, "%s: %s -> buffered reads into the staging buffers", u->gguf->path, why);
        return 0;
    }
    u->direct = true;
    uint32_t a = c->dio_align > c->dio_mem_align ? c->dio_align : c->dio_mem_align;
    p->align = a > p->align ? a : p->align;
    u->uring = c->use_uring;
    if (!c->use_uring)
        note(u, "%s -> preadv with O_DIRECT", uring_why);
    return 0;
}

static void close_reads(pipeline *p) {
    nm_read_ctx *c = &p->ctx;
    for (int i = 0; i < c->n_fallbacks; i++)
        note(p->u, "%s", c->fallbacks[i]);
    if (c->fd_direct >= 0)
        close(c->fd_direct);
    if (c->fd >= 0)
        close(c->fd);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->job_done);
}

/* Piece k's file bytes into slot s; *data gets where its first byte is. */
static int read_piece(pipeline *p, int k, uint8_t *slot, uint8_t **data) {
    const span *pc = &p->pieces[k];
    uint64_t start = nm_align_down(pc->f0, p->align);
    uint64_t end = nm_align_up(pc->f1, p->align);
    if (end > p->ctx.file_size)
        end = p->ctx.file_size > pc->f1 ? p->ctx.file_size : pc->f1;
    nm_read_op op = {start, end - start, slot, pc->tensor};
    nm_reader_job *j = &p->job;
    j->ops = &op;
    j->n_ops = 1;
    j->bytes = op.nbytes;
    int rc = j->kind == NM_JOB_DIO ? nm_read_dio(j) : nm_read_buffered(j);
    j->ops = NULL;
    *data = slot + (pc->f0 - start);
    return rc;
}

/* ---- the pipeline ----------------------------------------------------- */

static int fail_at(pipeline *p, const nm_error *e) {
    if (p->rc == 0) {
        p->rc = -1;
        p->err = *e;
    }
    return -1;
}

static void run_pieces(pipeline *p) {
    nm_upload *u = p->u;
    nm_device *d = u->dev;
    nm_error e;
    for (int k = 0; k < p->n_pieces && p->rc == 0; k++) {
        int s = k % u->n_slots;
        uint8_t *slot = (uint8_t *)p->staging.base + (uint64_t)s * u->slot_bytes, *data;
        if (k >= u->n_slots) {
            double t = nm_now();
            int rc = d->ops->sync(d, s, &e);
            u->wait_s += nm_now() - t;
            if (rc != 0) {
                fail_at(p, &e);
                break;
            }
        }
        p->read_t[2 * k] = nm_now();
        if (read_piece(p, k, slot, &data) != 0) {
            fail_at(p, &p->job.err);
            break;
        }
        p->read_t[2 * k + 1] = nm_now();
        const span *pc = &p->pieces[k];
        if (d->ops->stamp(d, s, &p->copy_t[2 * k], &e) != 0 ||
            d->ops->to_device(d, s, (uint8_t *)u->base + pc->dev_off, data, pc->f1 - pc->f0, &e) !=
                0 ||
            d->ops->stamp(d, s, &p->copy_t[2 * k + 1], &e) != 0) {
            fail_at(p, &e);
            break;
        }
    }
    /* every stream drained before the staging memory may go */
    for (int s = 0; s < u->n_slots; s++)
        if (d->ops->sync(d, s, &e) != 0)
            fail_at(p, &e);
}

static void *pipeline_main(void *arg) {
    pipeline *p = arg;
    nm_upload *u = p->u;
    nm_error e;
    if (nm_pin_thread_to_node(p->o->topo, u->staging_node, &e) != 0)
        note(u, "staging reader runs unpinned: %s", e.msg);
    /* fault the staging pages in from the node (mbind already binds them) */
    nm_arena_prefault(&p->staging, 0, p->staging.size);
    p->job.populated_to = (uint8_t *)p->staging.base + p->staging.mapped;
    nm_reader_sample_cpu(&p->job);
    p->t_first = nm_now();
    run_pieces(p);
    u->seconds = nm_now() - p->t_first;
    return NULL;
}

/* ---- measurements ----------------------------------------------------- */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Intervals [t[2i], t[2i+1]) sorted by start, merged into a union in
 * place; returns how many remain. */
static int merge_spans(double *t, int n) {
    qsort(t, (size_t)n, 2 * sizeof *t, cmp_double);
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (m && t[2 * i] <= t[2 * m - 1]) {
            if (t[2 * i + 1] > t[2 * m - 1])
                t[2 * m - 1] = t[2 * i + 1];
        } else {
            t[2 * m] = t[2 * i];
            t[2 * m + 1] = t[2 * i + 1];
            m++;
        }
    }
    return m;
}

static double spans_length(const double *t, int n) {
    double s = 0;
    for (int i = 0; i < n; i++)
        s += t[2 * i + 1] - t[2 * i];
    return s;
}

/* Length of the intersection of two merged span lists. */
static double spans_overlap(const double *a, int na, const double *b, int nb) {
    double s = 0;
    for (int i = 0, j = 0; i < na && j < nb;) {
        double lo = a[2 * i] > b[2 * j] ? a[2 * i] : b[2 * j];
        double hi = a[2 * i + 1] < b[2 * j + 1] ? a[2 * i + 1] : b[2 * j + 1];
        if (hi > lo)
            s += hi - lo;
        if (a[2 * i + 1] < b[2 * j + 1])
            i++;
        else
            j++;
    }
    return s;
}

static void measure(pipeline *p) {
    nm_upload *u = p->u;
    u->n_pieces = p->n_pieces;
    for (int k = 0; k < p->n_pieces; k++)
        u->bytes += p->pieces[k].f1 - p->pieces[k].f0;
    u->read_s = spans_length(p->read_t, p->n_pieces); /* one reader: disjoint */
    int nr = merge_spans(p->read_t, p->n_pieces), nc = merge_spans(p->copy_t, p->n_pieces);
    u->copy_s = spans_length(p->copy_t, nc);
    u->overlap_s = spans_overlap(p->read_t, nr, p->copy_t, nc);
    for (int i = 0; i < p->job.n_cpus && u->n_reader_cpus < 32; i++)
        u->reader_cpus[u->n_reader_cpus++] = p->job.cpus[i];
    double pct;
    nm_error e;
    u->staging_placed_pct = -1;
    if (p->staging.base && nm_pages_on_node(p->staging.base, p->staging.size, u->staging_node, 256,
                                            &pct, NULL, 0, &e) == 0)
        u->staging_placed_pct = pct;
}

/* ---- verify ----------------------------------------------------------- */

static void note_mismatch(nm_upload *u, const char *name) {
    u->n_mismatches++;
    size_t used = strlen(u->mismatches);
    if (used + strlen(name) + 2 < sizeof u->mismatches)
        snprintf(u->mismatches + used, sizeof u->mismatches - used, "%s%s", used ? "," : "", name);
}

/* Every uploaded tensor hashed on the device against the same bytes read
 * again from the file with plain reads (a path independent of staging). */
static int verify(nm_upload *u, int fd, nm_error *err) {
    uint8_t *buf = malloc(VERIFY_BUF);
    if (!buf)
        return nm_fail(err, "out of memory for the verify buffer");
    nm_device *d = u->dev;
    for (int i = 0; i < u->n_tensors; i++) {
        if (!u->tensor[i])
            continue;
        const nm_gguf_tensor *t = &u->gguf->tensors[i];
        uint64_t sum = 0, dev_hash;
        for (uint64_t done = 0; done < t->nbytes;) {
            uint64_t want = t->nbytes - done < VERIFY_BUF ? t->nbytes - done : VERIFY_BUF;
            ssize_t r = pread(fd, buf, want, (off_t)(t->file_offset + done));
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0 || (uint64_t)r != want) {
                free(buf);
                return nm_fail(err, "%s: verify read of tensor '%s' at offset %llu: %s",
                               u->gguf->path, t->name, (unsigned long long)(t->file_offset + done),
                               r < 0 ? strerror(errno) : "short read");
            }
            sum = nm_dev_hash_add(sum, buf, (uint64_t)r, done / 8);
            done += (uint64_t)r;
        }
        if (d->ops->hash(d, 0, u->tensor[i], t->nbytes, &dev_hash, err) != 0) {
            free(buf);
            return nm_fail_prefix(err, "verify of tensor '%s' on the device", t->name);
        }
        if (dev_hash != nm_dev_hash_final(sum, t->nbytes))
            note_mismatch(u, t->name);
    }
    free(buf);
    u->verified = true;
    u->verify_ok = u->n_mismatches == 0;
    return 0;
}

/* ---- run -------------------------------------------------------------- */

static int choose_staging(nm_upload *u, const nm_upload_opts *o, nm_error *err) {
    if (!o->topo || o->topo->n_nodes == 0)
        return nm_fail(err, "upload: no topology of this machine to place the staging buffers");
    u->device_node_known = u->dev->node >= 0;
    int node = o->staging_node >= 0 ? o->staging_node : u->dev->node;
    if (node >= 0 && nm_topo_node_index(o->topo, node) < 0) {
        if (o->staging_node >= 0)
            return nm_fail(err, "staging node %d is not a node this process may use (allowed: %s)",
                           node, o->topo->allowed_nodeset);
        note(u, "the device's node %d is not allowed for this process: staging on node %d", node,
             o->topo->nodes[0].os_index);
        node = -1;
    }
    if (node < 0) {
        if (!u->device_node_known)
            note(u,
                 "the topology does not say which node the device hangs off: staging on "
                 "node %d",
                 o->topo->nodes[0].os_index);
        node = o->topo->nodes[0].os_index;
    }
    u->staging_node = node;
    return 0;
}

static int setup(pipeline *p, const uint8_t *want, nm_error *err) {
    nm_upload *u = p->u;
    const nm_upload_opts *o = p->o;
    span *regions = NULL;
    int n_regions = 0;
    u->n_slots = o->n_slots > 0 ? o->n_slots : DEFAULT_SLOTS;
    if (u->n_slots < 2 || u->n_slots > u->dev->n_streams)
        return nm_fail(err, "upload: %d staging slots; expected 2 to %d (one stream each)",
                       u->n_slots, u->dev->n_streams);
    if (choose_staging(u, o, err) != 0 || open_reads(p, err) != 0)
        return -1;
    if (layout(p, want, &regions, &n_regions, err) != 0)
        return -1;
    /* slots no larger than a share of what there is to upload: a small
     * upload does not pay for faulting in and page-locking 128 MiB */
    const uint64_t A = p->align;
    uint64_t total = 0, share;
    for (int i = 0; i < n_regions; i++)
        total += regions[i].f1 - regions[i].f0;
    share = nm_align_up(total / (uint64_t)u->n_slots + 2 * A, A);
    u->slot_bytes = nm_align_up(o->slot_bytes ? o->slot_bytes : DEFAULT_SLOT, A);
    if (u->slot_bytes > share)
        u->slot_bytes = share;
    if (u->slot_bytes < 4 * A)
        u->slot_bytes = 4 * A;
    int rc = cut_pieces(p, regions, n_regions, err);
    free(regions);
    if (rc != 0)
        return -1;
    p->read_t = calloc(2 * (size_t)p->n_pieces + 2, sizeof *p->read_t);
    p->copy_t = calloc(2 * (size_t)p->n_pieces + 2, sizeof *p->copy_t);
    if (!p->read_t || !p->copy_t)
        return nm_fail(err, "out of memory for the upload timings");
    nm_device *d = u->dev;
    if (d->ops->alloc(d, u->dev_bytes, &u->base, err) != 0)
        return nm_fail_prefix(err, "%s: %d tensors (%llu bytes) to %s device %d", u->gguf->path,
                              u->n_uploaded, (unsigned long long)u->dev_bytes, d->kind, d->ordinal);
    for (int i = 0; i < u->n_tensors; i++)
        if (want[i] && u->gguf->tensors[i].nbytes)
            u->tensor[i] = (const uint8_t *)u->base + (uintptr_t)u->tensor[i];
        else
            u->tensor[i] = NULL;
    nm_arena_opts ao = {0};
    if (nm_arena_create(&p->staging, u->slot_bytes * (uint64_t)u->n_slots, u->staging_node, NULL, 0,
                        &ao, err) != 0)
        return nm_fail_prefix(err, "staging buffers on node %d", u->staging_node);
    if (!o->pageable) {
        nm_error e;
        if (d->ops->host_register(d, p->staging.base, p->staging.mapped, &e) == 0)
            u->pinned = true;
        else
            note(u, "staging not page-locked (%s): copies from pageable memory", e.msg);
    }
    p->job.ctx = &p->ctx;
    p->job.node_os = u->staging_node;
    p->job.kind = p->ctx.fd_direct >= 0 ? NM_JOB_DIO : NM_JOB_BUFFERED;
    if (o->progress) {
        uint64_t total = 0;
        for (int k = 0; k < p->n_pieces; k++)
            total += p->pieces[k].f1 - p->pieces[k].f0;
        nm_progress_begin(&p->prog, "uploading", total, o->progress, o->progress_ud);
        p->ctx.progress = &p->prog;
    }
    return 0;
}

static void teardown(pipeline *p) {
    nm_upload *u = p->u;
    if (u->pinned)
        u->dev->ops->host_unregister(u->dev, p->staging.base);
    if (p->staging.base)
        nm_arena_destroy(&p->staging);
    if (p->ctx.progress)
        nm_progress_end(&p->prog);
    free(p->pieces);
    free(p->read_t);
    free(p->copy_t);
}

nm_upload *nm_upload_run(nm_device *dev, const nm_gguf *g, const uint8_t *want,
                         const nm_upload_opts *o, nm_error *err) {
    nm_upload *u = calloc(1, sizeof *u);
    const void **tensor = calloc(g->n_tensors + 1, sizeof *tensor);
    if (!u || !tensor) {
        free(u);
        free(tensor);
        nm_fail(err, "out of memory for the upload");
        return NULL;
    }
    u->dev = dev;
    u->gguf = g;
    u->tensor = tensor;
    u->n_tensors = (int)g->n_tensors;
    u->staging_placed_pct = -1;
    pipeline p = {.u = u, .o = o};
    p.ctx.fd = p.ctx.fd_direct = -1;
    double t0 = nm_now();
    int rc = setup(&p, want, err);
    if (rc == 0 && p.n_pieces) {
        pthread_t th;
        int e = pthread_create(&th, NULL, pipeline_main, &p);
        if (e)
            rc = nm_fail(err, "cannot start the staging reader: %s", strerror(e));
        else
            pthread_join(th, NULL);
        if (rc == 0 && p.rc != 0)
            rc = (*err = p.err, -1);
        if (rc == 0) {
            u->setup_s = p.t_first - t0;
            measure(&p);
            if (o->verify)
                rc = verify(u, p.ctx.fd, err);
        }
    }
    teardown(&p);
    if (p.ctx.g)
        close_reads(&p);
    if (rc != 0) {
        nm_upload_free(u);
        return NULL;
    }
    return u;
}

void nm_upload_free(nm_upload *u) {
    if (!u)
        return;
    if (u->base)
        u->dev->ops->free(u->dev, u->base);
    free(u->tensor);
    free(u);
}
