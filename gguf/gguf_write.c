#include "gguf_write.h"

#include "common/util.h"
#include "ggml_types.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* llama.cpp stores tensor names in a 64-byte field, NUL included. */
#define MAX_TENSOR_NAME 63

typedef struct membuf {
    uint8_t *p;
    size_t len, cap;
    bool oom; /* a put did not fit in memory: the buffer is incomplete */
} membuf;

typedef struct wtensor {
    char *name;
    uint32_t n_dims;
    uint64_t ne[NM_GGUF_MAX_DIMS];
    uint32_t type;
    uint64_t offset; /* relative to the data section */
    uint64_t nbytes;
} wtensor;

enum { ST_COLLECT, ST_WRITING, ST_DONE, ST_FAILED };

struct nm_gguf_writer {
    uint32_t alignment;
    int state;

    membuf kv; /* serialized key/value pairs */
    uint64_t n_kv;
    char **keys;
    size_t keys_cap;

    wtensor *tensors;
    uint64_t n_tensors;
    size_t tensors_cap;
    uint64_t data_bytes; /* end of the last tensor, padded */

    int fd;
    bool own_fd;
    char *path, *tmp_path, *name;
    uint64_t pos;           /* file offset of the next byte written */
    uint64_t cur, cur_done; /* tensor being streamed, its bytes so far */
};

/* ---- memory buffer ---- */

/* Appends n bytes; after a failed allocation the buffer only records it
 * (b->oom), and the caller reports it once. */
