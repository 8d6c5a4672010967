/* The loader: turns the plan into copy ops, starts the readers (pinned to
 * their nodes, each first-touching the pages it fills) and waits for them.
 * Everything that can go wrong on the way (O_DIRECT refused, io_uring off)
 * degrades to the next best method with one line in w->fallbacks. */
#include "loader.h"

#include "common/util.h"
#include "checksum.h"
#include "loader_stats.h"
#include "reader.h"
#include "thp.h"

#include <errno.h>
#include <fcntl.h>
#include <numaif.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Measured on the dev VM (docs/loading.md, cold O_DIRECT sweep): 4 MiB requests at
 * depth 32 were the fastest (1.23 GB/s, vs 1.11 at depth 16 and 0.78 for
 * 1 MiB at depth 4); larger chunks gained nothing. */
#define DEFAULT_CHUNK (4u << 20)
#define DEFAULT_QD 32
/* How readers split an arena's work: cuts at this file alignment keep every
 * share O_DIRECT-aligned. */
#define CUT_ALIGN (64u << 10)
/* Ops of the same shift closer than this are read as one (the gap is
 * padding between tensors: reading it costs less than another request). */
#define MERGE_GAP (64u << 10)

const char *nm_io_name(nm_io_mode m) {
    switch (m) {
    case NM_IO_DIO:
        return "dio";
    case NM_IO_BUFFERED:
        return "buffered";
    case NM_IO_MMAP:
        return "mmap";
    case NM_IO_AUTO:
        return "auto";
    }
    return "?";
}

int nm_io_parse(const char *s, nm_io_mode *m, nm_error *err) {
    static const nm_io_mode all[] = {NM_IO_DIO, NM_IO_BUFFERED, NM_IO_MMAP, NM_IO_AUTO};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (s && !strcmp(s, nm_io_name(all[i]))) {
            *m = all[i];
            return 0;
        }
    return nm_fail(err, "unknown --io '%s': expected dio, buffered, mmap or auto", s ? s : "");
}

uint64_t nm_load_staging_bytes(const nm_load_opts *o) {
    if (o->io == NM_IO_MMAP || o->io == NM_IO_BUFFERED)
        return 0;
    uint64_t readers = o->readers_per_node > 0 ? (uint64_t)o->readers_per_node : 1;
    uint64_t qd = o->queue_depth > 0 ? (uint64_t)o->queue_depth : DEFAULT_QD;
    return readers * qd * NM_DIO_BOUNCE_BYTES;
}

/* ---- setup ----------------------------------------------------------- */

typedef struct load_run {
    nm_loaded *w;
    const nm_load_opts *o;
    const nm_topo *topo;
    nm_read_ctx ctx;
    nm_reader_job *jobs;
    int n_jobs;
    size_t cap_jobs;
    int staged_first[NM_MAX_NODES], staged_count[NM_MAX_NODES];
    nm_read_op **op_lists; /* freed at the end */
    int n_op_lists;
    size_t cap_op_lists;
    double t0;
    nm_mem_guard guard;
    int plan_nodes[NM_MAX_NODES]; /* an interleaved arena's pages come from these */
} load_run;

static void add_fallback(nm_loaded *w, const char *line) {
    for (int i = 0; i < w->n_fallbacks; i++)
        if (!strcmp(w->fallbacks[i], line))
            return;
    if (w->n_fallbacks < 8)
        snprintf(w->fallbacks[w->n_fallbacks++], sizeof w->fallbacks[0], "%s", line);
}

