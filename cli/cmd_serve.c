/* numalm serve: the OpenAI-compatible server (server/). This file reads the
 * options, loads the model while the server already answers /health with
 * 503, and hands the model over. */
#include "cli_opt.h"
#include "cmd_common.h"
#include "commands.h"

#include "api/session_internal.h"
#include "common/util.h"
#include "server/server.h"

#include <stdio.h>
#include <string.h>

typedef struct serve_opts {
    nm_cli_common c;
    nm_server_opts srv;
    const char *alias;
    const char *chat_template;
    bool thp_given;
} serve_opts;

static void usage(FILE *out) {
    fprintf(out,
            "usage: numalm serve -m MODEL [options]\n"
            "  --host ADDR             address to bind (default 127.0.0.1: this machine only;\n"
            "                          0.0.0.0 accepts other machines)\n"
            "  --port N                TCP port (default 8080; 0: any free port)\n"
            "  -np, --parallel N       slots: requests decoded together (default 1)\n"
            "  -c, --ctx N             context per slot, in tokens (default: the model's)\n"
            "  --api-key KEY           require 'Authorization: Bearer KEY' (all but /health)\n"
            "  --queue N               requests that may wait for a slot; more get 429\n"
            "                          (default 64)\n"
            "  --max-body BYTES        larger request bodies get 413 (default 1M)\n"
            "  --timeout S             close idle or slow connections after S s (default 30)\n"
            "  --grace S               on SIGINT/SIGTERM, let running requests finish for S s\n"
            "                          (default 5), then end them\n"
            "  --alias NAME            the model's id in the API (default: the file's name)\n"
            "  --chat-template NAME    template for /v1/chat/completions (default: the model's\n"
            "                          tokenizer.chat_template, else chatml)\n"
            "  --port-file FILE        write the bound port there (for --port 0)\n"
            "  --kv-type f16|f32       KV cache element type (default f16)\n"
            "  --batch N               prompt tokens per pass and request (default 64)\n"
            "Options for loading, as for run (defaults differ: --io auto copies the file's\n"
            "cached pages instead of mapping them, so the server survives the file being\n"
            "truncated or rewritten; --thp on):\n" NM_CLI_COMMON_HELP);
}

static int int_opt(const char *opt, const char *v, long lo, long hi, int *out, nm_error *err) {
    long x;
    if (nm_parse_long(v, lo, hi, &x, opt, err) < 0)
        return -1;
    *out = (int)x;
    return 1;
}

static int serve_value(serve_opts *o, const char *opt, const char *v, nm_error *err) {
    nm_server_opts *s = &o->srv;
    if (!strcmp(opt, "--host"))
        s->host = v;
    else if (!strcmp(opt, "--api-key"))
        s->api_key = v;
    else if (!strcmp(opt, "--alias"))
        o->alias = v;
    else if (!strcmp(opt, "--chat-template"))
        o->chat_template = v;
    else if (!strcmp(opt, "--port-file"))
        s->port_file = v;
    else if (!strcmp(opt, "--port"))
        return int_opt(opt, v, 0, 65535, &s->port, err);
    else if (!strcmp(opt, "--parallel"))
        return int_opt(opt, v, 1, 256, &s->parallel, err);
    else if (!strcmp(opt, "--ctx"))
        return int_opt(opt, v, 2, 1 << 24, &o->c.opts.n_ctx, err);
    else if (!strcmp(opt, "--queue"))
        return int_opt(opt, v, 0, 1 << 16, &s->queue, err);
    else if (!strcmp(opt, "--timeout"))
        return int_opt(opt, v, 1, 86400, &s->timeout_s, err);
    else if (!strcmp(opt, "--grace"))
        return int_opt(opt, v, 0, 86400, &s->grace_s, err);
    else if (!strcmp(opt, "--max-body")) {
        uint64_t b;
        if (nm_parse_size(v, &b, err) < 0)
            return nm_fail_prefix(err, "--max-body");
        if (b < 1024 || b > (1ull << 31))
            return nm_fail(err, "--max-body %s: expected 1K to 2G", v);
        s->max_body = (size_t)b;
    }
    return 1;
}

