/* Batches over several sequences (nm_model_eval_batch), what `numalm
 * serve --parallel` runs: every logits row of a sequence evaluated among
 * others, joining and leaving while they decode, is bit for bit the row it
 * gets alone, and the one-sequence path (nm_model_eval) gives those bits
 * too. On stories260K (F32), on demo models with F16, Q8_0, Q4_0 and Q4_K
 * weights (Q4_K: the AMX tiles at level amx, their activation lines
 * written by both workers), with F16 and F32 KV caches, and on a mixture of experts
 * (mkmodel's moe-tiny, Q8_0: each expert's tokens gathered from every
 * sequence); in the NUMA VM the same test runs with the KV heads split
 * across nodes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "api/session_internal.h"
#include "gguf/ggml_types.h"
#include "runtime/sampler.h"
#include "test_session.h"
#include "test_util.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
    N_SEQ = 4,
    CHUNK = 24,    /* prompt tokens per pass and sequence */
    MAX_STEPS = 9, /* logits rows per sequence: its prompt's, then decode steps */
};

/* Rows per sequence checked: MAX_STEPS, or 3 in the NUMA VM's quick run. */
static int g_steps = MAX_STEPS;
static bool g_quick;

/* Prompts of different lengths (one spans two chunks). */
static const int PROMPT_LEN[N_SEQ] = {3, 11, 30, 7};

typedef struct seq_ref {
    int32_t prompt[64];
    int n_prompt;
    float *logits; /* MAX_STEPS rows: after the prompt, after each decode */
    int32_t next[MAX_STEPS];
} seq_ref;

static numalm_session *open_batch(const char *path, int n_seq, int n_batch, numalm_kv_type kv) {
    numalm_options o;
    numalm_options_init(&o);
    o.model_path = path;
    o.n_seq = n_seq;
    o.n_batch = n_batch;
    o.n_ctx = 128;
    o.kv_type = kv;
    return nm_test_open(&o);
}

static numalm_session *open_model(const char *path, int n_seq, numalm_kv_type kv) {
    return open_batch(path, n_seq, N_SEQ + CHUNK, kv);
}

static void make_prompts(seq_ref *r, int n_vocab) {
    uint32_t x = 12345;
    for (int s = 0; s < N_SEQ; s++) {
        r[s].n_prompt = PROMPT_LEN[s];
        for (int i = 0; i < r[s].n_prompt; i++) {
            x = x * 1664525u + 1013904223u;
            r[s].prompt[i] = (int32_t)(3 + (x >> 8) % (uint32_t)(n_vocab - 3));
        }
    }
}

static void eval(nm_model *m, const nm_batch_tok *b, int n, float *logits) {
    nm_error err = {{0}};
    if (nm_model_eval_batch(m, b, n, logits, &err) < 0)
        fail_msg("eval_batch: %s", err.msg);
}

/* Sequence s alone in the slot `seq`: its prompt in chunks, then greedy
 * steps, one pass each; every logits row kept. */
static void run_alone(nm_model *m, seq_ref *r, int seq, int n_vocab) {
    nm_batch_tok b[CHUNK];
    for (int p0 = 0; p0 < r->n_prompt; p0 += CHUNK) {
        int n = r->n_prompt - p0 < CHUNK ? r->n_prompt - p0 : CHUNK;
        for (int k = 0; k < n; k++)
            b[k] = (nm_batch_tok){r->prompt[p0 + k], seq, p0 + k, p0 + k == r->n_prompt - 1};
        eval(m, b, n, r->logits);
    }
    r->next[0] = nm_argmax(r->logits, n_vocab);
    for (int i = 1; i < g_steps; i++) {
        b[0] = (nm_batch_tok){r->next[i - 1], seq, r->n_prompt + i - 1, true};
        eval(m, b, 1, r->logits + (size_t)i * n_vocab);
        r->next[i] = nm_argmax(r->logits + (size_t)i * n_vocab, n_vocab);
    }
}

typedef struct live {
    int ref;   /* which seq_ref, -1: slot free */
    int fed;   /* prompt tokens evaluated */
    int steps; /* logits rows produced */
} live;

