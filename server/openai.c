#include "openai.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int nm_api_fail(nm_api_error *e, int status, const char *type, const char *code, const char *param,
                const char *fmt, ...) {
    e->status = status;
    e->type = type;
    e->code = code;
    e->param = param;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}

static int bad_field(nm_api_error *e, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bad_field(nm_api_error *e, const char *param, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return nm_api_fail(e, 400, "invalid_request_error", NULL, param, "'%s': %s", param, msg);
}

/* The field, or NULL when it is absent or null (both mean "default"). */
static json_t *field(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    return json_is_null(v) ? NULL : v;
}

static int get_number(json_t *o, const char *key, double lo, double hi, float *out,
                      nm_api_error *e) {
    json_t *v = field(o, key);
    if (!v)
        return 0;
    if (!json_is_number(v))
        return bad_field(e, key, "expected a number");
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi))
        return bad_field(e, key, "%g is outside [%g, %g]", x, lo, hi);
    *out = (float)x;
    return 1;
}

static int get_int(json_t *o, const char *key, long long lo, long long hi, long long *out,
                   nm_api_error *e) {
    json_t *v = field(o, key);
    if (!v)
        return 0;
    if (!json_is_integer(v))
        return bad_field(e, key, "expected an integer");
    long long x = json_integer_value(v);
    if (x < lo || x > hi)
        return bad_field(e, key, "%lld is outside [%lld, %lld]", x, lo, hi);
    *out = x;
    return 1;
}

static int get_bool(json_t *o, const char *key, bool *out, nm_api_error *e) {
    json_t *v = field(o, key);
    if (!v)
        return 0;
    if (!json_is_boolean(v))
        return bad_field(e, key, "expected true or false");
    *out = json_is_true(v);
    return 1;
}

static int get_stop(json_t *o, nm_api_request *r, nm_api_error *e) {
    json_t *v = field(o, "stop");
    if (!v)
        return 0;
    json_t *one[1] = {v};
    json_t **items = one;
    size_t n = 1;
    if (json_is_array(v)) {
        n = json_array_size(v);
        if (n > NM_MAX_STOP)
            return bad_field(e, "stop", "at most %d sequences, got %zu", NM_MAX_STOP, n);
        items = NULL;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *s = items ? items[i] : json_array_get(v, i);
        if (!json_is_string(s))
            return bad_field(e, "stop", "expected a string or an array of strings");
        size_t len = json_string_length(s);
        if (len > NM_MAX_STOP_LEN)
            return bad_field(e, "stop", "a sequence of %zu bytes; at most %d", len,
                             NM_MAX_STOP_LEN);
        if (len == 0)
            continue;
        r->stop[r->n_stop++] = strdup(json_string_value(s));
    }
    return 0;
}

/* {"token id": bias in [-100, 100], ...} */
static int get_logit_bias(json_t *o, nm_api_request *r, nm_api_error *e) {
    json_t *v = field(o, "logit_bias");
    if (!v)
        return 0;
    if (!json_is_object(v))
        return bad_field(e, "logit_bias", "expected an object of token ids and biases");
    size_t n = json_object_size(v);
    if (n > NM_MAX_LOGIT_BIAS)
        return bad_field(e, "logit_bias", "%zu entries; at most %d", n, NM_MAX_LOGIT_BIAS);
    r->bias_ids = malloc((n ? n : 1) * sizeof *r->bias_ids);
    r->bias = malloc((n ? n : 1) * sizeof *r->bias);
    if (!r->bias_ids || !r->bias)
        return nm_api_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    const char *key;
    json_t *b;
    json_object_foreach(v, key, b) {
        char *end;
        long id = strtol(key, &end, 10);
        if (!*key || *end || id < 0 || id > INT32_MAX)
            return bad_field(e, "logit_bias", "'%.40s' is not a token id", key);
        if (!json_is_number(b) || !(json_number_value(b) >= -100 && json_number_value(b) <= 100))
            return bad_field(e, "logit_bias",
                             "the bias of token %ld must be a number in [-100, 100]", id);
        r->bias_ids[r->n_bias] = (int32_t)id;
        r->bias[r->n_bias++] = (float)json_number_value(b);
    }
    return 0;
}

/* Options unsupported here must not be silently ignored when they would
 * change the answer. */
