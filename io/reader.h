/* Internal interface between the loader and its readers. The loader turns a
 * plan into copy ops (file range -> arena address), hands each reader thread
 * a share of them, and the reader fills the memory with one I/O method. */
#ifndef NM_READER_H
#define NM_READER_H

#include "common/error.h"
#include "common/progress.h"
#include "gguf/gguf.h"
#include "numa/meminfo.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes of one O_DIRECT bounce slot; a reader has queue-depth slots. */
#define NM_DIO_BOUNCE_BYTES (256u << 10)

/* File bytes [file_offset, file_offset + nbytes) go to dst. */
typedef struct nm_read_op {
    uint64_t file_offset;
    uint64_t nbytes;
    uint8_t *dst;
    int tensor; /* first tensor the op covers, for messages */
} nm_read_op;

/* Shared by every reader of one load. */
typedef struct nm_read_ctx {
    const nm_gguf *g;
    int fd;        /* buffered */
    int fd_direct; /* O_RDONLY|O_DIRECT, -1 when not in use */
    uint64_t file_size;
    uint32_t dio_align;     /* file offset alignment for O_DIRECT */
    uint32_t dio_mem_align; /* buffer alignment for O_DIRECT */
    uint64_t chunk_bytes;
    int queue_depth;
    bool use_uring; /* false: preadv on fd_direct */
    /* set before nm_dio_setup: switches that simulate a poorer machine */
    bool no_odirect, no_uring; /* as if O_DIRECT / io_uring were refused */
    uint32_t force_dio_align;  /* see nm_dio_open; 0: none */
    nm_progress *progress;     /* may be NULL */
    /* mmap: the task policy each touching thread sets before its first
     * touch (page-cache pages follow the task's policy, not the VMA's) */
    int mpol_mode; /* MPOL_INTERLEAVE or MPOL_BIND */
    unsigned long mpol_mask[16];
    pthread_mutex_t lock;    /* guards the fallback lines and job states */
    pthread_cond_t job_done; /* a job's state changed (for NM_JOB_COPY) */
    char fallbacks[8][256];
    int n_fallbacks;
    /* Node memory taken before each populate (may be NULL: unchecked). */
    nm_mem_guard *guard;
    atomic_int failed; /* a reader failed: the others stop at their next piece */
} nm_read_ctx;

#define NM_MAX_SEEN_CPUS 32

typedef enum nm_job_kind {
    NM_JOB_BUFFERED, /* pread */
    NM_JOB_DIO,      /* O_DIRECT */
    NM_JOB_TOUCH,    /* mmap: fault the mapping in, a byte per page */
    NM_JOB_COPY,     /* replicate: copy another node's share once it is in */
    NM_JOB_MAP,      /* auto: map cached pages that sit on the right node */
} nm_job_kind;

/* One reader thread's work and what it saw. */
typedef struct nm_reader_job {
    nm_read_ctx *ctx;
    nm_read_op *ops;
    size_t n_ops;
    uint64_t bytes; /* sum of op sizes */
    int node_os;    /* node it is pinned to, -1: not pinned */
    nm_job_kind kind;
    /* results */
    double seconds; /* from the load start to this reader's end */
    int cpus[NM_MAX_SEEN_CPUS];
    int n_cpus;
    int rc;
    nm_error err;
    /* first-touch bookkeeping: pages before this address are populated */
    uint8_t *populated_to;
    /* NM_JOB_COPY: the same ops' bytes are at dst + src_delta once job
     * src (its state) is done */
    struct nm_reader_job *src;
    intptr_t src_delta;
    int state;       /* 0 running, 1 done, -1 failed (under ctx lock) */
    uint64_t mapped; /* NM_JOB_MAP: bytes mapped instead of copied */
    /* The nodes the arena's pages come from (one when bound, the plan's
     * nodes when interleaved), for the memory guard. */
    const int *mem_nodes;
    int n_mem_nodes;
    bool cancelled; /* stopped because another reader failed */
} nm_reader_job;

/* Marks the job finished (rc 0: done, else failed) and wakes copiers. */
void nm_reader_finish(nm_reader_job *j, int rc);

