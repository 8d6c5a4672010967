#include "log.h"

#include <stdarg.h>
#include <stdio.h>

void nm_vlogf(const nm_log *l, nm_log_level level, const char *fmt, va_list ap) {
    if (!l || !l->fn || level < l->min_level)
        return;
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    l->fn(l->ud, level, msg);
}

void nm_logf(const nm_log *l, nm_log_level level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    nm_vlogf(l, level, fmt, ap);
    va_end(ap);
}
