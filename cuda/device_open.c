#include "gpu.h"

#include "common/util.h"
#ifdef NUMALM_HAVE_CUDA
#include "device_cuda.h"
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool nm_cuda_built(void) {
#ifdef NUMALM_HAVE_CUDA
    return true;
#else
    return false;
#endif
}

static bool parse_busid(const char *s, unsigned v[4]) {
    char tail;
    return s && sscanf(s, "%x:%x:%x.%x%c", &v[0], &v[1], &v[2], &v[3], &tail) == 4;
}

int nm_pci_node(const nm_topo *topo, const char *busid) {
    unsigned want[4], have[4];
    if (!topo || !parse_busid(busid, want))
        return -1;
    for (int i = 0; i < topo->n_pci; i++)
        if (parse_busid(topo->pci[i].busid, have) && !memcmp(want, have, sizeof want))
            return topo->pci[i].node;
    return -1;
}

/* "cpu" -> node -1, "cpu:N" -> node N; 1 if spec names the CPU one. */
static int cpu_spec(const char *spec, int *node, nm_error *err) {
    long n = -1;
    if (strncmp(spec, "cpu", 3) != 0 || (spec[3] && spec[3] != ':'))
        return 0;
    if (spec[3] == ':' && nm_parse_long(spec + 4, 0, 1023, &n, "--gpu cpu:NODE", err) < 0)
        return -1;
    *node = (int)n;
    return 1;
}

int nm_device_spec_check(const char *spec, nm_error *err) {
    int node;
    long n;
    if (!spec || !*spec)
        return nm_fail(err, "--gpu: expected a CUDA device number or 'cpu'");
    int c = cpu_spec(spec, &node, err);
    if (c != 0)
        return c < 0 ? -1 : 0;
    if (nm_parse_long(spec, 0, 1023, &n, "--gpu", err) < 0)
        return nm_fail(err,
                       "--gpu '%s': expected a CUDA device number (0, 1, ...) or 'cpu' "
                       "(the CPU implementation of the device interface)",
                       spec);
    return 0;
}

nm_device *nm_device_open(const char *spec, const nm_topo *topo, nm_error *err) {
    int node = -1;
    if (nm_device_spec_check(spec, err) < 0)
        return NULL;
    if (cpu_spec(spec, &node, err) == 1) {
        nm_device_cpu_opts o = {.node = node};
        return nm_device_cpu_open(&o, err);
    }
    int ordinal = atoi(spec);
#ifdef NUMALM_HAVE_CUDA
    nm_device *d = nm_device_cuda_open(ordinal, err);
    if (d)
        d->node = nm_pci_node(topo, d->busid);
    return d;
#else
    (void)topo;
    nm_fail(err,
            "--gpu %d: no CUDA device: this numalm was built without CUDA (the build found "
            "no nvcc; configure with the CUDA toolkit installed, or -DCMAKE_CUDA_COMPILER=...)",
            ordinal);
    return NULL;
#endif
}
