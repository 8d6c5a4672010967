/* Every operation of the CUDA implementation of the device interface
 * against the CPU implementation, on the same inputs: matmul for each
 * weight type, K-quants included (one token and a batch), RMSNorm, RoPE, KV store (F16, F32),
 * attention, SwiGLU, add, and the hash. A wrong kernel
 * shows here by name, before a whole forward pass would only say that the
 * text differs. Skips with "no CUDA device" where there is none (the
 * suite's machines), so it runs on a machine with a GPU. NUMALM_GPU picks
 * the device (default 0). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cuda/gpu.h"
#include "gguf/ggml_types.h"
#include "gguf/quant.h"
#include "runtime/device_math.h"
#include "runtime/ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static nm_device *g_gpu, *g_cpu;

static float frand(uint32_t *s) {
    *s = *s * 1664525u + 1013904223u;
    return (float)(*s >> 8) / (float)(1u << 24) * 2.0f - 1.0f;
}

/* A buffer on both devices with the same bytes. */
typedef struct pair {
    void *g, *c;
    size_t n;
} pair;

static pair upload(const void *host, size_t n) {
    nm_error err = {{0}};
    pair p = {NULL, NULL, n};
    if (g_gpu->ops->alloc(g_gpu, n, &p.g, &err) || g_cpu->ops->alloc(g_cpu, n, &p.c, &err) ||
        (host && (g_gpu->ops->to_device(g_gpu, 0, p.g, host, n, &err) ||
                  g_cpu->ops->to_device(g_cpu, 0, p.c, host, n, &err) ||
                  g_gpu->ops->sync(g_gpu, 0, &err) || g_cpu->ops->sync(g_cpu, 0, &err))))
        fail_msg("%s", err.msg);
    return p;
}

static void release(pair *p) {
    g_gpu->ops->free(g_gpu, p->g);
    g_cpu->ops->free(g_cpu, p->c);
}

/* Reads both back and compares n floats within rel (relative to the
 * largest magnitude of the CPU's result, so near-zero entries do not
 * count for more than their share). */
static void expect_close(const char *what, const pair *p, size_t n, float rel) {
    nm_error err = {{0}};
    float *g = malloc(n * sizeof *g), *c = malloc(n * sizeof *c);
    if (g_gpu->ops->to_host(g_gpu, 0, g, p->g, n * sizeof *g, &err) ||
        g_gpu->ops->sync(g_gpu, 0, &err) ||
        g_cpu->ops->to_host(g_cpu, 0, c, p->c, n * sizeof *c, &err) ||
        g_cpu->ops->sync(g_cpu, 0, &err))
        fail_msg("%s: %s", what, err.msg);
    float scale = 1e-30f, worst = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++)
        scale = fabsf(c[i]) > scale ? fabsf(c[i]) : scale;
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(g[i] - c[i]) / scale;
        if (!(d <= worst)) { /* NaN counts as worst */
            worst = d;
            at = i;
        }
    }
    printf("# cuda %s: worst relative difference %.3g (element %zu: gpu %.7g, cpu %.7g)\n", what,
           worst, at, g[at], c[at]);
    if (!(worst <= rel))
        fail_msg("%s differs from the CPU implementation", what);
    free(g);
    free(c);
}

#define BOTH(call_g, call_c)                                                                       \
    do {                                                                                           \
        nm_error e_ = {{0}};                                                                       \
        if ((call_g) != 0 || (call_c) != 0)                                                        \
            fail_msg("%s", e_.msg);                                                                \
    } while (0)

static void test_matmul(void **state) {
    (void)state;
    enum { ROWS = 67, COLS = 512, TOK = 5 };
    const uint32_t types[] = {NM_TYPE_F32,  NM_TYPE_F16,  NM_TYPE_BF16, NM_TYPE_Q8_0, NM_TYPE_Q4_0,
                              NM_TYPE_Q2_K, NM_TYPE_Q3_K, NM_TYPE_Q4_K, NM_TYPE_Q5_K, NM_TYPE_Q6_K};
    float w[ROWS * COLS], x[TOK * COLS];
    uint32_t s = 1;
    for (int i = 0; i < ROWS * COLS; i++)
        w[i] = frand(&s);
    for (int i = 0; i < TOK * COLS; i++)
        x[i] = frand(&s) * 2;
    pair px = upload(x, sizeof x), py = upload(NULL, sizeof(float) * ROWS * TOK);
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        uint64_t rb;
        nm_type_row_bytes(types[k], COLS, &rb);
        uint8_t *wq = malloc(rb * ROWS);
        for (int r = 0; r < ROWS; r++)
            nm_quantize_row(types[k], w + r * COLS, wq + r * rb, COLS);
        pair pw = upload(wq, rb * ROWS);
        for (int nt = 1; nt <= TOK; nt += TOK - 1) {
            nm_dev_mat mg = {pw.g, types[k], ROWS, COLS, rb}, mc = {pw.c, types[k], ROWS, COLS, rb};
            BOTH(g_gpu->ops->matmul(g_gpu, 0, &mg, px.g, nt, py.g, &e_),
                 g_cpu->ops->matmul(g_cpu, 0, &mc, px.c, nt, py.c, &e_));
            char what[64];
            snprintf(what, sizeof what, "matmul %s x %d tokens", nm_type_name(types[k]), nt);
            expect_close(what, &py, (size_t)ROWS * nt, 1e-5f);
        }
        release(&pw);
        free(wq);
    }
    release(&px);
    release(&py);
}

