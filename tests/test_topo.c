/* Topology probe: counts, cpusets, distances, PCI placement and node kinds
 * on real machines' hwloc XML exports (expected values taken from
 * `lstopo-no-graphics -i FILE --only TYPE` and `hwloc-calc -I pu node:N`),
 * plus this machine's own topology and thread pinning. */
#include "numa/topo.h"
#include "test_util.h"

#include <dirent.h>
#include <numa.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static char g_dir[1024];
static int g_have_dir;

static void xml_path(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "%s/topologies/%s", g_dir, name);
}

static nm_topo *load_xml(const char *name) {
    char path[1200];
    xml_path(path, sizeof path, name);
    nm_error err = {{0}};
    nm_topo *t = nm_topo_load(path, &err);
    if (!t)
        fail_msg("loading %s: %s", path, err.msg);
    return t;
}

static const nm_topo_node *node_by_os(const nm_topo *t, int os) {
    int i = nm_topo_node_index(t, os);
    assert_true(i >= 0);
    return &t->nodes[i];
}

static void assert_cpus(const nm_topo_node *n, const int *want, int count) {
    assert_int_equal(n->n_pus, count);
    for (int i = 0; i < count; i++)
        assert_int_equal(n->cpus[i], want[i]);
}

/* Invariants every topology must keep, whatever the machine. */
static void check_invariants(const nm_topo *t) {
    int pus_in_nodes = 0;
    for (int i = 0; i < t->n_nodes; i++) {
        const nm_topo_node *n = &t->nodes[i];
        if (i > 0)
            assert_true(n->os_index > t->nodes[i - 1].os_index);
        assert_true(n->allowed);
        assert_true(hwloc_bitmap_isset(t->allowed_nodes, (unsigned)n->os_index));
        assert_true(n->n_cores <= n->n_pus);
        assert_true((n->n_pus == 0) == (n->n_cores == 0));
        for (int k = 0; k < n->n_pus; k++) {
            assert_true(hwloc_bitmap_isset(t->allowed_cpus, (unsigned)n->cpus[k]));
            if (k > 0)
                assert_true(n->cpus[k] > n->cpus[k - 1]);
            /* a PU belongs to one node only */
            for (int j = 0; j < i; j++)
                for (int m = 0; m < t->nodes[j].n_pus; m++)
                    assert_int_not_equal(t->nodes[j].cpus[m], n->cpus[k]);
        }
        for (int c = 0; c < n->n_cores; c++) {
            int found = 0;
            for (int k = 0; k < n->n_pus; k++)
                found |= n->cpus[k] == n->core_first_pu[c];
            assert_true(found);
        }
        pus_in_nodes += n->n_pus;
    }
    assert_true(pus_in_nodes <= t->n_pus);
    assert_true(t->n_cores <= t->n_pus);
    assert_int_equal(hwloc_bitmap_weight(t->allowed_cpus) >= t->n_pus, 1);
}

struct expected_counts {
    const char *file;
    int nodes, packages, cores, pus;
};

/* From lstopo-no-graphics -i FILE --only numa|package|core|pu | wc -l. The
 * memattrs file has no Core objects at all (lstopo: 0): each PU is a core. */
static const struct expected_counts EXPECTED[] = {
    {"16amd64-8n2c-cpusets.xml", 5, 6, 10, 10},
    {"16em64t-4s2c2t.xml", 1, 4, 8, 16},
    {"24em64t-2n6c2t-pci.xml", 2, 2, 12, 24},
    {"28intel64-2p2g7c-CoDgroups.v1tov2.xml", 4, 2, 28, 28},
    {"32em64t-2n8c2t-pci-normalio.xml", 2, 2, 16, 32},
    {"64intel64-fakeKNL-SNC4-hybrid.xml", 8, 1, 16, 64},
    {"8intel64-4n2t-memattrs.xml", 4, 0, 8, 8},
};

static void test_every_xml_counts(void **state) {
    (void)state;
    if (!g_have_dir)
        skip();
    char dirpath[1200];
    snprintf(dirpath, sizeof dirpath, "%s/topologies", g_dir);
    DIR *dir = opendir(dirpath);
    assert_non_null(dir);
    int checked = 0;
    struct dirent *e;
    while ((e = readdir(dir))) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".xml"))
            continue;
        nm_topo *t = load_xml(e->d_name);
        assert_true(t->from_xml);
        check_invariants(t);
        nm_error err = {{0}};
        assert_int_equal(nm_pin_thread_to_cpu(t, 0, &err), -1);
        assert_non_null(strstr(err.msg, "not this machine"));
        for (size_t i = 0; i < sizeof EXPECTED / sizeof EXPECTED[0]; i++) {
            if (strcmp(EXPECTED[i].file, e->d_name))
                continue;
            assert_int_equal(t->n_nodes, EXPECTED[i].nodes);
            assert_int_equal(t->n_packages, EXPECTED[i].packages);
            assert_int_equal(t->n_cores, EXPECTED[i].cores);
            assert_int_equal(t->n_pus, EXPECTED[i].pus);
            checked++;
        }
        nm_topo_free(t);
    }
    closedir(dir);
    /* a renamed or missing file must not silently drop its checks */
    assert_int_equal(checked, (int)(sizeof EXPECTED / sizeof EXPECTED[0]));
}

