/* Helpers of the tokenizer and chat tests: the shared vocab files, ids
 * decoded or printed as a reader sees them, and llama.cpp's test vectors
 * (.inp/.out beside a vocab) checked. Header only, included after cmocka.h. */
#ifndef NM_TEST_VOCAB_H
#define NM_TEST_VOCAB_H

#include "gguf/gguf.h"
#include "runtime/tokenizer.h"
#include "test_util.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Whether shared/<rel> exists. */
static inline bool nm_test_have(const char *rel) {
    char path[4096];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", nm_test_shared_dir(), rel);
    return stat(path, &st) == 0;
}

/* shared/<rel> opened, or the test fails. */
static inline nm_gguf *nm_test_open_gguf(const char *rel) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", nm_test_shared_dir(), rel);
    nm_error err = {{0}};
    nm_gguf *g = nm_gguf_open(path, &err);
    if (!g)
        fail_msg("opening %s: %s", path, err.msg);
    return g;
}

static inline nm_tokenizer *nm_test_tokenizer(const nm_gguf *g) {
    nm_error err = {{0}};
    nm_tokenizer *t = nm_tokenizer_load(g, &err);
    if (!t)
        fail_msg("loading the tokenizer of %s: %s", g->path, err.msg);
    return t;
}

/* The text of ids[0..n), each token decoded after the one before it, as a
 * reader of the output sees it; NUL-terminated, its length in *len (may be
 * NULL). */
static inline char *nm_test_detokenize(const nm_tokenizer *t, const int32_t *ids, int n,
                                       size_t *len) {
    size_t cap = 64 + (size_t)n * nm_tokenizer_max_text(t), w = 0;
    char *out = malloc(cap);
    assert_non_null(out);
    for (int i = 0; i < n; i++)
        w += nm_token_to_text(t, ids[i], i ? ids[i - 1] : -1, out + w, cap - 1 - w);
    out[w] = 0;
    if (len)
        *len = w;
    return out;
}

static inline void nm_test_print_ids(const char *what, const int32_t *ids, int n) {
    fprintf(stderr, "  %s:", what);
    for (int i = 0; i < n; i++)
        fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "\n");
}

/* Tokenizes and compares; returns 0 when equal, prints the difference. */
static inline int nm_test_check_ids(const nm_tokenizer *t, const char *text, size_t len,
                                    unsigned flags, const int32_t *want, int n_want,
                                    const char *label) {
    int32_t *ids;
    nm_error err = {{0}};
    int n = nm_tokenize(t, text, len, flags, &ids, &err);
    if (n < 0)
        fail_msg("%s: %s", label, err.msg);
    int bad = n != n_want || memcmp(ids, want, (size_t)n * sizeof *ids) != 0;
    if (bad) {
        fprintf(stderr, "%s: '%.*s' differs from llama.cpp\n", label, (int)len, text);
        nm_test_print_ids("want", want, n_want);
        nm_test_print_ids("got ", ids, n);
    }
    free(ids);
    return bad;
}

/* .inp: strings separated by "\n__ggml_vocab_test__\n"; .out: one line of
 * ids per string (no BOS, no special parsing), as test-tokenizer-0 reads. */
static inline void nm_test_vectors(const char *rel, int n_expected) {
    nm_gguf *g = nm_test_open_gguf(rel);
    nm_tokenizer *t = nm_test_tokenizer(g);
    char path[4096];
    size_t inp_len, out_len;
    snprintf(path, sizeof path, "%s/%s.inp", nm_test_shared_dir(), rel);
    char *inp = nm_test_read_file(path, &inp_len);
    snprintf(path, sizeof path, "%s/%s.out", nm_test_shared_dir(), rel);
    char *out = nm_test_read_file(path, &out_len);
    assert_non_null(inp);
    assert_non_null(out);
    static const char sep[] = "\n__ggml_vocab_test__\n";
    int n = 0, bad = 0, bad_round = 0;
    char *line = out;
    static int32_t want[8192];
    for (size_t pos = 0; pos < inp_len; n++) {
        char *next = memmem(inp + pos, inp_len - pos, sep, sizeof sep - 1);
        size_t end = next ? (size_t)(next - inp) : inp_len;
        const char *s = inp + pos;
        size_t slen = end - pos;
        pos = next ? end + sizeof sep - 1 : inp_len;

        assert_true(line < out + out_len);
        char *eol = strchr(line, '\n');
        assert_non_null(eol);
        *eol = 0;
        int n_want = 0;
        for (char *tok = strtok(line, " "); tok && n_want < 8192; tok = strtok(NULL, " "))
            want[n_want++] = (int32_t)strtol(tok, NULL, 10);
        line = eol + 1;
        char label[64];
        snprintf(label, sizeof label, "%s string %d", rel, n);
        bad += nm_test_check_ids(t, s, slen, 0, want, n_want, label);

        size_t dlen;
        char *text = nm_test_detokenize(t, want, n_want, &dlen);
        if (dlen != slen || memcmp(text, s, slen) != 0) {
            fprintf(stderr, "%s: '%.*s' decodes to '%.*s'\n", label, (int)slen, s, (int)dlen, text);
            bad_round++;
        }
        free(text);
    }
    fprintf(stderr, "%s: %d strings, %d differ from llama.cpp, %d do not round-trip\n", rel, n, bad,
            bad_round);
    assert_int_equal(n, n_expected);
    assert_ptr_equal(line, out + out_len); /* every line of .out was used */
    assert_int_equal(bad, 0);
    assert_int_equal(bad_round, 0);
    free(inp);
    free(out);
    nm_tokenizer_free(t);
    nm_gguf_close(g);
}

#endif
