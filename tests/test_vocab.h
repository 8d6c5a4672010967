/* Helpers of the tokenizer and chat tests: the shared vocab files, and ids
 * decoded or printed as a reader sees them. Header only, included after
 * cmocka.h. */
#ifndef NM_TEST_VOCAB_H
#define NM_TEST_VOCAB_H

#include "gguf/gguf.h"
#include "runtime/tokenizer.h"
#include "test_util.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
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

#endif
