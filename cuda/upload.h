/* Uploading tensors to a device through node-local staging buffers.
 *
 * A reader thread pinned to the device's NUMA node reads the tensors'
 * bytes from the file (O_DIRECT + io_uring, the loader's readers) into
 * staging slots: one node-bound arena, registered with the device
 * (page-locked, so copies from it are DMA, asynchronous) and cut into
 * n_slots slots, each with its own stream. Slot s is refilled only after
 * its stream has finished the previous copy out of it, and the reader does
 * not wait for anything else, so while slot s's bytes cross the PCIe link
 * the disk already fills slot s+1: disk and link work at once. Every
 * uploaded tensor lands in one device allocation. docs/gpu.md has the
 * picture and the measurements. */
#ifndef NM_UPLOAD_H
#define NM_UPLOAD_H

#include "common/json.h"
#include "common/progress.h"
#include "gguf/gguf.h"
#include "numa/topo.h"
#include "runtime/device.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct nm_upload_opts {
    const nm_topo *topo;     /* this machine's; required */
    int staging_node;        /* -1: the device's node */
    uint64_t slot_bytes;     /* 0: 32 MiB */
    int n_slots;             /* 0: 4; at least 2 (double buffering) */
    bool buffered;           /* pread instead of O_DIRECT */
    bool pageable;           /* do not register the staging memory (measurements) */
    bool verify;             /* hash every tensor on the device against the file */
    nm_progress_fn progress; /* NULL: no progress reports ("uploading") */
    void *progress_ud;
    int queue_depth; /* io_uring depth; 0: 32 */
} nm_upload_opts;

typedef struct nm_upload {
    nm_device *dev;
    const nm_gguf *gguf;
    void *base;          /* the device allocation holding every tensor */
    uint64_t dev_bytes;  /* its size */
    const void **tensor; /* per file tensor: device address, NULL if not uploaded */
    int n_tensors;       /* entries of tensor[] (the file's count) */
    int n_uploaded;
    /* where and how */
    int staging_node;
    bool device_node_known; /* the device's node came from the topology */
    bool pinned;            /* staging registered with the device */
    bool direct, uring;     /* O_DIRECT reads, through io_uring */
    uint64_t slot_bytes;
    int n_slots, n_pieces;
    double staging_placed_pct; /* staging pages on staging_node, -1 unknown */
    int reader_cpus[32], n_reader_cpus;
    char notes[4][256]; /* fallbacks taken, one line each */
    int n_notes;
    /* measured */
    uint64_t bytes;   /* file bytes moved to the device */
    double setup_s;   /* before the first read: device allocation, staging
                         arena mapped, page-locked and faulted in */
    double seconds;   /* wall clock, first read to last copy done */
    double read_s;    /* reader busy reading */
    double copy_s;    /* some copy in flight (union of the copies' spans) */
    double overlap_s; /* reading and copying at the same time */
    double wait_s;    /* reader waiting for a slot to come free */
    /* --verify */
    bool verified, verify_ok;
    int n_mismatches;
    char mismatches[512];
} nm_upload;

/* Uploads tensor i of g for every i with want[i] != 0. NULL with err on any
 * failure, with nothing left allocated on the device or the host. */
nm_upload *nm_upload_run(nm_device *dev, const nm_gguf *g, const uint8_t *want,
                         const nm_upload_opts *o, nm_error *err);
/* Frees the device memory too. */
void nm_upload_free(nm_upload *u);

void nm_upload_print(const nm_upload *u, FILE *out);
/* The report's fields, as keys of the JSON object being written. */
void nm_upload_json_fields(const nm_upload *u, nm_json *j);

#endif
