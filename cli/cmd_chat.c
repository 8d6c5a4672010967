/* numalm chat: talk to an instruct model in a terminal. Each turn's prompt
 * is the conversation through the chat template (numalm_chat_tokenize: the
 * last turn's tokens, the reply as generated, then what the new message
 * adds, where the template allows), and only what the KV cache lacks is
 * evaluated. Replies stream as they are generated; Ctrl-C stops a reply
 * (what was said is kept), Ctrl-C at the prompt, /exit or the end of input
 * leaves, /reset starts over. */
#include "cli_opt.h"
#include "cmd_common.h"
#include "commands.h"

#include "common/util.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct chat_opts {
    nm_cli_common c;
    numalm_gen_params gen;
    const char *system, *template_name;
    bool verbose;
} chat_opts;

static void usage(FILE *out) {
    fputs("usage: numalm chat -m MODEL [options]\n"
          "\n"
          "Type a message and Enter; a line ending in \\ continues on the next line.\n"
          "/reset forgets the conversation, /exit (or Ctrl-D, or Ctrl-C at the prompt)\n"
          "leaves, Ctrl-C during a reply stops it.\n"
          "\n"
          "  --system TEXT           a system message first\n"
          "  --chat-template NAME    this built-in template instead of the file's\n"
          "                          (chatml, llama3, llama2, llama2-sys, llama2-sys-bos,\n"
          "                          llama2-sys-strip, mistral-v1, mistral-v3, mistral-v3-tekken,\n"
          "                          mistral-v7, mistral-v7-tekken, gemma)\n"
          "  -n, --n-predict N       at most N tokens a reply (default: until the end of\n"
          "                          the turn or a full context)\n"
          "  --temp T --top-k K --top-p P --seed S   sampling (default greedy)\n"
          "  --verbose               after each reply: context, cached and new tokens, speed\n"
          "" NM_CLI_MODEL_HELP NM_CLI_COMMON_HELP,
          out);
}

static int opt_value(chat_opts *o, const char *opt, const char *v, nm_error *err) {
    long x;
    char *end;
    if (!strcmp(opt, "--system")) {
        o->system = v;
    } else if (!strcmp(opt, "--chat-template")) {
        o->template_name = v;
    } else if (!strcmp(opt, "--temp") || !strcmp(opt, "--top-p")) {
        float f = strtof(v, &end);
        if (!*v || *end)
            return nm_fail(err, "%s: '%s' is not a number", opt, v);
        *(!strcmp(opt, "--temp") ? &o->gen.sampler.temp : &o->gen.sampler.top_p) = f;
    } else {
        long min = !strcmp(opt, "--n-predict") ? -1 : 0;
        if (nm_parse_long(v, min, 0x7fffffffL, &x, opt, err) < 0)
            return -1;
        if (!strcmp(opt, "--n-predict"))
            o->gen.n_predict = (int)x;
        else if (!strcmp(opt, "--top-k"))
            o->gen.sampler.top_k = (int)x;
        else
            o->gen.sampler.seed = (uint64_t)x;
    }
    return 1;
}

static int chat_arg(void *opts, int argc, char **argv, int *i, nm_error *err) {
    static const nm_cli_optdef OPTS[] = {
        {"--system", NULL}, {"--chat-template", NULL}, {"--n-predict", "-n"}, {"--temp", NULL},
        {"--top-k", NULL},  {"--top-p", NULL},         {"--seed", NULL}};
    chat_opts *o = opts;
    const char *name, *v;
    int rc = nm_cli_opt_any(argc, argv, i, OPTS, sizeof OPTS / sizeof OPTS[0], &name, &v, err);
    if (rc != 0)
        return rc < 0 ? -1 : opt_value(o, name, v, err);
    if (!strcmp(argv[*i], "--verbose"))
        return o->verbose = true;
    return 0;
}

static int parse(chat_opts *o, int argc, char **argv, nm_error *err) {
    memset(o, 0, sizeof *o);
    nm_cli_common_init(&o->c);
    numalm_gen_params_init(&o->gen); /* greedy */
    o->gen.n_predict = -1;
    return nm_cli_parse_run(&o->c, "chat", argc, argv, chat_arg, o, err);
}

