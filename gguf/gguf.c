/* GGUF v2/v3 header reader. The file is untrusted: every count and length is
 * checked against the bytes that remain before anything is allocated, every
 * size computation is overflow-checked, and every message names the file, the
 * key or tensor, and the byte offset, so a user can look at the bad byte. */
#include "gguf.h"

#include "common/util.h"
#include "ggml_types.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define KEY_MAX_LEN 65535      /* the spec caps keys at 2^16-1 bytes */
#define TENSOR_NAME_MAX_LEN 63 /* ggml keeps names in 64 bytes with the NUL */
/* All metadata held in memory together. Real files need a few MB (a 256k
 * vocab); the cap stops a huge, well-formed array from exhausting RAM. */
#define META_MAX_BYTES (512ull << 20)

/* Smallest encodings, used to refuse impossible counts before allocating:
 * a kv pair is key length + 1-byte key + type + 1-byte value; a tensor info is
 * name length + 1-byte name + n_dims + one dim + type + offset. */
#define KV_MIN_BYTES (8 + 1 + 4 + 1)
#define TENSOR_INFO_MIN_BYTES (8 + 1 + 4 + 8 + 4 + 8)

/* The public struct plus lookup indexes sorted by name. */
typedef struct gguf_impl {
    nm_gguf pub;
    uint64_t *kv_by_key;      /* indexes into pub.kv sorted by key */
    uint64_t *tensor_by_name; /* indexes into pub.tensors sorted by name */
} gguf_impl;

typedef struct reader {
    FILE *f;
    const char *name;
    uint64_t pos, size;
    uint64_t meta_bytes; /* metadata allocated so far, against META_MAX_BYTES */
    char where[192];     /* "key 'x' (at byte N)": what is being read */
    nm_error *err;
} reader;

