/* The GGUF writer and mkmodel: files are re-read with the project's reader
 * and checked key by key, tensor by tensor; weights are dequantized and their
 * statistics checked; the vocab is checked for the properties llama.cpp's
 * SentencePiece tokenizer relies on; determinism is checked byte for byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "gguf/ggml_types.h"
#include "gguf/gguf.h"
#include "gguf/gguf_write.h"
#include "gguf/llama_hparams.h"
#include "tools/mkmodel.h"
#include "gguf/quant.h"
#include "test_util.h"

#include <fcntl.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[256];

static int setup_dir(void **state) {
    (void)state;
    return nm_test_mkdtemp(g_dir, sizeof g_dir, "test_mkmodel");
}

static int remove_dir(void **state) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *tmp_path(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

static bool file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static void assert_contains(const char *msg, const char *want) {
    if (!strstr(msg, want))
        fail_msg("message '%s' lacks '%s'", msg, want);
}

static nm_gguf *open_ok(const char *path) {
    nm_error err = {{0}};
    nm_gguf *g = nm_gguf_open(path, &err);
    if (!g)
        fail_msg("nm_gguf_open(%s): %s", path, err.msg);
    return g;
}

/* ---- the writer ---- */

static void test_writer_all_value_types(void **state) {
    nm_error err = {{0}};
    nm_gguf_writer *w = nm_gguf_writer_new(64);
    assert_non_null(w);
    uint8_t u8 = 200;
    int8_t i8 = -100;
    uint16_t u16 = 60000;
    int16_t i16 = -30000;
    int64_t i64 = -5000000000ll;
    double f64 = 2.5e300;
    int32_t ints[3] = {-1, 0, 7};
    float floats[2] = {0.5f, -1.25f};
    const char *strs[3] = {"alpha", "", "\xe2\x96\x81word"};
    assert_int_equal(nm_gguf_w_scalar(w, "t.u8", NM_GGUF_UINT8, &u8, &err), 0);
    assert_int_equal(nm_gguf_w_scalar(w, "t.i8", NM_GGUF_INT8, &i8, &err), 0);
    assert_int_equal(nm_gguf_w_scalar(w, "t.u16", NM_GGUF_UINT16, &u16, &err), 0);
    assert_int_equal(nm_gguf_w_scalar(w, "t.i16", NM_GGUF_INT16, &i16, &err), 0);
    assert_int_equal(nm_gguf_w_u32(w, "t.u32", 4000000000u, &err), 0);
    assert_int_equal(nm_gguf_w_i32(w, "t.i32", -2000000000, &err), 0);
    assert_int_equal(nm_gguf_w_u64(w, "t.u64", 1ull << 60, &err), 0);
    assert_int_equal(nm_gguf_w_scalar(w, "t.i64", NM_GGUF_INT64, &i64, &err), 0);
    assert_int_equal(nm_gguf_w_f32(w, "t.f32", 0.125f, &err), 0);
    assert_int_equal(nm_gguf_w_scalar(w, "t.f64", NM_GGUF_FLOAT64, &f64, &err), 0);
    assert_int_equal(nm_gguf_w_bool(w, "t.bool", true, &err), 0);
    assert_int_equal(nm_gguf_w_str(w, "general.alignment_note", "64", &err), 0);
    assert_int_equal(nm_gguf_w_u32(w, "general.alignment", 64, &err), 0);
    assert_int_equal(nm_gguf_w_arr(w, "t.ints", NM_GGUF_INT32, ints, 3, &err), 0);
    assert_int_equal(nm_gguf_w_arr(w, "t.floats", NM_GGUF_FLOAT32, floats, 2, &err), 0);
    assert_int_equal(nm_gguf_w_str_arr(w, "t.strs", strs, 3, &err), 0);
    /* rows of 33 F32 (132 bytes) and 2 Q8_0 blocks: both need padding */
    uint64_t ne_a[2] = {33, 3}, ne_b[1] = {64};
    assert_int_equal(nm_gguf_w_tensor(w, "a", 2, ne_a, NM_TYPE_F32, &err), 0);
    assert_int_equal(nm_gguf_w_tensor(w, "b", 1, ne_b, NM_TYPE_Q8_0, &err), 0);
    assert_int_equal(nm_gguf_w_n_tensors(w), 2);
    assert_int_equal(nm_gguf_w_tensor_bytes(w, 0), 33 * 3 * 4);
    assert_int_equal(nm_gguf_w_tensor_bytes(w, 1), 68);

    const char *path = tmp_path("types.gguf");
    assert_int_equal(nm_gguf_w_begin(w, path, &err), 0);
    assert_true(file_exists(tmp_path("types.gguf.tmp")));
    float a[99];
    for (int i = 0; i < 99; i++)
        a[i] = (float)i - 0.5f;
    uint8_t b[68];
    for (int i = 0; i < 68; i++)
        b[i] = (uint8_t)(i * 3 + 1);
    /* uneven pieces, one spanning the boundary between the tensors */
    uint8_t all[99 * 4 + 68];
    memcpy(all, a, sizeof a);
    memcpy(all + sizeof a, b, sizeof b);
    assert_int_equal(nm_gguf_w_data(w, all, 7, &err), 0);
    assert_int_equal(nm_gguf_w_data(w, all + 7, 400, &err), 0);
    assert_int_equal(nm_gguf_w_data(w, all + 407, sizeof all - 407, &err), 0);
    uint64_t expect_size = nm_gguf_w_file_size(w);
    if (nm_gguf_w_finish(w, &err))
        fail_msg("finish: %s", err.msg);
    nm_gguf_writer_free(w);
    assert_false(file_exists(tmp_path("types.gguf.tmp")));

    nm_gguf *g = open_ok(path);
    assert_int_equal(g->version, 3);
    assert_int_equal(g->alignment, 64);
    assert_int_equal(g->file_size, expect_size);
    assert_int_equal(g->n_kv, 16);
    assert_int_equal(nm_gguf_find(g, "t.u8")->v.u64, 200);
    assert_int_equal(nm_gguf_find(g, "t.i8")->v.i64, -100);
    assert_int_equal(nm_gguf_find(g, "t.u16")->v.u64, 60000);
    assert_int_equal(nm_gguf_find(g, "t.i16")->v.i64, -30000);
    assert_int_equal(nm_gguf_find(g, "t.u32")->v.u64, 4000000000u);
    assert_int_equal(nm_gguf_find(g, "t.i32")->v.i64, -2000000000);
    assert_int_equal(nm_gguf_find(g, "t.u64")->v.u64, 1ull << 60);
    assert_true(nm_gguf_find(g, "t.i64")->v.i64 == -5000000000ll);
    assert_true(nm_gguf_find(g, "t.f32")->v.f64 == 0.125);
    assert_true(nm_gguf_find(g, "t.f64")->v.f64 == 2.5e300);
    assert_int_equal(nm_gguf_find(g, "t.bool")->type, NM_GGUF_BOOL);
    assert_int_equal(nm_gguf_find(g, "t.bool")->v.u64, 1);
    uint64_t count;
    const void *data;
    assert_int_equal(nm_gguf_get_arr(g, "t.ints", NM_GGUF_INT32, &count, &data, &err), 1);
    assert_int_equal(count, 3);
    assert_memory_equal(data, ints, sizeof ints);
    assert_int_equal(nm_gguf_get_arr(g, "t.floats", NM_GGUF_FLOAT32, &count, &data, &err), 1);
    assert_memory_equal(data, floats, sizeof floats);
    assert_int_equal(nm_gguf_get_arr(g, "t.strs", NM_GGUF_STRING, &count, &data, &err), 1);
    assert_int_equal(count, 3);
    for (int i = 0; i < 3; i++)
        assert_string_equal(((const nm_gguf_str *)data)[i].data, strs[i]);

    const nm_gguf_tensor *ta = nm_gguf_find_tensor(g, "a"), *tb = nm_gguf_find_tensor(g, "b");
    assert_non_null(ta);
    assert_non_null(tb);
    assert_int_equal(ta->type, NM_TYPE_F32);
    assert_int_equal(ta->ne[0], 33);
    assert_int_equal(ta->ne[1], 3);
    assert_int_equal(tb->type, NM_TYPE_Q8_0);
    assert_int_equal(ta->file_offset % 64, 0);
    assert_int_equal(tb->file_offset % 64, 0);
    size_t n;
    uint8_t *file = (uint8_t *)nm_test_read_file(path, &n);
    assert_non_null(file);
    assert_memory_equal(file + ta->file_offset, a, sizeof a);
    assert_memory_equal(file + tb->file_offset, b, sizeof b);
    free(file);
    nm_gguf_close(g);
}

