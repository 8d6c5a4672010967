/* numalm --version (or numalm version): the library's version, the commit
 * it was built from and what was compiled in, as numalm_build_info() gives
 * them, and which kernel level this CPU gets. */
#include "commands.h"

#include "cli_opt.h"
#include "numalm.h"

#include "common/json.h"

#include <stdio.h>
#include <string.h>

int cmd_version(int argc, char **argv) {
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            json = true;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: numalm --version [--json]\n"
                   "The version, the git commit it was built from, the kernel levels and\n"
                   "CUDA compiled in, and the kernel level this CPU gets.\n");
            return 0;
        } else {
            fprintf(stderr, "numalm version: unknown argument '%s'\n", argv[i]);
            return 2;
        }
    }
    const numalm_build *b = numalm_build_info();
    const char *cpu = numalm_simd_name(numalm_simd_level());
    if (!json) {
        printf("numalm %s (commit %s)\n", b->version, b->commit);
        printf("kernels: %s (this CPU: %s)\n", b->simd, cpu);
        printf("cuda: %s\n", b->cuda ? "compiled in" : "not compiled in");
        printf("built with %s, %s\n", b->compiler, b->build_type);
        return 0;
    }
    nm_json j;
    nm_json_init(&j, stdout);
    nm_json_obj_begin(&j);
    nm_json_kstr(&j, "version", b->version);
    nm_json_kstr(&j, "commit", b->commit);
    nm_json_kstr(&j, "simd", b->simd);
    nm_json_kstr(&j, "simd_cpu", cpu);
    nm_json_kbool(&j, "cuda", b->cuda);
    nm_json_kstr(&j, "compiler", b->compiler);
    nm_json_kstr(&j, "build_type", b->build_type);
    nm_json_obj_end(&j);
    nm_json_finish(&j);
    return 0;
}
