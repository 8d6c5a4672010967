/* The staging pipeline through the CPU implementation of the device
 * interface: every uploaded byte lands where the tensor table says, slots
 * are reused only after their copy ran (slow copies, two slots), disk and
 * copies overlap, --verify catches a corrupted copy, and a short read, a
 * failing copy and a device allocation failure each give a clear error and
 * leave nothing allocated. Node choice from real machines' topologies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cuda/gpu.h"
#include "cuda/upload.h"
#include "gguf/ggml_types.h"
#include "test_util.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_dir[512], g_model[600];
static nm_topo *g_topo;

static int setup(void **state) {
    (void)state;
    nm_error err = {{0}};
    if (nm_test_mkdtemp(g_dir, sizeof g_dir, "upload") != 0)
        return -1;
    snprintf(g_model, sizeof g_model, "%s/tiny-q8.gguf", g_dir);
    nm_mkmodel_result r;
    if (nm_test_write_tiny(g_model, NM_TYPE_Q8_0, 5, &r, &err) != 0) {
        fprintf(stderr, "mkmodel: %s\n", err.msg);
        return -1;
    }
    g_topo = nm_topo_load(NULL, &err);
    return g_topo ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    unlink(g_model);
    rmdir(g_dir);
    nm_topo_free(g_topo);
    return 0;
}

/* Matrices only, as -ngl uploads them (the norms travel as F32 later). */
static uint8_t *want_matrices(const nm_gguf *g) {
    uint8_t *w = calloc(g->n_tensors, 1);
    for (uint64_t i = 0; i < g->n_tensors; i++)
        w[i] = g->tensors[i].n_dims == 2;
    return w;
}

static void expect_no_leaks(nm_device *d) {
    nm_device_cpu_counts c;
    assert_int_equal(nm_device_cpu_counts_get(d, &c), 0);
    assert_int_equal(c.allocs, 0);
    assert_int_equal(c.registered, 0);
}

/* Every uploaded tensor read back from the device equals the file. */
static void expect_tensors_equal_file(nm_device *d, const nm_upload *u, const nm_gguf *g) {
    FILE *f = fopen(g->path, "rb");
    assert_non_null(f);
    int n = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        if (!u->tensor[i])
            continue;
        const nm_gguf_tensor *t = &g->tensors[i];
        uint8_t *want = malloc(t->nbytes), *got = malloc(t->nbytes);
        assert_int_equal(fseek(f, (long)t->file_offset, SEEK_SET), 0);
        assert_int_equal(fread(want, 1, t->nbytes, f), t->nbytes);
        nm_error err = {{0}};
        assert_int_equal(d->ops->to_host(d, 0, got, u->tensor[i], t->nbytes, &err), 0);
        assert_int_equal(d->ops->sync(d, 0, &err), 0);
        assert_memory_equal(want, got, t->nbytes);
        free(want);
        free(got);
        n++;
    }
    fclose(f);
    assert_int_equal(n, u->n_uploaded);
}

static nm_upload *upload(nm_device *d, const nm_gguf *g, nm_upload_opts *o, nm_error *err) {
    uint8_t *want = want_matrices(g);
    o->topo = g_topo;
    nm_upload *u = nm_upload_run(d, g, want, o, err);
    free(want);
    return u;
}

static void test_upload_lands_in_place(void **state) {
    (void)state;
    nm_error err = {{0}};
    nm_gguf *g = nm_gguf_open(g_model, &err);
    assert_non_null(g);
    nm_device_cpu_opts co = {.node = g_topo->nodes[0].os_index};
    nm_device *d = nm_device_cpu_open(&co, &err);
    for (int buffered = 0; buffered < 2; buffered++) {
        nm_upload_opts o = {.slot_bytes = 256 << 10,
                            .n_slots = 3,
                            .verify = true,
                            .staging_node = -1,
                            .buffered = buffered};
        nm_upload *u = upload(d, g, &o, &err);
        assert_non_null(u);
        printf("# upload %s: %d tensors, %d pieces, %llu bytes, notes: %s\n",
               buffered ? "buffered" : "default", u->n_uploaded, u->n_pieces,
               (unsigned long long)u->bytes, u->n_notes ? u->notes[0] : "-");
        assert_int_equal(u->n_uploaded, 3 + 7 * 4 - 1); /* token_embd, output, 7 per block */
        assert_true(u->n_pieces > 10);
        assert_int_equal(u->staging_node, co.node);
        assert_true(u->device_node_known);
        assert_true(u->pinned);
        assert_true(u->verified && u->verify_ok);
        assert_true(u->staging_placed_pct < 0 || u->staging_placed_pct == 100);
        assert_true(u->n_reader_cpus > 0);
        expect_tensors_equal_file(d, u, g);
        nm_device_cpu_counts c;
        nm_device_cpu_counts_get(d, &c);
        assert_int_equal(c.copies_registered, c.copies); /* all from the pinned slots */
        nm_upload_free(u);
        expect_no_leaks(d);
    }
    nm_device_close(d);
    nm_gguf_close(g);
}

