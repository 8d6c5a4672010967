/* Layers on a device (-ngl) through the CPU implementation of the device
 * interface: for every split (no block, one, half, all blocks, all blocks
 * and the LM head) the logits of a batched prompt and of decode steps are
 * the CPU forward pass's bits, on stories260K and on generated models of
 * each weight type; the offloaded tensors are not read by the CPU loader;
 * a missing upload, too little device memory, a failing copy mid-eval and
 * blocks the device does not run (a mixture of experts) each give a clear
 * error, and nothing stays allocated. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cuda/upload.h"
#include "gguf/ggml_types.h"
#include "io/loader.h"
#include "runtime/device.h"
#include "runtime/model.h"
#include "test_util.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static nm_topo *g_topo;
static char g_dir[512];

typedef struct run {
    nm_gguf *g;
    nm_plan *plan;
    nm_loaded *w;
    nm_upload *up;
    nm_model *m;
    uint8_t *mask;
    int n_layer;
} run;

/* Opens path with the last ngl blocks on dev (dev NULL or ngl 0: none).
 * Returns 0, or -1 with err (everything opened so far closed). */
static int open_run(run *r, const char *path, nm_device *dev, int ngl, uint32_t kv_type,
                    nm_error *err) {
    memset(r, 0, sizeof *r);
    nm_llama_hparams hp;
    if (!(r->g = nm_gguf_open(path, err)) || nm_llama_hparams_read(r->g, &hp, true, err) < 0)
        return -1;
    r->n_layer = (int)hp.n_layer;
    nm_plan_opts po = {.placement = NM_PLACE_SHARD};
    if (!(r->plan = nm_plan_build(r->g, g_topo, &po, err)))
        return -1;
    r->mask = calloc(r->g->n_tensors + 1, 1);
    nm_model_offload off = {0};
    if (dev && ngl > 0) {
        nm_offload_select(r->g, hp.n_layer, ngl, r->mask, &off.n_layers, &off.head);
        nm_upload_opts uo = {.topo = g_topo, .staging_node = -1, .slot_bytes = 1 << 20};
        if (!(r->up = nm_upload_run(dev, r->g, r->mask, &uo, err)))
            return -1;
        off.dev = dev;
        off.tensor = r->up->tensor;
    }
    uint8_t *skip = calloc(r->g->n_tensors + 1, 1);
    for (uint64_t i = 0; i < r->g->n_tensors; i++)
        skip[i] = r->mask[i] == NM_OFFLOAD_DEVICE;
    nm_load_opts lo = {.io = NM_IO_BUFFERED, .skip = skip, .topo = g_topo, .verify = true};
    r->w = nm_load(r->g, r->plan, &lo, err);
    free(skip);
    if (!r->w)
        return -1;
    assert_true(r->w->checksums_ok);
    nm_model_opts mo = nm_model_opts_default();
    mo.kv_type = kv_type;
    mo.n_batch = 4;
    mo.n_ctx = 64;
    mo.offload = off;
    r->m = nm_model_create(r->w, g_topo, &mo, err);
    return r->m ? 0 : -1;
}

static void close_run(run *r) {
    nm_model_free(r->m);
    nm_upload_free(r->up);
    nm_loaded_free(r->w);
    nm_plan_free(r->plan);
    nm_gguf_close(r->g);
    free(r->mask);
}

enum { PROMPT = 11, DECODE = 3 };

/* Logits of an 11-token prompt (3 batches of at most 4) and 3 decode steps. */
static float *eval_all(run *r, nm_error *err) {
    int V = nm_model_n_vocab(r->m);
    float *lg = calloc((size_t)(PROMPT + DECODE) * V, sizeof *lg);
    int32_t toks[PROMPT + DECODE];
    for (int i = 0; i < PROMPT + DECODE; i++)
        toks[i] = (int32_t)((i * 37 + 1) % V);
    if (nm_model_eval(r->m, toks, PROMPT, 0, 0, lg, err) < 0) {
        free(lg);
        return NULL;
    }
    for (int i = 0; i < DECODE; i++)
        if (nm_model_eval(r->m, toks + PROMPT + i, 1, PROMPT + i, 0, lg + (size_t)(PROMPT + i) * V,
                          err) < 0) {
            free(lg);
            return NULL;
        }
    return lg;
}