static int rfail(reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int rfail(reader *r, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (r->where[0])
        return nm_fail(r->err, "%s: %s: %s", r->name, r->where, msg);
    return nm_fail(r->err, "%s: %s", r->name, msg);
}

static uint64_t remaining(const reader *r) {
    return r->size - r->pos;
}

static int read_bytes(reader *r, void *buf, uint64_t n, const char *what) {
    if (n > remaining(r))
        return rfail(r, "%s at byte %llu needs %llu bytes but the file ends at byte %llu", what,
                     (unsigned long long)r->pos, (unsigned long long)n,
                     (unsigned long long)r->size);
    if (n && fread(buf, 1, n, r->f) != n)
        return rfail(r, "%s at byte %llu: %s", what, (unsigned long long)r->pos,
                     ferror(r->f) ? strerror(errno) : "unexpected end of file");
    r->pos += n;
    return 0;
}

/* GGUF is little-endian, as is every host numalm runs on (x86-64). */
static int read_u32(reader *r, uint32_t *v, const char *what) {
    return read_bytes(r, v, sizeof *v, what);
}
static int read_u64(reader *r, uint64_t *v, const char *what) {
    return read_bytes(r, v, sizeof *v, what);
}

static void *meta_alloc(reader *r, uint64_t count, uint64_t size, const char *what) {
    uint64_t n;
    if (nm_mul_u64(count, size, &n) || n > META_MAX_BYTES || r->meta_bytes + n > META_MAX_BYTES) {
        rfail(r, "%s at byte %llu would take the metadata past %llu MiB; refusing", what,
              (unsigned long long)r->pos, META_MAX_BYTES >> 20);
        return NULL;
    }
    void *p = malloc(n ? n : 1);
    if (!p) {
        rfail(r, "out of memory allocating %llu bytes for %s", (unsigned long long)n, what);
        return NULL;
    }
    r->meta_bytes += n;
    return p;
}

/* Refuses `count` items of at least `min_size` bytes each when the rest of
 * the file cannot hold them: this is what keeps a forged count of 2^60 from
 * reaching malloc. */
static int check_count(reader *r, uint64_t count, uint64_t min_size, const char *what) {
    uint64_t need;
    if (nm_mul_u64(count, min_size, &need) || need > remaining(r))
        return rfail(r,
                     "%s %llu at byte %llu is impossible: at %llu bytes each they cannot "
                     "fit in the %llu bytes that remain in the file",
                     what, (unsigned long long)count, (unsigned long long)(r->pos - 8),
                     (unsigned long long)min_size, (unsigned long long)remaining(r));
    return 0;
}

/* A string's length, checked against the file and `max_len`. */
static int read_str_len(reader *r, uint64_t max_len, const char *what, uint64_t *len) {
    if (read_u64(r, len, what))
        return -1;
    if (*len > max_len)
        return rfail(r, "%s length %llu at byte %llu exceeds the limit of %llu", what,
                     (unsigned long long)*len, (unsigned long long)(r->pos - 8),
                     (unsigned long long)max_len);
    if (*len > remaining(r))
        return rfail(r,
                     "%s length %llu at byte %llu runs past the end of the file "
                     "(only %llu bytes remain)",
                     what, (unsigned long long)*len, (unsigned long long)(r->pos - 8),
                     (unsigned long long)remaining(r));
    return 0;
}

/* Reads a length-prefixed string into a fresh NUL-terminated buffer. */
static int read_str(reader *r, uint64_t max_len, const char *what, nm_gguf_str *s) {
    uint64_t len;
    if (read_str_len(r, max_len, what, &len))
        return -1;
    char *data = meta_alloc(r, len + 1, 1, what);
    if (!data)
        return -1;
    if (read_bytes(r, data, len, what)) {
        free(data);
        return -1;
    }
    data[len] = 0;
    s->len = len;
    s->data = data;
    return 0;
}

/* Names are used as C strings and printed in messages: refuse the bytes that
 * would make them ambiguous (NUL) or garble a terminal (control codes). */
static int check_name(reader *r, const nm_gguf_str *s, uint64_t start, const char *what,
                      bool ascii_only) {
    if (s->len == 0)
        return rfail(r, "empty %s at byte %llu", what, (unsigned long long)start);
    for (uint64_t i = 0; i < s->len; i++) {
        unsigned char c = (unsigned char)s->data[i];
        if (c < 0x20 || c == 0x7f || (ascii_only && c > 0x7f))
            return rfail(r,
                         "%s at byte %llu holds byte 0x%02x at position %llu; "
                         "only printable characters are allowed",
                         what, (unsigned long long)start, c, (unsigned long long)i);
    }
    return 0;
}

/* ---- metadata values ---- */

static const struct {
    const char *name;
    uint32_t size; /* 0: variable */
} VTYPES[NM_GGUF_VTYPE_COUNT] = {
    [NM_GGUF_UINT8] = {"uint8", 1},     [NM_GGUF_INT8] = {"int8", 1},
    [NM_GGUF_UINT16] = {"uint16", 2},   [NM_GGUF_INT16] = {"int16", 2},
    [NM_GGUF_UINT32] = {"uint32", 4},   [NM_GGUF_INT32] = {"int32", 4},
    [NM_GGUF_FLOAT32] = {"float32", 4}, [NM_GGUF_BOOL] = {"bool", 1},
    [NM_GGUF_STRING] = {"string", 0},   [NM_GGUF_ARRAY] = {"array", 0},
    [NM_GGUF_UINT64] = {"uint64", 8},   [NM_GGUF_INT64] = {"int64", 8},
    [NM_GGUF_FLOAT64] = {"float64", 8},
};

const char *nm_gguf_vtype_name(uint32_t type) {
    return type < NM_GGUF_VTYPE_COUNT ? VTYPES[type].name : "unknown";
}

/* Widens a raw little-endian scalar into the kv's union. */
static int decode_scalar(reader *r, uint32_t type, const unsigned char *raw, uint64_t at,
                         nm_gguf_kv *kv) {
    switch (type) {
    case NM_GGUF_UINT8:
        kv->v.u64 = raw[0];
        break;
    case NM_GGUF_INT8:
        kv->v.i64 = (int8_t)raw[0];
        break;
    case NM_GGUF_UINT16: {
        uint16_t v;
        memcpy(&v, raw, 2);
        kv->v.u64 = v;
        break;
    }
    case NM_GGUF_INT16: {
        int16_t v;
        memcpy(&v, raw, 2);
        kv->v.i64 = v;
        break;
    }
    case NM_GGUF_UINT32: {
        uint32_t v;
        memcpy(&v, raw, 4);
        kv->v.u64 = v;
        break;
    }
    case NM_GGUF_INT32: {
        int32_t v;
        memcpy(&v, raw, 4);
        kv->v.i64 = v;
        break;
    }
    case NM_GGUF_FLOAT32: {
        float v;
        memcpy(&v, raw, 4);
        kv->v.f64 = v;
        break;
    }
    case NM_GGUF_UINT64:
        memcpy(&kv->v.u64, raw, 8);
        break;
    case NM_GGUF_INT64:
        memcpy(&kv->v.i64, raw, 8);
        break;
    case NM_GGUF_FLOAT64:
        memcpy(&kv->v.f64, raw, 8);
        break;
    case NM_GGUF_BOOL:
        /* the spec makes any byte but 0 and 1 invalid */
        if (raw[0] > 1)
            return rfail(r, "bool value at byte %llu is %u, not 0 or 1", (unsigned long long)at,
                         raw[0]);
        kv->v.u64 = raw[0];
        break;
    }
    return 0;
}

/* An array of strings: one pool holds all the characters (so a 256k vocab is
 * two allocations, not 256k); strs[0].data is the pool start and is what
 * gets freed. */
static int read_str_array(reader *r, uint64_t count, nm_gguf_str **out) {
    nm_gguf_str *strs = meta_alloc(r, count, sizeof *strs, "string array");
    if (!strs)
        return -1;
    char *pool = NULL;
    size_t used = 0, cap = 0;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t len;
        if (read_str_len(r, UINT64_MAX - 1, "array string", &len))
            goto fail;
        while (used + len + 1 > cap) {
            /* nm_grow doubles the pool (4 KiB the first time): refuse the
             * step that would take the metadata past its limit */
            uint64_t more = cap ? cap : 4096;
            if (r->meta_bytes + more > META_MAX_BYTES) {
                rfail(r,
                      "string array element %llu at byte %llu would take the metadata "
                      "past %llu MiB; refusing",
                      (unsigned long long)i, (unsigned long long)r->pos, META_MAX_BYTES >> 20);
                goto fail;
            }
            char *np = nm_grow(pool, &cap, cap, 4096, 1);
            if (!np) {
                rfail(r, "out of memory growing a string array past %llu bytes",
                      (unsigned long long)cap);
                goto fail;
            }
            r->meta_bytes += more;
            pool = np;
        }
        if (read_bytes(r, pool + used, len, "array string"))
            goto fail;
        pool[used + len] = 0;
        strs[i].len = len;
        strs[i].data = (char *)(uintptr_t)used; /* offset until the pool settles */
        used += len + 1;
    }
    for (uint64_t i = 0; i < count; i++)
        strs[i].data = pool + (uintptr_t)strs[i].data;
    *out = strs;
    return 0;
fail:
    free(pool);
    free(strs);
    return -1;
}