static void test_elementwise(void **state) {
    (void)state;
    enum { N = 192, TOK = 3, HD = 32, ROT = 16 };
    float x[TOK * N], w[N], u[TOK * N], cs[TOK * (ROT + 2)];
    uint32_t s = 2;
    for (int i = 0; i < TOK * N; i++) {
        x[i] = frand(&s) * 3;
        u[i] = frand(&s);
    }
    for (int i = 0; i < N; i++)
        w[i] = 1 + frand(&s) / 10;
    for (int t = 0; t < TOK; t++)
        nm_rope_table(cs + t * (ROT + 2), 40 + t, ROT,
                      &(nm_rope_params){.base = 10000.0f, .freq_scale = 1.0f, .attn_factor = 1.0f});
    pair px = upload(x, sizeof x), pw = upload(w, sizeof w), pu = upload(u, sizeof u);
    pair pcs = upload(cs, sizeof cs), py = upload(NULL, sizeof x);
    BOTH(g_gpu->ops->rmsnorm(g_gpu, 0, py.g, px.g, pw.g, N, TOK, 1e-5f, &e_),
         g_cpu->ops->rmsnorm(g_cpu, 0, py.c, px.c, pw.c, N, TOK, 1e-5f, &e_));
    expect_close("rmsnorm", &py, TOK * N, 1e-6f);
    BOTH(g_gpu->ops->rope(g_gpu, 0, px.g, N, TOK, HD, ROT, pcs.g, &e_),
         g_cpu->ops->rope(g_cpu, 0, px.c, N, TOK, HD, ROT, pcs.c, &e_));
    expect_close("rope", &px, TOK * N, 1e-6f);
    BOTH(g_gpu->ops->add(g_gpu, 0, px.g, pu.g, TOK * N, &e_),
         g_cpu->ops->add(g_cpu, 0, px.c, pu.c, TOK * N, &e_));
    expect_close("add", &px, TOK * N, 1e-6f);
    BOTH(g_gpu->ops->swiglu(g_gpu, 0, px.g, pu.g, TOK * N, &e_),
         g_cpu->ops->swiglu(g_cpu, 0, px.c, pu.c, TOK * N, &e_));
    expect_close("swiglu", &px, TOK * N, 1e-6f);
    release(&px);
    release(&pw);
    release(&pu);
    release(&pcs);
    release(&py);
}

/* KV store then attention, for both cache types: 4 positions already in
 * the cache, 3 new tokens. */