static void test_writer_refusals(void **state) {
    nm_error err = {{0}};
    nm_gguf_writer *w = nm_gguf_writer_new(0);
    assert_null(nm_gguf_writer_new(48)); /* not a power of two */
    assert_int_equal(nm_gguf_w_u32(w, "k", 1, &err), 0);
    assert_int_equal(nm_gguf_w_u32(w, "k", 2, &err), -1);
    assert_contains(err.msg, "duplicate metadata key 'k'");
    uint64_t ne[2] = {33, 2};
    assert_int_equal(nm_gguf_w_tensor(w, "q", 2, ne, NM_TYPE_Q8_0, &err), -1);
    assert_contains(err.msg, "tensor 'q'");
    assert_contains(err.msg, "Q8_0");
    ne[0] = 32;
    assert_int_equal(nm_gguf_w_tensor(w, "q", 2, ne, NM_TYPE_Q8_0, &err), 0);
    assert_int_equal(nm_gguf_w_tensor(w, "q", 2, ne, NM_TYPE_Q8_0, &err), -1);
    assert_contains(err.msg, "duplicate tensor name 'q'");
    char longname[80];
    memset(longname, 'x', 70);
    longname[70] = 0;
    assert_int_equal(nm_gguf_w_tensor(w, longname, 2, ne, NM_TYPE_F32, &err), -1);
    assert_contains(err.msg, "70 bytes");

    /* missing bytes at finish: an error, and the .tmp is removed */
    const char *path = tmp_path("short.gguf");
    assert_int_equal(nm_gguf_w_begin(w, path, &err), 0);
    assert_int_equal(nm_gguf_w_u32(w, "late", 1, &err), -1);
    assert_contains(err.msg, "after the header");
    uint8_t buf[200] = {0};
    assert_int_equal(nm_gguf_w_data(w, buf, 10, &err), 0);
    assert_int_equal(nm_gguf_w_finish(w, &err), -1);
    assert_contains(err.msg, "tensor 'q' got 10 of its 68 bytes");
    nm_gguf_writer_free(w);
    assert_false(file_exists(path));
    assert_false(file_exists(tmp_path("short.gguf.tmp")));

    /* too much data */
    w = nm_gguf_writer_new(0);
    assert_int_equal(nm_gguf_w_tensor(w, "q", 2, ne, NM_TYPE_Q8_0, &err), 0);
    assert_int_equal(nm_gguf_w_begin(w, tmp_path("long.gguf"), &err), 0);
    assert_int_equal(nm_gguf_w_data(w, buf, 69, &err), -1);
    assert_contains(err.msg, "beyond the last tensor");
    nm_gguf_writer_free(w);
    assert_false(file_exists(tmp_path("long.gguf.tmp")));

    /* a directory that does not exist */
    w = nm_gguf_writer_new(0);
    assert_int_equal(nm_gguf_w_begin(w, "/nonexistent-dir/x.gguf", &err), -1);
    assert_contains(err.msg, "/nonexistent-dir/x.gguf.tmp");
    nm_gguf_writer_free(w);
}

