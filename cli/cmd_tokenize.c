/* numalm tokenize: the token ids and pieces of a text, as the model's
 * tokenizer makes them. Reads only the GGUF metadata (no weights). */
#include "cli_opt.h"
#include "commands.h"

#include "common/json.h"
#include "common/util.h"
#include "runtime/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct tok_opts {
    const char *model, *prompt, *file;
    bool ids, special, no_bos, json;
} tok_opts;

static void usage(FILE *out) {
    fprintf(out,
            "usage: numalm tokenize -m MODEL (-p TEXT | -f FILE) [--ids] [--special] [--json]\n"
            "\n"
            "Prints each token of the text: its id and the text it stands for (control\n"
            "tokens as their piece). BOS/EOS are added as the vocab asks.\n"
            "\n"
            "  -m, --model FILE   GGUF model (only its tokenizer is read)\n"
            "  -p, --prompt TEXT  the text\n"
            "  -f, --file FILE    the text, from a file\n"
            "  --ids              only the ids, as a list: [1, 2, 3]\n"
            "  --special          control pieces written in the text (<|eot_id|>, ...)\n"
            "                     become their token (llama.cpp's parse_special)\n"
            "  --no-bos           add no BOS/EOS\n"
            "  --json             ids, pieces, texts and types, and the time taken\n"
            "  -h, --help         this help\n");
}

static int parse(tok_opts *o, int argc, char **argv, nm_error *err) {
    memset(o, 0, sizeof *o);
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = nm_cli_opt(argc, argv, &i, "--model", "-m", &o->model, err)) ||
            (r = nm_cli_opt(argc, argv, &i, "--prompt", "-p", &o->prompt, err)) ||
            (r = nm_cli_opt(argc, argv, &i, "--file", "-f", &o->file, err))) {
            if (r < 0)
                return -1;
        } else if (!strcmp(argv[i], "--ids")) {
            o->ids = true;
        } else if (!strcmp(argv[i], "--special")) {
            o->special = true;
        } else if (!strcmp(argv[i], "--no-bos")) {
            o->no_bos = true;
        } else if (!strcmp(argv[i], "--json")) {
            o->json = true;
        } else {
            return nm_fail(err, "unknown option '%s' (see numalm tokenize --help)", argv[i]);
        }
    }
    if (!o->model)
        return nm_fail(err, "no model given (-m FILE)");
    if (!o->prompt == !o->file)
        return nm_fail(err, "give the text with either -p TEXT or -f FILE");
    return 0;
}

static char *read_text(const char *path, size_t *len, nm_error *err) {
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0;
    *len = 0;
    if (!f) {
        nm_fail(err, "%s: cannot open: %m", path);
        return NULL;
    }
    for (;;) {
        char *p = nm_grow(buf, &cap, *len + 65536, 1 << 20, 1);
        if (!p) {
            nm_fail(err, "%s: out of memory reading it", path);
            break;
        }
        buf = p;
        size_t n = fread(buf + *len, 1, cap - *len, f);
        *len += n;
        if (n == 0) {
            if (ferror(f))
                nm_fail(err, "%s: read error", path);
            else {
                fclose(f);
                return buf;
            }
            break;
        }
    }
    fclose(f);
    free(buf);
    return NULL;
}

/* A token's text as the user sees it: control tokens by their piece. */
static size_t token_text(const nm_tokenizer *t, int32_t id, int32_t prev, char *buf, size_t cap) {
    if (nm_token_is_control(t, id)) {
        const char *p = nm_token_piece(t, id);
        size_t n = strlen(p) < cap ? strlen(p) : cap;
        memcpy(buf, p, n);
        return n;
    }
    return nm_token_to_text(t, id, prev, buf, cap);
}

/* Printable, with C escapes for control bytes and bytes of a partial
 * UTF-8 character (one token may hold part of a character). */
static void print_quoted(const char *s, size_t n) {
    putchar('\'');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        size_t len = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
        bool whole = len > 1 && i + len <= n;
        for (size_t k = 1; whole && k < len; k++)
            whole = ((unsigned char)s[i + k] & 0xC0) == 0x80;
        if (whole) {
            fwrite(s + i, 1, len, stdout);
            i += len - 1;
        } else if (c == '\n')
            fputs("\\n", stdout);
        else if (c == '\t')
            fputs("\\t", stdout);
        else if (c == '\'' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20 || c >= 0x7F)
            printf("\\x%02x", c);
        else
            putchar(c);
    }
    putchar('\'');
}

