/* The engine: one thread owns the model. Requests wait in a FIFO queue and
 * take free slots (a KV sequence each) between steps; each step is one
 * batched pass over the weights carrying the next token of every decoding
 * slot plus as many prompt tokens of newly joined slots as the batch has
 * room for. After the pass, each slot with logits samples its token, and
 * the text that can no longer change goes to its connection. */
#include "server_internal.h"

#include "common/util.h"
#include "runtime/sampler.h"

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct slot {
    nm_req *req; /* NULL: free */
    nm_sampler *smp;
    nm_gen_text text;
    const char *stops[NM_MAX_STOP];
    int n_past;   /* positions in its KV sequence */
    int n_fed;    /* prompt tokens evaluated */
    int32_t next; /* the sampled token to feed next */
    int32_t prev; /* the token before it, for detokenizing */
    bool sent_role;
    uint64_t admitted; /* admission order: prompts go oldest first */
    char *events;      /* stream events made this step (not yet under lock) */
    size_t ev_len, ev_cap;
} slot;

typedef struct engine {
    nm_server *s;
    nm_model *model;
    int n_slots, n_batch, n_ctx, n_vocab;
    int chunk; /* prompt tokens per pass and slot: n_batch - n_slots */
    uint64_t n_admitted;
    int32_t *eog; /* every token that ends a text (ignore_eos bans them) */
    int n_eog;
    char *piece; /* one token's text */
    size_t piece_cap;
    slot *slots;
    nm_batch_tok *batch;
    int *batch_slot; /* the slot of each logits row */
    float *logits;
} engine;

/* ---- output of one slot, made without the lock */

static void ev_add(slot *sl, char *event) {
    if (!event)
        return; /* out of memory: the chunk is lost, the stream goes on */
    size_t n = strlen(event);
    char *b = nm_grow(sl->events, &sl->ev_cap, sl->ev_len + n, 512, 1);
    if (!b) {
        free(event);
        return;
    }
    sl->events = b;
    memcpy(sl->events + sl->ev_len, event, n);
    sl->ev_len += n;
    free(event);
}

static nm_api_reply reply_of(const engine *e, const slot *sl) {
    const nm_req *r = sl->req;
    return (nm_api_reply){.kind = r->api.kind,
                          .id = r->id,
                          .model = e->s->m.name,
                          .created = r->created,
                          .prompt_tokens = r->n_prompt,
                          .completion_tokens = r->n_gen};
}

/* Stream: the text that became final since the last step. */
static void stream_text(engine *e, slot *sl, bool final) {
    nm_req *r = sl->req;
    if (!r->api.stream)
        return;
    nm_api_reply rep = reply_of(e, sl);
    if (!sl->sent_role && r->api.kind == NM_API_CHAT) {
        ev_add(sl, nm_api_chunk(&rep, "", 0, true, NULL, r->api.include_usage));
        sl->sent_role = true;
    }
    size_t end = nm_gen_text_ready_end(&sl->text, final);
    if (end > sl->text.sent) {
        ev_add(sl, nm_api_chunk(&rep, sl->text.buf + sl->text.sent, end - sl->text.sent, false,
                                NULL, r->api.include_usage));
        sl->text.sent = end;
    }
}

/* ---- slots */

static int slot_start(engine *e, slot *sl, nm_req *r) {
    memset(sl, 0, sizeof *sl);
    sl->req = r;
    sl->admitted = ++e->n_admitted;
    int n = 0;
    for (int i = 0; i < r->api.n_stop; i++)
        sl->stops[n++] = r->api.stop[i];
    nm_gen_text_init(&sl->text, sl->stops, n);
    sl->prev = r->n_prompt ? r->prompt[r->n_prompt - 1] : -1;
    sl->smp = nm_sampler_new(&r->api.sampler, e->n_vocab);
    return sl->smp ? 0 : -1;
}

/* Ends a slot's request (lock held): its last events or its whole text go
 * to the connection, which is woken; the slot is free after. finish NULL:
 * failed with r->error. */
