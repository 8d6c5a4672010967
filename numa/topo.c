/* Topology probe. hwloc does the discovery; this file decides what the
 * process may actually use and flattens it into nm_topo for the planner,
 * the arenas and the workers. */
#include "topo.h"
#include "topo_internal.h"

#include "common/util.h"

#include <dirent.h>
#include <errno.h>
#include <numa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void nm_topo_list_str(hwloc_const_bitmap_t set, char *buf, size_t n) {
    if (n == 0)
        return;
    buf[0] = 0;
    if (!set || hwloc_bitmap_iszero(set))
        return;
    if (hwloc_bitmap_list_snprintf(buf, n, set) < 0)
        buf[0] = 0;
}

/* hwloc discovery components that plugins add (Debian's libhwloc-plugins:
 * pci, opencl, gl; libhwloc-contrib-plugins: cuda, nvml, rsmi, levelzero)
 * and that numalm does without: hwloc's linux component finds the same PCI
 * tree, with each device's node, in sysfs, and numalm opens GPUs itself.
 * Left in, "pci" runs libpciaccess, which keeps what it allocates in its
 * own globals until hwloc unloads the plugin; LeakSanitizer then reports
 * those blocks as leaks at exit (no frame of numalm on their stacks). Left
 * out, PCI devices without an OS device are named by vendor:device ids
 * instead of pci.ids names. */
static const char *const UNUSED_COMPONENTS[] = {"pci",  "opencl", "gl",       "cuda",
                                                "nvml", "rsmi",   "levelzero"};

static int open_topology(nm_topo *t, const char *xml_path, nm_error *err) {
    /* Check the file first: hwloc's own failure says nothing about which
     * file or why. */
    if (xml_path && access(xml_path, R_OK) != 0)
        return nm_fail(err, "topology file '%s': %s", xml_path, strerror(errno));
    if (hwloc_topology_init(&t->topo) < 0) {
        t->topo = NULL;
        return nm_fail(err, "hwloc_topology_init: %s", strerror(errno));
    }
    if (xml_path && hwloc_topology_set_xml(t->topo, xml_path) < 0)
        return nm_fail(err, "topology file '%s': hwloc cannot use it as XML input: %s", xml_path,
                       strerror(errno));
    if (hwloc_topology_set_io_types_filter(t->topo, HWLOC_TYPE_FILTER_KEEP_IMPORTANT) < 0)
        return nm_fail(err, "hwloc: cannot enable I/O device discovery: %s", strerror(errno));
    /* EINVAL: no such component here (its plugin is not installed) */
    for (size_t i = 0; i < sizeof UNUSED_COMPONENTS / sizeof UNUSED_COMPONENTS[0]; i++)
        (void)hwloc_topology_set_components(t->topo, HWLOC_TOPOLOGY_COMPONENTS_FLAG_BLACKLIST,
                                            UNUSED_COMPONENTS[i]);
    if (hwloc_topology_load(t->topo) < 0) {
        if (xml_path)
            return nm_fail(err, "topology file '%s': not a valid hwloc XML topology (%s)", xml_path,
                           strerror(errno));
        return nm_fail(err, "hwloc could not probe this machine's topology: %s", strerror(errno));
    }
    return 0;
}

/* What the process may use: hwloc's allowed sets (cgroup cpusets) narrowed by
 * the affinity and memory binding it was started with. hwloc itself ignores
 * sched_setaffinity and set_mempolicy, so taskset and numactl would otherwise
 * go unnoticed. */
static int compute_allowed_sets(nm_topo *t, nm_error *err) {
    t->allowed_cpus = hwloc_bitmap_dup(hwloc_topology_get_allowed_cpuset(t->topo));
    t->allowed_nodes = hwloc_bitmap_dup(hwloc_topology_get_allowed_nodeset(t->topo));
    if (!t->allowed_cpus || !t->allowed_nodes)
        return nm_fail(err, "hwloc: out of memory copying the allowed sets");
    if (t->from_xml)
        return 0; /* the XML's own allowed sets are the whole story */

    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    if (!set)
        return nm_fail(err, "hwloc: out of memory");
    if (hwloc_get_cpubind(t->topo, set, HWLOC_CPUBIND_PROCESS) == 0 && !hwloc_bitmap_iszero(set))
        hwloc_bitmap_and(t->allowed_cpus, t->allowed_cpus, set);
    /* libnuma, not hwloc_get_membind: hwloc reports MPOL_PREFERRED as BIND,
     * but only MPOL_BIND forbids the other nodes (interleave and preferred
     * fall back to them). */
    struct bitmask *mems = numa_available() >= 0 ? numa_get_membind() : NULL;
    if (mems) {
        hwloc_bitmap_zero(set);
        for (unsigned i = 0; i < mems->size; i++)
            if (numa_bitmask_isbitset(mems, i))
                hwloc_bitmap_set(set, i);
        if (!hwloc_bitmap_iszero(set))
            hwloc_bitmap_and(t->allowed_nodes, t->allowed_nodes, set);
        numa_bitmask_free(mems);
    }
    hwloc_bitmap_free(set);
    return 0;
}