/* Two slots and slow copies: the reader must wait for a slot's copy before
 * refilling it (else the device would get the next piece's bytes), and
 * reads run while copies are in flight. */
static void test_double_buffering(void **state) {
    (void)state;
    nm_error err = {{0}};
    nm_gguf *g = nm_gguf_open(g_model, &err);
    nm_device_cpu_opts co = {.node = -1, .copy_delay_us = 3000};
    nm_device *d = nm_device_cpu_open(&co, &err);
    nm_upload_opts o = {.slot_bytes = 512 << 10, .n_slots = 2, .verify = true, .staging_node = -1};
    nm_upload *u = upload(d, g, &o, &err);
    assert_non_null(u);
    assert_true(u->verify_ok);
    expect_tensors_equal_file(d, u, g);
    printf("# upload double buffering: %d pieces, read %.4f s, copies %.4f s, both %.4f s, "
           "waited %.4f s\n",
           u->n_pieces, u->read_s, u->copy_s, u->overlap_s, u->wait_s);
    assert_true(u->copy_s >= 0.003);
    /* read k+1 starts right after copy k is queued, not after it ran */
    assert_true(u->overlap_s > 0);
    /* the device's node is unknown: staging went to the first node, said so */
    assert_false(u->device_node_known);
    assert_int_equal(u->staging_node, g_topo->nodes[0].os_index);
    assert_non_null(strstr(u->notes[0], "does not say which node"));
    nm_upload_free(u);
    expect_no_leaks(d);
    nm_device_close(d);
    nm_gguf_close(g);
}

static void test_verify_catches_corruption(void **state) {
    (void)state;
    nm_error err = {{0}};
    nm_gguf *g = nm_gguf_open(g_model, &err);
    nm_device_cpu_opts co = {.node = -1, .corrupt_copy_at = 5};
    nm_device *d = nm_device_cpu_open(&co, &err);
    nm_upload_opts o = {.slot_bytes = 256 << 10, .n_slots = 2, .verify = true, .staging_node = -1};
    nm_upload *u = upload(d, g, &o, &err);
    assert_non_null(u);
    assert_true(u->verified);
    assert_false(u->verify_ok);
    assert_int_equal(u->n_mismatches, 1);
    assert_true(strstr(u->mismatches, "blk.") || strstr(u->mismatches, "token_embd"));
    nm_upload_free(u);
    nm_device_close(d);
    nm_gguf_close(g);
}

static void expect_clean_failure(const nm_device_cpu_opts *co, const char *path, const char *msg1,
                                 const char *msg2) {
    nm_error err = {{0}};
    nm_gguf *g = nm_gguf_open(path, &err);
    assert_non_null(g);
    nm_device *d = nm_device_cpu_open(co, &err);
    nm_upload_opts o = {.slot_bytes = 256 << 10, .n_slots = 2, .staging_node = -1};
    nm_upload *u = upload(d, g, &o, &err);
    printf("# upload error: %s\n", err.msg);
    assert_null(u);
    assert_non_null(strstr(err.msg, msg1));
    assert_non_null(strstr(err.msg, msg2));
    expect_no_leaks(d);
    nm_device_close(d);
    nm_gguf_close(g);
}

static void test_failing_copy(void **state) {
    (void)state;
    nm_device_cpu_opts co = {.node = -1, .fail_copy_at = 7};
    expect_clean_failure(&co, g_model, "copy 7", "failed");
}

static void test_device_out_of_memory(void **state) {
    (void)state;
    nm_device_cpu_opts co = {.node = -1, .mem_bytes = 1 << 20};
    expect_clean_failure(&co, g_model, "out of device memory", "tiny-q8.gguf");
}

/* The header promises more than the file holds (truncated after it was
 * opened): the read error names the tensor and the offset. */
static void test_short_read(void **state) {
    (void)state;
    char cut[700];
    snprintf(cut, sizeof cut, "%s/cut.gguf", g_dir);
    size_t len;
    char *data = nm_test_read_file(g_model, &len);
    assert_non_null(data);
    FILE *f = fopen(cut, "wb");
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
    free(data);
    nm_error err = {{0}};
    nm_gguf *g = nm_gguf_open(cut, &err);
    assert_non_null(g);
    assert_int_equal(truncate(cut, (off_t)(len - len / 3)), 0);
    nm_device_cpu_opts co = {.node = -1};
    nm_device *d = nm_device_cpu_open(&co, &err);
    for (int buffered = 0; buffered < 2; buffered++) {
        nm_upload_opts o = {
            .slot_bytes = 256 << 10, .n_slots = 2, .staging_node = -1, .buffered = buffered};
        nm_upload *u = upload(d, g, &o, &err);
        printf("# upload short read: %s\n", err.msg);
        assert_null(u);
        assert_non_null(strstr(err.msg, "file ends early"));
        assert_non_null(strstr(err.msg, "tensor '"));
        expect_no_leaks(d);
    }
    nm_device_close(d);
    nm_gguf_close(g);
    unlink(cut);
}

