#include "progress.h"

#include "util.h"

#include <stdio.h>
#include <unistd.h>

void nm_progress_begin(nm_progress *p, const char *label, uint64_t total) {
    p->label = label;
    p->total = total;
    atomic_store(&p->done, 0);
    atomic_store(&p->last_draw_ns, 0);
    p->start = nm_now();
    p->enabled = isatty(STDERR_FILENO) && getenv("NUMALM_NO_PROGRESS") == NULL;
}

static void draw(nm_progress *p, uint64_t done) {
    const int width = 30;
    double frac = p->total ? (double)done / (double)p->total : 1.0;
    if (frac > 1.0)
        frac = 1.0;
    int fill = (int)(frac * width);
    double secs = nm_now() - p->start;
    double rate = secs > 0 ? (double)done / secs / 1e9 : 0.0;
    char bar[64];
    for (int i = 0; i < width; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    fprintf(stderr, "\r%s [%s] %5.1f%% %8.1f MB %6.2f GB/s", p->label, bar, frac * 100.0,
            (double)done / 1e6, rate);
    fflush(stderr);
}

void nm_progress_add(nm_progress *p, uint64_t bytes) {
    uint64_t done = atomic_fetch_add(&p->done, bytes) + bytes;
    if (!p->enabled)
        return;
    int64_t now = (int64_t)(nm_now() * 1e9);
    int64_t last = atomic_load(&p->last_draw_ns);
    if (now - last < 100000000 && done < p->total)
        return;
    /* only one thread draws a given frame */
    if (atomic_compare_exchange_strong(&p->last_draw_ns, &last, now))
        draw(p, done);
}

void nm_progress_end(nm_progress *p) {
    if (!p->enabled)
        return;
    draw(p, atomic_load(&p->done));
    fputs("\r\033[K", stderr);
    fflush(stderr);
}
