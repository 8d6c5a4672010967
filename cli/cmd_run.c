/* numalm run: generate text. stdout gets only the text (the prompt as the
 * model read it, then the continuation; --no-echo: the continuation only),
 * one fflush per token so it streams through pipes; timings go to stderr. */
#include "cli_opt.h"
#include "cmd_common.h"
#include "commands.h"

#include "common/json.h"
#include "common/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct run_opts {
    nm_cli_common c;
    numalm_gen_params gen;
    const char *prompt;
    bool chat;                          /* --chat: the prompt is one user message */
    const char *system, *template_name; /* --system, --chat-template */
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
        "  --special               control pieces written in the prompt (<|im_start|>,\n"
        "                          <|eot_id|>, ...) become their token, not text\n"
        "  --chat                  the prompt is a user message: format it with the model's\n"
        "                          chat template and print only the reply\n"
        "  --system TEXT           with --chat: a system message first\n"
        "  --chat-template NAME    with --chat: this built-in template instead of the\n"
        "                          file's (chatml, llama3, llama2, mistral-v7, gemma, ...)\n"
        "  --read-probe            after each decode step, time a read of the same weights\n"
        "                          by the same threads (no compute) and report the decode\n"
        "                          speed as a fraction of that read bandwidth\n" NM_CLI_MODEL_HELP
            NM_CLI_COMMON_HELP NM_CLI_ENV_HELP);
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
    else if (!strcmp(opt, "--system"))
        o->system = v;
    else if (!strcmp(opt, "--chat-template"))
        o->template_name = v;
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

static int run_arg(void *opts, int argc, char **argv, int *i, nm_error *err) {
    static const nm_cli_optdef OPTS[] = {
        {"--prompt", "-p"}, {"--n-predict", "-n"}, {"--temp", NULL},   {"--top-p", NULL},
        {"--top-k", NULL},  {"--seed", NULL},      {"--system", NULL}, {"--chat-template", NULL}};
    run_opts *o = opts;
    const char *name, *v;
    int rc = nm_cli_opt_any(argc, argv, i, OPTS, sizeof OPTS / sizeof OPTS[0], &name, &v, err);
    if (rc != 0)
        return rc < 0 ? -1 : run_value(o, name, v, err);
    if (!strcmp(argv[*i], "--no-echo")) {
        o->gen.echo = false;
        return 1;
    }
    if (!strcmp(argv[*i], "--special")) {
        o->gen.parse_special = true;
        return 1;
    }
    if (!strcmp(argv[*i], "--read-probe")) {
        o->gen.read_probe = true;
        return 1;
    }
    if (!strcmp(argv[*i], "--chat")) {
        o->chat = true;
        return 1;
    }
    return 0;
}

static int parse(run_opts *o, int argc, char **argv, nm_error *err) {
    memset(o, 0, sizeof *o);
    nm_cli_common_init(&o->c);
    numalm_gen_params_init(&o->gen); /* greedy, 128 tokens */
    o->gen.echo = true;
    if (nm_cli_help_asked(argc, argv)) {
        usage(stdout);
        return 1;
    }
    if (nm_cli_parse_run(&o->c, "run", argc, argv, run_arg, o, err) < 0)
        return -1;
    if (!o->prompt)
        return nm_fail(err, "no prompt given (-p TEXT)");
    if ((o->system || o->template_name) && !o->chat)
        return nm_fail(err, "--system and --chat-template go with --chat");
    if (o->chat)
        o->gen.echo = false;
    return 0;
}

