/* numalm serve: an OpenAI-compatible HTTP server over one loaded model.
 *
 * The HTTP side (libmicrohttpd, one polling thread + a small pool) starts
 * before the model is loaded, so /health answers 503 while it loads; the
 * caller then attaches the model and waits for SIGINT/SIGTERM:
 *
 *   nm_server *s = nm_server_start(&opts, &err);   // listening, 503
 *   ... load the model ...
 *   nm_server_attach(s, &model, &err);             // 200, serving
 *   nm_server_wait(s);                             // until a signal
 *   nm_server_free(s);
 *
 * One engine thread runs the model: requests wait in a bounded queue, take
 * one of `parallel` slots (a KV sequence each), and every decode step is one
 * batched pass over the weights for all active slots. */
#ifndef NM_SERVER_H
#define NM_SERVER_H

#include "numalm.h"

#include "common/error.h"
#include "numa/plan.h"
#include "runtime/chat.h"

#include <stddef.h>
#include <stdint.h>

typedef struct nm_server_opts {
    const char *host;      /* address to bind; "127.0.0.1" by default */
    int port;              /* 8080 by default; 0 picks a free port */
    int parallel;          /* slots (concurrent sequences) */
    int queue;             /* requests that may wait for a slot; more get 429 */
    const char *api_key;   /* NULL: no authentication */
    size_t max_body;       /* request bodies above this get 413 */
    int timeout_s;         /* idle (and slow upload) connections are closed */
    int grace_s;           /* on SIGTERM: how long running requests may finish */
    const char *port_file; /* if set, the bound port is written there */
} nm_server_opts;

/* The defaults above (queue 64, body 1 MiB, timeout 30 s, grace 5 s). */
nm_server_opts nm_server_opts_default(void);

/* What the server runs and reports. The session (opened to
 * NUMALM_STAGE_MODEL) must outlive the server. */
typedef struct nm_server_model {
    numalm_session *session;
    const char *name;  /* the id in /v1/models and in responses */
    nm_chat_kind chat; /* the template /v1/chat/completions formats with */
    /* bytes held on each NUMA node (OS index; -1: interleaved over all),
     * for /metrics: the weight arenas, and the KV caches of all slots */
    int n_weight, n_kv;
    int weight_node[NM_MAX_NODES], kv_node[NM_MAX_NODES];
    uint64_t weight_bytes[NM_MAX_NODES], kv_bytes[NM_MAX_NODES];
} nm_server_model;

typedef struct nm_server nm_server;

/* Blocks SIGINT and SIGTERM in the calling thread (every thread started
 * after inherits that; nm_server_wait takes them), binds and starts
 * answering. Logs the address to stderr. */
nm_server *nm_server_start(const nm_server_opts *o, nm_error *err);

/* Starts the engine on the model; /health turns 200. */
int nm_server_attach(nm_server *s, const nm_server_model *m, nm_error *err);

/* Waits for SIGINT/SIGTERM, then stops accepting, lets running requests
 * finish for grace_s, cancels the rest (streams end with an error event and
 * [DONE]), and returns once every connection is closed. */
void nm_server_wait(nm_server *s);

void nm_server_free(nm_server *s);

#endif
