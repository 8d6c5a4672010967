/* The server's pure parts: stop sequences and UTF-8 in streamed text
 * (server/text.c), and the OpenAI request parser and response shapes
 * (server/openai.c), checked by parsing what they write with jansson. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "server/openai.h"
#include "server/text.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* ---- text */

/* Feeds pieces one by one, collecting what a stream would send after each
 * (with final on the last), and returns the concatenation. */
static char *stream_pieces(const char *const *pieces, int n, const char *const *stop, int n_stop,
                           bool *stopped) {
    nm_gen_text t;
    nm_gen_text_init(&t, stop, n_stop);
    static char out[1024];
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        int rc = nm_gen_text_add(&t, pieces[i], strlen(pieces[i]));
        assert_true(rc >= 0);
        bool final = rc == 1 || i == n - 1;
        size_t end = nm_gen_text_ready_end(&t, final);
        assert_true(end >= t.sent);
        memcpy(out + o, t.buf + t.sent, end - t.sent);
        o += end - t.sent;
        t.sent = end;
        if (rc == 1)
            break;
    }
    out[o] = 0;
    *stopped = t.stopped;
    nm_gen_text_free(&t);
    return out;
}

static void test_stop_sequences(void **state) {
    (void)state;
    bool stopped;
    const char *stop[] = {"END", "\n\n"};
    const char *a[] = {"Hello", " wor", "ld", "E", "N", "D", " more"};
    assert_string_equal(stream_pieces(a, 7, stop, 2, &stopped), "Hello world");
    assert_true(stopped);
    /* a stop split over pieces, and one inside a piece */
    const char *b[] = {"one\n", "\ntwo"};
    assert_string_equal(stream_pieces(b, 2, stop, 2, &stopped), "one");
    assert_true(stopped);
    const char *c[] = {"xxENDyy"};
    assert_string_equal(stream_pieces(c, 1, stop, 2, &stopped), "xx");
    /* a held-back prefix that does not become a stop is sent after all */
    const char *d[] = {"E", "N", "x"};
    assert_string_equal(stream_pieces(d, 3, stop, 2, &stopped), "ENx");
    assert_false(stopped);
    /* the earliest of two matches wins */
    const char *e[] = {"a\n\nbEND"};
    assert_string_equal(stream_pieces(e, 1, stop, 2, &stopped), "a");
    /* no stop sequences: everything goes at once */
    const char *f[] = {"ab", "cd"};
    assert_string_equal(stream_pieces(f, 2, NULL, 0, &stopped), "abcd");
}

static void test_stream_holds_back(void **state) {
    (void)state;
    const char *stop[] = {"<|im_end|>"};
    nm_gen_text t;
    nm_gen_text_init(&t, stop, 1);
    assert_int_equal(nm_gen_text_add(&t, "Hi <|im", 7), 0);
    assert_int_equal(nm_gen_text_ready_end(&t, false), 3); /* "<|im" waits */
    t.sent = 3;
    assert_int_equal(nm_gen_text_add(&t, "_end|>", 6), 1);
    assert_int_equal(t.len, 3);
    nm_gen_text_free(&t);
    /* half a UTF-8 character waits for its other half */
    nm_gen_text_init(&t, NULL, 0);
    assert_int_equal(nm_gen_text_add(&t, "a\xC3", 2), 0);
    assert_int_equal(nm_gen_text_ready_end(&t, false), 1);
    assert_int_equal(nm_gen_text_add(&t, "\xA9", 1), 0);
    assert_int_equal(nm_gen_text_ready_end(&t, false), 3);
    nm_gen_text_free(&t);
}

static void test_utf8(void **state) {
    (void)state;
    char out[64];
    size_t n = nm_utf8_sanitize("a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80", 10, out);
    assert_int_equal(n, 10); /* valid text passes unchanged */
    assert_memory_equal(out, "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80", 10);
    n = nm_utf8_sanitize("\xFF"
                         "b\xC0\xAF",
                         4, out); /* a stray byte, an overlong '/' */
    assert_int_equal(n, 10);
    assert_memory_equal(out,
                        "\xEF\xBF\xBD"
                        "b\xEF\xBF\xBD\xEF\xBF\xBD",
                        10);
    n = nm_utf8_sanitize("\xED\xA0\x80", 3, out); /* a surrogate: three */
    assert_int_equal(n, 9);
    n = nm_utf8_sanitize("\xE2\x82"
                         "A\xF0\x9F\x98",
                         6, out); /* cut short: one each */
    assert_int_equal(n, 7);
    assert_memory_equal(out,
                        "\xEF\xBF\xBD"
                        "A\xEF\xBF\xBD",
                        7);
    assert_int_equal(nm_utf8_incomplete_tail("ab\xE2\x82", 4), 2);
    assert_int_equal(nm_utf8_incomplete_tail("ab\xF0", 3), 1);
    assert_int_equal(nm_utf8_incomplete_tail("ab\xE2\x82\xAC", 5), 0);
    assert_int_equal(nm_utf8_incomplete_tail("ab\xFF", 3), 0); /* never completes */
}

