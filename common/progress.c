#include "progress.h"

#include "util.h"

void nm_progress_begin(nm_progress *p, const char *label, uint64_t total, nm_progress_fn fn,
                       void *ud) {
    p->label = label;
    p->total = total;
    atomic_store(&p->done, 0);
    atomic_store(&p->last_report_ns, 0);
    p->start = nm_now();
    p->fn = fn;
    p->ud = ud;
}

void nm_progress_add(nm_progress *p, uint64_t bytes) {
    uint64_t done = atomic_fetch_add(&p->done, bytes) + bytes;
    if (!p->fn)
        return;
    int64_t now = (int64_t)(nm_now() * 1e9);
    int64_t last = atomic_load(&p->last_report_ns);
    if (now - last < 100000000 && done < p->total)
        return;
    /* only one thread reports a given moment */
    if (atomic_compare_exchange_strong(&p->last_report_ns, &last, now))
        p->fn(p->ud, p->label, done, p->total, nm_now() - p->start, false);
}

void nm_progress_end(nm_progress *p) {
    if (p->fn)
        p->fn(p->ud, p->label, atomic_load(&p->done), p->total, nm_now() - p->start, true);
}