/* The file must still hold every tensor the header promised. */
static int check_file_size(const nm_gguf *g, int fd, nm_error *err) {
    struct stat st;
    if (fstat(fd, &st) != 0)
        return nm_fail(err, "%s: fstat: %s", g->path, strerror(errno));
    uint64_t size = (uint64_t)st.st_size;
    if (size == g->file_size)
        return 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const nm_gguf_tensor *t = &g->tensors[i];
        if (t->file_offset + t->nbytes > size)
            return nm_fail(err,
                           "%s: the file changed size since its header was read "
                           "(%llu -> %llu bytes): tensor '%s' at offset %llu "
                           "(%llu bytes) lies past the end",
                           g->path, (unsigned long long)g->file_size, (unsigned long long)size,
                           t->name, (unsigned long long)t->file_offset,
                           (unsigned long long)t->nbytes);
    }
    return 0;
}

static int drop_caches(load_run *r, nm_error *err) {
    const nm_load_opts *o = r->o;
    if (o->drop_caches) {
        if (geteuid() != 0)
            return nm_fail(err, "--drop-caches needs root (it writes "
                                "/proc/sys/vm/drop_caches); run as root, or use "
                                "--drop-file-cache to evict only this model");
        sync();
        int fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
        if (fd < 0 || write(fd, "3\n", 2) != 2) {
            int e = errno;
            if (fd >= 0)
                close(fd);
            return nm_fail(err, "--drop-caches: writing /proc/sys/vm/drop_caches: %s", strerror(e));
        }
        close(fd);
    }
    if (o->drop_file_cache) {
        (void)fdatasync(r->ctx.fd);
        int e = posix_fadvise(r->ctx.fd, 0, 0, POSIX_FADV_DONTNEED);
        if (e)
            return nm_fail(err, "--drop-file-cache: posix_fadvise(%s): %s", r->w->gguf->path,
                           strerror(e));
    }
    return 0;
}

/* Decides dio -> preadv -> buffered before any reader starts. */
static void setup_direct(load_run *r) {
    nm_read_ctx *c = &r->ctx;
    nm_loaded *w = r->w;
    char why[256], uring_why[256];
    if (nm_dio_setup(c, why, sizeof why, uring_why, sizeof uring_why) != 0) {
        nm_read_fallback(c, "%s: %s -> buffered reads", w->gguf->path, why);
        w->io = w->io == NM_IO_AUTO ? NM_IO_AUTO : NM_IO_BUFFERED;
        return;
    }
    w->dio_align = c->dio_align;
    if (!c->use_uring)
        nm_read_fallback(c, "%s -> preadv with O_DIRECT", uring_why);
}

static int open_model(load_run *r, nm_error *err) {
    nm_loaded *w = r->w;
    nm_read_ctx *c = &r->ctx;
    c->g = w->gguf;
    c->fd = c->fd_direct = -1;
    c->file_size = w->gguf->file_size;
    c->chunk_bytes = r->o->chunk_bytes ? r->o->chunk_bytes : DEFAULT_CHUNK;
    c->queue_depth = r->o->queue_depth > 0 ? r->o->queue_depth : DEFAULT_QD;
    c->no_odirect = r->o->no_odirect;
    c->no_uring = r->o->no_uring;
    c->force_dio_align = r->o->dio_align;
    w->chunk_bytes = c->chunk_bytes;
    w->queue_depth = c->queue_depth;
    c->fd = open(w->gguf->path, O_RDONLY | O_CLOEXEC);
    if (c->fd < 0)
        return nm_fail(err, "%s: %s", w->gguf->path, strerror(errno));
    w->fd = c->fd;
    if (check_file_size(w->gguf, c->fd, err) || drop_caches(r, err))
        return -1;
    if (w->io == NM_IO_DIO || w->io == NM_IO_AUTO)
        setup_direct(r);
    return 0;
}

/* ---- ops ------------------------------------------------------------- */

static int cmp_dst(const void *a, const void *b) {
    const nm_read_op *x = a, *y = b;
    return x->dst < y->dst ? -1 : x->dst > y->dst;
}

/* Arena a's ranges as ops, in memory order, neighbours with the same
 * file-to-arena shift merged. */