/* A full disk: /dev/full fails every write with ENOSPC. */
static void test_writer_disk_full(void **state) {
    int fd = open("/dev/full", O_WRONLY);
    if (fd < 0)
        skip();
    nm_error err = {{0}};
    nm_gguf_writer *w = nm_gguf_writer_new(0);
    uint64_t ne[1] = {1 << 20};
    assert_int_equal(nm_gguf_w_tensor(w, "big", 1, ne, NM_TYPE_F32, &err), 0);
    /* the header is small: the failure may come at begin or at the data */
    int rc = nm_gguf_w_begin_fd(w, fd, "/dev/full", &err);
    if (rc == 0) {
        static float zeros[1 << 16];
        for (int i = 0; i < 16 && rc == 0; i++)
            rc = nm_gguf_w_data(w, zeros, sizeof zeros, &err);
    }
    assert_int_equal(rc, -1);
    assert_contains(err.msg, "/dev/full");
    assert_contains(err.msg, "No space left on device");
    assert_int_equal(nm_gguf_w_finish(w, &err), -1);
    nm_gguf_writer_free(w);
    close(fd);
}

/* ---- shapes ---- */

#define PLAIN(t) ((nm_mkmodel_quant){.type = (t)})

/* Counts the matrices of each type that preset ftype gives shape s. */
static void preset_counts(const nm_mkmodel_shape *s, uint32_t ftype, const char *path,
                          uint64_t *count) {
    nm_mkmodel_opts o = {.shape = *s, .ftype = ftype, .seed = 1};
    nm_error err = {{0}};
    memset(count, 0, NM_TYPE_COUNT * sizeof *count);
    if (nm_mkmodel_write(path, &o, NULL, &err))
        fail_msg("preset %u: %s", ftype, err.msg);
    nm_gguf *g = open_ok(path);
    for (uint64_t i = 0; i < g->n_tensors; i++)
        count[g->tensors[i].type]++;
    uint32_t ft = 0;
    assert_int_equal(nm_gguf_get_u32(g, "general.file_type", &ft, &err), 1);
    assert_int_equal(ft, ftype);
    nm_gguf_close(g);
}

