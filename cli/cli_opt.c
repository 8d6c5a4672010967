#include "cli_opt.h"

#include <string.h>

bool nm_cli_help_asked(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
            return true;
    return false;
}

int nm_cli_opt(int argc, char **argv, int *i, const char *name, const char *alias,
               const char **value, nm_error *err) {
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (!strncmp(a, name, n) && a[n] == '=') {
        *value = a + n + 1;
        return 1;
    }
    if (strcmp(a, name) && (!alias || strcmp(a, alias)))
        return 0;
    if (*i + 1 >= argc)
        return nm_fail(err, "%s needs a value", a);
    *value = argv[++*i];
    return 1;
}

int nm_cli_opt_any(int argc, char **argv, int *i, const nm_cli_optdef *opts, size_t n,
                   const char **name, const char **value, nm_error *err) {
    for (size_t k = 0; k < n; k++) {
        int rc = nm_cli_opt(argc, argv, i, opts[k].name, opts[k].alias, value, err);
        if (rc != 0) {
            *name = opts[k].name;
            return rc;
        }
    }
    return 0;
}
