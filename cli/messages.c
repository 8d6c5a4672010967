#include "messages.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

void nm_cli_log(void *ud, numalm_log_level level, const char *msg) {
    (void)ud, (void)level;
    fprintf(stderr, "numalm: %s\n", msg);
}

bool nm_cli_progress_wanted(void) {
    return isatty(STDERR_FILENO) && getenv("NUMALM_NO_PROGRESS") == NULL;
}

static void draw(const char *what, uint64_t done, uint64_t total, double seconds) {
    const int width = 30;
    double frac = total ? (double)done / (double)total : 1.0;
    if (frac > 1.0)
        frac = 1.0;
    int fill = (int)(frac * width);
    double rate = seconds > 0 ? (double)done / seconds / 1e9 : 0.0;
    char bar[64];
    for (int i = 0; i < width; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    fprintf(stderr, "\r%s [%s] %5.1f%% %8.1f MB %6.2f GB/s", what, bar, frac * 100.0,
            (double)done / 1e6, rate);
    fflush(stderr);
}

void nm_cli_progress(void *ud, const char *what, uint64_t done, uint64_t total, double seconds,
                     bool finished) {
    (void)ud;
    draw(what, done, total, seconds);
    if (finished) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
    }
}