static void slot_end_locked(engine *e, slot *sl, const char *finish) {
    nm_req *r = sl->req;
    nm_server *s = e->s;
    if (r->api.stream) {
        if (sl->ev_len)
            nm_req_out(r, sl->events, sl->ev_len);
        char *tail = NULL;
        if (finish) {
            nm_api_reply rep = reply_of(e, sl);
            char *fin = nm_api_chunk(&rep, NULL, 0, false, finish, r->api.include_usage);
            if (fin)
                nm_req_out(r, fin, strlen(fin));
            free(fin);
            if (r->api.include_usage)
                tail = nm_api_usage_chunk(&rep);
        } else {
            tail = nm_api_error_event(&r->error);
        }
        if (tail)
            nm_req_out(r, tail, strlen(tail));
        free(tail);
        static const char done[] = "data: [DONE]\n\n";
        nm_req_out(r, done, sizeof done - 1);
        r->out_end = true;
    } else if (finish) {
        r->text = malloc(sl->text.len + 1);
        if (r->text) {
            memcpy(r->text, sl->text.buf, sl->text.len);
            r->text_len = sl->text.len;
        } else {
            r->failed = true;
            nm_api_fail(&r->error, 500, "server_error", NULL, NULL, "out of memory");
        }
    }
    r->finish = finish;
    r->failed = r->failed || !finish;
    r->state = NM_REQ_DONE;
    s->running--;
    s->metrics.prompt_tokens += (uint64_t)r->n_prompt;
    nm_req_wake(r);
    nm_req_unref_locked(s, r);
    nm_sampler_free(sl->smp);
    nm_gen_text_free(&sl->text);
    free(sl->events);
    memset(sl, 0, sizeof *sl);
}

static void slot_fail_locked(engine *e, slot *sl, int status, const char *type, const char *msg) {
    nm_api_fail(&sl->req->error, status, type, NULL, NULL, "%s", msg);
    slot_end_locked(e, sl, NULL);
}

/* ---- admission and cancellation (lock held) */

static void fail_queued_locked(nm_server *s, nm_req *r, int status, const char *msg) {
    nm_api_fail(&r->error, status, "server_error", NULL, NULL, "%s", msg);
    r->failed = true;
    r->state = NM_REQ_DONE;
    if (r->api.stream) {
        char *ev = nm_api_error_event(&r->error);
        if (ev)
            nm_req_out(r, ev, strlen(ev));
        free(ev);
        nm_req_out(r, "data: [DONE]\n\n", 14);
        r->out_end = true;
    }
    nm_req_wake(r);
    nm_req_unref_locked(s, r);
}

/* A client that closed its socket: its request stops at this step. */
static void poll_hangups_locked(engine *e) {
    struct pollfd pf[e->n_slots];
    int idx[e->n_slots], n = 0;
    for (int i = 0; i < e->n_slots; i++) {
        nm_req *r = e->slots[i].req;
        if (r && r->conn && !r->cancel && r->fd >= 0) {
            pf[n] = (struct pollfd){.fd = r->fd, .events = POLLRDHUP};
            idx[n++] = i;
        }
    }
    if (n && poll(pf, (nfds_t)n, 0) > 0)
        for (int k = 0; k < n; k++)
            if (pf[k].revents & (POLLRDHUP | POLLHUP | POLLERR))
                e->slots[idx[k]].req->cancel = true;
}