static int refuse_unsupported(json_t *o, nm_api_kind kind, nm_api_error *e) {
    long long n = 1;
    if (get_int(o, "n", 1, 1 << 20, &n, e) < 0)
        return -1;
    if (n != 1)
        return bad_field(e, "n", "only one choice per request is supported");
    static const char *penalties[] = {"presence_penalty", "frequency_penalty"};
    for (int i = 0; i < 2; i++) {
        float p = 0;
        if (get_number(o, penalties[i], -2, 2, &p, e) < 0)
            return -1;
        if (p != 0)
            return bad_field(e, penalties[i], "penalties are not supported (use 0)");
    }
    json_t *lp = field(o, "logprobs");
    if (lp && !(json_is_false(lp) || (json_is_integer(lp) && json_integer_value(lp) == 0)))
        return bad_field(e, "logprobs", "log probabilities are not supported");
    bool echo = false;
    if (kind == NM_API_COMPLETION && get_bool(o, "echo", &echo, e) < 0)
        return -1;
    if (echo)
        return bad_field(e, "echo", "echoing the prompt is not supported");
    json_t *tools = field(o, "tools");
    if (tools && !(json_is_array(tools) && json_array_size(tools) == 0))
        return bad_field(e, "tools", "tool calls are not supported");
    return 0;
}

/* A message's content: a string, or an array of {"type": "text", "text"}
 * parts, joined. *out is malloc'd. */
static int message_content(json_t *c, size_t i, char **out, nm_api_error *e) {
    if (!c || json_is_null(c)) {
        *out = strdup("");
        return 0;
    }
    if (json_is_string(c)) {
        *out = strdup(json_string_value(c));
        return 0;
    }
    if (!json_is_array(c))
        return nm_api_fail(e, 400, "invalid_request_error", NULL, "messages",
                           "'messages[%zu].content': expected a string or an array of parts", i);
    size_t total = 1, n = json_array_size(c);
    for (size_t k = 0; k < n; k++) {
        json_t *p = json_array_get(c, k), *type = json_object_get(p, "type"),
               *text = json_object_get(p, "text");
        if (!json_is_string(type) || strcmp(json_string_value(type), "text") ||
            !json_is_string(text))
            return nm_api_fail(e, 400, "invalid_request_error", NULL, "messages",
                               "'messages[%zu].content[%zu]': only {\"type\": \"text\", "
                               "\"text\": ...} parts are supported",
                               i, k);
        total += json_string_length(text);
    }
    char *s = malloc(total), *w = s;
    if (!s)
        return nm_api_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    for (size_t k = 0; k < n; k++) {
        json_t *text = json_object_get(json_array_get(c, k), "text");
        memcpy(w, json_string_value(text), json_string_length(text));
        w += json_string_length(text);
    }
    *w = 0;
    *out = s;
    return 0;
}

/* The messages as they are; the model's chat template formats them. */
static int chat_messages(json_t *o, nm_api_request *r, nm_api_error *e) {
    json_t *msgs = field(o, "messages");
    if (!msgs)
        return bad_field(e, "messages", "required");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0)
        return bad_field(e, "messages", "expected a non-empty array of messages");
    size_t n = json_array_size(msgs);
    if (!(r->msgs = calloc(n, sizeof *r->msgs)))
        return nm_api_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *msg = json_array_get(msgs, i), *role = json_object_get(msg, "role");
        if (!json_is_object(msg) || !json_is_string(role))
            return nm_api_fail(e, 400, "invalid_request_error", NULL, "messages",
                               "'messages[%zu]': expected an object with a string 'role'", i);
        char *content = NULL;
        if (message_content(json_object_get(msg, "content"), i, &content, e) < 0)
            return -1;
        r->msgs[r->n_msgs++] = (nm_chat_msg){strdup(json_string_value(role)), content};
        if (!r->msgs[i].role || !content)
            return nm_api_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    }
    return 0;
}

static int completion_prompt(json_t *o, nm_api_request *r, nm_api_error *e) {
    json_t *p = field(o, "prompt");
    if (!p)
        return bad_field(e, "prompt", "required");
    if (json_is_array(p) && json_array_size(p) == 1 && json_is_string(json_array_get(p, 0)))
        p = json_array_get(p, 0);
    if (!json_is_string(p))
        return bad_field(e, "prompt", "expected a string (or an array of one string)");
    r->prompt = strdup(json_string_value(p));
    return r->prompt ? 0 : nm_api_fail(e, 500, "server_error", NULL, NULL, "out of memory");
}

