/* numalm mkmodel: writes a deterministic GGUF of the llama family (llama,
 * qwen2, qwen3) with random weights. */
#include "common/json.h"
#include "common/util.h"
#include "gguf/file_type.h"
#include "gguf/ggml_types.h"
#include "tools/mkmodel.h"
#include "cli_opt.h"
#include "commands.h"
#include "messages.h"

#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *out) {
    fprintf(out, "usage: numalm mkmodel OUT.gguf [options]\n"
                 "\n"
                 "Writes a GGUF of the llama family with seeded random weights and a generated\n"
                 "SentencePiece vocab. Same options -> byte-identical file.\n"
                 "\n"
                 "  --arch A           llama (default), qwen2 (Q/K/V biases), qwen3 (Q/K\n"
                 "                     norms, attention.key_length) or qwen3moe (qwen3 with\n"
                 "                     a mixture of experts; the moe-tiny and 30b-a3b presets)\n"
                 "  --experts N --experts-used K --ff-exp N\n"
                 "                     qwen3moe: experts per block, used per token, each\n"
                 "                     one's feed-forward length\n"
                 "  --head-dim N       head size (default embd / heads; qwen3's key_length)\n"
                 "  --tied             no output.weight: the LM head is token_embd\n"
                 "  --rope-freqs       llama: a Llama 3.1-style rope_freqs.weight\n"
                 "  --preset tiny|1b   shape (default tiny: embd 256, 4 blocks, ff 768, 8 heads,\n"
                 "                     4 kv heads, vocab 2048, ctx 1024; 1b: TinyLlama-1.1B's)\n"
                 "  --size SIZE        pick a llama-like shape of about SIZE bytes (4G, 500M)\n"
                 "  --type T           weight type of the matrices, token_embd and output\n"
                 "                     (default f16; norms are always f32): a plain type\n"
                 "                     (f32, f16, bf16, q8_0, q4_0, q2_k .. q6_k, ...), or a\n"
                 "                     llama-quantize preset that mixes types by tensor as\n"
                 "                     llama-quantize does: q2_k, q3_k_s, q3_k_m (q3_k),\n"
                 "                     q3_k_l, q4_k_s, q4_k_m (q4_k), q5_k_s, q5_k_m (q5_k),\n"
                 "                     q6_k\n"
                 "  --pure             every matrix of the preset's main type (as\n"
                 "                     llama-quantize --pure)\n"
                 "  --seed N           random seed (default 42)\n"
                 "  --embd N --blocks N --ff N --heads N --kv-heads N --vocab N --ctx N\n"
                 "                     override one field of the preset or --size shape\n"
                 "  --name S           general.name\n"
                 "  --sparse           header only: the weights are a hole in the file (zeros,\n"
                 "                     no disk space), for plans and memory-fit checks of\n"
                 "                     large shapes\n"
                 "  --json             print the result as JSON\n");
}

typedef struct mk_args {
    const char *out;
    const char *preset;
    const char *size;
    const char *type;
    const char *name;
    const char *arch;
    uint64_t seed;
    long over[7]; /* -1 = not given; order of FIELD_OPTS */
    long head_dim, n_expert, n_expert_used, n_ff_exp;
    bool json, pure, sparse, tied, rope_freqs;
} mk_args;

static const char *const FIELD_OPTS[7] = {"--embd",     "--blocks", "--ff", "--heads",
                                          "--kv-heads", "--vocab",  "--ctx"};

static uint32_t *shape_field(nm_mkmodel_shape *s, int i) {
    uint32_t *f[7] = {&s->n_embd,    &s->n_layer, &s->n_ff, &s->n_head,
                      &s->n_head_kv, &s->n_vocab, &s->n_ctx};
    return f[i];
}

/* 1 when argv[*i] was one of the shape overrides (--embd ...), 0 when not,
 * -1 on a bad value. */
static int parse_field(int argc, char **argv, int *i, mk_args *a, nm_error *err) {
    for (int f = 0; f < 7; f++) {
        const char *v;
        int r = nm_cli_opt(argc, argv, i, FIELD_OPTS[f], NULL, &v, err);
        if (r)
            return r < 0 || nm_parse_long(v, 1, 1L << 30, &a->over[f], FIELD_OPTS[f], err) ? -1 : 1;
    }
    return 0;
}

