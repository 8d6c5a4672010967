/* The SentencePiece tokenizer against llama.cpp's own test vectors (the
 * 32,000-piece LLaMA vocab), stories260K's vocab, and small hand-built vocabs
 * that pin down the merge rules and the refusal of bad metadata. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "gguf/gguf.h"
#include "gguf/gguf_write.h"
#include "runtime/tokenizer.h"
#include "test_vocab.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- helpers ----------------------------------------------------------- */

static nm_tokenizer *open_vocab(const char *rel, nm_gguf **g) {
    *g = nm_test_open_gguf(rel);
    return nm_test_tokenizer(*g);
}

/* ---- llama.cpp's vocab test vectors -------------------------------------- */

#define VOCAB "models/vocab/ggml-vocab-llama-spm.gguf"

static void test_llama_spm_vectors(void **state) {
    (void)state;
    if (!nm_test_have(VOCAB)) {
        fprintf(stderr, "skipped: %s/%s is absent\n", nm_test_shared_dir(), VOCAB);
        skip();
    }
    nm_test_vectors(VOCAB, 46);
}

/* A few KB of text through the big vocab: round trip, and the hash lookup
 * must find each produced piece again. */
static void test_llama_spm_long_text(void **state) {
    (void)state;
    if (!nm_test_have(VOCAB) || !nm_test_have("models/story.txt")) {
        fprintf(stderr, "skipped: the LLaMA vocab or story.txt is absent\n");
        skip();
    }
    nm_gguf *g;
    nm_tokenizer *t = open_vocab(VOCAB, &g);
    assert_int_equal(nm_tokenizer_n_vocab(t), 32000);
    char path[4096];
    size_t len;
    snprintf(path, sizeof path, "%s/models/story.txt", nm_test_shared_dir());
    char *story = nm_test_read_file(path, &len);
    assert_non_null(story);
    size_t big_len = len * 4;
    char *big = malloc(big_len);
    for (int k = 0; k < 4; k++)
        memcpy(big + k * len, story, len);
    int32_t *ids;
    nm_error err = {{0}};
    int n = nm_tokenize(t, big, big_len, true, &ids, &err);
    assert_true(n > 100);
    assert_int_equal(ids[0], nm_tokenizer_bos(t));
    char *text = nm_test_detokenize(t, ids, n, NULL);
    assert_int_equal(strlen(text), big_len);
    assert_memory_equal(text, big, big_len);
    for (int i = 1; i < n; i++)
        assert_non_null(nm_token_piece(t, ids[i]));
    free(text);
    free(ids);
    free(big);
    free(story);
    nm_tokenizer_free(t);
    nm_gguf_close(g);
}

/* ---- stories260K -------------------------------------------------------- */

#define STORIES "models/stories260K.gguf"

static void test_stories_prompts(void **state) {
    (void)state;
    if (!nm_test_have(STORIES)) {
        fprintf(stderr, "skipped: %s/%s is absent\n", nm_test_shared_dir(), STORIES);
        skip();
    }
    nm_gguf *g;
    nm_tokenizer *t = open_vocab(STORIES, &g);
    assert_int_equal(nm_tokenizer_n_vocab(t), 512);
    assert_int_equal(nm_tokenizer_bos(t), 1);
    assert_int_equal(nm_tokenizer_eos(t), 2);
    assert_true(nm_tokenizer_add_bos(t)); /* absent key: llama's default */
    assert_string_equal(nm_token_piece(t, 403), "\xe2\x96\x81Once");
    assert_string_equal(nm_token_piece(t, 13), "<0x0A>");

    /* Worked out by hand from the vocab's merge scores: "▁Once", "▁upon",
     * "▁a", "▁time" are pieces; "▁dog" is not, and "▁do" (-141) beats "og"
     * (absent) so "g" stays alone. */
    static const struct {
        const char *text;
        int32_t ids[8];
        int n;
    } cases[] = {
        {"Once upon a time", {1, 403, 407, 261, 378}, 5},
        {"The little dog", {1, 291, 376, 400, 428}, 5},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int32_t *ids;
        nm_error err = {{0}};
        int n = nm_tokenize(t, cases[c].text, strlen(cases[c].text), true, &ids, &err);
        if (n != cases[c].n || memcmp(ids, cases[c].ids, (size_t)n * 4) != 0) {
            nm_test_print_ids("got", ids, n);
            fail_msg("'%s' tokenized differently", cases[c].text);
        }
        char *text = nm_test_detokenize(t, ids, n, NULL);
        assert_string_equal(text, cases[c].text);
        free(text);
        free(ids);
    }

    /* The greedy references: each "expected" text survives a round trip
     * with BOS in front (newlines and quotes go through byte tokens). */
    char path[4096];
    size_t len;
    snprintf(path, sizeof path, "%s/models/stories260K.greedy.jsonl", nm_test_shared_dir());
    char *jsonl = nm_test_read_file(path, &len);
    assert_non_null(jsonl);
    int checked = 0;
    for (char *p = jsonl; (p = strstr(p, "\"expected\": \"")) != NULL; checked++) {
        p += strlen("\"expected\": \"");
        char want[2048];
        size_t w = 0;
        for (; *p && *p != '"' && w < sizeof want - 1; p++) {
            if (*p == '\\') { /* the references use only \n and \" */
                p++;
                want[w++] = *p == 'n' ? '\n' : *p;
            } else {
                want[w++] = *p;
            }
        }
        want[w] = 0;
        int32_t *ids;
        nm_error err = {{0}};
        int n = nm_tokenize(t, want, w, true, &ids, &err);
        assert_true(n > 1);
        char *text = nm_test_detokenize(t, ids, n, NULL);
        assert_string_equal(text, want);
        free(text);
        free(ids);
    }
    assert_int_equal(checked, 4);
    free(jsonl);
    nm_tokenizer_free(t);
    nm_gguf_close(g);
}

