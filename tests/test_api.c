/* The public interface (include/numalm.h) as a program outside the
 * repository sees it: errors in the caller's buffer and in the session,
 * staged opens, tokens both ways, evaluation against generation, batches
 * of several sequences against each one alone, a text callback that
 * stops, and the log and progress callbacks. Only numalm.h
 * is used here, besides the test helpers that write a model. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "numalm.h"

#include "gguf/ggml_types.h"
#include "test_session.h"
#include "test_util.h"

#include <cpuid.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_dir[512], g_model[600];

static numalm_options tiny_opts(void) {
    numalm_options o;
    numalm_options_init(&o);
    o.model_path = g_model;
    o.n_threads = 2;
    return o;
}

static void test_open_errors(void **state) {
    (void)state;
    numalm_options o;
    numalm_options_init(&o);
    char err[256] = "untouched";
    assert_null(numalm_open(&o, err, sizeof err));
    assert_non_null(strstr(err, "no model"));

    o.model_path = "/nonexistent-numalm/m.gguf";
    assert_null(numalm_open(&o, err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent-numalm/m.gguf"));
    /* a short buffer gets a cut, terminated message */
    char small[8];
    assert_null(numalm_open(&o, small, sizeof small));
    assert_int_equal(strlen(small), sizeof small - 1);
    assert_null(numalm_open(&o, NULL, 0));

    o = tiny_opts();
    o.topology_xml = "/nonexistent-numalm/topo.xml";
    o.stage = NUMALM_STAGE_PLAN;
    assert_null(numalm_open(&o, err, sizeof err));
    assert_non_null(strstr(err, "topo.xml"));

    /* an XML topology is another machine: plan for it, never load */
    char xml[1024];
    snprintf(xml, sizeof xml, "%.900s/topologies/16em64t-4s2c2t.xml", nm_test_shared_dir());
    if (access(xml, R_OK) != 0) {
        print_message("skipped the XML part: %s is absent\n", xml);
        return;
    }
    o.topology_xml = xml;
    o.n_threads = 0; /* one worker per core of that machine */
    numalm_session *s = numalm_open(&o, err, sizeof err);
    if (!s)
        fail_msg("plan on %s: %s", xml, err);
    assert_int_equal(numalm_n_threads(s), 8); /* 4 sockets x 2 cores */
    o.stage = NUMALM_STAGE_WEIGHTS;
    assert_int_equal(numalm_advance(s, &o), -1);
    assert_non_null(strstr(numalm_last_error(s), "another machine"));
    assert_int_equal(numalm_session_stage(s), NUMALM_STAGE_PLAN);
    numalm_close(s);
}

/* PLAN, then WEIGHTS, then MODEL: what each stage offers, and calls that
 * need a later stage fail with a message instead of crashing. */
static void test_staged_open(void **state) {
    (void)state;
    numalm_options o = tiny_opts();
    o.stage = NUMALM_STAGE_PLAN;
    numalm_session *s = nm_test_open(&o);
    assert_int_equal(numalm_session_stage(s), NUMALM_STAGE_PLAN);
    assert_string_equal(numalm_model_path(s), g_model);
    assert_true(numalm_n_ctx_train(s) > 0);
    assert_true(numalm_n_nodes(s) >= 1);
    assert_true(numalm_n_threads(s) >= 1);
    assert_int_equal(numalm_placement_used(s), NUMALM_PLACE_SHARD);
    assert_int_equal(numalm_n_vocab(s), 0);
    int32_t tok[4];
    assert_int_equal(numalm_tokenize(s, "a", 1, true, tok, 4), -1);
    assert_non_null(strstr(numalm_last_error(s), "stage MODEL"));
    assert_int_equal(numalm_eval(s, tok, 1, 0, 1, NULL), -1);

    o.stage = NUMALM_STAGE_WEIGHTS;
    assert_int_equal(numalm_advance(s, &o), 0);
    assert_int_equal(numalm_session_stage(s), NUMALM_STAGE_WEIGHTS);
    assert_int_equal(numalm_io_used(s), NUMALM_IO_AUTO);

    o.stage = NUMALM_STAGE_MODEL;
    o.n_ctx = 64;
    o.kv_type = NUMALM_KV_F32;
    assert_int_equal(numalm_advance(s, &o), 0);
    assert_int_equal(numalm_n_ctx(s), 64);
    assert_int_equal(numalm_kv_type_used(s), NUMALM_KV_F32);
    assert_true(numalm_n_vocab(s) > 0);
    assert_true(numalm_weight_bytes_per_token(s) > 0);
    assert_true(numalm_load_seconds(s) > 0);
    /* advancing to a stage already reached changes nothing */
    assert_int_equal(numalm_advance(s, &o), 0);
    numalm_close(s);
    numalm_close(NULL);
}

