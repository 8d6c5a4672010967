/* A small streaming JSON writer for --json reports. It tracks nesting so
 * commas are placed automatically; callers only say what comes next. */
#ifndef NM_JSON_H
#define NM_JSON_H

#include <stdint.h>
#include <stdio.h>

#define NM_JSON_MAX_DEPTH 32

typedef struct nm_json {
    FILE *out;
    int depth;
    int first[NM_JSON_MAX_DEPTH]; /* 1 until the first item at that level */
    int after_key;
} nm_json;

void nm_json_init(nm_json *j, FILE *out);
void nm_json_obj_begin(nm_json *j);
void nm_json_obj_end(nm_json *j);
void nm_json_arr_begin(nm_json *j);
void nm_json_arr_end(nm_json *j);
void nm_json_key(nm_json *j, const char *key);
void nm_json_str(nm_json *j, const char *s);
void nm_json_strn(nm_json *j, const char *s, size_t n);
void nm_json_int(nm_json *j, int64_t v);
void nm_json_uint(nm_json *j, uint64_t v);
void nm_json_double(nm_json *j, double v); /* NaN/inf become null */
void nm_json_bool(nm_json *j, int v);
void nm_json_null(nm_json *j);

/* key + value shorthands */
void nm_json_kstr(nm_json *j, const char *key, const char *s);
void nm_json_kint(nm_json *j, const char *key, int64_t v);
void nm_json_kuint(nm_json *j, const char *key, uint64_t v);
void nm_json_kdouble(nm_json *j, const char *key, double v);
void nm_json_kbool(nm_json *j, const char *key, int v);
void nm_json_kint_array(nm_json *j, const char *key, const int *v, int n);

/* Ends the document with a newline. */
void nm_json_finish(nm_json *j);

#endif
