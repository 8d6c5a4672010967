/* Arithmetic shared, as source, by the host and the CUDA kernels
 * (cuda/kernels.cu): the device hash, F16 conversions and the per-lane
 * pieces of the GPU kernels. Plain C that nvcc also compiles as device code,
 * so the suite runs the same functions on the CPU (tests/test_device_math.c)
 * although this machine has no GPU. */
#ifndef NM_DEVICE_MATH_H
#define NM_DEVICE_MATH_H

#include "gguf/ggml_types.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "gguf/quant_kquant.h"

#ifdef __CUDACC__
#include <cuda_fp16.h>
#endif

#ifdef __CUDACC__
#define NM_HD __host__ __device__ __forceinline__
#else
#define NM_HD static inline
#endif

/* ---- the device hash ------------------------------------------------
 * For --verify: computed where the bytes are (a kernel on the GPU, the host
 * for the file) and compared. A sum of independently mixed terms, so a GPU
 * adds them in any order: word i (8 bytes, little-endian; the tail padded
 * with zeros) contributes mix(word ^ mix(i)), and the length is mixed into
 * the total. mix is splitmix64's finaliser, a bijection: changing one word
 * changes its term. Not a cryptographic hash. */

NM_HD uint64_t nm_mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

NM_HD uint64_t nm_dev_hash_term(uint64_t word, uint64_t index) {
    return nm_mix64(word ^ nm_mix64(index));
}

NM_HD uint64_t nm_dev_hash_final(uint64_t sum, uint64_t bytes) {
    return nm_mix64(sum ^ nm_mix64(bytes ^ 0x6e756d616c6d00ull));
}

/* Word i of p[0..bytes), the tail zero-padded (byte loads: any alignment). */
NM_HD uint64_t nm_dev_hash_word(const uint8_t *p, uint64_t bytes, uint64_t i) {
    uint64_t w = 0, at = i * 8;
    uint64_t n = bytes - at < 8 ? bytes - at : 8;
    for (uint64_t b = 0; b < n; b++)
        w |= (uint64_t)p[at + b] << (8 * b);
    return w;
}

#ifndef __CUDACC__
/* The whole hash on the host. State for pieces: sum the terms of whole
 * words with nm_dev_hash_add (pieces must start on word boundaries). */
static inline uint64_t nm_dev_hash_add(uint64_t sum, const void *p, uint64_t bytes,
                                       uint64_t first_word) {
    const uint8_t *b = (const uint8_t *)p;
    uint64_t words = (bytes + 7) / 8, i = 0;
    for (; i < bytes / 8; i++) {
        uint64_t w;
        memcpy(&w, b + i * 8, 8); /* little-endian hosts only (x86-64) */
        sum += nm_dev_hash_term(w, first_word + i);
    }
    for (; i < words; i++)
        sum += nm_dev_hash_term(nm_dev_hash_word(b, bytes, i), first_word + i);
    return sum;
}

static inline uint64_t nm_dev_hash(const void *p, uint64_t bytes) {
    return nm_dev_hash_final(nm_dev_hash_add(0, p, bytes, 0), bytes);
}
#endif

/* ---- conversions (cuda_fp16.h's in CUDA code, the reference converters
 * in C: both IEEE, round to nearest even) ---- */

NM_HD float nm_dm_f16(uint16_t h) {
#ifdef __CUDACC__
    return __half2float(__ushort_as_half(h));
#else
    return nm_fp16_to_f32(h);
#endif
}

NM_HD uint16_t nm_dm_to_f16(float f) {
#ifdef __CUDACC__
    return __half_as_ushort(__float2half_rn(f));
#else
    return nm_f32_to_fp16(f);
#endif
}

NM_HD float nm_dm_bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

NM_HD uint32_t nm_dm_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

NM_HD float nm_dm_bf16(uint16_t h) {
    return nm_dm_bits_f32((uint32_t)h << 16);
}

/* As nm_f32_to_bf16: round to nearest even, NaN kept quiet. */
NM_HD uint16_t nm_dm_to_bf16(float f) {
    uint32_t x = nm_dm_f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 64);
    x += 0x7fffu + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

/* Little-endian 16 bits at any address (Q blocks are 2-byte aligned at
 * best: 18 and 34 bytes). */
