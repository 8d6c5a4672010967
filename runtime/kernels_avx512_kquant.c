/* The avx512 kernels of the K-quants (Q2_K .. Q6_K). */
#include "kernel_set.h"

void nm_kernels_avx512_kquant(nm_kernel_set *ks, int features) {
    (void)ks;
    (void)features;
}
