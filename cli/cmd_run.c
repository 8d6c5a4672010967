/* numalm run: generate text. stdout gets only the text (the prompt as the
 * model read it, then the continuation; --no-echo: the continuation only),
 * one fflush per token so it streams through pipes; timings go to stderr. */
#include "cli_opt.h"
#include "cmd_common.h"
#include "commands.h"

#include "common/json.h"
#include "common/util.h"
#include "gguf/ggml_types.h"
#include "runtime/generate.h"
#include "runtime/kernels.h"

#include <stdio.h>
#include <string.h>

typedef struct run_opts {
    nm_cli_common c;
    nm_model_opts model;
    nm_gen_opts gen;
    const char *prompt;
} run_opts;

static void usage(FILE *out) {
    fprintf(
        out,
        "usage: numalm run -m MODEL -p PROMPT [options]\n"
        "  -p, --prompt TEXT       prompt (BOS is added when the vocab asks for it)\n"
        "  -n, --n-predict N       tokens to generate (default 128; stops at EOS)\n"
        "  --temp T                temperature (default 0: greedy)\n"
        "  --top-k K, --top-p P    sampling filters (default off)\n"
        "  --seed S                sampler seed (default 0)\n"
        "  --no-echo               print only the continuation, not the prompt\n"
        "  --read-probe            after each decode step, time a read of the same weights\n"
        "                          by the same threads (no compute) and report the decode\n"
        "                          speed as a fraction of that read bandwidth\n" NM_CLI_MODEL_HELP
            NM_CLI_COMMON_HELP);
}

static int float_value(const char *opt, const char *v, float *out, nm_error *err) {
    char *end;
    *out = strtof(v, &end);
    if (!*v || *end)
        return nm_fail(err, "%s: '%s' is not a number", opt, v);
    return 1;
}

static int long_value(const char *opt, const char *v, long max, long *out, nm_error *err) {
    return nm_parse_long(v, 0, max, out, opt, err) < 0 ? -1 : 1;
}

/* Options of run with a value ("NAME VALUE" or "NAME=VALUE"). */
static int run_value(run_opts *o, const char *opt, const char *v, nm_error *err) {
    long x = 0;
    int rc = 1;
    if (!strcmp(opt, "--prompt"))
        o->prompt = v;
    else if (!strcmp(opt, "--temp"))
        rc = float_value(opt, v, &o->gen.sampler.temp, err);
    else if (!strcmp(opt, "--top-p"))
        rc = float_value(opt, v, &o->gen.sampler.top_p, err);
    else if ((rc = long_value(opt, v, !strcmp(opt, "--n-predict") ? 1 << 24 : 0x7fffffffL, &x,
                              err)) < 0)
        return -1;
    else if (!strcmp(opt, "--n-predict"))
        o->gen.n_predict = (int)x;
    else if (!strcmp(opt, "--top-k"))
        o->gen.sampler.top_k = (int)x;
    else
        o->gen.sampler.seed = (uint64_t)x;
    return rc;
}

static int run_arg(run_opts *o, int argc, char **argv, int *i, nm_error *err) {
    static const struct {
        const char *name, *alias;
    } OPTS[] = {{"--prompt", "-p"}, {"--n-predict", "-n"}, {"--temp", NULL},
                {"--top-p", NULL},  {"--top-k", NULL},     {"--seed", NULL}};
    int rc = nm_cli_common_arg(&o->c, argc, argv, i, err);
    if (rc == 0)
        rc = nm_cli_model_arg(&o->model, argc, argv, i, err);
    if (rc != 0)
        return rc;
    for (size_t k = 0; k < sizeof OPTS / sizeof OPTS[0]; k++) {
        const char *v;
        rc = nm_cli_opt(argc, argv, i, OPTS[k].name, OPTS[k].alias, &v, err);
        if (rc != 0)
            return rc < 0 ? -1 : run_value(o, OPTS[k].name, v, err);
    }
    if (!strcmp(argv[*i], "--no-echo")) {
        o->gen.echo = false;
        return 1;
    }
    if (!strcmp(argv[*i], "--read-probe")) {
        o->gen.read_probe = true;
        return 1;
    }
    return 0;
}

static int parse(run_opts *o, int argc, char **argv, nm_error *err) {
    memset(o, 0, sizeof *o);
    nm_cli_common_init(&o->c);
    o->model = nm_model_opts_default();
    o->gen = (nm_gen_opts){.n_predict = 128,
                           .echo = true,
                           .sampler = {.temp = 0, .top_k = 0, .top_p = 1.0f, .seed = 0}};
    if (nm_cli_help_asked(argc, argv)) {
        usage(stdout);
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        int rc = run_arg(o, argc, argv, &i, err);
        if (rc < 0)
            return -1;
        if (rc == 0)
            return nm_fail(err, "unknown option '%s' (see numalm run --help)", argv[i]);
    }
    if (o->c.topology)
        return nm_fail(err, "--topology describes another machine: it is for `numalm plan`, "
                            "not for running a model here");
    if (!o->prompt)
        return nm_fail(err, "no prompt given (-p TEXT)");
    return 0;
}

