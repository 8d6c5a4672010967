/* Progress of long loads and writes, reported through a callback at most
 * ~10 times a second (and once at the end), so the caller decides how to
 * show it (the command draws a bar on a TTY). Thread-safe: readers on
 * several nodes may report bytes concurrently. */
#ifndef NM_PROGRESS_H
#define NM_PROGRESS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* done of total bytes after seconds; finished on the last call. */
typedef void (*nm_progress_fn)(void *ud, const char *label, uint64_t done, uint64_t total,
                               double seconds, bool finished);

typedef struct nm_progress {
    const char *label;
    uint64_t total;
    _Atomic uint64_t done;
    _Atomic int64_t last_report_ns;
    double start;
    nm_progress_fn fn; /* NULL: nothing is reported */
    void *ud;
} nm_progress;

void nm_progress_begin(nm_progress *p, const char *label, uint64_t total, nm_progress_fn fn,
                       void *ud);
void nm_progress_add(nm_progress *p, uint64_t bytes);
void nm_progress_end(nm_progress *p);

#endif