/* ---- hand-built vocabs --------------------------------------------------- */

typedef struct vocab_spec {
    const char *model;
    const char *const *pieces;
    const float *scores;
    const int32_t *types;
    int n, n_scores, n_types;
    int64_t bos;                   /* < 0: key absent */
    int add_bos, add_space_prefix; /* < 0: key absent */
    bool float_types;              /* token_type stored with a wrong type */
} vocab_spec;

/* Writes the spec with the project's GGUF writer into a temp file and reads
 * it back with the reader, as a real file would be. */
static nm_gguf *build_gguf(const vocab_spec *v) {
    nm_error err = {{0}};
    nm_gguf_writer *w = nm_gguf_writer_new(0);
    assert_non_null(w);
    if (v->model)
        assert_int_equal(nm_gguf_w_str(w, "tokenizer.ggml.model", v->model, &err), 0);
    assert_int_equal(nm_gguf_w_str_arr(w, "tokenizer.ggml.tokens", v->pieces, (uint64_t)v->n, &err),
                     0);
    if (v->scores)
        assert_int_equal(nm_gguf_w_arr(w, "tokenizer.ggml.scores", NM_GGUF_FLOAT32, v->scores,
                                       (uint64_t)v->n_scores, &err),
                         0);
    if (v->types && !v->float_types)
        assert_int_equal(nm_gguf_w_arr(w, "tokenizer.ggml.token_type", NM_GGUF_INT32, v->types,
                                       (uint64_t)v->n_types, &err),
                         0);
    if (v->types && v->float_types)
        assert_int_equal(nm_gguf_w_arr(w, "tokenizer.ggml.token_type", NM_GGUF_FLOAT32, v->types,
                                       (uint64_t)v->n_types, &err),
                         0);
    if (v->bos >= 0)
        assert_int_equal(nm_gguf_w_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)v->bos, &err),
                         0);
    if (v->add_bos >= 0)
        assert_int_equal(nm_gguf_w_bool(w, "tokenizer.ggml.add_bos_token", v->add_bos, &err), 0);
    if (v->add_space_prefix >= 0)
        assert_int_equal(
            nm_gguf_w_bool(w, "tokenizer.ggml.add_space_prefix", v->add_space_prefix, &err), 0);
    FILE *f = tmpfile();
    assert_non_null(f);
    if (nm_gguf_w_begin_fd(w, fileno(f), "vocab.gguf", &err) < 0 || nm_gguf_w_finish(w, &err) < 0)
        fail_msg("writing the test vocab: %s", err.msg);
    nm_gguf_writer_free(w);
    struct stat st;
    assert_int_equal(fstat(fileno(f), &st), 0);
    rewind(f);
    nm_gguf *g = nm_gguf_read(f, (uint64_t)st.st_size, "vocab.gguf", &err);
    if (!g)
        fail_msg("reading the test vocab back: %s", err.msg);
    fclose(f);
    return g;
}

/* Specials, four byte tokens, single characters, then merges whose scores
 * decide the order, and one user-defined piece. */
static const char *const tiny_pieces[] = {
    "<unk>", "<s>", "</s>", "<0x61>", "<0xC3>", "<0xA9>", "<0x0A>",        "\xe2\x96\x81",
    "a",     "b",   "c",    "ab",     "bc",     "aa",     "\342\226\201a", "<tag>",
};
static const float tiny_scores[] = {0, 0, 0, 0, 0, 0, 0, -1, -2, -3, -4, -9, -5, -6, -7, 0};
static const int32_t tiny_types[] = {2, 3, 3, 6, 6, 6, 6, 1, 1, 1, 1, 1, 1, 1, 1, 4};
#define TINY_N 16

