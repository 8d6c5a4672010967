/* The small element-wise steps of the llama graph. They run on vectors of
 * a few thousand elements, next to matvecs that read megabytes, so they
 * stay plain C. */
#ifndef NM_OPS_H
#define NM_OPS_H

#include <stdbool.h>
#include <stdint.h>

/* y = x / sqrt(mean(x^2) + eps) * w (the sum of squares in double). */
void nm_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps);

/* RoPE angles: theta_i = freq_scale * pos * base^(-2i/n_rot) / freq_factors[i]
 * (freq_factors NULL: 1), cos and sin scaled by attn_factor: llama.cpp's
 * rope without YaRN extrapolation (ext_factor 0). */
typedef struct nm_rope_params {
    float base, freq_scale, attn_factor;
    const float *freq_factors; /* n_rot / 2 divisors (Llama 3.1's rope_freqs) */
} nm_rope_params;

/* cos/sin of theta_i, i < n_rot/2, into cs[2i], cs[2i+1]. The angle is
 * stepped by a float factor and scaled in llama.cpp's order, so the
 * rotations agree with it to the last bit where possible. */
void nm_rope_table(float *cs, int pos, int n_rot, const nm_rope_params *p);

/* llama.cpp "normal" RoPE on one head: pairs (x[2i], x[2i+1]), i < n_rot/2,
 * rotated by theta_i; dims at or beyond n_rot untouched. */
void nm_rope_head(float *x, const float *cs, int n_rot);

/* llama.cpp "neox" RoPE (qwen2, qwen3): pairs (x[i], x[i + n_rot/2]). */
void nm_rope_head_neox(float *x, const float *cs, int n_rot);

/* In place: x = exp(x - max) / sum. */
void nm_softmax(float *x, int64_t n);

/* SwiGLU gate: h[i] = silu(g[i]) * u[i]. */
void nm_swiglu(float *h, const float *g, const float *u, int64_t n);

/* One query head q against positions 0..n_pos-1 of one KV head, whose
 * rows of head_dim elements (kv_type F16 or F32) start at k and v:
 * out = softmax(q.K / sqrt(head_dim)) . V. scores: n_pos floats of
 * scratch. The CPU forward pass and the device interface's CPU
 * implementation both attend with it.
 *
 * f16_online (F16 cache): as llama.cpp's CPU flash attention does it for
 * batches under 64 tokens (ggml-cpu ops.cpp, flash_attn_ext_f16_one_chunk):
 * the query rounded to F16, an online softmax, and the weighted sum of
 * values kept in F16, rounded after every position; tmp: 2 x head_dim
 * floats. Those roundings move logits by ~2e-4 relative, enough to flip
 * near-ties of random-weight models; following them keeps greedy text
 * identical with llama.cpp's for longer (measured in docs/runtime.md). */
void nm_attend_head(const float *q, const void *k, const void *v, uint32_t kv_type, int head_dim,
                    int n_pos, bool f16_online, float *scores, float *tmp, float *out);

/* log(softmax(x)[idx]) in double. */
double nm_log_softmax_at(const float *x, int64_t n, int64_t idx);

#endif