static void mb_put(membuf *b, const void *p, size_t n) {
    if (b->oom)
        return;
    if (n > SIZE_MAX - b->len) {
        b->oom = true;
        return;
    }
    while (b->len + n > b->cap) {
        uint8_t *np = nm_grow(b->p, &b->cap, b->cap, 4096, 1);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static int mb_check(const membuf *b, const char *what, const char *name, nm_error *err) {
    if (!b->oom)
        return 0;
    return nm_fail(err, "gguf writer: out of memory for the %s (%s, %zu bytes so far)", what, name,
                   b->len);
}

/* GGUF is little-endian; so are the x86 and arm64 hosts numalm runs on. */
static void mb_u32(membuf *b, uint32_t v) {
    mb_put(b, &v, 4);
}
static void mb_u64(membuf *b, uint64_t v) {
    mb_put(b, &v, 8);
}
static void mb_str(membuf *b, const char *s, size_t n) {
    mb_u64(b, n);
    mb_put(b, s, n);
}

/* ---- setup ---- */

nm_gguf_writer *nm_gguf_writer_new(uint32_t alignment) {
    if (alignment == 0)
        alignment = NM_GGUF_DEFAULT_ALIGNMENT;
    if (alignment & (alignment - 1))
        return NULL;
    nm_gguf_writer *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->alignment = alignment;
    w->fd = -1;
    return w;
}

void nm_gguf_writer_free(nm_gguf_writer *w) {
    if (!w)
        return;
    if (w->own_fd && w->fd >= 0)
        close(w->fd);
    if (w->own_fd && w->state != ST_DONE && w->tmp_path)
        unlink(w->tmp_path);
    for (uint64_t i = 0; i < w->n_kv; i++)
        free(w->keys[i]);
    free(w->keys);
    for (uint64_t i = 0; i < w->n_tensors; i++)
        free(w->tensors[i].name);
    free(w->tensors);
    free(w->kv.p);
    free(w->path);
    free(w->tmp_path);
    free(w->name);
    free(w);
}

static size_t vtype_size(uint32_t t) {
    switch (t) {
    case NM_GGUF_UINT8:
    case NM_GGUF_INT8:
    case NM_GGUF_BOOL:
        return 1;
    case NM_GGUF_UINT16:
    case NM_GGUF_INT16:
        return 2;
    case NM_GGUF_UINT32:
    case NM_GGUF_INT32:
    case NM_GGUF_FLOAT32:
        return 4;
    case NM_GGUF_UINT64:
    case NM_GGUF_INT64:
    case NM_GGUF_FLOAT64:
        return 8;
    default:
        return 0; /* STRING, ARRAY, unknown */
    }
}

/* Checks the phase and the key, records it, and starts its serialization. */
static int kv_start(nm_gguf_writer *w, const char *key, uint32_t vtype, nm_error *err) {
    if (w->state != ST_COLLECT)
        return nm_fail(err, "gguf writer: metadata key '%s' added after the header was written",
                       key);
    size_t n = strlen(key);
    if (n == 0 || n > 65535)
        return nm_fail(err, "gguf writer: metadata key of %zu bytes (must be 1..65535)", n);
    for (uint64_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->keys[i], key))
            return nm_fail(err, "gguf writer: duplicate metadata key '%s'", key);
    char **keys = nm_grow(w->keys, &w->keys_cap, w->n_kv, 32, sizeof *keys);
    if (keys)
        w->keys = keys;
    char *copy = keys ? strdup(key) : NULL;
    if (!copy)
        return nm_fail(err, "gguf writer: out of memory for metadata key '%s'", key);
    w->keys[w->n_kv++] = copy;
    mb_str(&w->kv, key, n);
    mb_u32(&w->kv, vtype);
    return mb_check(&w->kv, "metadata", key, err);
}

int nm_gguf_w_scalar(nm_gguf_writer *w, const char *key, uint32_t vtype, const void *value,
                     nm_error *err) {
    size_t sz = vtype_size(vtype);
    if (!sz)
        return nm_fail(err, "gguf writer: key '%s': type %u is not a scalar type", key, vtype);
    if (vtype == NM_GGUF_BOOL && *(const uint8_t *)value > 1)
        return nm_fail(err, "gguf writer: key '%s': bool value %u", key, *(const uint8_t *)value);
    if (kv_start(w, key, vtype, err))
        return -1;
    mb_put(&w->kv, value, sz);
    return mb_check(&w->kv, "metadata", key, err);
}

int nm_gguf_w_u32(nm_gguf_writer *w, const char *key, uint32_t v, nm_error *err) {
    return nm_gguf_w_scalar(w, key, NM_GGUF_UINT32, &v, err);
}
int nm_gguf_w_i32(nm_gguf_writer *w, const char *key, int32_t v, nm_error *err) {
    return nm_gguf_w_scalar(w, key, NM_GGUF_INT32, &v, err);
}
int nm_gguf_w_u64(nm_gguf_writer *w, const char *key, uint64_t v, nm_error *err) {
    return nm_gguf_w_scalar(w, key, NM_GGUF_UINT64, &v, err);
}
int nm_gguf_w_f32(nm_gguf_writer *w, const char *key, float v, nm_error *err) {
    return nm_gguf_w_scalar(w, key, NM_GGUF_FLOAT32, &v, err);
}
int nm_gguf_w_bool(nm_gguf_writer *w, const char *key, bool v, nm_error *err) {
    uint8_t b = v ? 1 : 0;
    return nm_gguf_w_scalar(w, key, NM_GGUF_BOOL, &b, err);
}

int nm_gguf_w_strn(nm_gguf_writer *w, const char *key, const char *s, size_t len, nm_error *err) {
    if (kv_start(w, key, NM_GGUF_STRING, err))
        return -1;
    mb_str(&w->kv, s, len);
    return mb_check(&w->kv, "metadata", key, err);
}

int nm_gguf_w_str(nm_gguf_writer *w, const char *key, const char *s, nm_error *err) {
    return nm_gguf_w_strn(w, key, s, strlen(s), err);
}

int nm_gguf_w_arr(nm_gguf_writer *w, const char *key, uint32_t elem_type, const void *data,
                  uint64_t count, nm_error *err) {
    size_t sz = vtype_size(elem_type);
    if (!sz)
        return nm_fail(err,
                       "gguf writer: key '%s': array of type %u (use nm_gguf_w_str_arr "
                       "for strings; nested arrays are not allowed)",
                       key, elem_type);
    uint64_t bytes;
    if (nm_mul_u64(count, sz, &bytes) || bytes > SIZE_MAX / 2)
        return nm_fail(err, "gguf writer: key '%s': array of %llu elements is too large", key,
                       (unsigned long long)count);
    if (kv_start(w, key, NM_GGUF_ARRAY, err))
        return -1;
    mb_u32(&w->kv, elem_type);
    mb_u64(&w->kv, count);
    mb_put(&w->kv, data, (size_t)bytes);
    return mb_check(&w->kv, "metadata", key, err);
}

int nm_gguf_w_str_arr(nm_gguf_writer *w, const char *key, const char *const *strs, uint64_t count,
                      nm_error *err) {
    if (kv_start(w, key, NM_GGUF_ARRAY, err))
        return -1;
    mb_u32(&w->kv, NM_GGUF_STRING);
    mb_u64(&w->kv, count);
    for (uint64_t i = 0; i < count; i++)
        mb_str(&w->kv, strs[i], strlen(strs[i]));
    return mb_check(&w->kv, "metadata", key, err);
}

/* ---- tensor infos ---- */

static int tensor_bytes(const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                        uint64_t *out, nm_error *err) {
    if (!nm_type_get(type))
        return nm_fail(err, "gguf writer: tensor '%s': unknown type %u", name, type);
    if (n_dims < 1 || n_dims > NM_GGUF_MAX_DIMS)
        return nm_fail(err, "gguf writer: tensor '%s': %u dimensions (must be 1..%d)", name, n_dims,
                       NM_GGUF_MAX_DIMS);
    uint64_t rows = 1, row_bytes;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] == 0)
            return nm_fail(err, "gguf writer: tensor '%s': dimension %u is 0", name, d);
        if (d > 0 && nm_mul_u64(rows, ne[d], &rows))
            return nm_fail(err, "gguf writer: tensor '%s': element count overflows", name);
    }
    if (nm_type_row_bytes(type, ne[0], &row_bytes))
        return nm_fail(err,
                       "gguf writer: tensor '%s': row of %llu elements is not a whole "
                       "number of %s blocks (%u elements)",
                       name, (unsigned long long)ne[0], nm_type_name(type),
                       nm_type_get(type)->block_size);
    if (nm_mul_u64(rows, row_bytes, out))
        return nm_fail(err, "gguf writer: tensor '%s': byte size overflows", name);
    return 0;
}