NM_HD uint16_t nm_dm_u16(const uint8_t *p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}

/* ---- prepared activations -------------------------------------------
 * The GPU's activations for quantized weights, per token a row of the
 * CPU's layouts (runtime/kernel_set.h) and values (nm_act_quantize_q8 and
 * nm_act_quantize_q8k): Q8_0 / Q4_0 weights take int8 qs[n] and a scale
 * per 32 (F32); the K-quants take int8 qs[n], a scale per 256 and the sum
 * of each 16 qs (int16). Rows are padded to 64 bytes. */

NM_HD uint64_t nm_dm_pad64(uint64_t b) {
    return (b + 63) / 64 * 64;
}

NM_HD uint64_t nm_dm_q8_row_bytes(int64_t n) {
    return nm_dm_pad64((uint64_t)n + (uint64_t)(n / 32) * 4);
}

NM_HD uint64_t nm_dm_q8k_row_bytes(int64_t n) {
    return nm_dm_pad64((uint64_t)n + (uint64_t)(n / 256) * 4 + (uint64_t)(n / 16) * 2);
}

/* len values to int8 qs with the scale amax/127 (returned); the sum of the
 * qs of each group of `group` into sums (NULL: none). An inf or NaN gives
 * a NaN scale and zeros. As act_quantize_block (runtime/kernels_scalar.c):
 * rintf rounds to nearest even as its nm_round_small does below 2^22. */
NM_HD float nm_dm_quantize(const float *x, int len, int8_t *qs, int group, int16_t *sums) {
    float amax = 0.0f;
    bool finite = true;
    for (int j = 0; j < len; j++) {
        float a = fabsf(x[j]);
        finite = finite && a <= FLT_MAX;
        amax = a > amax ? a : amax;
    }
    float d = amax / 127.0f, id = amax > 0.0f ? 127.0f / amax : 0.0f;
    if (id > FLT_MAX)
        d = id = 0.0f;
    for (int g = 0; g < len / group; g++) {
        int sum = 0;
        for (int j = g * group; j < (g + 1) * group; j++) {
            float q = finite ? rintf(x[j] * id) : 0.0f;
            int v = q > 127.0f ? 127 : q < -127.0f ? -127 : (int)q;
            qs[j] = (int8_t)v;
            sum += v;
        }
        if (sums)
            sums[g] = (int16_t)sum;
    }
    return finite ? d : NAN;
}

/* Block b of a token's row: x is its n floats, row its prepared row. */
NM_HD void nm_dm_prepare_block(uint32_t type, const float *x, int64_t n, uint8_t *row, int64_t b) {
    if (type == NM_TYPE_Q8_0 || type == NM_TYPE_Q4_0)
        ((float *)(row + n))[b] = nm_dm_quantize(x + b * 32, 32, (int8_t *)row + b * 32, 32, NULL);
    else
        ((float *)(row + n))[b] = nm_dm_quantize(x + b * 256, 256, (int8_t *)row + b * 256, 16,
                                                 (int16_t *)(row + n + n / 256 * 4) + b * 16);
}

/* ---- K-quant super-blocks -------------------------------------------
 * One super-block's step of a row dot product, as the scalar reference
 * (runtime/kernels_scalar_kquant.c) defines it: exact integer sums over the
 * sub-blocks, then acc + d * isum - dm * msum in F32 (the block's F16 d and
 * dmin times the activation scale da). qa: the 256 activation values, bs
 * their 16 sums. */

NM_HD float nm_dm_kstep(float acc, uint16_t d, uint16_t dmin, float da, int32_t isum, int32_t msum,
                        bool has_min) {
    float dd = nm_dm_f16(d) * da;
    if (!has_min)
        return acc + dd * (float)isum;
    float dm = nm_dm_f16(dmin) * da;
    float t = dd * (float)isum - dm * (float)msum;
    return acc + t;
}