static void test_memattrs_no_cores(void **state) {
    (void)state;
    if (!g_have_dir)
        skip();
    nm_topo *t = load_xml("8intel64-4n2t-memattrs.xml");
    assert_true(t->cores_are_pus);
    static const int node2[] = {4, 5};
    assert_cpus(node_by_os(t, 2), node2, 2);
    assert_int_equal(node_by_os(t, 2)->n_cores, 2);
    nm_topo_free(t);
}

static void test_restricted_cpuset(void **state) {
    (void)state;
    if (!g_have_dir)
        skip();
    /* Machine: allowed_cpuset 0xf06f, allowed_nodeset 0x3e out of 16 PUs and
     * 8 nodes. PUs 0-1 and 12-15 are allowed but their nodes (0, 6, 7) are
     * not; nodes 4 and 5 are allowed but have no CPUs. */
    nm_topo *t = load_xml("16amd64-8n2c-cpusets.xml");
    assert_string_equal(t->allowed_cpuset, "0-3,5-6,12-15");
    assert_string_equal(t->allowed_nodeset, "1-5");
    assert_int_equal(t->n_nodes, 5);
    assert_int_equal(nm_topo_node_index(t, 0), -1);
    assert_int_equal(nm_topo_node_index(t, 6), -1);
    static const int n1[] = {2, 3}, n2[] = {5}, n3[] = {6};
    assert_cpus(node_by_os(t, 1), n1, 2);
    assert_cpus(node_by_os(t, 2), n2, 1);
    assert_cpus(node_by_os(t, 3), n3, 1);
    assert_int_equal(node_by_os(t, 1)->n_cores, 2);
    for (int os = 4; os <= 5; os++) {
        assert_int_equal(node_by_os(t, os)->n_pus, 0);
        assert_int_equal(node_by_os(t, os)->n_cores, 0);
        assert_true(node_by_os(t, os)->memory_bytes == 8589934592ull);
    }
    assert_int_equal(t->n_pus, 10);
    nm_topo_free(t);
}

static void test_distances(void **state) {
    (void)state;
    if (!g_have_dir)
        skip();
    /* Cluster-on-Die: two dies per package, 21 within a package, 31 across. */
    nm_topo *t = load_xml("28intel64-2p2g7c-CoDgroups.v1tov2.xml");
    static const uint64_t want[16] = {10, 21, 31, 31, 21, 10, 31, 31,
                                      31, 31, 10, 21, 31, 31, 21, 10};
    assert_non_null(t->distances);
    for (int i = 0; i < 16; i++)
        assert_int_equal(t->distances[i], want[i]);
    nm_topo_free(t);

    t = load_xml("16amd64-8n2c-cpusets.xml"); /* matrix over nodes 1-5 only */
    assert_non_null(t->distances);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 5; j++)
            assert_int_equal(t->distances[i * 5 + j], i == j ? 10 : 20);
    nm_topo_free(t);

    t = load_xml("64intel64-fakeKNL-SNC4-hybrid.xml"); /* has none */
    assert_null(t->distances);
    nm_topo_free(t);
}

static const nm_topo_pci *pci_by_busid(const nm_topo *t, const char *busid) {
    for (int i = 0; i < t->n_pci; i++)
        if (!strcmp(t->pci[i].busid, busid))
            return &t->pci[i];
    fail_msg("no PCI entry for %s", busid);
    return NULL;
}

static void assert_pci(const nm_topo *t, const char *busid, const char *type, const char *name,
                       int node) {
    const nm_topo_pci *p = pci_by_busid(t, busid);
    assert_string_equal(p->type, type);
    assert_string_equal(p->name, name);
    assert_int_equal(p->node, node);
}

