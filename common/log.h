/* Messages from the library to its caller: fallbacks taken, what a long
 * step did. They go to the function the caller set (the public interface
 * passes numalm_options.log on); the library itself never writes to stdout
 * or stderr. */
#ifndef NM_LOG_H
#define NM_LOG_H

#include <stdarg.h>

typedef enum nm_log_level {
    NM_LOG_DEBUG = 0,
    NM_LOG_INFO = 1,
    NM_LOG_WARN = 2,
    NM_LOG_ERROR = 3,
} nm_log_level;

/* One message, without a trailing newline. */
typedef void (*nm_log_fn)(void *ud, nm_log_level level, const char *msg);

typedef struct nm_log {
    nm_log_fn fn; /* NULL: messages are dropped */
    void *ud;
    nm_log_level min_level; /* lower levels are dropped */
} nm_log;

/* Formats and passes one message on, when l wants its level. l may be NULL. */
void nm_logf(const nm_log *l, nm_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The same with a va_list. */
void nm_vlogf(const nm_log *l, nm_log_level level, const char *fmt, va_list ap);

#endif