static int read_array(reader *r, nm_gguf_kv *kv) {
    uint32_t et;
    uint64_t count;
    if (read_u32(r, &et, "array element type"))
        return -1;
    if (et == NM_GGUF_ARRAY)
        return rfail(r, "nested arrays (element type array at byte %llu) are not supported",
                     (unsigned long long)(r->pos - 4));
    if (et >= NM_GGUF_VTYPE_COUNT)
        return rfail(r, "unknown array element type %u at byte %llu", et,
                     (unsigned long long)(r->pos - 4));
    if (read_u64(r, &count, "array count"))
        return -1;
    uint32_t esize = VTYPES[et].size;
    if (check_count(r, count, esize ? esize : 8, "array count"))
        return -1;
    kv->v.arr.type = et;
    kv->v.arr.count = count;
    kv->v.arr.data = NULL;
    if (et == NM_GGUF_STRING)
        return read_str_array(r, count, (nm_gguf_str **)&kv->v.arr.data);
    uint64_t start = r->pos;
    unsigned char *data = meta_alloc(r, count, esize, "array");
    if (!data)
        return -1;
    if (read_bytes(r, data, count * esize, "array data")) {
        free(data);
        return -1;
    }
    if (et == NM_GGUF_BOOL)
        for (uint64_t i = 0; i < count; i++)
            if (data[i] > 1) {
                unsigned bad = data[i];
                free(data);
                return rfail(r, "bool array element %llu at byte %llu is %u, not 0 or 1",
                             (unsigned long long)i, (unsigned long long)(start + i), bad);
            }
    kv->v.arr.data = data;
    return 0;
}

