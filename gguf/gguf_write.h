/* A small streaming GGUF v3 writer.
 *
 * Metadata and tensor infos are collected in memory first (they are small and
 * the header needs their counts up front); then the header is written and the
 * tensor data is streamed tensor by tensor, in the order the tensors were
 * declared, in pieces of any size. Each tensor starts at a multiple of the
 * alignment, so memory stays bounded by the caller's chunk size however large
 * the file is.
 *
 *   w = nm_gguf_writer_new(32);
 *   nm_gguf_w_str(w, "general.architecture", "llama", err); ...
 *   nm_gguf_w_tensor(w, "token_embd.weight", 2, ne, NM_TYPE_F16, err); ...
 *   nm_gguf_w_begin(w, "out.gguf", err);    // writes out.gguf.tmp
 *   nm_gguf_w_data(w, buf, n, err); ...      // all tensors' bytes, in order
 *   nm_gguf_w_finish(w, err);                // checks, closes, renames
 *   nm_gguf_writer_free(w);                  // unlinks the .tmp if unfinished
 */
#ifndef NM_GGUF_WRITE_H
#define NM_GGUF_WRITE_H

#include "common/error.h"
#include "gguf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct nm_gguf_writer nm_gguf_writer;

/* alignment: a power of two (0 means NM_GGUF_DEFAULT_ALIGNMENT). The caller
 * still writes general.alignment itself when it is not the default. NULL for
 * a bad alignment or when out of memory. */
nm_gguf_writer *nm_gguf_writer_new(uint32_t alignment);

/* Closes and removes an unfinished output file, frees everything. NULL ok. */
void nm_gguf_writer_free(nm_gguf_writer *w);

/* --- metadata (before nm_gguf_w_begin); duplicate keys are refused --- */

/* Any scalar type: value points to a value of that type's C size (uint8_t,
 * int16_t, float, double, bool as uint8_t, ...). Not for STRING or ARRAY. */
int nm_gguf_w_scalar(nm_gguf_writer *w, const char *key, uint32_t vtype, const void *value,
                     nm_error *err);
int nm_gguf_w_u32(nm_gguf_writer *w, const char *key, uint32_t v, nm_error *err);
int nm_gguf_w_i32(nm_gguf_writer *w, const char *key, int32_t v, nm_error *err);
int nm_gguf_w_u64(nm_gguf_writer *w, const char *key, uint64_t v, nm_error *err);
int nm_gguf_w_f32(nm_gguf_writer *w, const char *key, float v, nm_error *err);
int nm_gguf_w_bool(nm_gguf_writer *w, const char *key, bool v, nm_error *err);
int nm_gguf_w_str(nm_gguf_writer *w, const char *key, const char *s, nm_error *err);
int nm_gguf_w_strn(nm_gguf_writer *w, const char *key, const char *s, size_t len, nm_error *err);

/* Array of a scalar element type: count raw little-endian elements. */
int nm_gguf_w_arr(nm_gguf_writer *w, const char *key, uint32_t elem_type, const void *data,
                  uint64_t count, nm_error *err);
/* Array of NUL-terminated strings. */
int nm_gguf_w_str_arr(nm_gguf_writer *w, const char *key, const char *const *strs, uint64_t count,
                      nm_error *err);

/* --- tensor infos (before nm_gguf_w_begin); duplicate names are refused --- */

/* ne[0] is the row length and must be a whole number of the type's blocks. */
int nm_gguf_w_tensor(nm_gguf_writer *w, const char *name, uint32_t n_dims, const uint64_t *ne,
                     uint32_t type, nm_error *err);

uint64_t nm_gguf_w_n_tensors(const nm_gguf_writer *w);
/* Bytes of tensor i's data (no padding). */
uint64_t nm_gguf_w_tensor_bytes(const nm_gguf_writer *w, uint64_t i);
/* The whole file's size once finished: header, padding and data. */
uint64_t nm_gguf_w_file_size(const nm_gguf_writer *w);

/* --- output --- */

/* Creates path.tmp (mode 0644), writes the header. nm_gguf_w_finish renames
 * it to path. */
int nm_gguf_w_begin(nm_gguf_writer *w, const char *path, nm_error *err);
/* Same, to an open descriptor the caller owns (no rename, no unlink); name
 * is used in messages. */
int nm_gguf_w_begin_fd(nm_gguf_writer *w, int fd, const char *name, nm_error *err);

/* Streams n bytes of tensor data. A piece may end anywhere and may span
 * tensors; padding between tensors is inserted automatically. Writing past
 * the last tensor's end is an error. */
int nm_gguf_w_data(nm_gguf_writer *w, const void *data, size_t n, nm_error *err);

/* The rest of the tensor data as a hole: the file is extended to its full
 * size without writing (reads as zeros, takes no disk space on filesystems
 * with sparse files). For header-only models: plans, fit checks, tests. */
int nm_gguf_w_hole(nm_gguf_writer *w, nm_error *err);

/* Checks that every tensor got all its bytes, closes (the caller's fd is left
 * open) and renames path.tmp to path. */
int nm_gguf_w_finish(nm_gguf_writer *w, nm_error *err);

#endif
