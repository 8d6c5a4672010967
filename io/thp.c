#include "thp.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

/* A virtio balloon with free page reporting (feature bit 5) hands memory
 * the guest frees back to the hypervisor; faulting it in again costs a host
 * fault per small page, and a huge-page fault pays 512 of them up front:
 * measured on the dev VM (docs/benchmarks.md), THP arenas populate at
 * 0.2-0.4 GB/s, 4 KiB pages at
 * 2.4-2.7 GB/s. Elsewhere huge pages are cheaper to fault and to use. */
bool nm_freed_memory_goes_to_host(void) {
    DIR *d = opendir("/sys/bus/virtio/drivers/virtio_balloon");
    bool yes = false;
    struct dirent *e;
    while (d && !yes && (e = readdir(d))) {
        if (strncmp(e->d_name, "virtio", 6))
            continue;
        char path[300], feat[256] = "";
        snprintf(path, sizeof path, "/sys/bus/virtio/devices/%s/features", e->d_name);
        FILE *f = fopen(path, "r");
        if (f && fgets(feat, sizeof feat, f) && strlen(feat) > 5 && feat[5] == '1')
            yes = true;
        if (f)
            fclose(f);
    }
    if (d)
        closedir(d);
    return yes;
}

/* Where the collapse is refused, MADV_HUGEPAGE stays and khugepaged may do
 * it in the background. */
int nm_thp_collapse_arenas(nm_arena *arenas, int n, uint64_t *bytes) {
    int first_err = 0;
    for (int a = 0; a < n; a++) {
        nm_arena *ar = &arenas[a];
        if (!ar->base || ar->huge)
            continue;
        (void)madvise(ar->base, ar->mapped, MADV_HUGEPAGE);
        if (madvise(ar->base, ar->mapped, MADV_COLLAPSE) == 0)
            *bytes += ar->mapped;
        else if (!first_err)
            first_err = errno;
    }
    return first_err;
}
