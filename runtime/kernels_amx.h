/* What the AMX kernel files share (kernels_*_amx.c, compiled with
 * -mamx-tile -mamx-int8): the tile configuration and its loading. A thread
 * holds one configuration at a time, so every file loads its shapes through
 * nm_amx_use, which keeps the thread's record of the loaded one true. */
#ifndef NM_KERNELS_AMX_H
#define NM_KERNELS_AMX_H

#include <immintrin.h>
#include <stdbool.h>
#include <stdint.h>

/* ldtilecfg's 64-byte operand (palette 1) */
typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_cfg;

/* Loads cfg (64-byte aligned) into this thread's tile configuration unless
 * it is the loaded one (ldtilecfg costs about 54 ns); false when the
 * process may not use the tiles (kernels_avx512_amx.c). */
bool nm_amx_use(const amx_cfg *cfg);

/* A 16-row tile's float results into out (row r's nt tokens at out + r nt):
 * acc[v] holds row v's tokens, or with T8 (up to 8 tokens) row 2v's in
 * lanes 0..7 and row 2v + 1's in lanes 8..15; m: the nt tokens' lanes. */
static inline __attribute__((always_inline)) void
nm_amx_store_results(float *out, const __m512 *acc, int nt, __mmask16 m, const int T8) {
    for (int v = 0; v < (T8 ? 8 : 16); v++) {
        if (!T8) {
            _mm512_mask_storeu_ps(out + v * nt, m, acc[v]);
            continue;
        }
        _mm512_mask_storeu_ps(out + 2 * v * nt, m, acc[v]);
        _mm256_mask_storeu_ps(out + (2 * v + 1) * nt, (__mmask8)m,
                              _mm512_extractf32x8_ps(acc[v], 1));
    }
}

#endif
