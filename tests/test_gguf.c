/* The GGUF reader: good files of every value type (built here), the
 * reference model when present, and malformed files that must each be
 * refused with a message naming what and where. The llama hyperparameters
 * read from such files: test_hparams.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "gguf_builder.h"
#include "gguf/ggml_types.h"
#include "gguf/gguf.h"
#include "gguf/llama_hparams.h"
#include "test_util.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gguf_parse.h"

/* ---- good files ---- */

static void write_every_type(gb *b, uint32_t version) {
    gb_header(b, version, 2, 17);
    gb_key(b, "v.u8", GB_U8), gb_u8(b, 200);
    gb_key(b, "v.i8", GB_I8), gb_u8(b, (uint8_t)-5);
    gb_key(b, "v.u16", GB_U16), gb_u16(b, 60000);
    gb_key(b, "v.i16", GB_I16), gb_u16(b, (uint16_t)-300);
    gb_kv_u32(b, "v.u32", 4000000000u);
    gb_key(b, "v.i32", GB_I32), gb_u32(b, (uint32_t)-70000);
    gb_kv_f32(b, "v.f32", 1.5f);
    gb_key(b, "v.bool", GB_BOOL), gb_u8(b, 1);
    gb_kv_str(b, "v.str", "hello");
    gb_key(b, "v.u64", GB_U64), gb_u64(b, 1ull << 40);
    gb_key(b, "v.i64", GB_I64), gb_u64(b, (uint64_t) - (1ll << 40));
    gb_key(b, "v.f64", GB_F64), gb_f64(b, -2.25);
    gb_kv_arr_header(b, "a.i32", GB_I32, 3);
    gb_u32(b, 1), gb_u32(b, (uint32_t)-2), gb_u32(b, 3);
    gb_kv_arr_header(b, "a.str", GB_STR, 3);
    gb_str(b, "one"), gb_strn(b, "t\0o", 3), gb_str(b, "");
    gb_kv_arr_header(b, "a.bool", GB_BOOL, 2);
    gb_u8(b, 0), gb_u8(b, 1);
    gb_kv_arr_header(b, "a.empty", GB_F32, 0);
    gb_kv_u32(b, "general.alignment", 64);
    const uint64_t ne_a[2] = {64, 3}, ne_b[1] = {32};
    gb_tensor_info(b, "a", 2, ne_a, 8, 0);   /* Q8_0: 2 blocks x 3 rows = 204 bytes */
    gb_tensor_info(b, "b", 1, ne_b, 0, 256); /* F32, after a's 204 bytes + padding */
    gb_pad(b, 64);
    gb_zeros(b, 256 + 128);
}