/* The presets mix types as llama-quantize does: TinyLlama-1.1B's 22 blocks as
 * Q4_K_M has 135 Q4_K and 21 Q6_K matrices (attn_v and ffn_down of 10 of
 * the 22 blocks, and output), as llama.cpp reports for such files; and on
 * the shape of the shared llama-quantize files every tensor's type is the
 * one llama-quantize chose. */
static void test_presets(void **state) {
    nm_error err = {{0}};
    nm_mkmodel_shape s;
    uint64_t count[NM_TYPE_COUNT];
    /* TinyLlama's 22 blocks and 8 query heads per KV head; the widths
     * change no type, so they are small */
    s = (nm_mkmodel_shape){.n_embd = 256,
                           .n_layer = 22,
                           .n_ff = 768,
                           .n_head = 8,
                           .n_head_kv = 1,
                           .n_vocab = NM_MKMODEL_MIN_VOCAB,
                           .n_ctx = 256};
    preset_counts(&s, 15, tmp_path("mix-q4_k_m.gguf"), count);
    assert_int_equal(count[NM_TYPE_Q4_K], 135);
    assert_int_equal(count[NM_TYPE_Q6_K], 21);
    assert_int_equal(count[NM_TYPE_F32], 45);
    /* Q2_K: attn_v (8 heads per KV head) Q4_K, ffn_down and attn_output
     * Q3_K, output Q6_K */
    preset_counts(&s, 10, tmp_path("mix-q2_k.gguf"), count);
    assert_int_equal(count[NM_TYPE_Q2_K], 89);
    assert_int_equal(count[NM_TYPE_Q3_K], 44);
    assert_int_equal(count[NM_TYPE_Q4_K], 22);
    assert_int_equal(count[NM_TYPE_Q6_K], 1);
    unlink(tmp_path("mix-q4_k_m.gguf"));
    unlink(tmp_path("mix-q2_k.gguf"));

    static const struct {
        const char *file;
        uint32_t ftype;
    } shared[] = {{"tiny-kq-q4_k_m.gguf", 15}, {"tiny-kq-q5_k_m.gguf", 17}};
    for (int k = 0; k < 2; k++) {
        char ref_path[1024];
        snprintf(ref_path, sizeof ref_path, "%s/models/%s", nm_test_shared_dir(), shared[k].file);
        if (access(ref_path, R_OK)) {
            print_message("%s absent: llama-quantize comparison skipped\n", ref_path);
            continue;
        }
        nm_gguf *ref = open_ok(ref_path);
        nm_llama_hparams hp;
        assert_int_equal(nm_llama_hparams_read(ref, &hp, false, &err), 0);
        s = (nm_mkmodel_shape){.n_embd = hp.n_embd,
                               .n_layer = hp.n_layer,
                               .n_ff = hp.n_ff,
                               .n_head = hp.n_head,
                               .n_head_kv = hp.n_head_kv,
                               .n_vocab = hp.n_vocab,
                               .n_ctx = 1024};
        const char *path = tmp_path("mix-shared.gguf");
        preset_counts(&s, shared[k].ftype, path, count);
        nm_gguf *g = open_ok(path);
        assert_int_equal(g->n_tensors, ref->n_tensors);
        for (uint64_t i = 0; i < g->n_tensors; i++) {
            const nm_gguf_tensor *t = &g->tensors[i], *r = nm_gguf_find_tensor(ref, t->name);
            assert_non_null(r);
            if (t->type != r->type)
                fail_msg("%s: %s is %s, llama-quantize made it %s", shared[k].file, t->name,
                         nm_type_name(t->type), nm_type_name(r->type));
        }
        nm_gguf_close(g);
        nm_gguf_close(ref);
        unlink(path);
    }
}

