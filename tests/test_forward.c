/* The forward pass: llama.cpp's greedy outputs and perplexity on the real
 * stories260K model, identical tokens across placements / io modes /
 * thread counts, and logits of quantized demo models against a plain F64
 * reference forward pass written here from the llama equations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "api/session_internal.h"
#include "common/util.h"
#include "gguf/ggml_types.h"
#include "gguf/quant.h"
#include "ref_forward.h"
#include "test_session.h"
#include "test_util.h"
#include "tools/mkmodel.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- setup ---- */

static int g_node0; /* OS index of this machine's first node */

static const char *shared_path(const char *rel, char *buf, size_t cap) {
    const char *s = getenv("NUMALM_SHARED");
    snprintf(buf, cap, "%s/%s", s && *s ? s : "../shared", rel);
    return buf;
}

static bool have_file(const char *path) {
    return access(path, R_OK) == 0;
}

static numalm_options session_opts(const char *path, numalm_placement pl, numalm_io io, int threads,
                                   numalm_kv_type kv_type) {
    numalm_options o;
    numalm_options_init(&o);
    o.model_path = path;
    o.placement = pl;
    o.fixed_node = g_node0;
    o.n_threads = threads;
    o.io = io;
    o.kv_type = kv_type;
    return o;
}

static numalm_session *open_session(const char *path, numalm_placement pl, numalm_io io,
                                    int threads, numalm_kv_type kv_type) {
    numalm_options o = session_opts(path, pl, io, threads, kv_type);
    return nm_test_open(&o);
}

typedef struct text_buf {
    char *p;
    size_t n, cap;
} text_buf;

static int append_text(void *ud, const char *text, size_t len) {
    text_buf *b = ud;
    if (b->n + len + 1 > b->cap) {
        b->cap = (b->n + len + 1) * 2;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->n, text, len);
    b->n += len;
    b->p[b->n] = 0;
    return 0;
}

#define MAX_PROMPT 512 /* tokens: more than any prompt here */

/* Greedy generation of n tokens after prompt; *toks (malloc'd) gets every
 * token, prompt included, when toks is not NULL. Returns their count. */
static int generate(numalm_session *s, const numalm_gen_params *p, const char *prompt,
                    text_buf *text, int32_t **toks, numalm_gen_stats *st) {
    numalm_gen_params q = *p;
    q.max_tokens = p->n_predict + MAX_PROMPT;
    q.tokens = malloc((size_t)q.max_tokens * sizeof *q.tokens);
    assert_non_null(q.tokens);
    if (numalm_generate(s, prompt, &q, text ? append_text : NULL, text, st) < 0)
        fail_msg("generate: %s", numalm_last_error(s));
    assert_true(st->n_tokens <= q.max_tokens);
    if (toks)
        *toks = q.tokens;
    else
        free(q.tokens);
    return st->n_tokens;
}

static int greedy(numalm_session *s, const char *prompt, int n, text_buf *text, int32_t **toks) {
    numalm_gen_params p;
    numalm_gen_params_init(&p);
    p.n_predict = n;
    p.echo = true;
    numalm_gen_stats st;
    return generate(s, &p, prompt, text, toks, &st);
}

/* ---- llama.cpp's reference outputs ---- */

/* The JSON string value of "key" in one line (escapes decoded). */
static char *json_string(const char *line, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": \"", key);
    const char *p = strstr(line, pat);
    if (!p)
        return NULL;
    p += strlen(pat);
    char *out = malloc(strlen(p) * 4 + 1), *o = out;
    for (; *p && *p != '"'; p++) {
        if (*p != '\\') {
            *o++ = *p;
            continue;
        }
        switch (*++p) {
        case 'n':
            *o++ = '\n';
            break;
        case 't':
            *o++ = '\t';
            break;
        case 'r':
            *o++ = '\r';
            break;
        case 'u': {
            unsigned c = (unsigned)strtoul((char[5]){p[1], p[2], p[3], p[4], 0}, NULL, 16);
            p += 4;
            if (c < 0x80) {
                *o++ = (char)c;
            } else if (c < 0x800) {
                *o++ = (char)(0xC0 | c >> 6);
                *o++ = (char)(0x80 | (c & 0x3F));
            } else {
                *o++ = (char)(0xE0 | c >> 12);
                *o++ = (char)(0x80 | ((c >> 6) & 0x3F));
                *o++ = (char)(0x80 | (c & 0x3F));
            }
            break;
        }
        default:
            *o++ = *p;
            break; /* \" \\ \/ */
        }
    }
    *o = 0;
    return out;
}

