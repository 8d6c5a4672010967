/* The traffic model (numa/traffic.h) and its bandwidth sources
 * (numa/bandwidth.h) on every public topology: every byte a token reads is
 * counted once and lives where the scenario puts it; the predicted rates
 * order the way the model says (a shard over S sockets ~ S x one socket
 * when memory is the limit); presets by CPU model; --bandwidth parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/util.h"
#include "gguf/ggml_types.h"
#include "numa/traffic.h"
#include "test_topos.h"
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_dir[512], g_topo_dir[1024];
static nm_gguf *g_model; /* TinyLlama 1.1B shape, Q8_0, header only */
static char *g_topos[32];
static int g_n_topos;

static int setup(void **state) {
    (void)state;
    char path[700];
    nm_error err = {{0}};
    if (nm_test_mkdtemp(g_dir, sizeof g_dir, "traffic"))
        return -1;
    nm_mkmodel_opts o = {.type = NM_TYPE_Q8_0, .seed = 1, .sparse = true};
    snprintf(path, sizeof path, "%s/1b.gguf", g_dir);
    if (nm_mkmodel_preset("1b", &o.shape, &err) || nm_mkmodel_write(path, &o, NULL, &err) ||
        !(g_model = nm_gguf_open(path, &err))) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    g_n_topos = nm_test_list_topos(g_topo_dir, sizeof g_topo_dir, g_topos, 32);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    char path[700];
    nm_gguf_close(g_model);
    snprintf(path, sizeof path, "%s/1b.gguf", g_dir);
    unlink(path);
    rmdir(g_dir);
    nm_test_free_topos(g_topos, g_n_topos);
    return 0;
}

static nm_topo *topo(const char *file) {
    return nm_test_load_topo(g_topo_dir, file);
}

static nm_plan *plan(const nm_topo *t, nm_placement pl) {
    nm_error err = {{0}};
    nm_plan_opts po = {.placement = pl, .fixed_node = t->nodes[0].os_index};
    nm_plan *p = nm_plan_build(g_model, t, &po, &err);
    if (!p)
        fail_msg("%s: %s", t->source, err.msg);
    return p;
}

/* Every matrix byte of the model, every copied vector once per node. */
static void sums(const nm_plan *p, uint64_t *matrices, uint64_t *vectors) {
    *matrices = *vectors = 0;
    for (int i = 0; i < p->n_tensors; i++) {
        const nm_tensor_plan *tp = &p->tensors[i];
        if (tp->role == NM_ROLE_TOKEN_EMBD && p->embd_row_bytes)
            continue;
        if (nm_tensor_is_copied(tp->t))
            *vectors += tp->t->nbytes;
        else
            *matrices += tp->t->nbytes;
    }
}

static const nm_traffic_opts OPTS = {.depth = 100, .n_gen = 28, .kv_elem_bytes = 2};

static void check_counts(const nm_plan *p, nm_scenario s) {
    nm_traffic t;
    nm_traffic_compute(p, s, &OPTS, NULL, NULL, &t);
    uint64_t mat, vec, got_mat = 0, got_vec = 0, kv_pos = 0;
    sums(p, &mat, &vec);
    int readers = 0;
    for (int k = 0; k < t.n; k++) {
        got_mat += t.matrix_bytes[k];
        got_vec += t.vector_bytes[k];
        kv_pos += t.kv_bytes_per_pos[k];
        readers += t.threads[k] > 0;
    }
    /* each matrix byte read once by someone; shares of one socket are
     * fractions of rows, so within a byte per tensor and reader */
    uint64_t slack = s == NM_SCEN_ONE_NODE ? (uint64_t)p->n_tensors * (uint64_t)t.n : 0;
    assert_true(got_mat + slack >= mat && got_mat <= mat + slack);
    assert_int_equal(got_vec, vec * (uint64_t)readers);
    /* K and V of every KV head once, per position */
    uint64_t want_kv = 2ull * p->hp.n_layer * p->hp.n_head_kv * p->hp.head_dim * 2;
    assert_true(kv_pos + (uint64_t)t.n >= want_kv && kv_pos <= want_kv);
    /* where: numalm's shard and replicate read weights and KV locally */
    for (int k = 0; k < t.n; k++)
        for (int j = 0; j < t.n; j++) {
            bool local = s == NM_SCEN_PLAN &&
                         (p->placement == NM_PLACE_SHARD || p->placement == NM_PLACE_REPLICATE);
            if (local && j != k && j != 0 && k != 0) /* node 0: the embedding row */
                assert_true(t.bytes[k][j] == 0);
            if (s == NM_SCEN_FIRST_TOUCH && j != 0)
                assert_true(t.bytes[k][j] == 0);
            if ((s == NM_SCEN_DISTRIBUTE ||
                 (s == NM_SCEN_PLAN && p->placement == NM_PLACE_INTERLEAVE)) &&
                j > 0 && t.threads[k])
                assert_true(t.bytes[k][j] > 0.9 * (double)t.matrix_bytes[k] / t.n);
        }
}