static void test_shapes(void **state) {
    nm_error err = {{0}};
    nm_mkmodel_shape s;
    assert_int_equal(nm_mkmodel_preset("1b", &s, &err), 0);
    assert_int_equal(s.n_embd, 2048);
    assert_int_equal(s.n_layer, 22);
    assert_int_equal(s.n_ff, 5632);
    assert_int_equal(s.n_vocab, 32000);
    /* TinyLlama-1.1B: 1,100,048,384 parameters */
    assert_int_equal(nm_mkmodel_n_params(&s), 1100048384ull);
    assert_int_equal(nm_mkmodel_preset("huge", &s, &err), -1);
    assert_contains(err.msg, "huge");

    assert_int_equal(nm_mkmodel_preset("tiny", &s, &err), 0);
    const uint32_t types[] = {NM_TYPE_F32, NM_TYPE_F16, NM_TYPE_BF16, NM_TYPE_Q8_0, NM_TYPE_Q4_0};
    for (int i = 0; i < 5; i++)
        assert_int_equal(nm_mkmodel_check(&s, PLAIN(types[i]), &err), 0);
    nm_mkmodel_shape bad = s;
    bad.n_ff = 770;
    assert_int_equal(nm_mkmodel_check(&bad, PLAIN(NM_TYPE_F16), &err), 0);
    assert_int_equal(nm_mkmodel_check(&bad, PLAIN(NM_TYPE_Q4_0), &err), -1);
    assert_contains(err.msg, "--ff 770");
    bad = s;
    bad.n_head = 7;
    assert_int_equal(nm_mkmodel_check(&bad, PLAIN(NM_TYPE_F16), &err), -1);
    assert_contains(err.msg, "--heads 7");
    bad = s;
    bad.n_head_kv = 3;
    assert_int_equal(nm_mkmodel_check(&bad, PLAIN(NM_TYPE_F16), &err), -1);
    assert_contains(err.msg, "--kv-heads 3");
    bad = s;
    bad.n_vocab = 100;
    assert_int_equal(nm_mkmodel_check(&bad, PLAIN(NM_TYPE_F16), &err), -1);
    assert_contains(err.msg, "--vocab 100");
    bad = s;
    bad.n_head = 128; /* 256 / 128: head dimension 2 is fine, 256 / 256 is not */
    bad.n_head_kv = 128;
    assert_int_equal(nm_mkmodel_check(&bad, PLAIN(NM_TYPE_F16), &err), 0);
    bad.n_head = bad.n_head_kv = 256;
    assert_int_equal(nm_mkmodel_check(&bad, PLAIN(NM_TYPE_F16), &err), -1);
    assert_contains(err.msg, "head dimension 1 (embd 256 / heads 256) must be even");
    bad = s;
    bad.n_layer = 0;
    assert_int_equal(nm_mkmodel_check(&bad, PLAIN(NM_TYPE_F16), &err), -1);
    assert_contains(err.msg, "--blocks 0 is out of range");
    assert_int_equal(nm_mkmodel_check(&s, PLAIN(NM_TYPE_IQ2_XXS), &err), -1);
    assert_contains(err.msg, "type IQ2_XXS: mkmodel writes f32, f16");

    /* --size: within 10% of the target, rows whole blocks, shape valid */
    const uint64_t G = 1ull << 30, M = 1ull << 20;
    const uint64_t sizes[] = {100 * M, 700 * M, 2 * G, 4 * G, 13 * G};
    for (int t = 0; t < 5; t++) {
        for (int k = 0; k < 5; k++) {
            int rc = nm_mkmodel_shape_for_size(sizes[k], PLAIN(types[t]), 32000, &s, &err);
            if (rc && types[t] == NM_TYPE_F32 && sizes[k] == 100 * M)
                continue; /* below the smallest F32 shape with a 32000 vocab */
            if (rc)
                fail_msg("size %llu type %s: %s", (unsigned long long)sizes[k],
                         nm_type_name(types[t]), err.msg);
            assert_int_equal(nm_mkmodel_check(&s, PLAIN(types[t]), &err), 0);
            double got = (double)nm_mkmodel_data_bytes(&s, PLAIN(types[t]));
            double want = (double)sizes[k];
            if (fabs(got - want) > 0.1 * want)
                fail_msg("size %llu type %s: shape gives %.0f bytes", (unsigned long long)sizes[k],
                         nm_type_name(types[t]), got);
        }
    }
    assert_int_equal(nm_mkmodel_shape_for_size(1 * M, PLAIN(NM_TYPE_F16), 32000, &s, &err), -1);
    assert_contains(err.msg, "too small");
}

