/* HTTP with libmicrohttpd: a polling thread pool (epoll) that never blocks
 * on the model. A completion request is parsed and tokenized when its body
 * is in, queued for the engine, and its connection suspended; the engine
 * resumes it when there is output (a stream's next events, or the whole
 * answer). Clients that close the connection are noticed by the engine
 * (it polls their sockets each step) and their slots freed. */
#include "server_internal.h"

#include "common/util.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct conn_ctx {
    int endpoint;
    char *body;
    size_t len, cap;
    bool too_big;
    double t_start;
    nm_req *req;
} conn_ctx;

static const struct {
    const char *path;
    const char *method;
    int endpoint;
} ROUTES[] = {
    {"/v1/chat/completions", "POST", NM_EP_CHAT}, {"/v1/completions", "POST", NM_EP_COMPLETIONS},
    {"/v1/models", "GET", NM_EP_MODELS},          {"/health", "GET", NM_EP_HEALTH},
    {"/metrics", "GET", NM_EP_METRICS},
};

static int route(const char *url, const char **method) {
    for (size_t i = 0; i < sizeof ROUTES / sizeof ROUTES[0]; i++)
        if (!strcmp(url, ROUTES[i].path)) {
            *method = ROUTES[i].method;
            return ROUTES[i].endpoint;
        }
    *method = NULL;
    return NM_EP_OTHER;
}

/* ---- responses */

static enum MHD_Result send_body(nm_server *s, struct MHD_Connection *c, int endpoint, int status,
                                 char *body, size_t len, const char *type) {
    if (!body) {
        static const char oom[] = "{\"error\":{\"message\":\"out of memory\",\"type\":"
                                  "\"server_error\",\"param\":null,\"code\":null}}";
        status = 500;
        body = strdup(oom);
        len = body ? strlen(body) : 0;
        type = "application/json";
        if (!body)
            return MHD_NO;
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (status == 401)
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    pthread_mutex_lock(&s->lock);
    nm_metrics_request(s, endpoint, status);
    pthread_mutex_unlock(&s->lock);
    return ok;
}

static enum MHD_Result send_json(nm_server *s, struct MHD_Connection *c, int endpoint, int status,
                                 char *json) {
    return send_body(s, c, endpoint, status, json, json ? strlen(json) : 0, "application/json");
}

static enum MHD_Result send_error(nm_server *s, struct MHD_Connection *c, int endpoint,
                                  const nm_api_error *e) {
    return send_json(s, c, endpoint, e->status, nm_api_error_json(e));
}

static enum MHD_Result fail(nm_server *s, struct MHD_Connection *c, int endpoint, int status,
                            const char *type, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
static enum MHD_Result fail(nm_server *s, struct MHD_Connection *c, int endpoint, int status,
                            const char *type, const char *code, const char *fmt, ...) {
    nm_api_error e = {.status = status, .type = type, .code = code};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof e.message, fmt, ap);
    va_end(ap);
    return send_error(s, c, endpoint, &e);
}

/* ---- GET endpoints */

static enum MHD_Result get_endpoint(nm_server *s, struct MHD_Connection *c, int endpoint) {
    pthread_mutex_lock(&s->lock);
    bool ready = s->ready, stopping = s->stopping;
    char *body = NULL;
    size_t len = 0;
    if (endpoint == NM_EP_METRICS)
        body = nm_metrics_text(s, &len);
    pthread_mutex_unlock(&s->lock);
    if (endpoint == NM_EP_METRICS)
        return send_body(s, c, endpoint, 200, body, len, "text/plain; version=0.0.4");
    if (endpoint == NM_EP_HEALTH) {
        const char *st = stopping ? "stopping" : ready ? "ok" : "loading";
        char buf[64];
        snprintf(buf, sizeof buf, "{\"status\":\"%s\"}", st);
        return send_json(s, c, endpoint, ready && !stopping ? 200 : 503, strdup(buf));
    }
    if (!ready)
        return fail(s, c, endpoint, 503, "server_error", "model_loading",
                    "the model is still loading");
    return send_json(s, c, endpoint, 200, nm_api_models(s->m.name, s->started));
}

/* ---- POST: authentication, body, request */

/* Constant time in the key's length, so a wrong key's timing does not say
 * how much of it matched. */
static bool key_matches(const char *given, const char *key) {
    size_t n = strlen(key), g = strlen(given);
    unsigned char diff = (unsigned char)(n != g);
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(key[i] ^ (i < g ? given[i] : 0));
    return diff == 0;
}

static bool authorized(nm_server *s, struct MHD_Connection *c) {
    if (!s->o.api_key)
        return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7))
        return false;
    h += 7;
    while (*h == ' ')
        h++;
    return key_matches(h, s->o.api_key);
}