static void test_tokens_both_ways(void **state) {
    (void)state;
    numalm_options o = tiny_opts();
    numalm_session *s = nm_test_open(&o);
    const char *text = "the cat sat on the mat";
    int n = numalm_tokenize(s, text, strlen(text), true, NULL, 0); /* count only */
    assert_true(n > 1);
    int32_t *toks = malloc((size_t)n * sizeof *toks);
    assert_int_equal(numalm_tokenize(s, text, strlen(text), true, toks, n), n);
    assert_int_equal(toks[0], numalm_token_bos(s));
    /* a short buffer gets the first tokens and the full count */
    int32_t two[2];
    assert_int_equal(numalm_tokenize(s, text, strlen(text), true, two, 2), n);
    assert_memory_equal(two, toks, sizeof two);

    char buf[256];
    assert_int_equal(numalm_detokenize(s, toks, n, buf, sizeof buf), (int64_t)strlen(text));
    assert_string_equal(buf, text);
    char cut[5];
    assert_int_equal(numalm_detokenize(s, toks, n, cut, sizeof cut), (int64_t)strlen(text));
    assert_string_equal(cut, "the ");
    free(toks);
    numalm_close(s);
}

typedef struct collected {
    char text[4096];
    size_t len;
    int calls, stop_after;
} collected;

static int collect(void *user, const char *text, size_t len) {
    collected *c = user;
    if (c->len + len < sizeof c->text) {
        memcpy(c->text + c->len, text, len);
        c->len += len;
        c->text[c->len] = 0;
    }
    return ++c->calls == c->stop_after;
}

static int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best])
            best = i;
    return best;
}

/* Greedy generation picks, at each step, the best of the logits that eval
 * gives for the same tokens; its token copy and text agree. */
static void test_generate_matches_eval(void **state) {
    (void)state;
    numalm_options o = tiny_opts();
    numalm_session *s = nm_test_open(&o);
    int32_t toks[64];
    numalm_gen_params p;
    numalm_gen_params_init(&p);
    p.n_predict = 8;
    p.echo = true;
    p.tokens = toks;
    p.max_tokens = 64;
    numalm_gen_stats st;
    collected c = {.stop_after = -1};
    assert_int_equal(numalm_generate(s, "the cat", &p, collect, &c, &st), 0);
    assert_int_equal(st.n_tokens, st.n_prompt + st.n_decode);
    assert_true(st.n_decode >= 1);
    char text[4096];
    numalm_detokenize(s, toks, st.n_tokens, text, sizeof text);
    assert_string_equal(c.text, text);

    int nv = numalm_n_vocab(s);
    float *logits = malloc((size_t)st.n_tokens * nv * sizeof(float));
    assert_non_null(logits);
    assert_int_equal(numalm_eval(s, toks, st.n_tokens, 0, 0, logits), 0);
    for (int i = st.n_prompt - 1; i < st.n_tokens - 1; i++)
        assert_int_equal(argmax(logits + (size_t)i * nv, nv), toks[i + 1]);
    free(logits);

    /* the callback stops it: no more text after the third piece */
    collected c3 = {.stop_after = 3};
    p.echo = false;
    p.tokens = NULL;
    assert_int_equal(numalm_generate(s, "the cat", &p, collect, &c3, &st), 0);
    assert_int_equal(c3.calls, 3);
    assert_int_equal(st.stop, NUMALM_STOP_CALLER);
    assert_true(st.n_decode <= 3 + 1);
    numalm_close(s);
}

