/* The device interface's CPU implementation: what the staging pipeline and
 * the offloaded forward pass rely on from any device. Queued work runs later
 * and in order per stream, results are safe after a sync, failures surface
 * at the sync and are cleared by it, device pointers are checked, memory
 * limits and injected faults give clear errors, and the device hash matches
 * the host's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "gguf/ggml_types.h"
#include "gguf/quant.h"
#include "runtime/device.h"
#include "runtime/device_math.h"
#include "runtime/kernels.h"

#include <stdlib.h>
#include <string.h>

static nm_device *open_cpu(const nm_device_cpu_opts *o) {
    nm_error err = {{0}};
    nm_device *d = nm_device_cpu_open(o, &err);
    assert_non_null(d);
    return d;
}

static void expect_no_leaks(nm_device *d) {
    nm_device_cpu_counts c;
    assert_int_equal(nm_device_cpu_counts_get(d, &c), 0);
    assert_int_equal(c.allocs, 0);
    assert_int_equal(c.registered, 0);
    assert_int_equal(c.alloc_bytes, 0);
}

static void fill(uint8_t *p, size_t n, uint32_t seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (uint8_t)(seed >> 24);
    }
}

static void test_roundtrip_and_poison(void **state) {
    (void)state;
    nm_device *d = open_cpu(NULL);
    nm_error err = {{0}};
    enum { N = 100003 };
    uint8_t *src = malloc(N), *back = malloc(N);
    fill(src, N, 1);
    void *dp;
    assert_int_equal(d->ops->alloc(d, N, &dp, &err), 0);
    /* fresh device memory is garbage, not zeros */
    assert_int_equal(d->ops->to_host(d, 0, back, dp, 16, &err), 0);
    assert_int_equal(d->ops->sync(d, 0, &err), 0);
    assert_int_equal(back[0], 0xA5);
    assert_int_equal(d->ops->to_device(d, 1, dp, src, N, &err), 0);
    assert_int_equal(d->ops->sync(d, 1, &err), 0);
    assert_int_equal(d->ops->to_host(d, 2, back, dp, N, &err), 0);
    assert_int_equal(d->ops->sync(d, 2, &err), 0);
    assert_memory_equal(src, back, N);
    uint64_t h;
    assert_int_equal(d->ops->hash(d, 3, dp, N, &h, &err), 0);
    assert_true(h == nm_dev_hash(src, N));
    d->ops->free(d, dp);
    expect_no_leaks(d);
    nm_device_close(d);
    free(src);
    free(back);
}

/* Copies are asynchronous: queued behind a slow copy, a read-back on the
 * same stream still sees the data; the stamps bracket the copy. */
static void test_stream_order(void **state) {
    (void)state;
    nm_device_cpu_opts o = {.node = -1, .copy_delay_us = 20000};
    nm_device *d = open_cpu(&o);
    nm_error err = {{0}};
    uint8_t src[4096], back[4096];
    fill(src, sizeof src, 7);
    void *dp;
    double t0 = 0, t1 = 0;
    assert_int_equal(d->ops->alloc(d, sizeof src, &dp, &err), 0);
    assert_int_equal(d->ops->stamp(d, 0, &t0, &err), 0);
    assert_int_equal(d->ops->to_device(d, 0, dp, src, sizeof src, &err), 0);
    assert_int_equal(d->ops->stamp(d, 0, &t1, &err), 0);
    assert_int_equal(d->ops->to_host(d, 0, back, dp, sizeof back, &err), 0);
    assert_int_equal(d->ops->sync(d, 0, &err), 0);
    assert_memory_equal(src, back, sizeof src);
    assert_true(t0 > 0 && t1 - t0 >= 0.015);
    d->ops->free(d, dp);
    nm_device_close(d);
}

static void test_bad_pointer(void **state) {
    (void)state;
    nm_device *d = open_cpu(NULL);
    nm_error err = {{0}};
    uint8_t buf[64] = {0};
    void *dp;
    assert_int_equal(d->ops->alloc(d, 32, &dp, &err), 0);
    assert_int_equal(d->ops->to_device(d, 0, dp, buf, 64, &err), -1);
    assert_non_null(strstr(err.msg, "not inside a device allocation"));
    assert_int_equal(d->ops->to_host(d, 0, buf, (uint8_t *)dp + 16, 17, &err), -1);
    assert_int_equal(d->ops->to_device(d, NM_DEV_MAX_STREAMS, dp, buf, 8, &err), -1);
    assert_non_null(strstr(err.msg, "stream"));
    d->ops->free(d, dp);
    d->ops->free(d, buf); /* not a device pointer: ignored */
    expect_no_leaks(d);
    nm_device_close(d);
}

