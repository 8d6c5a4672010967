/* numalm info: what a GGUF file holds (metadata, llama hyperparameters,
 * tensors, totals per type) and whether numalm can run it. The file is fully
 * validated first; a bad file gives one message naming the byte. */
#include "cli_opt.h"
#include "commands.h"

#include "common/json.h"
#include "common/util.h"
#include "gguf/file_type.h"
#include "gguf/ggml_types.h"
#include "gguf/gguf.h"
#include "gguf/llama_hparams.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define TEXT_ARRAY_HEAD 6  /* array elements shown in text */
#define TEXT_STRING_MAX 72 /* characters of a string shown in text */
#define JSON_ARRAY_FULL 64 /* arrays up to this length are given whole */
#define JSON_ARRAY_HEAD 8  /* longer ones: this many elements and the count */

static void usage(FILE *out) {
    fprintf(out,
            "usage: numalm info MODEL.gguf [--json]\n"
            "\n"
            "Validates a GGUF file (v2/v3) and shows its metadata (long arrays\n"
            "abbreviated to their first elements and count), the llama\n"
            "hyperparameters, every tensor (type, shape, file offset, bytes), the\n"
            "totals per type, and whether numalm can run the model (and if not, why).\n"
            "A malformed file is refused with a message naming the key or tensor and\n"
            "the byte offset; the exit status is then 1.\n"
            "\n"
            "  --json      machine-readable output; arrays longer than %d elements are\n"
            "              given as {\"type\", \"count\", \"head\": first %d elements}\n"
            "  -h, --help  this help\n",
            JSON_ARRAY_FULL, JSON_ARRAY_HEAD);
}

typedef struct info {
    const nm_gguf *g;
    nm_llama_hparams hp;
    bool have_hp;
    nm_error hp_err; /* why the hyperparameters could not be read */
    bool runnable;
    nm_error run_err; /* why numalm cannot run it */
} info;

/* ---- values ---- */

static const char *arch_of(const nm_gguf *g) {
    const nm_gguf_kv *kv = nm_gguf_find(g, "general.architecture");
    return kv && kv->type == NM_GGUF_STRING ? kv->v.str.data : NULL;
}

static void text_string(const nm_gguf_str *s, FILE *out) {
    fputc('"', out);
    uint64_t n = s->len < TEXT_STRING_MAX ? s->len : TEXT_STRING_MAX;
    for (uint64_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s->data[i];
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", out);
        else if (c < 0x20 || c == 0x7f)
            fprintf(out, "\\x%02x", c);
        else
            fputc(c, out);
    }
    fputc('"', out);
    if (n < s->len)
        fprintf(out, "... (%" PRIu64 " bytes)", s->len);
}

static void text_scalar(const nm_gguf_kv *kv, FILE *out) {
    switch (kv->type) {
    case NM_GGUF_UINT8:
    case NM_GGUF_UINT16:
    case NM_GGUF_UINT32:
    case NM_GGUF_UINT64:
        fprintf(out, "%" PRIu64, kv->v.u64);
        break;
    case NM_GGUF_INT8:
    case NM_GGUF_INT16:
    case NM_GGUF_INT32:
    case NM_GGUF_INT64:
        fprintf(out, "%" PRId64, kv->v.i64);
        break;
    case NM_GGUF_FLOAT32:
    case NM_GGUF_FLOAT64:
        fprintf(out, "%g", kv->v.f64);
        break;
    case NM_GGUF_BOOL:
        fputs(kv->v.u64 ? "true" : "false", out);
        break;
    case NM_GGUF_STRING:
        text_string(&kv->v.str, out);
        break;
    }
}

static void text_value(const nm_gguf_kv *kv, FILE *out) {
    if (kv->type != NM_GGUF_ARRAY) {
        text_scalar(kv, out);
        return;
    }
    uint64_t n = kv->v.arr.count;
    fputc('[', out);
    for (uint64_t i = 0; i < n && i < TEXT_ARRAY_HEAD; i++) {
        nm_gguf_kv e = nm_gguf_arr_elem(kv, i);
        fputs(i ? ", " : "", out);
        text_scalar(&e, out);
    }
    if (n > TEXT_ARRAY_HEAD)
        fprintf(out, ", ... (%" PRIu64 " elements)", n);
    fputc(']', out);
}