/* ---- the vocab ---- */

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static bool in_sorted(char **sorted, uint32_t n, const char *s) {
    return bsearch(&s, sorted, n, sizeof *sorted, cmp_str) != NULL;
}

static void check_vocab(const nm_mkmodel_vocab *v, uint32_t n) {
    assert_int_equal(v->n, n);
    assert_string_equal(v->pieces[0], "<unk>");
    assert_string_equal(v->pieces[1], "<s>");
    assert_string_equal(v->pieces[2], "</s>");
    assert_int_equal(v->types[0], 2);
    assert_int_equal(v->types[1], 3);
    assert_int_equal(v->types[2], 3);
    for (int i = 0; i < 256; i++) {
        char want[8];
        snprintf(want, sizeof want, "<0x%02X>", i);
        assert_string_equal(v->pieces[3 + i], want);
        assert_int_equal(v->types[3 + i], 6);
    }
    assert_string_equal(v->pieces[259], "\xe2\x96\x81");
    /* unique */
    char **sorted = malloc(n * sizeof *sorted);
    memcpy(sorted, v->pieces, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, cmp_str);
    for (uint32_t i = 1; i < n; i++)
        if (!strcmp(sorted[i - 1], sorted[i]))
            fail_msg("piece '%s' appears twice", sorted[i]);
    /* normal pieces: scores strictly decreasing; each piece of several
     * characters splits into two pieces of the vocab */
    for (uint32_t i = 259; i < n; i++) {
        assert_int_equal(v->types[i], 1);
        if (i > 259 && !(v->scores[i] < v->scores[i - 1]))
            fail_msg("score of piece %u is not below the previous one", i);
        const char *p = v->pieces[i];
        size_t len = strlen(p);
        bool single = true, split = false;
        for (size_t k = 1; k < len && !split; k++) {
            if (((uint8_t)p[k] & 0xc0) == 0x80)
                continue; /* inside a UTF-8 character */
            single = false;
            char left[64];
            memcpy(left, p, k);
            left[k] = 0;
            split = in_sorted(sorted, n, left) && in_sorted(sorted, n, p + k);
        }
        if (!single && !split)
            fail_msg("piece %u '%s' is not two pieces of the vocab", i, p);
    }
    free(sorted);
}

static void test_vocab(void **state) {
    nm_error err = {{0}};
    nm_mkmodel_vocab v;
    const uint32_t sizes[] = {NM_MKMODEL_MIN_VOCAB, 2048, 32000, NM_MKMODEL_MAX_VOCAB};
    for (int k = 0; k < 4; k++) {
        if (nm_mkmodel_vocab_build(sizes[k], &v, &err))
            fail_msg("vocab %u: %s", sizes[k], err.msg);
        check_vocab(&v, sizes[k]);
        nm_mkmodel_vocab_free(&v);
    }
    assert_int_equal(nm_mkmodel_vocab_build(10, &v, &err), -1);
    assert_contains(err.msg, "vocab size 10");
}

/* ---- whole files ---- */

static const uint32_t TYPES[] = {NM_TYPE_F32, NM_TYPE_F16, NM_TYPE_BF16, NM_TYPE_Q8_0,
                                 NM_TYPE_Q4_0};

static const char *write_tiny(uint32_t type, uint64_t seed, const char *name) {
    nm_error err = {{0}};
    const char *path = tmp_path(name);
    nm_mkmodel_result r;
    if (nm_test_write_tiny(path, type, seed, &r, &err))
        fail_msg("mkmodel %s: %s", name, err.msg);
    assert_int_equal(r.n_tensors, 3 + 9 * 4);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal((uint64_t)st.st_size, r.file_bytes);
    return path;
}