static bool is_ordinary_memory(hwloc_obj_t node) {
    return !node->subtype || !node->subtype[0] || !strcmp(node->subtype, "DRAM");
}

/* A PU's home node. hwloc 2 gives MCDRAM/HBM nodes the cpuset of the cores
 * beside them, so several nodes may cover one PU; the kernel lists CPUs under
 * the ordinary DRAM node only, and so do we (then lowest OS index). */
static hwloc_obj_t home_node_of(hwloc_topology_t topo, hwloc_obj_t pu) {
    hwloc_obj_t best = NULL, n = NULL;
    while ((n = hwloc_get_next_obj_by_type(topo, HWLOC_OBJ_NUMANODE, n))) {
        if (!n->cpuset || !hwloc_bitmap_isset(n->cpuset, pu->os_index))
            continue;
        if (!best)
            best = n;
        else if (is_ordinary_memory(n) != is_ordinary_memory(best))
            best = is_ordinary_memory(n) ? n : best;
        else if (n->os_index < best->os_index)
            best = n;
    }
    return best;
}

static bool pu_allowed(const nm_topo *t, hwloc_obj_t pu) {
    return hwloc_bitmap_isset(t->allowed_cpus, pu->os_index);
}

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static int cmp_node_os(const void *a, const void *b) {
    const nm_topo_node *x = a, *y = b;
    return (x->os_index > y->os_index) - (x->os_index < y->os_index);
}

/* Lists the allowed nodes, sorted by OS index, with their memory. */
static int list_nodes(nm_topo *t, nm_error *err) {
    int total = hwloc_get_nbobjs_by_type(t->topo, HWLOC_OBJ_NUMANODE);
    t->nodes =
        nm_calloc(total > 0 ? (size_t)total : 1, sizeof *t->nodes, "the NUMA node list", err);
    if (!t->nodes)
        return -1;
    hwloc_obj_t obj = NULL;
    while ((obj = hwloc_get_next_obj_by_type(t->topo, HWLOC_OBJ_NUMANODE, obj))) {
        if (!hwloc_bitmap_isset(t->allowed_nodes, obj->os_index))
            continue;
        nm_topo_node *n = &t->nodes[t->n_nodes++];
        n->os_index = (int)obj->os_index;
        n->memory_bytes = obj->attr ? obj->attr->numanode.local_memory : 0;
        n->allowed = true;
        n->obj = obj;
    }
    qsort(t->nodes, (size_t)t->n_nodes, sizeof *t->nodes, cmp_node_os);
    return 0;
}

/* The first allowed PU of `unit` (a core, or a PU when there are no cores)
 * whose home is `home` (NULL: any home); -1 if none. */
static int first_pu_of(const nm_topo *t, hwloc_obj_t unit, hwloc_obj_t const *home_of,
                       hwloc_obj_t home) {
    int first = -1;
    hwloc_obj_t pu = NULL;
    while (
        (pu = hwloc_get_next_obj_inside_cpuset_by_type(t->topo, unit->cpuset, HWLOC_OBJ_PU, pu))) {
        if (!pu_allowed(t, pu) || (home && home_of[pu->logical_index] != home))
            continue;
        if (first < 0 || (int)pu->os_index < first)
            first = (int)pu->os_index;
    }
    return first;
}

/* Gives each node its allowed PUs and one PU per core, and counts the
 * machine-wide totals. */