static void test_greedy_matches_llama_cpp(void **state) {
    (void)state;
    char model[512], ref[512];
    shared_path("models/stories260K.gguf", model, sizeof model);
    shared_path("models/stories260K.greedy.jsonl", ref, sizeof ref);
    if (!have_file(model) || !have_file(ref)) {
        print_message("skipped: %s or %s is absent\n", model, ref);
        skip();
    }
    numalm_session *s = open_session(model, NUMALM_PLACE_SHARD, NUMALM_IO_AUTO, 0, NUMALM_KV_F16);
    FILE *f = fopen(ref, "r");
    assert_non_null(f);
    char line[65536];
    int n_lines = 0;
    while (fgets(line, sizeof line, f)) {
        char *prompt = json_string(line, "prompt"), *expected = json_string(line, "expected");
        const char *np = strstr(line, "\"n_predict\": ");
        assert_non_null(prompt);
        assert_non_null(expected);
        assert_non_null(np);
        text_buf text = {0};
        greedy(s, prompt, atoi(np + 13), &text, NULL);
        if (strcmp(text.p, expected))
            fail_msg("prompt '%s':\n got      '%s'\n expected '%s'", prompt, text.p, expected);
        free(prompt), free(expected), free(text.p);
        n_lines++;
    }
    fclose(f);
    assert_true(n_lines > 0);
    numalm_close(s);
}

/* The random-weight files in the shapes of Qwen 3, Llama 3 and Qwen 3 MoE
 * (BPE vocabs, tied embeddings, Qwen 3's head size 128 with embedding 64
 * and Q/K norms, Llama 3's rope_freqs, 8 experts with 2 used): llama.cpp's
 * greedy bytes (llama-simple, 32 tokens) exactly, and its perplexity within
 * the README's 0.01 %. */
static const char *const REFERENCE_MODELS[] = {
    "tiny-qwen3-e64-f32.gguf", "tiny-llama3-e64-f32.gguf", "tiny-qwen3moe-e64-f32.gguf"};

static void to_hex(const char *p, size_t n, char *out) {
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", (unsigned char)p[i]);
    out[2 * n] = 0;
}

/* Where greedy text may leave llama.cpp's (README of the shared models):
 * in the second half of the continuation, at a near-tie. numalm's logits
 * agree with llama.cpp's to ~2e-3 absolute on these head-128 models (there
 * llama.cpp's attention runs native AVX512-FP16 arithmetic, see
 * docs/runtime.md), so a near-tie is a top-2 margin under 2e-3 here. */
#define NEAR_TIE 2e-3

/* The generated text left llama.cpp's at byte `at` (of the text after the
 * prompt): the token that did it must be a near-tie in the second half. */
static void check_divergence(numalm_session *s, const char *model, const char *prompt,
                             const int32_t *toks, int n_prompt, int n_gen, size_t at) {
    char buf[4096];
    int step = 0;
    while (step < n_gen &&
           numalm_detokenize(s, toks + n_prompt, step + 1, buf, sizeof buf) <= (int64_t)at)
        step++;
    assert_true(step < n_gen);
    int nv = numalm_n_vocab(s);
    float *logits = malloc((size_t)nv * sizeof(float));
    assert_non_null(logits);
    int n = n_prompt + step;
    if (numalm_eval(s, toks, n, 0, n - 1, logits) < 0)
        fail_msg("eval: %s", numalm_last_error(s));
    int a = 0, b = -1;
    for (int i = 1; i < nv; i++)
        if (logits[i] > logits[a])
            a = i;
    for (int i = 0; i < nv; i++)
        if (i != a && (b < 0 || logits[i] > logits[b]))
            b = i;
    double margin = logits[a] - logits[b];
    free(logits);
    print_message("%s '%s': leaves llama.cpp's text at generated token %d of %d (byte %zu), "
                  "where its top two logits are %.2e apart (tokens %d, %d)\n",
                  model, prompt, step + 1, n_gen, at, margin, a, b);
    if (step < n_gen / 2 || margin >= NEAR_TIE)
        fail_msg("%s '%s': differs from llama.cpp from generated token %d of %d on, top-2 "
                 "margin %.2e there: not a near-tie in the second half",
                 model, prompt, step + 1, n_gen, margin);
}