static int read_value(reader *r, nm_gguf_kv *kv) {
    if (read_u32(r, &kv->type, "value type"))
        return -1;
    if (kv->type >= NM_GGUF_VTYPE_COUNT)
        return rfail(r, "unknown value type %u at byte %llu", kv->type,
                     (unsigned long long)(r->pos - 4));
    if (kv->type == NM_GGUF_STRING)
        return read_str(r, UINT64_MAX - 1, "string value", &kv->v.str);
    if (kv->type == NM_GGUF_ARRAY)
        return read_array(r, kv);
    unsigned char raw[8];
    uint64_t at = r->pos;
    if (read_bytes(r, raw, VTYPES[kv->type].size, VTYPES[kv->type].name))
        return -1;
    return decode_scalar(r, kv->type, raw, at, kv);
}

static void free_kv(nm_gguf_kv *kv) {
    free(kv->key);
    if (kv->type == NM_GGUF_STRING) {
        free(kv->v.str.data);
    } else if (kv->type == NM_GGUF_ARRAY && kv->v.arr.data) {
        if (kv->v.arr.type == NM_GGUF_STRING && kv->v.arr.count)
            free(((nm_gguf_str *)kv->v.arr.data)[0].data);
        free(kv->v.arr.data);
    }
}

static int read_kv(reader *r, uint64_t index, nm_gguf_kv *kv) {
    kv->file_offset = r->pos;
    snprintf(r->where, sizeof r->where, "key #%llu (at byte %llu)", (unsigned long long)index,
             (unsigned long long)kv->file_offset);
    nm_gguf_str key;
    if (read_str(r, KEY_MAX_LEN, "key", &key))
        return -1;
    kv->key = key.data;
    kv->type = NM_GGUF_UINT8; /* nothing to free yet */
    if (check_name(r, &key, kv->file_offset, "key", true))
        return -1;
    snprintf(r->where, sizeof r->where, "key '%.100s' (at byte %llu)", kv->key,
             (unsigned long long)kv->file_offset);
    if (read_value(r, kv)) {
        kv->type = NM_GGUF_UINT8;
        return -1;
    }
    return 0;
}

/* ---- tensor infos ---- */

static void tensor_where(reader *r, const nm_gguf_tensor *t) {
    snprintf(r->where, sizeof r->where, "tensor '%s' (info at byte %llu)", t->name,
             (unsigned long long)t->info_offset);
}

