#include "quant.h"

#include "ggml_types.h"

#include "common/rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static inline uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float nm_fp16_to_f32(nm_fp16 h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    if (exp == 0) {
        /* zero or subnormal: value = man * 2^-24 */
        float v = (float)man * 0x1p-24f;
        return sign ? -v : v;
    }
    if (exp == 31)
        return bits_f32(sign | 0x7f800000u | (man << 13));
    return bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

nm_fp16 nm_f32_to_fp16(float f) {
    uint32_t x = f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffff;
    if (absx > 0x7f800000u) /* NaN */
        return (nm_fp16)(sign | 0x7e00);
    if (absx >= 0x477ff000u) /* rounds to >= 65520: inf */
        return (nm_fp16)(sign | 0x7c00);
    if (absx < 0x38800000u) { /* below 2^-14: subnormal half */
        float a = bits_f32(absx);
        /* adding 0.5 in a float whose ulp is 2^-24 rounds to nearest even */
        float r = a * 0x1p24f;
        uint32_t m = (uint32_t)nearbyintf(r);
        return (nm_fp16)(sign | m);
    }
    uint32_t exp = (absx >> 23) - 112;
    uint32_t man = absx & 0x7fffff;
    uint32_t h = (exp << 10) | (man >> 13);
    uint32_t rest = man & 0x1fff;
    /* round to nearest even without a branch: random weights made the branch
     * mispredict half the time. +1 when rest > half, or rest == half and h
     * is odd; may carry into the exponent, which is the right result */
    h += (rest + 0xfff + (h & 1)) >> 13;
    return (nm_fp16)(sign | h);
}

float nm_bf16_to_f32(nm_bf16 h) {
    return bits_f32((uint32_t)h << 16);
}

nm_bf16 nm_f32_to_bf16(float f) {
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffff) > 0x7f800000u)
        return (nm_bf16)((x >> 16) | 64); /* keep NaN quiet */
    x += 0x7fff + ((x >> 16) & 1);
    return (nm_bf16)(x >> 16);
}

void nm_quantize_f32(const float *src, void *dst, int64_t n) {
    memcpy(dst, src, (size_t)n * 4);
}

void nm_dequantize_f32(const void *src, float *dst, int64_t n) {
    memcpy(dst, src, (size_t)n * 4);
}

void nm_quantize_f16(const float *src, void *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        ((nm_fp16 *)dst)[i] = nm_f32_to_fp16(src[i]);
}

void nm_dequantize_f16(const void *src, float *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        dst[i] = nm_fp16_to_f32(((const nm_fp16 *)src)[i]);
}

void nm_quantize_bf16(const float *src, void *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        ((nm_bf16 *)dst)[i] = nm_f32_to_bf16(src[i]);
}

void nm_dequantize_bf16(const void *src, float *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        dst[i] = nm_bf16_to_f32(((const nm_bf16 *)src)[i]);
}

