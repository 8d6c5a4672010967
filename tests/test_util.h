/* Helpers every test program needs: where the shared test data is, a private
 * temporary directory, whole-file reads and a generated tiny model. Header
 * only, so each test stays one .c file that CMake's glob picks up alone. */
#ifndef NM_TEST_UTIL_H
#define NM_TEST_UTIL_H

#include "common/error.h"
#include "tools/mkmodel.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The shared test data (models, topologies): $NUMALM_SHARED, else $NUMALM_SOURCE/../shared,
 * else next to the source tree this file was compiled from (CMake passes
 * absolute paths, so __FILE__ is SOURCE/tests/test_util.h), so a test run by
 * hand from any directory still finds the data. */
static inline const char *nm_test_shared_dir(void) {
    static char buf[900];
    const char *env = getenv("NUMALM_SHARED");
    if (env && *env)
        return env;
    const char *src = getenv("NUMALM_SOURCE");
    if (src && *src) {
        snprintf(buf, sizeof buf, "%s/../shared", src);
        return buf;
    }
    snprintf(buf, sizeof buf, "%s", __FILE__);
    char *slash = strrchr(buf, '/');
    if (slash)
        snprintf(slash, sizeof buf - (size_t)(slash - buf), "/../../shared");
    else
        snprintf(buf, sizeof buf, "../shared");
    return buf;
}

/* A fresh directory under $TMPDIR (or /tmp) named after the test; 0 or -1. */
static inline int nm_test_mkdtemp(char *buf, size_t n, const char *test) {
    const char *tmp = getenv("TMPDIR");
    snprintf(buf, n, "%s/numalm-%s.XXXXXX", tmp && *tmp ? tmp : "/tmp", test);
    return mkdtemp(buf) ? 0 : -1;
}

/* The whole file plus a NUL (so text can be used as a string); NULL when it
 * cannot be read. */
static inline char *nm_test_read_file(const char *path, size_t *len) {
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0)
        buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (!buf)
        return NULL;
    buf[n] = 0;
    *len = (size_t)n;
    return buf;
}

/* numalm mkmodel's "tiny" preset with weights of type and seed at path. */
static inline int nm_test_write_tiny(const char *path, uint32_t type, uint64_t seed,
                                     nm_mkmodel_result *r, nm_error *err) {
    nm_mkmodel_opts o = {.type = type, .seed = seed};
    if (nm_mkmodel_preset("tiny", &o.shape, err))
        return -1;
    return nm_mkmodel_write(path, &o, r, err);
}

/* NUMALM_TEST_MATRIX=reduced (scripts/test.sh sets it for the sanitizer
 * run): a test that repeats one computation over a matrix of settings
 * (placements x io modes x thread counts, types x thread counts) runs a
 * covering subset of it, in which every value of every setting occurs, so
 * every code path still runs under the sanitizers while the release run
 * checks every combination. */
static inline bool nm_test_matrix_reduced(void) {
    const char *v = getenv("NUMALM_TEST_MATRIX");
    return v && !strcmp(v, "reduced");
}

/* Whether case idx[0..n) of a matrix with sizes[0..n) runs: all of them in
 * the full matrix; in the reduced one the diagonal k = 0 .. max(sizes) - 1,
 * case (k % sizes[0], k % sizes[1], ...). */
static inline bool nm_test_case_runs(int n, const int *sizes, const int *idx) {
    if (!nm_test_matrix_reduced())
        return true;
    int longest = 0;
    for (int d = 0; d < n; d++)
        longest = sizes[d] > longest ? sizes[d] : longest;
    for (int k = 0; k < longest; k++) {
        int d = 0;
        while (d < n && k % sizes[d] == idx[d])
            d++;
        if (d == n)
            return true;
    }
    return false;
}

#endif