static enum MHD_Result unauthorized(nm_server *s, struct MHD_Connection *c, conn_ctx *cc) {
    bool given = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    return fail(s, c, cc->endpoint, 401, "invalid_request_error", "invalid_api_key",
                "%s API key: send the header 'Authorization: Bearer KEY' with the server's "
                "--api-key",
                given ? "incorrect" : "missing");
}

/* Checks made on a POST's headers, before any body byte is read. */
static enum MHD_Result check_headers(nm_server *s, struct MHD_Connection *c, conn_ctx *cc) {
    const char *cl =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl && strtoull(cl, NULL, 10) > s->o.max_body)
        return fail(s, c, cc->endpoint, 413, "invalid_request_error", "request_too_large",
                    "the body has %s bytes; this server takes at most %zu", cl, s->o.max_body);
    pthread_mutex_lock(&s->lock);
    bool ready = s->ready, stopping = s->stopping;
    pthread_mutex_unlock(&s->lock);
    if (stopping)
        return fail(s, c, cc->endpoint, 503, "server_error", NULL, "the server is shutting down");
    if (!ready)
        return fail(s, c, cc->endpoint, 503, "server_error", "model_loading",
                    "the model is still loading");
    return MHD_YES;
}

/* Keeps the body up to the limit; a chunked body that goes over it is
 * read to its end and answered 413. */
static int add_body(nm_server *s, conn_ctx *cc, const char *data, size_t n) {
    if (cc->too_big || cc->len + n > s->o.max_body) {
        cc->too_big = true;
        return 0;
    }
    char *b = nm_grow(cc->body, &cc->cap, cc->len + n, 4096, 1); /* and a NUL */
    if (!b)
        return -1;
    cc->body = b;
    memcpy(cc->body + cc->len, data, n);
    cc->len += n;
    return 0;
}

static uint64_t random_u64(void) {
    uint64_t x;
    if (getrandom(&x, sizeof x, GRND_NONBLOCK) != (ssize_t)sizeof x)
        x = (uint64_t)(nm_now() * 1e9) ^ ((uint64_t)getpid() << 32);
    return x;
}

/* The request for a parsed body: its prompt tokenized and checked against
 * the context. NULL with e. */
static nm_req *make_request(nm_server *s, struct MHD_Connection *c, nm_api_request *api,
                            nm_api_error *e) {
    nm_error err = {{0}};
    int32_t *ids = NULL;
    const nm_tokenizer *tok = s->m.session->tok;
    /* as llama-server: the chat through the model's template, a prompt
     * with BOS as the vocab asks and special pieces parsed */
    int n = api->kind == NM_API_CHAT
                ? nm_chat_tokenize(tok, s->m.chat, api->msgs, (size_t)api->n_msgs, true, &ids, &err)
                : nm_tokenize(tok, api->prompt, strlen(api->prompt),
                              NM_TOK_ADD_SPECIAL | NM_TOK_PARSE_SPECIAL, &ids, &err);
    int n_ctx = nm_model_n_ctx(s->m.session->model);
    if (n < 0) {
        nm_api_fail(e, 400, "invalid_request_error", NULL, NULL, "tokenizing the prompt: %s",
                    err.msg);
        return NULL;
    }
    for (int i = 0; i < api->n_bias; i++)
        if (api->bias_ids[i] >= nm_model_n_vocab(s->m.session->model)) {
            free(ids);
            nm_api_fail(e, 400, "invalid_request_error", NULL, "logit_bias",
                        "'logit_bias': token %d is outside the vocabulary of %d", api->bias_ids[i],
                        nm_model_n_vocab(s->m.session->model));
            return NULL;
        }
    if (n == 0 || n >= n_ctx) {
        free(ids);
        if (n == 0)
            nm_api_fail(e, 400, "invalid_request_error", NULL, "prompt",
                        "the prompt is empty and the vocabulary adds no BOS");
        else
            nm_api_fail(e, 400, "invalid_request_error", "context_length_exceeded",
                        api->kind == NM_API_CHAT ? "messages" : "prompt",
                        "this model's context is %d tokens per request (--ctx); the prompt "
                        "has %d, and at least one must be left for the answer",
                        n_ctx, n);
        return NULL;
    }
    nm_req *r = calloc(1, sizeof *r);
    if (!r) {
        free(ids);
        nm_api_fail(e, 500, "server_error", NULL, NULL, "out of memory");
        return NULL;
    }
    r->server = s;
    r->api = *api;
    memset(api, 0, sizeof *api);
    if (!r->api.seed_given)
        r->api.sampler.seed = random_u64();
    r->prompt = ids;
    r->n_prompt = n;
    snprintf(r->id, sizeof r->id, "%s-%016llx", r->api.kind == NM_API_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)random_u64());
    r->created = (long long)time(NULL);
    r->t_arrive = nm_now();
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    r->fd = ci ? ci->connect_fd : -1;
    r->conn = c;
    r->refs = 1; /* the connection's */
    pthread_mutex_lock(&s->lock);
    s->live++;
    pthread_mutex_unlock(&s->lock);
    return r;
}

