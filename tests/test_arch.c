/* The architectures beyond plain llama: qwen2 (Q/K/V biases), qwen3 (Q/K
 * norms, head size from key_length), llama with rope_freqs and a tied
 * embedding, qwen3moe (a mixture of experts, its experts' rows split across
 * the nodes or whole experts per node). numalm's logits against the F64
 * reference (ref_forward.h) on mkmodel files of each and on the shared
 * random-weight Qwen 3 / Llama 3 / Qwen 3 MoE files, and the same greedy
 * tokens across placements, io modes, thread counts and expert placements.
 * Token ids go in directly: no tokenizer is involved. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "api/session_internal.h"
#include "gguf/ggml_types.h"
#include "ref_forward.h"
#include "test_session.h"
#include "test_util.h"
#include "tools/mkmodel.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int g_node0; /* OS index of this machine's first node */
static char g_tmpdir[256];

/* The model of a session opened as every program opens one. */
static numalm_session *open_session(const char *path, numalm_placement pl, numalm_io io,
                                    int threads, numalm_kv_type kv_type, numalm_moe_placement moe) {
    numalm_options o;
    numalm_options_init(&o);
    o.model_path = path;
    o.placement = pl;
    o.fixed_node = g_node0;
    o.n_threads = threads;
    o.io = io;
    o.kv_type = kv_type;
    o.moe = moe;
    o.n_ctx = 256;
    o.n_batch = 6; /* a prompt of 10 is two batches */
    return nm_test_open(&o);
}

typedef struct variant {
    const char *name;
    nm_arch arch;
    uint32_t head_dim;
    bool tied, rope_freqs;
} variant;

static const variant VARIANTS[] = {
    {"qwen2-tied", NM_ARCH_QWEN2, 0, true, false},
    {"qwen3-hd64", NM_ARCH_QWEN3, 64, false, false},
    {"llama3-freqs-tied", NM_ARCH_LLAMA, 0, true, true},
    {"qwen3moe", NM_ARCH_QWEN3MOE, 64, false, false}, /* the moe-tiny preset */
};

static bool is_moe(const variant *v) {
    return v->arch == NM_ARCH_QWEN3MOE;
}

static const char *make_model(const variant *v, uint32_t type, char *path, size_t cap) {
    if (!g_tmpdir[0])
        assert_int_equal(nm_test_mkdtemp(g_tmpdir, sizeof g_tmpdir, "test_arch"), 0);
    snprintf(path, cap, "%s/%s-%s.gguf", g_tmpdir, v->name, nm_type_name(type));
    if (access(path, R_OK) == 0)
        return path;
    nm_mkmodel_opts o = {.type = type, .seed = 11};
    nm_error err = {{0}};
    assert_int_equal(nm_mkmodel_preset(is_moe(v) ? "moe-tiny" : "tiny", &o.shape, &err), 0);
    o.shape.n_layer = 2;
    o.shape.arch = v->arch;
    o.shape.head_dim = v->head_dim;
    o.shape.tied = v->tied;
    o.shape.rope_freqs = v->rope_freqs;
    if (nm_mkmodel_write(path, &o, NULL, &err) < 0)
        fail_msg("mkmodel %s: %s", v->name, err.msg);
    return path;
}

/* A batched prompt (two batches), then single steps, against the F64
 * reference; returns the worst relative RMS logit error. */
static double worst_vs_reference(const char *path, int threads, numalm_kv_type kv_type,
                                 numalm_moe_placement moe) {
    static const int32_t toks[] = {1, 300, 301, 512, 777, 1000, 42, 1500, 1234, 5, 77, 9};
    const int n = 12, n_prompt = 10;
    numalm_session *s =
        open_session(path, NUMALM_PLACE_SHARD, NUMALM_IO_AUTO, threads, kv_type, moe);
    ref_model r;
    ref_load(&r, s->gguf, n);
    int nv = (int)r.hp.n_vocab;
    float *got = malloc((size_t)n * nv * sizeof(float));
    double *want = malloc((size_t)nv * sizeof(double));
    assert_true(got && want);
    nm_error err = {{0}};
    if (nm_model_eval(s->model, toks, n_prompt, 0, 0, got, &err) < 0)
        fail_msg("eval: %s", err.msg);
    for (int i = n_prompt; i < n; i++)
        assert_int_equal(nm_model_eval(s->model, toks + i, 1, i, 0, got + (size_t)i * nv, &err), 0);
    double worst = 0;
    for (int i = 0; i < n; i++) {
        ref_step(&r, toks[i], i, want);
        double e = rel_rms(got + (size_t)i * nv, want, nv);
        worst = e > worst ? e : worst;
    }
    free(got), free(want);
    ref_free(&r);
    numalm_close(s);
    return worst;
}

