#include "util.h"

#include <ctype.h>
#include <stdlib.h>
#include <sched.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

double nm_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int nm_parse_size(const char *s, uint64_t *out, nm_error *err) {
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || v < 0)
        return nm_fail(err, "bad size '%s': expected a number such as 4G or 512M", s);
    double mul = 1;
    switch (toupper((unsigned char)*end)) {
    case 0:
        break;
    case 'K':
        mul = 1024.0;
        end++;
        break;
    case 'M':
        mul = 1024.0 * 1024;
        end++;
        break;
    case 'G':
        mul = 1024.0 * 1024 * 1024;
        end++;
        break;
    case 'T':
        mul = 1024.0 * 1024 * 1024 * 1024;
        end++;
        break;
    default:
        return nm_fail(err, "bad size '%s': unknown suffix '%s' (use K, M, G or T)", s, end);
    }
    if (*end == 'i' || *end == 'B')
        end += (*end == 'i' && end[1] == 'B') ? 2 : 1;
    if (*end)
        return nm_fail(err, "bad size '%s': trailing characters '%s'", s, end);
    double bytes = v * mul;
    if (bytes > 1.8e19)
        return nm_fail(err, "bad size '%s': too large", s);
    *out = (uint64_t)bytes;
    return 0;
}

int nm_parse_long(const char *s, long min, long max, long *out, const char *what, nm_error *err) {
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!s[0] || *end || errno)
        return nm_fail(err, "%s: '%s' is not a whole number", what, s);
    if (v < min || v > max)
        return nm_fail(err, "%s: %ld is out of range [%ld, %ld]", what, v, min, max);
    *out = v;
    return 0;
}

int nm_parse_int_list(const char *s, int *out, int max_out, int max_value, nm_error *err) {
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        long a = strtol(p, &end, 10);
        if (end == p || a < 0 || a > max_value)
            return nm_fail(err, "bad list '%s' at '%s': expected numbers 0..%d", s, p, max_value);
        long b = a;
        p = end;
        if (*p == '-') {
            p++;
            b = strtol(p, &end, 10);
            if (end == p || b < a || b > max_value)
                return nm_fail(err, "bad range in list '%s' at '%s'", s, p);
            p = end;
        }
        for (long v = a; v <= b; v++) {
            if (n >= max_out)
                return nm_fail(err, "list '%s' has more than %d entries", s, max_out);
            for (int i = 0; i < n; i++)
                if (out[i] == v)
                    return nm_fail(err, "list '%s' names %ld twice", s, v);
            out[n++] = (int)v;
        }
        if (*p == ',')
            p++;
        else if (*p)
            return nm_fail(err, "bad list '%s': unexpected '%c'", s, *p);
    }
    if (n == 0)
        return nm_fail(err, "empty list '%s'", s);
    return n;
}

int nm_allowed_cpus(int *cpus, int max) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return 0;
    int n = 0;
    for (int c = 0; c < CPU_SETSIZE && n < max; c++)
        if (CPU_ISSET(c, &set))
            cpus[n++] = c;
    return n;
}

const char *nm_fmt_bytes(uint64_t bytes, char *buf, size_t n) {
    const char *unit[] = {"B", "KB", "MB", "GB", "TB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1000.0 && u < 4) {
        v /= 1000.0;
        u++;
    }
    snprintf(buf, n, u ? "%.2f %s" : "%.0f %s", v, unit[u]);
    return buf;
}

const char *nm_fmt_int_list(const int *v, int n, char *buf, size_t size) {
    /* an item is at most ",-2147483648-2147483648": 24 bytes with the NUL */
    size_t len = 0;
    if (size)
        buf[0] = 0;
    for (int i = 0; i < n && len + 24 < size; i++) {
        int j = i;
        while (j + 1 < n && v[j + 1] == v[j] + 1)
            j++;
        len += (size_t)snprintf(buf + len, size - len, "%s%d", i ? "," : "", v[i]);
        if (j > i)
            len += (size_t)snprintf(buf + len, size - len, "-%d", v[j]);
        i = j;
    }
    return buf;
}

void *nm_grow(void *p, size_t *cap, size_t n, size_t first_cap, size_t elem) {
    if (n < *cap)
        return p;
    size_t want = *cap, bytes;
    if (!want)
        want = first_cap ? first_cap : 1;
    else if (__builtin_mul_overflow(want, 2, &want))
        return NULL;
    while (want <= n)
        if (__builtin_mul_overflow(want, 2, &want))
            return NULL;
    if (__builtin_mul_overflow(want, elem, &bytes))
        return NULL;
    void *q = realloc(p, bytes ? bytes : 1);
    if (q)
        *cap = want;
    return q;
}

void *nm_calloc(size_t n, size_t size, const char *what, nm_error *err) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        nm_fail(err, "out of memory for %s (%zu x %zu bytes)", what, n, size);
    return p;
}

static inline uint64_t load_u64(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* Four independent accumulators: one add chain would limit a core to about
 * 8 bytes per cycle latency-bound; four keep the loads, not the adds, the
 * bottleneck. memcpy loads: p need not be 8-byte aligned. */
uint64_t nm_sum_words(const void *p, size_t bytes) {
    const unsigned char *w = p;
    uint64_t a = 0, b = 0, c = 0, d = 0;
    size_t i = 0;
    for (; i + 64 <= bytes; i += 64) {
        a += load_u64(w + i) + load_u64(w + i + 32);
        b += load_u64(w + i + 8) + load_u64(w + i + 40);
        c += load_u64(w + i + 16) + load_u64(w + i + 48);
        d += load_u64(w + i + 24) + load_u64(w + i + 56);
    }
    for (; i + 8 <= bytes; i += 8)
        a += load_u64(w + i);
    for (; i < bytes; i++)
        b += w[i];
    return a + b + c + d;
}

static int cmp_double(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

void nm_sort_doubles(double *v, size_t n) {
    qsort(v, n, sizeof *v, cmp_double);
}
