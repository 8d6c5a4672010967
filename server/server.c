/* The server's life: start (HTTP up, /health 503), attach (engine up,
 * 200), wait for a signal, drain, stop. */
#include "server_internal.h"

#include "common/util.h"

#include <microhttpd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

nm_server_opts nm_server_opts_default(void) {
    return (nm_server_opts){.host = "127.0.0.1",
                            .port = 8080,
                            .parallel = 1,
                            .queue = 64,
                            .max_body = 1 << 20,
                            .timeout_s = 30,
                            .grace_s = 5};
}

const int nm_status_codes[NM_STATUS_KINDS] = {200, 400, 401, 404, 405, 408, 413, 429, 500, 503};

void nm_metrics_request(nm_server *s, int endpoint, int status) {
    int k = NM_STATUS_KINDS - 1;
    for (int i = 0; i < NM_STATUS_KINDS; i++)
        if (nm_status_codes[i] == status)
            k = i;
    s->metrics.requests[endpoint][k]++;
}

static void req_free(nm_req *r) {
    nm_api_request_free(&r->api);
    free(r->prompt);
    free(r->out);
    free(r->text);
    free(r);
}

void nm_req_unref_locked(nm_server *s, nm_req *r) {
    if (--r->refs > 0)
        return;
    req_free(r);
    s->live--;
    pthread_cond_broadcast(&s->wake);
}

void nm_req_unref(nm_server *s, nm_req *r) {
    pthread_mutex_lock(&s->lock);
    nm_req_unref_locked(s, r);
    pthread_mutex_unlock(&s->lock);
}

int nm_req_out(nm_req *r, const char *bytes, size_t n) {
    if (r->out_pos == r->out_len)
        r->out_pos = r->out_len = 0;
    char *b = nm_grow(r->out, &r->out_cap, r->out_len + n, 1024, 1);
    if (!b)
        return -1;
    r->out = b;
    memcpy(r->out + r->out_len, bytes, n);
    r->out_len += n;
    return 0;
}

void nm_req_wake(nm_req *r) {
    if (r->suspended && r->conn) {
        r->suspended = false;
        MHD_resume_connection(r->conn);
    }
}

nm_server *nm_server_start(const nm_server_opts *o, nm_error *err) {
    nm_server *s = nm_calloc(1, sizeof *s, "the server", err);
    if (!s)
        return NULL;
    s->o = *o;
    snprintf(s->host, sizeof s->host, "%s", o->host ? o->host : "127.0.0.1");
    s->o.host = s->host;
    if (s->o.parallel < 1 || s->o.queue < 0 || s->o.max_body < 16 || s->o.timeout_s < 1) {
        nm_fail(err, "serve: parallel %d, queue %d, body limit %zu or timeout %d out of range",
                s->o.parallel, s->o.queue, s->o.max_body, s->o.timeout_s);
        free(s);
        return NULL;
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake, NULL);
    /* Every thread started from here on inherits the mask; nm_server_wait
     * takes the signals with sigwait. A peer that closes its socket must
     * not kill the process either (MHD sends with MSG_NOSIGNAL; this also
     * covers anything else). */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (nm_http_start(s, err) < 0) {
        nm_server_free(s);
        return NULL;
    }
    return s;
}

int nm_server_attach(nm_server *s, const nm_server_model *m, nm_error *err) {
    pthread_mutex_lock(&s->lock);
    s->m = *m;
    pthread_mutex_unlock(&s->lock);
    if (nm_engine_start(s, err) < 0)
        return -1;
    pthread_mutex_lock(&s->lock);
    s->ready = true;
    pthread_mutex_unlock(&s->lock);
    return 0;
}

static void deadline_in(struct timespec *ts, double seconds) {
    clock_gettime(CLOCK_REALTIME, ts);
    double t = (double)ts->tv_sec + ts->tv_nsec / 1e9 + seconds;
    ts->tv_sec = (time_t)t;
    ts->tv_nsec = (long)((t - (double)ts->tv_sec) * 1e9);
}

/* Waits until every request is freed (its connection done), at most
 * `seconds`. True when none is left. */
static bool wait_requests(nm_server *s, double seconds) {
    struct timespec ts;
    deadline_in(&ts, seconds);
    pthread_mutex_lock(&s->lock);
    while (s->live > 0)
        if (pthread_cond_timedwait(&s->wake, &s->lock, &ts) != 0)
            break;
    bool none = s->live == 0;
    pthread_mutex_unlock(&s->lock);
    return none;
}

void nm_server_wait(nm_server *s) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    int sig = 0;
    sigwait(&set, &sig);
    pthread_mutex_lock(&s->lock);
    int running = s->running, queued = s->queued;
    s->stopping = true;
    pthread_cond_broadcast(&s->wake);
    pthread_mutex_unlock(&s->lock);
    fprintf(stderr,
            "numalm serve: %s: not accepting connections; %d running, %d queued (queued get "
            "503; running may finish for %d s)\n",
            sig == SIGINT ? "SIGINT" : "SIGTERM", running, queued, s->o.grace_s);
    nm_http_quiesce(s);
    if (!wait_requests(s, s->o.grace_s)) {
        pthread_mutex_lock(&s->lock);
        s->cancel_all = true;
        pthread_cond_broadcast(&s->wake);
        pthread_mutex_unlock(&s->lock);
        fprintf(stderr, "numalm serve: grace time over: ending the requests still running\n");
        /* the engine ends them at its next step; their clients then get
         * the rest of the stream; one that does not read is closed */
        if (!wait_requests(s, s->o.timeout_s))
            fprintf(stderr, "numalm serve: %d connections did not finish; closing them\n", s->live);
    }
}

void nm_server_free(nm_server *s) {
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->stopping = s->cancel_all = s->engine_quit = true;
    pthread_cond_broadcast(&s->wake);
    pthread_mutex_unlock(&s->lock);
    nm_engine_join(s);
    nm_http_stop(s);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->lock);
    free(s);
}
