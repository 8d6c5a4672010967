/* Option scanning for the commands that do not load a model (info, topo,
 * plan, mkmodel); the loading commands use cmd_common.h, which knows their
 * shared options. */
#ifndef NM_CLI_OPT_H
#define NM_CLI_OPT_H

#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>

/* -h or --help anywhere: help is printed even when other arguments are bad,
 * so a user fixing a command line can always get it. */
bool nm_cli_help_asked(int argc, char **argv);

/* Whether argv[*i] is option `name` (or its short `alias`, NULL for none),
 * given as "NAME VALUE" or "NAME=VALUE". If it is: *value is the value, *i is
 * moved past what was used, and the return is 1, or -1 with err when the
 * value is missing. 0 when argv[*i] is something else. */
int nm_cli_opt(int argc, char **argv, int *i, const char *name, const char *alias,
               const char **value, nm_error *err);

/* An option that takes a value: its long name and its short alias (NULL
 * for none). */
typedef struct nm_cli_optdef {
    const char *name, *alias;
} nm_cli_optdef;

/* nm_cli_opt for each of opts[0..n): 1 with *name (the long name of the one
 * that matched) and *value, 0 when argv[*i] is none of them, -1 with err. */
int nm_cli_opt_any(int argc, char **argv, int *i, const nm_cli_optdef *opts, size_t n,
                   const char **name, const char **value, nm_error *err);

#endif
