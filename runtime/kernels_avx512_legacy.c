/* The avx512 kernels of the legacy block types beyond Q8_0 / Q4_0 (Q4_1,
 * Q5_0, Q5_1, IQ4_NL, IQ4_XS); kernels_scalar.c says how to add a type. */
#include "kernel_set.h"

void nm_kernels_avx512_legacy(nm_kernel_set *ks, int features) {
    (void)ks;
    (void)features;
}
