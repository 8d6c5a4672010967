/* Small helpers shared by every layer: clocks, size parsing, lists. */
#ifndef NM_UTIL_H
#define NM_UTIL_H

#include "error.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/* Monotonic seconds. */
double nm_now(void);

/* The CPUs this process may run on (its affinity mask), ascending; the count,
 * at most max, or 0 when the mask cannot be read. For benchmarks that pin one
 * thread per CPU without needing the NUMA layout. */
int nm_allowed_cpus(int *cpus, int max);

/* Parses "4G", "512M", "64K", "123" (powers of 1024) into bytes. */
int nm_parse_size(const char *s, uint64_t *out, nm_error *err);

/* Parses a list such as "0,1" or "0-3,6" into ints; returns the count or -1.
 * Refuses values above max_value. */
int nm_parse_int_list(const char *s, int *out, int max_out, int max_value, nm_error *err);

/* Parses a whole decimal integer in [min,max]; what names the option. */
int nm_parse_long(const char *s, long min, long max, long *out, const char *what, nm_error *err);

/* Overflow-checked arithmetic: return 0 on success, -1 on overflow. */
static inline int nm_add_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_add_overflow(a, b, out) ? -1 : 0;
}
static inline int nm_mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_mul_overflow(a, b, out) ? -1 : 0;
}

static inline uint64_t nm_align_up(uint64_t v, uint64_t a) {
    return (v + a - 1) / a * a;
}
static inline uint64_t nm_align_down(uint64_t v, uint64_t a) {
    return v / a * a;
}

/* The sum of the little-endian 64-bit words of p[0..bytes) (mod 2^64), a
 * trailing partial word added byte by byte: a read of every byte that the
 * compiler cannot drop, at the speed of the loads. The scalar form of
 * nm_read_sum (runtime/kernels.h), which the read-bandwidth probes run, and
 * the reference its vector forms are tested against. */
uint64_t nm_sum_words(const void *p, size_t bytes);

/* Sorts v[0..n) ascending (medians and quantiles of timings). */
void nm_sort_doubles(double *v, size_t n);

/* Human-readable bytes ("1.23 GB") into buf. */
const char *nm_fmt_bytes(uint64_t bytes, char *buf, size_t n);

/* "0-5,12,14-15" from a list of ints (runs of +1 become ranges), the form
 * nm_parse_int_list reads back. Stops at the last whole item that fits. */
const char *nm_fmt_int_list(const int *v, int n, char *buf, size_t size);

/* Room for element n of a doubling array p of *cap elements of elem bytes:
 * p itself while n < *cap, else a larger copy (first_cap elements the first
 * time, doubled until element n fits) with *cap updated. For a byte buffer
 * of len bytes, nm_grow(buf, &cap, len + k, ...) makes room for k more bytes
 * and a NUL. NULL when out of memory or when the size would overflow; then p
 * and *cap are unchanged and p is still the caller's. */
void *nm_grow(void *p, size_t *cap, size_t n, size_t first_cap, size_t elem);

/* calloc(n, size) that says what the memory was for when it is not there:
 * NULL and "out of memory for WHAT (N x SIZE bytes)" in err. A zero count
 * still gets a (one-byte) block, so success is never NULL. */
void *nm_calloc(size_t n, size_t size, const char *what, nm_error *err);

#endif
