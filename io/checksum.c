#include "checksum.h"

#include "gguf/ggml_types.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#define VERIFY_BUF (8u << 20)

uint64_t nm_xxh3(const void *p, uint64_t len) {
    return XXH3_64bits(p, (size_t)len);
}

int nm_xxh3_file(int fd, const char *path, uint64_t off, uint64_t len, void *buf, uint64_t buf_len,
                 uint64_t *out, nm_error *err) {
    XXH3_state_t *st = XXH3_createState();
    if (!st)
        return nm_fail(err, "out of memory for a checksum state");
    XXH3_64bits_reset(st);
    uint64_t done = 0;
    while (done < len) {
        uint64_t want = len - done < buf_len ? len - done : buf_len;
        ssize_t r = pread(fd, buf, want, (off_t)(off + done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            XXH3_freeState(st);
            return nm_fail(err, "%s: verify read at offset %llu: %s", path,
                           (unsigned long long)(off + done),
                           r < 0 ? strerror(errno) : "end of file");
        }
        XXH3_64bits_update(st, buf, (size_t)r);
        done += (uint64_t)r;
    }
    *out = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    return 0;
}

static void note_mismatch(nm_loaded *w, const char *name, int arena) {
    w->n_mismatches++;
    size_t used = strlen(w->mismatches);
    if (used + 1 >= sizeof w->mismatches)
        return;
    snprintf(w->mismatches + used, sizeof w->mismatches - used, "%s%s@arena%d", used ? "," : "",
             name, arena);
}

/* Where arena a keeps tensor ti's held range, NULL when it holds none. */
static const uint8_t *held_ptr(const nm_loaded *w, int a, int ti, const nm_range **r) {
    const nm_tensor_plan *tp = &w->plan->tensors[ti];
    if (w->map) {
        if (a != 0)
            return NULL;
        *r = NULL;
        return (const uint8_t *)w->map + tp->t->file_offset;
    }
    *r = &tp->held[a];
    if (!(*r)->nbytes)
        return NULL;
    return (const uint8_t *)w->arenas[a].base + (*r)->arena_offset;
}

int nm_loaded_verify_checksums(nm_loaded *w, nm_error *err) {
    void *buf = malloc(VERIFY_BUF);
    if (!buf)
        return nm_fail(err, "out of memory for the verify buffer");
    int n_arenas = w->map ? 1 : w->plan->n_arenas;
    w->n_mismatches = 0;
    w->mismatches[0] = 0;
    for (int ti = 0; ti < w->plan->n_tensors; ti++) {
        const nm_gguf_tensor *t = w->plan->tensors[ti].t;
        if (w->skipped && w->skipped[ti])
            continue;
        /* replicas hold the same range: hash the file once per range */
        uint64_t last_off = UINT64_MAX, last_len = 0, file_hash = 0;
        for (int a = 0; a < n_arenas; a++) {
            const nm_range *r;
            const uint8_t *mem = held_ptr(w, a, ti, &r);
            if (!mem)
                continue;
            uint64_t off = r ? r->file_offset : t->file_offset;
            uint64_t len = r ? r->nbytes : t->nbytes;
            if (off != last_off || len != last_len) {
                if (nm_xxh3_file(w->fd, w->gguf->path, off, len, buf, VERIFY_BUF, &file_hash,
                                 err) != 0) {
                    free(buf);
                    return nm_fail_prefix(err, "verify of tensor '%s'", t->name);
                }
                last_off = off;
                last_len = len;
            }
            if (nm_xxh3(mem, len) != file_hash)
                note_mismatch(w, t->name, a);
        }
    }
    free(buf);
    w->checksums_ok = w->n_mismatches == 0;
    return 0;
}

int nm_loaded_verify_scales(const nm_loaded *w, nm_error *err) {
    int n_arenas = w->map ? 1 : w->plan->n_arenas;
    for (int ti = 0; ti < w->plan->n_tensors; ti++) {
        const nm_gguf_tensor *t = w->plan->tensors[ti].t;
        const nm_type_info *info = nm_type_get(t->type);
        if ((w->skipped && w->skipped[ti]) || !info || !t->row_bytes)
            continue;
        for (int a = 0; a < n_arenas; a++) {
            const nm_range *r;
            const uint8_t *mem = held_ptr(w, a, ti, &r);
            if (!mem)
                continue;
            uint64_t off = r ? r->file_offset : t->file_offset;
            uint64_t len = r ? r->nbytes : t->nbytes;
            int64_t bad = nm_type_find_bad_block(t->type, mem, (int64_t)(len / info->type_size));
            if (bad < 0)
                continue;
            uint64_t per_row = t->row_bytes / info->type_size;
            uint64_t row = (off - t->file_offset) / t->row_bytes + (uint64_t)bad / per_row;
            return nm_fail(err,
                           "tensor '%s' (%s) row %llu: block %llu has a scale that is not "
                           "finite (inf or NaN)",
                           t->name, info->name, (unsigned long long)row,
                           (unsigned long long)((uint64_t)bad % per_row));
        }
    }
    return 0;
}
