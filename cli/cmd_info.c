/* PLACEHOLDER: replaced by the real command. */
#include "commands.h"

#include <stdio.h>

int cmd_info(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "numalm info: not built yet\n");
    return 2;
}
