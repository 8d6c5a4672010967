/* `numalm topo` output: a table for people and --json for scripts. */
#include "topo_internal.h"

#include "common/json.h"
#include "common/util.h"

#include <string.h>

static void cpu_list_str(const nm_topo_node *n, char *buf, size_t len) {
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    if (!set) {
        snprintf(buf, len, "?");
        return;
    }
    for (int i = 0; i < n->n_pus; i++)
        hwloc_bitmap_set(set, (unsigned)n->cpus[i]);
    nm_topo_list_str(set, buf, len);
    if (!buf[0])
        snprintf(buf, len, "-");
    hwloc_bitmap_free(set);
}

static const char *node_subtype(const nm_topo_node *n) {
    return n->obj && n->obj->subtype && n->obj->subtype[0] ? n->obj->subtype : NULL;
}

static uint64_t listed_memory(const nm_topo *t) {
    uint64_t sum = 0;
    for (int i = 0; i < t->n_nodes; i++)
        sum += t->nodes[i].memory_bytes;
    return sum;
}

static void print_nodes(const nm_topo *t, FILE *out) {
    char mem[32], cpus[1024];
    fprintf(out, "NUMA nodes:\n  %4s  %10s  %5s  %4s  %-8s %s\n", "node", "memory", "cores", "PUs",
            "kind", "cpus");
    for (int i = 0; i < t->n_nodes; i++) {
        const nm_topo_node *n = &t->nodes[i];
        const char *kind = node_subtype(n);
        cpu_list_str(n, cpus, sizeof cpus);
        fprintf(out, "  %4d  %10s  %5d  %4d  %-8s %s\n", n->os_index,
                nm_fmt_bytes(n->memory_bytes, mem, sizeof mem), n->n_cores, n->n_pus,
                kind ? kind : "DRAM", cpus);
    }
}

static void print_distances(const nm_topo *t, FILE *out) {
    if (!t->distances) {
        fprintf(out, "Distances: unknown (no NUMA latency matrix)\n");
        return;
    }
    fprintf(out, "Distances (relative latency):\n      ");
    for (int j = 0; j < t->n_nodes; j++)
        fprintf(out, " %5d", t->nodes[j].os_index);
    fprintf(out, "\n");
    for (int i = 0; i < t->n_nodes; i++) {
        fprintf(out, "  %4d", t->nodes[i].os_index);
        for (int j = 0; j < t->n_nodes; j++)
            fprintf(out, " %5llu", (unsigned long long)t->distances[i * t->n_nodes + j]);
        fprintf(out, "\n");
    }
}

static void print_pci(const nm_topo *t, FILE *out) {
    if (t->n_pci == 0) {
        fprintf(out, "PCI devices: none found (GPU, NVMe, disk, network)\n");
        return;
    }
    fprintf(out, "PCI devices:\n  %-6s %4s  %-12s  %s\n", "type", "node", "busid", "name");
    for (int i = 0; i < t->n_pci; i++) {
        const nm_topo_pci *p = &t->pci[i];
        char node[16] = "?";
        if (p->node >= 0)
            snprintf(node, sizeof node, "%d", p->node);
        fprintf(out, "  %-6s %4s  %-12s  %s\n", p->type, node, p->busid[0] ? p->busid : "-",
                p->name);
    }
}

static void print_memory(const nm_topo *t, FILE *out) {
    char a[32], b[32], c[32];
    if (t->from_xml)
        return;
    fprintf(out,
            "Memory: listed nodes %s (hwloc), all nodes %s (sysfs), MemTotal %s "
            "(/proc/meminfo)\n",
            nm_fmt_bytes(listed_memory(t), a, sizeof a),
            t->sysfs_nodes_total ? nm_fmt_bytes(t->sysfs_nodes_total, b, sizeof b) : "n/a",
            t->meminfo_total ? nm_fmt_bytes(t->meminfo_total, c, sizeof c) : "n/a");
    if (t->memory_mismatch)
        fprintf(out, "Memory MISMATCH: %s\n", t->memory_note);
}