static void check_reference_line(numalm_session *s, const char *model, const char *line,
                                 const char *story_text, size_t story_len) {
    const char *np = strstr(line, "\"n_predict\": "), *ppl = strstr(line, "\"ppl\": ");
    if (np) {
        char *prompt = json_string(line, "prompt"), *want = json_string(line, "expected_hex");
        assert_non_null(prompt);
        assert_non_null(want);
        numalm_gen_params p;
        numalm_gen_params_init(&p);
        p.n_predict = atoi(np + 13);
        numalm_gen_stats st;
        text_buf text = {0};
        int32_t *toks = NULL;
        int n = generate(s, &p, prompt, &text, &toks, &st);
        char *got = malloc(2 * text.n + 1);
        assert_non_null(got);
        to_hex(text.p ? text.p : "", text.n, got);
        if (strcmp(got, want)) {
            size_t i = 0;
            while (got[i] && got[i] == want[i])
                i++;
            check_divergence(s, model, prompt, toks, n - p.n_predict, p.n_predict, i / 2);
        } else {
            print_message("%s '%s': %d tokens with the prompt, %zu bytes as llama.cpp's\n", model,
                          prompt, st.n_tokens, text.n);
        }
        free(prompt), free(want), free(got), free(text.p), free(toks);
    } else if (ppl) {
        const char *c = strstr(line, "\"ctx\": ");
        assert_non_null(c);
        double want = atof(ppl + 7);
        numalm_ppl_result r;
        if (numalm_perplexity(s, story_text, story_len, atoi(c + 7), NULL, NULL, &r) < 0)
            fail_msg("%s perplexity: %s", model, numalm_last_error(s));
        print_message("%s: PPL %.4f, llama.cpp %.4f (%.1e)\n", model, r.ppl, want,
                      fabs(r.ppl - want) / want);
        if (fabs(r.ppl - want) / want > 1e-4)
            fail_msg("%s: PPL %.4f, llama.cpp gives %.4f", model, r.ppl, want);
    }
}

static void test_shared_models_match_llama_cpp(void **state) {
    (void)state;
    char ref[512], story[512];
    shared_path("models/reference.jsonl", ref, sizeof ref);
    shared_path("models/story.txt", story, sizeof story);
    FILE *st = fopen(story, "rb");
    if (!have_file(ref) || !st) {
        print_message("skipped: %s or %s is absent\n", ref, story);
        if (st)
            fclose(st);
        skip();
    }
    static char text[1 << 20];
    size_t len = fread(text, 1, sizeof text - 1, st);
    fclose(st);
    int n_models = 0;
    for (size_t m = 0; m < sizeof REFERENCE_MODELS / sizeof REFERENCE_MODELS[0]; m++) {
        char model[512], key[128], line[65536];
        shared_path("models/", model, sizeof model);
        strncat(model, REFERENCE_MODELS[m], sizeof model - strlen(model) - 1);
        if (!have_file(model))
            continue;
        n_models++;
        numalm_session *s =
            open_session(model, NUMALM_PLACE_SHARD, NUMALM_IO_AUTO, 0, NUMALM_KV_F16);
        snprintf(key, sizeof key, "\"model\": \"%s\"", REFERENCE_MODELS[m]);
        FILE *f = fopen(ref, "r");
        assert_non_null(f);
        int n_lines = 0;
        while (fgets(line, sizeof line, f))
            if (strstr(line, key)) {
                check_reference_line(s, REFERENCE_MODELS[m], line, text, len);
                n_lines++;
            }
        fclose(f);
        assert_true(n_lines >= 4); /* three prompts and the perplexity */
        numalm_close(s);
    }
    if (!n_models) {
        print_message("skipped: no model of reference.jsonl is in %s\n", ref);
        skip();
    }
}

static void record_chunk(void *ud, int chunk, double ppl) {
    double *v = ud;
    if (chunk >= 1 && chunk <= 8)
        v[chunk - 1] = ppl;
}