static void test_kv_and_attention(void **state) {
    (void)state;
    enum { HEADS = 8, KV = 2, HD = 32, CTX = 16, TOK = 3 };
    for (int f32 = 0; f32 < 2; f32++) {
        uint32_t kt = f32 ? NM_TYPE_F32 : NM_TYPE_F16;
        size_t cache = (size_t)KV * CTX * HD * (f32 ? 4 : 2);
        float q[TOK * HEADS * HD], k[7 * KV * HD], v[7 * KV * HD];
        uint32_t s = 3;
        for (size_t i = 0; i < sizeof q / 4; i++)
            q[i] = frand(&s);
        for (size_t i = 0; i < sizeof k / 4; i++) {
            k[i] = frand(&s);
            v[i] = frand(&s);
        }
        pair pk = upload(k, sizeof k), pv = upload(v, sizeof v), pq = upload(q, sizeof q);
        pair kc = upload(NULL, cache), vc = upload(NULL, cache);
        pair out = upload(NULL, sizeof q), sc = upload(NULL, sizeof(float) * TOK * HEADS * CTX);
        /* positions 0..3, then 4..6 */
        for (int step = 0; step < 2; step++) {
            int pos = step ? 4 : 0, nt = step ? TOK : 4;
            size_t off = (size_t)pos * KV * HD * sizeof(float);
            BOTH(g_gpu->ops->kv_store(g_gpu, 0, kc.g, kt, (float *)((uint8_t *)pk.g + off), KV, HD,
                                      CTX, pos, nt, &e_),
                 g_cpu->ops->kv_store(g_cpu, 0, kc.c, kt, (float *)((uint8_t *)pk.c + off), KV, HD,
                                      CTX, pos, nt, &e_));
            BOTH(g_gpu->ops->kv_store(g_gpu, 0, vc.g, kt, (float *)((uint8_t *)pv.g + off), KV, HD,
                                      CTX, pos, nt, &e_),
                 g_cpu->ops->kv_store(g_cpu, 0, vc.c, kt, (float *)((uint8_t *)pv.c + off), KV, HD,
                                      CTX, pos, nt, &e_));
        }
        for (int online = 0; online <= !f32; online++) { /* the F16 cache both ways */
            nm_dev_attn ag = {pq.g, out.g, kc.g, vc.g, kt,   HEADS, KV,
                              HD,   CTX,   4,    TOK,  sc.g, online};
            nm_dev_attn ac = {pq.c, out.c, kc.c, vc.c, kt,   HEADS, KV,
                              HD,   CTX,   4,    TOK,  sc.c, online};
            BOTH(g_gpu->ops->attention(g_gpu, 0, &ag, &e_),
                 g_cpu->ops->attention(g_cpu, 0, &ac, &e_));
            expect_close(f32      ? "attention (f32 cache)"
                         : online ? "attention (f16 cache, online)"
                                  : "attention (f16 cache)",
                         &out, sizeof q / 4, online ? 2e-3f : 1e-5f);
        }
        /* the caches' written positions, bit for bit (both round to F16
         * to nearest even): hashed on each device */
        size_t es = f32 ? 4 : 2;
        for (int g = 0; g < KV; g++)
            for (int which = 0; which < 2; which++) {
                const pair *c = which ? &vc : &kc;
                size_t at = (size_t)g * CTX * HD * es, n = (size_t)7 * HD * es;
                uint64_t hg, hc;
                BOTH(g_gpu->ops->hash(g_gpu, 0, (uint8_t *)c->g + at, n, &hg, &e_),
                     g_cpu->ops->hash(g_cpu, 0, (uint8_t *)c->c + at, n, &hc, &e_));
                if (hg != hc)
                    fail_msg("kv_store (%s cache): %s of KV head %d differs", f32 ? "f32" : "f16",
                             which ? "V" : "K", g);
            }
        pair *all[] = {&pk, &pv, &pq, &kc, &vc, &out, &sc};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            release(all[i]);
    }
}

/* The hash kernel against the host's hash, for sizes around word and
 * block boundaries and an unaligned start. */
static void test_hash(void **state) {
    (void)state;
    enum { N = 1 << 20 };
    uint8_t *buf = malloc(N);
    uint32_t s = 4;
    for (int i = 0; i < N; i++)
        buf[i] = (uint8_t)(frand(&s) * 127);
    pair p = upload(buf, N);
    const size_t sizes[] = {0, 1, 7, 8, 9, 4095, 65536 + 3, N - 1};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++)
        for (size_t off = 0; off < 2; off++) {
            uint64_t h;
            nm_error err = {{0}};
            size_t n = sizes[k] - (sizes[k] && off ? 1 : 0);
            assert_int_equal(g_gpu->ops->hash(g_gpu, 1, (uint8_t *)p.g + off, n, &h, &err), 0);
            if (h != nm_dev_hash(buf + off, n))
                fail_msg("hash of %zu bytes at offset %zu differs from the host's", n, off);
        }
    release(&p);
    free(buf);
}

static int setup(void **state) {
    (void)state;
    nm_error err = {{0}};
    const char *spec = getenv("NUMALM_GPU");
    g_gpu = nm_device_open(spec && *spec ? spec : "0", NULL, &err);
    if (!g_gpu) {
        printf("test_device_cuda: skipped: %s\n", err.msg);
        exit(77);
    }
    printf("# cuda device: %s (bus %s)\n", g_gpu->name, g_gpu->busid);
    g_cpu = nm_device_cpu_open(NULL, &err);
    return g_cpu ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    nm_device_close(g_gpu);
    nm_device_close(g_cpu);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_elementwise),
        cmocka_unit_test(test_kv_and_attention),
        cmocka_unit_test(test_hash),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
