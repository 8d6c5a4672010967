/* The OpenAI API's request and response shapes: parsing a request body
 * (jansson) into what the engine needs, and writing responses, stream
 * chunks and errors. No I/O and no model here. */
#ifndef NM_SERVER_OPENAI_H
#define NM_SERVER_OPENAI_H

#include "runtime/chat.h"
#include "runtime/sampler.h"
#include "text.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum nm_api_kind { NM_API_CHAT, NM_API_COMPLETION } nm_api_kind;

/* An error as the API reports it: the HTTP status and the body's
 * {"error": {"message", "type", "param", "code"}}. */
typedef struct nm_api_error {
    int status;
    const char *type;  /* "invalid_request_error", "server_error", ... */
    const char *code;  /* NULL or e.g. "context_length_exceeded" */
    const char *param; /* NULL or the offending field */
    char message[512];
} nm_api_error;

/* Fills e and returns -1. */
int nm_api_fail(nm_api_error *e, int status, const char *type, const char *code, const char *param,
                const char *fmt, ...) __attribute__((format(printf, 6, 7)));

typedef struct nm_api_request {
    nm_api_kind kind;
    char *prompt;      /* completions: the prompt */
    nm_chat_msg *msgs; /* chat: the messages (role and content malloc'd) */
    int n_msgs;
    int max_tokens; /* -1: until EOS or the end of the context */
    nm_sampler_opts sampler;
    bool seed_given;
    char *stop[NM_MAX_STOP];
    int n_stop;
    bool stream, include_usage;
    bool ignore_eos; /* llama.cpp's extension: never sample end-of-text
                        (fixed-length runs for benchmarks) */
    /* logit_bias: added to the logits of these token ids before sampling
     * (ids checked against the vocabulary when the request is made) */
    int32_t *bias_ids;
    float *bias;
    int n_bias;
} nm_api_request;

#define NM_MAX_LOGIT_BIAS 1024

/* Parses and checks a body: valid JSON, an object, known fields of the right
 * types and in range (unknown fields are ignored, as OpenAI's own server
 * does). Returns 0, or -1 with e (status 400). */
int nm_api_parse(nm_api_kind kind, const char *body, size_t len, nm_api_request *r,
                 nm_api_error *e);
void nm_api_request_free(nm_api_request *r);

/* Response pieces (malloc'd strings; NULL on out of memory). */
typedef struct nm_api_reply {
    nm_api_kind kind;
    const char *id; /* "chatcmpl-..." / "cmpl-..." */
    const char *model;
    long long created; /* Unix seconds */
    int prompt_tokens, completion_tokens;
} nm_api_reply;

/* The whole non-streamed response. */
char *nm_api_response(const nm_api_reply *r, const char *text, size_t len, const char *finish);
/* One SSE event "data: {chunk}\n\n": a text delta (first: a chat chunk that
 * also carries the assistant role), a finish reason with an empty delta
 * (text NULL), and with include_usage every chunk has "usage": null. */
char *nm_api_chunk(const nm_api_reply *r, const char *text, size_t len, bool first,
                   const char *finish, bool include_usage);
/* The usage chunk (empty choices) that ends a stream with include_usage. */
char *nm_api_usage_chunk(const nm_api_reply *r);
/* GET /v1/models: the one model. */
char *nm_api_models(const char *name, long long created);
/* {"error": {...}} as a body, and as an SSE event. */
char *nm_api_error_json(const nm_api_error *e);
char *nm_api_error_event(const nm_api_error *e);

#endif