static void test_perplexity_matches_llama_cpp(void **state) {
    (void)state;
    char model[512], story[512];
    shared_path("models/stories260K.gguf", model, sizeof model);
    shared_path("models/story.txt", story, sizeof story);
    if (!have_file(model) || !have_file(story)) {
        print_message("skipped: %s or %s is absent\n", model, story);
        skip();
    }
    FILE *f = fopen(story, "rb");
    assert_non_null(f);
    static char text[1 << 20];
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    const double want[] = {3.7958, 4.4937, 4.5270, 4.3920, 4.4724};
    for (int kv = 0; kv < 2; kv++) {
        numalm_session *s = open_session(model, NUMALM_PLACE_SHARD, NUMALM_IO_AUTO, 0,
                                         kv ? NUMALM_KV_F32 : NUMALM_KV_F16);
        numalm_ppl_result r;
        double got[8] = {0};
        /* The model's context is 2048; a chunk of 128 fits. The F16 cache's
         * run also reports the running values after each chunk. */
        if (numalm_perplexity(s, text, len, 128, kv ? NULL : record_chunk, got, &r) < 0)
            fail_msg("perplexity: %s", numalm_last_error(s));
        assert_int_equal(r.n_chunks, 5);
        assert_int_equal(r.n_scored, 5 * 63);
        if (fabs(r.ppl - want[4]) / want[4] > 0.001)
            fail_msg("kv %s: PPL %.4f, llama.cpp gives %.4f", kv ? "f32" : "f16", r.ppl, want[4]);
        for (int i = 0; !kv && i < 5; i++)
            if (fabs(got[i] - want[i]) / want[i] > 0.001)
                fail_msg("chunk %d: running PPL %.4f, llama.cpp gives %.4f", i + 1, got[i],
                         want[i]);
        numalm_close(s);
    }
}

static int hex_digit(char c) {
    return c <= '9' ? c - '0' : (c | 32) - 'a' + 10;
}

/* Bytes of the longest common prefix of text and the hex-encoded bytes. */
static size_t hex_prefix(const char *text, const char *hex) {
    size_t i = 0;
    for (; hex[2 * i] && hex[2 * i + 1] && text[i]; i++)
        if ((unsigned char)text[i] != hex_digit(hex[2 * i]) * 16 + hex_digit(hex[2 * i + 1]))
            break;
    return i;
}

/* The K-quant files llama-quantize made (Q4_K_M: Q4_K + Q6_K; Q5_K_M:
 * Q5_K + Q6_K) against llama.cpp's perplexity within 0.5 % (the README's
 * tolerance: llama.cpp quantizes activations differently, and random
 * models have small logit margins, so greedy text may part after a few
 * tokens; how far it agrees is printed). */
static void test_kquant_files_match_llama_cpp(void **state) {
    (void)state;
    static const char *const files[] = {"tiny-kq-q4_k_m.gguf", "tiny-kq-q5_k_m.gguf"};
    char ref[512], story[512];
    shared_path("models/reference.jsonl", ref, sizeof ref);
    shared_path("models/story.txt", story, sizeof story);
    FILE *f = fopen(story, "rb");
    static char text[1 << 20];
    size_t len = f ? fread(text, 1, sizeof text - 1, f) : 0;
    if (f)
        fclose(f);
    int checked = 0;
    for (int k = 0; k < 2; k++) {
        char model[512], key[128];
        snprintf(key, sizeof key, "models/%s", files[k]);
        shared_path(key, model, sizeof model);
        FILE *rf = fopen(ref, "r");
        if (!have_file(model) || !rf || !len) {
            print_message("skipped: %s, %s or %s is absent\n", model, ref, story);
            if (rf)
                fclose(rf);
            continue;
        }
        numalm_session *s =
            open_session(model, NUMALM_PLACE_SHARD, NUMALM_IO_AUTO, 0, NUMALM_KV_F16);
        snprintf(key, sizeof key, "\"model\": \"%s\"", files[k]);
        static char line[65536];
        while (fgets(line, sizeof line, rf)) {
            if (!strstr(line, key))
                continue;
            const char *ppl = strstr(line, "\"ppl\": ");
            if (ppl) {
                numalm_ppl_result r;
                if (numalm_perplexity(s, text, len, 128, NULL, NULL, &r) < 0)
                    fail_msg("%s: perplexity: %s", files[k], numalm_last_error(s));
                double want = atof(ppl + 7);
                print_message("%s: PPL %.4f, llama.cpp %.4f (%+.3f %%)\n", files[k], r.ppl, want,
                              (r.ppl / want - 1) * 100);
                if (fabs(r.ppl - want) / want > 0.005)
                    fail_msg("%s: PPL %.4f, llama.cpp gives %.4f", files[k], r.ppl, want);
                checked++;
                continue;
            }
            char *prompt = json_string(line, "prompt"), *hex = json_string(line, "expected_hex");
            const char *np = strstr(line, "\"n_predict\": ");
            assert_true(prompt && hex && np);
            text_buf out = {0};
            numalm_gen_params p;
            numalm_gen_params_init(&p);
            p.n_predict = atoi(np + 13);
            numalm_gen_stats st;
            generate(s, &p, prompt, &out, NULL, &st);
            print_message("%s '%s': greedy text agrees with llama.cpp for %zu of %zu bytes\n",
                          files[k], prompt, out.p ? hex_prefix(out.p, hex) : 0, strlen(hex) / 2);
            free(prompt), free(hex), free(out.p);
        }
        fclose(rf);
        numalm_close(s);
    }
    if (!checked)
        skip();
}