static int write_text(void *ud, const char *text, size_t len) {
    (void)ud;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

static double rate(double n, double s) {
    return s > 0 ? n / s : 0;
}

static const char *stop_name(numalm_stop stop) {
    switch (stop) {
    case NUMALM_STOP_EOS:
        return "eos";
    case NUMALM_STOP_CONTEXT:
        return "context";
    case NUMALM_STOP_CALLER:
        return "caller";
    case NUMALM_STOP_LENGTH:
        break;
    }
    return "length";
}

static void report(const run_opts *o, const numalm_session *s, const numalm_gen_stats *st) {
    double ptps = rate(st->n_prompt, st->prompt_s);
    double dtps = rate(st->n_decode_evals, st->decode_s);
    fprintf(stderr,
            "numalm run: load %.3f s | prompt %d tokens, %.1f tok/s | decode %d tokens, "
            "%.2f tok/s | %d threads, %s, %s, %s\n",
            numalm_load_seconds(s), st->n_prompt, ptps, st->n_decode, dtps, numalm_n_threads(s),
            numalm_io_name(numalm_io_used(s)), numalm_placement_name(numalm_placement_used(s)),
            numalm_simd_name(numalm_simd_level()));
    if (st->probe_pairs)
        fprintf(stderr,
                "numalm run: read probe: decode %.1f GB/s of weights, a read of the same "
                "weights by the same threads %.1f GB/s: decode at %.0f%% of it (median of %d "
                "pairs; quartiles %.0f%%-%.0f%%)\n",
                st->probe_decode_gbps, st->probe_read_gbps, 100 * st->probe_of_read,
                st->probe_pairs, 100 * st->probe_of_read_q25, 100 * st->probe_of_read_q75);
    if (!o->c.json)
        return;
    nm_json j;
    nm_json_init(&j, stderr);
    nm_json_obj_begin(&j);
    nm_json_kdouble(&j, "load_s", numalm_load_seconds(s));
    nm_json_kint(&j, "n_prompt", st->n_prompt);
    nm_json_kdouble(&j, "prompt_s", st->prompt_s);
    nm_json_kdouble(&j, "prompt_tok_s", ptps);
    nm_json_kint(&j, "n_decode", st->n_decode);
    nm_json_kint(&j, "n_decode_evals", st->n_decode_evals);
    nm_json_kdouble(&j, "decode_s", st->decode_s);
    nm_json_kdouble(&j, "decode_tok_s", dtps);
    uint64_t wb = numalm_weight_bytes_per_token(s);
    nm_json_kuint(&j, "weight_bytes_per_token", wb);
    nm_json_kdouble(&j, "decode_weight_gb_s", dtps * (double)wb / 1e9);
    if (st->probe_pairs) {
        nm_json_key(&j, "read_probe");
        nm_json_obj_begin(&j);
        nm_json_kint(&j, "pairs", st->probe_pairs);
        nm_json_kdouble(&j, "decode_gb_s", st->probe_decode_gbps);
        nm_json_kdouble(&j, "read_gb_s", st->probe_read_gbps);
        nm_json_kdouble(&j, "of_read", st->probe_of_read);
        nm_json_kdouble(&j, "of_read_q25", st->probe_of_read_q25);
        nm_json_kdouble(&j, "of_read_q75", st->probe_of_read_q75);
        nm_json_kuint(&j, "read_bytes", st->probe_read_bytes);
        nm_json_kuint(&j, "checksum", st->probe_checksum);
        nm_json_obj_end(&j);
    }
    nm_json_kstr(&j, "stop", stop_name(st->stop));
    nm_json_kint(&j, "n_ctx", numalm_n_ctx(s));
    nm_cli_json_run_setup(&j, s);
    nm_cli_json_traffic(&j, s);
    nm_json_obj_end(&j);
    nm_json_finish(&j);
}

/* --chat: [system,] user through the chat template, as token ids. */
static int chat_prompt(run_opts *o, numalm_session *s) {
    int tmpl = numalm_chat_template(s, o->template_name);
    if (tmpl < 0)
        return -1;
    numalm_chat_msg msgs[2] = {{"system", o->system}, {"user", o->prompt}};
    const numalm_chat_msg *m = msgs + !o->system;
    size_t n = o->system ? 2 : 1;
    int count = numalm_chat_tokenize(s, tmpl, m, n, NULL, 0, NULL, 0);
    int32_t *ids = count > 0 ? malloc((size_t)count * sizeof *ids) : NULL;
    if (!ids || numalm_chat_tokenize(s, tmpl, m, n, NULL, 0, ids, count) != count) {
        free(ids);
        return -1;
    }
    o->gen.prompt_tokens = ids;
    o->gen.n_prompt_tokens = count;
    o->gen.stop_token = numalm_chat_end_of_turn(s, tmpl);
    return 0;
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
    numalm_gen_stats st;
    numalm_session *s = nm_cli_open(&o.c, &err);
    if (!s || (o.chat && chat_prompt(&o, s) < 0) ||
        numalm_generate(s, o.prompt, &o.gen, write_text, NULL, &st) < 0) {
        fprintf(stderr, "numalm run: %s\n", s ? numalm_last_error(s) : err.msg);
        free((int32_t *)o.gen.prompt_tokens);
        numalm_close(s);
        return 1;
    }
    free((int32_t *)o.gen.prompt_tokens);
    if (o.gen.echo || st.n_decode)
        write_text(NULL, "\n", 1);
    if (st.stop == NUMALM_STOP_CONTEXT)
        fprintf(stderr,
                "numalm run: context full (%d tokens): stopped generating "
                "(raise -c)\n",
                numalm_n_ctx(s));
    report(&o, s, &st);
    numalm_close(s);
    return 0;
}