static void check_u32(const nm_gguf *g, const char *key, uint32_t want) {
    nm_error err = {{0}};
    uint32_t v = 0;
    if (nm_gguf_get_u32(g, key, &v, &err) != 1)
        fail_msg("key %s: %s", key, err.msg);
    if (v != want)
        fail_msg("key %s is %u, expected %u", key, v, want);
}

static void check_metadata(const nm_gguf *g, uint32_t type) {
    nm_error err = {{0}};
    const char *s;
    bool b;
    assert_int_equal(nm_gguf_get_str(g, "general.architecture", &s, &err), 1);
    assert_string_equal(s, "llama");
    assert_int_equal(nm_gguf_get_str(g, "tokenizer.ggml.model", &s, &err), 1);
    assert_string_equal(s, "llama");
    assert_int_equal(nm_gguf_get_str(g, "general.name", &s, &err), 1);
    assert_int_equal(nm_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b, &err), 1);
    assert_true(b);
    check_u32(g, "general.alignment", 32);
    check_u32(g, "general.file_type", (uint32_t)nm_mkmodel_file_type(PLAIN(type)));
    check_u32(g, "llama.context_length", 1024);
    check_u32(g, "llama.rope.dimension_count", 32);
    check_u32(g, "llama.vocab_size", 2048);
    check_u32(g, "tokenizer.ggml.bos_token_id", 1);
    check_u32(g, "tokenizer.ggml.eos_token_id", 2);
    check_u32(g, "tokenizer.ggml.unknown_token_id", 0);

    /* the vocab in the file is the generated one */
    nm_mkmodel_vocab v;
    assert_int_equal(nm_mkmodel_vocab_build(2048, &v, &err), 0);
    uint64_t count;
    const void *data;
    assert_int_equal(
        nm_gguf_get_arr(g, "tokenizer.ggml.tokens", NM_GGUF_STRING, &count, &data, &err), 1);
    assert_int_equal(count, 2048);
    for (uint32_t i = 0; i < 2048; i++)
        assert_string_equal(((const nm_gguf_str *)data)[i].data, v.pieces[i]);
    assert_int_equal(
        nm_gguf_get_arr(g, "tokenizer.ggml.scores", NM_GGUF_FLOAT32, &count, &data, &err), 1);
    assert_memory_equal(data, v.scores, 2048 * sizeof(float));
    assert_int_equal(
        nm_gguf_get_arr(g, "tokenizer.ggml.token_type", NM_GGUF_INT32, &count, &data, &err), 1);
    assert_memory_equal(data, v.types, 2048 * sizeof(int32_t));
    nm_mkmodel_vocab_free(&v);
}

static void check_tensors(const nm_gguf *g, uint32_t type) {
    assert_int_equal(g->n_tensors, 39);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const nm_gguf_tensor *t = &g->tensors[i];
        bool norm = strstr(t->name, "norm") != NULL;
        if (t->type != (norm ? NM_TYPE_F32 : type))
            fail_msg("tensor %s is %s", t->name, nm_type_name(t->type));
        assert_int_equal(t->file_offset % 32, 0);
        assert_int_equal(t->n_dims, norm ? 1 : 2);
    }
    const nm_gguf_tensor *t = nm_gguf_find_tensor(g, "blk.3.attn_k.weight");
    assert_non_null(t);
    assert_int_equal(t->ne[0], 256);
    assert_int_equal(t->ne[1], 128); /* 4 kv heads of 32 */
    t = nm_gguf_find_tensor(g, "blk.0.ffn_down.weight");
    assert_int_equal(t->ne[0], 768);
    assert_int_equal(t->ne[1], 256);
    t = nm_gguf_find_tensor(g, "output.weight");
    assert_non_null(t);
    assert_int_equal(t->ne[1], 2048);
}

static void test_tiny_each_type(void **state) {
    for (int k = 0; k < 5; k++) {
        char name[64];
        snprintf(name, sizeof name, "tiny-%s.gguf", nm_type_name(TYPES[k]));
        const char *path = write_tiny(TYPES[k], 42, name);
        nm_gguf *g = open_ok(path);
        check_metadata(g, TYPES[k]);
        check_tensors(g, TYPES[k]);
        nm_error err = {{0}};
        nm_llama_hparams hp;
        if (nm_llama_hparams_read(g, &hp, true, &err))
            fail_msg("%s: hparams: %s", name, err.msg);
        assert_int_equal(hp.n_layer, 4);
        assert_int_equal(hp.n_embd, 256);
        assert_int_equal(hp.n_ff, 768);
        assert_int_equal(hp.n_head, 8);
        assert_int_equal(hp.n_head_kv, 4);
        assert_int_equal(hp.n_vocab, 2048);
        assert_int_equal(hp.head_dim, 32);
        assert_int_equal(hp.n_rot, 32);
        if (nm_llama_check_tensors(g, &hp, &err))
            fail_msg("%s: tensors: %s", name, err.msg);
        nm_gguf_close(g);
    }
}

