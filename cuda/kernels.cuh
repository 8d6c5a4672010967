/* Launchers of the GPU kernels (kernels.cu) for the CUDA device
 * implementation (device_cuda.cu). One straightforward kernel per
 * operation, with the arithmetic of runtime/device_math.h, which the suite
 * checks on the CPU against the reference kernels. Each returns the launch
 * error (cudaSuccess when queued). */
#ifndef NM_CUDA_KERNELS_CUH
#define NM_CUDA_KERNELS_CUH

#include <cuda_runtime.h>
#include <stdint.h>

/* The prepared activation rows (device_math.h) for weights of type, of
 * n_tok tokens of n floats. */
cudaError_t nm_k_prepare(cudaStream_t s, uint32_t type, const float *x, int64_t n, int n_tok,
                         uint8_t *out);

/* y[t * n_rows + i] = dot(row i, token t); xq: the prepared rows
 * (quantized types only, else NULL). */
cudaError_t nm_k_matmul(cudaStream_t s, const uint8_t *w, uint32_t type, int64_t n_rows,
                        int64_t n_cols, uint64_t row_bytes, const float *x, const uint8_t *xq,
                        int n_tok, float *y);

cudaError_t nm_k_rmsnorm(cudaStream_t s, float *y, const float *x, const float *w, int64_t n,
                         int n_tok, float eps);
cudaError_t nm_k_rope(cudaStream_t s, float *x, int64_t n, int n_tok, int head_dim, int n_rot,
                      const float *cs);
cudaError_t nm_k_kv_store(cudaStream_t s, void *cache, uint32_t kv_type, const float *src,
                          int n_head_kv, int head_dim, int n_ctx, int pos, int n_tok);
cudaError_t nm_k_attention(cudaStream_t s, const float *q, float *out, const void *k, const void *v,
                           uint32_t kv_type, int n_head, int n_head_kv, int head_dim, int n_ctx,
                           int pos, int n_tok, bool f16_online, float *scores);
cudaError_t nm_k_swiglu(cudaStream_t s, float *g, const float *u, int64_t n);
cudaError_t nm_k_add(cudaStream_t s, float *x, const float *y, int64_t n);

/* Adds the hash terms of p's words into *sum (zero it first). */
cudaError_t nm_k_hash(cudaStream_t s, const uint8_t *p, uint64_t bytes, unsigned long long *sum);

#endif