static void test_bad_options(void **state) {
    (void)state;
    nm_error err = {{0}};
    nm_gguf *g = nm_gguf_open(g_model, &err);
    nm_device *d = nm_device_cpu_open(NULL, &err);
    nm_upload_opts o = {.n_slots = 1, .staging_node = -1};
    assert_null(upload(d, g, &o, &err));
    assert_non_null(strstr(err.msg, "slots"));
    o = (nm_upload_opts){.staging_node = 4000};
    assert_null(upload(d, g, &o, &err));
    assert_non_null(strstr(err.msg, "staging node 4000"));
    expect_no_leaks(d);
    nm_device_close(d);
    nm_gguf_close(g);
}

static void test_nothing_to_upload(void **state) {
    (void)state;
    nm_error err = {{0}};
    nm_gguf *g = nm_gguf_open(g_model, &err);
    nm_device *d = nm_device_cpu_open(NULL, &err);
    uint8_t *want = calloc(g->n_tensors, 1);
    nm_upload_opts o = {.topo = g_topo, .staging_node = -1, .verify = true};
    nm_upload *u = nm_upload_run(d, g, want, &o, &err);
    assert_non_null(u);
    assert_int_equal(u->n_uploaded, 0);
    assert_int_equal(u->bytes, 0);
    nm_upload_free(u);
    free(want);
    expect_no_leaks(d);
    nm_device_close(d);
    nm_gguf_close(g);
}

/* A GPU's node comes from the PCI entry with its bus id, however CUDA
 * spells it. */
static void test_pci_node(void **state) {
    (void)state;
    char path[1024];
    nm_error err = {{0}};
    snprintf(path, sizeof path, "%s/topologies/24em64t-2n6c2t-pci.xml", nm_test_shared_dir());
    if (access(path, R_OK) != 0)
        skip();
    nm_topo *t = nm_topo_load(path, &err);
    assert_non_null(t);
    assert_int_equal(nm_pci_node(t, "0000:11:00.0"), 1);
    assert_int_equal(nm_pci_node(t, "0000:06:00.0"), 0);
    assert_int_equal(nm_pci_node(t, "00000000:14:00.0"), 1);
    assert_int_equal(nm_pci_node(t, "0000:7f:00.0"), -1);
    assert_int_equal(nm_pci_node(t, "garbage"), -1);
    nm_topo_free(t);
    snprintf(path, sizeof path, "%s/topologies/32em64t-2n8c2t-pci-normalio.xml",
             nm_test_shared_dir());
    t = nm_topo_load(path, &err);
    assert_non_null(t);
    assert_int_equal(nm_pci_node(t, "0000:84:00.0"), 1);
    assert_int_equal(nm_pci_node(t, "0000:84:00.0 "), -1);
    nm_topo_free(t);
}

static void test_device_open(void **state) {
    (void)state;
    nm_error err = {{0}};
    nm_device *d = nm_device_open("cpu:0", g_topo, &err);
    assert_non_null(d);
    assert_int_equal(d->node, 0);
    assert_string_equal(d->kind, "cpu");
    nm_device_close(d);
    assert_int_equal(nm_device_spec_check("cpu:x", &err), -1);
    assert_int_equal(nm_device_spec_check("gpu0", &err), -1);
    assert_non_null(strstr(err.msg, "CUDA device number"));
    assert_int_equal(nm_device_spec_check("1", &err), 0);
    d = nm_device_open("0", g_topo, &err);
    if (d) { /* a CUDA device is here */
        printf("# upload: CUDA device 0: %s, node %d\n", d->name, d->node);
        nm_device_close(d);
    } else {
        printf("# upload: %s\n", err.msg);
        assert_non_null(strstr(err.msg, "no CUDA device"));
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_upload_lands_in_place),
        cmocka_unit_test(test_double_buffering),
        cmocka_unit_test(test_verify_catches_corruption),
        cmocka_unit_test(test_failing_copy),
        cmocka_unit_test(test_device_out_of_memory),
        cmocka_unit_test(test_short_read),
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_nothing_to_upload),
        cmocka_unit_test(test_pci_node),
        cmocka_unit_test(test_device_open),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