void nm_quantize_q8_0(const float *x, void *dst, int64_t n) {
    nm_block_q8_0 *y = dst;
    for (int64_t b = 0; b < n / NM_QK; b++, x += NM_QK) {
        float amax = 0.0f;
        for (int j = 0; j < NM_QK; j++)
            amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.0f;
        float id = d ? 1.0f / d : 0.0f;
        y[b].d = nm_f32_to_fp16(d);
        for (int j = 0; j < NM_QK; j++)
            y[b].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

void nm_dequantize_q8_0(const void *src, float *dst, int64_t n) {
    const nm_block_q8_0 *b = src;
    for (int64_t i = 0; i < n / NM_QK; i++) {
        float d = nm_fp16_to_f32(b[i].d);
        for (int j = 0; j < NM_QK; j++)
            dst[i * NM_QK + j] = (float)b[i].qs[j] * d;
    }
}

void nm_quantize_q4_0(const float *x, void *dst, int64_t n) {
    nm_block_q4_0 *y = dst;
    for (int64_t b = 0; b < n / NM_QK; b++, x += NM_QK) {
        /* the signed value of largest magnitude maps to -8 */
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < NM_QK; j++) {
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        float d = max / -8.0f;
        float id = d ? 1.0f / d : 0.0f;
        y[b].d = nm_f32_to_fp16(d);
        for (int j = 0; j < NM_QK / 2; j++) {
            int q0 = (int)(x[j] * id + 8.5f);
            int q1 = (int)(x[j + NM_QK / 2] * id + 8.5f);
            q0 = q0 > 15 ? 15 : q0;
            q1 = q1 > 15 ? 15 : q1;
            y[b].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

void nm_dequantize_q4_0(const void *src, float *dst, int64_t n) {
    const nm_block_q4_0 *b = src;
    for (int64_t i = 0; i < n / NM_QK; i++) {
        float d = nm_fp16_to_f32(b[i].d);
        for (int j = 0; j < NM_QK / 2; j++) {
            dst[i * NM_QK + j] = (float)((b[i].qs[j] & 0x0f) - 8) * d;
            dst[i * NM_QK + j + NM_QK / 2] = (float)((b[i].qs[j] >> 4) - 8) * d;
        }
    }
}

int64_t nm_check_f32(const void *blocks, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if ((((const uint32_t *)blocks)[i] & 0x7f800000u) == 0x7f800000u)
            return i;
    return -1;
}

int64_t nm_check_f16(const void *blocks, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (nm_fp16_nonfinite(((const nm_fp16 *)blocks)[i]))
            return i;
    return -1;
}

int64_t nm_check_bf16(const void *blocks, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if ((((const nm_bf16 *)blocks)[i] & 0x7f80) == 0x7f80)
            return i;
    return -1;
}

int64_t nm_check_q8_0(const void *blocks, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (nm_fp16_nonfinite(((const nm_block_q8_0 *)blocks)[i].d))
            return i;
    return -1;
}

int64_t nm_check_q4_0(const void *blocks, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (nm_fp16_nonfinite(((const nm_block_q4_0 *)blocks)[i].d))
            return i;
    return -1;
}

int nm_quantize_row(uint32_t type, const float *src, void *dst, int64_t n) {
    const nm_type_info *t = nm_type_get(type);
    if (!t || !t->quantize || n < 0 || n % t->block_size)
        return -1;
    t->quantize(src, dst, n);
    return 0;
}

int nm_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n) {
    const nm_type_info *t = nm_type_get(type);
    if (!t || !t->dequantize || n < 0 || n % t->block_size)
        return -1;
    t->dequantize(src, dst, n);
    return 0;
}

int nm_block_pool_make(nm_block_pool *pool, uint32_t type, int n, uint64_t seed) {
    const nm_type_info *ti = nm_type_get(type);
    *pool = (nm_block_pool){.type = type, .n = n};
    if (!ti || !ti->quantize || n <= 0)
        return -1;
    pool->block_bytes = ti->type_size;
    pool->blocks = malloc((size_t)n * ti->type_size);
    float *x = malloc(ti->block_size * sizeof *x);
    nm_rng r;
    nm_rng_seed(&r, seed, 0);
    int rc = pool->blocks && x ? 0 : -1;
    for (int k = 0; rc == 0 && k < n; k++) {
        for (uint32_t i = 0; i < ti->block_size; i++)
            x[i] = nm_rng_uniform_pm1(&r);
        rc = nm_quantize_row(type, x, pool->blocks + (size_t)k * ti->type_size, ti->block_size);
    }
    free(x);
    if (rc < 0)
        nm_block_pool_free(pool);
    return rc < 0 ? -1 : 0;
}

void nm_block_pool_fill(const nm_block_pool *pool, void *dst, size_t bytes, uint64_t seed) {
    nm_rng r;
    nm_rng_seed(&r, seed, 1);
    for (size_t off = 0; off + pool->block_bytes <= bytes; off += pool->block_bytes)
        memcpy((char *)dst + off,
               pool->blocks + nm_rng_next(&r) % (uint64_t)pool->n * pool->block_bytes,
               pool->block_bytes);
}

void nm_block_pool_free(nm_block_pool *pool) {
    free(pool->blocks);
    pool->blocks = NULL;
}
