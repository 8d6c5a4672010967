/* Memory admission (numa/fit.h, numa/meminfo.h): the parsers of the kernel's
 * files, the per-node bill of every placement on every public topology, and
 * the decision (--placement auto and the refusal) against synthetic free
 * memory figures. The models are header-only files (mkmodel --sparse). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/util.h"
#include "gguf/ggml_types.h"
#include "numa/fit.h"
#include "test_topos.h"
#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MIB (1ull << 20)
#define GIB (1ull << 30)

static char g_dir[512];
static nm_gguf *g_1b;   /* TinyLlama 1.1B shape, Q8_0: 1.17 GB */
static nm_gguf *g_tiny; /* the tiny preset, F16 */
static char *g_topos[32];
static int g_n_topos;
static char g_topo_dir[1024];

static nm_gguf *sparse_model(const char *name, const char *preset, uint32_t type) {
    char path[700];
    nm_error err = {{0}};
    nm_mkmodel_opts o = {.type = type, .seed = 1, .sparse = true};
    snprintf(path, sizeof path, "%s/%s.gguf", g_dir, name);
    if (nm_mkmodel_preset(preset, &o.shape, &err) || nm_mkmodel_write(path, &o, NULL, &err))
        fail_msg("mkmodel %s: %s", path, err.msg);
    nm_gguf *g = nm_gguf_open(path, &err);
    if (!g)
        fail_msg("%s: %s", path, err.msg);
    return g;
}