/* Biases, per-head norms, neox RoPE, frequency factors, a head size that is
 * not embedding / heads and tied embeddings each change every logit far
 * beyond the F32 tolerance: a reference that leaves out the rope factors
 * differs by 8e-4, the Q/K norms by 9e-2, qwen2's biases by 0.5. */
static void test_mkmodel_archs_vs_reference(void **state) {
    (void)state;
    const struct {
        uint32_t type;
        numalm_kv_type kv;
        double tol;
    } cases[] = {
        {NM_TYPE_F32, NUMALM_KV_F32, 1e-5},
        {NM_TYPE_F16, NUMALM_KV_F16, 3e-3},
        {NM_TYPE_Q8_0, NUMALM_KV_F16, 0.03},
    };
    const int n_variants = sizeof VARIANTS / sizeof VARIANTS[0];
    const int n_cases = sizeof cases / sizeof cases[0];
    for (int v = 0; v < n_variants; v++)
        for (int c = 0; c < n_cases; c++)
            for (int t = 1; t <= (is_moe(&VARIANTS[v]) ? 4 : 2); t++) {
                /* reduced matrix: every variant with every type, threads
                 * (and a mixture's expert placements) alternating */
                if (is_moe(&VARIANTS[v])
                        ? !nm_test_case_runs(2, (const int[]){n_cases, 4}, (const int[]){c, t - 1})
                        : !nm_test_case_runs(2, (const int[]){n_variants * n_cases, 2},
                                             (const int[]){v * n_cases + c, t - 1}))
                    continue;
                /* a mixture also with whole experts per node */
                int threads = 1 + (t - 1) % 2;
                numalm_moe_placement moe = t > 2 ? NUMALM_MOE_EXPERTS : NUMALM_MOE_ROWS;
                char path[512];
                make_model(&VARIANTS[v], cases[c].type, path, sizeof path);
                double worst = worst_vs_reference(path, threads, cases[c].kv, moe);
                print_message("%s %s, %s KV, %d threads%s: worst relative RMS error %.2e\n",
                              VARIANTS[v].name, nm_type_name(cases[c].type),
                              numalm_kv_type_name(cases[c].kv), threads,
                              moe == NUMALM_MOE_EXPERTS ? ", whole experts" : "", worst);
                if (!(worst < cases[c].tol))
                    fail_msg("%s %s: logits differ from the F64 reference by %.3e (> %.1e)",
                             VARIANTS[v].name, nm_type_name(cases[c].type), worst, cases[c].tol);
            }
}

/* The shared random-weight files in the shapes of Qwen 3 (head size 128
 * with embedding 64), Llama 3 (rope_freqs) and Qwen 3 MoE (8 experts, 2
 * used), written by llama.cpp's gguf-py. */
static void test_shared_models_vs_reference(void **state) {
    (void)state;
    static const char *const MODELS[] = {"tiny-qwen3-e64-f32.gguf", "tiny-llama3-e64-f32.gguf",
                                         "tiny-qwen3moe-e64-f32.gguf"};
    int found = 0;
    for (size_t i = 0; i < sizeof MODELS / sizeof MODELS[0]; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/models/%s", nm_test_shared_dir(), MODELS[i]);
        if (access(path, R_OK) != 0)
            continue;
        found++;
        double worst = worst_vs_reference(path, 2, NUMALM_KV_F32, NUMALM_MOE_ROWS);
        print_message("%s: worst relative RMS error %.2e\n", MODELS[i], worst);
        if (!(worst < 1e-5))
            fail_msg("%s: logits differ from the F64 reference by %.3e", MODELS[i], worst);
    }
    if (!found) {
        print_message("skipped: the shared tiny-qwen3/llama3/qwen3moe models are absent\n");
        skip();
    }
}