static bool hung_up(const nm_req *r) {
    if (!r->conn || r->fd < 0)
        return true;
    struct pollfd pf = {.fd = r->fd, .events = POLLRDHUP};
    return poll(&pf, 1, 0) > 0 && (pf.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static void admit_locked(engine *e) {
    nm_server *s = e->s;
    while (s->queue_head) {
        nm_req *r = s->queue_head;
        if (s->stopping) {
            s->queue_head = r->next;
            s->queued--;
            fail_queued_locked(s, r, 503, "the server is shutting down");
            continue;
        }
        if (r->cancel || hung_up(r)) {
            s->queue_head = r->next;
            s->queued--;
            s->metrics.cancelled++;
            fail_queued_locked(s, r, 499, "the client closed the connection");
            continue;
        }
        int free_slot = -1;
        for (int i = 0; i < e->n_slots && free_slot < 0; i++)
            if (!e->slots[i].req)
                free_slot = i;
        if (free_slot < 0)
            break;
        s->queue_head = r->next;
        s->queued--;
        r->next = NULL;
        r->state = NM_REQ_RUNNING;
        s->running++;
        if (slot_start(e, &e->slots[free_slot], r) < 0)
            slot_fail_locked(e, &e->slots[free_slot], 500, "server_error",
                             "out of memory for the sampler");
    }
    if (!s->queue_head)
        s->queue_tail = NULL;
}

static void cancel_locked(engine *e) {
    nm_server *s = e->s;
    poll_hangups_locked(e);
    for (int i = 0; i < e->n_slots; i++) {
        slot *sl = &e->slots[i];
        if (!sl->req)
            continue;
        if (sl->req->cancel) {
            s->metrics.cancelled++;
            slot_fail_locked(e, sl, 499, "server_error", "the client closed the connection");
        } else if (s->cancel_all) {
            slot_fail_locked(e, sl, 503, "server_error",
                             "the server is shutting down: generation stopped");
        }
    }
}

static bool has_work_locked(const engine *e) {
    if (e->s->queue_head)
        return true;
    for (int i = 0; i < e->n_slots; i++)
        if (e->slots[i].req)
            return true;
    return false;
}

/* ---- a step */

/* The batch: each decoding slot's next token, then whole prompt chunks of
 * the joining slots, oldest first, while they fit. A prompt is cut into
 * chunks of e->chunk tokens whatever else runs, so a request's passes (and
 * so its logits, bit for bit) do not depend on the other requests.
 * Returns the token count; *n_rows the logits rows. */
static int build_batch(engine *e, int *n_rows) {
    int n = 0, rows = 0;
    for (int i = 0; i < e->n_slots; i++) {
        slot *sl = &e->slots[i];
        if (sl->req && sl->n_fed == sl->req->n_prompt) {
            e->batch[n++] = (nm_batch_tok){sl->next, i, sl->n_past, true};
            e->batch_slot[rows++] = i;
        }
    }
    uint64_t after = 0; /* admission order of the last slot taken */
    for (;;) {
        slot *next = NULL;
        int idx = -1;
        for (int i = 0; i < e->n_slots; i++) {
            slot *sl = &e->slots[i];
            if (sl->req && sl->n_fed < sl->req->n_prompt && sl->admitted > after &&
                (!next || sl->admitted < next->admitted))
                next = sl, idx = i;
        }
        if (!next)
            break;
        after = next->admitted;
        int take = next->req->n_prompt - next->n_fed;
        take = take < e->chunk ? take : e->chunk;
        if (n + take > e->n_batch)
            continue; /* the next step has room */
        for (int k = 0; k < take; k++) {
            int p = next->n_fed + k;
            bool last = p == next->req->n_prompt - 1;
            e->batch[n++] = (nm_batch_tok){next->req->prompt[p], idx, p, last};
            if (last)
                e->batch_slot[rows++] = idx;
        }
    }
    *n_rows = rows;
    return n;
}

/* After the pass: positions advance for every token that was in it. */
static void advance(engine *e, int n) {
    for (int k = 0; k < n; k++) {
        slot *sl = &e->slots[e->batch[k].seq];
        sl->n_past = e->batch[k].pos + 1;
        if (sl->n_fed < sl->req->n_prompt)
            sl->n_fed++;
    }
}

/* Samples a slot's token from its logits row; returns its finish reason
 * when the request is complete, else NULL. */
static const char *take_token(engine *e, slot *sl, float *logits) {
    nm_req *r = sl->req;
    const nm_tokenizer *tok = e->s->m.session->tok;
    bool chat = r->api.kind == NM_API_CHAT;
    for (int i = 0; i < r->api.n_bias; i++)
        logits[r->api.bias_ids[i]] += r->api.bias[i];
    if (r->api.ignore_eos)
        for (int i = 0; i < e->n_eog; i++)
            logits[e->eog[i]] = -INFINITY;
    int32_t id = nm_sample(sl->smp, logits);
    if (chat ? nm_chat_is_stop(tok, e->s->m.chat, id) : nm_token_is_eog(tok, id))
        return "stop";
    size_t n = nm_token_to_text(tok, id, sl->prev, e->piece, e->piece_cap);
    const char *piece = e->piece;
    sl->prev = id;
    sl->next = id;
    r->n_gen++;
    int stopped = nm_gen_text_add(&sl->text, piece, n);
    if (stopped < 0)
        return "length"; /* out of memory for the text: end it here */
    if (stopped)
        return "stop";
    if (r->api.max_tokens > 0 && r->n_gen >= r->api.max_tokens)
        return "length";
    if (sl->n_past >= e->n_ctx)
        return "length"; /* the sampled token has no position left */
    return NULL;
}

static void step(engine *e) {
    nm_server *s = e->s;
    int rows, n = build_batch(e, &rows);
    if (n == 0)
        return;
    nm_error err = {{0}};
    double t0 = nm_now();
    int rc = nm_model_eval_batch(e->model, e->batch, n, e->logits, &err);
    double dt = nm_now() - t0;
    const char *finish[e->n_slots];
    memset(finish, 0, sizeof finish);
    int n_new = 0;
    if (rc == 0) {
        advance(e, n);
        for (int k = 0; k < rows; k++) {
            slot *sl = &e->slots[e->batch_slot[k]];
            int before = sl->req->n_gen;
            finish[e->batch_slot[k]] = take_token(e, sl, e->logits + (size_t)k * e->n_vocab);
            n_new += sl->req->n_gen - before;
            stream_text(e, sl, finish[e->batch_slot[k]] != NULL);
        }
    }
    double now = nm_now();
    pthread_mutex_lock(&s->lock);
    nm_metrics_rate_sample(&s->metrics, t0);
    s->metrics.steps++;
    s->metrics.step_tokens += (uint64_t)n;
    s->metrics.decode_s += dt;
    s->metrics.completion_tokens += (uint64_t)n_new;
    for (int i = 0; i < e->n_slots; i++) {
        slot *sl = &e->slots[i];
        if (!sl->req)
            continue;
        if (rc < 0) {
            slot_fail_locked(e, sl, 500, "server_error", err.msg);
            continue;
        }
        nm_req *r = sl->req;
        if (r->n_gen == 1 && r->t_first == 0) {
            r->t_first = now;
            s->metrics.ttft_sum += now - r->t_arrive;
            s->metrics.ttft_count++;
        }
        if (finish[i]) {
            slot_end_locked(e, sl, finish[i]);
            continue;
        }
        if (sl->ev_len) {
            nm_req_out(r, sl->events, sl->ev_len);
            sl->ev_len = 0;
            nm_req_wake(r);
        }
    }
    pthread_mutex_unlock(&s->lock);
}

static void end_all_locked(engine *e) {
    for (int i = 0; i < e->n_slots; i++)
        if (e->slots[i].req)
            slot_fail_locked(e, &e->slots[i], 503, "server_error", "the server stopped");
    while (e->s->queue_head) {
        nm_req *r = e->s->queue_head;
        e->s->queue_head = r->next;
        e->s->queued--;
        fail_queued_locked(e->s, r, 503, "the server stopped");
    }
    e->s->queue_tail = NULL;
}

static void *engine_main(void *arg) {
    engine *e = arg;
    nm_server *s = e->s;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (!s->engine_quit && !has_work_locked(e))
            pthread_cond_wait(&s->wake, &s->lock);
        if (s->engine_quit)
            break;
        cancel_locked(e);
        admit_locked(e);
        pthread_mutex_unlock(&s->lock);
        step(e);
        pthread_mutex_lock(&s->lock);
    }
    end_all_locked(e);
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* ---- start, submit, join */

static void engine_free(engine *e) {
    free(e->eog);
    free(e->piece);
    free(e->logits);
    free(e->slots);
    free(e->batch);
    free(e->batch_slot);
    free(e);
}

int nm_engine_start(nm_server *s, nm_error *err) {
    engine *e = nm_calloc(1, sizeof *e, "the engine", err);
    if (!e)
        return -1;
    e->s = s;
    e->model = s->m.session->model;
    e->n_slots = s->o.parallel;
    e->n_batch = nm_model_n_batch(e->model);
    e->chunk = e->n_batch - e->n_slots;
    e->n_ctx = nm_model_n_ctx(e->model);
    e->n_vocab = nm_model_n_vocab(e->model);
    const nm_tokenizer *tok = s->m.session->tok;
    if (!(e->eog = nm_calloc((size_t)e->n_vocab + 1, sizeof *e->eog, "the end tokens", err))) {
        engine_free(e);
        return -1;
    }
    for (int32_t id = 0; id < e->n_vocab; id++)
        if (nm_token_is_eog(tok, id) || nm_chat_is_stop(tok, s->m.chat, id))
            e->eog[e->n_eog++] = id;
    e->piece_cap = nm_tokenizer_max_text(tok);
    if (nm_model_n_seq(e->model) < e->n_slots || e->chunk < 1) {
        engine_free(e);
        return nm_fail(err,
                       "serve: the model holds %d sequences in batches of %d tokens: not "
                       "enough for %d slots",
                       nm_model_n_seq(s->m.session->model), nm_model_n_batch(s->m.session->model),
                       s->o.parallel);
    }
    e->piece = calloc(e->piece_cap + 1, 1);
    e->slots = calloc((size_t)e->n_slots, sizeof *e->slots);
    e->batch = calloc((size_t)e->n_batch, sizeof *e->batch);
    e->batch_slot = calloc((size_t)e->n_slots, sizeof *e->batch_slot);
    e->logits = malloc((size_t)e->n_slots * (size_t)e->n_vocab * sizeof(float));
    if (!e->piece || !e->slots || !e->batch || !e->batch_slot || !e->logits) {
        engine_free(e);
        return nm_fail(err, "serve: out of memory for %d slots (batches, %d x %d logits)",
                       s->o.parallel, s->o.parallel, nm_model_n_vocab(s->m.session->model));
    }
    s->engine_ctx = e;
    /* The thread that runs the model is the pool's worker 0, which the pool
     * pinned (the caller: it opened the session) to the first CPU of the
     * first node, where that worker's scratch lives. The engine takes over
     * that pinning; the caller only waits for signals after this. */
    pthread_attr_t attr;
    cpu_set_t cpus;
    pthread_attr_init(&attr);
    if (pthread_getaffinity_np(pthread_self(), sizeof cpus, &cpus) == 0)
        pthread_attr_setaffinity_np(&attr, sizeof cpus, &cpus);
    int rc = pthread_create(&s->engine, &attr, engine_main, e);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        s->engine_ctx = NULL;
        engine_free(e);
        return nm_fail(err, "serve: cannot start the engine thread");
    }
    s->engine_started = true;
    return 0;
}

void nm_engine_join(nm_server *s) {
    if (!s->engine_started)
        return;
    pthread_join(s->engine, NULL);
    s->engine_started = false;
    engine_free(s->engine_ctx);
    s->engine_ctx = NULL;
}

int nm_engine_submit(nm_server *s, nm_req *r, nm_api_error *e) {
    pthread_mutex_lock(&s->lock);
    int rc = 0;
    if (s->stopping)
        rc = nm_api_fail(e, 503, "server_error", NULL, NULL, "the server is shutting down");
    else if (s->running + s->queued >= s->o.parallel + s->o.queue)
        rc = nm_api_fail(e, 429, "rate_limit_error", "queue_full", NULL,
                         "%d requests are running and %d waiting, the most this server "
                         "queues (--parallel %d, --queue %d); retry later",
                         s->running, s->queued, s->o.parallel, s->o.queue);
    if (rc == 0) {
        r->refs++;
        r->state = NM_REQ_QUEUED;
        if (s->queue_tail)
            s->queue_tail->next = r;
        else
            s->queue_head = r;
        s->queue_tail = r;
        s->queued++;
        pthread_cond_broadcast(&s->wake);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}