static int parse_fields(json_t *o, nm_api_kind kind, nm_api_request *r, nm_api_error *e) {
    json_t *model = field(o, "model");
    if (model && !json_is_string(model))
        return bad_field(e, "model", "expected a string");
    long long mt = 0, seed = 0, top_k = 0;
    int got = get_int(o, "max_tokens", 1, 1 << 24, &mt, e);
    if (got == 0 && kind == NM_API_CHAT)
        got = get_int(o, "max_completion_tokens", 1, 1 << 24, &mt, e);
    if (got < 0)
        return -1;
    if (got)
        r->max_tokens = (int)mt;
    if (get_number(o, "temperature", 0, 2, &r->sampler.temp, e) < 0 ||
        get_number(o, "top_p", 0, 1, &r->sampler.top_p, e) < 0 ||
        get_int(o, "top_k", 0, 1 << 30, &top_k, e) < 0)
        return -1;
    r->sampler.top_k = (int)top_k;
    if ((got = get_int(o, "seed", INT64_MIN, INT64_MAX, &seed, e)) < 0)
        return -1;
    r->seed_given = got;
    r->sampler.seed = (uint64_t)seed;
    if (get_stop(o, r, e) < 0 || get_bool(o, "stream", &r->stream, e) < 0 ||
        get_bool(o, "ignore_eos", &r->ignore_eos, e) < 0 || get_logit_bias(o, r, e) < 0)
        return -1;
    json_t *so = field(o, "stream_options");
    if (so) {
        if (!r->stream)
            return bad_field(e, "stream_options", "only allowed when 'stream' is true");
        if (!json_is_object(so))
            return bad_field(e, "stream_options", "expected an object");
        if (get_bool(so, "include_usage", &r->include_usage, e) < 0) {
            e->param = "stream_options.include_usage";
            return -1;
        }
    }
    return refuse_unsupported(o, kind, e);
}

int nm_api_parse(nm_api_kind kind, const char *body, size_t len, nm_api_request *r,
                 nm_api_error *e) {
    memset(r, 0, sizeof *r);
    r->kind = kind;
    /* OpenAI's defaults: 16 tokens for completions, no limit for chat;
     * temperature 1, top_p 1 */
    r->max_tokens = kind == NM_API_COMPLETION ? 16 : -1;
    r->sampler = (nm_sampler_opts){.temp = 1.0f, .top_k = 0, .top_p = 1.0f, .seed = 0};
    json_error_t je;
    json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!o)
        return nm_api_fail(e, 400, "invalid_request_error", NULL, NULL,
                           "the body is not valid JSON: %s (line %d, column %d)", je.text, je.line,
                           je.column);
    int rc = -1;
    if (!json_is_object(o))
        nm_api_fail(e, 400, "invalid_request_error", NULL, NULL, "the body must be a JSON object");
    else if (parse_fields(o, kind, r, e) == 0)
        rc = kind == NM_API_CHAT ? chat_messages(o, r, e) : completion_prompt(o, r, e);
    json_decref(o);
    if (rc < 0)
        nm_api_request_free(r);
    return rc;
}

void nm_api_request_free(nm_api_request *r) {
    free(r->prompt);
    for (int i = 0; i < r->n_msgs; i++) {
        free((char *)r->msgs[i].role);
        free((char *)r->msgs[i].content);
    }
    free(r->msgs);
    free(r->bias_ids);
    free(r->bias);
    for (int i = 0; i < r->n_stop; i++)
        free(r->stop[i]);
    memset(r, 0, sizeof *r);
}

/* ---- responses */

/* A JSON string of text[0..len), invalid UTF-8 replaced (text.h). */
static json_t *text_value(const char *text, size_t len) {
    char *clean = malloc(3 * len + 1);
    if (!clean)
        return NULL;
    size_t n = nm_utf8_sanitize(text, len, clean);
    json_t *s = json_stringn(clean, n);
    free(clean);
    return s;
}

static json_t *usage(const nm_api_reply *r) {
    return json_pack("{s:i, s:i, s:i}", "prompt_tokens", r->prompt_tokens, "completion_tokens",
                     r->completion_tokens, "total_tokens", r->prompt_tokens + r->completion_tokens);
}