/* All four together in slots 0..3, joining at steps 0, 0, 2, 5 and the
 * first one starting over in its slot once done: each pass holds the
 * decoding slots' tokens (in reverse slot order, so batch order differs
 * from slot order) and then prompt chunks. Every row must equal the alone
 * run's. Returns the passes made. */
static int run_together(nm_model *m, seq_ref *r, int n_vocab, float *rows) {
    static const int JOIN[N_SEQ] = {0, 0, 2, 5};
    live slot[N_SEQ];
    for (int s = 0; s < N_SEQ; s++)
        slot[s] = (live){-1, 0, 0};
    int restarted = 0, passes = 0, done = 0;
    nm_batch_tok b[N_SEQ + CHUNK];
    int row_slot[N_SEQ + CHUNK];
    for (int step = 0; done < N_SEQ + 1; step++) {
        assert_true(step < 100);
        for (int s = 0; s < N_SEQ; s++)
            if (slot[s].ref < 0 && JOIN[s] == step)
                slot[s] = (live){s, 0, 0};
        int n = 0, n_rows = 0;
        for (int s = N_SEQ - 1; s >= 0; s--) {
            live *l = &slot[s];
            if (l->ref < 0 || l->fed < r[l->ref].n_prompt)
                continue;
            const seq_ref *q = &r[l->ref];
            b[n++] = (nm_batch_tok){q->next[l->steps - 1], s, q->n_prompt + l->steps - 1, true};
            row_slot[n_rows++] = s;
        }
        for (int s = 0; s < N_SEQ; s++) {
            live *l = &slot[s];
            if (l->ref < 0 || l->fed == r[l->ref].n_prompt)
                continue;
            const seq_ref *q = &r[l->ref];
            int take = q->n_prompt - l->fed < CHUNK ? q->n_prompt - l->fed : CHUNK;
            for (int k = 0; k < take; k++, l->fed++) {
                bool last = l->fed == q->n_prompt - 1;
                b[n++] = (nm_batch_tok){q->prompt[l->fed], s, l->fed, last};
                if (last)
                    row_slot[n_rows++] = s;
            }
        }
        if (n == 0)
            continue;
        eval(m, b, n, rows);
        passes++;
        for (int k = 0; k < n_rows; k++) {
            live *l = &slot[row_slot[k]];
            const seq_ref *q = &r[l->ref];
            const float *want = q->logits + (size_t)l->steps * n_vocab;
            if (memcmp(rows + (size_t)k * n_vocab, want, (size_t)n_vocab * sizeof(float)))
                fail_msg("sequence %d (slot %d), row %d: differs from its run alone", l->ref,
                         row_slot[k], l->steps);
            if (++l->steps == g_steps) {
                done++;
                /* slot 0 starts its sequence again from position 0 */
                *l = (live){-1, 0, 0};
                if (row_slot[k] == 0 && !restarted++)
                    *l = (live){0, 0, 0};
            }
        }
    }
    return passes;
}

