/* Typed access to GGUF metadata: a key of the wrong type is an error that
 * names the file, the key and its byte offset, while a missing key is not
 * (0), because most llama keys are optional and have defaults. Built only on
 * the public lookups, so the reader (gguf.c) stays about parsing. */
#include "gguf.h"

#include <stdio.h>
#include <string.h>

static bool is_unsigned(uint32_t t) {
    return t == NM_GGUF_UINT8 || t == NM_GGUF_UINT16 || t == NM_GGUF_UINT32 || t == NM_GGUF_UINT64;
}
static bool is_signed(uint32_t t) {
    return t == NM_GGUF_INT8 || t == NM_GGUF_INT16 || t == NM_GGUF_INT32 || t == NM_GGUF_INT64;
}

static int wrong_type(const nm_gguf *g, const nm_gguf_kv *kv, const char *want, nm_error *err) {
    return nm_fail(err, "%s: key '%s' (at byte %llu) has type %s; expected %s", g->path, kv->key,
                   (unsigned long long)kv->file_offset, nm_gguf_vtype_name(kv->type), want);
}

int nm_gguf_get_u64(const nm_gguf *g, const char *key, uint64_t *out, nm_error *err) {
    const nm_gguf_kv *kv = nm_gguf_find(g, key);
    if (!kv)
        return 0;
    if (is_unsigned(kv->type)) {
        *out = kv->v.u64;
        return 1;
    }
    if (!is_signed(kv->type))
        return wrong_type(g, kv, "an integer", err);
    if (kv->v.i64 < 0)
        return nm_fail(err, "%s: key '%s' (at byte %llu) is %lld; expected a value >= 0", g->path,
                       key, (unsigned long long)kv->file_offset, (long long)kv->v.i64);
    *out = (uint64_t)kv->v.i64;
    return 1;
}

int nm_gguf_get_u32(const nm_gguf *g, const char *key, uint32_t *out, nm_error *err) {
    uint64_t v;
    int rc = nm_gguf_get_u64(g, key, &v, err);
    if (rc != 1)
        return rc;
    if (v > UINT32_MAX) {
        const nm_gguf_kv *kv = nm_gguf_find(g, key);
        return nm_fail(err, "%s: key '%s' (at byte %llu) is %llu; expected a value < 2^32", g->path,
                       key, (unsigned long long)kv->file_offset, (unsigned long long)v);
    }
    *out = (uint32_t)v;
    return 1;
}

int nm_gguf_get_f32(const nm_gguf *g, const char *key, float *out, nm_error *err) {
    const nm_gguf_kv *kv = nm_gguf_find(g, key);
    if (!kv)
        return 0;
    if (kv->type != NM_GGUF_FLOAT32 && kv->type != NM_GGUF_FLOAT64)
        return wrong_type(g, kv, "float32", err);
    *out = (float)kv->v.f64;
    return 1;
}

int nm_gguf_get_bool(const nm_gguf *g, const char *key, bool *out, nm_error *err) {
    const nm_gguf_kv *kv = nm_gguf_find(g, key);
    if (!kv)
        return 0;
    if (kv->type != NM_GGUF_BOOL)
        return wrong_type(g, kv, "bool", err);
    *out = kv->v.u64 != 0;
    return 1;
}

int nm_gguf_get_str(const nm_gguf *g, const char *key, const char **out, nm_error *err) {
    const nm_gguf_kv *kv = nm_gguf_find(g, key);
    if (!kv)
        return 0;
    if (kv->type != NM_GGUF_STRING)
        return wrong_type(g, kv, "string", err);
    *out = kv->v.str.data;
    return 1;
}

int nm_gguf_get_arr(const nm_gguf *g, const char *key, uint32_t elem_type, uint64_t *count,
                    const void **data, nm_error *err) {
    const nm_gguf_kv *kv = nm_gguf_find(g, key);
    if (!kv)
        return 0;
    if (kv->type != NM_GGUF_ARRAY || kv->v.arr.type != elem_type) {
        char want[48];
        snprintf(want, sizeof want, "an array of %s", nm_gguf_vtype_name(elem_type));
        if (kv->type != NM_GGUF_ARRAY)
            return wrong_type(g, kv, want, err);
        return nm_fail(err, "%s: key '%s' (at byte %llu) is an array of %s; expected %s", g->path,
                       key, (unsigned long long)kv->file_offset, nm_gguf_vtype_name(kv->v.arr.type),
                       want);
    }
    *count = kv->v.arr.count;
    *data = kv->v.arr.data;
    return 1;
}

nm_gguf_kv nm_gguf_arr_elem(const nm_gguf_kv *kv, uint64_t i) {
    nm_gguf_kv e = {.type = kv->v.arr.type};
    const unsigned char *p = kv->v.arr.data;
    switch (e.type) {
    case NM_GGUF_UINT8:
    case NM_GGUF_BOOL:
        e.v.u64 = p[i];
        break;
    case NM_GGUF_INT8:
        e.v.i64 = (int8_t)p[i];
        break;
    case NM_GGUF_UINT16: {
        uint16_t v;
        memcpy(&v, p + 2 * i, 2);
        e.v.u64 = v;
        break;
    }
    case NM_GGUF_INT16: {
        int16_t v;
        memcpy(&v, p + 2 * i, 2);
        e.v.i64 = v;
        break;
    }
    case NM_GGUF_UINT32: {
        uint32_t v;
        memcpy(&v, p + 4 * i, 4);
        e.v.u64 = v;
        break;
    }
    case NM_GGUF_INT32: {
        int32_t v;
        memcpy(&v, p + 4 * i, 4);
        e.v.i64 = v;
        break;
    }
    case NM_GGUF_FLOAT32: {
        float v;
        memcpy(&v, p + 4 * i, 4);
        e.v.f64 = v;
        break;
    }
    case NM_GGUF_UINT64:
        memcpy(&e.v.u64, p + 8 * i, 8);
        break;
    case NM_GGUF_INT64:
        memcpy(&e.v.i64, p + 8 * i, 8);
        break;
    case NM_GGUF_FLOAT64:
        memcpy(&e.v.f64, p + 8 * i, 8);
        break;
    case NM_GGUF_STRING:
        e.v.str = ((const nm_gguf_str *)kv->v.arr.data)[i];
        break;
    }
    return e;
}
