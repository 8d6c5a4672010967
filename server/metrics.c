/* GET /metrics: Prometheus text format 0.0.4. */
#include "server_internal.h"

#include "common/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* tokens/s is measured over about this many recent seconds */
#define RATE_WINDOW_S 10.0
#define RATE_SPACING_S (2 * RATE_WINDOW_S / NM_RATE_SAMPLES)

void nm_metrics_rate_sample(nm_metrics *mt, double now) {
    int last = (mt->rate_head + NM_RATE_SAMPLES - 1) % NM_RATE_SAMPLES;
    if (mt->rate_count && now - mt->rate_t[last] < RATE_SPACING_S)
        return;
    mt->rate_t[mt->rate_head] = now;
    mt->rate_n[mt->rate_head] = mt->completion_tokens;
    mt->rate_head = (mt->rate_head + 1) % NM_RATE_SAMPLES;
    if (mt->rate_count < NM_RATE_SAMPLES)
        mt->rate_count++;
}

/* Completion tokens per second since the newest sample at least
 * RATE_WINDOW_S old (or the oldest one); idle time counts, so the rate
 * falls to 0 when nothing runs. */
static double recent_rate(const nm_metrics *mt, double now) {
    if (!mt->rate_count)
        return 0;
    int oldest = (mt->rate_head + NM_RATE_SAMPLES - mt->rate_count) % NM_RATE_SAMPLES, k = oldest;
    for (int i = 0; i < mt->rate_count; i++) {
        int j = (oldest + i) % NM_RATE_SAMPLES;
        if (now - mt->rate_t[j] >= RATE_WINDOW_S)
            k = j;
    }
    double dt = now - mt->rate_t[k];
    return dt > 0 ? (double)(mt->completion_tokens - mt->rate_n[k]) / dt : 0;
}

typedef struct out {
    char *buf;
    size_t len, cap;
    bool oom;
} out;

static void put(out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(out *o, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->buf ? o->buf + o->len : NULL, o->buf ? o->cap - o->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0 || o->oom)
            return;
        if (o->buf && o->len + (size_t)n < o->cap) {
            o->len += (size_t)n;
            return;
        }
        char *b = nm_grow(o->buf, &o->cap, o->len + (size_t)n, 4096, 1); /* and a NUL */
        if (!b) {
            o->oom = true;
            return;
        }
        o->buf = b;
    }
}

static void head(out *o, const char *name, const char *type, const char *help) {
    put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void scalar(out *o, const char *name, const char *type, const char *help, double v) {
    head(o, name, type, help);
    put(o, "%s %.17g\n", name, v);
}

static void node_bytes(out *o, int node, const char *kind, uint64_t bytes) {
    char label[16];
    if (node < 0)
        snprintf(label, sizeof label, "interleaved");
    else
        snprintf(label, sizeof label, "%d", node);
    put(o, "numalm_node_bytes{node=\"%s\",kind=\"%s\"} %llu\n", label, kind,
        (unsigned long long)bytes);
}

static const char *const EP_NAMES[NM_EP_COUNT] = {"chat_completions", "completions", "models",
                                                  "health",           "metrics",     "other"};

char *nm_metrics_text(nm_server *s, size_t *len) {
    const nm_metrics *mt = &s->metrics;
    out o = {0};
    head(&o, "numalm_requests_total", "counter",
         "HTTP requests answered, by endpoint and status code.");
    for (int e = 0; e < NM_EP_COUNT; e++)
        for (int k = 0; k < NM_STATUS_KINDS; k++)
            if (mt->requests[e][k])
                put(&o, "numalm_requests_total{endpoint=\"%s\",code=\"%d\"} %llu\n", EP_NAMES[e],
                    nm_status_codes[k], (unsigned long long)mt->requests[e][k]);
    scalar(&o, "numalm_requests_cancelled_total", "counter",
           "Requests stopped because their client closed the connection.", (double)mt->cancelled);
    scalar(&o, "numalm_prompt_tokens_total", "counter", "Prompt tokens of finished requests.",
           (double)mt->prompt_tokens);
    scalar(&o, "numalm_completion_tokens_total", "counter", "Tokens generated.",
           (double)mt->completion_tokens);
    scalar(&o, "numalm_tokens_per_second", "gauge",
           "Tokens generated per second over the last 10 seconds, all slots together.",
           recent_rate(mt, nm_now()));
    scalar(&o, "numalm_steps_total", "counter",
           "Batched passes over the weights (one per decode step).", (double)mt->steps);
    scalar(&o, "numalm_step_tokens_total", "counter",
           "Tokens the passes carried (decode tokens of every slot, and prompt tokens).",
           (double)mt->step_tokens);
    scalar(&o, "numalm_step_seconds_total", "counter", "Time spent in the passes.", mt->decode_s);
    head(&o, "numalm_time_to_first_token_seconds", "summary",
         "From a request's arrival to its first generated token.");
    put(&o, "numalm_time_to_first_token_seconds_sum %.17g\n", mt->ttft_sum);
    put(&o, "numalm_time_to_first_token_seconds_count %llu\n", (unsigned long long)mt->ttft_count);
    scalar(&o, "numalm_queue_depth", "gauge", "Requests waiting for a slot.", s->queued);
    scalar(&o, "numalm_slots_active", "gauge", "Slots running a request.", s->running);
    scalar(&o, "numalm_slots_total", "gauge", "Slots (--parallel).", s->o.parallel);
    scalar(&o, "numalm_ready", "gauge", "1 once the model is loaded and requests are served.",
           s->ready && !s->stopping);
    head(&o, "numalm_node_bytes", "gauge",
         "Bytes held on each NUMA node: the weights, and the KV caches of all slots.");
    for (int i = 0; s->ready && i < s->m.n_weight; i++)
        node_bytes(&o, s->m.weight_node[i], "weights", s->m.weight_bytes[i]);
    for (int i = 0; s->ready && i < s->m.n_kv; i++)
        node_bytes(&o, s->m.kv_node[i], "kv_cache", s->m.kv_bytes[i]);
    if (o.oom) {
        free(o.buf);
        return NULL;
    }
    *len = o.len;
    return o.buf;
}