static void expect_same_logits(const char *path, const char *what, uint32_t kv_type) {
    nm_error err = {{0}};
    run base;
    if (open_run(&base, path, NULL, 0, kv_type, &err) != 0)
        fail_msg("%s: %s", what, err.msg);
    float *want = eval_all(&base, &err);
    assert_non_null(want);
    size_t n = (size_t)(PROMPT + DECODE) * nm_model_n_vocab(base.m);
    int nl = base.n_layer;
    close_run(&base);
    int ngls[] = {1, nl / 2, nl, nl + 1, 999};
    for (size_t k = 0; k < sizeof ngls / sizeof ngls[0]; k++) {
        nm_device_cpu_opts co = {.node = -1};
        nm_device *dev = nm_device_cpu_open(&co, &err);
        run r;
        if (open_run(&r, path, dev, ngls[k], kv_type, &err) != 0)
            fail_msg("%s -ngl %d: %s", what, ngls[k], err.msg);
        if (ngls[k] < nl)
            assert_true(r.w->skipped_bytes > 0 && r.up->n_uploaded == 7 * ngls[k]);
        float *got = eval_all(&r, &err);
        if (!got)
            fail_msg("%s -ngl %d: %s", what, ngls[k], err.msg);
        size_t diff = 0;
        for (size_t i = 0; i < n; i++)
            diff += memcmp(&got[i], &want[i], sizeof(float)) != 0;
        printf("# offload %s -ngl %d (%s KV): %zu of %zu logits differ\n", what, ngls[k],
               kv_type == NM_TYPE_F16 ? "f16" : "f32", diff, n);
        assert_int_equal(diff, 0);
        free(got);
        close_run(&r);
        nm_device_cpu_counts c;
        nm_device_cpu_counts_get(dev, &c);
        assert_int_equal(c.allocs, 0);
        nm_device_close(dev);
    }
    free(want);
}

static void test_stories260k(void **state) {
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/models/stories260K.gguf", nm_test_shared_dir());
    if (access(path, R_OK) != 0)
        skip();
    expect_same_logits(path, "stories260K", NM_TYPE_F16);
    expect_same_logits(path, "stories260K", NM_TYPE_F32);
}

/* llama.cpp's Q4_K_M and Q5_K_M presets: Q4_K / Q5_K with Q6_K tensors. */
static void test_kquant_presets(void **state) {
    (void)state;
    const char *names[] = {"tiny-kq-q4_k_m.gguf", "tiny-kq-q5_k_m.gguf"};
    int ran = 0;
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/models/%s", nm_test_shared_dir(), names[k]);
        if (access(path, R_OK) != 0)
            continue;
        expect_same_logits(path, names[k], NM_TYPE_F16);
        ran++;
    }
    if (!ran)
        skip();
}

static void test_generated_types(void **state) {
    (void)state;
    const uint32_t types[] = {NM_TYPE_F16, NM_TYPE_Q8_0, NM_TYPE_Q4_0, NM_TYPE_BF16};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        char path[700];
        nm_error err = {{0}};
        nm_mkmodel_result mr;
        snprintf(path, sizeof path, "%s/tiny-%s.gguf", g_dir, nm_type_name(types[k]));
        if (nm_test_write_tiny(path, types[k], 3, &mr, &err) != 0)
            fail_msg("mkmodel: %s", err.msg);
        expect_same_logits(path, nm_type_name(types[k]), NM_TYPE_F16);
        unlink(path);
    }
}

static char g_tiny[700];

