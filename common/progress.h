/* A progress bar for long loads and writes. It draws only when stderr is a
 * TTY, at most ~10 times a second, so pipes and CI logs stay clean.
 * Thread-safe: readers on several nodes may report bytes concurrently. */
#ifndef NM_PROGRESS_H
#define NM_PROGRESS_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct nm_progress {
    const char *label;
    uint64_t total;
    _Atomic uint64_t done;
    _Atomic int64_t last_draw_ns;
    double start;
    int enabled;
} nm_progress;

void nm_progress_begin(nm_progress *p, const char *label, uint64_t total);
void nm_progress_add(nm_progress *p, uint64_t bytes);
void nm_progress_end(nm_progress *p); /* clears the line */

#endif