NM_HD float nm_dm_kblock(uint32_t type, const uint8_t *blk, const int8_t *qa, float da,
                         const int16_t *bs, float acc) {
    int32_t isum = 0, msum = 0;
    if (type == NM_TYPE_Q4_K || type == NM_TYPE_Q5_K) {
        const nm_block_q4_k *w4 = (const nm_block_q4_k *)blk;
        const nm_block_q5_k *w5 = (const nm_block_q5_k *)blk;
        for (int j = 0; j < 8; j++) {
            int sc, m;
            int32_t dot = 0;
            nm_k4_scale_min(w4->scales, j, &sc, &m);
            for (int e = 32 * j; e < 32 * j + 32; e++)
                dot += (type == NM_TYPE_Q4_K ? nm_q4k_q(w4->qs, e) : nm_q5k_q(w5, e)) * qa[e];
            isum += sc * dot;
            msum += m * (bs[2 * j] + bs[2 * j + 1]);
        }
        return nm_dm_kstep(acc, w4->d, w4->dmin, da, isum, msum, true);
    }
    for (int j = 0; j < 16; j++) {
        int32_t dot = 0;
        for (int e = 16 * j; e < 16 * j + 16; e++) {
            int q = type == NM_TYPE_Q6_K   ? nm_q6k_q((const nm_block_q6_k *)blk, e)
                    : type == NM_TYPE_Q3_K ? nm_q3k_q((const nm_block_q3_k *)blk, e)
                                           : nm_q2k_q((const nm_block_q2_k *)blk, e);
            dot += q * qa[e];
        }
        if (type == NM_TYPE_Q6_K) {
            isum += ((const nm_block_q6_k *)blk)->scales[j] * dot;
        } else if (type == NM_TYPE_Q3_K) {
            isum += nm_q3k_scale(((const nm_block_q3_k *)blk)->scales, j) * dot;
        } else {
            const nm_block_q2_k *w = (const nm_block_q2_k *)blk;
            isum += (w->scales[j] & 15) * dot;
            msum += (w->scales[j] >> 4) * bs[j];
        }
    }
    if (type == NM_TYPE_Q2_K) {
        const nm_block_q2_k *w = (const nm_block_q2_k *)blk;
        return nm_dm_kstep(acc, w->d, w->dmin, da, isum, msum, true);
    }
    uint16_t d =
        type == NM_TYPE_Q6_K ? ((const nm_block_q6_k *)blk)->d : ((const nm_block_q3_k *)blk)->d;
    return nm_dm_kstep(acc, d, 0, da, isum, 0, false);
}

NM_HD int nm_dm_kblock_bytes(uint32_t type) {
    return type == NM_TYPE_Q2_K   ? 84
           : type == NM_TYPE_Q3_K ? 110
           : type == NM_TYPE_Q4_K ? 144
           : type == NM_TYPE_Q5_K ? 176
                                  : 210;
}

/* ---- one lane's share of a row dot product --------------------------
 * Lane `lane` of `nl` takes elements (or blocks) lane, lane + nl, ...; the
 * lanes' partial sums added give dot(row, x). The activation is rounded as
 * the CPU kernels round it (F16 weights: x to F16; BF16: x to BF16), or
 * taken from the token's prepared row xrow (quantized types). */

NM_HD bool nm_dm_is_kquant(uint32_t type) {
    return type == NM_TYPE_Q2_K || type == NM_TYPE_Q3_K || type == NM_TYPE_Q4_K ||
           type == NM_TYPE_Q5_K || type == NM_TYPE_Q6_K;
}

NM_HD bool nm_dm_needs_prepared(uint32_t type) {
    return type == NM_TYPE_Q8_0 || type == NM_TYPE_Q4_0 || nm_dm_is_kquant(type);
}

NM_HD bool nm_dm_supports(uint32_t type) {
    return type == NM_TYPE_F32 || type == NM_TYPE_F16 || type == NM_TYPE_BF16 ||
           nm_dm_needs_prepared(type);
}

/* Bytes of a token's prepared row, 0 when the type takes floats. */
NM_HD uint64_t nm_dm_prepared_row_bytes(uint32_t type, int64_t n) {
    return nm_dm_is_kquant(type)                          ? nm_dm_q8k_row_bytes(n)
           : type == NM_TYPE_Q8_0 || type == NM_TYPE_Q4_0 ? nm_dm_q8_row_bytes(n)
                                                          : 0;
}

