/* Test helpers: parse a GGUF image built in memory (gguf_builder.h) as the
 * file "t.gguf", and check the message of a refusal. */
#ifndef NUMALM_TESTS_GGUF_PARSE_H
#define NUMALM_TESTS_GGUF_PARSE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "gguf_builder.h"
#include "gguf/gguf.h"

#include <stdio.h>
#include <string.h>

static inline nm_gguf *parse(const gb *b, nm_error *err) {
    err->msg[0] = 0;
    FILE *f = fmemopen(b->p, b->n, "rb");
    assert_non_null(f);
    nm_gguf *g = nm_gguf_read(f, b->n, "t.gguf", err);
    fclose(f);
    return g;
}

static inline void assert_contains(const char *msg, const char *want) {
    if (!strstr(msg, want))
        fail_msg("message '%s' lacks '%s'", msg, want);
}

/* Parses b, which must fail with a message holding every given substring. */
#define EXPECT_FAIL(b, ...) expect_fail(b, (const char *const[]){__VA_ARGS__, NULL})
static inline void expect_fail(gb *b, const char *const *subs) {
    nm_error err;
    nm_gguf *g = parse(b, &err);
    if (g) {
        nm_gguf_close(g);
        fail_msg("a malformed file was accepted (expected '%s')", subs[0]);
    }
    assert_contains(err.msg, "t.gguf: ");
    for (int i = 0; subs[i]; i++)
        assert_contains(err.msg, subs[i]);
    gb_free(b);
}

static inline nm_gguf *parse_ok(const gb *b) {
    nm_error err;
    nm_gguf *g = parse(b, &err);
    if (!g)
        fail_msg("valid file refused: %s", err.msg);
    return g;
}

#endif
