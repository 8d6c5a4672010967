/* common/: the JSON writer (valid output for any bytes), size and list
 * parsing, and error prefixes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/error.h"
#include "common/json.h"
#include "common/util.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *json_string_of(const char *s, size_t n) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    nm_json j;
    nm_json_init(&j, f);
    nm_json_strn(&j, s, n);
    fclose(f);
    return buf;
}

static void test_json_strings(void **state) {
    (void)state;
    char *out = json_string_of("a\"b\\c\n\x01", 7);
    assert_string_equal(out, "\"a\\\"b\\\\c\\n\\u0001\"");
    free(out);
    /* valid UTF-8 passes through: U+2581 (the SentencePiece space) */
    out = json_string_of("\xe2\x96\x81x", 4);
    assert_string_equal(out, "\"\xe2\x96\x81x\"");
    free(out);
    /* a lone continuation byte, a truncated sequence, an overlong form and a
     * surrogate are each replaced, never copied into the JSON */
    out = json_string_of("\x80|\xe2\x96|\xc0\xaf|\xed\xa0\x80", 11);
    assert_string_equal(out, "\"\\ufffd|\\ufffd\\ufffd|\\ufffd\\ufffd|\\ufffd\\ufffd\\ufffd\"");
    free(out);
}

static void test_json_structure(void **state) {
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    nm_json j;
    nm_json_init(&j, f);
    nm_json_obj_begin(&j);
    nm_json_kint(&j, "a", -1);
    nm_json_key(&j, "b");
    nm_json_arr_begin(&j);
    nm_json_uint(&j, 2);
    nm_json_double(&j, 0.0 / 0.0);
    nm_json_bool(&j, 1);
    nm_json_arr_end(&j);
    nm_json_kstr(&j, "c", NULL);
    nm_json_obj_end(&j);
    fclose(f);
    assert_string_equal(buf, "{\"a\":-1,\"b\":[2,null,true],\"c\":null}");
    free(buf);
}

static void test_parse_size(void **state) {
    (void)state;
    nm_error err;
    uint64_t v;
    assert_int_equal(nm_parse_size("4G", &v, &err), 0);
    assert_true(v == 4ull << 30);
    assert_int_equal(nm_parse_size("512MiB", &v, &err), 0);
    assert_true(v == 512ull << 20);
    assert_int_equal(nm_parse_size("17", &v, &err), 0);
    assert_true(v == 17);
    assert_int_equal(nm_parse_size("4X", &v, &err), -1);
    assert_non_null(strstr(err.msg, "4X"));
    assert_int_equal(nm_parse_size("", &v, &err), -1);
    assert_int_equal(nm_parse_size("-1G", &v, &err), -1);
}

static void test_parse_list(void **state) {
    (void)state;
    nm_error err;
    int v[16];
    assert_int_equal(nm_parse_int_list("0,1", v, 16, 63, &err), 2);
    assert_int_equal(nm_parse_int_list("0-3,6", v, 16, 63, &err), 5);
    assert_int_equal(v[4], 6);
    assert_int_equal(nm_parse_int_list("1,1", v, 16, 63, &err), -1);
    assert_non_null(strstr(err.msg, "twice"));
    assert_int_equal(nm_parse_int_list("3-1", v, 16, 63, &err), -1);
    assert_int_equal(nm_parse_int_list("64", v, 16, 63, &err), -1);
    assert_int_equal(nm_parse_int_list("0,x", v, 16, 63, &err), -1);
    assert_int_equal(nm_parse_int_list("0-20", v, 16, 63, &err), -1);
}

/* The printed form round-trips through nm_parse_int_list and is cut at an
 * item boundary when the buffer is short. */