NM_HD float nm_dm_dot_lane(uint32_t type, const uint8_t *row, const float *x, const uint8_t *xrow,
                           int64_t n, int lane, int nl) {
    float s = 0.0f;
    const int8_t *xq = (const int8_t *)xrow;
    if (type == NM_TYPE_F32) {
        const float *w = (const float *)row;
        for (int64_t i = lane; i < n; i += nl)
            s += w[i] * x[i];
    } else if (type == NM_TYPE_F16) {
        for (int64_t i = lane; i < n; i += nl)
            s += nm_dm_f16(nm_dm_u16(row + 2 * i)) * nm_dm_f16(nm_dm_to_f16(x[i]));
    } else if (type == NM_TYPE_BF16) {
        for (int64_t i = lane; i < n; i += nl)
            s += nm_dm_bf16(nm_dm_u16(row + 2 * i)) * nm_dm_bf16(nm_dm_to_bf16(x[i]));
    } else if (type == NM_TYPE_Q8_0 || type == NM_TYPE_Q4_0) {
        const float *xd = (const float *)(xrow + n);
        for (int64_t b = lane; b < n / 32; b += nl) {
            const uint8_t *blk = row + b * (type == NM_TYPE_Q8_0 ? 34 : 18), *q = blk + 2;
            const int8_t *a = xq + b * 32;
            int32_t isum = 0;
            if (type == NM_TYPE_Q8_0)
                for (int j = 0; j < 32; j++)
                    isum += (int32_t)(int8_t)q[j] * a[j];
            else
                for (int j = 0; j < 16; j++)
                    isum += ((q[j] & 0x0f) - 8) * a[j] + ((q[j] >> 4) - 8) * a[j + 16];
            s += nm_dm_f16(nm_dm_u16(blk)) * xd[b] * (float)isum;
        }
    } else if (nm_dm_is_kquant(type)) {
        const float *xd = (const float *)(xrow + n);
        const int16_t *bs = (const int16_t *)(xrow + n + n / 256 * 4);
        const int bb = nm_dm_kblock_bytes(type);
        for (int64_t b = lane; b < n / 256; b += nl)
            s = nm_dm_kblock(type, row + b * bb, xq + b * 256, xd[b], bs + b * 16, s);
    }
    return s;
}

/* ---- element-wise pieces ---------------------------------------------- */

/* Pair (r, r+1) of a row, r even, with the token's cos/sin table. */
NM_HD void nm_dm_rope_pair(float *row, int64_t r, const float *cs, int head_dim, int n_rot) {
    int i = (int)(r % head_dim);
    if (i >= n_rot)
        return;
    float c = cs[i], s = cs[i + 1], x0 = row[r], x1 = row[r + 1];
    row[r] = x0 * c - x1 * s;
    row[r + 1] = x0 * s + x1 * c;
}

/* e^x as SwiGLU takes it: defined by these float steps (no libm, no fused
 * multiply-add: the build has -ffp-contract=off), which the vector kernels
 * repeat lane by lane (nm_swiglu_avx2), so every kernel set, the scalar
 * one included, gives the same bits. Cephes' expf: x = n ln2 + r with
 * |r| <= ln2 / 2 (ln2 in two parts, so n ln2's first part is exact), a
 * degree-5 polynomial for (e^r - 1 - r) / r^2, and 2^n in the exponent
 * bits; within 2 ulp of e^x (tests/test_kernels.c checks against the
 * double one). Above 88 it is infinity, below -87.3 e^-87.3, so 2^n stays a
 * normal float: SwiGLU needs nothing finer at the ends (g / (1 + e^-g) is 0
 * or g there; a NaN g stays NaN). llama.cpp's SiLU takes its own vector exp as well. */
#define NM_EXP_LO (-87.3f)
#define NM_EXP_HI 88.0f
#define NM_EXP_LOG2E 1.44269504088896341f
#define NM_EXP_ROUND 12582912.0f /* 1.5 * 2^23: x + it - it rounds x to an integer */
#define NM_EXP_LN2_HI 0.693359375f
#define NM_EXP_LN2_LO (-2.12194440e-4f)
#define NM_EXP_P0 1.9875691500e-4f
#define NM_EXP_P1 1.3981999507e-3f
#define NM_EXP_P2 8.3334519073e-3f
#define NM_EXP_P3 4.1665795894e-2f
#define NM_EXP_P4 1.6666665459e-1f
#define NM_EXP_P5 5.0000001201e-1f