/* Greedy from token ids (no tokenizer): n_gen ids after the prompt. */
static void greedy_ids(nm_model *m, const int32_t *prompt, int n_prompt, int n_gen, int32_t *out) {
    int nv = nm_model_n_vocab(m);
    float *logits = malloc((size_t)nv * sizeof(float));
    int32_t *seq = malloc((size_t)(n_prompt + n_gen) * sizeof *seq);
    assert_true(logits && seq);
    memcpy(seq, prompt, (size_t)n_prompt * sizeof *seq);
    nm_error err = {{0}};
    int pos = 0, n = n_prompt;
    for (int i = 0; i < n_gen; i++) {
        if (nm_model_eval(m, seq + pos, n, pos, n - 1, logits, &err) < 0)
            fail_msg("eval: %s", err.msg);
        int best = 0;
        for (int k = 1; k < nv; k++)
            best = logits[k] > logits[best] ? k : best;
        pos += n;
        n = 1;
        seq[pos] = out[i] = best;
    }
    free(logits), free(seq);
}

/* Greedy tokens from path on every placement, io mode, thread count and
 * (a mixture, in shard: the placement where the plan's expert split decides
 * which node holds what) both expert placements: all the same. */
static void check_tokens_everywhere(const char *name, const char *path, bool moe) {
    const numalm_placement pls[] = {NUMALM_PLACE_SHARD, NUMALM_PLACE_REPLICATE,
                                    NUMALM_PLACE_INTERLEAVE, NUMALM_PLACE_NODE};
    const numalm_io ios[] = {NUMALM_IO_DIO, NUMALM_IO_MMAP};
    static const int32_t prompt[] = {1, 300, 301, 512, 777};
    enum { N_GEN = 16 };
    int32_t base[N_GEN], got[N_GEN];
    bool have_base = false;
    for (int p = 0; p < 4; p++)
        for (int i = 0; i < 2; i++)
            for (int t = 1; t <= 2; t++)
                for (int x = 0; x <= (int)(moe && pls[p] == NUMALM_PLACE_SHARD); x++) {
                    if (!nm_test_case_runs(3, (const int[]){4, 2, 2}, (const int[]){p, i, t - 1}))
                        continue;
                    numalm_session *s = open_session(path, pls[p], ios[i], t, NUMALM_KV_F16,
                                                     (numalm_moe_placement)x);
                    greedy_ids(s->model, prompt, 5, N_GEN, have_base ? got : base);
                    numalm_close(s);
                    if (have_base && memcmp(got, base, sizeof got))
                        fail_msg("%s: placement %s, io %s, %d threads, experts by %s: tokens "
                                 "differ",
                                 name, numalm_placement_name(pls[p]), numalm_io_name(ios[i]), t,
                                 x ? "whole experts" : "rows");
                    have_base = true;
                }
}

static void test_tokens_identical_everywhere(void **state) {
    (void)state;
    for (size_t v = 0; v < sizeof VARIANTS / sizeof VARIANTS[0]; v++) {
        char path[512];
        make_model(&VARIANTS[v], NM_TYPE_Q8_0, path, sizeof path);
        check_tokens_everywhere(VARIANTS[v].name, path, is_moe(&VARIANTS[v]));
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/models/tiny-qwen3moe-e64-f32.gguf", nm_test_shared_dir());
    if (access(path, R_OK) == 0)
        check_tokens_everywhere("tiny-qwen3moe-e64-f32", path, true);
}

int main(void) {
    nm_error err = {{0}};
    nm_topo *t = nm_topo_load(NULL, &err);
    if (!t) {
        fprintf(stderr, "test_arch: topology: %s\n", err.msg);
        return 1;
    }
    g_node0 = t->nodes[0].os_index; /* for placement node */
    nm_topo_free(t);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mkmodel_archs_vs_reference),
        cmocka_unit_test(test_shared_models_vs_reference),
        cmocka_unit_test(test_tokens_identical_everywhere),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    if (g_tmpdir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmpdir);
        if (system(cmd) != 0)
            fprintf(stderr, "test_arch: could not remove %s\n", g_tmpdir);
    }
    return rc;
}