static nm_read_op *arena_ops(load_run *r, int a, size_t *n_out, nm_error *err) {
    const nm_plan *p = r->w->plan;
    const nm_arena *ar = &r->w->arenas[a];
    nm_read_op *ops = calloc((size_t)p->n_tensors + 1, sizeof *ops);
    if (!ops) {
        nm_fail(err, "out of memory for the read list");
        return NULL;
    }
    size_t n = 0;
    for (int ti = 0; ti < p->n_tensors; ti++) {
        const nm_range *h = &p->tensors[ti].held[a];
        if (!h->nbytes || (r->w->skipped && r->w->skipped[ti]))
            continue;
        if (h->arena_offset + h->nbytes > ar->size ||
            h->file_offset + h->nbytes > r->ctx.file_size) {
            free(ops);
            nm_fail(err,
                    "plan: tensor '%s' range (file offset %llu, %llu bytes, arena "
                    "offset %llu) does not fit arena %d (%llu bytes) or the file",
                    p->tensors[ti].t->name, (unsigned long long)h->file_offset,
                    (unsigned long long)h->nbytes, (unsigned long long)h->arena_offset, a,
                    (unsigned long long)ar->size);
            return NULL;
        }
        ops[n++] = (nm_read_op){h->file_offset, h->nbytes, (uint8_t *)ar->base + h->arena_offset,
                                p->tensors[ti].file_tensor};
    }
    qsort(ops, n, sizeof *ops, cmp_dst);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        nm_read_op *last = m ? &ops[m - 1] : NULL;
        if (last && ops[i].dst >= last->dst + last->nbytes &&
            ops[i].file_offset >= last->file_offset + last->nbytes &&
            (uint64_t)(ops[i].dst - last->dst) == ops[i].file_offset - last->file_offset &&
            ops[i].file_offset - (last->file_offset + last->nbytes) <= MERGE_GAP) {
            last->nbytes = ops[i].file_offset + ops[i].nbytes - last->file_offset;
            continue;
        }
        ops[m++] = ops[i];
    }
    *n_out = m;
    return ops;
}

static uint64_t ops_bytes(const nm_read_op *ops, size_t n) {
    uint64_t s = 0;
    for (size_t i = 0; i < n; i++)
        s += ops[i].nbytes;
    return s;
}

static nm_reader_job *new_job(load_run *r) {
    nm_reader_job *v = nm_grow(r->jobs, &r->cap_jobs, (size_t)r->n_jobs, 16, sizeof *v);
    if (!v)
        return NULL;
    r->jobs = v;
    nm_reader_job *j = &r->jobs[r->n_jobs++];
    memset(j, 0, sizeof *j);
    j->ctx = &r->ctx;
    return j;
}

static int keep_list(load_run *r, nm_read_op *ops) {
    nm_read_op **v = nm_grow(r->op_lists, &r->cap_op_lists, (size_t)r->n_op_lists, 16, sizeof *v);
    if (!v)
        return -1;
    r->op_lists = v;
    r->op_lists[r->n_op_lists++] = ops;
    return 0;
}

/* Splits ops (in order) into k shares of about equal bytes, cut at CUT_ALIGN
 * file offsets; share s goes to a job on nodes[s % n_nodes]. */
static int spread_ops(load_run *r, const nm_read_op *ops, size_t n, int k, const int *nodes,
                      int n_nodes, nm_job_kind kind, nm_error *err) {
    uint64_t total = ops_bytes(ops, n);
    if (total == 0)
        return 0;
    nm_read_op *copy = calloc(n + (size_t)k, sizeof *copy);
    if (!copy || keep_list(r, copy)) {
        free(copy);
        return nm_fail(err, "out of memory for the read list");
    }
    size_t m = 0, i = 0;
    uint64_t pos = 0; /* within ops[i] */
    for (int s = 0; s < k && i < n; s++) {
        nm_reader_job *j = new_job(r);
        if (!j)
            return nm_fail(err, "out of memory for the reader list");
        j->ops = &copy[m];
        j->kind = kind;
        j->node_os = nodes[s % n_nodes];
        uint64_t target = total / (uint64_t)k + 1, got = 0;
        while (i < n && (got < target || s == k - 1)) {
            uint64_t f = ops[i].file_offset + pos, left = ops[i].nbytes - pos;
            uint64_t take = left;
            if (s < k - 1 && got + left > target) {
                uint64_t cut = nm_align_up(f + (target - got), CUT_ALIGN);
                if (cut < f + left)
                    take = cut - f;
            }
            copy[m++] = (nm_read_op){f, take, ops[i].dst + pos, ops[i].tensor};
            got += take;
            pos += take;
            if (pos == ops[i].nbytes) {
                i++;
                pos = 0;
            }
        }
        j->n_ops = (size_t)(&copy[m] - j->ops);
        j->bytes = got;
    }
    return 0;
}

