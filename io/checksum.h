/* Integrity check of a load: XXH3 of every range the arenas hold against
 * the same bytes read again from the file with plain buffered reads, and
 * every block's scales finite. */
#ifndef NM_CHECKSUM_H
#define NM_CHECKSUM_H

#include "common/error.h"
#include "loader.h"

#include <stdint.h>

/* XXH3-64 of memory. */
uint64_t nm_xxh3(const void *p, uint64_t len);

/* XXH3-64 of file bytes [off, off+len), read with pread (buf: scratch of
 * buf_len bytes). -1 with err on a read error or a short file. */
int nm_xxh3_file(int fd, const char *path, uint64_t off, uint64_t len, void *buf, uint64_t buf_len,
                 uint64_t *out, nm_error *err);

/* Compares every tensor range of every arena (or of the mapping) with the
 * file. Sets w->checksums_ok, w->n_mismatches and w->mismatches. -1 only
 * when the file itself cannot be read. */
int nm_loaded_verify_checksums(nm_loaded *w, nm_error *err);

/* Checks every block's scales (float types: every value) in every range
 * the arenas (or the mapping) hold, with the type table's checks: -1 with
 * err naming the tensor, row and block of the first that is not finite. */
int nm_loaded_verify_scales(const nm_loaded *w, nm_error *err);

#endif
