/* The PCI devices that matter to a model loader (GPUs, NVMe and other disks,
 * NICs) and the NUMA node each one hangs off. One entry per PCI function and
 * kind; OS devices of the same function (cuda0 + card0, eth2 + ib0) share
 * it, their names joined by commas. */
#include "topo_internal.h"

#include "common/util.h"

#include <stdlib.h>
#include <string.h>

#define PCI_CLASS_NVME 0x0108

static const char *pci_kind(hwloc_obj_t pci) {
    unsigned cls = pci->attr->pcidev.class_id;
    if (cls == PCI_CLASS_NVME)
        return "nvme";
    if ((cls >> 8) == 0x03)
        return "gpu";
    if ((cls >> 8) == 0x02)
        return "net";
    return NULL;
}

static hwloc_obj_t pci_ancestor(hwloc_obj_t obj) {
    for (hwloc_obj_t p = obj->parent; p; p = p->parent)
        if (p->type == HWLOC_OBJ_PCI_DEVICE)
            return p;
    return NULL;
}

static const char *osdev_kind(hwloc_obj_t os) {
    hwloc_obj_t pci;
    switch (os->attr->osdev.type) {
    case HWLOC_OBJ_OSDEV_GPU:
    case HWLOC_OBJ_OSDEV_COPROC:
        return "gpu";
    case HWLOC_OBJ_OSDEV_NETWORK:
        return "net";
    case HWLOC_OBJ_OSDEV_BLOCK:
        pci = pci_ancestor(os);
        if ((pci && pci->attr->pcidev.class_id == PCI_CLASS_NVME) ||
            (os->name && !strncmp(os->name, "nvme", 4)))
            return "nvme";
        return "block";
    default:
        return NULL;
    }
}

/* OS index of the nearest NUMA node. A device attached to the whole machine
 * (no locality known) on a multi-node box gets -1 rather than a guess. */
static int nearest_node(hwloc_topology_t topo, hwloc_obj_t obj) {
    hwloc_obj_t anc = hwloc_get_non_io_ancestor_obj(topo, obj);
    if (!anc || !anc->nodeset || hwloc_bitmap_iszero(anc->nodeset))
        return -1;
    if (hwloc_bitmap_weight(anc->nodeset) > 1 && !anc->parent)
        return -1;
    return hwloc_bitmap_first(anc->nodeset);
}

static void format_busid(hwloc_obj_t pci, char *buf, size_t n) {
    if (!pci) {
        buf[0] = 0;
        return;
    }
    const struct hwloc_pcidev_attr_s *a = &pci->attr->pcidev;
    snprintf(buf, n, "%04x:%02x:%02x.%01x", a->domain, a->bus, a->dev, a->func);
}

static nm_topo_pci *find_entry(nm_topo *t, hwloc_obj_t pci, const char *kind) {
    if (!pci)
        return NULL;
    char busid[32];
    format_busid(pci, busid, sizeof busid);
    for (int i = 0; i < t->n_pci; i++)
        if (!strcmp(t->pci[i].busid, busid) && (!kind || !strcmp(t->pci[i].type, kind)))
            return &t->pci[i];
    return NULL;
}

static nm_topo_pci *add_entry(nm_topo *t, size_t *cap, hwloc_obj_t pci, hwloc_obj_t located,
                              const char *kind, const char *name) {
    nm_topo_pci *p = nm_grow(t->pci, cap, (size_t)t->n_pci, 8, sizeof *p);
    if (!p)
        return NULL;
    t->pci = p;
    nm_topo_pci *e = &t->pci[t->n_pci++];
    memset(e, 0, sizeof *e);
    snprintf(e->type, sizeof e->type, "%s", kind);
    snprintf(e->name, sizeof e->name, "%s", name);
    format_busid(pci, e->busid, sizeof e->busid);
    e->node = nearest_node(t->topo, located);
    return e;
}

static void append_name(nm_topo_pci *e, const char *name) {
    size_t len = strlen(e->name);
    if (len + 1 + strlen(name) < sizeof e->name)
        snprintf(e->name + len, sizeof e->name - len, ",%s", name);
}

static void pci_name(hwloc_obj_t pci, char *buf, size_t n) {
    const char *dev = hwloc_obj_get_info_by_name(pci, "PCIDevice");
    if (dev && *dev)
        snprintf(buf, n, "%s", dev);
    else
        snprintf(buf, n, "%04x:%04x", pci->attr->pcidev.vendor_id, pci->attr->pcidev.device_id);
}

/* Bus order, so the list reads like lspci; devices with no bus id last. */
static int cmp_busid(const void *a, const void *b) {
    const nm_topo_pci *x = a, *y = b;
    if (!x->busid[0] || !y->busid[0])
        return (!x->busid[0]) - (!y->busid[0]);
    int c = strcmp(x->busid, y->busid);
    return c ? c : strcmp(x->type, y->type);
}

int nm_topo_probe_pci(nm_topo *t, nm_error *err) {
    size_t cap = 0;
    hwloc_obj_t os = NULL;
    while ((os = hwloc_get_next_osdev(t->topo, os))) {
        const char *kind = osdev_kind(os);
        if (!kind)
            continue;
        hwloc_obj_t pci = pci_ancestor(os);
        const char *name = os->name ? os->name : "?";
        nm_topo_pci *e = find_entry(t, pci, kind);
        if (e)
            append_name(e, name);
        else if (!add_entry(t, &cap, pci, os, kind, name))
            return nm_fail(err, "out of memory listing PCI devices");
    }
    /* Devices with no OS device (no driver loaded, or an XML export made
     * without them) still count: a GPU is a GPU. */
    hwloc_obj_t pci = NULL;
    while ((pci = hwloc_get_next_pcidev(t->topo, pci))) {
        const char *kind = pci_kind(pci);
        if (!kind || find_entry(t, pci, NULL))
            continue;
        char name[128];
        pci_name(pci, name, sizeof name);
        if (!add_entry(t, &cap, pci, pci, kind, name))
            return nm_fail(err, "out of memory listing PCI devices");
    }
    if (t->n_pci > 1)
        qsort(t->pci, (size_t)t->n_pci, sizeof *t->pci, cmp_busid);
    return 0;
}
