/* The one PRNG of numalm: xoshiro256** seeded through splitmix64. Both
 * numalm mkmodel (weights) and the sampler (token draws) use it, so a seed
 * reproduces the same file or the same tokens on every machine; changing any
 * constant here changes every generated model and every seeded run. */
#ifndef NM_RNG_H
#define NM_RNG_H

#include <stdint.h>

typedef struct nm_rng {
    uint64_t s[4];
} nm_rng;

static inline uint64_t nm_splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* stream picks an independent sequence for the same seed (mkmodel seeds one
 * per tensor); stream 0 is the seed itself. */
static inline void nm_rng_seed(nm_rng *r, uint64_t seed, uint64_t stream) {
    uint64_t x = seed ^ (stream * 0xd1b54a32d192ed03ull);
    for (int i = 0; i < 4; i++)
        r->s[i] = nm_splitmix64(&x);
}

static inline uint64_t nm_rotl64(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

static inline uint64_t nm_rng_next(nm_rng *r) {
    uint64_t *s = r->s;
    uint64_t out = nm_rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = nm_rotl64(s[3], 45);
    return out;
}

/* Uniform in [0, 1) from the top 53 bits, so every double step is reachable. */
static inline double nm_rng_uniform01(nm_rng *r) {
    return (double)(nm_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* Uniform in [-1, 1), as a float: random weights and activations. */
static inline float nm_rng_uniform_pm1(nm_rng *r) {
    return (float)(nm_rng_uniform01(r) * 2.0 - 1.0);
}

#endif