/* numalm_eval_batch: three sequences' prompts in one pass, then one token
 * each, give bit for bit the logits each sequence gets alone through
 * numalm_eval. Bad batches (a sequence out of range, a gap after a
 * sequence's cache, positions out of order, too many tokens) fail with the
 * reason and leave every cache as it was. */
static void test_eval_batch(void **state) {
    (void)state;
    numalm_options o = tiny_opts();
    o.n_seq = 3;
    o.n_batch = 16;
    numalm_session *s = nm_test_open(&o);
    assert_int_equal(numalm_n_seq(s), 3);
    assert_int_equal(numalm_n_batch(s), 16);
    const int nv = numalm_n_vocab(s), len[3] = {4, 3, 5};
    int32_t tok[3][6];
    for (int q = 0; q < 3; q++)
        for (int i = 0; i <= len[q]; i++)
            tok[q][i] = (int32_t)((7 + 13 * q + 5 * i) % nv);
    /* alone: the prompt, then the next token */
    float *want = malloc(6 * (size_t)nv * sizeof(float));
    float *got = malloc(6 * (size_t)nv * sizeof(float));
    assert_non_null(want);
    assert_non_null(got);
    for (int q = 0; q < 3; q++) {
        assert_int_equal(numalm_eval(s, tok[q], len[q], 0, len[q] - 1, want + 2 * q * nv), 0);
        assert_int_equal(numalm_eval(s, &tok[q][len[q]], 1, len[q], 0, want + (2 * q + 1) * nv), 0);
    }
    /* a gap after sequence 0's cache (it holds len[2] + 1 positions now) */
    assert_int_equal(numalm_eval(s, tok[0], 1, len[2] + 2, 0, got), -1);
    assert_non_null(strstr(numalm_last_error(s), "continues at position"));

    numalm_batch_token b[16];
    int n = 0;
    for (int q = 0; q < 3; q++)
        for (int i = 0; i < len[q]; i++)
            b[n++] = (numalm_batch_token){tok[q][i], q, i, i == len[q] - 1};
    assert_int_equal(numalm_eval_batch(s, b, n, got), 0);
    for (int q = 0; q < 3; q++)
        assert_memory_equal(got + q * nv, want + 2 * q * nv, (size_t)nv * sizeof(float));

    numalm_batch_token bad[2] = {{tok[0][0], 3, 0, true}};
    assert_int_equal(numalm_eval_batch(s, bad, 1, got), -1);
    assert_non_null(strstr(numalm_last_error(s), "sequence 3 of 3"));
    bad[0] = (numalm_batch_token){tok[1][0], 1, len[1] + 1, true};
    assert_int_equal(numalm_eval_batch(s, bad, 1, got), -1);
    assert_non_null(strstr(numalm_last_error(s), "its cache holds 3 positions"));
    bad[0] = (numalm_batch_token){tok[1][0], 1, len[1], false};
    bad[1] = (numalm_batch_token){tok[1][0], 1, len[1] + 2, true};
    assert_int_equal(numalm_eval_batch(s, bad, 2, got), -1);
    assert_non_null(strstr(numalm_last_error(s), "after"));
    assert_int_equal(numalm_eval_batch(s, b, 17, got), -1);
    assert_non_null(strstr(numalm_last_error(s), "at most 16"));

    /* the failed batches changed nothing: each sequence continues (in
     * another order: logits come in batch order) */
    for (int k = 0; k < 3; k++)
        b[k] = (numalm_batch_token){tok[2 - k][len[2 - k]], 2 - k, len[2 - k], true};
    assert_int_equal(numalm_eval_batch(s, b, 3, got), 0);
    for (int k = 0; k < 3; k++)
        assert_memory_equal(got + k * nv, want + (2 * (2 - k) + 1) * nv,
                            (size_t)nv * sizeof(float));
    free(want);
    free(got);
    numalm_close(s);
}

typedef struct logged {
    int n_warn, n_info, n_other;
    char last_warn[1024], last_info[1024];
} logged;

static void on_log(void *user, numalm_log_level level, const char *msg) {
    logged *l = user;
    if (level == NUMALM_LOG_WARN)
        snprintf(l->last_warn, sizeof l->last_warn, "%s", msg), l->n_warn++;
    else if (level == NUMALM_LOG_INFO)
        snprintf(l->last_info, sizeof l->last_info, "%s", msg), l->n_info++;
    else
        l->n_other++;
}