static vocab_spec tiny_spec(void) {
    return (vocab_spec){.model = "llama",
                        .pieces = tiny_pieces,
                        .scores = tiny_scores,
                        .types = tiny_types,
                        .n = TINY_N,
                        .n_scores = TINY_N,
                        .n_types = TINY_N,
                        .bos = -1,
                        .add_bos = -1,
                        .add_space_prefix = 0};
}

static void expect_ids(const nm_tokenizer *t, const char *text, bool bos, const int32_t *want,
                       int n_want) {
    int32_t *ids;
    nm_error err = {{0}};
    int n = nm_tokenize(t, text, strlen(text), bos, &ids, &err);
    if (n != n_want || (n > 0 && memcmp(ids, want, (size_t)n * sizeof *ids) != 0)) {
        nm_test_print_ids("want", want, n_want);
        nm_test_print_ids("got ", ids, n);
        fail_msg("'%s' tokenized wrongly", text);
    }
    free(ids);
}

static void test_merge_rules(void **state) {
    (void)state;
    vocab_spec v = tiny_spec();
    nm_gguf *g = build_gguf(&v);
    nm_error err = {{0}};
    nm_tokenizer *t = nm_tokenizer_load(g, &err);
    if (!t)
        fail_msg("%s", err.msg);
    /* "bc" (-5) is merged before "ab" (-9): a|bc, not ab|c. */
    expect_ids(t, "abc", false, (int32_t[]){8, 12}, 2);
    /* Equal candidates: the leftmost pair merges first. */
    expect_ids(t, "aaa", false, (int32_t[]){13, 8}, 2);
    /* Not in the vocab: spelled with byte tokens, one per UTF-8 byte. */
    expect_ids(t, "\303\251a", false, (int32_t[]){4, 5, 8}, 3);
    /* A user-defined piece is cut out before the merges. */
    expect_ids(t, "a<tag>b", false, (int32_t[]){8, 15, 9}, 3);
    /* BOS defaults to id 1 and is added on request. */
    expect_ids(t, "c", true, (int32_t[]){1, 10}, 2);
    /* Empty text: nothing, not even a space. */
    expect_ids(t, "", false, NULL, 0);
    /* No space prefix in this vocab (add_space_prefix = false); spaces still
     * become "▁", which merges with a following "a". */
    expect_ids(t, "c a", false, (int32_t[]){10, 14}, 2);

    /* Decoding: byte tokens give their byte, control tokens nothing, and no
     * space is dropped since this vocab adds none. */
    char buf[16];
    assert_int_equal(nm_token_to_text(t, 6, 8, buf, sizeof buf), 1);
    assert_int_equal(buf[0], '\n');
    assert_int_equal(nm_token_to_text(t, 1, -1, buf, sizeof buf), 0);
    assert_int_equal(nm_token_to_text(t, 2, 8, buf, sizeof buf), 0);
    assert_int_equal(nm_token_to_text(t, 0, 8, buf, sizeof buf), 0); /* <unk> */
    assert_int_equal(nm_token_to_text(t, 14, -1, buf, sizeof buf), 2);
    assert_memory_equal(buf, " a", 2);
    assert_int_equal(nm_token_to_text(t, 15, 8, buf, sizeof buf), 5);
    assert_memory_equal(buf, "<tag>", 5);
    assert_int_equal(nm_token_to_text(t, 14, -1, buf, 1), 1); /* cut at cap */
    assert_int_equal(nm_token_to_text(t, 99, -1, buf, sizeof buf), 0);
    assert_null(nm_token_piece(t, 16));
    nm_tokenizer_free(t);
    nm_gguf_close(g);
}

