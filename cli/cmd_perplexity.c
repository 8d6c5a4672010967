/* PLACEHOLDER: replaced by the real command. */
#include "commands.h"

#include <stdio.h>

int cmd_perplexity(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "numalm perplexity: not built yet\n");
    return 2;
}