/* ---- streaming: the response pulls events as the engine makes them */

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    nm_req *r = cls;
    nm_server *s = r->server;
    ssize_t n;
    pthread_mutex_lock(&s->lock);
    if (r->out_pos < r->out_len) {
        size_t k = r->out_len - r->out_pos < max ? r->out_len - r->out_pos : max;
        memcpy(buf, r->out + r->out_pos, k);
        r->out_pos += k;
        n = (ssize_t)k;
    } else if (r->out_end) {
        n = MHD_CONTENT_READER_END_OF_STREAM;
    } else if (!r->conn) {
        n = MHD_CONTENT_READER_END_WITH_ERROR;
    } else {
        /* nothing yet: sleep until the engine has more (nm_req_wake) */
        r->suspended = true;
        MHD_suspend_connection(r->conn);
        n = 0;
    }
    pthread_mutex_unlock(&s->lock);
    return n;
}

static void stream_free(void *cls) {
    nm_req *r = cls;
    nm_req_unref(r->server, r);
}

static enum MHD_Result start_stream(nm_server *s, struct MHD_Connection *c, conn_ctx *cc) {
    nm_req *r = cc->req;
    pthread_mutex_lock(&s->lock);
    r->refs++; /* the response's, dropped by stream_free */
    pthread_mutex_unlock(&s->lock);
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, r, stream_free);
    if (!resp) {
        nm_req_unref(s, r);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    enum MHD_Result ok = MHD_queue_response(c, 200, resp);
    MHD_destroy_response(resp);
    pthread_mutex_lock(&s->lock);
    nm_metrics_request(s, cc->endpoint, 200);
    pthread_mutex_unlock(&s->lock);
    return ok;
}

/* A non-streamed request: answered when done, else the connection sleeps
 * until the engine wakes it. */
static enum MHD_Result answer_or_wait(nm_server *s, struct MHD_Connection *c, conn_ctx *cc) {
    nm_req *r = cc->req;
    pthread_mutex_lock(&s->lock);
    if (r->state != NM_REQ_DONE) {
        r->suspended = true;
        MHD_suspend_connection(c);
        pthread_mutex_unlock(&s->lock);
        return MHD_YES;
    }
    pthread_mutex_unlock(&s->lock);
    if (r->failed)
        return send_error(s, c, cc->endpoint, &r->error);
    nm_api_reply rep = {.kind = r->api.kind,
                        .id = r->id,
                        .model = s->m.name,
                        .created = r->created,
                        .prompt_tokens = r->n_prompt,
                        .completion_tokens = r->n_gen};
    return send_json(s, c, cc->endpoint, 200,
                     nm_api_response(&rep, r->text ? r->text : "", r->text_len, r->finish));
}

static enum MHD_Result complete_body(nm_server *s, struct MHD_Connection *c, conn_ctx *cc) {
    if (cc->req)
        return answer_or_wait(s, c, cc); /* woken by the engine */
    if (cc->too_big)
        return fail(s, c, cc->endpoint, 413, "invalid_request_error", "request_too_large",
                    "the body is over this server's limit of %zu bytes", s->o.max_body);
    nm_api_request api;
    nm_api_error e = {0};
    nm_api_kind kind = cc->endpoint == NM_EP_CHAT ? NM_API_CHAT : NM_API_COMPLETION;
    if (nm_api_parse(kind, cc->body ? cc->body : "", cc->len, &api, &e) < 0)
        return send_error(s, c, cc->endpoint, &e);
    free(cc->body);
    cc->body = NULL;
    if (!(cc->req = make_request(s, c, &api, &e))) {
        nm_api_request_free(&api);
        return send_error(s, c, cc->endpoint, &e);
    }
    if (nm_engine_submit(s, cc->req, &e) < 0)
        return send_error(s, c, cc->endpoint, &e);
    return cc->req->api.stream ? start_stream(s, c, cc) : answer_or_wait(s, c, cc);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *data_size, void **con_cls) {
    (void)version;
    nm_server *s = cls;
    conn_ctx *cc = *con_cls;
    if (!cc) {
        if (!(cc = calloc(1, sizeof *cc)))
            return MHD_NO;
        *con_cls = cc;
        cc->t_start = nm_now();
        const char *want;
        cc->endpoint = route(url, &want);
        if (!want)
            return fail(s, c, cc->endpoint, 404, "invalid_request_error", "not_found",
                        "no endpoint %s %s (POST /v1/chat/completions, POST /v1/completions, "
                        "GET /v1/models, GET /health, GET /metrics)",
                        method, url);
        if (strcmp(method, want))
            return fail(s, c, cc->endpoint, 405, "invalid_request_error", "method_not_allowed",
                        "%s takes %s, not %s", url, want, method);
        if (cc->endpoint != NM_EP_HEALTH && !authorized(s, c))
            return unauthorized(s, c, cc);
        return strcmp(want, "POST") ? get_endpoint(s, c, cc->endpoint) : check_headers(s, c, cc);
    }
    if (*data_size) {
        /* a slow sender: the idle timeout alone would let one byte every
         * few seconds hold a connection forever */
        if (nm_now() - cc->t_start > s->o.timeout_s)
            return MHD_NO;
        if (add_body(s, cc, data, *data_size) < 0)
            return MHD_NO;
        *data_size = 0;
        return MHD_YES;
    }
    return complete_body(s, c, cc);
}