static json_t *finish_value(const char *finish) {
    return finish ? json_string(finish) : json_null();
}

static json_t *envelope(const nm_api_reply *r, const char *object) {
    return json_pack("{s:s, s:s, s:I, s:s, s:s}", "id", r->id, "object", object, "created",
                     (json_int_t)r->created, "model", r->model, "system_fingerprint", "numalm");
}

/* Serializes and frees o (compact, UTF-8 kept), optionally as an SSE
 * event. */
static char *dump(json_t *o, bool event) {
    if (!o)
        return NULL;
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!s || !event)
        return s;
    size_t n = strlen(s);
    char *ev = malloc(n + 9);
    if (ev)
        memcpy(ev, "data: ", 6), memcpy(ev + 6, s, n), memcpy(ev + 6 + n, "\n\n", 3);
    free(s);
    return ev;
}

char *nm_api_response(const nm_api_reply *r, const char *text, size_t len, const char *finish) {
    json_t *t = text_value(text, len);
    if (!t)
        return NULL;
    json_t *choice;
    if (r->kind == NM_API_CHAT)
        choice =
            json_pack("{s:i, s:{s:s, s:o}, s:n, s:o}", "index", 0, "message", "role", "assistant",
                      "content", t, "logprobs", "finish_reason", finish_value(finish));
    else
        choice = json_pack("{s:o, s:i, s:n, s:o}", "text", t, "index", 0, "logprobs",
                           "finish_reason", finish_value(finish));
    json_t *o = envelope(r, r->kind == NM_API_CHAT ? "chat.completion" : "text_completion");
    if (!o || !choice || json_object_set_new(o, "choices", json_pack("[o]", choice)) < 0 ||
        json_object_set_new(o, "usage", usage(r)) < 0) {
        json_decref(o);
        return NULL;
    }
    return dump(o, false);
}

char *nm_api_chunk(const nm_api_reply *r, const char *text, size_t len, bool first,
                   const char *finish, bool include_usage) {
    json_t *choice;
    if (r->kind == NM_API_CHAT) {
        json_t *delta = json_object();
        if (first)
            json_object_set_new(delta, "role", json_string("assistant"));
        if (text)
            json_object_set_new(delta, "content", text_value(text, len));
        choice = json_pack("{s:i, s:o, s:n, s:o}", "index", 0, "delta", delta, "logprobs",
                           "finish_reason", finish_value(finish));
    } else {
        choice = json_pack("{s:o, s:i, s:n, s:o}", "text", text_value(text ? text : "", len),
                           "index", 0, "logprobs", "finish_reason", finish_value(finish));
    }
    json_t *o = envelope(r, r->kind == NM_API_CHAT ? "chat.completion.chunk" : "text_completion");
    if (!o || !choice || json_object_set_new(o, "choices", json_pack("[o]", choice)) < 0 ||
        (include_usage && json_object_set_new(o, "usage", json_null()) < 0)) {
        json_decref(o);
        return NULL;
    }
    return dump(o, true);
}

char *nm_api_usage_chunk(const nm_api_reply *r) {
    json_t *o = envelope(r, r->kind == NM_API_CHAT ? "chat.completion.chunk" : "text_completion");
    if (!o || json_object_set_new(o, "choices", json_array()) < 0 ||
        json_object_set_new(o, "usage", usage(r)) < 0) {
        json_decref(o);
        return NULL;
    }
    return dump(o, true);
}

char *nm_api_models(const char *name, long long created) {
    return dump(json_pack("{s:s, s:[{s:s, s:s, s:I, s:s}]}", "object", "list", "data", "id", name,
                          "object", "model", "created", (json_int_t)created, "owned_by", "numalm"),
                false);
}

static json_t *error_object(const nm_api_error *e) {
    json_t *msg = text_value(e->message, strlen(e->message));
    return json_pack("{s:{s:o, s:s, s:o, s:o}}", "error", "message", msg, "type",
                     e->type ? e->type : "server_error", "param",
                     e->param ? json_string(e->param) : json_null(), "code",
                     e->code ? json_string(e->code) : json_null());
}

char *nm_api_error_json(const nm_api_error *e) {
    return dump(error_object(e), false);
}

char *nm_api_error_event(const nm_api_error *e) {
    return dump(error_object(e), true);
}