static int node_pus(const load_run *r, int node_os) {
    int idx = r->topo ? nm_topo_node_index(r->topo, node_os) : -1;
    return idx >= 0 && r->topo->nodes[idx].n_pus > 0 ? r->topo->nodes[idx].n_pus : 1;
}

/* Threads per node for a kind: one io_uring reader keeps the disk busy;
 * copies from the page cache (or faults) scale with memory bandwidth, so
 * use several cores, at most 4 (one thread reads memory at about 10 GB/s
 * on the machines numalm was planned for, and 20-30 on the dev VM). */
static int readers_for(const load_run *r, nm_job_kind kind, int node_os) {
    if (r->o->readers_per_node > 0)
        return r->o->readers_per_node;
    if (kind == NM_JOB_DIO)
        return 1;
    int pus = node_pus(r, node_os);
    return pus < 4 ? pus : 4;
}

/* The nodes whose readers fill arena a: its own node, or all plan nodes
 * for an interleaved arena (any reader may fill any part of it). */
static int arena_reader_nodes(const load_run *r, int a, int *nodes) {
    const nm_plan *p = r->w->plan;
    if (p->arena_node[a] >= 0) {
        nodes[0] = p->arena_node[a];
        return 1;
    }
    for (int i = 0; i < p->n_nodes; i++)
        nodes[i] = p->nodes[i].os_index;
    return p->n_nodes;
}

static int plan_jobs_for(load_run *r, const nm_read_op *ops, size_t n, const int *nodes,
                         int n_nodes, nm_job_kind kind, nm_error *err) {
    int k = readers_for(r, kind, nodes[0]) * n_nodes;
    if (n_nodes == 1 && ops_bytes(ops, n) < (uint64_t)k * CUT_ALIGN)
        k = 1; /* tiny: one reader is enough */
    return spread_ops(r, ops, n, k, nodes, n_nodes, kind, err);
}

/* replicate + O_DIRECT: every node reads 1/n of the bytes from the disk and
 * copies the other shares from the nodes that read them, so the disk is
 * read once instead of n times. The arenas have the same layout, so share
 * s of arena a is share s of arena s shifted by the distance between the
 * arenas. Copy jobs refer to job indexes, fixed up once all exist. */
static int plan_staged_jobs(load_run *r, int a, const nm_read_op *ops, size_t n, nm_error *err) {
    int n_arenas = r->w->plan->n_arenas, node = r->w->plan->arena_node[a];
    int first = r->n_jobs;
    if (spread_ops(r, ops, n, n_arenas, &node, 1, NM_JOB_DIO, err) != 0)
        return -1;
    r->staged_first[a] = first;
    r->staged_count[a] = r->n_jobs - first;
    return 0;
}

