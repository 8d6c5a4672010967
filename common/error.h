/* Error reporting: every fallible function fills an nm_error and returns -1.
 * The message must say what is wrong and where (file, key or tensor, byte
 * offset), because it is printed to the user as is. */
#ifndef NM_ERROR_H
#define NM_ERROR_H

#include <stdarg.h>

typedef struct nm_error {
    char msg[1024];
} nm_error;

/* Sets err->msg (printf-style) and returns -1 so callers can write
 * `return nm_fail(err, "...")`. err may be NULL. */
int nm_fail(nm_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefixes the existing message with more context ("loading X: ..."). */
int nm_fail_prefix(nm_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