static void test_counts_every_topology(void **state) {
    (void)state;
    if (!g_n_topos)
        skip();
    static const nm_placement PL[] = {NM_PLACE_SHARD, NM_PLACE_REPLICATE, NM_PLACE_INTERLEAVE,
                                      NM_PLACE_NODE};
    for (int i = 0; i < g_n_topos; i++) {
        nm_topo *t = topo(g_topos[i]);
        for (size_t k = 0; k < sizeof PL / sizeof PL[0]; k++) {
            nm_plan *p = plan(t, PL[k]);
            check_counts(p, NM_SCEN_PLAN);
            if (k == 0) {
                check_counts(p, NM_SCEN_ONE_NODE);
                check_counts(p, NM_SCEN_FIRST_TOUCH);
                check_counts(p, NM_SCEN_DISTRIBUTE);
            }
            nm_plan_free(p);
        }
        nm_topo_free(t);
    }
}

/* Predictions on every topology with its automatic bandwidths: positive;
 * on a multi-socket machine a shard over S sockets reaches close to S
 * times one socket (memory-bound), and no scenario beats the shard by
 * more than the rounding of the split. */
static void test_predictions_every_topology(void **state) {
    (void)state;
    if (!g_n_topos)
        skip();
    for (int i = 0; i < g_n_topos; i++) {
        nm_topo *t = topo(g_topos[i]);
        nm_plan *p = plan(t, NM_PLACE_SHARD);
        nm_bw bw;
        bool measure = true;
        nm_error err = {{0}};
        assert_int_equal(nm_bw_resolve(t, p, NULL, &bw, &measure, &err), 0);
        assert_false(measure); /* another machine: never measured */
        nm_traffic out[4];
        int n = nm_traffic_all(p, &OPTS, &bw, NULL, out);
        int sockets = 0, seen[NM_MAX_NODES];
        for (int k = 0; k < p->n_nodes && bw.package[0] >= 0; k++) {
            bool dup = false;
            for (int q = 0; q < sockets; q++)
                dup |= seen[q] == bw.package[k];
            if (!dup)
                seen[sockets++] = bw.package[k];
        }
        print_message("# %s (%s): %d sockets:", g_topos[i], bw.summary, sockets);
        for (int k = 0; k < n; k++) {
            print_message(" %s %.1f tok/s (%.2fx);", out[k].name, out[k].tok_s, out[k].speedup);
            assert_true(out[k].tok_s > 0 && isfinite(out[k].tok_s));
            assert_true(out[k].tok_s <= out[0].tok_s * 1.01);
        }
        print_message("\n");
        if (sockets > 1 && !strstr(out[0].bottleneck, "cores"))
            assert_true(out[0].speedup > 0.85 * sockets && out[0].speedup <= sockets * 1.01);
        nm_plan_free(p);
        nm_topo_free(t);
    }
}