static void test_errors(void **state) {
    (void)state;
    nm_error err = {{0}};
    nm_mkmodel_result mr;
    snprintf(g_tiny, sizeof g_tiny, "%s/tiny-err.gguf", g_dir);
    assert_int_equal(nm_test_write_tiny(g_tiny, NM_TYPE_Q8_0, 4, &mr, &err), 0);

    /* weights that were never uploaded */
    run r;
    nm_device *dev = nm_device_cpu_open(NULL, &err);
    memset(&r, 0, sizeof r);
    r.g = nm_gguf_open(g_tiny, &err);
    nm_plan_opts po = {.placement = NM_PLACE_SHARD};
    r.plan = nm_plan_build(r.g, g_topo, &po, &err);
    nm_load_opts lo = {.io = NM_IO_BUFFERED, .topo = g_topo};
    r.w = nm_load(r.g, r.plan, &lo, &err);
    const void **none = calloc(r.g->n_tensors, sizeof *none);
    nm_model_opts mo = nm_model_opts_default();
    mo.n_ctx = 64;
    mo.offload = (nm_model_offload){dev, none, 2, false};
    assert_null(nm_model_create(r.w, g_topo, &mo, &err));
    assert_non_null(strstr(err.msg, "is not on the device"));
    mo.offload = (nm_model_offload){dev, none, 2, true};
    assert_null(nm_model_create(r.w, g_topo, &mo, &err));
    assert_non_null(strstr(err.msg, "LM head"));
    free(none);
    close_run(&r);
    nm_device_close(dev);

    /* room for the weights (measured by a first run) but not the KV cache */
    dev = nm_device_cpu_open(NULL, &err);
    assert_int_equal(open_run(&r, g_tiny, dev, 4, NM_TYPE_F32, &err), 0);
    uint64_t weights = r.up->dev_bytes;
    close_run(&r);
    nm_device_close(dev);
    nm_device_cpu_opts co = {.node = -1, .mem_bytes = weights + 20000};
    dev = nm_device_cpu_open(&co, &err);
    assert_int_equal(open_run(&r, g_tiny, dev, 4, NM_TYPE_F32, &err), -1);
    printf("# offload: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "out of device memory"));
    assert_non_null(strstr(err.msg, "-ngl 4: KV cache on the device"));
    close_run(&r);
    nm_device_cpu_counts c;
    nm_device_cpu_counts_get(dev, &c);
    assert_int_equal(c.allocs, 0);
    nm_device_close(dev);

    /* a copy that fails during an eval: count the copies before it first */
    dev = nm_device_cpu_open(NULL, &err);
    assert_int_equal(open_run(&r, g_tiny, dev, 2, NM_TYPE_F16, &err), 0);
    nm_device_cpu_counts_get(dev, &c);
    close_run(&r);
    nm_device_close(dev);
    co = (nm_device_cpu_opts){.node = -1, .fail_copy_at = c.copies + 2};
    dev = nm_device_cpu_open(&co, &err);
    assert_int_equal(open_run(&r, g_tiny, dev, 2, NM_TYPE_F16, &err), 0);
    float *lg = eval_all(&r, &err);
    assert_null(lg);
    printf("# offload: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "failed"));
    assert_non_null(strstr(err.msg, "offloaded blocks: cpu device"));
    close_run(&r);
    nm_device_close(dev);
    unlink(g_tiny);
}

/* A mixture-of-experts block stays on the CPU: -ngl names why. */
static void test_moe_refused(void **state) {
    (void)state;
    char path[700];
    nm_error err = {{0}};
    nm_mkmodel_result mr;
    nm_mkmodel_opts o = {.type = NM_TYPE_Q8_0, .seed = 5};
    snprintf(path, sizeof path, "%s/moe-tiny.gguf", g_dir);
    assert_int_equal(nm_mkmodel_preset("moe-tiny", &o.shape, &err), 0);
    assert_int_equal(nm_mkmodel_write(path, &o, &mr, &err), 0);
    nm_device *dev = nm_device_cpu_open(NULL, &err);
    run r;
    assert_int_equal(open_run(&r, path, dev, 1, NM_TYPE_F16, &err), -1);
    printf("# offload: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "experts"));
    assert_non_null(strstr(err.msg, "qwen3moe"));
    close_run(&r);
    nm_device_close(dev);
    unlink(path);
}

static int setup(void **state) {
    (void)state;
    nm_error err = {{0}};
    g_topo = nm_topo_load(NULL, &err);
    return g_topo && nm_test_mkdtemp(g_dir, sizeof g_dir, "offload") == 0 ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    rmdir(g_dir);
    nm_topo_free(g_topo);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stories260k),     cmocka_unit_test(test_kquant_presets),
        cmocka_unit_test(test_generated_types), cmocka_unit_test(test_errors),
        cmocka_unit_test(test_moe_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