static void test_tokens_identical_everywhere(void **state) {
    (void)state;
    char model[512];
    shared_path("models/stories260K.gguf", model, sizeof model);
    if (!have_file(model)) {
        print_message("skipped: %s is absent\n", model);
        skip();
    }
    const numalm_placement pls[] = {NUMALM_PLACE_SHARD, NUMALM_PLACE_REPLICATE,
                                    NUMALM_PLACE_INTERLEAVE, NUMALM_PLACE_NODE};
    const numalm_io ios[] = {NUMALM_IO_DIO, NUMALM_IO_BUFFERED, NUMALM_IO_MMAP, NUMALM_IO_AUTO};
    int32_t *base = NULL;
    int n_base = 0, n_cases = 0;
    for (int p = 0; p < 4; p++)
        for (int i = 0; i < 4; i++)
            for (int t = 1; t <= 2; t++) {
                if (!nm_test_case_runs(3, (const int[]){4, 4, 2}, (const int[]){p, i, t - 1}))
                    continue;
                n_cases++;
                numalm_session *s = open_session(model, pls[p], ios[i], t, NUMALM_KV_F16);
                int32_t *toks = NULL;
                int n = greedy(s, "Once upon a time", 40, NULL, &toks);
                if (!base) {
                    base = toks, n_base = n;
                } else {
                    if (n != n_base || memcmp(toks, base, (size_t)n * sizeof *toks))
                        fail_msg("placement %s, io %s, %d threads: tokens differ",
                                 numalm_placement_name(pls[p]), numalm_io_name(ios[i]), t);
                    free(toks);
                }
                numalm_close(s);
            }
    assert_int_equal(n_base, 5 + 40);
    print_message("%d of 32 placement x io x thread cases: the same tokens\n", n_cases);
    free(base);
}

static char g_tmpdir[256];

static const char *make_tiny(uint32_t type, char *path, size_t cap) {
    if (!g_tmpdir[0]) {
        snprintf(g_tmpdir, sizeof g_tmpdir, "/tmp/test_forward.XXXXXX");
        assert_non_null(mkdtemp(g_tmpdir));
    }
    snprintf(path, cap, "%s/tiny-%s.gguf", g_tmpdir, nm_type_name(type));
    if (have_file(path))
        return path;
    nm_mkmodel_opts o = {.type = type, .seed = 7};
    nm_error err = {{0}};
    assert_int_equal(nm_mkmodel_preset("tiny", &o.shape, &err), 0);
    if (nm_mkmodel_write(path, &o, NULL, &err) < 0)
        fail_msg("mkmodel: %s", err.msg);
    return path;
}