static int link_staged_jobs(load_run *r) {
    int n_arenas = r->w->plan->n_arenas, empty = 0;
    for (int a = 0; a < n_arenas; a++)
        empty += r->staged_count[a] == 0;
    if (empty == n_arenas)
        return 0; /* auto found everything cached: nothing to stage */
    for (int a = 0; a < n_arenas; a++)
        if (r->staged_count[a] != n_arenas)
            return -1; /* a share came out empty: read everything instead */
    for (int a = 0; a < n_arenas; a++)
        for (int s = 0; s < n_arenas; s++) {
            nm_reader_job *j = &r->jobs[r->staged_first[a] + s];
            if (s == a)
                continue;
            j->kind = NM_JOB_COPY;
            j->src = &r->jobs[r->staged_first[s] + s];
            j->src_delta =
                (intptr_t)((uint8_t *)r->w->arenas[s].base - (uint8_t *)r->w->arenas[a].base);
        }
    return 0;
}

static bool staged(const load_run *r) {
    return r->w->plan->placement == NM_PLACE_REPLICATE && r->w->plan->n_arenas > 1 &&
           r->ctx.fd_direct >= 0 && r->o->readers_per_node <= 1 && !r->o->no_staging;
}

/* auto may map cached pages into a node-bound arena of normal pages; an
 * interleaved arena wants its pages spread, which the cache does not do. */
static bool may_map(const load_run *r, int a) {
    const nm_arena *ar = &r->w->arenas[a];
    return !r->o->no_map && ar->node >= 0 && !ar->huge && !ar->locked;
}

/* The guard takes an arena's pages from its node, or evenly from the
 * plan's nodes when it is interleaved. */
static void set_mem_nodes(load_run *r, int a, int first_job) {
    const nm_plan *p = r->w->plan;
    for (int i = first_job; i < r->n_jobs; i++) {
        bool bound = p->arena_node[a] >= 0;
        r->jobs[i].mem_nodes = bound ? &p->arena_node[a] : r->plan_nodes;
        r->jobs[i].n_mem_nodes = bound ? 1 : p->n_nodes;
    }
}

static int plan_arena_jobs(load_run *r, int a, nm_error *err) {
    int first_job = r->n_jobs;
    size_t n;
    nm_read_op *ops = arena_ops(r, a, &n, err);
    if (!ops)
        return -1;
    int nodes[NM_MAX_NODES];
    int n_nodes = arena_reader_nodes(r, a, nodes);
    int rc;
    if (r->w->io == NM_IO_AUTO && r->ctx.fd_direct >= 0) {
        nm_read_op *hot, *cold;
        size_t n_hot, n_cold;
        uint64_t hot_bytes;
        rc = nm_auto_split(&r->ctx, ops, n, &hot, &n_hot, &cold, &n_cold, &hot_bytes, err);
        if (rc == 0 && n_hot == 0) {
            /* nothing cached: exactly the dio path (its whole ranges, not the
             * chunk pieces), so a cold auto load is a cold dio load */
            free(hot);
            free(cold);
            rc = staged(r) ? plan_staged_jobs(r, a, ops, n, err)
                           : plan_jobs_for(r, ops, n, nodes, n_nodes, NM_JOB_DIO, err);
        } else if (rc == 0) {
            r->w->cached_bytes += hot_bytes;
            rc = plan_jobs_for(r, hot, n_hot, nodes, n_nodes,
                               may_map(r, a) ? NM_JOB_MAP : NM_JOB_BUFFERED, err);
            if (rc == 0 && staged(r))
                rc = plan_staged_jobs(r, a, cold, n_cold, err);
            else if (rc == 0)
                rc = plan_jobs_for(r, cold, n_cold, nodes, n_nodes, NM_JOB_DIO, err);
            free(hot);
            free(cold);
        }
    } else {
        nm_job_kind kind =
            r->w->io == NM_IO_DIO && r->ctx.fd_direct >= 0 ? NM_JOB_DIO : NM_JOB_BUFFERED;
        if (kind == NM_JOB_DIO && staged(r))
            rc = plan_staged_jobs(r, a, ops, n, err);
        else
            rc = plan_jobs_for(r, ops, n, nodes, n_nodes, kind, err);
    }
    free(ops);
    set_mem_nodes(r, a, first_job);
    return rc;
}

