/* Private to server/: the request, the engine and the server state shared
 * by the HTTP threads (http.c) and the engine thread (engine.c). */
#ifndef NM_SERVER_INTERNAL_H
#define NM_SERVER_INTERNAL_H

#include "openai.h"
#include "server.h"

#include "api/session_internal.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct MHD_Connection;
struct MHD_Daemon;

typedef enum nm_req_state { NM_REQ_QUEUED, NM_REQ_RUNNING, NM_REQ_DONE } nm_req_state;

/* One completion request. Created by an HTTP thread with its prompt
 * tokenized; shared with the engine through s->lock (fields marked "lock");
 * freed when its last reference (the connection's, the engine's, a
 * streaming response's) goes. */
typedef struct nm_req {
    struct nm_server *server;
    nm_api_request api;
    int32_t *prompt;
    int n_prompt;
    char id[48];
    long long created;
    double t_arrive;
    int fd; /* the client socket: polled for hang-ups while conn is set */

    /* lock */
    struct MHD_Connection *conn; /* NULL once MHD is done with it */
    int refs;
    bool suspended; /* its connection waits for output */
    nm_req_state state;
    bool cancel; /* the client went away: stop at the next step */
    char *out;   /* stream: SSE bytes not yet handed to MHD */
    size_t out_len, out_pos, out_cap;
    bool out_end; /* stream: out holds the last event ([DONE]) */
    char *text;   /* done, not streamed: the whole text */
    size_t text_len;
    const char *finish; /* "stop" / "length" */
    bool failed;        /* error holds why */
    nm_api_error error;
    int n_gen;
    double t_first;      /* first token sampled, 0 before */
    struct nm_req *next; /* queue link */
} nm_req;

/* Counters for /metrics (lock). */
enum {
    NM_EP_CHAT,
    NM_EP_COMPLETIONS,
    NM_EP_MODELS,
    NM_EP_HEALTH,
    NM_EP_METRICS,
    NM_EP_OTHER,
    NM_EP_COUNT
};
#define NM_STATUS_KINDS 10
#define NM_RATE_SAMPLES 64

typedef struct nm_metrics {
    uint64_t requests[NM_EP_COUNT][NM_STATUS_KINDS];
    uint64_t prompt_tokens, completion_tokens;
    uint64_t steps, step_tokens; /* batched passes, and tokens they carried */
    double decode_s;             /* time in passes */
    double ttft_sum;             /* time to first token, summed */
    uint64_t ttft_count;
    uint64_t cancelled; /* requests stopped because the client left */
    /* (time, completion tokens) samples for a recent tokens/s */
    double rate_t[NM_RATE_SAMPLES];
    uint64_t rate_n[NM_RATE_SAMPLES];
    int rate_head, rate_count;
} nm_metrics;

/* The status codes counted, in the order of nm_metrics.requests. */
extern const int nm_status_codes[NM_STATUS_KINDS];

struct nm_server {
    nm_server_opts o;
    char host[64];
    int port;
    struct MHD_Daemon *daemon;
    bool quiesced;
    long long started; /* Unix seconds, the "created" of /v1/models */

    pthread_mutex_t lock;
    pthread_cond_t wake; /* the engine: work arrived; waiters: a request ended */
    bool ready;          /* model attached */
    bool stopping;       /* no new requests */
    bool cancel_all;     /* grace time over: end what is running */
    bool engine_quit;
    nm_server_model m;
    nm_req *queue_head, *queue_tail;
    int queued;
    int running;
    int live; /* requests not yet freed */
    nm_metrics metrics;

    pthread_t engine;
    bool engine_started;
    void *engine_ctx;
};

/* ---- requests (server.c) */
void nm_req_unref(nm_server *s, nm_req *r); /* takes the lock */
void nm_req_unref_locked(nm_server *s, nm_req *r);
/* Appends bytes to r->out (lock held). -1 on out of memory. */
int nm_req_out(nm_req *r, const char *bytes, size_t n);
/* The connection may go on: resume it if it waits (lock held). */
void nm_req_wake(nm_req *r);
/* Counts a finished HTTP request (lock held). */
void nm_metrics_request(nm_server *s, int endpoint, int status);

/* ---- the engine (engine.c) */
/* Queues r (its prompt tokenized). 0, or -1 with e: 429 when the queue is
 * full, 503 when stopping. Takes a reference for the engine. */
int nm_engine_submit(nm_server *s, nm_req *r, nm_api_error *e);
int nm_engine_start(nm_server *s, nm_error *err);
void nm_engine_join(nm_server *s);

/* ---- HTTP (http.c) */
int nm_http_start(nm_server *s, nm_error *err);
/* Stops accepting connections (the listening socket closes). */
void nm_http_quiesce(nm_server *s);
void nm_http_stop(nm_server *s);

/* ---- /metrics (metrics.c): Prometheus text, malloc'd (lock held). */
char *nm_metrics_text(nm_server *s, size_t *len);
/* Records (now, completion tokens so far) for the recent tokens/s: called
 * at the start of each step, at most one sample per RATE_SPACING_S. */
void nm_metrics_rate_sample(nm_metrics *mt, double now);

#endif
