/* Thread pinning through hwloc. Refuses anything the process may not use,
 * and any topology that does not describe the machine we run on: binding by
 * an XML file's CPU numbers would silently land threads on the wrong CPUs. */
#include "topo_internal.h"

#include <errno.h>
#include <string.h>

static int bind_thread(const nm_topo *t, hwloc_const_bitmap_t set, const char *what,
                       nm_error *err) {
    if (hwloc_set_cpubind(t->topo, set, HWLOC_CPUBIND_THREAD) < 0)
        return nm_fail(err, "cannot pin thread to %s: %s", what, strerror(errno));
    return 0;
}

static int refuse_foreign(const nm_topo *t, const char *what, nm_error *err) {
    if (!t || !t->topo)
        return nm_fail(err, "cannot pin thread to %s: no topology loaded", what);
    if (t->from_xml)
        return nm_fail(err,
                       "cannot pin thread to %s: the topology comes from %s, not this "
                       "machine",
                       what, t->source);
    return 0;
}

int nm_pin_thread_to_cpu(const nm_topo *t, int cpu, nm_error *err) {
    char what[32];
    snprintf(what, sizeof what, "cpu %d", cpu);
    if (refuse_foreign(t, what, err) < 0)
        return -1;
    if (cpu < 0 || !hwloc_bitmap_isset(t->allowed_cpus, (unsigned)cpu))
        return nm_fail(err,
                       "cannot pin thread to cpu %d: not allowed for this process "
                       "(allowed cpus: %s)",
                       cpu, t->allowed_cpuset[0] ? t->allowed_cpuset : "none");
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    if (!set)
        return nm_fail(err, "cannot pin thread to cpu %d: out of memory", cpu);
    hwloc_bitmap_only(set, (unsigned)cpu);
    int rc = bind_thread(t, set, what, err);
    hwloc_bitmap_free(set);
    return rc;
}

int nm_pin_thread_to_node(const nm_topo *t, int node_os, nm_error *err) {
    char what[32];
    snprintf(what, sizeof what, "node %d", node_os);
    if (refuse_foreign(t, what, err) < 0)
        return -1;
    int idx = nm_topo_node_index(t, node_os);
    if (idx < 0)
        return nm_fail(err,
                       "cannot pin thread to node %d: not allowed for this process "
                       "(allowed nodes: %s)",
                       node_os, t->allowed_nodeset[0] ? t->allowed_nodeset : "none");
    const nm_topo_node *n = &t->nodes[idx];
    if (n->n_pus == 0)
        return nm_fail(err,
                       "cannot pin thread to node %d: it has no CPUs this process may "
                       "use (allowed cpus: %s)",
                       node_os, t->allowed_cpuset[0] ? t->allowed_cpuset : "none");
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    if (!set)
        return nm_fail(err, "cannot pin thread to node %d: out of memory", node_os);
    for (int i = 0; i < n->n_pus; i++)
        hwloc_bitmap_set(set, (unsigned)n->cpus[i]);
    int rc = bind_thread(t, set, what, err);
    hwloc_bitmap_free(set);
    return rc;
}