int nm_gguf_w_tensor(nm_gguf_writer *w, const char *name, uint32_t n_dims, const uint64_t *ne,
                     uint32_t type, nm_error *err) {
    if (w->state != ST_COLLECT)
        return nm_fail(err, "gguf writer: tensor '%s' added after the header was written", name);
    size_t len = strlen(name);
    if (len == 0 || len > MAX_TENSOR_NAME)
        return nm_fail(err, "gguf writer: tensor name '%s' has %zu bytes (must be 1..%d)", name,
                       len, MAX_TENSOR_NAME);
    for (uint64_t i = 0; i < w->n_tensors; i++)
        if (!strcmp(w->tensors[i].name, name))
            return nm_fail(err, "gguf writer: duplicate tensor name '%s'", name);
    uint64_t nbytes = 0, end;
    if (tensor_bytes(name, n_dims, ne, type, &nbytes, err))
        return -1;
    if (nm_add_u64(w->data_bytes, nbytes, &end) || end > UINT64_MAX - w->alignment)
        return nm_fail(err, "gguf writer: tensor '%s': data section too large", name);
    wtensor *tensors = nm_grow(w->tensors, &w->tensors_cap, w->n_tensors, 64, sizeof *tensors);
    if (tensors)
        w->tensors = tensors;
    char *copy = tensors ? strdup(name) : NULL;
    if (!copy)
        return nm_fail(err, "gguf writer: out of memory for tensor info '%s'", name);
    wtensor *t = &w->tensors[w->n_tensors++];
    memset(t, 0, sizeof *t);
    t->name = copy;
    t->n_dims = n_dims;
    for (uint32_t d = 0; d < NM_GGUF_MAX_DIMS; d++)
        t->ne[d] = d < n_dims ? ne[d] : 1;
    t->type = type;
    t->offset = w->data_bytes;
    t->nbytes = nbytes;
    w->data_bytes = nm_align_up(end, w->alignment);
    return 0;
}