static void check_every_type(uint32_t version) {
    gb b = {0};
    write_every_type(&b, version);
    nm_gguf *g = parse_ok(&b);
    nm_error err = {{0}};
    assert_int_equal(g->version, version);
    assert_int_equal(g->n_kv, 17);
    assert_int_equal(g->alignment, 64);
    assert_int_equal(g->data_offset % 64, 0);
    assert_true(g->data_offset + 384 == b.n);
    uint64_t u;
    uint32_t u32;
    float f;
    bool bl;
    const char *s;
    assert_int_equal(nm_gguf_get_u64(g, "v.u8", &u, &err), 1), assert_int_equal(u, 200);
    assert_int_equal(nm_gguf_find(g, "v.i8")->v.i64, -5);
    assert_int_equal(nm_gguf_get_u32(g, "v.u16", &u32, &err), 1), assert_int_equal(u32, 60000);
    assert_int_equal(nm_gguf_find(g, "v.i16")->v.i64, -300);
    assert_int_equal(nm_gguf_get_u32(g, "v.u32", &u32, &err), 1);
    assert_int_equal(u32, 4000000000u);
    assert_int_equal(nm_gguf_find(g, "v.i32")->v.i64, -70000);
    assert_int_equal(nm_gguf_get_f32(g, "v.f32", &f, &err), 1), assert_true(f == 1.5f);
    assert_int_equal(nm_gguf_get_bool(g, "v.bool", &bl, &err), 1), assert_true(bl);
    assert_int_equal(nm_gguf_get_str(g, "v.str", &s, &err), 1), assert_string_equal(s, "hello");
    assert_int_equal(nm_gguf_get_u64(g, "v.u64", &u, &err), 1), assert_true(u == 1ull << 40);
    assert_true(nm_gguf_find(g, "v.i64")->v.i64 == -(1ll << 40));
    assert_true(nm_gguf_find(g, "v.f64")->v.f64 == -2.25);
    uint64_t count;
    const void *data;
    assert_int_equal(nm_gguf_get_arr(g, "a.i32", NM_GGUF_INT32, &count, &data, &err), 1);
    assert_int_equal(count, 3);
    assert_int_equal(((const int32_t *)data)[1], -2);
    assert_int_equal(nm_gguf_get_arr(g, "a.str", NM_GGUF_STRING, &count, &data, &err), 1);
    const nm_gguf_str *strs = data;
    assert_int_equal(count, 3);
    assert_string_equal(strs[0].data, "one");
    assert_int_equal(strs[1].len, 3);
    assert_memory_equal(strs[1].data, "t\0o", 3);
    assert_int_equal(strs[2].len, 0), assert_string_equal(strs[2].data, "");
    assert_int_equal(nm_gguf_get_arr(g, "a.bool", NM_GGUF_BOOL, &count, &data, &err), 1);
    assert_int_equal(((const uint8_t *)data)[1], 1);
    assert_int_equal(nm_gguf_get_arr(g, "a.empty", NM_GGUF_FLOAT32, &count, &data, &err), 1);
    assert_int_equal(count, 0);
    /* typed getters refuse the wrong type and values out of range */
    assert_int_equal(nm_gguf_get_u32(g, "v.u64", &u32, &err), -1);
    assert_contains(err.msg, "v.u64");
    assert_int_equal(nm_gguf_get_u64(g, "v.i8", &u, &err), -1);
    assert_contains(err.msg, "-5");
    assert_int_equal(nm_gguf_get_str(g, "v.u8", &s, &err), -1);
    assert_contains(err.msg, "has type uint8; expected string");
    assert_int_equal(nm_gguf_get_arr(g, "a.i32", NM_GGUF_UINT32, &count, &data, &err), -1);
    assert_int_equal(nm_gguf_get_u64(g, "absent", &u, &err), 0);
    /* tensors */
    assert_int_equal(g->n_tensors, 2);
    const nm_gguf_tensor *ta = nm_gguf_find_tensor(g, "a"), *tb = nm_gguf_find_tensor(g, "b");
    assert_non_null(ta), assert_non_null(tb);
    assert_int_equal(ta->nbytes, 204), assert_int_equal(ta->row_bytes, 68);
    assert_int_equal(ta->n_rows, 3);
    assert_int_equal(tb->file_offset, g->data_offset + 256);
    assert_int_equal(g->data_bytes, 204 + 128);
    assert_int_equal(nm_gguf_tensor_index(g, "b"), 1);
    assert_int_equal(nm_gguf_tensor_index(g, "c"), -1);
    nm_gguf_close(g);
    gb_free(&b);
}

static void test_every_type_v3(void **state) {
    (void)state, check_every_type(3);
}
static void test_every_type_v2(void **state) {
    (void)state, check_every_type(2);
}

static void test_tiny_llama(void **state) {
    (void)state;
    for (int variant = 0; variant < 4; variant++) {
        gb_llama o = gb_llama_default();
        o.version = variant & 1 ? 2 : 3;
        o.alignment = variant & 2 ? 128 : 0;
        o.with_tokens = variant != 1;
        o.matrix_type = variant == 3 ? NM_TYPE_Q8_0 : NM_TYPE_F32;
        o.with_output = variant != 2;
        gb b = {0};
        gb_write_llama(&b, &o);
        nm_gguf *g = parse_ok(&b);
        nm_llama_hparams hp;
        nm_error err = {{0}};
        if (nm_llama_hparams_read(g, &hp, true, &err) || nm_llama_check_tensors(g, &hp, &err))
            fail_msg("variant %d: %s", variant, err.msg);
        assert_string_equal(hp.arch, "llama");
        assert_int_equal(hp.n_layer, 2), assert_int_equal(hp.n_embd, 32);
        assert_int_equal(hp.n_ff, 64), assert_int_equal(hp.n_head, 4);
        assert_int_equal(hp.n_head_kv, 2), assert_int_equal(hp.head_dim, 8);
        assert_int_equal(hp.n_rot, 8), assert_int_equal(hp.n_vocab, 40);
        assert_int_equal(hp.n_ctx_train, 128);
        assert_true(hp.rope_freq_base == 10000.0f);
        assert_true(fabsf(hp.rms_eps - 1e-5f) < 1e-9f);
        assert_int_equal(g->alignment, o.alignment ? o.alignment : 32);
        nm_gguf_close(g);
        gb_free(&b);
    }
}