/* A copy that fails when it runs: the next sync of its stream reports it,
 * the rest of that queue is dropped, and the stream works again after. */
static void test_failing_copy(void **state) {
    (void)state;
    nm_device_cpu_opts o = {.node = -1, .fail_copy_at = 2};
    nm_device *d = open_cpu(&o);
    nm_error err = {{0}};
    uint8_t a[256], b[256], back[256];
    fill(a, sizeof a, 3);
    fill(b, sizeof b, 4);
    void *dp;
    double t = 0;
    assert_int_equal(d->ops->alloc(d, sizeof a, &dp, &err), 0);
    assert_int_equal(d->ops->to_device(d, 0, dp, a, sizeof a, &err), 0);
    assert_int_equal(d->ops->to_device(d, 0, dp, b, sizeof b, &err), 0); /* fails */
    assert_int_equal(d->ops->stamp(d, 0, &t, &err), 0);                  /* dropped */
    assert_int_equal(d->ops->sync(d, 0, &err), -1);
    assert_non_null(strstr(err.msg, "copy 2"));
    assert_non_null(strstr(err.msg, "failed"));
    assert_true(t == 0);
    assert_int_equal(d->ops->sync(d, 0, &err), 0);
    assert_int_equal(d->ops->to_host(d, 0, back, dp, sizeof back, &err), 0);
    assert_int_equal(d->ops->sync(d, 0, &err), 0);
    assert_memory_equal(back, a, sizeof a); /* the failed copy wrote nothing */
    d->ops->free(d, dp);
    nm_device_close(d);
}

static void test_memory_limit_and_faults(void **state) {
    (void)state;
    nm_device_cpu_opts o = {.node = 1, .mem_bytes = 1 << 20, .fail_alloc_at = 3};
    nm_device *d = open_cpu(&o);
    nm_error err = {{0}};
    assert_int_equal(d->node, 1);
    void *p1, *p2, *p3;
    assert_int_equal(d->ops->alloc(d, 600 << 10, &p1, &err), 0);
    assert_int_equal(d->ops->alloc(d, 600 << 10, &p2, &err), -1);
    assert_null(p2);
    assert_non_null(strstr(err.msg, "out of device memory"));
    assert_int_equal(d->ops->alloc(d, 1024, &p3, &err), -1); /* the third call */
    assert_non_null(strstr(err.msg, "fault injected"));
    d->ops->free(d, p1);
    assert_int_equal(d->ops->alloc(d, 1 << 20, &p1, &err), 0); /* all of it again */
    d->ops->free(d, p1);
    expect_no_leaks(d);
    nm_device_close(d);
}

static void test_register(void **state) {
    (void)state;
    nm_device *d = open_cpu(NULL);
    nm_error err = {{0}};
    uint8_t *host = malloc(8192), *other = malloc(64);
    void *dp;
    assert_int_equal(d->ops->host_register(d, host, 8192, &err), 0);
    assert_int_equal(d->ops->host_register(d, host + 4096, 16, &err), -1);
    assert_non_null(strstr(err.msg, "already registered"));
    assert_int_equal(d->ops->alloc(d, 8192, &dp, &err), 0);
    assert_int_equal(d->ops->to_device(d, 0, dp, host + 100, 1000, &err), 0);
    assert_int_equal(d->ops->to_device(d, 0, dp, other, 64, &err), 0);
    assert_int_equal(d->ops->sync(d, 0, &err), 0);
    nm_device_cpu_counts c;
    nm_device_cpu_counts_get(d, &c);
    assert_int_equal(c.copies, 2);
    assert_int_equal(c.copies_registered, 1);
    assert_int_equal(c.registered, 1);
    d->ops->host_unregister(d, host);
    d->ops->free(d, dp);
    expect_no_leaks(d);
    nm_device_close(d);
    free(host);
    free(other);
}

static void test_corrupt_copy_changes_hash(void **state) {
    (void)state;
    nm_device_cpu_opts o = {.node = -1, .corrupt_copy_at = 1};
    nm_device *d = open_cpu(&o);
    nm_error err = {{0}};
    uint8_t src[1000];
    fill(src, sizeof src, 9);
    void *dp;
    uint64_t h;
    assert_int_equal(d->ops->alloc(d, sizeof src, &dp, &err), 0);
    assert_int_equal(d->ops->to_device(d, 0, dp, src, sizeof src, &err), 0);
    assert_int_equal(d->ops->hash(d, 0, dp, sizeof src, &h, &err), 0);
    assert_true(h != nm_dev_hash(src, sizeof src));
    d->ops->free(d, dp);
    nm_device_close(d);
}