/* Shape and type checks that need nothing but the info itself. */
static int check_tensor_shape(reader *r, nm_gguf_tensor *t) {
    const nm_type_info *ti = nm_type_get(t->type);
    if (!ti)
        return rfail(r, "unknown tensor type %u", t->type);
    for (uint32_t d = 0; d < t->n_dims; d++) {
        if (t->ne[d] == 0)
            return rfail(r, "dimension %u is 0", d);
        if (t->ne[d] > (uint64_t)INT64_MAX)
            return rfail(r, "dimension %u is %llu, beyond the int64 range of the format", d,
                         (unsigned long long)t->ne[d]);
    }
    if (t->ne[0] % ti->block_size)
        return rfail(r, "row length ne[0] = %llu is not a multiple of the %s block size %u",
                     (unsigned long long)t->ne[0], ti->name, ti->block_size);
    uint64_t rows = 1;
    for (uint32_t d = 1; d < NM_GGUF_MAX_DIMS; d++)
        if (nm_mul_u64(rows, t->ne[d], &rows))
            return rfail(r, "shape [%llu, %llu, %llu, %llu] overflows 64 bits",
                         (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
                         (unsigned long long)t->ne[2], (unsigned long long)t->ne[3]);
    if (nm_type_row_bytes(t->type, t->ne[0], &t->row_bytes) ||
        nm_mul_u64(t->row_bytes, rows, &t->nbytes))
        return rfail(r, "the size of shape [%llu, %llu, %llu, %llu] of %s overflows 64 bits",
                     (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
                     (unsigned long long)t->ne[2], (unsigned long long)t->ne[3], ti->name);
    t->n_rows = rows;
    return 0;
}

static int read_tensor_info(reader *r, uint64_t index, nm_gguf_tensor *t) {
    t->info_offset = r->pos;
    snprintf(r->where, sizeof r->where, "tensor #%llu (info at byte %llu)",
             (unsigned long long)index, (unsigned long long)t->info_offset);
    nm_gguf_str name;
    if (read_str(r, TENSOR_NAME_MAX_LEN, "tensor name", &name))
        return -1;
    t->name = name.data;
    if (check_name(r, &name, t->info_offset, "tensor name", false))
        return -1;
    tensor_where(r, t);
    if (read_u32(r, &t->n_dims, "n_dims"))
        return -1;
    if (t->n_dims < 1 || t->n_dims > NM_GGUF_MAX_DIMS)
        return rfail(r, "n_dims %u at byte %llu is not between 1 and %d", t->n_dims,
                     (unsigned long long)(r->pos - 4), NM_GGUF_MAX_DIMS);
    for (uint32_t d = 0; d < NM_GGUF_MAX_DIMS; d++) {
        t->ne[d] = 1;
        if (d < t->n_dims && read_u64(r, &t->ne[d], "dimension"))
            return -1;
    }
    if (read_u32(r, &t->type, "tensor type") || read_u64(r, &t->offset, "data offset"))
        return -1;
    return check_tensor_shape(r, t);
}

/* ---- whole-file checks ---- */

static int cmp_u64(uint64_t a, uint64_t b) {
    return a < b ? -1 : a > b;
}

/* Comparators for qsort_r over index arrays; ties go by file position so
 * the first definition sorts first and is the one messages point back to. */
static int by_key(const void *a, const void *b, void *ctx) {
    const nm_gguf *g = ctx;
    const nm_gguf_kv *x = &g->kv[*(const uint64_t *)a], *y = &g->kv[*(const uint64_t *)b];
    int c = strcmp(x->key, y->key);
    return c ? c : cmp_u64(x->file_offset, y->file_offset);
}
static int by_name(const void *a, const void *b, void *ctx) {
    const nm_gguf *g = ctx;
    const nm_gguf_tensor *x = &g->tensors[*(const uint64_t *)a];
    const nm_gguf_tensor *y = &g->tensors[*(const uint64_t *)b];
    int c = strcmp(x->name, y->name);
    return c ? c : cmp_u64(x->info_offset, y->info_offset);
}
static int by_offset(const void *a, const void *b, void *ctx) {
    const nm_gguf *g = ctx;
    const nm_gguf_tensor *x = &g->tensors[*(const uint64_t *)a];
    const nm_gguf_tensor *y = &g->tensors[*(const uint64_t *)b];
    int c = cmp_u64(x->offset, y->offset);
    return c ? c : cmp_u64(x->info_offset, y->info_offset);
}

static uint64_t *sorted_index(reader *r, nm_gguf *g, uint64_t n,
                              int (*cmp)(const void *, const void *, void *)) {
    uint64_t *idx = meta_alloc(r, n, sizeof *idx, "index");
    if (!idx)
        return NULL;
    for (uint64_t i = 0; i < n; i++)
        idx[i] = i;
    qsort_r(idx, n, sizeof *idx, cmp, g);
    return idx;
}

static int check_duplicate_keys(reader *r, gguf_impl *G) {
    nm_gguf *g = &G->pub;
    G->kv_by_key = sorted_index(r, g, g->n_kv, by_key);
    if (!G->kv_by_key)
        return -1;
    for (uint64_t i = 1; i < g->n_kv; i++) {
        const nm_gguf_kv *a = &g->kv[G->kv_by_key[i - 1]], *b = &g->kv[G->kv_by_key[i]];
        if (!strcmp(a->key, b->key)) {
            r->where[0] = 0;
            return rfail(r, "key '%s' (at byte %llu): duplicate key, first defined at byte %llu",
                         b->key, (unsigned long long)b->file_offset,
                         (unsigned long long)a->file_offset);
        }
    }
    return 0;
}

static int read_alignment(reader *r, nm_gguf *g) {
    g->alignment = NM_GGUF_DEFAULT_ALIGNMENT;
    const nm_gguf_kv *kv = nm_gguf_find(g, "general.alignment");
    if (!kv)
        return 0;
    snprintf(r->where, sizeof r->where, "key 'general.alignment' (at byte %llu)",
             (unsigned long long)kv->file_offset);
    if (kv->type != NM_GGUF_UINT32)
        return rfail(r, "has type %s; the format requires uint32", nm_gguf_vtype_name(kv->type));
    uint64_t a = kv->v.u64;
    if (a == 0 || (a & (a - 1)))
        return rfail(r, "alignment %llu is not a nonzero power of two", (unsigned long long)a);
    g->alignment = (uint32_t)a;
    return 0;
}

/* Where each tensor's bytes lie: aligned, inside the file, and not shared. */
static int check_tensor_data(reader *r, gguf_impl *G) {
    nm_gguf *g = &G->pub;
    uint64_t data_room = g->data_offset <= g->file_size ? g->file_size - g->data_offset : 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        nm_gguf_tensor *t = &g->tensors[i];
        tensor_where(r, t);
        uint64_t end;
        if (t->offset % g->alignment)
            return rfail(r, "offset %llu is not a multiple of the alignment %u",
                         (unsigned long long)t->offset, g->alignment);
        if (g->data_offset > g->file_size)
            return rfail(r,
                         "the data section would start at byte %llu, past the end of the "
                         "file (size %llu)",
                         (unsigned long long)g->data_offset, (unsigned long long)g->file_size);
        if (nm_add_u64(t->offset, t->nbytes, &end) || end > data_room)
            return rfail(r,
                         "data at offset %llu (%llu bytes, file bytes %llu..%llu) runs past "
                         "the end of the file (size %llu)",
                         (unsigned long long)t->offset, (unsigned long long)t->nbytes,
                         (unsigned long long)(g->data_offset + t->offset),
                         (unsigned long long)(g->data_offset + t->offset + t->nbytes),
                         (unsigned long long)g->file_size);
        t->file_offset = g->data_offset + t->offset;
        g->data_bytes += t->nbytes; /* cannot overflow: each fits in the file */
    }
    uint64_t *by_off = sorted_index(r, g, g->n_tensors, by_offset);
    if (!by_off)
        return -1;
    for (uint64_t i = 1; i < g->n_tensors; i++) {
        const nm_gguf_tensor *a = &g->tensors[by_off[i - 1]], *b = &g->tensors[by_off[i]];
        if (a->offset + a->nbytes > b->offset) {
            tensor_where(r, b);
            free(by_off);
            return rfail(r, "data at offset %llu overlaps tensor '%s' (offset %llu, %llu bytes)",
                         (unsigned long long)b->offset, a->name, (unsigned long long)a->offset,
                         (unsigned long long)a->nbytes);
        }
    }
    free(by_off);
    return 0;
}

static int check_duplicate_tensors(reader *r, gguf_impl *G) {
    nm_gguf *g = &G->pub;
    G->tensor_by_name = sorted_index(r, g, g->n_tensors, by_name);
    if (!G->tensor_by_name)
        return -1;
    for (uint64_t i = 1; i < g->n_tensors; i++) {
        const nm_gguf_tensor *a = &g->tensors[G->tensor_by_name[i - 1]];
        const nm_gguf_tensor *b = &g->tensors[G->tensor_by_name[i]];
        if (!strcmp(a->name, b->name)) {
            tensor_where(r, b);
            return rfail(r, "duplicate tensor name, first defined at byte %llu",
                         (unsigned long long)a->info_offset);
        }
    }
    return 0;
}

static int read_header(reader *r, nm_gguf *g) {
    snprintf(r->where, sizeof r->where, "header");
    char magic[4];
    if (read_bytes(r, magic, 4, "magic"))
        return -1;
    if (memcmp(magic, "GGUF", 4)) {
        char shown[5];
        for (int i = 0; i < 4; i++)
            shown[i] = (magic[i] >= 0x20 && magic[i] < 0x7f) ? magic[i] : '?';
        shown[4] = 0;
        return rfail(r, "not a GGUF file: magic at byte 0 is '%s', not 'GGUF'", shown);
    }
    if (read_u32(r, &g->version, "version"))
        return -1;
    if (g->version != 2 && g->version != 3)
        return rfail(r, "unsupported GGUF version %u at byte 4 (numalm reads versions 2 and 3%s)",
                     g->version, g->version > 0xffff ? "; a big-endian file?" : "");
    if (read_u64(r, &g->n_tensors, "n_tensors") ||
        check_count(r, g->n_tensors, TENSOR_INFO_MIN_BYTES, "n_tensors"))
        return -1;
    if (read_u64(r, &g->n_kv, "n_kv") || check_count(r, g->n_kv, KV_MIN_BYTES, "n_kv"))
        return -1;
    uint64_t need = g->n_kv * KV_MIN_BYTES + g->n_tensors * TENSOR_INFO_MIN_BYTES;
    if (need > remaining(r))
        return rfail(r,
                     "%llu keys and %llu tensors need at least %llu bytes but only %llu "
                     "remain in the file",
                     (unsigned long long)g->n_kv, (unsigned long long)g->n_tensors,
                     (unsigned long long)need, (unsigned long long)remaining(r));
    return 0;
}

static int read_all(reader *r, gguf_impl *G) {
    nm_gguf *g = &G->pub;
    if (read_header(r, g))
        return -1;
    g->kv = meta_alloc(r, g->n_kv, sizeof *g->kv, "key table");
    if (!g->kv)
        return -1;
    memset(g->kv, 0, g->n_kv * sizeof *g->kv);
    for (uint64_t i = 0; i < g->n_kv; i++) {
        if (read_kv(r, i, &g->kv[i])) {
            g->n_kv = i + 1; /* free what this one holds too */
            return -1;
        }
    }
    if (check_duplicate_keys(r, G) || read_alignment(r, g))
        return -1;
    uint64_t n = g->n_tensors;
    g->tensors = meta_alloc(r, n, sizeof *g->tensors, "tensor table");
    if (!g->tensors)
        return -1;
    memset(g->tensors, 0, n * sizeof *g->tensors);
    for (uint64_t i = 0; i < n; i++) {
        if (read_tensor_info(r, i, &g->tensors[i])) {
            g->n_tensors = i + 1;
            return -1;
        }
    }
    if (check_duplicate_tensors(r, G))
        return -1;
    /* Cannot overflow: pos <= file size and the alignment is at most 2^31. */
    g->data_offset = nm_align_up(r->pos, g->alignment);
    return check_tensor_data(r, G);
}

nm_gguf *nm_gguf_read(FILE *f, uint64_t file_size, const char *name, nm_error *err) {
    gguf_impl *G = calloc(1, sizeof *G);
    if (!G) {
        nm_fail(err, "%s: out of memory", name);
        return NULL;
    }
    nm_gguf *g = &G->pub;
    g->path = strdup(name);
    g->file_size = file_size;
    reader r = {.f = f, .name = name, .size = file_size, .err = err};
    if (!g->path) {
        nm_fail(err, "%s: out of memory", name);
        nm_gguf_close(g);
        return NULL;
    }
    if (read_all(&r, G)) {
        nm_gguf_close(g);
        return NULL;
    }
    return g;
}

nm_gguf *nm_gguf_open(const char *path, nm_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        nm_fail(err, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st)) {
        nm_fail(err, "%s: cannot stat: %s", path, strerror(errno));
        fclose(f);
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        nm_fail(err, "%s: not a regular file", path);
        fclose(f);
        return NULL;
    }
    /* a large buffer: a vocab is ~100k small reads */
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    nm_gguf *g = nm_gguf_read(f, (uint64_t)st.st_size, path, err);
    fclose(f);
    return g;
}

