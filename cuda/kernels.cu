/* The GPU kernels: one plain kernel per operation, written to be obviously
 * right rather than fast. The arithmetic is in runtime/device_math.h (the
 * suite runs it on the CPU); what is here is the launch shape and the
 * reductions across a warp or a block. */
#include "kernels.cuh"

#include <cuda_fp16.h>

#include "runtime/device_math.h"

#define WARP 32
#define ROWS_PER_BLOCK 4 /* one warp per row */
#define THREADS 256      /* element-wise and per-token kernels */
#define ATTN_THREADS 128

static unsigned blocks_for(int64_t n, int per) {
    return (unsigned)((n + per - 1) / per);
}

__device__ static float warp_sum(float v) {
    for (int o = WARP / 2; o > 0; o /= 2)
        v += __shfl_down_sync(0xffffffffu, v, o);
    return v;
}

/* Block-wide reductions through shared memory; every thread gets the
 * result. buf holds blockDim.x values. */
__device__ static double block_sum_d(double v, double *buf) {
    buf[threadIdx.x] = v;
    __syncthreads();
    for (unsigned o = blockDim.x / 2; o > 0; o /= 2) {
        if (threadIdx.x < o)
            buf[threadIdx.x] += buf[threadIdx.x + o];
        __syncthreads();
    }
    double r = buf[0];
    __syncthreads();
    return r;
}

__device__ static float block_max(float v, float *buf) {
    buf[threadIdx.x] = v;
    __syncthreads();
    for (unsigned o = blockDim.x / 2; o > 0; o /= 2) {
        if (threadIdx.x < o)
            buf[threadIdx.x] = fmaxf(buf[threadIdx.x], buf[threadIdx.x + o]);
        __syncthreads();
    }
    float r = buf[0];
    __syncthreads();
    return r;
}

/* ---- matmul ----------------------------------------------------------- */

/* thread: activation block b of token blockIdx.y (32 values for Q8_0 /
 * Q4_0 weights, 256 for the K-quants) */
__global__ void k_prepare(uint32_t type, const float *x, int64_t n, uint8_t *out) {
    int64_t b = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int t = blockIdx.y;
    if (b >= n / (nm_dm_is_kquant(type) ? 256 : 32))
        return;
    nm_dm_prepare_block(type, x + (int64_t)t * n, n,
                        out + (uint64_t)t * nm_dm_prepared_row_bytes(type, n), b);
}

cudaError_t nm_k_prepare(cudaStream_t s, uint32_t type, const float *x, int64_t n, int n_tok,
                         uint8_t *out) {
    dim3 grid(blocks_for(n / (nm_dm_is_kquant(type) ? 256 : 32), THREADS), (unsigned)n_tok);
    k_prepare<<<grid, THREADS, 0, s>>>(type, x, n, out);
    return cudaGetLastError();
}

/* warp threadIdx.y of block x: row blockIdx.x * ROWS_PER_BLOCK + y, token
 * blockIdx.y */
__global__ void k_matmul(const uint8_t *w, uint32_t type, int64_t n_rows, int64_t n_cols,
                         uint64_t row_bytes, const float *x, const uint8_t *xq, float *y) {
    int64_t row = (int64_t)blockIdx.x * ROWS_PER_BLOCK + threadIdx.y;
    int t = blockIdx.y;
    if (row >= n_rows)
        return;
    const uint8_t *xrow = xq ? xq + (uint64_t)t * nm_dm_prepared_row_bytes(type, n_cols) : NULL;
    float s = nm_dm_dot_lane(type, w + (uint64_t)row * row_bytes, x + (int64_t)t * n_cols, xrow,
                             n_cols, threadIdx.x, WARP);
    s = warp_sum(s);
    if (threadIdx.x == 0)
        y[(int64_t)t * n_rows + row] = s;
}

