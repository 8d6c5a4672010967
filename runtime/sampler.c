/* Sampling in llama.cpp's default order: top-k, then top-p (on the softmax
 * of the logits as they are, before temperature), then temperature, then a
 * draw from the softmax of what is left. The PRNG (common/rng.h) is seeded
 * with stream 0, so a seed gives the same tokens on every machine. */
#include "sampler.h"

#include "common/rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct candidate {
    float logit;
    float p;
    int32_t id;
} candidate;

struct nm_sampler {
    nm_sampler_opts o;
    int32_t n_vocab;
    nm_rng rng;
    candidate *cand;
};

nm_sampler *nm_sampler_new(const nm_sampler_opts *o, int32_t n_vocab) {
    if (!o || n_vocab <= 0)
        return NULL;
    nm_sampler *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->o = *o;
    s->n_vocab = n_vocab;
    s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
    if (!s->cand) {
        free(s);
        return NULL;
    }
    nm_rng_seed(&s->rng, o->seed, 0);
    return s;
}

void nm_sampler_free(nm_sampler *s) {
    if (!s)
        return;
    free(s->cand);
    free(s);
}

/* NaN never wins; among equal logits the lowest index does. */
int32_t nm_argmax(const float *logits, int32_t n) {
    if (n <= 0)
        return -1;
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (logits[i] > logits[best] || (isnan(logits[best]) && !isnan(logits[i])))
            best = i;
    return best;
}

/* Descending logit, then ascending id, so the order never depends on qsort. */
static int cmp_candidate(const void *a, const void *b) {
    const candidate *x = a, *y = b;
    if (x->logit != y->logit)
        return x->logit > y->logit ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Softmax of logit / temp. Subtracting the largest logit before dividing
 * keeps a tiny temperature from overflowing. */
static void softmax(candidate *c, int32_t n, float temp) {
    float max = c[0].logit;
    for (int32_t i = 1; i < n; i++)
        if (c[i].logit > max)
            max = c[i].logit;
    double sum = 0;
    for (int32_t i = 0; i < n; i++) {
        c[i].p = expf((c[i].logit - max) / temp);
        sum += c[i].p;
    }
    for (int32_t i = 0; i < n; i++)
        c[i].p = (float)(c[i].p / sum);
}

/* Moves the k best candidates (in cmp_candidate order) to the front, in
 * any order: quickselect, so top-k on a large vocab avoids a full sort. */
static void select_top(candidate *c, int32_t n, int32_t k) {
    int32_t lo = 0, hi = n - 1;
    while (lo < hi) {
        candidate pivot = c[lo + (hi - lo) / 2];
        int32_t i = lo, j = hi;
        while (i <= j) {
            while (cmp_candidate(&c[i], &pivot) < 0)
                i++;
            while (cmp_candidate(&c[j], &pivot) > 0)
                j--;
            if (i <= j) {
                candidate t = c[i];
                c[i++] = c[j];
                c[j--] = t;
            }
        }
        if (k - 1 <= j)
            hi = j;
        else if (k - 1 >= i)
            lo = i;
        else
            return;
    }
}

/* Keeps the smallest prefix, in descending order, whose probability
 * reaches p (at least one). The nucleus is usually small, so only a growing
 * prefix is selected and sorted, not the whole vocab. */
static int32_t top_p_cut(candidate *c, int32_t n, float p) {
    softmax(c, n, 1.0f);
    for (int32_t m = n < 64 ? n : 64;; m = n / 8 < m ? n : m * 8) {
        if (m < n)
            select_top(c, n, m);
        qsort(c, (size_t)m, sizeof *c, cmp_candidate);
        double cum = 0;
        for (int32_t i = 0; i < m; i++) {
            cum += c[i].p;
            if (cum >= p)
                return i + 1;
        }
        if (m == n)
            return n;
    }
}

static int32_t draw(nm_sampler *s, candidate *c, int32_t n) {
    softmax(c, n, s->o.temp);
    double r = nm_rng_uniform01(&s->rng), cum = 0;
    for (int32_t i = 0; i < n; i++) {
        cum += c[i].p;
        if (r < cum)
            return c[i].id;
    }
    return c[n - 1].id; /* r fell in the rounding gap at the top */
}

int32_t nm_sample(nm_sampler *s, float *logits) {
    if (!(s->o.temp > 0) || s->o.top_k == 1)
        return nm_argmax(logits, s->n_vocab);
    /* NaN and -inf are impossible tokens; +inf is certain. */
    int32_t n = 0;
    for (int32_t i = 0; i < s->n_vocab; i++) {
        if (logits[i] == INFINITY)
            return i;
        if (!isnan(logits[i]) && logits[i] > -INFINITY)
            s->cand[n++] = (candidate){logits[i], 0, i};
    }
    if (n == 0)
        return nm_argmax(logits, s->n_vocab);
    if (s->o.top_k > 0 && s->o.top_k < n) {
        select_top(s->cand, n, s->o.top_k);
        n = s->o.top_k;
    }
    if (s->o.top_p < 1.0f)
        n = top_p_cut(s->cand, n, s->o.top_p);
    return draw(s, s->cand, n);
}
