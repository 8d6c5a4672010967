/* Topology probe, built on hwloc. Sees only what the process may use
 * (numactl, taskset, cgroup cpusets), or an hwloc XML export of another
 * machine (--topology FILE.xml). */
#ifndef NM_TOPO_H
#define NM_TOPO_H

#include "common/error.h"

#include <hwloc.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct nm_topo_node {
    int os_index;
    uint64_t memory_bytes;        /* hwloc's local memory for the node */
    uint64_t sysfs_meminfo_bytes; /* /sys/.../nodeN/meminfo MemTotal; 0 if n/a */
    int n_cores;                  /* allowed cores with >= 1 allowed PU */
    int n_pus;                    /* allowed PUs */
    int *cpus;                    /* OS indexes of allowed PUs, ascending */
    int *core_first_pu;           /* one allowed PU per core (for 1 worker/core) */
    bool allowed;                 /* in the process's allowed nodeset */
    hwloc_obj_t obj;
} nm_topo_node;

typedef struct nm_topo_pci {
    char type[16];  /* "gpu", "nvme", "block", "net", "other" */
    char name[128]; /* OS device name or PCI vendor:device */
    char busid[32];
    int node; /* OS index of the nearest NUMA node, -1 if unknown */
} nm_topo_pci;

typedef struct nm_topo {
    hwloc_topology_t topo;
    bool from_xml;    /* not this machine: no binding allowed */
    char source[512]; /* "this machine" or the XML path */
    int n_nodes;      /* allowed nodes only */
    nm_topo_node *nodes;
    int n_packages, n_cores, n_pus; /* allowed */
    uint64_t *distances;            /* n_nodes x n_nodes, NULL if unknown */
    int n_pci;
    nm_topo_pci *pci;
    char allowed_cpuset[256]; /* hwloc list syntax, e.g. "0-3,8" */
    char allowed_nodeset[256];
    uint64_t meminfo_total;       /* /proc/meminfo MemTotal (this machine only) */
    bool memory_mismatch;         /* hwloc node memory sum disagrees with meminfo */
    hwloc_bitmap_t allowed_cpus;  /* hwloc's allowed PUs AND the process affinity
                                     (taskset, numactl --cpunodebind) */
    hwloc_bitmap_t allowed_nodes; /* hwloc's allowed nodes AND the memory binding
                                     (numactl --membind/--interleave) */
    bool cores_are_pus;           /* topology has no Core objects: each PU is a core */
    uint64_t sysfs_nodes_total;   /* sum of ALL /sys nodeN MemTotal; 0 if n/a */
    char memory_note[320];        /* one line saying what disagrees; "" if nothing */
} nm_topo;

/* xml_path NULL probes this machine (or HWLOC_XMLFILE if set: then from_xml).
 * On this machine the process's CPU affinity and memory binding restrict
 * what is listed, so load the topology BEFORE pinning any thread. A PU
 * belongs to one node: its ordinary-DRAM node (hwloc gives MCDRAM/HBM nodes
 * the same cpuset; Linux lists them CPU-less, so do we). Nodes are sorted by
 * OS index. */
nm_topo *nm_topo_load(const char *xml_path, nm_error *err);
void nm_topo_free(nm_topo *t);

/* Index into t->nodes of the node with this OS index, -1 if not allowed. */
int nm_topo_node_index(const nm_topo *t, int os_index);

void nm_topo_print(const nm_topo *t, FILE *out);
void nm_topo_print_json(const nm_topo *t, FILE *out);

/* Pins the calling thread to one PU / to a node's allowed PUs (this machine
 * only). */
int nm_pin_thread_to_cpu(const nm_topo *t, int cpu, nm_error *err);
int nm_pin_thread_to_node(const nm_topo *t, int node_os, nm_error *err);

#endif
