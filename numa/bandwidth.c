/* Bandwidth sources for the traffic model (bandwidth.h).
 *
 * Presets: peak = channels x transfer rate x 8 bytes per socket and link
 * rate x 2 bytes x links per direction, from the vendors' product
 * specifications; sustained = 0.8 x peak for memory (STREAM Triad reaches
 * 74-80 % of the DDR wire rate on the systems it is published for) and
 * 0.7 x the raw link rate (an assumption: coherence traffic and protocol
 * overhead share the links). One core's read stream is an assumption per
 * family (a core keeps ~10-20 cache-line misses in flight: 64 B x 12 /
 * 90 ns ~ 8.5 GB/s on Intel server cores). docs/prediction.md lists them
 * with their sources. */
#include "bandwidth.h"

#include <fnmatch.h>
#include <hwloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MEM_EFF 0.8
#define LINK_EFF 0.7
/* DDR: channels x MT/s x 8 bytes; link: GT/s x 2 bytes x links */
#define DDR(ch, mts) ((ch) * (mts)*8e-3 * MEM_EFF)
#define LINKS(n, gts_x2) ((n) * (gts_x2)*LINK_EFF)

static const nm_bw_preset PRESETS[] = {
    {"sandybridge-ep", "*E5-26* 0 @*",
     "Xeon E5-2600 (Sandy Bridge-EP): 4 x DDR3-1600, 2 QPI 8 GT/s", DDR(4, 1600), LINKS(2, 16.0),
     8.0, "Intel ARK, Xeon E5-2650"},
    {"ivybridge-ep", "*E5-26* v2 *", "Xeon E5-2600 v2 (Ivy Bridge-EP): 4 x DDR3-1866, 2 QPI 8 GT/s",
     DDR(4, 1866), LINKS(2, 16.0), 8.0, "Intel ARK, Xeon E5-2680 v2"},
    {"haswell-ep", "*E5-26* v3 *", "Xeon E5-2600 v3 (Haswell-EP): 4 x DDR4-2133, 2 QPI 9.6 GT/s",
     DDR(4, 2133), LINKS(2, 19.2), 9.0, "Intel ARK, Xeon E5-2683 v3"},
    {"broadwell-ep", "*E5-26* v4 *",
     "Xeon E5-2600 v4 (Broadwell-EP): 4 x DDR4-2400, 2 QPI 9.6 GT/s", DDR(4, 2400), LINKS(2, 19.2),
     9.0, "Intel ARK, Xeon E5-2698 v4"},
    {"skylake-sp", "*Xeon(R) [PGSB][a-z]* [3-9]1[0-9][0-9]*",
     "Xeon Scalable 1st gen (Skylake-SP): 6 x DDR4-2666, 3 UPI 10.4 GT/s", DDR(6, 2666),
     LINKS(3, 20.8), 10.0, "Intel ARK, Xeon Platinum 8180"},
    {"cascadelake-sp", "*Xeon(R) [PGSB][a-z]* [3-9]2[0-9][0-9]*",
     "Xeon Scalable 2nd gen (Cascade Lake): 6 x DDR4-2933, 3 UPI 10.4 GT/s", DDR(6, 2933),
     LINKS(3, 20.8), 10.0, "Intel ARK, Xeon Platinum 8280"},
    {"icelake-sp", "*Xeon(R) [PGSB][a-z]* [3-9]3[0-9][0-9]*",
     "Xeon Scalable 3rd gen (Ice Lake-SP): 8 x DDR4-3200, 3 UPI 11.2 GT/s", DDR(8, 3200),
     LINKS(3, 22.4), 12.0, "Intel ARK, Xeon Platinum 8380"},
    {"sapphirerapids", "*Xeon(R) [PGSB][a-z]* [3-9]4[0-9][0-9]*",
     "Xeon Scalable 4th gen (Sapphire Rapids): 8 x DDR5-4800, 4 UPI 16 GT/s", DDR(8, 4800),
     LINKS(4, 32.0), 12.0, "Intel ARK, Xeon Platinum 8480+"},
    {"emeraldrapids", "*Xeon(R) [PGSB][a-z]* [3-9]5[0-9][0-9]*",
     "Xeon Scalable 5th gen (Emerald Rapids): 8 x DDR5-5600, 4 UPI 20 GT/s", DDR(8, 5600),
     LINKS(4, 40.0), 12.0, "Intel ARK, Xeon Platinum 8592+"},
    {"graniterapids", "*Xeon(R) 6[79][0-9][0-9]P*",
     "Xeon 6 (Granite Rapids): 12 x DDR5-6400, 6 UPI 24 GT/s", DDR(12, 6400), LINKS(6, 48.0), 12.0,
     "Intel ARK, Xeon 6980P"},
    {"epyc-rome", "*EPYC 7??2*", "EPYC 7002 (Rome): 8 x DDR4-3200, 4 xGMI2 x16 at 16 Gbps",
     DDR(8, 3200), LINKS(4, 32.0), 20.0, "AMD EPYC 7002 product brief"},
    {"epyc-milan", "*EPYC 7??3*", "EPYC 7003 (Milan): 8 x DDR4-3200, 4 xGMI2 x16 at 18 Gbps",
     DDR(8, 3200), LINKS(4, 36.0), 20.0, "AMD EPYC 7003 product brief"},
    {"epyc-genoa", "*EPYC 9??4*", "EPYC 9004 (Genoa): 12 x DDR5-4800, 4 xGMI3 x16 at 32 Gbps",
     DDR(12, 4800), LINKS(4, 64.0), 25.0, "AMD EPYC 9004 product brief"},
    {"epyc-turin", "*EPYC 9??5*", "EPYC 9005 (Turin): 12 x DDR5-6000, 4 xGMI3 x16 at 32 Gbps",
     DDR(12, 6000), LINKS(4, 64.0), 25.0, "AMD EPYC 9005 product brief"},
    {"knl", "06/57", "Xeon Phi 7200 (Knights Landing), DDR4 nodes: 6 x DDR4-2400, mesh",
     DDR(6, 2400), DDR(6, 2400), 5.0, "Intel ARK, Xeon Phi 7250"},
    {NULL, NULL, NULL, 0, 0, 0, NULL},
};