uint64_t nm_gguf_w_n_tensors(const nm_gguf_writer *w) {
    return w->n_tensors;
}

uint64_t nm_gguf_w_tensor_bytes(const nm_gguf_writer *w, uint64_t i) {
    return i < w->n_tensors ? w->tensors[i].nbytes : 0;
}

/* Header, key/values and tensor infos, serialized. */
static void build_header(const nm_gguf_writer *w, membuf *h) {
    mb_put(h, "GGUF", 4);
    mb_u32(h, 3);
    mb_u64(h, w->n_tensors);
    mb_u64(h, w->n_kv);
    if (w->kv.len)
        mb_put(h, w->kv.p, w->kv.len);
    for (uint64_t i = 0; i < w->n_tensors; i++) {
        const wtensor *t = &w->tensors[i];
        mb_str(h, t->name, strlen(t->name));
        mb_u32(h, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++)
            mb_u64(h, t->ne[d]);
        mb_u32(h, t->type);
        mb_u64(h, t->offset);
    }
}

static uint64_t header_bytes(const nm_gguf_writer *w) {
    uint64_t n = 4 + 4 + 8 + 8 + w->kv.len;
    for (uint64_t i = 0; i < w->n_tensors; i++)
        n += 8 + strlen(w->tensors[i].name) + 4 + 8ull * w->tensors[i].n_dims + 4 + 8;
    return n;
}

uint64_t nm_gguf_w_file_size(const nm_gguf_writer *w) {
    return nm_align_up(header_bytes(w), w->alignment) + w->data_bytes;
}

/* ---- output ---- */

static int write_all(nm_gguf_writer *w, const void *p, size_t n, nm_error *err) {
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t r = write(w->fd, b, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = r < 0 ? errno : ENOSPC;
            w->state = ST_FAILED;
            return nm_fail(err, "writing %s at byte offset %llu: %s", w->name,
                           (unsigned long long)w->pos, strerror(e));
        }
        b += r;
        n -= (size_t)r;
        w->pos += (uint64_t)r;
    }
    return 0;
}

static int write_zeros(nm_gguf_writer *w, uint64_t n, nm_error *err) {
    static const uint8_t zeros[4096];
    while (n > 0) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        if (write_all(w, zeros, k, err))
            return -1;
        n -= k;
    }
    return 0;
}

int nm_gguf_w_begin_fd(nm_gguf_writer *w, int fd, const char *name, nm_error *err) {
    if (w->state != ST_COLLECT)
        return nm_fail(err, "gguf writer: %s: header already written", name);
    w->fd = fd;
    free(w->name);
    if (!(w->name = strdup(name)))
        return nm_fail(err, "gguf writer: %s: out of memory", name);
    w->state = ST_WRITING;
    membuf h = {0};
    build_header(w, &h);
    int rc = mb_check(&h, "header", name, err) || write_all(w, h.p, h.len, err) ? -1 : 0;
    free(h.p);
    if (rc || write_zeros(w, nm_align_up(w->pos, w->alignment) - w->pos, err))
        return -1;
    return 0;
}