static bool thp_collapse_requested(const nm_load_opts *o) {
    return o->thp == 2;
}

static void decide_thp(load_run *r) {
    nm_loaded *w = r->w;
    w->thp = r->o->thp == 1 || (r->o->thp == 0 && !thp_collapse_requested(r->o));
    if (r->o->thp == 0 && w->thp && nm_freed_memory_goes_to_host()) {
        w->thp = false;
        nm_read_fallback(&r->ctx, "arenas without transparent huge pages: this VM's "
                                  "balloon returns freed memory to the host, which makes huge-page "
                                  "faults ~5x slower (--thp on to force them)");
    }
}

/* Opt-in (thp 2, `--thp collapse`): fill with small pages (fast under a
 * reporting balloon), then MADV_COLLAPSE them into huge pages (faster
 * decode). Measured on the dev VM:
 * +2.7-6 s for 2.2 GB, so it pays only for long generations
 * (docs/loading.md). */
static void thp_collapse_after_fill(load_run *r) {
    if (!thp_collapse_requested(r->o) || r->w->thp)
        return;
    double t0 = nm_now();
    uint64_t bytes = 0;
    int e = nm_thp_collapse_arenas(r->w->arenas, r->w->plan->n_arenas, &bytes);
    if (e)
        nm_read_fallback(&r->ctx,
                         "MADV_COLLAPSE refused (%s): arenas keep small pages until "
                         "khugepaged collapses them",
                         strerror(e));
    nm_logf(&r->o->log, NM_LOG_INFO, "%.0f MiB collapsed into huge pages after the fill in %.3f s",
            (double)bytes / (1 << 20), nm_now() - t0);
}

static int create_arenas(load_run *r, nm_error *err) {
    const nm_plan *p = r->w->plan;
    int nodes[NM_MAX_NODES];
    for (int i = 0; i < p->n_nodes; i++)
        nodes[i] = p->nodes[i].os_index;
    for (int a = 0; a < p->n_arenas; a++) {
        if (nm_arena_create_phased(&r->w->arenas[a], p->arena_bytes[a], p->arena_node[a], nodes,
                                   p->n_nodes, &r->o->arena,
                                   nm_plan_arena_phase(p, a, NM_ARENA_PHASE_ALIGN), err) != 0)
            return nm_fail_prefix(err, "arena %d (node %d, %llu bytes)", a, p->arena_node[a],
                                  (unsigned long long)p->arena_bytes[a]);
        if (!r->w->thp && r->w->arenas[a].base && !r->w->arenas[a].huge)
            (void)madvise(r->w->arenas[a].base, r->w->arenas[a].mapped, MADV_NOHUGEPAGE);
        if (r->w->arenas[a].note[0])
            nm_read_fallback(&r->ctx, "arena %d: %s", a, r->w->arenas[a].note);
    }
    return 0;
}

/* ---- mmap ------------------------------------------------------------ */

static void set_mask(nm_read_ctx *c, int node) {
    if (node >= 0 && node < (int)sizeof c->mpol_mask * 8)
        c->mpol_mask[node / 64] |= 1ul << (node % 64);
}

static int plan_mmap_jobs(load_run *r, nm_error *err) {
    nm_loaded *w = r->w;
    const nm_plan *p = w->plan;
    nm_read_ctx *c = &r->ctx;
    int nodes[NM_MAX_NODES], n_nodes = 0;
    if (p->placement == NM_PLACE_NODE) {
        c->mpol_mode = MPOL_BIND;
        set_mask(c, p->fixed_node);
        nodes[n_nodes++] = p->fixed_node;
    } else {
        c->mpol_mode = MPOL_INTERLEAVE;
        for (int i = 0; i < p->n_nodes; i++) {
            set_mask(c, p->nodes[i].os_index);
            nodes[n_nodes++] = p->nodes[i].os_index;
        }
        if (p->placement != NM_PLACE_INTERLEAVE)
            nm_read_fallback(c,
                             "mmap keeps one copy of the file: pages interleaved over "
                             "the plan's nodes instead of '%s'",
                             nm_placement_name(p->placement));
    }
    if (nm_mmap_file(c, &w->map, err) != 0)
        return -1;
    w->map_len = c->file_size;
    nm_read_op all = {w->gguf->data_offset, c->file_size - w->gguf->data_offset,
                      (uint8_t *)w->map + w->gguf->data_offset, 0};
    return plan_jobs_for(r, &all, 1, nodes, n_nodes, NM_JOB_TOUCH, err);
}