/* MHD is done with a request: the response went out, or the client left,
 * or the connection timed out. */
static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)c, (void)toe;
    nm_server *s = cls;
    conn_ctx *cc = *con_cls;
    if (!cc)
        return;
    if (cc->req) {
        pthread_mutex_lock(&s->lock);
        cc->req->conn = NULL;
        cc->req->suspended = false;
        if (cc->req->state != NM_REQ_DONE) {
            cc->req->cancel = true;
            pthread_cond_broadcast(&s->wake);
        }
        nm_req_unref_locked(s, cc->req);
        pthread_mutex_unlock(&s->lock);
    }
    free(cc->body);
    free(cc);
    *con_cls = NULL;
}

/* ---- the daemon */

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n')
        msg[--n] = 0;
    fprintf(stderr, "numalm serve: http: %s\n", msg);
}

static bool is_loopback(const struct sockaddr *a) {
    if (a->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)a)->sin_addr.s_addr) >> 24) == 127;
    if (a->sa_family == AF_INET6) {
        const struct in6_addr *x = &((const struct sockaddr_in6 *)a)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(x) || (IN6_IS_ADDR_V4MAPPED(x) && x->s6_addr[12] == 127);
    }
    return false;
}

static void say_where(const nm_server *s, bool loopback) {
    const char *v6 = strchr(s->host, ':') ? "[" : "", *v6e = *v6 ? "]" : "";
    if (loopback)
        fprintf(stderr,
                "numalm serve: listening on http://%s%s%s:%d, loopback only: other machines "
                "cannot connect (--host 0.0.0.0 or an interface's address to accept them)\n",
                v6, s->host, v6e, s->port);
    else
        fprintf(stderr,
                "numalm serve: listening on http://%s%s%s:%d, reachable from other machines%s\n",
                v6, s->host, v6e, s->port,
                s->o.api_key ? "" : "; no --api-key: anyone who can reach it can use it");
}

int nm_http_start(nm_server *s, nm_error *err) {
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", s->o.port);
    int gai = getaddrinfo(s->host, port, &hints, &ai);
    if (gai != 0)
        return nm_fail(err, "--host %s: %s", s->host, gai_strerror(gai));
    unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    s->started = (long long)time(NULL);
    bool loopback = is_loopback(ai->ai_addr);
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_SOCK_ADDR, ai->ai_addr, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)2,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->o.timeout_s, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)(s->o.parallel + s->o.queue + 64), MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!s->daemon)
        return nm_fail(err, "cannot listen on %s port %d (in use? see the message above)", s->host,
                       s->o.port);
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : s->o.port;
    say_where(s, loopback);
    if (s->o.port_file) {
        FILE *f = fopen(s->o.port_file, "w");
        if (!f || fprintf(f, "%d\n", s->port) < 0 || fclose(f) != 0)
            return nm_fail(err, "cannot write the port to %s", s->o.port_file);
    }
    return 0;
}

void nm_http_quiesce(nm_server *s) {
    if (!s->daemon || s->quiesced)
        return;
    MHD_socket fd = MHD_quiesce_daemon(s->daemon);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    s->quiesced = true;
}

void nm_http_stop(nm_server *s) {
    if (!s->daemon)
        return;
    /* MHD must not be stopped with connections asleep: wake them all (the
     * engine has ended every request, so each has its last output) */
    pthread_mutex_lock(&s->lock);
    s->stopping = true;
    pthread_mutex_unlock(&s->lock);
    MHD_stop_daemon(s->daemon);
    s->daemon = NULL;
}