static void test_stories260k(void **state) {
    (void)state;
    char path[4096];
    snprintf(path, sizeof path, "%s/models/stories260K.gguf", nm_test_shared_dir());
    struct stat st;
    if (stat(path, &st)) {
        print_message("skipped: %s is absent\n", path);
        skip();
    }
    nm_error err = {{0}};
    nm_gguf *g = nm_gguf_open(path, &err);
    if (!g)
        fail_msg("%s", err.msg);
    assert_int_equal(g->version, 3);
    assert_int_equal(g->n_kv, 19);
    assert_int_equal(g->n_tensors, 48);
    assert_int_equal(g->data_offset, 14176);
    assert_int_equal(g->alignment, 32);
    for (uint64_t i = 0; i < g->n_tensors; i++)
        assert_int_equal(g->tensors[i].type, NM_TYPE_F32);
    nm_llama_hparams hp;
    if (nm_llama_hparams_read(g, &hp, true, &err) || nm_llama_check_tensors(g, &hp, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(hp.n_layer, 5), assert_int_equal(hp.n_vocab, 512);
    assert_int_equal(hp.n_embd, 64), assert_int_equal(hp.n_ff, 172);
    assert_int_equal(hp.n_head, 8), assert_int_equal(hp.n_head_kv, 4);
    assert_int_equal(hp.n_rot, 8), assert_int_equal(hp.n_ctx_train, 2048);
    const nm_gguf_tensor *t = nm_gguf_find_tensor(g, "token_embd.weight");
    assert_non_null(t);
    assert_int_equal(t->ne[0], 64), assert_int_equal(t->ne[1], 512);
    assert_int_equal(t->file_offset, 14176);
    nm_gguf_close(g);
    /* a real file cut anywhere in its header or data is refused */
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    gb b = {0};
    unsigned char buf[65536];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0)
        gb_bytes(&b, buf, got);
    fclose(f);
    assert_int_equal(b.n, (size_t)st.st_size);
    for (size_t n = 0; n < b.n; n += n < 14176 ? 1 : 4099) {
        size_t full = b.n;
        b.n = n;
        g = parse(&b, &err);
        b.n = full;
        if (g)
            fail_msg("stories260K cut at %zu bytes: accepted", n);
        assert_contains(err.msg, "byte");
    }
    gb_free(&b);
}

/* ---- truncation ---- */

static void test_truncated_everywhere(void **state) {
    (void)state;
    gb_llama o = gb_llama_default();
    o.alignment = 64;
    gb b = {0};
    gb_write_llama(&b, &o);
    nm_gguf *g = parse_ok(&b);
    uint64_t data_offset = g->data_offset;
    nm_gguf_close(g);
    /* every prefix of the header, and every prefix that cuts the data */
    for (size_t n = 0; n < b.n; n += n < data_offset ? 1 : 97) {
        gb cut = {0};
        gb_bytes(&cut, b.p, n);
        nm_error err;
        g = parse(&cut, &err);
        if (g)
            fail_msg("truncated at %zu of %zu bytes: accepted", n, b.n);
        assert_contains(err.msg, "t.gguf: ");
        assert_contains(err.msg, "byte");
        if (!strstr(err.msg, "header") && !strstr(err.msg, "key") && !strstr(err.msg, "tensor"))
            fail_msg("truncated at %zu: '%s' names no header, key or tensor", n, err.msg);
        gb_free(&cut);
    }
    gb_free(&b);
}

/* ---- header ---- */

static void test_bad_magic_and_version(void **state) {
    (void)state;
    gb b = {0};
    gb_bytes(&b, "GGUX", 4), gb_u32(&b, 3), gb_u64(&b, 0), gb_u64(&b, 0);
    EXPECT_FAIL(&b, "not a GGUF file", "'GGUX'");
    gb_header(&b, 1, 0, 0);
    EXPECT_FAIL(&b, "unsupported GGUF version 1");
    gb_header(&b, 4, 0, 0);
    EXPECT_FAIL(&b, "unsupported GGUF version 4");
    gb_header(&b, 0x03000000, 0, 0);
    EXPECT_FAIL(&b, "unsupported GGUF version 50331648", "big-endian");
}

/* Paths that are not GGUF files at all: the message names the path. */
static void test_open_refusals(void **state) {
    (void)state;
    nm_error err = {{0}};
    assert_null(nm_gguf_open("/nonexistent-numalm/m.gguf", &err));
    assert_non_null(strstr(err.msg, "/nonexistent-numalm/m.gguf: cannot open"));
    assert_null(nm_gguf_open("/tmp", &err));
    assert_non_null(strstr(err.msg, "/tmp: not a regular file"));
}

static void test_huge_counts(void **state) {
    (void)state;
    gb b = {0};
    gb_header(&b, 3, 0, UINT64_MAX);
    EXPECT_FAIL(&b, "n_kv 18446744073709551615", "byte 16", "impossible");
    gb_header(&b, 3, 1ull << 60, 0);
    gb_zeros(&b, 100);
    EXPECT_FAIL(&b, "n_tensors 1152921504606846976", "byte 8");
    gb_header(&b, 3, 0, 1000); /* plausible alone, but 1000 keys need > 13 KB */
    gb_zeros(&b, 1000);
    EXPECT_FAIL(&b, "n_kv 1000");
    /* a key whose length runs past the end of the file */
    gb_header(&b, 3, 0, 1), gb_u64(&b, 1ull << 62), gb_zeros(&b, 20);
    EXPECT_FAIL(&b, "key #0 (at byte 24)", "key length 4611686018427387904");
    gb_header(&b, 3, 0, 1), gb_u64(&b, 40), gb_bytes(&b, "abc", 3), gb_zeros(&b, 20);
    EXPECT_FAIL(&b, "key #0 (at byte 24)", "runs past the end of the file");
    gb_header(&b, 3, 0, 1), gb_u64(&b, 70000), gb_zeros(&b, 70100);
    EXPECT_FAIL(&b, "key #0", "exceeds the limit of 65535");
    gb_header(&b, 3, 0, 1), gb_u64(&b, 0), gb_zeros(&b, 20);
    EXPECT_FAIL(&b, "empty key at byte 24");
    /* a string value longer than the file */
    gb_header(&b, 3, 0, 1), gb_key(&b, "s", GB_STR), gb_u64(&b, UINT64_MAX - 1);
    EXPECT_FAIL(&b, "key 's' (at byte 24)", "string value length", "past the end");
    gb_header(&b, 3, 0, 1), gb_key(&b, "s", GB_STR), gb_u64(&b, 100), gb_zeros(&b, 50);
    EXPECT_FAIL(&b, "key 's'", "string value length 100", "only 50 bytes remain");
    /* array counts */
    gb_header(&b, 3, 0, 1), gb_kv_arr_header(&b, "a", GB_U32, 1ull << 62), gb_zeros(&b, 64);
    EXPECT_FAIL(&b, "key 'a' (at byte 24)", "array count 4611686018427387904", "impossible");
    gb_header(&b, 3, 0, 1), gb_kv_arr_header(&b, "a", GB_STR, UINT64_MAX), gb_zeros(&b, 64);
    EXPECT_FAIL(&b, "key 'a'", "array count 18446744073709551615");
    gb_header(&b, 3, 0, 1), gb_kv_arr_header(&b, "a", GB_STR, 3);
    gb_str(&b, "x"), gb_u64(&b, 1000), gb_zeros(&b, 10);
    EXPECT_FAIL(&b, "key 'a'", "array string length 1000", "past the end");
    gb_header(&b, 3, 0, 1), gb_kv_arr_header(&b, "a", GB_U64, 4), gb_zeros(&b, 31);
    EXPECT_FAIL(&b, "key 'a'", "array count 4", "impossible");
}

static void test_bad_values(void **state) {
    (void)state;
    gb b = {0};
    gb_header(&b, 3, 0, 1), gb_key(&b, "k.x", 13), gb_zeros(&b, 8);
    EXPECT_FAIL(&b, "key 'k.x' (at byte 24)", "unknown value type 13 at byte 35");
    gb_header(&b, 3, 0, 1), gb_kv_arr_header(&b, "k.arr", 99, 1), gb_zeros(&b, 8);
    EXPECT_FAIL(&b, "key 'k.arr'", "unknown array element type 99");
    gb_header(&b, 3, 0, 1), gb_kv_arr_header(&b, "k.nest", GB_ARR, 1), gb_zeros(&b, 32);
    EXPECT_FAIL(&b, "key 'k.nest'", "nested arrays");
    gb_header(&b, 3, 0, 1), gb_key(&b, "k.b", GB_BOOL), gb_u8(&b, 2);
    EXPECT_FAIL(&b, "key 'k.b'", "bool value at byte 39 is 2");
    gb_header(&b, 3, 0, 1), gb_kv_arr_header(&b, "k.ba", GB_BOOL, 2), gb_u8(&b, 1), gb_u8(&b, 7);
    EXPECT_FAIL(&b, "key 'k.ba'", "bool array element 1");
    gb_header(&b, 3, 0, 1), gb_strn(&b, "a\nb", 3), gb_u32(&b, GB_U8), gb_u8(&b, 0);
    EXPECT_FAIL(&b, "key #0", "byte 0x0a");
    gb_header(&b, 3, 0, 2), gb_kv_u32(&b, "dup", 1), gb_kv_u32(&b, "dup", 2);
    EXPECT_FAIL(&b, "key 'dup' (at byte 43)", "duplicate key", "first defined at byte 24");
}

static void test_bad_alignment(void **state) {
    (void)state;
    gb b = {0};
    gb_header(&b, 3, 0, 1), gb_kv_u32(&b, "general.alignment", 0);
    EXPECT_FAIL(&b, "general.alignment", "byte 24", "alignment 0 is not a nonzero power of two");
    gb_header(&b, 3, 0, 1), gb_kv_u32(&b, "general.alignment", 3);
    EXPECT_FAIL(&b, "general.alignment", "alignment 3 is not");
    gb_header(&b, 3, 0, 1), gb_key(&b, "general.alignment", GB_U64), gb_u64(&b, 32);
    EXPECT_FAIL(&b, "general.alignment", "has type uint64; the format requires uint32");
    gb_header(&b, 3, 0, 1), gb_kv_str(&b, "general.alignment", "32");
    EXPECT_FAIL(&b, "general.alignment", "has type string");
}

/* ---- tensor infos ---- */

typedef struct tspec {
    const char *name;
    uint32_t n_dims;
    uint64_t ne[5];
    uint32_t type;
    uint64_t offset;
} tspec;

/* One kv, the given tensor infos, padding to 32 and data_bytes of data.
 * The first tensor info starts at byte 41. */
static void write_tensors(gb *b, const tspec *t, int n, uint64_t data_bytes) {
    gb_header(b, 3, (uint64_t)n, 1);
    gb_kv_u32(b, "k", 1); /* bytes 24..40 */
    for (int i = 0; i < n; i++)
        gb_tensor_info(b, t[i].name, t[i].n_dims, t[i].ne, t[i].type, t[i].offset);
    gb_pad(b, 32);
    gb_zeros(b, data_bytes);
}

static void expect_tensor_fail(const tspec *t, int n, uint64_t data_bytes,
                               const char *const *subs) {
    gb b = {0};
    write_tensors(&b, t, n, data_bytes);
    expect_fail(&b, subs);
}
#define EXPECT_TENSORS_FAIL(data_bytes, specs, ...)                                                \
    expect_tensor_fail(specs, (int)(sizeof specs / sizeof specs[0]), data_bytes,                   \
                       (const char *const[]){__VA_ARGS__, NULL})

static void test_bad_tensor_shapes(void **state) {
    (void)state;
    gb b = {0};
    tspec ok[] = {{"w", 2, {32, 4}, NM_TYPE_F32, 0}};
    write_tensors(&b, ok, 1, 512);
    nm_gguf *g = parse_ok(&b);
    assert_int_equal(g->tensors[0].info_offset, 41);
    nm_gguf_close(g);
    gb_free(&b);

    tspec unknown[] = {{"w", 2, {32, 4}, 77, 0}};
    EXPECT_TENSORS_FAIL(512, unknown, "tensor 'w' (info at byte 41)", "unknown tensor type 77");
    tspec removed[] = {{"w", 2, {32, 4}, 4, 0}}; /* Q4_2, removed from the format */
    EXPECT_TENSORS_FAIL(512, removed, "tensor 'w'", "unknown tensor type 4");
    tspec dims0[] = {{"w", 0, {0}, NM_TYPE_F32, 0}};
    EXPECT_TENSORS_FAIL(512, dims0, "tensor 'w' (info at byte 41)", "n_dims 0 at byte 50");
    tspec dims5[] = {{"w", 5, {1, 1, 1, 1, 1}, NM_TYPE_F32, 0}};
    EXPECT_TENSORS_FAIL(512, dims5, "tensor 'w'", "n_dims 5");
    tspec zero[] = {{"w", 3, {32, 0, 2}, NM_TYPE_F32, 0}};
    EXPECT_TENSORS_FAIL(512, zero, "tensor 'w'", "dimension 1 is 0");
    tspec huge_dim[] = {{"w", 1, {1ull << 63}, NM_TYPE_F32, 0}};
    EXPECT_TENSORS_FAIL(512, huge_dim, "tensor 'w'", "dimension 0", "int64");
    tspec ovf[] = {{"w", 4, {32, 1ull << 32, 1ull << 32, 2}, NM_TYPE_F32, 0}};
    EXPECT_TENSORS_FAIL(512, ovf, "tensor 'w'", "overflows 64 bits");
    tspec ovf_bytes[] = {{"w", 2, {1ull << 32, 1ull << 31}, NM_TYPE_F32, 0}};
    EXPECT_TENSORS_FAIL(512, ovf_bytes, "tensor 'w'", "overflows 64 bits");
    tspec block[] = {{"w", 2, {33, 4}, NM_TYPE_Q8_0, 0}};
    EXPECT_TENSORS_FAIL(512, block, "tensor 'w'", "ne[0] = 33", "Q8_0 block size 32");
    tspec noname[] = {{"", 1, {8}, NM_TYPE_F32, 0}};
    EXPECT_TENSORS_FAIL(512, noname, "tensor #0 (info at byte 41)", "empty tensor name at byte 41");
    tspec longname[] = {{"a.very.long.tensor.name.that.is.longer.than.sixty.four.bytes.xyz",
                         1,
                         {8},
                         NM_TYPE_F32,
                         0}};
    EXPECT_TENSORS_FAIL(512, longname, "tensor #0", "exceeds the limit of 63");
}

static void test_bad_tensor_placement(void **state) {
    (void)state;
    tspec past[] = {{"w", 2, {32, 4}, NM_TYPE_F32, 0}};
    EXPECT_TENSORS_FAIL(511, past, "tensor 'w' (info at byte 41)", "offset 0", "512 bytes",
                        "runs past the end of the file");
    tspec far[] = {{"w", 1, {8}, NM_TYPE_F32, 1ull << 40}};
    EXPECT_TENSORS_FAIL(512, far, "tensor 'w'", "offset 1099511627776", "past the end");
    tspec wrap[] = {{"w", 1, {8}, NM_TYPE_F32, UINT64_MAX - 31}};
    EXPECT_TENSORS_FAIL(512, wrap, "tensor 'w'", "past the end");
    tspec mis[] = {{"a", 1, {8}, NM_TYPE_F32, 0}, {"b", 1, {8}, NM_TYPE_F32, 48}};
    EXPECT_TENSORS_FAIL(512, mis, "tensor 'b' (info at byte 74)",
                        "offset 48 is not a multiple of the alignment 32");
    tspec over[] = {{"a", 1, {16}, NM_TYPE_F32, 0}, {"b", 1, {8}, NM_TYPE_F32, 32}};
    EXPECT_TENSORS_FAIL(512, over, "tensor 'b'", "offset 32 overlaps tensor 'a'");
    tspec same[] = {{"a", 1, {8}, NM_TYPE_F32, 64}, {"b", 1, {8}, NM_TYPE_F32, 64}};
    EXPECT_TENSORS_FAIL(512, same, "tensor 'b'", "overlaps tensor 'a'");
    tspec dup[] = {{"x", 1, {8}, NM_TYPE_F32, 0}, {"x", 1, {8}, NM_TYPE_F32, 32}};
    EXPECT_TENSORS_FAIL(512, dup, "tensor 'x' (info at byte 74)", "duplicate tensor name",
                        "first defined at byte 41");
    /* adjacent tensors that touch but do not overlap are fine */
    gb b = {0};
    tspec touch[] = {{"b", 1, {8}, NM_TYPE_F32, 32}, {"a", 1, {8}, NM_TYPE_F32, 0}};
    write_tensors(&b, touch, 2, 64);
    nm_gguf_close(parse_ok(&b));
    gb_free(&b);
}

/* With NUMALM_WRITE_CORPUS=DIR, writes the fuzzer's seed files (valid small
 * GGUF files of every shape this test builds). Skipped otherwise. */
static void write_seed(const char *dir, const char *name, const gb *b) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b->p, 1, b->n, f), b->n);
    assert_int_equal(fclose(f), 0);
}

