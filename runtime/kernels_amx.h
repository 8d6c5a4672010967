/* What the AMX kernel files share (kernels_*_amx.c, compiled with
 * -mamx-tile -mamx-int8): the tile configuration and its loading. A thread
 * holds one configuration at a time, so every file loads its shapes through
 * nm_amx_use, which keeps the thread's record of the loaded one true. */
#ifndef NM_KERNELS_AMX_H
#define NM_KERNELS_AMX_H

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

#endif