static void json_scalar(nm_json *j, const nm_gguf_kv *kv) {
    switch (kv->type) {
    case NM_GGUF_UINT8:
    case NM_GGUF_UINT16:
    case NM_GGUF_UINT32:
    case NM_GGUF_UINT64:
        nm_json_uint(j, kv->v.u64);
        break;
    case NM_GGUF_INT8:
    case NM_GGUF_INT16:
    case NM_GGUF_INT32:
    case NM_GGUF_INT64:
        nm_json_int(j, kv->v.i64);
        break;
    case NM_GGUF_FLOAT32:
    case NM_GGUF_FLOAT64:
        nm_json_double(j, kv->v.f64);
        break;
    case NM_GGUF_BOOL:
        nm_json_bool(j, kv->v.u64 != 0);
        break;
    case NM_GGUF_STRING:
        nm_json_strn(j, kv->v.str.data, kv->v.str.len);
        break;
    }
}

static void json_array_elems(nm_json *j, const nm_gguf_kv *kv, uint64_t n) {
    nm_json_arr_begin(j);
    for (uint64_t i = 0; i < n; i++) {
        nm_gguf_kv e = nm_gguf_arr_elem(kv, i);
        json_scalar(j, &e);
    }
    nm_json_arr_end(j);
}

static void json_value(nm_json *j, const nm_gguf_kv *kv) {
    if (kv->type != NM_GGUF_ARRAY) {
        json_scalar(j, kv);
    } else if (kv->v.arr.count <= JSON_ARRAY_FULL) {
        json_array_elems(j, kv, kv->v.arr.count);
    } else {
        nm_json_obj_begin(j);
        nm_json_kstr(j, "type", nm_gguf_vtype_name(kv->v.arr.type));
        nm_json_kuint(j, "count", kv->v.arr.count);
        nm_json_key(j, "head");
        json_array_elems(j, kv, JSON_ARRAY_HEAD);
        nm_json_obj_end(j);
    }
}

/* ---- tensors ---- */

static void shape_str(const nm_gguf_tensor *t, char *buf, size_t n) {
    size_t used = (size_t)snprintf(buf, n, "[");
    for (uint32_t d = 0; d < t->n_dims && used < n; d++)
        used += (size_t)snprintf(buf + used, n - used, "%s%" PRIu64, d ? ", " : "", t->ne[d]);
    if (used < n)
        snprintf(buf + used, n - used, "]");
}

typedef struct type_total {
    uint64_t count, bytes;
} type_total;

static void totals_by_type(const nm_gguf *g, type_total *tot) {
    memset(tot, 0, NM_TYPE_COUNT * sizeof *tot);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        tot[g->tensors[i].type].count++; /* the reader refused unknown types */
        tot[g->tensors[i].type].bytes += g->tensors[i].nbytes;
    }
}

/* general.file_type described: "mostly Q4_K (Q4_K_M)". */
static const char *file_type_text(const nm_gguf *g, char *buf, size_t cap) {
    uint32_t id;
    nm_error err = {{0}};
    int r = nm_gguf_get_u32(g, "general.file_type", &id, &err);
    if (r < 0)
        snprintf(buf, cap, "general.file_type is not a uint32");
    else if (r == 0)
        snprintf(buf, cap, "general.file_type absent");
    else
        nm_file_type_describe(id, buf, (unsigned)cap);
    return buf;
}

/* ---- text ---- */

static void print_hparams_text(const info *in, FILE *out) {
    const nm_llama_hparams *hp = &in->hp;
    fprintf(out, "\nhyperparameters:\n");
    if (!in->have_hp) {
        fprintf(out, "  not available: %s\n", in->hp_err.msg);
        return;
    }
    fprintf(out, "  architecture    %s\n", hp->arch);
    fprintf(out, "  blocks          %u\n", hp->n_layer);
    fprintf(out, "  embedding       %u\n", hp->n_embd);
    fprintf(out, "  feed-forward    %u\n", hp->n_ff);
    fprintf(out, "  heads           %u (head dim %u)\n", hp->n_head, hp->head_dim);
    fprintf(out, "  KV heads        %u\n", hp->n_head_kv);
    fprintf(out, "  context         %u\n", hp->n_ctx_train);
    fprintf(out, "  rope dims       %u (%s)\n", hp->n_rot,
            hp->rope_type == NM_ROPE_NEOX ? "neox" : "normal");
    fprintf(out, "  rope freq_base  %g\n", (double)hp->rope_freq_base);
    if (hp->rope_freq_scale != 1.0f || hp->rope_attn_factor != 1.0f)
        fprintf(out, "  rope scaling    linear, positions x %g, attention x %g\n",
                (double)hp->rope_freq_scale, (double)hp->rope_attn_factor);
    if (hp->n_expert)
        fprintf(out, "  experts         %u, %u used per token (feed-forward %u each)\n",
                hp->n_expert, hp->n_expert_used, hp->n_ff_exp);
    fprintf(out, "  rms epsilon     %g\n", (double)hp->rms_eps);
    fprintf(out, "  vocab size      %u\n", hp->n_vocab);
}

