/* Where the runtime finds a tensor's rows after a load: the node-local
 * rows a node computes, a whole copied tensor, or one row from whichever
 * arena holds it. The forward pass calls these when it binds the weights. */
#include "loader.h"

#include <stdint.h>

static const nm_tensor_plan *tensor_plan(const nm_loaded *w, int ti) {
    if (!w || !w->plan || ti < 0 || ti >= w->plan->n_tensors)
        return NULL;
    return &w->plan->tensors[ti];
}

/* The arena whose memory node `node` (plan index) computes from. */
static int arena_of(const nm_loaded *w, int node) {
    return w->plan->n_arenas == 1 ? 0 : node;
}

static const uint8_t *held_rows(const nm_loaded *w, int a, const nm_tensor_plan *tp, uint64_t row0,
                                uint64_t row1) {
    const nm_range *h = &tp->held[a];
    if (!h->nbytes || row0 < h->row0 || row1 > h->row1 || !w->arenas[a].base)
        return NULL;
    return (const uint8_t *)w->arenas[a].base + h->arena_offset +
           (row0 - h->row0) * tp->t->row_bytes;
}

const void *nm_loaded_rows(const nm_loaded *w, int ti, int node) {
    const nm_tensor_plan *tp = tensor_plan(w, ti);
    if (!tp || node < 0 || node >= w->plan->n_nodes)
        return NULL;
    uint64_t r0 = tp->rows[node].row0, r1 = tp->rows[node].row1;
    if (w->map)
        return (const uint8_t *)w->map + tp->t->file_offset + r0 * tp->t->row_bytes;
    return held_rows(w, arena_of(w, node), tp, r0, r1);
}

const void *nm_loaded_tensor(const nm_loaded *w, int ti, int node) {
    const nm_tensor_plan *tp = tensor_plan(w, ti);
    if (!tp || node < 0 || node >= w->plan->n_nodes)
        return NULL;
    if (w->map)
        return (const uint8_t *)w->map + tp->t->file_offset;
    return held_rows(w, arena_of(w, node), tp, 0, tp->t->n_rows);
}

const void *nm_loaded_row(const nm_loaded *w, int ti, uint64_t row) {
    const nm_tensor_plan *tp = tensor_plan(w, ti);
    if (!tp || row >= tp->t->n_rows)
        return NULL;
    if (w->map)
        return (const uint8_t *)w->map + tp->t->file_offset + row * tp->t->row_bytes;
    for (int a = 0; a < w->plan->n_arenas; a++) {
        const uint8_t *p = held_rows(w, a, tp, row, row + 1);
        if (p)
            return p;
    }
    return NULL;
}