static void test_write_corpus(void **state) {
    (void)state;
    const char *dir = getenv("NUMALM_WRITE_CORPUS");
    if (!dir) {
        print_message("skipped: set NUMALM_WRITE_CORPUS=DIR to write fuzz seeds\n");
        skip();
    }
    gb b = {0};
    write_every_type(&b, 3);
    write_seed(dir, "every_type_v3", &b);
    gb_free(&b);
    write_every_type(&b, 2);
    write_seed(dir, "every_type_v2", &b);
    gb_free(&b);
    /* small shapes keep the seeds a few KB, which keeps the fuzzer fast */
    gb_llama o = gb_llama_default();
    o.n_embd = 8, o.n_head = 2, o.n_head_kv = 1, o.n_ff = 16, o.n_vocab = 8;
    gb_write_llama(&b, &o);
    write_seed(dir, "llama_f32", &b);
    gb_free(&b);
    o = gb_llama_default();
    o.n_layer = 1, o.n_ff = 32, o.n_vocab = 8;
    o.matrix_type = NM_TYPE_Q8_0, o.alignment = 64, o.version = 2, o.with_output = 0;
    gb_write_llama(&b, &o);
    write_seed(dir, "llama_q8_0_v2", &b);
    gb_free(&b);
    o = gb_llama_default();
    o.n_layer = 1, o.n_ff = 32, o.n_vocab = 8, o.matrix_type = NM_TYPE_Q4_0, o.with_tokens = 0;
    o.extra_key = "llama.rope.scaling.type", o.extra_val = "linear";
    gb_write_llama(&b, &o);
    write_seed(dir, "llama_q4_0_rope", &b);
    gb_free(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_type_v3),        cmocka_unit_test(test_every_type_v2),
        cmocka_unit_test(test_tiny_llama),           cmocka_unit_test(test_stories260k),
        cmocka_unit_test(test_truncated_everywhere), cmocka_unit_test(test_bad_magic_and_version),
        cmocka_unit_test(test_open_refusals),        cmocka_unit_test(test_huge_counts),
        cmocka_unit_test(test_bad_values),           cmocka_unit_test(test_bad_alignment),
        cmocka_unit_test(test_bad_tensor_shapes),    cmocka_unit_test(test_bad_tensor_placement),
        cmocka_unit_test(test_write_corpus),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