/* A batched prompt pass, then single-token steps, against the reference. */
static void test_quantized_vs_f64_reference(void **state) {
    (void)state;
    /* Tolerances: Q8_0/Q4_0 and K-quant kernels quantize activations to
     * 8 bits (as llama.cpp does), the KV cache is F16. */
    const struct {
        uint32_t type;
        numalm_kv_type kv;
        double tol;
    } cases[] = {
        {NM_TYPE_F32, NUMALM_KV_F32, 1e-5},
        {NM_TYPE_F16, NUMALM_KV_F16, 2e-3},
        {NM_TYPE_Q8_0, NUMALM_KV_F16, 0.03},
        {NM_TYPE_Q4_0, NUMALM_KV_F16, 0.03},
        {NM_TYPE_BF16, NUMALM_KV_F32, 1.5e-2},
        /* K-quants: activations quantized per 256 values (Q8_K), so a
         * little coarser than per 32; measured 1.4e-2 .. 1.6e-2 */
        {NM_TYPE_Q2_K, NUMALM_KV_F16, 0.03},
        {NM_TYPE_Q3_K, NUMALM_KV_F16, 0.03},
        {NM_TYPE_Q4_K, NUMALM_KV_F16, 0.03},
        {NM_TYPE_Q5_K, NUMALM_KV_F16, 0.03},
        {NM_TYPE_Q6_K, NUMALM_KV_F16, 0.03},
        /* the other legacy types: Q8 activations per 32, measured 1.05e-2
         * (IQ4_NL) .. 1.18e-2 (Q4_1); IQ4_XS takes Q8_K, 1.55e-2 */
        {NM_TYPE_Q4_1, NUMALM_KV_F16, 0.03},
        {NM_TYPE_Q5_0, NUMALM_KV_F16, 0.03},
        {NM_TYPE_Q5_1, NUMALM_KV_F16, 0.03},
        {NM_TYPE_IQ4_NL, NUMALM_KV_F16, 0.03},
        {NM_TYPE_IQ4_XS, NUMALM_KV_F16, 0.03},
    };
    const int32_t toks[] = {1, 300, 301, 512, 777, 1000, 42, 2000, 1234, 5};
    const int n = 10, n_batch = 6;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char path[512];
        make_tiny(cases[c].type, path, sizeof path);
        for (int threads = 1; threads <= 2; threads++) {
            if (!nm_test_case_runs(2, (const int[]){sizeof cases / sizeof cases[0], 2},
                                   (const int[]){(int)c, threads - 1}))
                continue;
            numalm_session *s =
                open_session(path, NUMALM_PLACE_SHARD, NUMALM_IO_AUTO, threads, cases[c].kv);
            ref_model r;
            ref_load(&r, s->gguf, n);
            int nv = (int)r.hp.n_vocab;
            assert_int_equal(numalm_n_vocab(s), nv);
            float *got = malloc((size_t)n * nv * sizeof(float));
            double *want = malloc((size_t)nv * sizeof(double));
            assert_int_equal(numalm_eval(s, toks, n_batch, 0, 0, got), 0);
            for (int i = n_batch; i < n; i++)
                assert_int_equal(numalm_eval(s, toks + i, 1, i, 0, got + (size_t)i * nv), 0);
            double worst = 0;
            for (int i = 0; i < n; i++) {
                ref_step(&r, toks[i], i, want);
                double e = rel_rms(got + (size_t)i * nv, want, nv);
                worst = e > worst ? e : worst;
            }
            print_message("%s weights, %s KV, %d threads: worst relative RMS logit error %.2e\n",
                          nm_type_name(cases[c].type), numalm_kv_type_name(cases[c].kv), threads,
                          worst);
            if (!(worst < cases[c].tol))
                fail_msg("%s: logits differ from the F64 reference by %.3e (> %.1e)",
                         nm_type_name(cases[c].type), worst, cases[c].tol);
            free(got), free(want);
            ref_free(&r);
            numalm_close(s);
        }
    }
}

/* The read probe reads exactly the weight bytes a decode step reads (every
 * matrix, the tied embedding when output.weight is absent), each once,
 * whatever the thread count; generation with the probe pairs every decode
 * pass with a read pass and still produces the same tokens. */