/* For a machine the table does not know: a stated guess (a 2015-2020
 * dual-socket server), flagged as such in every report. */
static const nm_bw_preset GENERIC = {"generic",
                                     NULL,
                                     "unknown platform: a guess (a 2015-2020 dual-socket server)",
                                     60.0,
                                     30.0,
                                     10.0,
                                     "a guess, not a measurement: give --bandwidth"};

const nm_bw_preset *nm_bw_presets(void) {
    return PRESETS;
}

const nm_bw_preset *nm_bw_preset_find(const char *name) {
    for (const nm_bw_preset *p = PRESETS; p->name; p++)
        if (!strcmp(p->name, name))
            return p;
    return !strcmp(name, GENERIC.name) ? &GENERIC : NULL;
}

/* The CPU model string hwloc recorded for the first package. */
static const char *cpu_model(const nm_topo *t) {
    hwloc_obj_t pkg = hwloc_get_obj_by_type(t->topo, HWLOC_OBJ_PACKAGE, 0);
    const char *m = pkg ? hwloc_obj_get_info_by_name(pkg, "CPUModel") : NULL;
    if (!m)
        m = hwloc_obj_get_info_by_name(hwloc_get_root_obj(t->topo), "CPUModel");
    return m;
}

const nm_bw_preset *nm_bw_preset_for_model(const char *model) {
    for (const nm_bw_preset *p = PRESETS; model && p->name; p++)
        if (p->match && fnmatch(p->match, model, 0) == 0)
            return p;
    return NULL;
}

/* The package (socket) holding node os's CPUs: hwloc 2 attaches a node
 * to the object whose cpuset it covers, which for topologies converted
 * from hwloc 1 can be above the packages, so look by cpuset. NULL when no
 * package covers it (no Package objects, or a CPU-less node). */
static hwloc_obj_t package_of(const nm_topo *t, int os) {
    int i = nm_topo_node_index(t, os);
    if (i < 0 || !t->nodes[i].obj || hwloc_bitmap_iszero(t->nodes[i].obj->cpuset))
        return NULL;
    hwloc_obj_t pkg = NULL;
    while ((pkg = hwloc_get_next_obj_by_type(t->topo, HWLOC_OBJ_PACKAGE, pkg)))
        if (hwloc_bitmap_isincluded(t->nodes[i].obj->cpuset, pkg->cpuset))
            return pkg;
    return NULL;
}

