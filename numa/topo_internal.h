/* Shared between numa/topo*.c only; not part of the public contract. */
#ifndef NM_TOPO_INTERNAL_H
#define NM_TOPO_INTERNAL_H

#include "topo.h"

/* Fills t->pci / t->n_pci from the hwloc I/O objects. */
int nm_topo_probe_pci(nm_topo *t, nm_error *err);

/* hwloc list syntax of a bitmap ("0-3,8"), "" for an empty one. */
void nm_topo_list_str(hwloc_const_bitmap_t set, char *buf, size_t n);

#endif
