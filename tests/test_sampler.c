/* The sampler: greedy is argmax, a seed reproduces a run, the filters keep
 * what they should, and draws follow the softmax (chi-square checks with a
 * fixed seed, so they are deterministic yet fail for a wrong distribution). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "runtime/sampler.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static nm_sampler *make(float temp, int top_k, float top_p, uint64_t seed, int32_t n) {
    nm_sampler_opts o = {.temp = temp, .top_k = top_k, .top_p = top_p, .seed = seed};
    nm_sampler *s = nm_sampler_new(&o, n);
    assert_non_null(s);
    return s;
}

/* A fixed pseudo-random logit vector (not the sampler's PRNG). */
static void fill_logits(float *l, int32_t n, uint32_t seed) {
    uint32_t x = seed * 2654435761u + 1;
    for (int32_t i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        l[i] = (float)(x >> 8) / (float)(1u << 24) * 8.0f - 4.0f;
    }
}

static void test_argmax(void **state) {
    (void)state;
    float a[] = {1, 3, 2, 3};
    assert_int_equal(nm_argmax(a, 4), 1); /* tie: lowest index */
    float b[] = {NAN, -1, 5, NAN};
    assert_int_equal(nm_argmax(b, 4), 2); /* NaN never wins */
    float c[] = {-INFINITY, -INFINITY};
    assert_int_equal(nm_argmax(c, 2), 0);
    assert_int_equal(nm_argmax(a, 0), -1);
}

static void test_greedy_is_argmax(void **state) {
    (void)state;
    enum { N = 1000 };
    float l[N];
    nm_sampler *s = make(0.0f, 40, 0.9f, 7, N);
    nm_sampler *neg = make(-1.0f, 0, 1.0f, 7, N);
    for (uint32_t r = 0; r < 50; r++) {
        fill_logits(l, N, r);
        int32_t want = nm_argmax(l, N);
        assert_int_equal(nm_sample(s, l), want);
        assert_int_equal(nm_sample(neg, l), want);
    }
    nm_sampler_free(s);
    nm_sampler_free(neg);
}

static void test_seed_reproduces(void **state) {
    (void)state;
    enum { N = 500, STEPS = 300 };
    float l[N], copy[N];
    nm_sampler *a = make(1.0f, 50, 0.95f, 1234, N);
    nm_sampler *b = make(1.0f, 50, 0.95f, 1234, N);
    nm_sampler *c = make(1.0f, 50, 0.95f, 1235, N);
    int differ = 0;
    for (uint32_t r = 0; r < STEPS; r++) {
        fill_logits(l, N, r);
        memcpy(copy, l, sizeof l);
        int32_t x = nm_sample(a, l);
        memcpy(l, copy, sizeof l);
        int32_t y = nm_sample(b, l);
        memcpy(l, copy, sizeof l);
        differ += nm_sample(c, l) != x;
        assert_int_equal(x, y);
    }
    assert_true(differ > STEPS / 4); /* another seed is another run */
    nm_sampler_free(a);
    nm_sampler_free(b);
    nm_sampler_free(c);
}

static void test_filters_down_to_one_are_greedy(void **state) {
    (void)state;
    enum { N = 2000 };
    float l[N];
    nm_sampler *k1 = make(1.5f, 1, 1.0f, 99, N);
    nm_sampler *p0 = make(1.5f, 0, 1e-6f, 99, N);
    nm_sampler *cold = make(1e-6f, 0, 1.0f, 99, N); /* no overflow at tiny temp */
    for (uint32_t r = 0; r < 100; r++) {
        fill_logits(l, N, r + 1000);
        int32_t want = nm_argmax(l, N);
        assert_int_equal(nm_sample(k1, l), want);
        assert_int_equal(nm_sample(p0, l), want);
        assert_int_equal(nm_sample(cold, l), want);
    }
    nm_sampler_free(k1);
    nm_sampler_free(p0);
    nm_sampler_free(cold);
}

/* Pearson's chi-square of observed counts against expected probabilities. */
static double chi_square(const int *count, const double *p, int k, int draws) {
    double chi = 0;
    for (int i = 0; i < k; i++) {
        double e = p[i] * draws;
        chi += (count[i] - e) * (count[i] - e) / e;
    }
    return chi;
}

static void draw_counts(nm_sampler *s, const float *logits, int k, int draws, int *count) {
    float l[8];
    memset(count, 0, (size_t)k * sizeof *count);
    for (int d = 0; d < draws; d++) {
        memcpy(l, logits, (size_t)k * sizeof *l);
        int32_t id = nm_sample(s, l);
        assert_true(id >= 0 && id < k);
        count[id]++;
    }
}

