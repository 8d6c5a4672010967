/* The baseline, as llama.cpp runs under `numactl --interleave=all`: map the
 * file once and fault it in. The page cache gives the pages a node when it
 * first reads them, following the memory policy of the thread that faults
 * (or triggers readahead), so every touching thread sets the policy first;
 * the policy is also put on the mapping. Pages that were cached before keep
 * their node whatever the policy says: nm_mmap_placement counts them. */
#include "reader.h"

#include "common/util.h"
#include "numa/arena.h"

#include <errno.h>
#include <numaif.h>
#include <string.h>
#include <sys/mman.h>

#define TOUCH_PIECE (4u << 20)

int nm_mmap_file(nm_read_ctx *c, void **map, nm_error *err) {
    void *p = mmap(NULL, c->file_size, PROT_READ, MAP_SHARED, c->fd, 0);
    if (p == MAP_FAILED)
        return nm_fail(err, "%s: mmap of %llu bytes failed: %s", c->g->path,
                       (unsigned long long)c->file_size, strerror(errno));
    /* the whole file is wanted, front to back: larger readahead */
    (void)madvise(p, c->file_size, MADV_SEQUENTIAL);
    if (mbind(p, c->file_size, c->mpol_mode, c->mpol_mask, sizeof c->mpol_mask * 8, 0) != 0)
        nm_read_fallback(c,
                         "mmap: mbind on the file mapping refused (%s): "
                         "only the readers' task policy places the pages",
                         strerror(errno));
    *map = p;
    return 0;
}

int nm_read_touch(nm_reader_job *j) {
    nm_read_ctx *c = j->ctx;
    if (set_mempolicy(c->mpol_mode, c->mpol_mask, sizeof c->mpol_mask * 8) != 0)
        return nm_fail(&j->err, "mmap: set_mempolicy(%s) failed: %s",
                       c->mpol_mode == MPOL_BIND ? "MPOL_BIND" : "MPOL_INTERLEAVE",
                       strerror(errno));
    nm_reader_sample_cpu(j);
    unsigned sum = 0;
    for (size_t i = 0; i < j->n_ops; i++) {
        const nm_read_op *op = &j->ops[i];
        for (uint64_t done = 0; done < op->nbytes; done += TOUCH_PIECE) {
            uint64_t len = op->nbytes - done;
            if (len > TOUCH_PIECE)
                len = TOUCH_PIECE;
            /* one byte per page; volatile so the loads are not dropped */
            const volatile uint8_t *p = op->dst + done;
            uint64_t first = nm_align_up((uintptr_t)p, 4096) - (uintptr_t)p;
            sum += p[0];
            for (uint64_t k = first; k < len; k += 4096)
                sum += p[k];
            if (c->progress)
                nm_progress_add(c->progress, len);
            nm_reader_sample_cpu(j);
        }
    }
    (void)sum;
    /* later allocations of this thread (none in the loader) go back to
     * the default policy */
    (void)set_mempolicy(MPOL_DEFAULT, NULL, 0);
    return 0;
}

static bool mask_has(const nm_read_ctx *c, int node) {
    return node >= 0 && node < (int)sizeof c->mpol_mask * 8 &&
           (c->mpol_mask[node / 64] >> (node % 64) & 1);
}

int nm_mmap_placement(const nm_read_ctx *c, const void *map, uint64_t len, uint64_t *per_node,
                      int max_node, int n_touchers, uint64_t *off_policy, uint64_t *resident,
                      nm_error *err) {
    double pct;
    if (nm_pages_on_node(map, len, -1, 0, &pct, per_node, max_node, err) != 0)
        return -1;
    uint64_t total = 0, in_set = 0;
    int n_set = 0;
    for (int n = 0; n < max_node; n++) {
        total += per_node[n];
        if (mask_has(c, n))
            in_set += per_node[n];
    }
    for (int n = 0; n < (int)sizeof c->mpol_mask * 8; n++)
        n_set += mask_has(c, n);
    uint64_t off = total - in_set;
    if (c->mpol_mode == MPOL_INTERLEAVE && n_set > 1) {
        /* interleave wants an even share on each node: count the pages
         * that would have to move to get there */
        uint64_t share = (total + (uint64_t)n_set - 1) / (uint64_t)n_set +
                         (uint64_t)(n_touchers > 0 ? n_touchers : 1);
        for (int n = 0; n < max_node; n++)
            if (mask_has(c, n) && per_node[n] > share)
                off += per_node[n] - share;
    }
    *off_policy = off;
    *resident = total;
    return 0;
}