cudaError_t nm_k_matmul(cudaStream_t s, const uint8_t *w, uint32_t type, int64_t n_rows,
                        int64_t n_cols, uint64_t row_bytes, const float *x, const uint8_t *xq,
                        int n_tok, float *y) {
    dim3 grid(blocks_for(n_rows, ROWS_PER_BLOCK), (unsigned)n_tok), block(WARP, ROWS_PER_BLOCK);
    k_matmul<<<grid, block, 0, s>>>(w, type, n_rows, n_cols, row_bytes, x, xq, y);
    return cudaGetLastError();
}

/* ---- norms, rope, cache, element-wise --------------------------------- */

/* block per token, as nm_rmsnorm: the sum of squares in double */
__global__ void k_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps) {
    __shared__ double buf[THREADS];
    const float *xr = x + (int64_t)blockIdx.x * n;
    float *yr = y + (int64_t)blockIdx.x * n;
    double ss = 0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
        ss += (double)xr[i] * xr[i];
    ss = block_sum_d(ss, buf);
    float scale = 1.0f / sqrtf((float)(ss / (double)n) + eps);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
        yr[i] = (xr[i] * scale) * w[i];
}

cudaError_t nm_k_rmsnorm(cudaStream_t s, float *y, const float *x, const float *w, int64_t n,
                         int n_tok, float eps) {
    k_rmsnorm<<<(unsigned)n_tok, THREADS, 0, s>>>(y, x, w, n, eps);
    return cudaGetLastError();
}

/* thread per pair (2i, 2i+1) of token blockIdx.y */
__global__ void k_rope(float *x, int64_t n, int head_dim, int n_rot, const float *cs) {
    int64_t r = 2 * ((int64_t)blockIdx.x * blockDim.x + threadIdx.x);
    int t = blockIdx.y;
    if (r + 1 < n)
        nm_dm_rope_pair(x + (int64_t)t * n, r, cs + (int64_t)t * (n_rot + 2), head_dim, n_rot);
}

cudaError_t nm_k_rope(cudaStream_t s, float *x, int64_t n, int n_tok, int head_dim, int n_rot,
                      const float *cs) {
    dim3 grid(blocks_for(n / 2, THREADS), (unsigned)n_tok);
    k_rope<<<grid, THREADS, 0, s>>>(x, n, head_dim, n_rot, cs);
    return cudaGetLastError();
}

/* thread per element (g * head_dim + d) of token blockIdx.y */
__global__ void k_kv_store(void *cache, uint32_t kv_type, const float *src, int n_head_kv,
                           int head_dim, int n_ctx, int pos) {
    int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int t = blockIdx.y;
    if (e >= (int64_t)n_head_kv * head_dim)
        return;
    int64_t g = e / head_dim, d = e % head_dim;
    float v = src[(int64_t)t * n_head_kv * head_dim + e];
    size_t at = ((size_t)g * n_ctx + (size_t)(pos + t)) * head_dim + d;
    if (kv_type == NM_TYPE_F16)
        ((uint16_t *)cache)[at] = nm_dm_to_f16(v);
    else
        ((float *)cache)[at] = v;
}

cudaError_t nm_k_kv_store(cudaStream_t s, void *cache, uint32_t kv_type, const float *src,
                          int n_head_kv, int head_dim, int n_ctx, int pos, int n_tok) {
    dim3 grid(blocks_for((int64_t)n_head_kv * head_dim, THREADS), (unsigned)n_tok);
    k_kv_store<<<grid, THREADS, 0, s>>>(cache, kv_type, src, n_head_kv, head_dim, n_ctx, pos);
    return cudaGetLastError();
}

__global__ void k_swiglu(float *g, const float *u, int64_t n) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        g[i] = nm_dm_swiglu(g[i], u[i]);
}

cudaError_t nm_k_swiglu(cudaStream_t s, float *g, const float *u, int64_t n) {
    k_swiglu<<<blocks_for(n, THREADS), THREADS, 0, s>>>(g, u, n);
    return cudaGetLastError();
}