/* ---- the conversation --------------------------------------------------- */

typedef struct convo {
    numalm_chat_msg *msg;
    size_t n, cap;
    int32_t *toks; /* the last turn's prompt and reply tokens */
    int n_toks;
    int n_kv; /* how many of them the KV cache holds, positions 0.. */
} convo;

static int add_msg(convo *c, const char *role, const char *text, size_t len) {
    numalm_chat_msg *m = nm_grow(c->msg, &c->cap, c->n, 16, sizeof *m);
    char *copy = malloc(len + 1);
    if (!m || !copy) {
        free(copy);
        return -1;
    }
    memcpy(copy, text, len);
    copy[len] = 0;
    c->msg = m;
    c->msg[c->n++] = (numalm_chat_msg){role, copy};
    return 0;
}

/* Forgets everything after the first `keep` messages. */
static void drop_msgs(convo *c, size_t keep) {
    while (c->n > keep)
        free((char *)c->msg[--c->n].content);
}

typedef struct reply {
    char *text;
    size_t n, cap;
} reply;

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

/* Shows and keeps the reply; Ctrl-C stops it. */
static int on_text(void *ud, const char *text, size_t len) {
    reply *r = ud;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    char *p = nm_grow(r->text, &r->cap, r->n + len, 256, 1);
    if (p) { /* out of memory: the reply is shown but not remembered whole */
        r->text = p;
        memcpy(r->text + r->n, text, len);
        r->n += len;
    }
    return interrupted;
}

/* A message from stdin: lines ending in '\' continue. NULL at the end of
 * input or on Ctrl-C. */
static char *read_message(char **line, size_t *cap) {
    size_t len = 0;
    char *msg = NULL;
    for (;;) {
        fputs(len ? ". " : "> ", stdout);
        fflush(stdout);
        errno = 0;
        ssize_t n = getline(line, cap, stdin);
        if (n < 0) {
            if (interrupted || errno == EINTR)
                fputc('\n', stdout);
            free(msg);
            return NULL;
        }
        while (n > 0 && ((*line)[n - 1] == '\n' || (*line)[n - 1] == '\r'))
            n--;
        bool more = n > 0 && (*line)[n - 1] == '\\';
        char *m = realloc(msg, len + (size_t)n + 2);
        if (!m) {
            free(msg);
            return NULL;
        }
        msg = m;
        memcpy(msg + len, *line, (size_t)n - more);
        len += (size_t)n - more;
        if (!more) {
            msg[len] = 0;
            return msg;
        }
        msg[len++] = '\n';
    }
}

static int common_prefix(const int32_t *a, int na, const int32_t *b, int nb) {
    int i = 0;
    while (i < na && i < nb && a[i] == b[i])
        i++;
    return i;
}

/* The prompt of this turn (malloc'd). */
static int turn_prompt(numalm_session *s, int tmpl, const convo *c, int32_t **ids) {
    int n = numalm_chat_tokenize(s, tmpl, c->msg, c->n, c->toks, c->n_toks, NULL, 0);
    *ids = n > 0 ? malloc((size_t)n * sizeof **ids) : NULL;
    if (n <= 0 || !*ids ||
        numalm_chat_tokenize(s, tmpl, c->msg, c->n, c->toks, c->n_toks, *ids, n) != n) {
        free(*ids);
        *ids = NULL;
        return -1;
    }
    return n;
}

static void report(const chat_opts *o, const numalm_gen_stats *st, int n_ctx) {
    if (interrupted)
        fprintf(stderr, "(interrupted)\n");
    if (st->stop == NUMALM_STOP_CONTEXT)
        fprintf(stderr, "numalm chat: the context (%d tokens) is full: /reset to go on\n", n_ctx);
    if (o->verbose)
        fprintf(stderr,
                "[context %d tokens: prompt %d (%d cached, %d new), reply %d, %.1f tok/s]\n",
                st->n_kv, st->n_prompt, st->n_prompt_cached, st->n_prompt - st->n_prompt_cached,
                st->n_decode, st->decode_s > 0 ? st->n_decode_evals / st->decode_s : 0.0);
}

