/* numalm perplexity: llama.cpp's method (see runtime/generate.h). stdout:
 * the running value after each chunk ("[1]3.7958,[2]4.4937,..."), then a
 * last line "PPL = X.XXXX". */
#include "cli_opt.h"
#include "cmd_common.h"
#include "commands.h"

#include "common/json.h"
#include "common/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_CTX 512

typedef struct ppl_opts {
    nm_cli_common c;
    const char *file;
} ppl_opts;

static void usage(FILE *out) {
    fprintf(out,
            "usage: numalm perplexity -m MODEL -f TEXT [-c N] [options]\n"
            "  -f, --file TEXT         text to score\n"
            "  (-c is the chunk length; default %d or the model's context if "
            "smaller)\n" NM_CLI_MODEL_HELP NM_CLI_COMMON_HELP NM_CLI_ENV_HELP,
            DEFAULT_CTX);
}

static int ppl_arg(void *opts, int argc, char **argv, int *i, nm_error *err) {
    const char *v;
    int rc = nm_cli_opt(argc, argv, i, "--file", "-f", &v, err);
    if (rc > 0)
        ((ppl_opts *)opts)->file = v;
    return rc;
}

static int parse(ppl_opts *o, int argc, char **argv, nm_error *err) {
    memset(o, 0, sizeof *o);
    nm_cli_common_init(&o->c);
    if (nm_cli_help_asked(argc, argv)) {
        usage(stdout);
        return 1;
    }
    if (nm_cli_parse_run(&o->c, "perplexity", argc, argv, ppl_arg, o, err) < 0)
        return -1;
    if (!o->file)
        return nm_fail(err, "no text given (-f FILE)");
    return 0;
}

static char *read_text(const char *path, size_t *len, nm_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        nm_fail(err, "%s: cannot open: %m", path);
        return NULL;
    }
    size_t cap = 0, n = 0;
    char *buf = NULL;
    for (;;) {
        char *b = nm_grow(buf, &cap, n, 1 << 16, 1);
        if (!b) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = b;
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
    }
    bool bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        free(buf);
        nm_fail(err, "%s: %s", path, bad ? "read error" : "out of memory");
        return NULL;
    }
    *len = n;
    return buf;
}

static void on_chunk(void *ud, int chunk, double ppl) {
    (void)ud;
    printf("%s[%d]%.4f", chunk > 1 ? "," : "", chunk, ppl);
    fflush(stdout);
}

static void report(const ppl_opts *o, const numalm_session *s, const numalm_ppl_result *r,
                   int n_ctx) {
    printf("\nPPL = %.4f\n", r->ppl);
    fprintf(stderr,
            "numalm perplexity: %d tokens, %d chunks of %d, %d scored, PPL = %.4f "
            "+/- %.4f | load %.3f s, %.1f tok/s\n",
            r->n_tokens, r->n_chunks, n_ctx, r->n_scored, r->ppl, r->ppl_err,
            numalm_load_seconds(s), r->seconds > 0 ? r->n_chunks * n_ctx / r->seconds : 0);
    if (!o->c.json)
        return;
    nm_json j;
    nm_json_init(&j, stderr);
    nm_json_obj_begin(&j);
    nm_json_kdouble(&j, "ppl", r->ppl);
    nm_json_kdouble(&j, "ppl_err", r->ppl_err);
    nm_json_kint(&j, "n_tokens", r->n_tokens);
    nm_json_kint(&j, "n_ctx", n_ctx);
    nm_json_kint(&j, "n_chunks", r->n_chunks);
    nm_json_kint(&j, "n_scored", r->n_scored);
    nm_json_kdouble(&j, "load_s", numalm_load_seconds(s));
    nm_json_kdouble(&j, "eval_s", r->seconds);
    nm_json_kdouble(&j, "tok_s", r->seconds > 0 ? r->n_chunks * n_ctx / r->seconds : 0);
    nm_cli_json_run_setup(&j, s);
    nm_json_obj_end(&j);
    nm_json_finish(&j);
}

int cmd_perplexity(int argc, char **argv) {
    ppl_opts o;
    nm_error err = {{0}};
    int rc = parse(&o, argc, argv, &err);
    if (rc != 0) {
        if (rc < 0)
            fprintf(stderr, "numalm perplexity: %s\n", err.msg);
        return rc < 0 ? 2 : 0;
    }
    size_t len = 0;
    char *text = read_text(o.file, &len, &err);
    numalm_options *mo = &o.c.opts;
    numalm_session *s = NULL;
    numalm_ppl_result r;
    int status = 1;
    /* the chunk length depends on the model's context: load, then size it */
    mo->stage = NUMALM_STAGE_WEIGHTS;
    if (!text || !(s = nm_cli_open(&o.c, &err)))
        goto fail;
    if (mo->n_ctx == 0)
        mo->n_ctx = numalm_n_ctx_train(s) && numalm_n_ctx_train(s) < DEFAULT_CTX
                        ? numalm_n_ctx_train(s)
                        : DEFAULT_CTX;
    if (mo->n_batch < mo->n_ctx)
        mo->n_batch = mo->n_ctx; /* one pass per chunk */
    mo->stage = NUMALM_STAGE_MODEL;
    if (numalm_advance(s, mo) < 0 ||
        numalm_perplexity(s, text, len, mo->n_ctx, on_chunk, NULL, &r) < 0) {
        nm_fail(&err, "%s", numalm_last_error(s));
        goto fail;
    }
    report(&o, s, &r, mo->n_ctx);
    status = 0;
    goto done;
fail:
    fprintf(stderr, "numalm perplexity: %s\n", err.msg);
done:
    numalm_close(s);
    free(text);
    return status;
}
