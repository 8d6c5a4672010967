/* Sampling: greedy, temperature, top-k, top-p, with a seed that reproduces a
 * run exactly (own PRNG, no libc rand). */
#ifndef NM_SAMPLER_H
#define NM_SAMPLER_H

#include <stdint.h>

/* Applied in llama.cpp's default order: top-k, then top-p (on the softmax of
 * the raw logits), then temperature, then one draw. top_k = 1 or top_p <= 0
 * keep only the best token, so they are greedy too. */
typedef struct nm_sampler_opts {
    float temp;  /* <= 0: greedy (argmax) */
    int top_k;   /* <= 0: off */
    float top_p; /* >= 1: off */
    uint64_t seed;
} nm_sampler_opts;

typedef struct nm_sampler nm_sampler;

/* NULL when n_vocab <= 0 or out of memory. */
nm_sampler *nm_sampler_new(const nm_sampler_opts *o, int32_t n_vocab);
void nm_sampler_free(nm_sampler *s);
/* logits may be modified. */
int32_t nm_sample(nm_sampler *s, float *logits);
/* Ties: the lowest index; NaN never wins; -1 when n <= 0. */
int32_t nm_argmax(const float *logits, int32_t n);

#endif
