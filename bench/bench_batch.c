/* bench_batch: the decode step of `numalm serve --parallel N` without the
 * server: nm_model_eval_batch over N sequences, one token each, against the
 * same model's one-sequence step, alternating, so a shared machine's noise
 * falls on both. Each sequence first gets a prompt of P tokens (one batched
 * pass per sequence), then S decode steps are timed; the N=1 and N=N rounds
 * alternate R times. Reports ms per step and tokens/s per round, and the
 * median ratio of the N-sequence rate to the one-sequence rate.
 *
 *   bench_batch -m MODEL [-t THREADS] [-N SEQS] [-p PROMPT] [-s STEPS] [-r ROUNDS]
 *               [--simd LEVEL] [--json]
 *   defaults: 2 threads, 8 sequences, 20 prompt tokens, 16 steps, 3 rounds, the
 *   CPU's best kernel level (--simd avx512 against amx: the AMX tiles' share) */
#include "api/session_internal.h"
#include "common/util.h"
#include "runtime/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct bench_opts {
    const char *model;
    int threads, n_seq, prompt, steps, rounds;
    int simd; /* -1: the CPU's best */
    bool json;
} bench_opts;

static int usage(void) {
    fprintf(stderr, "usage: bench_batch -m MODEL [-t THREADS] [-N SEQS] [-p PROMPT] [-s STEPS] "
                    "[-r ROUNDS] [--simd LEVEL] [--json]\n");
    return 2;
}

static int parse(int argc, char **argv, bench_opts *o) {
    *o = (bench_opts){.threads = 2, .n_seq = 8, .prompt = 20, .steps = 16, .rounds = 3, .simd = -1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json")) {
            o->json = true;
            continue;
        }
        if (i + 1 >= argc)
            return -1;
        const char *v = argv[++i];
        if (!strcmp(a, "-m"))
            o->model = v;
        else if (!strcmp(a, "-t"))
            o->threads = atoi(v);
        else if (!strcmp(a, "-N"))
            o->n_seq = atoi(v);
        else if (!strcmp(a, "-p"))
            o->prompt = atoi(v);
        else if (!strcmp(a, "-s"))
            o->steps = atoi(v);
        else if (!strcmp(a, "-r"))
            o->rounds = atoi(v);
        else if (!strcmp(a, "--simd")) {
            numalm_simd l;
            if (numalm_simd_from_name(v, &l) != 0)
                return -1;
            o->simd = (int)l;
        } else
            return -1;
    }
    if (!o->model || o->threads < 1 || o->n_seq < 1 || o->prompt < 1 || o->steps < 1 ||
        o->rounds < 1)
        return -1;
    return 0;
}

/* n sequences: a prompt each, then `steps` timed decode steps; returns the
 * seconds per step, or a negative value on error. */
static double round_of(nm_model *m, const bench_opts *o, int n, nm_batch_tok *b, float *logits) {
    nm_error err = {{0}};
    const int n_vocab = nm_model_n_vocab(m);
    uint32_t x = 2463534242u;
    for (int s = 0; s < n; s++) {
        for (int i = 0; i < o->prompt; i++) {
            x ^= x << 13, x ^= x >> 17, x ^= x << 5;
            b[i] = (nm_batch_tok){(int32_t)(3 + x % (uint32_t)(n_vocab - 3)), s, i,
                                  i == o->prompt - 1};
        }
        if (nm_model_eval_batch(m, b, o->prompt, logits, &err) < 0)
            goto fail;
    }
    double t0 = nm_now();
    for (int k = 0; k < o->steps; k++) {
        for (int s = 0; s < n; s++)
            b[s] = (nm_batch_tok){(int32_t)(3 + (s * 7919 + k * 104729) % (n_vocab - 3)), s,
                                  o->prompt + k, true};
        if (nm_model_eval_batch(m, b, n, logits, &err) < 0)
            goto fail;
    }
    return (nm_now() - t0) / o->steps;
fail:
    fprintf(stderr, "bench_batch: %s\n", err.msg);
    return -1;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    bench_opts o;
    if (parse(argc, argv, &o) < 0)
        return usage();
    numalm_options mo;
    numalm_options_init(&mo);
    mo.model_path = o.model;
    mo.n_threads = o.threads;
    mo.n_seq = o.n_seq;
    mo.n_ctx = o.prompt + o.steps;
    mo.n_batch = o.prompt > o.n_seq ? o.prompt : o.n_seq;
    mo.thp = NUMALM_THP_ON; /* as numalm serve */
    if (o.simd >= 0)
        mo.simd_max = (numalm_simd)o.simd;
    char msg[1024];
    numalm_session *s = numalm_open(&mo, msg, sizeof msg);
    if (!s) {
        fprintf(stderr, "bench_batch: %s\n", msg);
        return 1;
    }
    nm_model *m = s->model;
    nm_batch_tok *b = calloc((size_t)mo.n_batch, sizeof *b);
    float *logits = malloc((size_t)o.n_seq * (size_t)nm_model_n_vocab(m) * sizeof(float));
    double *ratio = calloc((size_t)o.rounds, sizeof *ratio);
    int rc = 1;
    if (!b || !logits || !ratio)
        goto out;
    for (int r = 0; r < o.rounds; r++) {
        double one = round_of(m, &o, 1, b, logits);
        double many = round_of(m, &o, o.n_seq, b, logits);
        if (one < 0 || many < 0)
            goto out;
        ratio[r] = one * o.n_seq / many;
        if (o.json)
            printf("{\"round\": %d, \"simd\": \"%s\", \"threads\": %d, \"n_seq\": %d, "
                   "\"step1_ms\": %.2f, \"stepN_ms\": %.2f, \"tok_s_1\": %.2f, \"tok_s_N\": %.2f, "
                   "\"ratio\": %.3f}\n",
                   r, numalm_simd_name(numalm_simd_level()), o.threads, o.n_seq, one * 1e3,
                   many * 1e3, 1 / one, o.n_seq / many, ratio[r]);
        else
            printf("round %d (%s): N=1 %.2f ms/step (%.2f tok/s), N=%d %.2f ms/step (%.2f tok/s): "
                   "%.2fx\n",
                   r, numalm_simd_name(numalm_simd_level()), one * 1e3, 1 / one, o.n_seq,
                   many * 1e3, o.n_seq / many, ratio[r]);
        fflush(stdout);
    }
    qsort(ratio, (size_t)o.rounds, sizeof *ratio, cmp_double);
    if (!o.json)
        printf("median N=%d / N=1 aggregate: %.2fx\n", o.n_seq, ratio[o.rounds / 2]);
    rc = 0;
out:
    free(ratio);
    free(logits);
    free(b);
    numalm_close(s);
    return rc;
}
