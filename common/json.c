#include "json.h"

#include <math.h>
#include <string.h>

void nm_json_init(nm_json *j, FILE *out) {
    j->out = out;
    j->depth = 0;
    j->first[0] = 1;
    j->after_key = 0;
}

/* Called before every value or key: emits the separating comma. */
static void before_item(nm_json *j) {
    if (j->after_key) {
        j->after_key = 0;
        return;
    }
    if (!j->first[j->depth])
        fputc(',', j->out);
    j->first[j->depth] = 0;
}

static void open(nm_json *j, char c) {
    before_item(j);
    fputc(c, j->out);
    if (j->depth + 1 < NM_JSON_MAX_DEPTH)
        j->depth++;
    j->first[j->depth] = 1;
}

static void close(nm_json *j, char c) {
    fputc(c, j->out);
    if (j->depth > 0)
        j->depth--;
}

void nm_json_obj_begin(nm_json *j) {
    open(j, '{');
}
void nm_json_obj_end(nm_json *j) {
    close(j, '}');
}
void nm_json_arr_begin(nm_json *j) {
    open(j, '[');
}
void nm_json_arr_end(nm_json *j) {
    close(j, ']');
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid.
 * GGUF strings are not guaranteed UTF-8, and JSON output must stay valid. */
static size_t utf8_len(const unsigned char *s, size_t n) {
    size_t len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
    if (s[0] > 0xf4 || len == 0 || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    uint32_t cp = s[0] & (0xff >> (len + 1));
    for (size_t i = 1; i < len; i++)
        cp = (cp << 6) | (s[i] & 0x3f);
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

static void write_escaped(FILE *out, const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    fputc('"', out);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c >= 0x80) {
            size_t len = utf8_len(s + i, n - i);
            if (len == 0) {
                fputs("\\ufffd", out);
            } else {
                fwrite(s + i, 1, len, out);
                i += len - 1;
            }
            continue;
        }
        switch (c) {
        case '"':
            fputs("\\\"", out);
            break;
        case '\\':
            fputs("\\\\", out);
            break;
        case '\n':
            fputs("\\n", out);
            break;
        case '\r':
            fputs("\\r", out);
            break;
        case '\t':
            fputs("\\t", out);
            break;
        default:
            if (c < 0x20 || c == 0x7f)
                fprintf(out, "\\u%04x", c);
            else
                fputc(c, out);
        }
    }
    fputc('"', out);
}

void nm_json_key(nm_json *j, const char *key) {
    before_item(j);
    write_escaped(j->out, key, strlen(key));
    fputc(':', j->out);
    j->after_key = 1;
}

void nm_json_strn(nm_json *j, const char *s, size_t n) {
    before_item(j);
    write_escaped(j->out, s, n);
}

void nm_json_str(nm_json *j, const char *s) {
    if (!s) {
        nm_json_null(j);
        return;
    }
    nm_json_strn(j, s, strlen(s));
}

void nm_json_int(nm_json *j, int64_t v) {
    before_item(j);
    fprintf(j->out, "%lld", (long long)v);
}

void nm_json_uint(nm_json *j, uint64_t v) {
    before_item(j);
    fprintf(j->out, "%llu", (unsigned long long)v);
}

void nm_json_double(nm_json *j, double v) {
    before_item(j);
    if (isnan(v) || isinf(v))
        fputs("null", j->out);
    else
        fprintf(j->out, "%.9g", v);
}

void nm_json_bool(nm_json *j, int v) {
    before_item(j);
    fputs(v ? "true" : "false", j->out);
}

void nm_json_null(nm_json *j) {
    before_item(j);
    fputs("null", j->out);
}

void nm_json_kstr(nm_json *j, const char *k, const char *s) {
    nm_json_key(j, k);
    nm_json_str(j, s);
}
void nm_json_kint(nm_json *j, const char *k, int64_t v) {
    nm_json_key(j, k);
    nm_json_int(j, v);
}
void nm_json_kuint(nm_json *j, const char *k, uint64_t v) {
    nm_json_key(j, k);
    nm_json_uint(j, v);
}
void nm_json_kdouble(nm_json *j, const char *k, double v) {
    nm_json_key(j, k);
    nm_json_double(j, v);
}
void nm_json_kbool(nm_json *j, const char *k, int v) {
    nm_json_key(j, k);
    nm_json_bool(j, v);
}

void nm_json_kint_array(nm_json *j, const char *k, const int *v, int n) {
    nm_json_key(j, k);
    nm_json_arr_begin(j);
    for (int i = 0; i < n; i++)
        nm_json_int(j, v[i]);
    nm_json_arr_end(j);
}

void nm_json_finish(nm_json *j) {
    fputc('\n', j->out);
    fflush(j->out);
}