static int serve_arg(void *opts, int argc, char **argv, int *i, nm_error *err) {
    static const nm_cli_optdef OPTS[] = {
        {"--host", NULL},    {"--port", NULL},  {"--parallel", "-np"}, {"--ctx", NULL},
        {"--api-key", NULL}, {"--queue", NULL}, {"--max-body", NULL},  {"--timeout", NULL},
        {"--grace", NULL},   {"--alias", NULL}, {"--port-file", NULL}};
    serve_opts *o = opts;
    if (!strncmp(argv[*i], "--thp", 5))
        o->thp_given = true; /* and nm_cli_common_arg takes it */
    const char *name, *v;
    int rc = nm_cli_opt_any(argc, argv, i, OPTS, sizeof OPTS / sizeof OPTS[0], &name, &v, err);
    return rc <= 0 ? rc : serve_value(o, name, v, err);
}

static int parse(serve_opts *o, int argc, char **argv, nm_error *err) {
    memset(o, 0, sizeof *o);
    nm_cli_common_init(&o->c);
    o->c.opts.no_map = true; /* private copies: see usage() */
    o->srv = nm_server_opts_default();
    if (nm_cli_help_asked(argc, argv)) {
        usage(stdout);
        return 1;
    }
    if (nm_cli_parse_run(&o->c, "serve", argc, argv, serve_arg, o, err) < 0)
        return -1;
    if (!o->c.opts.model_path)
        return nm_fail(err, "no model given (-m FILE)");
    /* the device's KV caches hold one sequence (runtime/model.c refuses
     * more); say so before the port opens and the weights load */
    if (o->srv.parallel > 1 && (o->c.opts.n_gpu_layers > 0 || o->c.opts.gpu))
        return nm_fail(err,
                       "--parallel %d with %s: blocks on a device run one sequence, so serve "
                       "with --parallel 1 or without -ngl/--gpu",
                       o->srv.parallel, o->c.opts.n_gpu_layers > 0 ? "-ngl" : "--gpu");
    if (!o->thp_given)
        o->c.opts.thp = NUMALM_THP_ON;
    /* a pass carries every slot's next token plus a prompt chunk of
     * --batch tokens */
    o->c.opts.n_seq = o->srv.parallel;
    o->c.opts.n_batch = (o->c.opts.n_batch ? o->c.opts.n_batch : 64) + o->srv.parallel;
    return 0;
}

/* The model's id: --alias, else the file name without its directory and
 * ".gguf". */
static void model_name(const serve_opts *o, char *buf, size_t n) {
    if (o->alias) {
        snprintf(buf, n, "%s", o->alias);
        return;
    }
    const char *path = o->c.opts.model_path;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    snprintf(buf, n, "%s", base);
    size_t len = strlen(buf);
    if (len > 5 && !strcmp(buf + len - 5, ".gguf"))
        buf[len - 5] = 0;
}

static void describe_memory(const numalm_session *s, int n_seq, nm_server_model *sm) {
    const nm_plan *p = s->plan;
    sm->n_weight = p->n_arenas;
    for (int a = 0; a < p->n_arenas; a++) {
        sm->weight_node[a] = p->arena_node[a];
        sm->weight_bytes[a] = p->arena_bytes[a];
    }
    const nm_llama_hparams *hp = nm_model_hparams(s->model);
    uint64_t esize = numalm_kv_type_used(s) == NUMALM_KV_F16 ? 2 : 4;
    sm->n_kv = p->n_nodes;
    for (int n = 0; n < p->n_nodes; n++) {
        uint64_t heads = p->nodes[n].kv_head1 - p->nodes[n].kv_head0;
        sm->kv_node[n] = p->nodes[n].os_index;
        sm->kv_bytes[n] = 2 * (uint64_t)hp->n_layer * heads * (uint64_t)numalm_n_ctx(s) *
                          hp->head_dim * esize * (uint64_t)n_seq;
    }
}