/* One turn: the user's message in, the reply streamed out and kept. */
static void turn(const chat_opts *o, numalm_session *s, int tmpl, convo *c, const char *message) {
    size_t keep = c->n;
    int max = numalm_n_ctx(s);
    int32_t *ids = NULL, *all = malloc((size_t)max * sizeof *all);
    if (!all || add_msg(c, "user", message, strlen(message)) < 0) {
        free(all);
        fprintf(stderr, "numalm chat: out of memory for the conversation\n");
        return;
    }
    int n = turn_prompt(s, tmpl, c, &ids);
    numalm_gen_params g = o->gen;
    g.prompt_tokens = ids;
    g.n_prompt_tokens = n;
    g.n_cached = n < 0 ? 0 : common_prefix(c->toks, c->n_kv, ids, n);
    g.stop_token = numalm_chat_end_of_turn(s, tmpl);
    g.tokens = all;
    g.max_tokens = max;
    reply r = {0};
    numalm_gen_stats st;
    interrupted = 0;
    if (n < 0 || numalm_generate(s, NULL, &g, on_text, &r, &st) < 0) {
        fprintf(stderr, "numalm chat: %s\n", numalm_last_error(s));
        drop_msgs(c, keep); /* the cache still holds c->toks[0..n_kv) */
        free(ids);
        free(all);
        free(r.text);
        return;
    }
    fputc('\n', stdout);
    free(ids);
    free(c->toks);
    c->toks = all;
    c->n_toks = st.n_tokens < max ? st.n_tokens : max;
    c->n_kv = st.n_kv;
    if (add_msg(c, "assistant", r.text ? r.text : "", r.n) < 0)
        fprintf(stderr, "numalm chat: out of memory for the conversation\n");
    free(r.text);
    report(o, &st, max);
}

static void chat_loop(const chat_opts *o, numalm_session *s, int tmpl) {
    convo c = {0};
    char *line = NULL, *msg;
    size_t cap = 0, first = 0;
    if (o->system) {
        if (add_msg(&c, "system", o->system, strlen(o->system)) < 0)
            return;
        first = 1;
    }
    while ((msg = read_message(&line, &cap))) {
        if (!strcmp(msg, "/exit") || !strcmp(msg, "/quit")) {
            free(msg);
            break;
        }
        if (!strcmp(msg, "/reset")) {
            drop_msgs(&c, first);
            c.n_toks = c.n_kv = 0;
            fprintf(stderr, "(conversation reset)\n");
        } else if (*msg) {
            turn(o, s, tmpl, &c, msg);
        }
        free(msg);
    }
    drop_msgs(&c, 0);
    free(c.msg);
    free(c.toks);
    free(line);
}

int cmd_chat(int argc, char **argv) {
    if (nm_cli_help_asked(argc, argv)) {
        usage(stdout);
        return 0;
    }
    chat_opts o;
    nm_error err = {{0}};
    if (parse(&o, argc, argv, &err) < 0) {
        fprintf(stderr, "numalm chat: %s\n", err.msg);
        return 2;
    }
    /* the workers inherit a blocked SIGINT, so Ctrl-C reaches this thread */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    numalm_session *s = nm_cli_open(&o.c, &err);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    int tmpl = s ? numalm_chat_template(s, o.template_name) : -1;
    if (tmpl < 0) {
        fprintf(stderr, "numalm chat: %s\n", s ? numalm_last_error(s) : err.msg);
        numalm_close(s);
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_sigint}; /* no SA_RESTART: Ctrl-C ends a read */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    fprintf(stderr, "numalm chat: %s template, context %d tokens; /reset, /exit\n",
            numalm_chat_template_name(tmpl), numalm_n_ctx(s));
    chat_loop(&o, s, tmpl);
    numalm_close(s);
    return 0;
}