static void print_text(const info *in, FILE *out) {
    const nm_gguf *g = in->g;
    char b1[32];
    fprintf(out, "file:      %s (%s)\n", g->path, nm_fmt_bytes(g->file_size, b1, sizeof b1));
    fprintf(out,
            "GGUF:      version %u, %" PRIu64 " keys, %" PRIu64 " tensors, alignment %u, "
            "data at byte %" PRIu64 "\n",
            g->version, g->n_kv, g->n_tensors, g->alignment, g->data_offset);
    fprintf(out, "\nmetadata:\n");
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const nm_gguf_kv *kv = &g->kv[i];
        char type[32];
        if (kv->type == NM_GGUF_ARRAY)
            snprintf(type, sizeof type, "%s[]", nm_gguf_vtype_name(kv->v.arr.type));
        else
            snprintf(type, sizeof type, "%s", nm_gguf_vtype_name(kv->type));
        fprintf(out, "  %-40s %-9s ", kv->key, type);
        text_value(kv, out);
        fputc('\n', out);
    }
    char ft[64];
    fprintf(out, "\nweights:   %s\n", file_type_text(g, ft, sizeof ft));
    print_hparams_text(in, out);
    fprintf(out, "\nnumalm can run it: %s%s\n",
            in->runnable ? "yes" : "no: ", in->runnable ? "" : in->run_err.msg);
    fprintf(out, "\ntensors:\n  %-32s %-7s %-22s %14s %14s\n", "name", "type", "shape",
            "file offset", "bytes");
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const nm_gguf_tensor *t = &g->tensors[i];
        char shape[96];
        shape_str(t, shape, sizeof shape);
        fprintf(out, "  %-32s %-7s %-22s %14" PRIu64 " %14" PRIu64 "\n", t->name,
                nm_type_name(t->type), shape, t->file_offset, t->nbytes);
    }
    type_total tot[NM_TYPE_COUNT];
    totals_by_type(g, tot);
    fprintf(out, "\ntotals by type:\n");
    for (int ty = 0; ty < NM_TYPE_COUNT; ty++)
        if (tot[ty].count)
            fprintf(out, "  %-7s %6" PRIu64 " tensors %16" PRIu64 " bytes (%s)\n",
                    nm_type_name((uint32_t)ty), tot[ty].count, tot[ty].bytes,
                    nm_fmt_bytes(tot[ty].bytes, b1, sizeof b1));
    fprintf(out, "  %-7s %6" PRIu64 " tensors %16" PRIu64 " bytes (%s)\n", "all", g->n_tensors,
            g->data_bytes, nm_fmt_bytes(g->data_bytes, b1, sizeof b1));
}

/* ---- JSON ---- */

static void print_hparams_json(nm_json *j, const info *in) {
    const nm_llama_hparams *hp = &in->hp;
    nm_json_key(j, "hparams");
    if (!in->have_hp) {
        nm_json_null(j);
        nm_json_kstr(j, "hparams_error", in->hp_err.msg);
        return;
    }
    nm_json_obj_begin(j);
    nm_json_kstr(j, "architecture", hp->arch);
    nm_json_kuint(j, "n_layer", hp->n_layer);
    nm_json_kuint(j, "n_embd", hp->n_embd);
    nm_json_kuint(j, "n_ff", hp->n_ff);
    nm_json_kuint(j, "n_head", hp->n_head);
    nm_json_kuint(j, "n_head_kv", hp->n_head_kv);
    nm_json_kuint(j, "head_dim", hp->head_dim);
    nm_json_kuint(j, "n_ctx_train", hp->n_ctx_train);
    nm_json_kuint(j, "n_rot", hp->n_rot);
    nm_json_kstr(j, "rope_type", hp->rope_type == NM_ROPE_NEOX ? "neox" : "normal");
    nm_json_kdouble(j, "rope_freq_scale", hp->rope_freq_scale);
    nm_json_kuint(j, "n_expert", hp->n_expert);
    nm_json_kuint(j, "n_expert_used", hp->n_expert_used);
    nm_json_kuint(j, "n_ff_exp", hp->n_ff_exp);
    nm_json_kdouble(j, "rope_freq_base", hp->rope_freq_base);
    nm_json_kdouble(j, "rms_eps", hp->rms_eps);
    nm_json_kuint(j, "n_vocab", hp->n_vocab);
    nm_json_obj_end(j);
}