static int assign_cpus(nm_topo *t, nm_error *err) {
    hwloc_topology_t topo = t->topo;
    int n_pu_objs = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PU);
    int n_core_objs = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
    t->cores_are_pus = n_core_objs <= 0;
    hwloc_obj_type_t unit_type = t->cores_are_pus ? HWLOC_OBJ_PU : HWLOC_OBJ_CORE;
    int n_units = t->cores_are_pus ? n_pu_objs : n_core_objs;
    size_t max_pus = n_pu_objs > 0 ? (size_t)n_pu_objs : 1;
    size_t max_units = n_units > 0 ? (size_t)n_units : 1;

    hwloc_obj_t *home_of = nm_calloc(max_pus, sizeof *home_of, "the PU list", err);
    if (!home_of)
        return -1;
    hwloc_obj_t pu = NULL;
    while ((pu = hwloc_get_next_obj_by_type(topo, HWLOC_OBJ_PU, pu))) {
        if (!pu_allowed(t, pu))
            continue;
        home_of[pu->logical_index] = home_node_of(topo, pu);
        t->n_pus++;
    }
    for (int u = 0; u < n_units; u++)
        if (first_pu_of(t, hwloc_get_obj_by_type(topo, unit_type, (unsigned)u), home_of, NULL) >= 0)
            t->n_cores++;

    for (int i = 0; i < t->n_nodes; i++) {
        nm_topo_node *n = &t->nodes[i];
        if (!(n->cpus = nm_calloc(max_pus, sizeof *n->cpus, "a node's CPU list", err)) ||
            !(n->core_first_pu = nm_calloc(max_units, sizeof(int), "a node's core list", err))) {
            free(home_of);
            return -1;
        }
        while ((pu = hwloc_get_next_obj_by_type(topo, HWLOC_OBJ_PU, pu)))
            if (pu_allowed(t, pu) && home_of[pu->logical_index] == n->obj)
                n->cpus[n->n_pus++] = (int)pu->os_index;
        for (int u = 0; u < n_units; u++) {
            hwloc_obj_t unit = hwloc_get_obj_by_type(topo, unit_type, (unsigned)u);
            int first = first_pu_of(t, unit, home_of, n->obj);
            if (first >= 0)
                n->core_first_pu[n->n_cores++] = first;
        }
        qsort(n->cpus, (size_t)n->n_pus, sizeof(int), cmp_int);
        qsort(n->core_first_pu, (size_t)n->n_cores, sizeof(int), cmp_int);
    }
    free(home_of);

    hwloc_obj_t pkg = NULL;
    while ((pkg = hwloc_get_next_obj_by_type(topo, HWLOC_OBJ_PACKAGE, pkg)))
        if (pkg->cpuset && hwloc_bitmap_intersects(pkg->cpuset, t->allowed_cpus))
            t->n_packages++;
    return 0;
}

/* Copies a latency matrix that covers every listed node, in our node
 * order; nothing when it misses a node. */
static int copy_distances(nm_topo *t, struct hwloc_distances_s *d, nm_error *err) {
    int n = t->n_nodes;
    int *idx = nm_calloc((size_t)n, sizeof *idx, "the node distance index", err);
    if (!idx)
        return -1;
    bool complete = true;
    for (int i = 0; i < n && complete; i++) {
        idx[i] = hwloc_distances_obj_index(d, t->nodes[i].obj);
        complete = idx[i] >= 0;
    }
    int rc = 0;
    if (complete && !(t->distances = nm_calloc((size_t)n * (size_t)n, sizeof *t->distances,
                                               "the node distance matrix", err)))
        rc = -1;
    for (int i = 0; complete && rc == 0 && i < n; i++)
        for (int j = 0; j < n; j++)
            t->distances[i * n + j] = d->values[(size_t)idx[i] * d->nbobjs + (size_t)idx[j]];
    free(idx);
    return rc;
}

static int load_distances(nm_topo *t, nm_error *err) {
    if (t->n_nodes == 0)
        return 0;
    unsigned long kind = HWLOC_DISTANCES_KIND_MEANS_LATENCY;
    struct hwloc_distances_s *probe[1];
    unsigned nr = 0;
    if (hwloc_distances_get_by_type(t->topo, HWLOC_OBJ_NUMANODE, &nr, probe, kind, 0) < 0 ||
        nr == 0)
        return 0;
    struct hwloc_distances_s **all = nm_calloc(nr, sizeof *all, "the node distances", err);
    if (!all)
        return -1;
    int rc = 0;
    if (hwloc_distances_get_by_type(t->topo, HWLOC_OBJ_NUMANODE, &nr, all, kind, 0) == 0) {
        for (unsigned i = 0; i < nr; i++) {
            if (!t->distances && rc == 0)
                rc = copy_distances(t, all[i], err);
            hwloc_distances_release(t->topo, all[i]);
        }
    }
    free(all);
    return rc;
}

/* Returns the "MemTotal: N kB" value of a meminfo-style file in bytes, 0 if
 * the file or the field is missing. */
static uint64_t read_memtotal(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[256];
    uint64_t bytes = 0;
    while (fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "MemTotal:");
        unsigned long long kb;
        if (p && sscanf(p + strlen("MemTotal:"), "%llu", &kb) == 1) {
            bytes = (uint64_t)kb * 1024;
            break;
        }
    }
    fclose(f);
    return bytes;
}

static uint64_t sysfs_node_memtotal(int os_index) {
    char path[96];
    snprintf(path, sizeof path, "/sys/devices/system/node/node%d/meminfo", os_index);
    return read_memtotal(path);
}

/* Sum over every node the kernel knows, allowed or not. */
static uint64_t sysfs_all_nodes_memtotal(void) {
    DIR *dir = opendir("/sys/devices/system/node");
    if (!dir)
        return 0;
    uint64_t sum = 0;
    struct dirent *e;
    while ((e = readdir(dir))) {
        int os_index;
        char tail;
        if (sscanf(e->d_name, "node%d%c", &os_index, &tail) == 1)
            sum += sysfs_node_memtotal(os_index);
    }
    closedir(dir);
    return sum;
}

