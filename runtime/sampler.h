/* Sampling: greedy, temperature, top-k, top-p, with a seed that reproduces a
 * run exactly (own PRNG, no libc rand). */
#ifndef NM_SAMPLER_H
#define NM_SAMPLER_H

#include <stdint.h>

typedef struct nm_sampler_opts {
    float temp;    /* <= 0: greedy (argmax) */
    int top_k;     /* <= 0: off */
    float top_p;   /* >= 1: off */
    uint64_t seed;
} nm_sampler_opts;

typedef struct nm_sampler nm_sampler;

nm_sampler *nm_sampler_new(const nm_sampler_opts *o, int32_t n_vocab);
void nm_sampler_free(nm_sampler *s);
/* logits may be modified. */
int32_t nm_sample(nm_sampler *s, float *logits);
int32_t nm_argmax(const float *logits, int32_t n);

#endif