/* NM_JOB_COPY: waits for j->src, then copies its bytes node to node. */
int nm_read_copy(nm_reader_job *j);

/* Records a fallback line once (thread-safe); the loader hands the lines
 * to its caller in nm_loaded.fallbacks. */
void nm_read_fallback(nm_read_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Remembers which CPU the calling reader runs on (cheap; call often). */
void nm_reader_sample_cpu(nm_reader_job *j);

/* Faults in the pages of [dst, dst+len) not yet populated by this reader,
 * from this (node-pinned) thread, without changing their contents, so the
 * first touch happens here and not in the kernel's copy. The pages are
 * taken from the memory guard first: 0, or -1 (j->err) when the node has no
 * room left, the kernel refused, or another reader failed. */
int nm_reader_populate(nm_reader_job *j, uint8_t *dst, uint64_t len);

/* Error for a read that hit the end of the file early. */
int nm_read_truncated(const nm_read_ctx *c, const nm_read_op *op, uint64_t at, nm_error *err);

/* pread one op into memory. 0 or -1 (j->err). */
int nm_read_range(nm_reader_job *j, const nm_read_op *op);

/* pread the ops into memory. 0 or -1 (j->err). */
int nm_read_buffered(nm_reader_job *j);

/* O_DIRECT reads of the ops: the aligned middle straight into dst, the
 * unaligned head and tail through a bounce buffer; io_uring when
 * ctx->use_uring, else preadv. When the kernel refuses O_DIRECT mid-way
 * (EINVAL) it records a fallback and finishes with buffered reads. */
int nm_read_dio(nm_reader_job *j);

/* mmap: fault in the ops' ranges of the mapping (dst = map + offset) under
 * ctx's memory policy. */
int nm_read_touch(nm_reader_job *j);

/* mmap: map the file read-only and set the policy on the mapping. */
int nm_mmap_file(nm_read_ctx *c, void **map, nm_error *err);

/* mmap: pages of the mapping per node (move_pages) and how many are not
 * where the policy wants them: outside the policy's nodes, and for
 * interleave the pages beyond an even share (less the round-robin phase of
 * the n_touchers faulting threads, at most one page per thread and node). */
int nm_mmap_placement(const nm_read_ctx *c, const void *map, uint64_t len, uint64_t *per_node,
                      int max_node, int n_touchers, uint64_t *off_policy, uint64_t *resident,
                      nm_error *err);

/* Probes: 0 = usable. Fill `why` with the reason otherwise. */
/* force_align: an offset alignment to use instead of the filesystem's when
 * it is a larger power of two (at most 1 MiB), for tests of odd
 * filesystems; 0 for none. */
int nm_dio_open(const char *path, uint32_t force_align, int *fd_direct, uint32_t *align,
                uint32_t *mem_align, char *why, size_t why_len);
int nm_dio_probe_read(int fd_direct, uint64_t file_size, uint32_t align, uint32_t mem_align,
                      char *why, size_t why_len);
int nm_uring_probe(char *why, size_t why_len);

/* The three in order for c->g's file: 0 with c->fd_direct, the alignments
 * and use_uring set (uring_why: why io_uring is off, "" when on); -1 with
 * why when O_DIRECT is not usable (nothing left open, fd_direct -1). */
int nm_dio_setup(nm_read_ctx *c, char *why, size_t why_len, char *uring_why, size_t uring_len);

/* auto: splits ops at chunk boundaries into the parts that the page cache
 * holds (cached) and the rest. Both outputs are malloc'd. */
int nm_auto_split(const nm_read_ctx *c, const nm_read_op *ops, size_t n, nm_read_op **cached,
                  size_t *n_cached, nm_read_op **cold, size_t *n_cold, uint64_t *cached_bytes,
                  nm_error *err);

/* auto, zero copy: the page-aligned interior of each op becomes a private
 * mapping of the file's (cached) pages, kept only where every page already
 * lives on the job's node (j->node_os); the rest is copied with pread. */
int nm_read_map(nm_reader_job *j);

/* Bytes of [off, off+len) of fd in the page cache (cachestat(2), or
 * mincore on a mapping on kernels before 6.5). -1 on error. */
int64_t nm_cached_bytes(int fd, uint64_t off, uint64_t len);

#endif