/* 0.001 critical values of chi-square: 2 dof 13.82, 1 dof 10.83. */
static void test_distribution(void **state) {
    (void)state;
    enum { DRAWS = 30000 };
    const float logits[3] = {logf(0.5f), logf(0.3f), logf(0.2f)};
    int count[3];

    nm_sampler *s = make(1.0f, 0, 1.0f, 42, 3);
    draw_counts(s, logits, 3, DRAWS, count);
    const double p1[3] = {0.5, 0.3, 0.2};
    assert_true(chi_square(count, p1, 3, DRAWS) < 13.82);
    /* The same counts are far from a wrong distribution (uniform). */
    const double uni[3] = {1.0 / 3, 1.0 / 3, 1.0 / 3};
    assert_true(chi_square(count, uni, 3, DRAWS) > 1000);
    nm_sampler_free(s);

    /* top-k 2 renormalizes the two best: 0.625 / 0.375, never token 2. */
    s = make(1.0f, 2, 1.0f, 43, 3);
    draw_counts(s, logits, 3, DRAWS, count);
    assert_int_equal(count[2], 0);
    const double p2[2] = {0.625, 0.375};
    assert_true(chi_square(count, p2, 2, DRAWS) < 10.83);
    nm_sampler_free(s);

    /* top-p 0.7: 0.5 < 0.7 <= 0.5 + 0.3, so tokens 0 and 1 stay. */
    s = make(1.0f, 0, 0.7f, 44, 3);
    draw_counts(s, logits, 3, DRAWS, count);
    assert_int_equal(count[2], 0);
    assert_true(chi_square(count, p2, 2, DRAWS) < 10.83);
    nm_sampler_free(s);

    /* top-p 0.45 keeps only the first (its 0.5 already reaches 0.45). */
    s = make(1.0f, 0, 0.45f, 45, 3);
    draw_counts(s, logits, 3, 1000, count);
    assert_int_equal(count[0], 1000);
    nm_sampler_free(s);
}

/* Temperature T draws with probabilities proportional to p^(1/T). */
static void test_temperature(void **state) {
    (void)state;
    enum { DRAWS = 30000 };
    const float logits[3] = {logf(0.5f), logf(0.3f), logf(0.2f)};
    int count[3];

    nm_sampler *s = make(0.5f, 0, 1.0f, 7, 3);
    draw_counts(s, logits, 3, DRAWS, count);
    double z = 0.25 + 0.09 + 0.04;
    const double cold[3] = {0.25 / z, 0.09 / z, 0.04 / z};
    assert_true(chi_square(count, cold, 3, DRAWS) < 13.82);
    nm_sampler_free(s);

    s = make(2.0f, 0, 1.0f, 8, 3);
    draw_counts(s, logits, 3, DRAWS, count);
    double h[3] = {sqrt(0.5), sqrt(0.3), sqrt(0.2)};
    z = h[0] + h[1] + h[2];
    for (int i = 0; i < 3; i++)
        h[i] /= z;
    assert_true(chi_square(count, h, 3, DRAWS) < 13.82);
    /* ... and a hotter run is further from the T = 1 distribution. */
    const double p1[3] = {0.5, 0.3, 0.2};
    assert_true(chi_square(count, p1, 3, DRAWS) > 100);
    nm_sampler_free(s);
}

/* top-k on a large vocab (quickselect path): every draw is among the k best,
 * and over many draws more than one of them comes up. */
static void test_top_k_large_vocab(void **state) {
    (void)state;
    enum { N = 32000, K = 40 };
    static float l[N], sorted[N];
    fill_logits(l, N, 5);
    memcpy(sorted, l, sizeof l);
    /* the K-th best logit, by a plain selection */
    float kth = INFINITY;
    for (int k = 0; k < K; k++) {
        float best = -INFINITY;
        for (int i = 0; i < N; i++)
            if (sorted[i] < kth && sorted[i] > best)
                best = sorted[i];
        kth = best;
    }
    nm_sampler *s = make(3.0f, K, 1.0f, 11, N);
    bool seen[N] = {0};
    int distinct = 0;
    for (int d = 0; d < 2000; d++) {
        memcpy(sorted, l, sizeof l);
        int32_t id = nm_sample(s, sorted);
        assert_true(id >= 0 && id < N);
        assert_true(l[id] >= kth);
        distinct += !seen[id];
        seen[id] = true;
    }
    assert_true(distinct > K / 2);
    nm_sampler_free(s);
}

static void test_special_logits(void **state) {
    (void)state;
    float a[4] = {NAN, 1.0f, INFINITY, 2.0f};
    nm_sampler *s = make(1.0f, 0, 0.9f, 3, 4);
    assert_int_equal(nm_sample(s, a), 2); /* +inf is certain */
    float b[4] = {NAN, -INFINITY, 0.0f, -INFINITY};
    assert_int_equal(nm_sample(s, b), 2); /* the only possible token */
    nm_sampler_free(s);
    nm_sampler_opts o = {.temp = 1.0f, .top_p = 1.0f};
    assert_null(nm_sampler_new(&o, 0));
    nm_sampler_free(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_argmax),
        cmocka_unit_test(test_greedy_is_argmax),
        cmocka_unit_test(test_seed_reproduces),
        cmocka_unit_test(test_filters_down_to_one_are_greedy),
        cmocka_unit_test(test_distribution),
        cmocka_unit_test(test_temperature),
        cmocka_unit_test(test_top_k_large_vocab),
        cmocka_unit_test(test_special_logits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
