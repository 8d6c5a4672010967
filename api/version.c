/* numalm_version and numalm_build_info: what cmake wrote into the generated
 * numalm_build_info.h at this build, and what was compiled in. */
#include "numalm.h"

#include "numalm_build_info.h"

const char *numalm_version(void) {
    return NUMALM_BUILD_VERSION;
}

const numalm_build *numalm_build_info(void) {
    static const numalm_build info = {
        .version = NUMALM_BUILD_VERSION,
        .commit = NUMALM_BUILD_COMMIT,
#if defined(__x86_64__)
        .simd = "scalar avx2 avx512 amx", /* kernels_avx2*.c, kernels_avx512*.c */
#else
        .simd = "scalar",
#endif
#ifdef NUMALM_HAVE_CUDA
        .cuda = true,
#else
        .cuda = false,
#endif
        .compiler = NUMALM_BUILD_COMPILER,
        .build_type = NUMALM_BUILD_TYPE,
    };
    return &info;
}