void nm_gguf_close(nm_gguf *g) {
    if (!g)
        return;
    gguf_impl *G = (gguf_impl *)g;
    for (uint64_t i = 0; g->kv && i < g->n_kv; i++)
        free_kv(&g->kv[i]);
    free(g->kv);
    for (uint64_t i = 0; g->tensors && i < g->n_tensors; i++)
        free(g->tensors[i].name);
    free(g->tensors);
    free(G->kv_by_key);
    free(G->tensor_by_name);
    free(g->path);
    free(G);
}

/* ---- lookups ---- */

const nm_gguf_kv *nm_gguf_find(const nm_gguf *g, const char *key) {
    const gguf_impl *G = (const gguf_impl *)g;
    if (!G->kv_by_key) /* during reading, before the index exists */
        return NULL;
    uint64_t lo = 0, hi = g->n_kv;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        const nm_gguf_kv *kv = &g->kv[G->kv_by_key[mid]];
        int c = strcmp(kv->key, key);
        if (!c)
            return kv;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

int64_t nm_gguf_tensor_index(const nm_gguf *g, const char *name) {
    const gguf_impl *G = (const gguf_impl *)g;
    if (!G->tensor_by_name)
        return -1;
    uint64_t lo = 0, hi = g->n_tensors;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        uint64_t i = G->tensor_by_name[mid];
        int c = strcmp(g->tensors[i].name, name);
        if (!c)
            return (int64_t)i;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

const nm_gguf_tensor *nm_gguf_find_tensor(const nm_gguf *g, const char *name) {
    int64_t i = nm_gguf_tensor_index(g, name);
    return i < 0 ? NULL : &g->tensors[i];
}