static void test_pci_placement(void **state) {
    (void)state;
    if (!g_have_dir)
        skip();
    /* lstopo: package 0 holds the NICs, the IDE disk and two display
     * devices; package 1 two 3D controllers. The IDE controller 00:1f.5 has
     * no disk and is not listed. */
    nm_topo *t = load_xml("24em64t-2n6c2t-pci.xml");
    assert_int_equal(t->n_pci, 8);
    assert_pci(t, "0000:00:1f.2", "block", "sda", 0);
    assert_pci(t, "0000:01:03.0", "gpu", "ES1000", 0);
    assert_pci(t, "0000:04:00.0", "net", "eth0", 0);
    assert_pci(t, "0000:04:00.1", "net", "eth1", 0);
    assert_pci(t, "0000:05:00.0", "net", "eth2,ib0", 0);
    assert_pci(t, "0000:06:00.0", "gpu", "10de:06d2", 0);
    assert_pci(t, "0000:11:00.0", "gpu", "10de:06d2", 1);
    assert_pci(t, "0000:14:00.0", "gpu", "10de:06d2", 1);
    nm_topo_free(t);

    t = load_xml("32em64t-2n8c2t-pci-normalio.xml");
    assert_pci(t, "0000:84:00.0", "gpu", "cuda0,card0", 1);
    assert_pci(t, "0000:81:00.0", "net", "eth0", 1);
    assert_pci(t, "0000:00:1f.2", "block", "sda", 0);
    nm_topo_free(t);
}

static void test_knl_cpuless_nodes(void **state) {
    (void)state;
    if (!g_have_dir)
        skip();
    nm_topo *t = load_xml("64intel64-fakeKNL-SNC4-hybrid.xml");
    static const int node0[] = {0, 1, 2, 3, 16, 17, 18, 19, 32, 33, 34, 35, 48, 49, 50, 51};
    assert_cpus(node_by_os(t, 0), node0, 16);
    static const int node0_cores[] = {0, 1, 2, 3};
    for (int c = 0; c < 4; c++)
        assert_int_equal(node_by_os(t, 0)->core_first_pu[c], node0_cores[c]);
    for (int os = 0; os < 8; os++) {
        const nm_topo_node *n = node_by_os(t, os);
        bool mcdram = os >= 4;
        assert_int_equal(n->n_cores, mcdram ? 0 : 4);
        assert_int_equal(n->n_pus, mcdram ? 0 : 16);
        assert_true(n->memory_bytes == (mcdram ? 2147483648ull : 1073741824ull));
        assert_int_equal(n->obj->subtype && !strcmp(n->obj->subtype, "MCDRAM"), mcdram);
    }
    nm_topo_free(t);
}

static void test_bad_paths(void **state) {
    (void)state;
    nm_error err = {{0}};
    assert_null(nm_topo_load("/nonexistent/dir/topo.xml", &err));
    assert_non_null(strstr(err.msg, "/nonexistent/dir/topo.xml"));

    char bad[] = "/tmp/test_topo_bad_XXXXXX";
    int fd = mkstemp(bad);
    assert_true(fd >= 0);
    static const char junk[] = "<topology version=\"2.0\"><object type=\"Mach";
    assert_int_equal(write(fd, junk, sizeof junk - 1), (ssize_t)(sizeof junk - 1));
    close(fd);
    memset(&err, 0, sizeof err);
    assert_null(nm_topo_load(bad, &err));
    assert_non_null(strstr(err.msg, bad));
    unlink(bad);
}

/* The nodes the kernel lets us allocate on: the cpuset's Mems_allowed_list,
 * narrowed by a strict MPOL_BIND policy (numactl --membind). */
static int count_usable_nodes(void) {
    FILE *f = fopen("/proc/self/status", "r");
    assert_non_null(f);
    char line[4096];
    int count = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "Mems_allowed_list:", 18))
            continue;
        char *list = line + 18;
        list += strspn(list, " \t");
        list[strcspn(list, "\n")] = 0;
        hwloc_bitmap_t set = hwloc_bitmap_alloc();
        assert_int_equal(hwloc_bitmap_list_sscanf(set, list), 0);
        struct bitmask *bind = numa_get_membind();
        assert_non_null(bind);
        count = 0;
        for (unsigned i = 0; i < bind->size; i++)
            count += numa_bitmask_isbitset(bind, i) && hwloc_bitmap_isset(set, i);
        numa_bitmask_free(bind);
        hwloc_bitmap_free(set);
    }
    fclose(f);
    return count;
}