static void check_model(const char *path, numalm_kv_type kv) {
    numalm_session *s = open_model(path, N_SEQ, kv);
    nm_model *m = s->model;
    int n_vocab = nm_model_n_vocab(m);
    seq_ref r[N_SEQ];
    make_prompts(r, n_vocab);
    for (int q = 0; q < N_SEQ; q++) {
        r[q].logits = malloc((size_t)MAX_STEPS * n_vocab * sizeof(float));
        assert_non_null(r[q].logits);
        /* alone in a slot other than the one it gets together */
        run_alone(m, &r[q], (q + 1) % N_SEQ, n_vocab);
    }
    float *rows = malloc((size_t)(N_SEQ + CHUNK) * n_vocab * sizeof(float));
    assert_non_null(rows);
    int passes = run_together(m, r, n_vocab, rows);
    int tokens = 0;
    for (int q = 0; q < N_SEQ; q++)
        tokens += g_steps - 1 + (q == 0 ? g_steps - 1 : 0);
    assert_true(passes < tokens); /* passes carried several sequences */

    /* The one-sequence path of a model with one sequence: the same bits
     * (on the host only: the quick run keeps the VM's time for the split
     * caches). */
    if (g_quick) {
        for (int q = 0; q < N_SEQ; q++)
            free(r[q].logits);
        free(rows);
        numalm_close(s);
        return;
    }
    numalm_session *one = open_model(path, 1, kv);
    float *l = malloc((size_t)n_vocab * sizeof(float));
    assert_non_null(l);
    nm_error err = {{0}};
    for (int q = 0; q < N_SEQ; q++) {
        assert_int_equal(
            nm_model_eval(one->model, r[q].prompt, r[q].n_prompt, 0, r[q].n_prompt - 1, l, &err),
            0);
        assert_memory_equal(l, r[q].logits, (size_t)n_vocab * sizeof(float));
        for (int i = 1; i < g_steps; i++) {
            assert_int_equal(
                nm_model_eval(one->model, &r[q].next[i - 1], 1, r[q].n_prompt + i - 1, 0, l, &err),
                0);
            assert_memory_equal(l, r[q].logits + (size_t)i * n_vocab,
                                (size_t)n_vocab * sizeof(float));
        }
    }
    free(l);
    numalm_close(one);
    for (int q = 0; q < N_SEQ; q++)
        free(r[q].logits);
    free(rows);
    numalm_close(s);
}

static char g_dir[512];
/* tiny preset in F16, Q8_0, Q4_0; moe-tiny in Q8_0; tiny in Q4_K */
enum { N_MODELS = 5 };
static char g_model[N_MODELS][600];

static void test_stories(void **state) {
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/models/stories260K.gguf", nm_test_shared_dir());
    if (access(path, R_OK)) {
        print_message("skipped: %s is absent\n", path);
        skip();
    }
    check_model(path, NUMALM_KV_F16);
    if (!g_quick)
        check_model(path, NUMALM_KV_F32);
}

static void test_demo_types(void **state) {
    (void)state;
    for (int i = 0; i < 3; i++) {
        check_model(g_model[i], NUMALM_KV_F16);
        check_model(g_model[i], NUMALM_KV_F32);
    }
    check_model(g_model[4], NUMALM_KV_F16);
}

/* With an F16 cache, a sequence's tokens attend as llama.cpp's one-query
 * path when the pass holds fewer than 64 of them, else as its F32 tiles:
 * counted per sequence, so chunks of 40 and 30 tokens in one pass of 70
 * keep the bits they have alone, and so does a chunk of 64 beside a
 * decode token. */
static void prompt_alone(nm_model *m, int seq, int n, int32_t first, float *logits) {
    nm_batch_tok b[72];
    for (int i = 0; i < n; i++)
        b[i] = (nm_batch_tok){first + i, seq, i, i == n - 1};
    eval(m, b, n, logits);
}

/* Experts run over the tokens routed to them whichever sequences they
 * come from: a sequence's rows still keep the bits they have alone. */
static void test_moe(void **state) {
    (void)state;
    check_model(g_model[3], NUMALM_KV_F16);
}

static void test_attention_per_sequence(void **state) {
    (void)state;
    numalm_session *s = open_batch(g_model[1], 3, 72, NUMALM_KV_F16);
    nm_model *m = s->model;
    size_t row = (size_t)nm_model_n_vocab(m) * sizeof(float);
    float *a40 = malloc(row), *a30 = malloc(row), *a64 = malloc(row), *got = malloc(3 * row);
    assert_true(a40 && a30 && a64 && got);
    prompt_alone(m, 0, 40, 10, a40);
    prompt_alone(m, 1, 30, 60, a30);
    prompt_alone(m, 2, 64, 100, a64);
    nm_batch_tok b[72];
    int n = 0;
    for (int i = 0; i < 30; i++)
        b[n++] = (nm_batch_tok){60 + i, 1, i, i == 29};
    for (int i = 0; i < 40; i++)
        b[n++] = (nm_batch_tok){10 + i, 0, i, i == 39};
    eval(m, b, n, got);
    assert_memory_equal(got, a30, row);
    assert_memory_equal((char *)got + row, a40, row);
    n = 0;
    b[n++] = (nm_batch_tok){5, 0, 40, true};
    for (int i = 0; i < 64; i++)
        b[n++] = (nm_batch_tok){100 + i, 2, i, i == 63};
    eval(m, b, n, got);
    assert_memory_equal((char *)got + row, a64, row);
    free(a40), free(a30), free(a64), free(got);
    numalm_close(s);
}

