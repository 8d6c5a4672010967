/* The loader executes a plan: one reader per arena (pinned to its node) fills
 * the node-local arenas from the file, or mmap+interleave maps it. After it,
 * the runtime asks only "where are rows r0..r1 of tensor t for node n". */
#ifndef NM_LOADER_H
#define NM_LOADER_H

#include "common/log.h"
#include "common/progress.h"
#include "numa/arena.h"
#include "numa/plan.h"

typedef enum nm_io_mode {
    NM_IO_DIO,      /* O_DIRECT + io_uring, per-node readers */
    NM_IO_BUFFERED, /* pread by per-node pinned threads */
    NM_IO_MMAP,     /* the baseline: mmap + mbind interleave/bind, prefault */
    NM_IO_AUTO,     /* cache-aware: copy cached ranges, O_DIRECT the rest */
} nm_io_mode;

typedef struct nm_load_opts {
    nm_io_mode io;
    nm_arena_opts arena;
    uint64_t chunk_bytes;    /* 0: default */
    int queue_depth;         /* 0: default */
    int readers_per_node;    /* 0: default */
    bool verify;             /* placement (move_pages) + checksums */
    bool drop_caches;        /* root only */
    nm_progress_fn progress; /* NULL: no progress reports */
    void *progress_ud;
    nm_log log;           /* fallback lines (WARN) and notes (INFO) */
    const nm_topo *topo;  /* for pinning readers; NULL: probed here */
    bool drop_file_cache; /* posix_fadvise(DONTNEED) on the model only */
    int thp;              /* arenas' transparent huge pages: 0 auto (on,
                             except where freed memory goes back to a
                             hypervisor: see docs/loading.md), 1 on, -1 off,
                             2 fill with small pages, then MADV_COLLAPSE */
    bool no_map;          /* auto: always copy, never map cached pages */
    const uint8_t *skip;  /* per file tensor, may be NULL: nonzero = not read
                             (another loader fills it: the GPU upload); its
                             arena pages stay untouched, so cost no memory */
    bool no_mem_guard;    /* do not check node memory before each populate */
    /* Switches that simulate a poorer machine (tests) or work around a
     * broken one; each taken one is a fallback line: */
    bool no_odirect;    /* as if the filesystem refused O_DIRECT */
    bool no_uring;      /* as if the kernel had no io_uring */
    bool no_staging;    /* replicate: every node reads its copy from disk */
    uint32_t dio_align; /* O_DIRECT offset alignment to use when it is a
                           multiple of the filesystem's (0: the filesystem's) */
} nm_load_opts;

typedef struct nm_load_node_stats {
    int node; /* OS index, -1 for an interleaved arena */
    uint64_t bytes;
    double seconds;
    double placed_pct;   /* < 0 when not verified */
    double share_pct;    /* interleave: % of the arena's pages on this
                            node (< 0 when not verified / not interleave) */
    int reader_cpus[32]; /* distinct sched_getcpu() seen by its readers */
    int n_reader_cpus;
    int n_readers;
} nm_load_node_stats;

typedef struct nm_loaded {
    const nm_plan *plan;
    const nm_gguf *gguf;
    nm_io_mode io;
    nm_arena arenas[NM_MAX_NODES];
    void *map; /* mmap mode: the file mapping */
    uint64_t map_len;
    /* stats */
    double seconds;
    uint64_t bytes;
    nm_load_node_stats node_stats[NM_MAX_NODES];
    int n_node_stats;
    char fallbacks[8][256];
    int n_fallbacks;
    uint64_t off_policy_pages; /* mmap: pages already cached elsewhere */
    uint64_t cached_bytes;     /* auto: bytes found in the page cache */
    bool verified;
    bool checksums_ok;
    uint64_t chunk_bytes; /* dio/auto chunk in use */
    int queue_depth;      /* dio/auto io_uring depth in use */
    int readers_per_node;
    uint32_t dio_align;      /* O_DIRECT offset alignment, 0 if unused */
    nm_io_mode io_requested; /* before fallbacks */
    int n_mismatches;        /* verify: tensor ranges whose checksum differs */
    char mismatches[512];    /* their names, comma-separated (cut) */
    int fd;                  /* the model, buffered; -1 when closed */
    bool thp;                /* arenas may use transparent huge pages */
    uint64_t mapped_bytes;   /* auto: bytes mapped from the page cache
                                (zero copy) instead of copied */
    uint8_t *skipped;        /* per plan tensor (experts included): 1 if opts.skip left it
                                out (an expert with its stacked tensor); NULL: none */
    uint64_t skipped_bytes;
} nm_loaded;

const char *nm_io_name(nm_io_mode m);
int nm_io_parse(const char *s, nm_io_mode *m, nm_error *err);

nm_loaded *nm_load(const nm_gguf *g, const nm_plan *plan, const nm_load_opts *opts, nm_error *err);
void nm_loaded_free(nm_loaded *w);

/* Buffers a load with these options allocates on each node that reads (the
 * O_DIRECT bounce slots), for the memory admission (numa/fit.h). */
uint64_t nm_load_staging_bytes(const nm_load_opts *o);

/* Rows [rows[node].row0, rows[node].row1) of tensor ti as node `node` (plan
 * node index) computes them, from memory local to that node. The pointer is
 * to row rows[node].row0. */
const void *nm_loaded_rows(const nm_loaded *w, int ti, int node);

/* The whole tensor as seen from `node` when its arena holds all of it (norms
 * always; everything in replicate/interleave/node), else NULL. */
const void *nm_loaded_tensor(const nm_loaded *w, int ti, int node);

/* One row of tensor ti, from whichever arena holds it (token embedding). */
const void *nm_loaded_row(const nm_loaded *w, int ti, uint64_t row);

void nm_loaded_print(const nm_loaded *w, FILE *out);
void nm_loaded_print_json(const nm_loaded *w, FILE *out);
/* The report's fields, as keys of the JSON object being written. */
struct nm_json;
void nm_loaded_json_fields(const nm_loaded *w, struct nm_json *j);

#endif