static void test_this_machine(void **state) {
    (void)state;
    nm_error err = {{0}};
    nm_topo *t = nm_topo_load(NULL, &err);
    if (!t)
        fail_msg("%s", err.msg);
    assert_false(t->from_xml);
    assert_string_equal(t->source, "this machine");
    check_invariants(t);
    cpu_set_t mask;
    assert_int_equal(sched_getaffinity(0, sizeof mask, &mask), 0);
    assert_int_equal(t->n_pus, CPU_COUNT(&mask));
    if (CPU_COUNT(&mask) == sysconf(_SC_NPROCESSORS_ONLN))
        assert_int_equal(t->n_pus, sysconf(_SC_NPROCESSORS_ONLN));
    assert_int_equal(t->n_nodes, count_usable_nodes());
    assert_true(t->meminfo_total > 0);
    for (int i = 0; i < t->n_nodes; i++) {
        uint64_t hw = t->nodes[i].memory_bytes, sys = t->nodes[i].sysfs_meminfo_bytes;
        assert_true(sys > 0);
        if (!t->memory_mismatch) /* both come from the node's meminfo */
            assert_true((hw > sys ? hw - sys : sys - hw) <= sys / 50);
    }
    assert_int_equal(t->memory_mismatch, t->memory_note[0] != 0);
    if (t->memory_mismatch)
        assert_non_null(strstr(t->memory_note, "disagree"));
    nm_topo_free(t);
}

static void test_pinning(void **state) {
    (void)state;
    cpu_set_t saved;
    assert_int_equal(sched_getaffinity(0, sizeof saved, &saved), 0);
    nm_error err = {{0}};
    nm_topo *t = nm_topo_load(NULL, &err); /* before pinning: see header */
    if (!t)
        fail_msg("%s", err.msg);
    for (int i = 0; i < t->n_nodes; i++) {
        const nm_topo_node *n = &t->nodes[i];
        for (int k = 0; k < n->n_pus; k++) {
            if (nm_pin_thread_to_cpu(t, n->cpus[k], &err) < 0)
                fail_msg("%s", err.msg);
            cpu_set_t now;
            assert_int_equal(sched_getaffinity(0, sizeof now, &now), 0);
            assert_int_equal(CPU_COUNT(&now), 1);
            assert_true(CPU_ISSET(n->cpus[k], &now));
            assert_int_equal(sched_getcpu(), n->cpus[k]);
        }
        if (n->n_pus == 0)
            continue;
        if (nm_pin_thread_to_node(t, n->os_index, &err) < 0)
            fail_msg("%s", err.msg);
        cpu_set_t now;
        assert_int_equal(sched_getaffinity(0, sizeof now, &now), 0);
        assert_int_equal(CPU_COUNT(&now), n->n_pus);
        for (int k = 0; k < n->n_pus; k++)
            assert_true(CPU_ISSET(n->cpus[k], &now));
    }
    assert_int_equal(nm_pin_thread_to_cpu(t, 1 << 20, &err), -1);
    assert_non_null(strstr(err.msg, "not allowed"));
    assert_int_equal(nm_pin_thread_to_cpu(t, -1, &err), -1);
    assert_int_equal(nm_pin_thread_to_node(t, 4095, &err), -1);
    assert_non_null(strstr(err.msg, "node 4095"));
    nm_topo_free(t);
    assert_int_equal(sched_setaffinity(0, sizeof saved, &saved), 0);
}

static void test_env_xml_is_not_this_machine(void **state) {
    (void)state;
    if (!g_have_dir)
        skip();
    char path[1200];
    xml_path(path, sizeof path, "24em64t-2n6c2t-pci.xml");
    setenv("HWLOC_XMLFILE", path, 1);
    nm_error err = {{0}};
    nm_topo *t = nm_topo_load(NULL, &err);
    unsetenv("HWLOC_XMLFILE");
    if (!t)
        fail_msg("%s", err.msg);
    assert_true(t->from_xml);
    assert_int_equal(t->n_pus, 24);
    assert_int_equal(nm_pin_thread_to_node(t, 0, &err), -1);
    assert_non_null(strstr(err.msg, "not this machine"));
    nm_topo_free(t);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "%s", nm_test_shared_dir());
    char probe[1200];
    xml_path(probe, sizeof probe, "");
    g_have_dir = access(probe, R_OK | X_OK) == 0;
    if (!g_have_dir)
        printf("test_topo: XML tests skipped: %s is absent (set NUMALM_SHARED)\n", probe);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_xml_counts),
        cmocka_unit_test(test_memattrs_no_cores),
        cmocka_unit_test(test_restricted_cpuset),
        cmocka_unit_test(test_distances),
        cmocka_unit_test(test_pci_placement),
        cmocka_unit_test(test_knl_cpuless_nodes),
        cmocka_unit_test(test_bad_paths),
        cmocka_unit_test(test_this_machine),
        cmocka_unit_test(test_pinning),
        cmocka_unit_test(test_env_xml_is_not_this_machine),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