static void print_tensors_json(nm_json *j, const nm_gguf *g) {
    nm_json_key(j, "tensors");
    nm_json_arr_begin(j);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const nm_gguf_tensor *t = &g->tensors[i];
        nm_json_obj_begin(j);
        nm_json_kstr(j, "name", t->name);
        nm_json_kstr(j, "type", nm_type_name(t->type));
        nm_json_key(j, "shape");
        nm_json_arr_begin(j);
        for (uint32_t d = 0; d < t->n_dims; d++)
            nm_json_uint(j, t->ne[d]);
        nm_json_arr_end(j);
        nm_json_kuint(j, "offset", t->file_offset);
        nm_json_kuint(j, "bytes", t->nbytes);
        nm_json_obj_end(j);
    }
    nm_json_arr_end(j);
    type_total tot[NM_TYPE_COUNT];
    totals_by_type(g, tot);
    nm_json_key(j, "types");
    nm_json_obj_begin(j);
    for (int ty = 0; ty < NM_TYPE_COUNT; ty++) {
        if (!tot[ty].count)
            continue;
        nm_json_key(j, nm_type_name((uint32_t)ty));
        nm_json_obj_begin(j);
        nm_json_kuint(j, "count", tot[ty].count);
        nm_json_kuint(j, "bytes", tot[ty].bytes);
        nm_json_obj_end(j);
    }
    nm_json_obj_end(j);
}

static void print_json(const info *in, FILE *out) {
    const nm_gguf *g = in->g;
    nm_json j;
    nm_json_init(&j, out);
    nm_json_obj_begin(&j);
    nm_json_kstr(&j, "file", g->path);
    nm_json_kuint(&j, "file_size", g->file_size);
    nm_json_kuint(&j, "version", g->version);
    nm_json_kstr(&j, "architecture", arch_of(g));
    nm_json_kuint(&j, "alignment", g->alignment);
    nm_json_kuint(&j, "data_offset", g->data_offset);
    nm_json_kuint(&j, "n_kv", g->n_kv);
    nm_json_kuint(&j, "n_tensors", g->n_tensors);
    nm_json_kuint(&j, "n_bytes", g->data_bytes);
    char ft[64];
    nm_json_kstr(&j, "file_type", file_type_text(g, ft, sizeof ft));
    nm_json_kstr(&j, "metadata_note",
                 "arrays longer than 64 elements are abbreviated to "
                 "{type, count, head: first 8 elements}");
    nm_json_key(&j, "metadata");
    nm_json_obj_begin(&j);
    for (uint64_t i = 0; i < g->n_kv; i++) {
        nm_json_key(&j, g->kv[i].key);
        json_value(&j, &g->kv[i]);
    }
    nm_json_obj_end(&j);
    print_hparams_json(&j, in);
    nm_json_kbool(&j, "runnable", in->runnable);
    if (!in->runnable)
        nm_json_kstr(&j, "not_runnable_reason", in->run_err.msg);
    print_tensors_json(&j, g);
    nm_json_obj_end(&j);
    nm_json_finish(&j);
}

int cmd_info(int argc, char **argv) {
    if (nm_cli_help_asked(argc, argv)) {
        usage(stdout);
        return 0;
    }
    const char *path = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            json = true;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "numalm info: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        } else if (path) {
            fprintf(stderr, "numalm info: more than one model given ('%s', '%s')\n", path, argv[i]);
            return 2;
        } else {
            path = argv[i];
        }
    }
    if (!path) {
        fprintf(stderr, "numalm info: no model given\n");
        usage(stderr);
        return 2;
    }
    info in = {0};
    in.g = nm_gguf_open(path, &in.hp_err);
    if (!in.g) {
        fprintf(stderr, "numalm info: %s\n", in.hp_err.msg);
        return 1;
    }
    /* Lenient first, to show what is there; then what running it requires. */
    in.have_hp = nm_llama_hparams_read(in.g, &in.hp, false, &in.hp_err) == 0;
    nm_llama_hparams strict_hp;
    in.runnable = nm_llama_hparams_read(in.g, &strict_hp, true, &in.run_err) == 0 &&
                  nm_llama_check_tensors(in.g, &strict_hp, &in.run_err) == 0;
    if (json)
        print_json(&in, stdout);
    else
        print_text(&in, stdout);
    nm_gguf_close((nm_gguf *)in.g);
    return 0;
}