/* The hash sees a flipped bit, swapped words, the length, and is the same
 * summed in pieces on word boundaries. */
static void test_hash_properties(void **state) {
    (void)state;
    uint8_t a[203], b[204];
    fill(a, sizeof a, 11);
    uint64_t h = nm_dev_hash(a, sizeof a);
    memcpy(b, a, sizeof a);
    b[sizeof a] = 0;
    assert_true(nm_dev_hash(b, sizeof b) != h); /* a zero byte more */
    b[77] ^= 1;
    assert_true(nm_dev_hash(b, sizeof a) != h);
    memcpy(b, a + 8, 8);
    memcpy(b + 8, a, 8);
    memcpy(b + 16, a + 16, sizeof a - 16);
    assert_true(nm_dev_hash(b, sizeof a) != h);
    uint64_t s = nm_dev_hash_add(0, a, 96, 0);
    s = nm_dev_hash_add(s, a + 96, sizeof a - 96, 12);
    assert_true(nm_dev_hash_final(s, sizeof a) == h);
    assert_true(nm_dev_hash(a, 0) != nm_dev_hash(a, 1) || a[0] != 0);
}

/* Compute ops give the CPU reference's bits (the forward pass's calls). */
static void test_compute_matches_reference(void **state) {
    (void)state;
    nm_device *d = open_cpu(NULL);
    nm_error err = {{0}};
    enum { ROWS = 48, COLS = 64, TOK = 3 };
    const uint32_t types[] = {NM_TYPE_F32, NM_TYPE_F16, NM_TYPE_Q8_0, NM_TYPE_Q4_0};
    float x[TOK * COLS], w[ROWS * COLS];
    for (int i = 0; i < TOK * COLS; i++)
        x[i] = (float)((i * 37) % 23) / 11.0f - 1.0f;
    for (int i = 0; i < ROWS * COLS; i++)
        w[i] = (float)((i * 53) % 29) / 14.0f - 1.0f;
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        uint64_t rb;
        assert_int_equal(nm_type_row_bytes(types[k], COLS, &rb), 0);
        uint8_t *wq = malloc(rb * ROWS);
        for (int r = 0; r < ROWS; r++)
            assert_int_equal(nm_quantize_row(types[k], w + r * COLS, wq + r * rb, COLS), 0);
        void *dw, *dx, *dy;
        assert_int_equal(d->ops->alloc(d, rb * ROWS, &dw, &err), 0);
        assert_int_equal(d->ops->alloc(d, sizeof x, &dx, &err), 0);
        assert_int_equal(d->ops->alloc(d, sizeof(float) * ROWS * TOK, &dy, &err), 0);
        assert_int_equal(d->ops->to_device(d, 0, dw, wq, rb * ROWS, &err), 0);
        assert_int_equal(d->ops->to_device(d, 0, dx, x, sizeof x, &err), 0);
        nm_dev_mat m = {dw, types[k], ROWS, COLS, rb};
        float got[ROWS * TOK], want[ROWS * TOK];
        for (int nt = 1; nt <= TOK; nt += TOK - 1) {
            assert_true(d->ops->supports(d, types[k]));
            assert_int_equal(d->ops->matmul(d, 0, &m, dx, nt, dy, &err), 0);
            assert_int_equal(d->ops->to_host(d, 0, got, dy, sizeof(float) * ROWS * nt, &err), 0);
            assert_int_equal(d->ops->sync(d, 0, &err), 0);
            void *buf = aligned_alloc(64, nm_act_buffer_bytes(types[k], COLS, nt) + 64);
            nm_act a;
            nm_act_prepare(types[k], x, COLS, nt, buf, &a);
            if (nt == 1)
                nm_matvec(wq, ROWS, &a, want);
            else
                nm_matmat(wq, ROWS, &a, want, ROWS);
            free(buf);
            assert_memory_equal(got, want, sizeof(float) * ROWS * nt);
        }
        d->ops->free(d, dw);
        d->ops->free(d, dx);
        d->ops->free(d, dy);
        free(wq);
    }
    expect_no_leaks(d);
    nm_device_close(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_and_poison),
        cmocka_unit_test(test_stream_order),
        cmocka_unit_test(test_bad_pointer),
        cmocka_unit_test(test_failing_copy),
        cmocka_unit_test(test_memory_limit_and_faults),
        cmocka_unit_test(test_register),
        cmocka_unit_test(test_corrupt_copy_changes_hash),
        cmocka_unit_test(test_hash_properties),
        cmocka_unit_test(test_compute_matches_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