/* More than 2% apart: page-granular rounding never gets near that. */
static bool far_apart(uint64_t a, uint64_t b) {
    uint64_t hi = a > b ? a : b, lo = a > b ? b : a;
    return hi - lo > hi / 50;
}

/* Some VMs give the kernel more memory than the NUMA nodes describe. We
 * report both numbers and that they disagree; which one is right is not
 * ours to guess. */
static void check_memory(nm_topo *t) {
    char a[32], b[32], c[32];
    uint64_t listed = 0;
    t->meminfo_total = read_memtotal("/proc/meminfo");
    t->sysfs_nodes_total = sysfs_all_nodes_memtotal();
    for (int i = 0; i < t->n_nodes; i++) {
        listed += t->nodes[i].memory_bytes;
        t->nodes[i].sysfs_meminfo_bytes = sysfs_node_memtotal(t->nodes[i].os_index);
    }
    /* Restricted runs list only some nodes: compare the kernel's own sum. */
    bool all_listed =
        hwloc_bitmap_isequal(t->allowed_nodes, hwloc_topology_get_topology_nodeset(t->topo));
    uint64_t nodes_total = all_listed ? listed : t->sysfs_nodes_total;
    if (t->meminfo_total && nodes_total && far_apart(nodes_total, t->meminfo_total) &&
        !t->memory_mismatch) {
        t->memory_mismatch = true;
        snprintf(t->memory_note, sizeof t->memory_note,
                 "NUMA nodes hold %s (hwloc %s for the listed nodes) but /proc/meminfo "
                 "MemTotal is %s: they disagree",
                 nm_fmt_bytes(nodes_total, a, sizeof a), nm_fmt_bytes(listed, b, sizeof b),
                 nm_fmt_bytes(t->meminfo_total, c, sizeof c));
    }
    for (int i = 0; i < t->n_nodes && !t->memory_mismatch; i++) {
        const nm_topo_node *n = &t->nodes[i];
        if (!n->sysfs_meminfo_bytes || !far_apart(n->sysfs_meminfo_bytes, n->memory_bytes))
            continue;
        t->memory_mismatch = true;
        snprintf(t->memory_note, sizeof t->memory_note,
                 "node %d: hwloc says %s, sysfs meminfo says %s: they disagree", n->os_index,
                 nm_fmt_bytes(n->memory_bytes, a, sizeof a),
                 nm_fmt_bytes(n->sysfs_meminfo_bytes, b, sizeof b));
    }
}

nm_topo *nm_topo_load(const char *xml_path, nm_error *err) {
    nm_topo *t = nm_calloc(1, sizeof *t, "the topology", err);
    if (!t || open_topology(t, xml_path, err) < 0)
        goto fail;
    /* HWLOC_XMLFILE in the environment also replaces this machine. */
    t->from_xml = xml_path != NULL || !hwloc_topology_is_thissystem(t->topo);
    const char *env_xml = getenv("HWLOC_XMLFILE");
    if (xml_path)
        snprintf(t->source, sizeof t->source, "%s", xml_path);
    else if (t->from_xml && env_xml)
        snprintf(t->source, sizeof t->source, "HWLOC_XMLFILE=%s", env_xml);
    else
        snprintf(t->source, sizeof t->source,
                 t->from_xml ? "not this machine (hwloc)" : "this machine");
    if (compute_allowed_sets(t, err) < 0)
        goto fail;
    nm_topo_list_str(t->allowed_cpus, t->allowed_cpuset, sizeof t->allowed_cpuset);
    nm_topo_list_str(t->allowed_nodes, t->allowed_nodeset, sizeof t->allowed_nodeset);
    if (list_nodes(t, err) < 0 || assign_cpus(t, err) < 0 || load_distances(t, err) < 0 ||
        nm_topo_probe_pci(t, err) < 0)
        goto fail;
    if (!t->from_xml)
        check_memory(t);
    return t;
fail:
    nm_topo_free(t);
    return NULL;
}

void nm_topo_free(nm_topo *t) {
    if (!t)
        return;
    for (int i = 0; i < t->n_nodes; i++) {
        free(t->nodes[i].cpus);
        free(t->nodes[i].core_first_pu);
    }
    free(t->nodes);
    free(t->distances);
    free(t->pci);
    hwloc_bitmap_free(t->allowed_cpus);
    hwloc_bitmap_free(t->allowed_nodes);
    if (t->topo)
        hwloc_topology_destroy(t->topo);
    free(t);
}

int nm_topo_node_index(const nm_topo *t, int os_index) {
    for (int i = 0; i < t->n_nodes; i++)
        if (t->nodes[i].os_index == os_index)
            return i;
    return -1;
}