static int parse_args(int argc, char **argv, mk_args *a, nm_error *err) {
    memset(a, 0, sizeof *a);
    a->seed = NM_MKMODEL_DEFAULT_SEED;
    for (int f = 0; f < 7; f++)
        a->over[f] = -1;
    const struct {
        const char *opt;
        const char **dst;
    } strs[] = {{"--preset", &a->preset},
                {"--size", &a->size},
                {"--type", &a->type},
                {"--name", &a->name},
                {"--arch", &a->arch}};
    const struct {
        const char *opt;
        bool *dst;
    } flags[] = {{"--json", &a->json},
                 {"--pure", &a->pure},
                 {"--sparse", &a->sparse},
                 {"--tied", &a->tied},
                 {"--rope-freqs", &a->rope_freqs}};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *v;
        int matched = 0;
        for (size_t k = 0; k < sizeof flags / sizeof flags[0] && !matched; k++)
            if (!strcmp(arg, flags[k].opt))
                matched = *flags[k].dst = true;
        if (matched)
            continue;
        for (size_t k = 0; k < sizeof strs / sizeof strs[0] && !matched; k++)
            if ((matched = nm_cli_opt(argc, argv, &i, strs[k].opt, NULL, strs[k].dst, err)) < 0)
                return -1;
        if (!matched && (matched = nm_cli_opt(argc, argv, &i, "--seed", NULL, &v, err))) {
            long seed;
            /* long is 64-bit here; seeds are non-negative to keep them portable */
            if (matched < 0 || nm_parse_long(v, 0, __LONG_MAX__, &seed, "--seed", err))
                return -1;
            a->seed = (uint64_t)seed;
        }
        if (!matched && (matched = nm_cli_opt(argc, argv, &i, "--head-dim", NULL, &v, err)))
            if (matched < 0 || nm_parse_long(v, 2, 4096, &a->head_dim, "--head-dim", err))
                return -1;
        const struct {
            const char *opt;
            long *dst, max;
        } moe[] = {{"--experts", &a->n_expert, 512},
                   {"--experts-used", &a->n_expert_used, 512},
                   {"--ff-exp", &a->n_ff_exp, 262144}};
        for (size_t k = 0; k < sizeof moe / sizeof moe[0] && !matched; k++)
            if ((matched = nm_cli_opt(argc, argv, &i, moe[k].opt, NULL, &v, err)))
                if (matched < 0 || nm_parse_long(v, 1, moe[k].max, moe[k].dst, moe[k].opt, err))
                    return -1;
        if (!matched && (matched = parse_field(argc, argv, &i, a, err)) < 0)
            return -1;
        if (matched)
            continue;
        if (arg[0] == '-' && arg[1])
            return nm_fail(err, "unknown option '%s' (see --help)", arg);
        if (a->out)
            return nm_fail(err, "more than one output file ('%s' and '%s')", a->out, arg);
        a->out = arg;
    }
    if (!a->out)
        return nm_fail(err, "no output file given (usage: numalm mkmodel OUT.gguf ...)");
    if (a->preset && a->size)
        return nm_fail(err, "--preset and --size choose the shape: give one of them");
    return 0;
}