static void print_json(const tok_opts *o, const nm_tokenizer *t, const int32_t *ids, int n,
                       double seconds, size_t text_len, char *buf, size_t cap) {
    nm_json j;
    nm_json_init(&j, stdout);
    nm_json_obj_begin(&j);
    nm_json_kstr(&j, "model", o->model);
    nm_json_kstr(&j, "vocab", nm_tokenizer_kind_name(t));
    nm_json_kstr(&j, "pre", nm_tokenizer_pre_name(t));
    nm_json_kint(&j, "n_vocab", nm_tokenizer_n_vocab(t));
    nm_json_kuint(&j, "text_bytes", text_len);
    nm_json_kint(&j, "n_tokens", n);
    nm_json_kdouble(&j, "tokenize_s", seconds);
    nm_json_key(&j, "tokens");
    nm_json_arr_begin(&j);
    for (int i = 0; i < n; i++) {
        nm_json_obj_begin(&j);
        nm_json_kint(&j, "id", ids[i]);
        nm_json_kstr(&j, "piece", nm_token_piece(t, ids[i]));
        size_t len = token_text(t, ids[i], i ? ids[i - 1] : -1, buf, cap);
        nm_json_key(&j, "text");
        nm_json_strn(&j, buf, len);
        nm_json_kstr(&j, "type", nm_token_type_name(t, ids[i]));
        nm_json_obj_end(&j);
    }
    nm_json_arr_end(&j);
    nm_json_obj_end(&j);
    nm_json_finish(&j);
}

static void print_tokens(const tok_opts *o, const nm_tokenizer *t, const int32_t *ids, int n,
                         char *buf, size_t cap) {
    if (o->ids) {
        putchar('[');
        for (int i = 0; i < n; i++)
            printf(i ? ", %d" : "%d", ids[i]);
        puts("]");
        return;
    }
    for (int i = 0; i < n; i++) {
        printf("%7d -> ", ids[i]);
        print_quoted(buf, token_text(t, ids[i], i ? ids[i - 1] : -1, buf, cap));
        putchar('\n');
    }
}

int cmd_tokenize(int argc, char **argv) {
    if (nm_cli_help_asked(argc, argv)) {
        usage(stdout);
        return 0;
    }
    tok_opts o;
    nm_error err = {{0}};
    if (parse(&o, argc, argv, &err) < 0) {
        fprintf(stderr, "numalm tokenize: %s\n", err.msg);
        return 2;
    }
    nm_gguf *g = NULL;
    nm_tokenizer *t = NULL;
    char *text = NULL, *buf = NULL;
    int32_t *ids = NULL;
    int status = 1;
    size_t len = o.prompt ? strlen(o.prompt) : 0;
    if (o.file && !(text = read_text(o.file, &len, &err)))
        goto done;
    if (!(g = nm_gguf_open(o.model, &err)) || !(t = nm_tokenizer_load(g, &err)))
        goto done;
    unsigned flags = (o.no_bos ? 0 : NM_TOK_ADD_SPECIAL) | (o.special ? NM_TOK_PARSE_SPECIAL : 0);
    double t0 = nm_now();
    int n = nm_tokenize(t, text ? text : o.prompt, len, flags, &ids, &err);
    double seconds = nm_now() - t0;
    if (n < 0)
        goto done;
    size_t cap = nm_tokenizer_max_text(t) + 1;
    if (!(buf = malloc(cap))) {
        nm_fail(&err, "out of memory");
        goto done;
    }
    if (o.json)
        print_json(&o, t, ids, n, seconds, len, buf, cap);
    else
        print_tokens(&o, t, ids, n, buf, cap);
    status = 0;
done:
    if (status)
        fprintf(stderr, "numalm tokenize: %s\n", err.msg);
    free(buf);
    free(ids);
    free(text);
    nm_tokenizer_free(t);
    if (g)
        nm_gguf_close(g);
    return status;
}
