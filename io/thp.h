/* Transparent huge pages for the arenas: whether this machine makes them
 * cheap to fault in, and collapsing small pages into huge ones after a
 * fill. */
#ifndef NM_THP_H
#define NM_THP_H

#include "numa/arena.h"

#include <stdbool.h>
#include <stdint.h>

/* True under a virtio balloon with free page reporting, where a huge-page
 * fault pays one host fault per small page up front. */
bool nm_freed_memory_goes_to_host(void);

/* MADV_COLLAPSE on each small-page arena; adds the bytes collapsed to
 * *bytes. Returns 0, or the errno of the first arena the kernel refused
 * (the others are still tried). */
int nm_thp_collapse_arenas(nm_arena *arenas, int n, uint64_t *bytes);

#endif