/* --chat-template, else the model's; a model without one gets ChatML, as
 * llama-server gives it. */
static int pick_template(const serve_opts *o, const numalm_session *s, nm_chat_kind *kind,
                         nm_error *err) {
    if (nm_chat_select(s->gguf, o->chat_template, kind, err) == 0) {
        fprintf(stderr, "numalm serve: chat template %s (%s)\n", nm_chat_kind_name(*kind),
                o->chat_template ? "--chat-template" : "the model's tokenizer.chat_template");
        return 0;
    }
    if (o->chat_template || nm_gguf_find(s->gguf, "tokenizer.chat_template"))
        return -1;
    *kind = NM_CHAT_CHATML;
    fprintf(stderr, "numalm serve: chat template chatml (the model has none; --chat-template "
                    "NAME to choose)\n");
    return 0;
}

static void log_choices(const serve_opts *o, const numalm_session *s) {
    const nm_loaded *w = s->loaded;
    if (w->io == NM_IO_MMAP)
        fprintf(stderr, "numalm serve: warning: --io mmap serves the weights from the file's "
                        "pages (no arenas, no huge pages): truncating or rewriting the file kills "
                        "the server (SIGBUS)\n");
    else if (!o->thp_given)
        fprintf(stderr,
                "numalm serve: arenas %s transparent huge pages (serve's default: a server runs "
                "for hours, and huge pages measured +6-20%% decode from fewer TLB misses, "
                "worth a slower load; --thp auto or off to change)%s\n",
                w->thp ? "on" : "without",
                w->thp ? "" : ": the loader refused them (see its notes above)");
    else
        fprintf(stderr, "numalm serve: arenas %s transparent huge pages (--thp as given)\n",
                w->thp ? "on" : "without");
    if (w->io != NM_IO_MMAP)
        fprintf(stderr,
                "numalm serve: weights copied into private arenas (%s%s): the file may "
                "change on disk while serving\n",
                nm_io_name(w->io), w->io == NM_IO_AUTO ? ", cached pages copied, not mapped" : "");
}

int cmd_serve(int argc, char **argv) {
    serve_opts o;
    nm_error err = {{0}};
    int rc = parse(&o, argc, argv, &err);
    if (rc != 0) {
        if (rc < 0)
            fprintf(stderr, "numalm serve: %s\n", err.msg);
        return rc < 0 ? 2 : 0;
    }
    nm_server *srv = nm_server_start(&o.srv, &err);
    if (!srv) {
        fprintf(stderr, "numalm serve: %s\n", err.msg);
        return 1;
    }
    nm_server_model sm = {0};
    char name[256];
    double t0 = nm_now();
    numalm_session *s = nm_cli_open(&o.c, &err);
    int status = 1;
    if (!s)
        goto fail;
    log_choices(&o, s);
    model_name(&o, name, sizeof name);
    sm = (nm_server_model){.session = s, .name = name};
    if (pick_template(&o, s, &sm.chat, &err) < 0)
        goto fail;
    describe_memory(s, o.srv.parallel, &sm);
    if (nm_server_attach(srv, &sm, &err) < 0)
        goto fail;
    fprintf(stderr,
            "numalm serve: %s loaded in %.2f s; serving %d slot%s of %d tokens (%d threads); "
            "SIGINT or SIGTERM stops\n",
            name, nm_now() - t0, o.srv.parallel, o.srv.parallel > 1 ? "s" : "", numalm_n_ctx(s),
            numalm_n_threads(s));
    nm_server_wait(srv);
    status = 0;
    goto done;
fail:
    fprintf(stderr, "numalm serve: %s\n", err.msg);
done:
    nm_server_free(srv);
    numalm_close(s);
    if (status == 0)
        fprintf(stderr, "numalm serve: stopped\n");
    return status;
}