__global__ void k_add(float *x, const float *y, int64_t n) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        x[i] += y[i];
}

cudaError_t nm_k_add(cudaStream_t s, float *x, const float *y, int64_t n) {
    k_add<<<blocks_for(n, THREADS), THREADS, 0, s>>>(x, y, n);
    return cudaGetLastError();
}

/* ---- attention: block per (query head blockIdx.x, token blockIdx.y) ---- */

__global__ void k_attention(const float *q, float *out, const void *k, const void *v,
                            uint32_t kv_type, int n_head, int n_head_kv, int head_dim, int n_ctx,
                            int pos, bool f16_online, float *scores) {
    __shared__ float fbuf[ATTN_THREADS];
    __shared__ double dbuf[ATTN_THREADS];
    const int h = blockIdx.x, t = blockIdx.y, g = h / (n_head / n_head_kv);
    const int n_pos = pos + t + 1;
    const size_t esize = kv_type == NM_TYPE_F16 ? 2 : 4;
    const size_t base = (size_t)g * n_ctx * head_dim * esize;
    const float *qh = q + ((size_t)t * n_head + h) * head_dim;
    float *oh = out + ((size_t)t * n_head + h) * head_dim;
    float *sc = scores + ((size_t)t * n_head + h) * n_ctx;
    const float scale = 1.0f / sqrtf((float)head_dim);
    const bool online = f16_online && kv_type == NM_TYPE_F16;
    float mx = nm_dm_attn_scores(qh, (const uint8_t *)k + base, kv_type, head_dim, n_pos, scale,
                                 online, sc, threadIdx.x, blockDim.x);
    __syncthreads(); /* every score written before any thread reads them */
    if (online) {
        nm_dm_attn_online_out(sc, (const uint16_t *)((const uint8_t *)v + base), head_dim, n_pos,
                              oh, threadIdx.x, blockDim.x);
        return;
    }
    mx = block_max(mx, fbuf);
    double sum = nm_dm_attn_exp(sc, n_pos, mx, threadIdx.x, blockDim.x);
    __syncthreads();
    sum = block_sum_d(sum, dbuf);
    float inv = (float)(1.0 / sum);
    nm_dm_attn_out(sc, (const uint8_t *)v + base, kv_type, head_dim, n_pos, inv, oh, threadIdx.x,
                   blockDim.x);
}

cudaError_t nm_k_attention(cudaStream_t s, const float *q, float *out, const void *k, const void *v,
                           uint32_t kv_type, int n_head, int n_head_kv, int head_dim, int n_ctx,
                           int pos, int n_tok, bool f16_online, float *scores) {
    dim3 grid((unsigned)n_head, (unsigned)n_tok);
    k_attention<<<grid, ATTN_THREADS, 0, s>>>(q, out, k, v, kv_type, n_head, n_head_kv, head_dim,
                                              n_ctx, pos, f16_online, scores);
    return cudaGetLastError();
}

/* ---- hash: grid-stride over the words, one atomic add per thread ------- */

__global__ void k_hash(const uint8_t *p, uint64_t bytes, unsigned long long *sum) {
    uint64_t words = (bytes + 7) / 8, s = 0;
    uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
    for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < words; i += stride)
        s += nm_dev_hash_term(nm_dev_hash_word(p, bytes, i), i);
    atomicAdd(sum, (unsigned long long)s);
}

cudaError_t nm_k_hash(cudaStream_t s, const uint8_t *p, uint64_t bytes, unsigned long long *sum) {
    uint64_t words = (bytes + 7) / 8;
    unsigned blocks = blocks_for((int64_t)words, THREADS);
    if (blocks > 1024)
        blocks = 1024;
    if (blocks == 0)
        blocks = 1;
    k_hash<<<blocks, THREADS, 0, s>>>(p, bytes, sum);
    return cudaGetLastError();
}