void nm_topo_print(const nm_topo *t, FILE *out) {
    fprintf(out, "Topology: %s%s\n", t->source, t->from_xml ? " (not this machine)" : "");
    fprintf(out, "Totals: %d NUMA nodes, %d packages, %d cores%s, %d PUs\n", t->n_nodes,
            t->n_packages, t->n_cores, t->cores_are_pus ? " (no Core objects: PUs)" : "", t->n_pus);
    fprintf(out, "Allowed: cpus %s, nodes %s\n\n",
            t->allowed_cpuset[0] ? t->allowed_cpuset : "none",
            t->allowed_nodeset[0] ? t->allowed_nodeset : "none");
    print_nodes(t, out);
    fprintf(out, "\n");
    print_distances(t, out);
    fprintf(out, "\n");
    print_pci(t, out);
    if (!t->from_xml)
        fprintf(out, "\n");
    print_memory(t, out);
}

static void json_nodes(const nm_topo *t, nm_json *j) {
    nm_json_key(j, "nodes");
    nm_json_arr_begin(j);
    for (int i = 0; i < t->n_nodes; i++) {
        const nm_topo_node *n = &t->nodes[i];
        nm_json_obj_begin(j);
        nm_json_kint(j, "os_index", n->os_index);
        nm_json_kuint(j, "memory_bytes", n->memory_bytes);
        if (!t->from_xml)
            nm_json_kuint(j, "sysfs_meminfo_bytes", n->sysfs_meminfo_bytes);
        nm_json_key(j, "subtype");
        if (node_subtype(n))
            nm_json_str(j, node_subtype(n));
        else
            nm_json_null(j);
        nm_json_kint(j, "cores", n->n_cores);
        nm_json_kint(j, "pus", n->n_pus);
        nm_json_kint_array(j, "cpus", n->cpus, n->n_pus);
        nm_json_kint_array(j, "core_first_pu", n->core_first_pu, n->n_cores);
        nm_json_kbool(j, "allowed", n->allowed);
        nm_json_obj_end(j);
    }
    nm_json_arr_end(j);
}

static void json_distances(const nm_topo *t, nm_json *j) {
    nm_json_key(j, "distances");
    if (!t->distances) {
        nm_json_null(j);
        return;
    }
    nm_json_arr_begin(j);
    for (int i = 0; i < t->n_nodes; i++) {
        nm_json_arr_begin(j);
        for (int k = 0; k < t->n_nodes; k++)
            nm_json_uint(j, t->distances[i * t->n_nodes + k]);
        nm_json_arr_end(j);
    }
    nm_json_arr_end(j);
}

static void json_pci(const nm_topo *t, nm_json *j) {
    nm_json_key(j, "pci");
    nm_json_arr_begin(j);
    for (int i = 0; i < t->n_pci; i++) {
        nm_json_obj_begin(j);
        nm_json_kstr(j, "type", t->pci[i].type);
        nm_json_kstr(j, "name", t->pci[i].name);
        nm_json_kstr(j, "busid", t->pci[i].busid);
        nm_json_kint(j, "node", t->pci[i].node);
        nm_json_obj_end(j);
    }
    nm_json_arr_end(j);
}

static void json_memory(const nm_topo *t, nm_json *j) {
    nm_json_kuint(j, "nodes_memory_total_bytes", listed_memory(t));
    if (t->from_xml)
        return; /* /proc and /sys describe this machine, not the file */
    nm_json_kuint(j, "sysfs_nodes_total_bytes", t->sysfs_nodes_total);
    nm_json_kuint(j, "meminfo_total_bytes", t->meminfo_total);
    nm_json_kbool(j, "memory_mismatch", t->memory_mismatch);
    nm_json_key(j, "memory_note");
    if (t->memory_note[0])
        nm_json_str(j, t->memory_note);
    else
        nm_json_null(j);
}

void nm_topo_print_json(const nm_topo *t, FILE *out) {
    nm_json j;
    nm_json_init(&j, out);
    nm_json_obj_begin(&j);
    nm_json_kstr(&j, "source", t->source);
    nm_json_kbool(&j, "from_xml", t->from_xml);
    nm_json_kint(&j, "n_nodes", t->n_nodes);
    nm_json_kint(&j, "n_packages", t->n_packages);
    nm_json_kint(&j, "n_cores", t->n_cores);
    nm_json_kint(&j, "n_pus", t->n_pus);
    nm_json_kbool(&j, "cores_are_pus", t->cores_are_pus);
    nm_json_kstr(&j, "allowed_cpuset", t->allowed_cpuset);
    nm_json_kstr(&j, "allowed_nodeset", t->allowed_nodeset);
    json_nodes(t, &j);
    json_distances(t, &j);
    json_pci(t, &j);
    json_memory(t, &j);
    nm_json_obj_end(&j);
    nm_json_finish(&j);
}