typedef struct progressed {
    int calls, finished;
    uint64_t done, total;
} progressed;

static void on_progress(void *user, const char *what, uint64_t done, uint64_t total, double seconds,
                        bool finished) {
    progressed *p = user;
    assert_string_equal(what, "loading");
    assert_true(seconds >= 0);
    p->calls++;
    p->finished += finished;
    p->done = done;
    p->total = total;
}

/* mmap with placement shard keeps one copy of the file: a fallback, which
 * reaches the log callback (and only when its level is wanted); the load
 * reports its progress and finishes at the total. --thp collapse says what
 * it did at level INFO. */
static void test_log_and_progress(void **state) {
    (void)state;
    numalm_options o = tiny_opts();
    o.io = NUMALM_IO_MMAP;
    o.stage = NUMALM_STAGE_WEIGHTS;
    o.thp = NUMALM_THP_OFF;
    logged l = {0};
    progressed p = {0};
    o.log = on_log;
    o.log_user = &l;
    o.progress = on_progress;
    o.progress_user = &p;
    numalm_session *s = nm_test_open(&o);
    assert_true(l.n_warn >= 1);
    assert_non_null(strstr(l.last_warn, "load fallback: mmap keeps one copy"));
    assert_int_equal(p.finished, 1);
    assert_true(p.total > 0);
    assert_int_equal(p.done, p.total);
    numalm_close(s);

    logged quiet = {0};
    o.log_user = &quiet;
    o.log_level = NUMALM_LOG_ERROR;
    o.progress = NULL;
    s = nm_test_open(&o);
    assert_int_equal(quiet.n_warn + quiet.n_info + quiet.n_other, 0);
    numalm_close(s);

    logged info = {0};
    o.log_user = &info;
    o.log_level = NUMALM_LOG_INFO;
    o.io = NUMALM_IO_BUFFERED;
    o.thp = NUMALM_THP_COLLAPSE;
    s = nm_test_open(&o);
    assert_int_equal(info.n_info, 1);
    assert_non_null(strstr(info.last_info, "collapsed into huge pages after the fill"));
    numalm_close(s);
}

/* simd_max caps the kernel level (process-wide, from stage MODEL on); the
 * scalar kernels define the results, so greedy tokens agree. */
static void test_simd_cap(void **state) {
    (void)state;
    numalm_options o = tiny_opts();
    int32_t best[32], scalar[32];
    numalm_gen_params p;
    numalm_gen_params_init(&p);
    p.n_predict = 6;
    p.max_tokens = 32;
    numalm_gen_stats st[2];
    for (int k = 0; k < 2; k++) {
        o.simd_max = k ? NUMALM_SIMD_SCALAR : NUMALM_SIMD_AMX;
        numalm_session *s = nm_test_open(&o);
        if (k)
            assert_int_equal(numalm_simd_level(), NUMALM_SIMD_SCALAR);
        p.tokens = k ? scalar : best;
        assert_int_equal(numalm_generate(s, "the cat", &p, NULL, NULL, &st[k]), 0);
        numalm_close(s);
    }
    assert_int_equal(st[0].n_tokens, st[1].n_tokens);
    assert_memory_equal(best, scalar, (size_t)st[0].n_tokens * sizeof best[0]);
    o.simd_max = NUMALM_SIMD_AMX; /* the CPU's best again, for what follows */
    numalm_close(nm_test_open(&o));
}