NM_HD float nm_dm_exp(float x) {
    if (!(x >= NM_EXP_LO)) /* NaN too: no undefined conversion below */
        x = NM_EXP_LO;
    if (x > NM_EXP_HI)
        return INFINITY;
    float n = (x * NM_EXP_LOG2E + NM_EXP_ROUND) - NM_EXP_ROUND;
    float r = (x - n * NM_EXP_LN2_HI) - n * NM_EXP_LN2_LO;
    float p = NM_EXP_P0;
    p = p * r + NM_EXP_P1;
    p = p * r + NM_EXP_P2;
    p = p * r + NM_EXP_P3;
    p = p * r + NM_EXP_P4;
    p = p * r + NM_EXP_P5;
    float y = (p * (r * r) + r) + 1.0f;
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, 4);
    return y * scale;
}

NM_HD float nm_dm_swiglu(float g, float u) {
    return g / (1.0f + nm_dm_exp(-g)) * u;
}

/* ---- attention, one (token, query head) per thread block ----------------
 * Three passes over the cached positions 0 .. n_pos-1, thread tid of nth
 * taking positions (then dimensions) tid, tid + nth, ...; the block
 * combines the partial maxima and sums between them. K and V rows of the
 * query head's KV head start at k and v (kv_type F16 or F32). */

/* round_q: the query rounded to F16 first (the F16-online attention). */
NM_HD float nm_dm_attn_scores(const float *q, const void *k, uint32_t kv_type, int hd, int n_pos,
                              float scale, bool round_q, float *scores, int tid, int nth) {
    float mx = -INFINITY;
    for (int p = tid; p < n_pos; p += nth) {
        float s = 0.0f;
        if (kv_type == NM_TYPE_F16) {
            const uint16_t *kr = (const uint16_t *)k + (size_t)p * hd;
            for (int d = 0; d < hd; d++)
                s += nm_dm_f16(kr[d]) * (round_q ? nm_dm_f16(nm_dm_to_f16(q[d])) : q[d]);
        } else {
            const float *kr = (const float *)k + (size_t)p * hd;
            for (int d = 0; d < hd; d++)
                s += kr[d] * q[d];
        }
        scores[p] = s * scale;
        mx = scores[p] > mx ? scores[p] : mx;
    }
    return mx;
}

NM_HD double nm_dm_attn_exp(float *scores, int n_pos, float mx, int tid, int nth) {
    double sum = 0;
    for (int p = tid; p < n_pos; p += nth) {
        scores[p] = expf(scores[p] - mx);
        sum += scores[p];
    }
    return sum;
}

NM_HD void nm_dm_attn_out(const float *scores, const void *v, uint32_t kv_type, int hd, int n_pos,
                          float inv, float *out, int tid, int nth) {
    for (int d = tid; d < hd; d += nth) {
        float acc = 0.0f;
        for (int p = 0; p < n_pos; p++) {
            float vv = kv_type == NM_TYPE_F16 ? nm_dm_f16(((const uint16_t *)v)[(size_t)p * hd + d])
                                              : ((const float *)v)[(size_t)p * hd + d];
            acc += scores[p] * inv * vv;
        }
        out[d] = acc;
    }
}

/* The F16-online attention (nm_attend_head with f16_online, as llama.cpp's
 * CPU flash attention): over the positions in order, a running maximum M
 * and sum S, the values summed into an accumulator rounded to F16 after
 * every step and rescaled when M grows. Each thread runs the same M/S
 * sequence from the scores (nm_dm_attn_scores with round_q) for its
 * dimensions tid, tid + nth, ... of out. */
NM_HD void nm_dm_attn_online_out(const float *scores, const uint16_t *v, int hd, int n_pos,
                                 float *out, int tid, int nth) {
    for (int d = tid; d < hd; d += nth) {
        float M = -INFINITY, S = 0.0f, acc = 0.0f;
        for (int p = 0; p < n_pos; p++) {
            float sc = scores[p], ms = 1.0f, vs = 1.0f;
            if (sc > M) {
                ms = expf(M - sc);
                M = sc;
                acc = nm_dm_f16(nm_dm_to_f16(acc * ms));
            } else {
                vs = expf(sc - M);
            }
            acc = nm_dm_f16(nm_dm_to_f16(acc + vs * nm_dm_f16(v[(size_t)p * hd + d])));
            S = S * ms + vs;
        }
        out[d] = acc * (1.0f / S);
    }
}

#endif