static void test_space_prefix_rule(void **state) {
    (void)state;
    vocab_spec v = tiny_spec();
    v.add_space_prefix = -1; /* absent: llama's default, true */
    v.add_bos = 0;
    nm_gguf *g = build_gguf(&v);
    nm_error err = {{0}};
    nm_tokenizer *t = nm_tokenizer_load(g, &err);
    if (!t)
        fail_msg("%s", err.msg);
    assert_false(nm_tokenizer_add_bos(t));
    expect_ids(t, "a", false, (int32_t[]){14}, 1);
    /* After a user-defined piece the text gets a prefix again. */
    expect_ids(t, "a<tag>a", false, (int32_t[]){14, 15, 14}, 3);
    char buf[16];
    /* The first piece, or the first after BOS, loses its leading space ... */
    assert_int_equal(nm_token_to_text(t, 14, -1, buf, sizeof buf), 1);
    assert_int_equal(buf[0], 'a');
    assert_int_equal(nm_token_to_text(t, 14, 1, buf, sizeof buf), 1);
    /* ... later ones keep it, and a lone "▁" first gives nothing. */
    assert_int_equal(nm_token_to_text(t, 14, 8, buf, sizeof buf), 2);
    assert_int_equal(nm_token_to_text(t, 7, -1, buf, sizeof buf), 0);
    assert_int_equal(nm_token_to_text(t, 7, 8, buf, sizeof buf), 1);
    nm_tokenizer_free(t);
    nm_gguf_close(g);
}

static void expect_refused(const vocab_spec *v, const char *needle) {
    nm_gguf *g = build_gguf(v);
    nm_error err = {{0}};
    nm_tokenizer *t = nm_tokenizer_load(g, &err);
    if (t)
        fail_msg("a vocab that should be refused (%s) was loaded", needle);
    if (!strstr(err.msg, needle))
        fail_msg("message '%s' does not mention '%s'", err.msg, needle);
    nm_gguf_close(g);
}

static void test_bad_metadata_refused(void **state) {
    (void)state;
    vocab_spec v = tiny_spec();
    v.model = "gpt2";
    expect_refused(&v, "key tokenizer.ggml.merges is missing");
    v.model = "t5";
    expect_refused(&v, "tokenizer 't5'");
    v.model = "wordsoup";
    expect_refused(&v, "'wordsoup' is unknown");
    v.model = NULL;
    expect_refused(&v, "tokenizer.ggml.model is missing");

    v = tiny_spec();
    v.n_scores = TINY_N - 1;
    expect_refused(&v, "tokenizer.ggml.scores has 15 entries");
    v = tiny_spec();
    v.n_types = TINY_N - 2;
    expect_refused(&v, "tokenizer.ggml.token_type has 14 entries");
    v = tiny_spec();
    v.float_types = true;
    expect_refused(&v, "tokenizer.ggml.token_type");
    v = tiny_spec();
    v.bos = TINY_N;
    expect_refused(&v, "tokenizer.ggml.bos_token_id = 16 is out of range");

    static const int32_t bad_type[] = {2, 3, 3, 6, 6, 6, 6, 1, 1, 1, 1, 1, 1, 1, 9, 4};
    v = tiny_spec();
    v.types = bad_type;
    expect_refused(&v, "tokenizer.ggml.token_type[14] = 9");
    static const int32_t byte_c[] = {2, 3, 3, 6, 6, 6, 6, 1, 1, 1, 6, 1, 1, 1, 1, 4};
    v = tiny_spec();
    v.types = byte_c;
    expect_refused(&v, "tokenizer.ggml.token_type[10] says byte token");

    static const char *const dup[] = {"<unk>", "<s>", "</s>", "a", "b", "a"};
    v = (vocab_spec){
        .model = "llama", .pieces = dup, .n = 6, .bos = -1, .add_bos = -1, .add_space_prefix = -1};
    expect_refused(&v, "piece 'a' appears twice, at index 3 and 5");
}

/* Without scores or types (both optional), every piece is a normal piece of
 * score 0; a byte the vocab cannot spell is an error, not a crash. */
static void test_minimal_vocab(void **state) {
    (void)state;
    static const char *const pieces[] = {"<unk>", "<s>", "</s>", "\xe2\x96\x81", "x"};
    vocab_spec v = {.model = "llama",
                    .pieces = pieces,
                    .n = 5,
                    .bos = -1,
                    .add_bos = -1,
                    .add_space_prefix = -1};
    nm_gguf *g = build_gguf(&v);
    nm_error err = {{0}};
    nm_tokenizer *t = nm_tokenizer_load(g, &err);
    if (!t)
        fail_msg("%s", err.msg);
    expect_ids(t, "x x", false, (int32_t[]){3, 4, 3, 4}, 4);
    int32_t *ids = NULL;
    assert_int_equal(nm_tokenize(t, "xy", 2, false, &ids, &err), -1);
    assert_non_null(strstr(err.msg, "<0x79>"));
    nm_tokenizer_free(t);
    nm_gguf_close(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_spm_vectors), cmocka_unit_test(test_llama_spm_long_text),
        cmocka_unit_test(test_stories_prompts),   cmocka_unit_test(test_merge_rules),
        cmocka_unit_test(test_space_prefix_rule), cmocka_unit_test(test_bad_metadata_refused),
        cmocka_unit_test(test_minimal_vocab),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