static void test_names(void **state) {
    (void)state;
    assert_string_equal(numalm_placement_name(NUMALM_PLACE_INTERLEAVE), "interleave");
    assert_string_equal(numalm_io_name(NUMALM_IO_DIO), "dio");
    assert_string_equal(numalm_simd_name(NUMALM_SIMD_AVX2), "avx2");
    assert_string_equal(numalm_kv_type_name(NUMALM_KV_F16), "f16");
    assert_true(numalm_simd_level() <= NUMALM_SIMD_AMX);
    /* every level's name back to the level; anything else refused */
    for (int l = NUMALM_SIMD_SCALAR; l <= NUMALM_SIMD_AMX; l++) {
        numalm_simd got = (numalm_simd)-1;
        assert_int_equal(numalm_simd_from_name(numalm_simd_name((numalm_simd)l), &got), 0);
        assert_int_equal(got, l);
    }
    static const char *const bad[] = {"", "AVX2", "avx", "avx512 ", "avx5120", "sse", "unknown"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        numalm_simd got = NUMALM_SIMD_AVX2;
        assert_int_equal(numalm_simd_from_name(bad[i], &got), -1);
        assert_int_equal(got, NUMALM_SIMD_AVX2);
    }
    numalm_simd got = NUMALM_SIMD_AVX2;
    assert_int_equal(numalm_simd_from_name(NULL, &got), -1);
    assert_int_equal(got, NUMALM_SIMD_AVX2);
    /* the build: a MAJOR.MINOR.PATCH version, a commit, the scalar kernels */
    const numalm_build *b = numalm_build_info();
    unsigned major, minor, patch;
    assert_int_equal(sscanf(numalm_version(), "%u.%u.%u", &major, &minor, &patch), 3);
    assert_string_equal(b->version, numalm_version());
    assert_true(strlen(b->commit) >= 7);
    assert_non_null(strstr(b->simd, "scalar"));
    assert_true(b->compiler[0] && b->build_type[0]);
    assert_ptr_equal(numalm_build_info(), b);
}

/* A signal stack smaller than the AMX tile state: Linux refuses the
 * process the tile data (ENOSPC), and a session says so in its log and
 * runs level avx512. In a fresh process, since the permission is asked
 * once per process: this program again (main: --amx-refused MODEL). */
static void on_amx_log(void *user, numalm_log_level level, const char *msg) {
    if (level == NUMALM_LOG_WARN && strstr(msg, "refused this process their state") &&
        strstr(msg, strerror(ENOSPC)))
        snprintf(user, 1024, "%s", msg);
}

static int amx_refused_child(const char *model) {
    static char stack[4096]; /* the tile data alone is 8 KiB */
    stack_t ss = {.ss_sp = stack, .ss_size = sizeof stack};
    if (sigaltstack(&ss, NULL) != 0)
        return 2;
    numalm_options o = tiny_opts();
    o.model_path = model;
    char warning[1024] = "";
    o.log = on_amx_log;
    o.log_user = warning;
    char err[512];
    numalm_session *s = numalm_open(&o, err, sizeof err);
    if (!s) {
        fprintf(stderr, "amx_refused_child: %s\n", err);
        return 3;
    }
    bool ok = warning[0] && numalm_simd_level() == NUMALM_SIMD_AVX512;
    if (!ok)
        fprintf(stderr, "amx_refused_child: level %s, AMX warning: \"%s\"\n",
                numalm_simd_name(numalm_simd_level()), warning);
    numalm_close(s);
    return ok ? 0 : 1;
}

static void test_amx_refused(void **state) {
    (void)state;
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 24)) || !(d & (1u << 25)) ||
        !__builtin_cpu_supports("avx512vnni")) {
        printf("test_amx_refused: skipped: no AMX int8 and AVX-512 VNNI on this CPU\n");
        skip();
    }
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl("/proc/self/exe", "test_api", "--amx-refused", g_model, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--amx-refused"))
        return amx_refused_child(argv[2]);
    if (nm_test_mkdtemp(g_dir, sizeof g_dir, "test_api")) {
        printf("test_api: cannot make a directory under /tmp\n");
        return 1;
    }
    snprintf(g_model, sizeof g_model, "%s/tiny-q8_0.gguf", g_dir);
    nm_error err;
    if (nm_test_write_tiny(g_model, NM_TYPE_Q8_0, 5, NULL, &err)) {
        printf("test_api: mkmodel %s: %s\n", g_model, err.msg);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_errors),      cmocka_unit_test(test_staged_open),
        cmocka_unit_test(test_tokens_both_ways), cmocka_unit_test(test_generate_matches_eval),
        cmocka_unit_test(test_eval_batch),       cmocka_unit_test(test_log_and_progress),
        cmocka_unit_test(test_simd_cap),         cmocka_unit_test(test_names),
        cmocka_unit_test(test_amx_refused),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    unlink(g_model);
    rmdir(g_dir);
    return rc;
}