static void write_text(void *ud, const char *text, size_t len) {
    (void)ud;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
}

static double rate(double n, double s) {
    return s > 0 ? n / s : 0;
}

static void report(const run_opts *o, const nm_cli_session *s, const nm_model *m,
                   const nm_gen_stats *st) {
    double ptps = rate(st->n_prompt, st->prompt_s);
    double dtps = rate(st->n_decode_evals, st->decode_s);
    fprintf(stderr,
            "numalm run: load %.3f s | prompt %d tokens, %.1f tok/s | decode %d tokens, "
            "%.2f tok/s | %d threads, %s, %s, %s\n",
            s->load_s, st->n_prompt, ptps, st->n_decode, dtps, nm_model_n_threads(m),
            nm_io_name(s->w->io), nm_placement_name(s->plan->placement),
            nm_simd_name(nm_simd_get()));
    const nm_read_probe_stats *pr = &st->probe;
    if (pr->pairs)
        fprintf(stderr,
                "numalm run: read probe: decode %.1f GB/s of weights, a read of the same "
                "weights by the same threads %.1f GB/s: decode at %.0f%% of it (median of %d "
                "pairs; quartiles %.0f%%-%.0f%%)\n",
                pr->decode_gbps, pr->read_gbps, 100 * pr->of_read, pr->pairs, 100 * pr->of_read_q25,
                100 * pr->of_read_q75);
    if (!o->c.json)
        return;
    nm_json j;
    nm_json_init(&j, stderr);
    nm_json_obj_begin(&j);
    nm_json_kdouble(&j, "load_s", s->load_s);
    nm_json_kint(&j, "n_prompt", st->n_prompt);
    nm_json_kdouble(&j, "prompt_s", st->prompt_s);
    nm_json_kdouble(&j, "prompt_tok_s", ptps);
    nm_json_kint(&j, "n_decode", st->n_decode);
    nm_json_kint(&j, "n_decode_evals", st->n_decode_evals);
    nm_json_kdouble(&j, "decode_s", st->decode_s);
    nm_json_kdouble(&j, "decode_tok_s", dtps);
    uint64_t wb = nm_model_weight_bytes_per_token(m);
    nm_json_kuint(&j, "weight_bytes_per_token", wb);
    nm_json_kdouble(&j, "decode_weight_gb_s", dtps * (double)wb / 1e9);
    if (pr->pairs) {
        nm_json_key(&j, "read_probe");
        nm_json_obj_begin(&j);
        nm_json_kint(&j, "pairs", pr->pairs);
        nm_json_kdouble(&j, "decode_gb_s", pr->decode_gbps);
        nm_json_kdouble(&j, "read_gb_s", pr->read_gbps);
        nm_json_kdouble(&j, "of_read", pr->of_read);
        nm_json_kdouble(&j, "of_read_q25", pr->of_read_q25);
        nm_json_kdouble(&j, "of_read_q75", pr->of_read_q75);
        nm_json_kuint(&j, "read_bytes", pr->read_bytes);
        nm_json_kuint(&j, "checksum", pr->checksum);
        nm_json_obj_end(&j);
    }
    nm_json_kstr(&j, "stop", st->hit_eos ? "eos" : st->hit_ctx ? "context" : "length");
    nm_json_kint(&j, "n_ctx", nm_model_n_ctx(m));
    nm_cli_json_run_setup(&j, s, m);
    nm_json_obj_end(&j);
    nm_json_finish(&j);
}

int cmd_run(int argc, char **argv) {
    run_opts o;
    nm_error err = {{0}};
    int rc = parse(&o, argc, argv, &err);
    if (rc != 0) {
        if (rc < 0)
            fprintf(stderr, "numalm run: %s\n", err.msg);
        return rc < 0 ? 2 : 0;
    }
    nm_cli_session s;
    nm_tokenizer *tok = NULL;
    nm_model *m = NULL;
    nm_gen_stats st;
    int status = 1;
    if (nm_cli_open(&o.c, &s, &err) < 0)
        goto fail;
    double t0 = nm_now();
    if (!(tok = nm_tokenizer_load(s.gguf, &err)) ||
        !(m = nm_model_create(s.w, s.topo, &o.model, &err)))
        goto fail;
    s.load_s += nm_now() - t0;
    if (nm_generate(m, tok, o.prompt, &o.gen, write_text, NULL, NULL, NULL, &st, &err) < 0)
        goto fail;
    if (o.gen.echo || st.n_decode)
        write_text(NULL, "\n", 1);
    if (st.hit_ctx)
        fprintf(stderr,
                "numalm run: context full (%d tokens): stopped generating "
                "(raise -c)\n",
                nm_model_n_ctx(m));
    report(&o, &s, m, &st);
    status = 0;
    goto done;
fail:
    fprintf(stderr, "numalm run: %s\n", err.msg);
done:
    nm_model_free(m);
    if (tok)
        nm_tokenizer_free(tok);
    if (s.gguf)
        nm_cli_close(&s);
    return status;
}