static void test_read_probe(void **state) {
    (void)state;
    char path[512];
    make_tiny(NM_TYPE_F16, path, sizeof path);
    int32_t *plain_toks = NULL;
    for (int threads = 1; threads <= 2; threads++) {
        numalm_session *s =
            open_session(path, NUMALM_PLACE_SHARD, NUMALM_IO_AUTO, threads, NUMALM_KV_F16);
        const nm_gguf *g = s->gguf;
        uint64_t want_sum = 0, want_bytes = 0;
        bool tied = true;
        for (uint64_t i = 0; i < g->n_tensors; i++)
            tied = tied && strcmp(g->tensors[i].name, "output.weight") != 0;
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        for (uint64_t i = 0; i < g->n_tensors; i++) {
            const nm_gguf_tensor *t = &g->tensors[i];
            bool embd = !strcmp(t->name, "token_embd.weight");
            if (t->n_dims < 2 || (embd && !tied))
                continue;
            uint8_t *b = malloc(t->nbytes);
            assert_non_null(b);
            assert_int_equal(fseek(f, (long)t->file_offset, SEEK_SET), 0);
            assert_int_equal(fread(b, 1, t->nbytes, f), t->nbytes);
            want_sum += nm_sum_words(b, t->nbytes);
            want_bytes += t->nbytes;
            free(b);
        }
        fclose(f);
        uint64_t sum = 0, bytes = 0;
        assert_int_equal(nm_model_read_pass(s->model, &sum, &bytes), 0);
        assert_int_equal(bytes, want_bytes);
        assert_int_equal(sum, want_sum);

        numalm_gen_params p;
        numalm_gen_params_init(&p);
        p.n_predict = 12;
        p.read_probe = true;
        numalm_gen_stats st;
        int32_t *toks = NULL;
        int n_tok = generate(s, &p, "the cat", NULL, &toks, &st);
        assert_int_equal(st.probe_pairs, st.n_decode_evals);
        assert_true(st.probe_pairs > 0);
        assert_int_equal(st.probe_read_bytes, want_bytes);
        assert_int_equal(st.probe_checksum, want_sum);
        assert_true(st.probe_of_read > 0 && st.probe_of_read_q25 <= st.probe_of_read &&
                    st.probe_of_read <= st.probe_of_read_q75);
        if (!plain_toks) { /* the same tokens as without the probe */
            int n_plain = greedy(s, "the cat", 12, NULL, &plain_toks);
            assert_int_equal(n_plain, n_tok);
        }
        assert_memory_equal(plain_toks, toks, (size_t)n_tok * sizeof *toks);
        free(toks);
        numalm_close(s);
    }
    free(plain_toks);
}

/* Generation stops at the context instead of writing past the cache. */
static void test_context_limit(void **state) {
    (void)state;
    char path[512];
    make_tiny(NM_TYPE_Q8_0, path, sizeof path);
    numalm_options o = session_opts(path, NUMALM_PLACE_SHARD, NUMALM_IO_BUFFERED, 0, NUMALM_KV_F16);
    o.n_ctx = 12;
    numalm_session *s = nm_test_open(&o);
    numalm_gen_params p;
    numalm_gen_params_init(&p);
    p.n_predict = 50;
    numalm_gen_stats st;
    int nt = generate(s, &p, "the cat", NULL, NULL, &st);
    if (st.stop != NUMALM_STOP_EOS) {
        assert_int_equal(st.stop, NUMALM_STOP_CONTEXT);
        assert_int_equal(nt, 12);
    }
    const int32_t one = 5;
    assert_int_equal(numalm_eval(s, &one, 1, 12, 0, NULL), -1);
    assert_non_null(strstr(numalm_last_error(s), "context"));
    numalm_close(s);
}

int main(void) {
    nm_error err = {{0}};
    nm_topo *t = nm_topo_load(NULL, &err);
    if (!t) {
        fprintf(stderr, "test_forward: topology: %s\n", err.msg);
        return 1;
    }
    g_node0 = t->nodes[0].os_index; /* for --placement node */
    nm_topo_free(t);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_matches_llama_cpp),
        cmocka_unit_test(test_perplexity_matches_llama_cpp),
        cmocka_unit_test(test_kquant_files_match_llama_cpp),
        cmocka_unit_test(test_shared_models_match_llama_cpp),
        cmocka_unit_test(test_tokens_identical_everywhere),
        cmocka_unit_test(test_quantized_vs_f64_reference),
        cmocka_unit_test(test_context_limit),
        cmocka_unit_test(test_read_probe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