static void test_presets(void **state) {
    (void)state;
    static const struct {
        const char *model, *preset;
    } cases[] = {
        {"Intel(R) Xeon(R) CPU E5-2683 v3 @ 2.00GHz", "haswell-ep"},
        {"Intel(R) Xeon(R) CPU E5-2650 0 @ 2.00GHz", "sandybridge-ep"},
        {"Intel(R) Xeon(R) CPU E5-2698 v4 @ 2.20GHz", "broadwell-ep"},
        {"Intel(R) Xeon(R) Platinum 8480+", "sapphirerapids"},
        {"Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz", "cascadelake-sp"},
        {"Intel(R) Xeon(R) Platinum 8380 CPU @ 2.30GHz", "icelake-sp"},
        {"AMD EPYC 9654 96-Core Processor", "epyc-genoa"},
        {"AMD EPYC 7763 64-Core Processor", "epyc-milan"},
        {"Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const nm_bw_preset *p = nm_bw_preset_for_model(cases[i].model);
        if (!cases[i].preset) {
            assert_null(p);
            continue;
        }
        assert_non_null(p);
        assert_string_equal(p->name, cases[i].preset);
        assert_true(p->local_gbs > p->link_gbs / 4 && p->core_gbs > 0 && p->source);
    }
    for (const nm_bw_preset *p = nm_bw_presets(); p->name; p++)
        assert_ptr_equal(nm_bw_preset_find(p->name), p);
    assert_non_null(nm_bw_preset_find("generic"));
}

static void test_bandwidth_option(void **state) {
    (void)state;
    if (!g_n_topos)
        skip();
    nm_topo *t = topo("24em64t-2n6c2t-pci.xml");
    nm_plan *p = plan(t, NM_PLACE_SHARD);
    nm_bw bw;
    bool measure;
    nm_error err = {{0}};
    nm_bw_opts o = {"50,20,8"};
    assert_int_equal(nm_bw_resolve(t, p, &o, &bw, &measure, &err), 0);
    assert_true(bw.gbs[0][0] == 50 && bw.gbs[0][1] == 20 && bw.core_gbs == 8);
    assert_string_equal(bw.source[1][0], "option");
    o.spec = "epyc-genoa";
    assert_int_equal(nm_bw_resolve(t, p, &o, &bw, &measure, &err), 0);
    assert_true(fabs(bw.gbs[0][0] - 12 * 4800 * 8e-3 * 0.8) < 1e-9);
    const char *bad[] = {"fast", "50,", "-3", "50,20,8,9", "measure"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        o.spec = bad[i];
        assert_int_equal(nm_bw_resolve(t, p, &o, &bw, &measure, &err), -1);
        print_message("# --bandwidth %s: %s\n", bad[i], err.msg);
    }
    nm_plan_free(p);
    nm_topo_free(t);
}

static void test_moe_fraction(void **state) {
    (void)state;
    nm_gguf_tensor exps = {.name = "blk.0.ffn_up_exps.weight"},
                   dense = {.name = "blk.0.ffn_up.weight"};
    nm_tensor_plan a = {.t = &exps}, b = {.t = &dense};
    nm_traffic_opts o = {.n_expert = 8, .n_expert_used = 2};
    assert_true(nm_tensor_active_fraction(&o, &a) == 0.25);
    assert_true(nm_tensor_active_fraction(&o, &b) == 1.0);
    o.n_expert = 0;
    assert_true(nm_tensor_active_fraction(&o, &a) == 1.0);
    nm_traffic_moe(g_model, &o);
    assert_int_equal(o.n_expert, 0); /* a dense model */
}

/* Measured kernel ratios, barrier cost and non-matrix work (what plan
 * --predict probes on the machine it runs on) enter the time of a token as
 * the formula says: weight streaming / the byte-weighted harmonic mean of
 * the matrices' types' ratios, plus barriers x the measured barrier, plus
 * the layers' vector work; --efficiency overrides the ratios; a type the
 * model does not have changes nothing. */
static void test_measured_kernels(void **state) {
    (void)state;
    if (!g_n_topos)
        skip();
    nm_topo *t = topo(g_topos[0]);
    nm_plan *p = plan(t, NM_PLACE_SHARD);
    nm_bw bw;
    bool measure;
    nm_error err = {{0}};
    assert_int_equal(nm_bw_resolve(t, p, NULL, &bw, &measure, &err), 0);
    uint32_t types[NM_TRAFFIC_MAX_TYPES];
    double bytes[NM_TRAFFIC_MAX_TYPES];
    assert_int_equal(nm_traffic_matrix_types(p, &OPTS, types, bytes, NM_TRAFFIC_MAX_TYPES), 1);
    assert_int_equal(types[0], NM_TYPE_Q8_0); /* the model is all Q8_0 */
    uint64_t mat, vec;
    sums(p, &mat, &vec);
    assert_true(fabs(bytes[0] - (double)mat) < 1);

    nm_traffic base, got;
    nm_traffic_compute(p, NM_SCEN_PLAN, &OPTS, &bw, NULL, &base);
    assert_true(base.efficiency == 1.0);
    double stream = base.seconds - base.barriers * base.barrier_s;
    nm_traffic_opts o = OPTS;
    o.n_kernel = 2;
    o.kernel_type[0] = NM_TYPE_Q4_K; /* not in the model */
    o.kernel_ratio[0] = 0.5;
    o.kernel_type[1] = NM_TYPE_Q8_0;
    o.kernel_ratio[1] = 0.8;
    o.barrier_s = 10e-6;
    nm_traffic_compute(p, NM_SCEN_PLAN, &o, &bw, NULL, &got);
    assert_true(fabs(got.efficiency - 0.8) < 1e-12);
    assert_true(got.barrier_s == 10e-6);
    assert_true(fabs(got.seconds - (stream / 0.8 + got.barriers * 10e-6)) < 1e-12);
    /* the non-matrix work: each worker's per layer, the shared part over
     * every thread, attention per query head and mean cached position */
    o.layer_s = 20e-6;
    o.split_s = 60e-6;
    o.attend_s = 30e-9;
    nm_traffic_compute(p, NM_SCEN_PLAN, &o, &bw, NULL, &got);
    int threads = 0;
    for (int k = 0; k < got.n; k++)
        threads += got.threads[k];
    double mean_pos = OPTS.depth + (OPTS.n_gen + 1) / 2.0;
    double work = p->hp.n_layer * (20e-6 + (60e-6 + p->hp.n_head * mean_pos * 30e-9) / threads);
    assert_true(fabs(got.vector_s - work) < 1e-12);
    assert_true(fabs(got.seconds - (stream / 0.8 + got.barriers * 10e-6 + work)) < 1e-12);
    o.efficiency = 0.5; /* --efficiency wins */
    nm_traffic_compute(p, NM_SCEN_PLAN, &o, &bw, NULL, &got);
    assert_true(got.efficiency == 0.5);
    nm_plan_free(p);
    nm_topo_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts_every_topology),
        cmocka_unit_test(test_predictions_every_topology),
        cmocka_unit_test(test_presets),
        cmocka_unit_test(test_bandwidth_option),
        cmocka_unit_test(test_moe_fraction),
        cmocka_unit_test(test_measured_kernels),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
