/* Helpers of the kernel tests (test_kernels.c, test_quant_formats.c): a
 * seeded random source, float bit views, buffers that end at a PROT_NONE
 * page, the computing types and the kernel sets this CPU runs. */
#ifndef NUMALM_TESTS_KERNEL_TEST_UTIL_H
#define NUMALM_TESTS_KERNEL_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "gguf/ggml_types.h"
#include "runtime/kernels.h"
#include "runtime/kernel_set.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static uint64_t rng_state __attribute__((unused));

static inline uint64_t rng_next(void) {
    /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline float rng_uniform(void) { /* [-1, 1) */
    return (float)((double)(rng_next() >> 11) * 0x1p-52 - 1.0);
}

/* Values of mixed magnitude, with some exact zeros, like real activations. */
static inline float rng_value(void) {
    uint64_t r = rng_next();
    if ((r & 31) == 0)
        return 0.0f;
    return rng_uniform() * ldexpf(1.0f, (int)((r >> 8) % 6) - 3);
}

static inline uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* A buffer whose last byte sits just before a PROT_NONE page, so a kernel
 * that reads past the end of a row range faults instead of passing. */
typedef struct guarded {
    void *map;
    size_t map_len;
    void *p;
} guarded;

static inline void *guarded_alloc(guarded *g, size_t bytes) {
    long page = sysconf(_SC_PAGESIZE);
    size_t data = (bytes + (size_t)page - 1) / (size_t)page * (size_t)page;
    g->map_len = data + (size_t)page;
    g->map = mmap(NULL, g->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(g->map != MAP_FAILED);
    assert_int_equal(mprotect((char *)g->map + data, (size_t)page, PROT_NONE), 0);
    g->p = (char *)g->map + data - bytes;
    return g->p;
}

static inline void guarded_free(guarded *g) {
    munmap(g->map, g->map_len);
}

/* Every type the type table says numalm computes with (filled by main). */
static uint32_t all_types[NM_TYPE_COUNT] __attribute__((unused));
static size_t n_all_types __attribute__((unused));

static inline uint32_t block_of(uint32_t t) {
    return nm_type_get(t)->block_size;
}

static inline bool is_quant(uint32_t t) {
    return block_of(t) > 1;
}

/* Kernels whose every SIMD level must give the scalar bits (K-quants). */
static inline bool exact_type(uint32_t t) {
    return nm_kernels_scalar()->k[t].exact;
}

static inline size_t row_bytes(uint32_t type, int64_t n) {
    uint64_t b = 0;
    assert_int_equal(nm_type_row_bytes(type, (uint64_t)n, &b), 0);
    return (size_t)b;
}

/* Most sets supported_sets returns */
#define KT_MAX_SETS 12

/* The kernel sets this CPU can run: scalar, avx2, avx512 without and with
 * VNNI, BF16, and GFNI (with VNNI), and the best with AMX. */
static inline int supported_sets(const nm_kernel_set **sets) {
    int n = 0;
    sets[n++] = nm_kernels_scalar();
    if (nm_simd_supported(NM_SIMD_AVX2))
        sets[n++] = nm_kernels_avx2();
    if (nm_simd_supported(NM_SIMD_AVX512)) {
        sets[n++] = nm_kernels_avx512_variant(0);
        __builtin_cpu_init();
        int vnni = __builtin_cpu_supports("avx512vnni") ? NM_AVX512_VNNI : 0;
        int bf16 = __builtin_cpu_supports("avx512bf16") ? NM_AVX512_BF16 : 0;
        int gfni = __builtin_cpu_supports("gfni") ? NM_AVX512_GFNI : 0;
        if (vnni)
            sets[n++] = nm_kernels_avx512_variant(vnni);
        if (bf16)
            sets[n++] = nm_kernels_avx512_variant(bf16);
        if (vnni && bf16)
            sets[n++] = nm_kernels_avx512_variant(vnni | bf16);
        if (vnni && gfni)
            sets[n++] = nm_kernels_avx512_variant(vnni | gfni);
        /* AMX only where the kernel grants the tile data: not in the NUMA
         * VM (no AVX-512) nor on CPUs before Sapphire Rapids */
        if (nm_simd_supported(NM_SIMD_AMX))
            sets[n++] = nm_kernels_avx512_variant(vnni | bf16 | gfni | NM_AVX512_AMX);
    }
    return n;
}

/* The test program's start: the seed (NUMALM_TEST_SEED repeats a run,
 * otherwise every run takes a new one), every computing type, and the
 * kernel sets this CPU runs, printed. */
static inline void kernel_test_init(const char *prog) {
    const char *s = getenv("NUMALM_TEST_SEED");
    uint64_t seed = s ? strtoull(s, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    rng_state = seed;
    for (uint32_t t = 0; t < NM_TYPE_COUNT; t++)
        if (nm_type_computes(t))
            all_types[n_all_types++] = t;
    printf("%s: seed %llu (NUMALM_TEST_SEED repeats it), SIMD %s\n", prog, (unsigned long long)seed,
           nm_simd_name(nm_simd_detect()));
    const nm_kernel_set *sets[KT_MAX_SETS];
    int ns = supported_sets(sets);
    for (int i = 0; i < ns; i++)
        printf("%s: kernel set %s\n", prog, sets[i]->name);
    if (nm_simd_supported(NM_SIMD_AVX512) && !nm_simd_supported(NM_SIMD_AMX))
        printf("%s: AMX not usable on this CPU: the AMX tiles are not tested\n", prog);
}

#endif