/* The shape and type the options describe. */
static int resolve(const mk_args *a, nm_mkmodel_opts *o, nm_error *err) {
    memset(o, 0, sizeof *o);
    const char *tname = a->type ? a->type : "f16";
    const nm_file_type *ft = nm_file_type_from_name(tname);
    int type = nm_type_from_name(tname);
    if (ft && nm_mkmodel_is_mix(ft->id)) { /* a preset (q4_k: Q4_K_M) */
        type = (int)ft->base;
        o->ftype = a->pure ? 0 : ft->id;
    }
    if (type < 0 || nm_mkmodel_file_type((nm_mkmodel_quant){(uint32_t)type, o->ftype}) < 0)
        return nm_fail(err, "--type %s: not a type or preset mkmodel writes (see --help)", tname);
    o->type = (uint32_t)type;
    o->seed = a->seed;
    o->sparse = a->sparse;
    o->name = a->name;
    if (a->size) {
        uint64_t bytes;
        uint32_t vocab = a->over[5] > 0 ? (uint32_t)a->over[5] : 32000;
        if (nm_parse_size(a->size, &bytes, err))
            return nm_fail_prefix(err, "--size");
        if (nm_mkmodel_shape_for_size(bytes, (nm_mkmodel_quant){o->type, o->ftype}, vocab,
                                      &o->shape, err))
            return -1;
    } else if (nm_mkmodel_preset(a->preset ? a->preset : "tiny", &o->shape, err)) {
        return nm_fail_prefix(err, "--preset");
    }
    for (int f = 0; f < 7; f++)
        if (a->over[f] > 0)
            *shape_field(&o->shape, f) = (uint32_t)a->over[f];
    static const struct {
        const char *name;
        nm_arch arch;
    } ARCH[] = {{"llama", NM_ARCH_LLAMA},
                {"qwen2", NM_ARCH_QWEN2},
                {"qwen3", NM_ARCH_QWEN3},
                {"qwen3moe", NM_ARCH_QWEN3MOE}};
    nm_arch arch = o->shape.arch; /* the preset's, unless --arch */
    if (a->arch) {
        arch = NM_ARCH_OTHER;
        for (size_t i = 0; i < sizeof ARCH / sizeof ARCH[0]; i++)
            if (!strcmp(a->arch, ARCH[i].name))
                arch = ARCH[i].arch;
        if (arch == NM_ARCH_OTHER)
            return nm_fail(err, "--arch %s: must be one of llama, qwen2, qwen3, qwen3moe", a->arch);
    }
    if (arch != NM_ARCH_QWEN3MOE) /* a moe preset made dense */
        o->shape.n_expert = o->shape.n_expert_used = o->shape.n_ff_exp = 0;
    else if (!o->shape.n_expert) /* a dense preset made a mixture: 8 experts, 2 used */
        o->shape = (nm_mkmodel_shape){.n_embd = o->shape.n_embd,
                                      .n_layer = o->shape.n_layer,
                                      .n_ff = o->shape.n_ff,
                                      .n_head = o->shape.n_head,
                                      .n_head_kv = o->shape.n_head_kv,
                                      .n_vocab = o->shape.n_vocab,
                                      .n_ctx = o->shape.n_ctx,
                                      .n_expert = 8,
                                      .n_expert_used = 2,
                                      .n_ff_exp = o->shape.n_ff / 4};
    o->shape.arch = arch;
    if (a->head_dim)
        o->shape.head_dim = (uint32_t)a->head_dim;
    const long *moe[] = {&a->n_expert, &a->n_expert_used, &a->n_ff_exp};
    uint32_t *dst[] = {&o->shape.n_expert, &o->shape.n_expert_used, &o->shape.n_ff_exp};
    for (int i = 0; i < 3; i++)
        if (*moe[i])
            *dst[i] = (uint32_t)*moe[i];
    o->shape.tied = a->tied;
    o->shape.rope_freqs = a->rope_freqs;
    return nm_mkmodel_check(&o->shape, (nm_mkmodel_quant){o->type, o->ftype}, err);
}

/* The file type the weights give general.file_type ("Q4_K_M", "F16"). */
static const char *file_type_name(const nm_mkmodel_opts *o) {
    int id = nm_mkmodel_file_type((nm_mkmodel_quant){o->type, o->ftype});
    const nm_file_type *f = id >= 0 ? nm_file_type_get((uint32_t)id) : NULL;
    return f ? f->name : "unknown";
}

static const char *arch_name(nm_arch a) {
    return a == NM_ARCH_QWEN2      ? "qwen2"
           : a == NM_ARCH_QWEN3    ? "qwen3"
           : a == NM_ARCH_QWEN3MOE ? "qwen3moe"
                                   : "llama";
}