static void test_fmt_list(void **state) {
    (void)state;
    nm_error err;
    const int v[] = {0, 1, 2, 3, 5, 7, 8, 12};
    char buf[64];
    assert_string_equal(nm_fmt_int_list(v, 8, buf, sizeof buf), "0-3,5,7-8,12");
    int back[16];
    assert_int_equal(nm_parse_int_list(buf, back, 16, 63, &err), 8);
    assert_memory_equal(back, v, sizeof v);
    assert_string_equal(nm_fmt_int_list(v, 0, buf, sizeof buf), "");
    char small[26];
    nm_fmt_int_list(v, 8, small, sizeof small);
    assert_string_equal(small, "0-3");
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    nm_json j;
    nm_json_init(&j, f);
    nm_json_obj_begin(&j);
    nm_json_kint_array(&j, "a", v, 3);
    nm_json_kint_array(&j, "b", v, 0);
    nm_json_obj_end(&j);
    fclose(f);
    assert_string_equal(out, "{\"a\":[0,1,2],\"b\":[]}");
    free(out);
}

/* Doubling growth; an impossible size fails and leaves the array alone. */
static void test_grow(void **state) {
    (void)state;
    size_t cap = 0;
    int *v = nm_grow(NULL, &cap, 0, 4, sizeof *v);
    assert_non_null(v);
    assert_int_equal(cap, 4);
    assert_ptr_equal(nm_grow(v, &cap, 3, 4, sizeof *v), v);
    for (int i = 0; i < 4; i++)
        v[i] = i;
    v = nm_grow(v, &cap, 4, 4, sizeof *v);
    assert_non_null(v);
    assert_int_equal(cap, 8);
    assert_int_equal(v[3], 3);
    size_t huge = SIZE_MAX / 2 + 1;
    assert_null(nm_grow(v, &huge, huge, 4, 1));
    assert_true(huge == SIZE_MAX / 2 + 1);
    size_t cap2 = cap;
    assert_null(nm_grow(v, &cap2, cap2, 4, SIZE_MAX / 8));
    assert_int_equal(cap2, cap);
    free(v);
    /* a byte buffer taking a block larger than its room: doubled until the
     * block and a NUL fit (256 -> 512 -> 1024 for 700 bytes after 100) */
    size_t len = 100, bcap = 0;
    char *b = nm_grow(NULL, &bcap, len, 256, 1);
    assert_non_null(b);
    assert_int_equal(bcap, 256);
    b = nm_grow(b, &bcap, len + 700, 256, 1);
    assert_non_null(b);
    assert_int_equal(bcap, 1024);
    memset(b, 'x', len + 700 + 1); /* ASan: every byte is there */
    free(b);
}

static void test_allowed_cpus(void **state) {
    (void)state;
    cpu_set_t set;
    assert_int_equal(sched_getaffinity(0, sizeof set, &set), 0);
    int cpus[CPU_SETSIZE];
    int n = nm_allowed_cpus(cpus, CPU_SETSIZE);
    assert_int_equal(n, CPU_COUNT(&set));
    for (int i = 0; i < n; i++) {
        assert_true(CPU_ISSET(cpus[i], &set));
        assert_true(i == 0 || cpus[i] > cpus[i - 1]);
    }
    assert_int_equal(nm_allowed_cpus(cpus, 1), 1); /* never past max */
}

static void test_error_prefix(void **state) {
    (void)state;
    nm_error err;
    assert_int_equal(nm_fail(&err, "tensor '%s' at byte %d", "x", 7), -1);
    assert_int_equal(nm_fail_prefix(&err, "loading %s", "m.gguf"), -1);
    assert_string_equal(err.msg, "loading m.gguf: tensor 'x' at byte 7");
    /* a long message is cut, never overflowed */
    char big[2000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    nm_fail(&err, "%s", big);
    nm_fail_prefix(&err, "%s", big);
    assert_true(strlen(err.msg) < sizeof err.msg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_strings), cmocka_unit_test(test_json_structure),
        cmocka_unit_test(test_parse_size),   cmocka_unit_test(test_parse_list),
        cmocka_unit_test(test_fmt_list),     cmocka_unit_test(test_grow),
        cmocka_unit_test(test_allowed_cpus), cmocka_unit_test(test_error_prefix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