static void test_bad_batches(void **state) {
    (void)state;
    numalm_session *s = open_model(g_model[1], 2, NUMALM_KV_F16);
    nm_model *m = s->model;
    float *l = malloc(2 * (size_t)nm_model_n_vocab(m) * sizeof(float)); /* two rows */
    nm_error err = {{0}};
    nm_batch_tok b[N_SEQ + CHUNK + 1] = {{5, 0, 0, true}, {6, 0, 2, true}};
    assert_int_equal(nm_model_eval_batch(m, b, 2, l, &err), -1); /* a gap */
    assert_non_null(strstr(err.msg, "position 2 after 0"));
    b[1] = (nm_batch_tok){6, 2, 0, true};
    assert_int_equal(nm_model_eval_batch(m, b, 2, l, &err), -1);
    assert_non_null(strstr(err.msg, "sequence 2 of 2"));
    b[1] = (nm_batch_tok){6, 1, 128, true};
    assert_int_equal(nm_model_eval_batch(m, b, 2, l, &err), -1);
    assert_non_null(strstr(err.msg, "context full"));
    b[1] = (nm_batch_tok){1 << 30, 1, 0, true};
    assert_int_equal(nm_model_eval_batch(m, b, 2, l, &err), -1);
    assert_non_null(strstr(err.msg, "outside the vocabulary"));
    assert_int_equal(nm_model_eval_batch(m, b, N_SEQ + CHUNK + 1, l, &err), -1);
    assert_non_null(strstr(err.msg, "at most"));
    b[1] = (nm_batch_tok){6, 1, 0, true};
    assert_int_equal(nm_model_eval_batch(m, b, 2, NULL, &err), -1);
    assert_int_equal(nm_model_eval_batch(m, b, 2, l, &err), 0);
    free(l);
    numalm_close(s);
}

static int setup(void **state) {
    (void)state;
    if (nm_test_mkdtemp(g_dir, sizeof g_dir, "test_batch") < 0)
        return -1;
    static const uint32_t types[N_MODELS] = {NM_TYPE_F16, NM_TYPE_Q8_0, NM_TYPE_Q4_0, NM_TYPE_Q8_0,
                                             NM_TYPE_Q4_K};
    for (int i = 0; i < N_MODELS; i++) {
        snprintf(g_model[i], sizeof g_model[i], "%s/tiny-%d.gguf", g_dir, i);
        nm_mkmodel_result res;
        nm_error err = {{0}};
        nm_mkmodel_opts o = {.type = types[i], .seed = 7};
        if (nm_mkmodel_preset(i == 3 ? "moe-tiny" : "tiny", &o.shape, &err) < 0 ||
            nm_mkmodel_write(g_model[i], &o, &res, &err) < 0) {
            fprintf(stderr, "test_batch: %s\n", err.msg);
            return -1;
        }
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    for (int i = 0; i < N_MODELS; i++)
        unlink(g_model[i]);
    rmdir(g_dir);
    return 0;
}

/* test_batch [quick]: quick, for the NUMA VM, where code runs ~20x
 * slower: stories260K with an F16 cache, 3 rows per sequence, batched
 * against alone only. */
int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "quick")) {
        g_quick = true;
        g_steps = 3;
        cmocka_set_test_filter("test_stories");
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stories),     cmocka_unit_test(test_demo_types),
        cmocka_unit_test(test_moe),         cmocka_unit_test(test_attention_per_sequence),
        cmocka_unit_test(test_bad_batches),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