static void test_deterministic(void **state) {
    size_t n1, n2, n3;
    void *a = nm_test_read_file(write_tiny(NM_TYPE_Q4_0, 7, "det1.gguf"), &n1);
    void *b = nm_test_read_file(write_tiny(NM_TYPE_Q4_0, 7, "det2.gguf"), &n2);
    void *c = nm_test_read_file(write_tiny(NM_TYPE_Q4_0, 8, "det3.gguf"), &n3);
    assert_true(a && b && c);
    assert_int_equal(n1, n2);
    assert_memory_equal(a, b, n1);
    /* another seed: same layout, other weights */
    assert_int_equal(n1, n3);
    assert_memory_not_equal(a, c, n1);
    free(a);
    free(b);
    free(c);
}

/* Dequantized weights: finite, mean ~0 and the intended std for matrices,
 * values near 1 for norms. */
static void check_stats(const nm_gguf *g, const uint8_t *file, const char *name, double want_mean,
                        double want_std, double tol) {
    const nm_gguf_tensor *t = nm_gguf_find_tensor(g, name);
    assert_non_null(t);
    uint64_t n = t->ne[0] * t->n_rows;
    float *f = malloc(n * sizeof *f);
    assert_int_equal(nm_dequantize_row(t->type, file + t->file_offset, f, (int64_t)n), 0);
    double sum = 0, sq = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (!isfinite(f[i]))
            fail_msg("%s[%llu] is not finite", name, (unsigned long long)i);
        sum += f[i];
        sq += (double)f[i] * f[i];
    }
    double mean = sum / n, std = sqrt(sq / n - mean * mean);
    /* the mean of n draws is off by want_std/sqrt(n) typically: allow 5x */
    if (fabs(mean - want_mean) > 5 * want_std / sqrt((double)n) ||
        fabs(std - want_std) > tol * want_std)
        fail_msg("%s (%s): mean %g std %g, expected %g and %g", name, nm_type_name(t->type), mean,
                 std, want_mean, want_std);
    free(f);
}

static void test_weight_stats(void **state) {
    for (int k = 0; k < 5; k++) {
        char name[64];
        snprintf(name, sizeof name, "stats-%s.gguf", nm_type_name(TYPES[k]));
        const char *path = write_tiny(TYPES[k], 42, name);
        nm_gguf *g = open_ok(path);
        size_t n;
        uint8_t *file = (uint8_t *)nm_test_read_file(path, &n);
        assert_non_null(file);
        /* Q4_0 adds rounding noise (step max/8): allow more */
        double tol = TYPES[k] == NM_TYPE_Q4_0 ? 0.15 : 0.05;
        check_stats(g, file, "token_embd.weight", 0.0, 1.0, tol);
        check_stats(g, file, "blk.0.attn_q.weight", 0.0, 1.0 / 16, tol);
        check_stats(g, file, "blk.2.ffn_up.weight", 0.0, 1.0 / 16, tol);
        check_stats(g, file, "blk.1.ffn_down.weight", 0.0, 0.5 / sqrt(768.0), tol);
        check_stats(g, file, "output.weight", 0.0, 2.0 / 16, tol);
        check_stats(g, file, "blk.3.ffn_norm.weight", 1.0, 0.05, 0.2);
        check_stats(g, file, "output_norm.weight", 1.0, 0.05, 0.2);
        free(file);
        nm_gguf_close(g);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_writer_all_value_types),
        cmocka_unit_test(test_writer_refusals),
        cmocka_unit_test(test_writer_disk_full),
        cmocka_unit_test(test_shapes),
        cmocka_unit_test(test_presets),
        cmocka_unit_test(test_vocab),
        cmocka_unit_test(test_tiny_each_type),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_weight_stats),
    };
    return cmocka_run_group_tests(tests, setup_dir, remove_dir);
}
