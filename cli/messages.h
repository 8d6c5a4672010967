/* How the command shows what the library reports: log messages as
 * "numalm: MESSAGE" lines on stderr, progress as a bar on a TTY. */
#ifndef NM_CLI_MESSAGES_H
#define NM_CLI_MESSAGES_H

#include "numalm.h"

/* A numalm_log_fn: one "numalm: MSG" line on stderr. */
void nm_cli_log(void *ud, numalm_log_level level, const char *msg);

/* Whether to draw progress: stderr is a TTY and NUMALM_NO_PROGRESS is not
 * set (the environment variable is for scripts that run the command under
 * a terminal but keep its stderr). */
bool nm_cli_progress_wanted(void);

/* A numalm_progress_fn: "\rloading [####......]  42.0%  123.4 MB  1.23 GB/s"
 * on stderr, the line cleared at the end. */
void nm_cli_progress(void *ud, const char *what, uint64_t done, uint64_t total, double seconds,
                     bool finished);

#endif