int nm_gguf_w_begin(nm_gguf_writer *w, const char *path, nm_error *err) {
    if (w->state != ST_COLLECT)
        return nm_fail(err, "gguf writer: %s: header already written", path);
    size_t n = strlen(path);
    char *tmp = malloc(n + 5), *copy = strdup(path);
    if (!tmp || !copy) {
        free(tmp), free(copy);
        return nm_fail(err, "%s: out of memory", path);
    }
    memcpy(tmp, path, n);
    memcpy(tmp + n, ".tmp", 5);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        nm_fail(err, "cannot create %s: %s", tmp, strerror(e));
        free(tmp), free(copy);
        return -1;
    }
    free(w->path);
    free(w->tmp_path);
    w->path = copy;
    w->tmp_path = tmp;
    w->own_fd = true;
    return nm_gguf_w_begin_fd(w, fd, tmp, err);
}

int nm_gguf_w_data(nm_gguf_writer *w, const void *data, size_t n, nm_error *err) {
    if (w->state != ST_WRITING)
        return nm_fail(err, "gguf writer: %s: tensor data written %s",
                       w->name ? w->name : "(no file)",
                       w->state == ST_COLLECT ? "before the header" : "after an error or the end");
    const uint8_t *p = data;
    while (n > 0) {
        if (w->cur >= w->n_tensors) {
            w->state = ST_FAILED;
            return nm_fail(err,
                           "gguf writer: %s: %zu bytes of tensor data beyond the last "
                           "tensor",
                           w->name, n);
        }
        const wtensor *t = &w->tensors[w->cur];
        uint64_t left = t->nbytes - w->cur_done;
        size_t take = n < left ? n : (size_t)left;
        if (write_all(w, p, take, err))
            return nm_fail_prefix(err, "tensor '%s'", t->name);
        p += take;
        n -= take;
        w->cur_done += take;
        if (w->cur_done == t->nbytes) {
            if (write_zeros(w, nm_align_up(t->nbytes, w->alignment) - t->nbytes, err))
                return nm_fail_prefix(err, "tensor '%s' padding", t->name);
            w->cur++;
            w->cur_done = 0;
        }
    }
    return 0;
}

int nm_gguf_w_hole(nm_gguf_writer *w, nm_error *err) {
    if (w->state != ST_WRITING)
        return nm_fail(err, "gguf writer: %s: hole %s", w->name ? w->name : "(no file)",
                       w->state == ST_COLLECT ? "before the header" : "after an error or the end");
    uint64_t end = nm_gguf_w_file_size(w);
    if (ftruncate(w->fd, (off_t)end) != 0) {
        w->state = ST_FAILED;
        return nm_fail(err, "extending %s to %llu bytes: %s", w->name, (unsigned long long)end,
                       strerror(errno));
    }
    w->pos = end;
    w->cur = w->n_tensors;
    w->cur_done = 0;
    return 0;
}

int nm_gguf_w_finish(nm_gguf_writer *w, nm_error *err) {
    if (w->state != ST_WRITING)
        return nm_fail(err, "gguf writer: %s: finish without a successful write",
                       w->name ? w->name : "(no file)");
    if (w->cur < w->n_tensors) {
        w->state = ST_FAILED;
        return nm_fail(err, "gguf writer: %s: tensor '%s' got %llu of its %llu bytes", w->name,
                       w->tensors[w->cur].name, (unsigned long long)w->cur_done,
                       (unsigned long long)w->tensors[w->cur].nbytes);
    }
    if (!w->own_fd) {
        w->state = ST_DONE;
        return 0;
    }
    /* close() is where NFS and some quota setups report a failed write */
    int rc = close(w->fd);
    w->fd = -1;
    if (rc) {
        w->state = ST_FAILED;
        return nm_fail(err, "closing %s: %s", w->tmp_path, strerror(errno));
    }
    if (rename(w->tmp_path, w->path)) {
        w->state = ST_FAILED;
        return nm_fail(err, "renaming %s to %s: %s", w->tmp_path, w->path, strerror(errno));
    }
    w->state = ST_DONE;
    return 0;
}
