/* PLACEHOLDER: replaced by the real command. */
#include "commands.h"

#include <stdio.h>

int cmd_run(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "numalm run: not built yet\n");
    return 2;
}