/* Plan nodes k and j in the same package (Cluster-on-Die, SNC): the
 * path between them is the on-die interconnect, not the socket link. */
static bool same_package(const nm_topo *t, int os_k, int os_j) {
    hwloc_obj_t a = package_of(t, os_k);
    return a && a == package_of(t, os_j);
}

/* NUMA nodes sharing node k's package: a package's memory channels are
 * split between them. */
static int nodes_in_package(const nm_topo *t, int os_k) {
    int n = 0;
    for (int i = 0; i < t->n_nodes; i++)
        n += same_package(t, os_k, t->nodes[i].os_index);
    return n > 0 ? n : 1;
}

static void fill_preset(const nm_topo *t, const nm_plan *p, const nm_bw_preset *ps, const char *tag,
                        nm_bw *bw) {
    for (int k = 0; k < p->n_nodes; k++) {
        int ok = p->nodes[k].os_index;
        double local = ps->local_gbs / nodes_in_package(t, ok);
        for (int j = 0; j < p->n_nodes; j++) {
            int oj = p->nodes[j].os_index;
            double v = k == j                    ? local
                       : same_package(t, ok, oj) ? ps->local_gbs / nodes_in_package(t, oj)
                                                 : ps->link_gbs;
            bw->gbs[k][j] = v;
            snprintf(bw->source[k][j], sizeof bw->source[k][j], "%s", tag);
        }
    }
    bw->core_gbs = ps->core_gbs;
}

/* hwloc memattr Bandwidth (MiB/s) of node j's memory for node k's CPUs;
 * 0 when the topology does not say. */
static double memattr_gbs(const nm_topo *t, int os_k, int os_j) {
    int ik = nm_topo_node_index(t, os_k), ij = nm_topo_node_index(t, os_j);
    if (ik < 0 || ij < 0 || !t->nodes[ik].obj || !t->nodes[ij].obj)
        return 0;
    struct hwloc_location init = {.type = HWLOC_LOCATION_TYPE_CPUSET};
    init.location.cpuset = t->nodes[ik].obj->cpuset;
    hwloc_uint64_t v = 0;
    if (hwloc_memattr_get_value(t->topo, HWLOC_MEMATTR_ID_BANDWIDTH, t->nodes[ij].obj, &init, 0,
                                &v) != 0)
        return 0;
    double gbs = (double)v * 1048576.0 / 1e9;
    /* below 1 GB/s is no DRAM or HBM figure (hwloc's test files carry such
     * placeholders): left to the next source */
    return gbs >= 1.0 ? gbs : 0;
}

static int apply_hmat(const nm_topo *t, const nm_plan *p, nm_bw *bw) {
    int found = 0;
    for (int k = 0; k < p->n_nodes; k++)
        for (int j = 0; j < p->n_nodes; j++) {
            double v = memattr_gbs(t, p->nodes[k].os_index, p->nodes[j].os_index);
            if (v > 0) {
                bw->gbs[k][j] = v;
                snprintf(bw->source[k][j], sizeof bw->source[k][j], "hmat");
                found++;
            }
        }
    return found;
}

/* "LOCAL[,LINK[,CORE]]" in GB/s. 1 if it was numbers, 0 if not, -1 bad. */
static int parse_numbers(const char *spec, double v[3], nm_error *err) {
    char *end;
    const char *s = spec;
    int n = 0;
    while (n < 3) {
        double x = strtod(s, &end);
        if (end == s)
            return n == 0
                       ? 0
                       : nm_fail(err, "--bandwidth %s: expected LOCAL[,LINK[,CORE]] in GB/s", spec);
        if (!(x > 0))
            return nm_fail(err, "--bandwidth %s: bandwidths must be positive", spec);
        v[n++] = x;
        if (*end != ',')
            break;
        s = end + 1;
    }
    if (*end)
        return nm_fail(err, "--bandwidth %s: expected LOCAL[,LINK[,CORE]] in GB/s", spec);
    return 1;
}