/* ---- running --------------------------------------------------------- */

typedef struct reader_arg {
    load_run *r;
    nm_reader_job *j;
} reader_arg;

static void *reader_main(void *arg) {
    reader_arg *ra = arg;
    nm_reader_job *j = ra->j;
    load_run *r = ra->r;
    nm_error e;
    if (j->node_os >= 0 && r->topo && nm_pin_thread_to_node(r->topo, j->node_os, &e) != 0)
        nm_read_fallback(&r->ctx, "reader for node %d runs unpinned: %s", j->node_os, e.msg);
    switch (j->kind) {
    case NM_JOB_DIO:
        j->rc = nm_read_dio(j);
        break;
    case NM_JOB_BUFFERED:
        j->rc = nm_read_buffered(j);
        break;
    case NM_JOB_TOUCH:
        j->rc = nm_read_touch(j);
        break;
    case NM_JOB_COPY:
        j->rc = nm_read_copy(j);
        break;
    case NM_JOB_MAP:
        j->rc = nm_read_map(j);
        break;
    }
    j->seconds = nm_now() - r->t0;
    nm_reader_finish(j, j->rc);
    return NULL;
}

static int run_jobs(load_run *r, nm_error *err) {
    pthread_t *th = calloc((size_t)r->n_jobs, sizeof *th);
    reader_arg *args = calloc((size_t)r->n_jobs, sizeof *args);
    bool *started = calloc((size_t)r->n_jobs, sizeof *started);
    int rc = 0;
    if (!th || !args || !started)
        rc = nm_fail(err, "out of memory for %d reader threads", r->n_jobs);
    for (int i = 0; rc == 0 && i < r->n_jobs; i++) {
        args[i] = (reader_arg){r, &r->jobs[i]};
        int e = pthread_create(&th[i], NULL, reader_main, &args[i]);
        if (e)
            rc = nm_fail(err, "cannot start reader thread %d: %s", i, strerror(e));
        else
            started[i] = true;
    }
    /* copy jobs wait for their sources: release them from any that will
     * never run */
    for (int i = 0; rc != 0 && i < r->n_jobs; i++)
        if (!started || !started[i])
            nm_reader_finish(&r->jobs[i], -1);
    for (int i = 0; th && started && i < r->n_jobs; i++)
        if (started[i])
            pthread_join(th[i], NULL);
    /* the first failure that is not "stopped: another reader failed" */
    for (int pass = 0; pass < 2 && rc == 0; pass++)
        for (int i = 0; rc == 0 && i < r->n_jobs; i++)
            if (r->jobs[i].rc != 0 && (pass == 1 || !r->jobs[i].cancelled)) {
                *err = r->jobs[i].err;
                rc = -1;
            }
    free(th);
    free(args);
    free(started);
    return rc;
}

