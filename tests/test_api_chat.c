/* The public chat calls (include/numalm.h) on stories260K: template choice
 * and its refusals, formatting, prompt tokens, a reply that stops at the
 * template's end of turn, and a second turn built on the first one's tokens
 * whose cached evaluation (n_cached: only the new tokens go through the
 * model) gives the same reply as evaluating the whole prompt afresh. Only
 * numalm.h is used, besides the test helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "numalm.h"

#include "test_session.h"
#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct text {
    char buf[4096];
    size_t n;
} text;

static int collect(void *user, const char *s, size_t len) {
    text *t = user;
    if (t->n + len < sizeof t->buf) {
        memcpy(t->buf + t->n, s, len);
        t->n += len;
        t->buf[t->n] = 0;
    }
    return 0;
}

static numalm_session *open_stories(void) {
    char path[1024];
    snprintf(path, sizeof path, "%.900s/models/stories260K.gguf", nm_test_shared_dir());
    if (access(path, R_OK) != 0) {
        print_message("skipped: %s is absent\n", path);
        return NULL;
    }
    numalm_options o;
    numalm_options_init(&o);
    o.model_path = path;
    o.n_threads = 2;
    return nm_test_open(&o);
}

/* Generates a reply to the prompt; returns the token count (all of them in
 * toks) and the stats. */
static int reply(numalm_session *s, const int32_t *prompt, int n, int n_cached, int32_t stop,
                 int32_t *toks, int max, text *out, numalm_gen_stats *st) {
    numalm_gen_params p;
    numalm_gen_params_init(&p);
    p.prompt_tokens = prompt;
    p.n_prompt_tokens = n;
    p.n_cached = n_cached;
    p.stop_token = stop;
    p.n_predict = 24;
    p.tokens = toks;
    p.max_tokens = max;
    memset(out, 0, sizeof *out);
    if (numalm_generate(s, NULL, &p, collect, out, st) < 0)
        fail_msg("generate: %s", numalm_last_error(s));
    return st->n_tokens;
}

static void test_templates(void **state) {
    (void)state;
    numalm_session *s = open_stories();
    if (!s)
        skip();
    /* stories260K has no chat template: the message names the override */
    assert_int_equal(numalm_chat_template(s, NULL), -1);
    assert_non_null(strstr(numalm_last_error(s), "--chat-template NAME"));
    assert_int_equal(numalm_chat_template(s, "vicuna"), -1);
    assert_non_null(strstr(numalm_last_error(s), "not a built-in template"));
    int tmpl = numalm_chat_template(s, "llama2");
    assert_true(tmpl >= 0);
    assert_string_equal(numalm_chat_template_name(tmpl), "llama2");
    assert_non_null(strstr(numalm_chat_template_names(), "chatml"));

    numalm_chat_msg msgs[] = {{"user", "Hi"}};
    char buf[64];
    assert_int_equal(numalm_chat_format(s, tmpl, msgs, 1, true, buf, sizeof buf), 17);
    assert_string_equal(buf, "[INST] Hi [/INST]");
    assert_int_equal(numalm_chat_format(s, tmpl, msgs, 1, true, buf, 5), 17); /* cut */
    assert_string_equal(buf, "[INS");
    assert_int_equal(numalm_chat_format(s, 99, msgs, 1, true, buf, sizeof buf), -1);
    /* </s> ends a reply of the [INST] templates: the vocab's EOS */
    assert_int_equal(numalm_chat_end_of_turn(s, tmpl), numalm_token_eos(s));
    assert_true(numalm_token_is_eog(s, numalm_token_eos(s)));
    assert_false(numalm_token_is_eog(s, numalm_token_bos(s)));
    numalm_close(s);
}

static void test_two_turns(void **state) {
    (void)state;
    numalm_session *s = open_stories();
    if (!s)
        skip();
    int tmpl = numalm_chat_template(s, "llama2");
    int32_t stop = numalm_chat_end_of_turn(s, tmpl);
    numalm_chat_msg msgs[3] = {{"user", "Once upon a time"}, {"assistant", NULL}, {"user", "More"}};
    static int32_t p1[512], t1[512], p2[1024], t2[1024], t3[1024];
    text r1, r2, r3;
    numalm_gen_stats st;

    int n1 = numalm_chat_tokenize(s, tmpl, msgs, 1, NULL, 0, p1, 512);
    assert_true(n1 > 2);
    assert_int_equal(p1[0], numalm_token_bos(s));
    int m1 = reply(s, p1, n1, 0, stop, t1, 512, &r1, &st);
    assert_int_equal(st.n_prompt_cached, 0);
    assert_memory_equal(t1, p1, (size_t)n1 * sizeof *p1);
    assert_true(r1.n > 0);

    /* the second turn starts with the first one's tokens, the reply as
     * generated (the [INST] template leaves it as it is) */
    msgs[1].content = r1.buf;
    int n2 = numalm_chat_tokenize(s, tmpl, msgs, 3, t1, m1, p2, 1024);
    assert_true(n2 > m1);
    assert_memory_equal(p2, t1, (size_t)m1 * sizeof *t1);
    int kv = st.n_kv;
    reply(s, p2, n2, kv, stop, t2, 1024, &r2, &st);
    assert_int_equal(st.n_prompt_cached, kv);
    /* the same prompt evaluated whole gives the same reply */
    reply(s, p2, n2, 0, stop, t3, 1024, &r3, &st);
    assert_int_equal(st.n_prompt_cached, 0);
    assert_int_equal(r2.n, r3.n);
    assert_memory_equal(r2.buf, r3.buf, r2.n);
    numalm_close(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_templates),
        cmocka_unit_test(test_two_turns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