/* ---- requests */

static int parse(nm_api_kind kind, const char *body, nm_api_request *r, nm_api_error *e) {
    return nm_api_parse(kind, body, strlen(body), r, e);
}

static void expect_400(nm_api_kind kind, const char *body, const char *needle) {
    nm_api_request r;
    nm_api_error e = {0};
    assert_int_equal(parse(kind, body, &r, &e), -1);
    assert_int_equal(e.status, 400);
    if (!strstr(e.message, needle))
        fail_msg("body %s: message '%s' lacks '%s'", body, e.message, needle);
}

static void test_parse_chat(void **state) {
    (void)state;
    nm_api_request r;
    nm_api_error e = {0};
    const char *body =
        "{\"model\":\"x\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Hi \"},"
        "{\"type\":\"text\",\"text\":\"there\"}]}],\"max_tokens\":7,\"temperature\":0.5,"
        "\"top_p\":0.9,\"top_k\":40,\"seed\":-3,\"stop\":[\"a\",\"bc\"],\"stream\":true,"
        "\"stream_options\":{\"include_usage\":true},\"user\":\"ignored\",\"n\":1}";
    assert_int_equal(parse(NM_API_CHAT, body, &r, &e), 0);
    assert_int_equal(r.n_msgs, 2);
    assert_string_equal(r.msgs[0].role, "system");
    assert_string_equal(r.msgs[0].content, "Be brief.");
    assert_string_equal(r.msgs[1].role, "user");
    assert_string_equal(r.msgs[1].content, "Hi there"); /* text parts joined */
    assert_int_equal(r.max_tokens, 7);
    assert_true(r.sampler.temp == 0.5f && r.sampler.top_p == 0.9f && r.sampler.top_k == 40);
    assert_true(r.seed_given && r.sampler.seed == (uint64_t)-3);
    assert_int_equal(r.n_stop, 2);
    assert_string_equal(r.stop[1], "bc");
    assert_true(r.stream && r.include_usage);
    nm_api_request_free(&r);
    /* defaults: OpenAI's */
    assert_int_equal(
        parse(NM_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", &r, &e), 0);
    assert_int_equal(r.max_tokens, -1);
    assert_true(r.sampler.temp == 1.0f && !r.stream && !r.seed_given && r.n_stop == 0);
    nm_api_request_free(&r);
    assert_int_equal(parse(NM_API_COMPLETION, "{\"prompt\":[\"Once\"],\"stop\":\"x\"}", &r, &e), 0);
    assert_string_equal(r.prompt, "Once");
    assert_int_equal(r.max_tokens, 16);
    assert_int_equal(r.n_stop, 1);
    nm_api_request_free(&r);
}

static void test_parse_errors(void **state) {
    (void)state;
    expect_400(NM_API_CHAT, "{\"messages\": [", "not valid JSON");
    expect_400(NM_API_CHAT, "", "not valid JSON");
    expect_400(NM_API_CHAT, "[1,2]", "JSON object");
    expect_400(NM_API_CHAT, "{\"messages\":[]}", "non-empty");
    expect_400(NM_API_CHAT, "{}", "'messages': required");
    expect_400(NM_API_CHAT, "{\"messages\":\"hi\"}", "messages");
    expect_400(NM_API_CHAT, "{\"messages\":[{\"content\":\"x\"}]}", "role");
    expect_400(NM_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":5}]}", "content");
    expect_400(NM_API_CHAT,
               "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}",
               "text");
    const char *m = "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]";
    char body[512];
    static const struct {
        const char *field, *needle;
    } bad[] = {{"\"max_tokens\":\"10\"", "integer"},
               {"\"max_tokens\":0", "outside"},
               {"\"max_tokens\":1.5", "integer"},
               {"\"temperature\":\"hot\"", "number"},
               {"\"temperature\":3", "outside"},
               {"\"top_p\":-0.1", "outside"},
               {"\"top_k\":-1", "outside"},
               {"\"seed\":\"x\"", "integer"},
               {"\"stop\":5", "string"},
               {"\"stop\":[\"a\",1]", "string"},
               {"\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]", "at most"},
               {"\"stream\":\"yes\"", "true or false"},
               {"\"stream_options\":{\"include_usage\":true}", "only allowed"},
               {"\"stream\":true,\"stream_options\":{\"include_usage\":1}", "true or false"},
               {"\"n\":2", "one choice"},
               {"\"logprobs\":true", "not supported"},
               {"\"presence_penalty\":1", "not supported"},
               {"\"model\":3", "string"},
               {"\"logit_bias\":[1]", "object"},
               {"\"logit_bias\":{\"x\":1}", "not a token id"},
               {"\"logit_bias\":{\"-1\":1}", "not a token id"},
               {"\"logit_bias\":{\"5\":101}", "[-100, 100]"},
               {"\"logit_bias\":{\"5\":\"1\"}", "[-100, 100]"},
               {"\"ignore_eos\":1", "true or false"},
               {"\"max_tokens\":1,\"max_tokens\":2", "duplicate"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(body, sizeof body, "{%s,%s}", m, bad[i].field);
        expect_400(NM_API_CHAT, body, bad[i].needle);
    }
    expect_400(NM_API_COMPLETION, "{\"prompt\":5}", "string");
    expect_400(NM_API_COMPLETION, "{\"prompt\":[1,2,3]}", "string");
    expect_400(NM_API_COMPLETION, "{\"prompt\":\"x\",\"echo\":true}", "not supported");
    expect_400(NM_API_COMPLETION, "{\"prompt\":\"a\\u0000b\"}", "not valid JSON");
    /* nesting far deeper than any request: an error, not a stack overflow */
    size_t depth = 100000;
    char *deep = malloc(2 * depth + 1);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    deep[2 * depth] = 0;
    expect_400(NM_API_CHAT, deep, "not valid JSON");
    free(deep);
}

/* ---- responses: what the writers produce parses back to the API shapes */

static json_t *load(char *s) {
    assert_non_null(s);
    json_error_t je;
    json_t *o = json_loads(s, 0, &je);
    if (!o)
        fail_msg("not JSON: %s (%s)", s, je.text);
    free(s);
    return o;
}

static json_t *load_event(char *s) {
    assert_non_null(s);
    assert_memory_equal(s, "data: ", 6);
    size_t n = strlen(s);
    assert_true(n > 8 && !strcmp(s + n - 2, "\n\n"));
    s[n - 2] = 0;
    json_t *o = json_loads(s + 6, 0, NULL);
    assert_non_null(o);
    free(s);
    return o;
}

static void test_responses(void **state) {
    (void)state;
    nm_api_reply rep = {.kind = NM_API_CHAT,
                        .id = "chatcmpl-1",
                        .model = "m",
                        .created = 5,
                        .prompt_tokens = 3,
                        .completion_tokens = 2};
    json_t *o = load(nm_api_response(&rep, "h\xC3i", 3, "stop"));
    assert_string_equal(json_string_value(json_object_get(o, "object")), "chat.completion");
    json_t *ch = json_array_get(json_object_get(o, "choices"), 0);
    assert_string_equal(json_string_value(json_object_get(ch, "finish_reason")), "stop");
    json_t *msg = json_object_get(ch, "message");
    assert_string_equal(json_string_value(json_object_get(msg, "role")), "assistant");
    assert_string_equal(json_string_value(json_object_get(msg, "content")), "h\xEF\xBF\xBDi");
    json_t *u = json_object_get(o, "usage");
    assert_int_equal(json_integer_value(json_object_get(u, "total_tokens")), 5);
    json_decref(o);

    o = load_event(nm_api_chunk(&rep, "", 0, true, NULL, true));
    assert_string_equal(json_string_value(json_object_get(o, "object")), "chat.completion.chunk");
    ch = json_array_get(json_object_get(o, "choices"), 0);
    assert_true(json_is_null(json_object_get(ch, "finish_reason")));
    assert_string_equal(json_string_value(json_object_get(json_object_get(ch, "delta"), "role")),
                        "assistant");
    assert_true(json_is_null(json_object_get(o, "usage")));
    json_decref(o);
    o = load_event(nm_api_chunk(&rep, NULL, 0, false, "length", false));
    ch = json_array_get(json_object_get(o, "choices"), 0);
    assert_int_equal(json_object_size(json_object_get(ch, "delta")), 0);
    assert_null(json_object_get(o, "usage"));
    json_decref(o);
    o = load_event(nm_api_usage_chunk(&rep));
    assert_int_equal(json_array_size(json_object_get(o, "choices")), 0);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(o, "usage"), "completion_tokens")), 2);
    json_decref(o);

    rep.kind = NM_API_COMPLETION;
    o = load(nm_api_response(&rep, "abc", 3, "length"));
    assert_string_equal(json_string_value(json_object_get(o, "object")), "text_completion");
    ch = json_array_get(json_object_get(o, "choices"), 0);
    assert_string_equal(json_string_value(json_object_get(ch, "text")), "abc");
    json_decref(o);

    nm_api_error e;
    nm_api_fail(&e, 401, "invalid_request_error", "invalid_api_key", NULL, "bad key \"%s\"", "k");
    o = load(nm_api_error_json(&e));
    json_t *err = json_object_get(o, "error");
    assert_string_equal(json_string_value(json_object_get(err, "message")), "bad key \"k\"");
    assert_string_equal(json_string_value(json_object_get(err, "code")), "invalid_api_key");
    assert_true(json_is_null(json_object_get(err, "param")));
    json_decref(o);
    o = load(nm_api_models("stories", 7));
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(json_object_get(o, "data"), 0), "id")),
        "stories");
    json_decref(o);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stop_sequences), cmocka_unit_test(test_stream_holds_back),
        cmocka_unit_test(test_utf8),           cmocka_unit_test(test_parse_chat),
        cmocka_unit_test(test_parse_errors),   cmocka_unit_test(test_responses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