static void report_json(const mk_args *a, const nm_mkmodel_opts *o, const nm_mkmodel_result *r) {
    const nm_mkmodel_shape *s = &o->shape;
    nm_json j;
    nm_json_init(&j, stdout);
    nm_json_obj_begin(&j);
    nm_json_kstr(&j, "path", a->out);
    nm_json_kstr(&j, "preset", a->size ? "size" : a->preset ? a->preset : "tiny");
    nm_json_kstr(&j, "type", nm_type_name(o->type));
    nm_json_kstr(&j, "file_type", file_type_name(o));
    nm_json_kstr(&j, "arch", arch_name(s->arch));
    nm_json_kuint(&j, "seed", o->seed);
    nm_json_key(&j, "shape");
    nm_json_obj_begin(&j);
    nm_json_kuint(&j, "embd", s->n_embd);
    nm_json_kuint(&j, "blocks", s->n_layer);
    nm_json_kuint(&j, "ff", s->n_ff);
    nm_json_kuint(&j, "heads", s->n_head);
    nm_json_kuint(&j, "kv_heads", s->n_head_kv);
    nm_json_kuint(&j, "vocab", s->n_vocab);
    nm_json_kuint(&j, "ctx", s->n_ctx);
    nm_json_kuint(&j, "head_dim", s->head_dim ? s->head_dim : s->n_embd / s->n_head);
    nm_json_kbool(&j, "tied", s->tied);
    if (s->n_expert) {
        nm_json_kuint(&j, "experts", s->n_expert);
        nm_json_kuint(&j, "experts_used", s->n_expert_used);
        nm_json_kuint(&j, "ff_exp", s->n_ff_exp);
    }
    nm_json_obj_end(&j);
    nm_json_kuint(&j, "n_tensors", r->n_tensors);
    nm_json_kuint(&j, "n_params", r->n_params);
    nm_json_kuint(&j, "file_bytes", r->file_bytes);
    nm_json_kdouble(&j, "seconds", r->seconds);
    nm_json_kdouble(&j, "mb_per_s", r->seconds > 0 ? r->file_bytes / 1e6 / r->seconds : 0);
    nm_json_obj_end(&j);
    nm_json_finish(&j);
}

static void report_text(const mk_args *a, const nm_mkmodel_opts *o, const nm_mkmodel_result *r) {
    const nm_mkmodel_shape *s = &o->shape;
    char b[32];
    printf("wrote %s: %s, %s, %.1fM params, %llu tensors\n", a->out,
           nm_fmt_bytes(r->file_bytes, b, sizeof b), file_type_name(o), r->n_params / 1e6,
           (unsigned long long)r->n_tensors);
    printf("  %s: embd %u, blocks %u, ff %u, heads %u, kv heads %u (head dim %u), vocab %u, "
           "ctx %u%s, seed %llu\n",
           arch_name(s->arch), s->n_embd, s->n_layer, s->n_ff, s->n_head, s->n_head_kv,
           s->head_dim ? s->head_dim : s->n_embd / s->n_head, s->n_vocab, s->n_ctx,
           s->tied ? ", tied" : "", (unsigned long long)o->seed);
    if (o->sparse)
        printf("  %.2f s (sparse: header only, the weights read as zeros)\n", r->seconds);
    else
        printf("  %.2f s (%.0f MB/s)\n", r->seconds,
               r->seconds > 0 ? r->file_bytes / 1e6 / r->seconds : 0.0);
}

/* Ctrl-C or a kill: stop between chunks, so the writer removes OUT.tmp
 * instead of leaving a partial file behind. */
static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

static void catch_stop_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

int cmd_mkmodel(int argc, char **argv) {
    if (nm_cli_help_asked(argc, argv)) {
        usage(stdout);
        return 0;
    }
    nm_error err = {{0}};
    mk_args a;
    nm_mkmodel_opts o;
    nm_mkmodel_result r;
    if (parse_args(argc, argv, &a, &err) || resolve(&a, &o, &err)) {
        fprintf(stderr, "numalm mkmodel: %s\n", err.msg);
        return 2;
    }
    if (nm_cli_progress_wanted())
        o.progress = nm_cli_progress;
    o.stop = &stop_requested;
    catch_stop_signals();
    if (nm_mkmodel_write(a.out, &o, &r, &err)) {
        fprintf(stderr, "numalm mkmodel: %s\n", err.msg);
        return stop_requested ? 130 : 1;
    }
    if (a.json)
        report_json(&a, &o, &r);
    else
        report_text(&a, &o, &r);
    return 0;
}