static int setup(void **state) {
    (void)state;
    if (nm_test_mkdtemp(g_dir, sizeof g_dir, "fit"))
        return -1;
    g_1b = sparse_model("1b", "1b", NM_TYPE_Q8_0);
    g_tiny = sparse_model("tiny", "tiny", NM_TYPE_F16);
    g_n_topos = nm_test_list_topos(g_topo_dir, sizeof g_topo_dir, g_topos, 32);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    char path[700];
    nm_gguf_close(g_1b);
    nm_gguf_close(g_tiny);
    snprintf(path, sizeof path, "%s/1b.gguf", g_dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/tiny.gguf", g_dir);
    unlink(path);
    rmdir(g_dir);
    nm_test_free_topos(g_topos, g_n_topos);
    return 0;
}

static nm_topo *topo(const char *file) {
    return nm_test_load_topo(g_topo_dir, file);
}

/* ---- parsers ---- */

static void test_parse_meminfo(void **state) {
    (void)state;
    const char *text = "Node 1 MemTotal:         515620 kB\n"
                       "Node 1 MemFree:          487992 kB\n"
                       "Node 1 MemUsed:           27628 kB\n"
                       "Node 1 Active(file):        100 kB\n"
                       "Node 1 Inactive(file):     3348 kB\n";
    nm_node_mem n = {0};
    assert_int_equal(nm_parse_node_meminfo(text, &n), 0);
    assert_int_equal(n.total, 515620ull * 1024);
    assert_int_equal(n.free, 487992ull * 1024);
    assert_int_equal(n.reclaimable, 3348ull * 1024);
    assert_int_equal(nm_parse_node_meminfo("Node 0 MemTotal: 5 kB\n", &n), -1);
}

static void test_parse_zoneinfo(void **state) {
    (void)state;
    const char *text = "Node 0, zone      DMA\n  pages free     3\n        min      1\n"
                       "        low      2\n        high     3\n"
                       "Node 0, zone   Normal\n        min      10\n        high     30\n"
                       "Node 1, zone   Normal\n        high     500\n        protection: (0)\n";
    long ps = sysconf(_SC_PAGESIZE);
    assert_int_equal(nm_parse_zoneinfo_high(text, 0), 33ull * (uint64_t)ps);
    assert_int_equal(nm_parse_zoneinfo_high(text, 1), 500ull * (uint64_t)ps);
    assert_int_equal(nm_parse_zoneinfo_high(text, 2), 0);
    /* the reserve: watermark + 1 %, at least 16 MiB */
    assert_int_equal(nm_node_mem_margin(512 * MIB, 0), 16 * MIB);
    assert_int_equal(nm_node_mem_margin(100 * GIB, 8 * MIB), 8 * MIB + GIB);
}

static void test_parse_cgroup_limit(void **state) {
    (void)state;
    uint64_t v = 0;
    assert_int_equal(nm_parse_cgroup_limit("max\n", &v), 0);
    assert_true(v == UINT64_MAX);
    assert_int_equal(nm_parse_cgroup_limit("9223372036854771712\n", &v), 0); /* v1 "none" */
    assert_true(v == UINT64_MAX);
    assert_int_equal(nm_parse_cgroup_limit("268435456\n", &v), 0);
    assert_int_equal(v, 256 * MIB);
    assert_int_equal(nm_parse_cgroup_limit("lots", &v), -1);
}

/* ---- the bill ---- */

/* Free memory `free` on every node of t (known, no reserve, no limits). */
static void synthetic(const nm_topo *t, uint64_t free, nm_mem_state *m) {
    memset(m, 0, sizeof *m);
    snprintf(m->source, sizeof m->source, "synthetic");
    m->n_nodes = t->n_nodes;
    for (int i = 0; i < t->n_nodes; i++)
        m->nodes[i] = (nm_node_mem){
            .os_index = t->nodes[i].os_index, .total = free, .free = free, .known = true};
}

static const nm_fit_opts RUN_OPTS = {
    .with_model = true, .n_ctx = 4096, .kv_elem_bytes = 2, .staging_bytes = 8 * MIB};

static void check_bill(const nm_gguf *g, const nm_topo *t, nm_placement pl, int fixed) {
    nm_error err = {{0}};
    nm_plan_opts po = {.placement = pl, .fixed_node = fixed};
    nm_plan *p = nm_plan_build(g, t, &po, &err);
    if (!p)
        fail_msg("%s %s: %s", t->source, nm_placement_name(pl), err.msg);
    nm_mem_state m;
    synthetic(t, 1000 * GIB, &m);
    nm_fit f;
    nm_fit_compute(p, &RUN_OPTS, &m, &f);
    uint64_t weights = 0, kv = 0, arenas = 0, heads = 0, staging = 0;
    for (int i = 0; i < f.n_nodes; i++) {
        weights += f.nodes[i].weights;
        kv += f.nodes[i].kv;
        staging += f.nodes[i].staging;
        assert_int_equal(f.nodes[i].need, f.nodes[i].weights + f.nodes[i].kv + f.nodes[i].scratch +
                                              f.nodes[i].staging);
        assert_true(f.nodes[i].fits);
    }
    for (int a = 0; a < p->n_arenas; a++)
        arenas += p->arena_bytes[a];
    for (int k = 0; k < p->n_nodes; k++)
        heads += p->nodes[k].kv_head1 - p->nodes[k].kv_head0;
    /* every arena byte is billed to a node; interleave rounds each share
     * up to a page */
    if (pl == NM_PLACE_INTERLEAVE) {
        assert_true(weights >= arenas && weights < arenas + 4096ull * (uint64_t)p->n_nodes);
        assert_int_equal(staging, 8 * MIB * (uint64_t)p->n_nodes);
    } else {
        assert_int_equal(weights, arenas);
        assert_int_equal(staging, 8 * MIB * (uint64_t)p->n_arenas);
    }
    for (int a = 0; a < p->n_arenas && pl != NM_PLACE_INTERLEAVE; a++)
        for (int i = 0; i < f.n_nodes; i++)
            if (f.nodes[i].os_index == p->arena_node[a])
                assert_true(f.nodes[i].weights >= p->arena_bytes[a]);
    /* K and V of every KV head, every layer, at 4096 positions in F16 */
    assert_int_equal(heads, p->hp.n_head_kv);
    assert_int_equal(kv, 2ull * p->hp.n_layer * p->hp.n_head_kv * 4096 * p->hp.head_dim * 2);
    assert_true(f.fits && f.nodes_fit && f.cgroup_fits && f.as_fits);
    /* a server's 8 slots: 8 caches of n_ctx each, the rest unchanged */
    nm_fit_opts slots = RUN_OPTS;
    slots.n_seq = 8;
    nm_fit f8;
    nm_fit_compute(p, &slots, &m, &f8);
    for (int i = 0; i < f.n_nodes; i++) {
        assert_int_equal(f8.nodes[i].kv, 8 * f.nodes[i].kv);
        assert_int_equal(f8.nodes[i].need - f8.nodes[i].kv, f.nodes[i].need - f.nodes[i].kv);
    }
    nm_plan_free(p);
}

static void test_bill_every_topology(void **state) {
    (void)state;
    if (!g_n_topos)
        skip();
    for (int i = 0; i < g_n_topos; i++) {
        nm_topo *t = topo(g_topos[i]);
        check_bill(g_1b, t, NM_PLACE_SHARD, -1);
        check_bill(g_1b, t, NM_PLACE_REPLICATE, -1);
        check_bill(g_1b, t, NM_PLACE_INTERLEAVE, -1);
        check_bill(g_tiny, t, NM_PLACE_NODE, t->nodes[0].os_index);
        nm_topo_free(t);
    }
}

/* The largest per-node need of a row of the table. */
static uint64_t row_max(const nm_fit_table *tab, nm_placement p) {
    int r = nm_fit_table_row(tab, p, -1);
    assert_true(r >= 0);
    uint64_t mx = 0;
    for (int i = 0; i < tab->rows[r].n_nodes; i++)
        mx = tab->rows[r].nodes[i].need > mx ? tab->rows[r].nodes[i].need : mx;
    return mx;
}

static int cpu_nodes(const nm_topo *t) {
    int n = 0;
    for (int i = 0; i < t->n_nodes; i++)
        n += t->nodes[i].n_cores > 0;
    return n;
}

static void table(const nm_topo *t, uint64_t free, const nm_fit_opts *fo, nm_fit_table *tab) {
    nm_mem_state m;
    nm_error err = {{0}};
    synthetic(t, free, &m);
    nm_plan_opts po = {0};
    if (nm_fit_table_build(g_1b, t, &po, fo, &m, tab, &err))
        fail_msg("%s: %s", t->source, err.msg);
}

static const char *auto_name(const nm_fit_table *tab) {
    return tab->auto_row < 0 ? "none" : nm_placement_name(tab->rows[tab->auto_row].placement);
}

/* With free memory just above / below each placement's largest per-node
 * need, auto takes replicate, then shard, then interleave, then nothing,
 * and the refusals name the nodes and the figures. */
static void check_auto(const nm_topo *t) {
    nm_fit_table *tab = calloc(1, sizeof *tab);
    assert_non_null(tab);
    table(t, 1000 * GIB, &RUN_OPTS, tab);
    uint64_t rep = row_max(tab, NM_PLACE_REPLICATE), sh = row_max(tab, NM_PLACE_SHARD),
             il = row_max(tab, NM_PLACE_INTERLEAVE);
    bool multi = cpu_nodes(t) > 1;
    print_message("# %s: per-node need replicate %llu, shard %llu, interleave %llu MB: auto %s\n",
                  t->source, (unsigned long long)(rep / 1000000),
                  (unsigned long long)(sh / 1000000), (unsigned long long)(il / 1000000),
                  auto_name(tab));
    assert_string_equal(auto_name(tab), multi ? "replicate" : "shard");
    nm_error err = {{0}};
    int chosen = -1;
    if (multi) {
        assert_true(rep > sh);
        table(t, rep - 1, &RUN_OPTS, tab);
        assert_string_equal(auto_name(tab), "shard");
        assert_int_equal(nm_fit_admit(tab, NM_PLACE_REPLICATE, -1, &chosen, &err), -1);
        print_message("#   %s\n", err.msg);
        assert_non_null(strstr(err.msg, "not enough memory for --placement replicate"));
        assert_non_null(strstr(err.msg, "available (short)"));
        assert_non_null(strstr(err.msg, "shard needs"));
        assert_non_null(strstr(err.msg, "and fits"));
        assert_int_equal(nm_fit_admit(tab, NM_PLACE_SHARD, -1, &chosen, &err), 0);
        assert_int_equal(chosen, nm_fit_table_row(tab, NM_PLACE_SHARD, -1));
    }
    if (il < sh) { /* uneven thread split: a shard is larger than a page share */
        table(t, sh - 1, &RUN_OPTS, tab);
        assert_string_equal(auto_name(tab), "interleave");
    }
    uint64_t least = il < sh ? il : sh;
    table(t, least - 1, &RUN_OPTS, tab);
    assert_string_equal(auto_name(tab), "none");
    assert_int_equal(nm_fit_admit(tab, NM_PLACE_AUTO, -1, &chosen, &err), -1);
    assert_non_null(strstr(err.msg, "not enough memory for any placement"));
    assert_non_null(strstr(err.msg, "No placement fits"));
    free(tab);
}

static void test_auto_every_topology(void **state) {
    (void)state;
    if (!g_n_topos)
        skip();
    for (int i = 0; i < g_n_topos; i++) {
        nm_topo *t = topo(g_topos[i]);
        check_auto(t);
        nm_topo_free(t);
    }
}

/* The fit table of a topology file: each node's capacity, less a reserve. */
static void test_capacity_from_xml(void **state) {
    (void)state;
    if (!g_n_topos)
        skip();
    nm_topo *t = topo("24em64t-2n6c2t-pci.xml");
    nm_mem_state m;
    nm_mem_probe(t, &m);
    assert_true(m.capacity_only);
    assert_int_equal(m.n_nodes, t->n_nodes);
    for (int i = 0; i < m.n_nodes; i++) {
        assert_true(m.nodes[i].known);
        assert_int_equal(m.nodes[i].total, t->nodes[i].memory_bytes);
        assert_int_equal(nm_node_mem_avail(&m, i),
                         t->nodes[i].memory_bytes - nm_node_mem_margin(m.nodes[i].total, 0));
    }
    assert_false(m.cg_limited);
    nm_topo_free(t);
}

/* Limits: a cgroup or RLIMIT_AS below the bill refuses with its figures. */
static void test_limits(void **state) {
    (void)state;
    if (!g_n_topos)
        skip();
    nm_topo *t = topo("24em64t-2n6c2t-pci.xml");
    nm_fit_table *tab = calloc(1, sizeof *tab);
    assert_non_null(tab);
    nm_mem_state m;
    nm_error err = {{0}};
    synthetic(t, 1000 * GIB, &m);
    m.cg_limited = true;
    m.cg_version = 2;
    snprintf(m.cg_file, sizeof m.cg_file, "/sys/fs/cgroup/test/memory.max");
    m.cg_max = 600 * MIB;
    m.cg_usage = 100 * MIB;
    m.cg_reclaimable = 50 * MIB;
    assert_int_equal(nm_cgroup_avail(&m), 550 * MIB);
    nm_plan_opts po = {0};
    assert_int_equal(nm_fit_table_build(g_1b, t, &po, &RUN_OPTS, &m, tab, &err), 0);
    int chosen;
    assert_int_equal(nm_fit_admit(tab, NM_PLACE_SHARD, -1, &chosen, &err), -1);
    print_message("# %s\n", err.msg);
    assert_non_null(strstr(err.msg, "/sys/fs/cgroup/test/memory.max"));
    assert_non_null(strstr(err.msg, "cgroup limit"));
    assert_string_equal(auto_name(tab), "none");
    m.cg_limited = false;
    m.as_limited = true;
    m.as_max = 512 * MIB;
    m.as_used = 100 * MIB;
    assert_int_equal(nm_fit_table_build(g_1b, t, &po, &RUN_OPTS, &m, tab, &err), 0);
    assert_int_equal(nm_fit_admit(tab, NM_PLACE_SHARD, -1, &chosen, &err), -1);
    assert_non_null(strstr(err.msg, "RLIMIT_AS"));
    /* after the load (the check before the KV cache) the weights are in
     * the address space in use: counted there, not again in the bill */
    int r = nm_fit_table_row(tab, NM_PLACE_SHARD, -1);
    uint64_t weights = 0;
    for (int i = 0; i < tab->rows[r].n_nodes; i++)
        weights += tab->rows[r].nodes[i].weights;
    nm_fit_opts after = RUN_OPTS;
    after.weights_unchecked = "loaded already";
    after.weights_mapped = true;
    after.staging_bytes = 0;
    after.n_ctx = 256;
    m.as_used = 100 * MIB + weights;
    m.as_max = m.as_used + 64 * MIB;
    assert_int_equal(nm_fit_table_build(g_1b, t, &po, &after, &m, tab, &err), 0);
    assert_true(tab->rows[r].vm_bytes < 64 * MIB);
    assert_int_equal(nm_fit_admit(tab, NM_PLACE_SHARD, -1, &chosen, &err), 0);
    /* weights in the page cache (io mmap) are shown, not counted */
    nm_fit_opts mm = RUN_OPTS;
    mm.weights_unchecked = "page cache";
    m.as_limited = false;
    synthetic(t, 200 * MIB, &m);
    assert_int_equal(nm_fit_table_build(g_1b, t, &po, &mm, &m, tab, &err), 0);
    assert_int_equal(nm_fit_admit(tab, NM_PLACE_REPLICATE, -1, &chosen, &err), 0);
    free(tab);
    nm_topo_free(t);
}

/* The loader's guard on this machine: a take the node cannot give fails
 * with a message; small ones pass; a disabled guard passes everything. */
static void test_guard_this_machine(void **state) {
    (void)state;
    nm_error err = {{0}};
    nm_topo *t = nm_topo_load(NULL, &err);
    if (!t)
        fail_msg("%s", err.msg);
    nm_mem_guard g;
    nm_mem_guard_init(&g, t, true);
    int node = t->nodes[0].os_index;
    assert_int_equal(nm_mem_guard_take_nodes(&g, &node, 1, 4 * MIB, &err), 0);
    assert_int_equal(nm_mem_guard_take_nodes(&g, &node, 1, 1ull << 52, &err), -1);
    print_message("# %s\n", err.msg);
    assert_non_null(strstr(err.msg, "ran out of memory during the load"));
    nm_mem_guard_destroy(&g);
    nm_mem_guard_init(&g, t, false);
    assert_int_equal(nm_mem_guard_take_nodes(&g, &node, 1, 1ull << 52, &err), 0);
    nm_mem_guard_destroy(&g);
    nm_topo_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_meminfo),
        cmocka_unit_test(test_parse_zoneinfo),
        cmocka_unit_test(test_parse_cgroup_limit),
        cmocka_unit_test(test_bill_every_topology),
        cmocka_unit_test(test_auto_every_topology),
        cmocka_unit_test(test_capacity_from_xml),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_guard_this_machine),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