/* Package index of each plan node (-1 when no package covers it). */
static void fill_packages(const nm_topo *t, const nm_plan *p, nm_bw *bw) {
    for (int k = 0; k < p->n_nodes; k++) {
        hwloc_obj_t pkg = package_of(t, p->nodes[k].os_index);
        bw->package[k] = pkg ? (int)pkg->logical_index : -1;
    }
}

int nm_bw_resolve(const nm_topo *t, const nm_plan *p, const nm_bw_opts *o, nm_bw *bw,
                  bool *want_measure, nm_error *err) {
    memset(bw, 0, sizeof *bw);
    bw->n = p->n_nodes;
    fill_packages(t, p, bw);
    *want_measure = false;
    const char *spec = o && o->spec ? o->spec : "auto";
    const char *model = cpu_model(t);
    const nm_bw_preset *ps = NULL;
    double v[3] = {0, 0, 0};
    int numbers = parse_numbers(spec, v, err);
    if (numbers < 0)
        return -1;
    if (numbers) {
        nm_bw_preset given = {"option",
                              NULL,
                              "--bandwidth",
                              v[0],
                              v[1] > 0 ? v[1] : v[0] / 2,
                              v[2] > 0 ? v[2] : GENERIC.core_gbs,
                              "--bandwidth"};
        fill_preset(t, p, &given, "option", bw);
        snprintf(bw->summary, sizeof bw->summary,
                 "--bandwidth: local %.1f, link %.1f, one core %.1f GB/s", given.local_gbs,
                 given.link_gbs, given.core_gbs);
        return 0;
    }
    if (!strcmp(spec, "measure")) {
        if (t->from_xml)
            return nm_fail(err, "--bandwidth measure: %s is another machine", t->source);
        fill_preset(t, p, &GENERIC, "generic", bw);
        *want_measure = true;
        return 0;
    }
    if (strcmp(spec, "auto")) {
        if (!(ps = nm_bw_preset_find(spec))) {
            char names[512] = "";
            for (const nm_bw_preset *q = PRESETS; q->name; q++)
                snprintf(names + strlen(names), sizeof names - strlen(names), " %s", q->name);
            return nm_fail(err,
                           "--bandwidth %s: not a number list (LOCAL[,LINK[,CORE]] GB/s), "
                           "'auto', 'measure' or a preset:%s",
                           spec, names);
        }
        fill_preset(t, p, ps, "preset", bw);
        snprintf(bw->summary, sizeof bw->summary, "preset %s: %s (%s)", ps->name, ps->what,
                 ps->source);
        return 0;
    }
    /* auto: the CPU's preset, else generic; HMAT figures over either; on
     * this machine a measurement beats both presets */
    ps = nm_bw_preset_for_model(model);
    fill_preset(t, p, ps ? ps : &GENERIC, ps ? "preset" : "generic", bw);
    int hmat = apply_hmat(t, p, bw);
    if (hmat == p->n_nodes * p->n_nodes) {
        snprintf(bw->summary, sizeof bw->summary, "hwloc memory attributes (HMAT) for every pair");
        return 0;
    }
    if (!t->from_xml) {
        *want_measure = true;
        return 0;
    }
    snprintf(bw->summary, sizeof bw->summary, "%s%s%s%s%s", hmat ? "HMAT for some pairs, " : "",
             ps ? "preset " : "", ps ? ps->name : "generic guess (no --bandwidth, no preset for ",
             ps ? "" : (model ? model : "an unknown CPU"), ps ? "" : ")");
    return 0;
}

void nm_bw_set_measured(nm_bw *bw, const double *gbs, double core_gbs, const char *how) {
    for (int k = 0; k < bw->n; k++)
        for (int j = 0; j < bw->n; j++)
            if (strcmp(bw->source[k][j], "hmat") && strcmp(bw->source[k][j], "option")) {
                bw->gbs[k][j] = gbs[k * bw->n + j];
                snprintf(bw->source[k][j], sizeof bw->source[k][j], "measured");
            }
    bw->core_gbs = core_gbs;
    snprintf(bw->summary, sizeof bw->summary, "measured on this machine: %s", how);
}
