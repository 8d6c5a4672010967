/* GGUF v2/v3 reader. The header (metadata + tensor infos) is read with
 * buffered reads and validated completely before anything trusts it; tensor
 * data is never read here (the loader does that, per node). */
#ifndef NM_GGUF_H
#define NM_GGUF_H

#include "common/error.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define NM_GGUF_MAX_DIMS 4
#define NM_GGUF_DEFAULT_ALIGNMENT 32

enum nm_gguf_vtype {
    NM_GGUF_UINT8 = 0,
    NM_GGUF_INT8 = 1,
    NM_GGUF_UINT16 = 2,
    NM_GGUF_INT16 = 3,
    NM_GGUF_UINT32 = 4,
    NM_GGUF_INT32 = 5,
    NM_GGUF_FLOAT32 = 6,
    NM_GGUF_BOOL = 7,
    NM_GGUF_STRING = 8,
    NM_GGUF_ARRAY = 9,
    NM_GGUF_UINT64 = 10,
    NM_GGUF_INT64 = 11,
    NM_GGUF_FLOAT64 = 12,
    NM_GGUF_VTYPE_COUNT = 13,
};

typedef struct nm_gguf_str {
    uint64_t len;
    char *data; /* NUL-terminated copy (the file's string may hold NULs) */
} nm_gguf_str;

typedef struct nm_gguf_kv {
    char *key;
    uint32_t type;        /* enum nm_gguf_vtype */
    uint64_t file_offset; /* where the key/value pair starts in the file */
    union {
        uint64_t u64; /* all unsigned ints and bool */
        int64_t i64;  /* all signed ints */
        double f64;   /* FLOAT32 and FLOAT64 */
        nm_gguf_str str;
        struct {
            uint32_t type; /* element type; never ARRAY (nested arrays refused) */
            uint64_t count;
            void *data; /* count elements: raw little-endian values of the
                           element's size, or nm_gguf_str[] for strings */
        } arr;
    } v;
} nm_gguf_kv;

typedef struct nm_gguf_tensor {
    char *name;
    uint32_t n_dims;
    uint64_t ne[NM_GGUF_MAX_DIMS]; /* ne[0] is the row length; unused dims 1 */
    uint32_t type;                 /* enum nm_type */
    uint64_t offset;               /* relative to the data section */
    uint64_t file_offset;          /* absolute: data_offset + offset */
    uint64_t nbytes;
    uint64_t n_rows; /* ne[1]*ne[2]*ne[3] */
    uint64_t row_bytes;
    uint64_t info_offset; /* where its tensor info starts in the file */
} nm_gguf_tensor;

typedef struct nm_gguf {
    char *path;
    uint32_t version;
    uint64_t file_size;
    uint64_t n_kv;
    nm_gguf_kv *kv;
    uint64_t n_tensors;
    nm_gguf_tensor *tensors;
    uint32_t alignment;
    uint64_t data_offset; /* absolute offset of the data section */
    uint64_t data_bytes;  /* sum of tensor nbytes */
} nm_gguf;

/* Opens and validates a GGUF file. On error: NULL result, err names the file,
 * the key or tensor and the byte offset. */
nm_gguf *nm_gguf_open(const char *path, nm_error *err);

/* Parses from a stream of known size (used by the fuzzer via fmemopen).
 * name is used in messages. */
nm_gguf *nm_gguf_read(FILE *f, uint64_t file_size, const char *name, nm_error *err);

void nm_gguf_close(nm_gguf *g);

const nm_gguf_kv *nm_gguf_find(const nm_gguf *g, const char *key);
const nm_gguf_tensor *nm_gguf_find_tensor(const nm_gguf *g, const char *name);
int64_t nm_gguf_tensor_index(const nm_gguf *g, const char *name); /* -1 if absent */

/* Typed getters. Return 1 found, 0 absent, -1 present with a wrong type or a
 * value out of range (err says which key and what it holds). Integer getters
 * accept any integer type that fits. */
int nm_gguf_get_u64(const nm_gguf *g, const char *key, uint64_t *out, nm_error *err);
int nm_gguf_get_u32(const nm_gguf *g, const char *key, uint32_t *out, nm_error *err);
int nm_gguf_get_f32(const nm_gguf *g, const char *key, float *out, nm_error *err);
int nm_gguf_get_bool(const nm_gguf *g, const char *key, bool *out, nm_error *err);
int nm_gguf_get_str(const nm_gguf *g, const char *key, const char **out, nm_error *err);
/* Array of the given element type; *count and *data from the kv. */
int nm_gguf_get_arr(const nm_gguf *g, const char *key, uint32_t elem_type, uint64_t *count,
                    const void **data, nm_error *err);

/* Element i (< count) of an array kv, widened into a scalar kv of the
 * element's type (u64 / i64 / f64 / str as for a plain value). */
nm_gguf_kv nm_gguf_arr_elem(const nm_gguf_kv *kv, uint64_t i);

const char *nm_gguf_vtype_name(uint32_t type);

#endif