nm_loaded *nm_load(const nm_gguf *g, const nm_plan *plan, const nm_load_opts *opts, nm_error *err) {
    nm_load_opts defaults;
    memset(&defaults, 0, sizeof defaults);
    if (!opts)
        opts = &defaults;
    nm_loaded *w = nm_calloc(1, sizeof *w, "the loaded weights' bookkeeping", err);
    if (!w)
        return NULL;
    w->gguf = g;
    w->plan = plan;
    w->io = w->io_requested = opts->io;
    w->fd = -1;
    load_run r = {.w = w, .o = opts, .topo = opts->topo};
    if (opts->skip && w->io != NM_IO_MMAP) {
        /* by plan unit: an expert is skipped with its stacked tensor */
        if (!(w->skipped =
                  nm_calloc((size_t)plan->n_tensors + 1, 1, "the skipped-tensor list", err))) {
            free(w);
            return NULL;
        }
        for (int i = 0; i < plan->n_tensors; i++)
            w->skipped[i] = opts->skip[plan->tensors[i].file_tensor];
        for (uint64_t i = 0; i < g->n_tensors; i++)
            if (opts->skip[i])
                w->skipped_bytes += g->tensors[i].nbytes;
    }
    for (int i = 0; i < plan->n_nodes; i++)
        r.plan_nodes[i] = plan->nodes[i].os_index;
    pthread_mutex_init(&r.ctx.lock, NULL);
    pthread_cond_init(&r.ctx.job_done, NULL);
    nm_topo *own_topo = NULL;
    nm_progress prog;
    int rc = open_model(&r, err);
    if (rc == 0 && !r.topo) {
        own_topo = nm_topo_load(NULL, err);
        rc = own_topo ? 0 : -1;
        r.topo = own_topo;
    }
    nm_mem_guard_init(&r.guard, r.topo, !opts->no_mem_guard);
    r.ctx.guard = &r.guard;
    r.t0 = nm_now();
    if (rc == 0 && w->io == NM_IO_MMAP) {
        rc = plan_mmap_jobs(&r, err);
    } else if (rc == 0) {
        decide_thp(&r);
        rc = create_arenas(&r, err);
        for (int a = 0; rc == 0 && a < plan->n_arenas; a++)
            rc = plan_arena_jobs(&r, a, err);
        if (rc == 0 && staged(&r) && link_staged_jobs(&r) != 0)
            nm_read_fallback(&r.ctx, "replicate: shares too small to stage; every node "
                                     "reads its copy from the disk");
    }
    if (rc == 0) {
        uint64_t total = 0;
        for (int i = 0; i < r.n_jobs; i++)
            total += r.jobs[i].bytes;
        nm_progress_begin(&prog, "loading", total, opts->progress, opts->progress_ud);
        r.ctx.progress = opts->progress ? &prog : NULL;
        rc = run_jobs(&r, err);
        if (rc == 0 && w->io != NM_IO_MMAP)
            thp_collapse_after_fill(&r);
        nm_progress_end(&prog);
        w->seconds = nm_now() - r.t0;
        w->bytes = total;
    }
    if (rc == 0)
        rc = nm_load_finish_stats(w, r.jobs, r.n_jobs, &r.ctx, opts, err);
    for (int i = 0; i < r.ctx.n_fallbacks; i++)
        add_fallback(w, r.ctx.fallbacks[i]);
    if (r.ctx.fd_direct >= 0)
        close(r.ctx.fd_direct);
    for (int i = 0; i < r.n_op_lists; i++)
        free(r.op_lists[i]);
    free(r.op_lists);
    free(r.jobs);
    nm_mem_guard_destroy(&r.guard);
    nm_topo_free(own_topo);
    pthread_mutex_destroy(&r.ctx.lock);
    pthread_cond_destroy(&r.ctx.job_done);
    if (rc != 0) {
        nm_loaded_free(w);
        return NULL;
    }
    for (int i = 0; i < w->n_fallbacks; i++)
        nm_logf(&opts->log, NM_LOG_WARN, "load fallback: %s", w->fallbacks[i]);
    return w;
}

void nm_loaded_free(nm_loaded *w) {
    if (!w)
        return;
    for (int a = 0; a < NM_MAX_NODES; a++)
        if (w->arenas[a].base)
            nm_arena_destroy(&w->arenas[a]);
    if (w->map)
        munmap(w->map, w->map_len);
    if (w->fd >= 0)
        close(w->fd);
    free(w->skipped);
    free(w);
}
