/* The small element-wise steps of the llama graph. They run on vectors of
 * a few thousand elements, next to matvecs that read megabytes, so they
 * stay plain C. */
#ifndef NM_OPS_H
#define NM_OPS_H

#include <stdint.h>

/* y = x / sqrt(mean(x^2) + eps) * w (the sum of squares in double). */
void nm_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps);

/* cos/sin of theta_i = pos * base^(-2i/n_rot), i < n_rot/2, into cs[2i],
 * cs[2i+1]. The angle is stepped by a float factor as llama.cpp does, so
 * the rotations agree with it to the last bit where possible. */
void nm_rope_table(float *cs, int pos, int n_rot, float base);

/* llama.cpp "normal" RoPE on one head: pairs (x[2i], x[2i+1]), i < n_rot/2,
 * rotated by theta_i; dims at or beyond n_rot untouched. */
void nm_rope_head(float *x, const float *cs, int n_rot);

/* In place: x = exp(x - max) / sum. */
void nm_softmax(float *x, int64_t n);

/* SwiGLU gate: h[i] = silu(g[i]) * u[i]. */
void nm_swiglu(float *h, const float *g, const float *u, int64_t n);

/* One query head q against positions 0..n_pos-1 of one KV head, whose
 * rows of head_dim elements (kv_type F16 or F32) start at k and v:
 * out = softmax(q.K / sqrt(head_dim)) . V. scores: n_pos floats of
 * scratch. The CPU forward pass and the device interface's CPU
 * implementation both attend with it. */
void nm_attend_head(const float *q, const void *k, const void *v, uint32_t kv_type, int head_dim,
                    int n_pos, float *scores, float *out);

/* log(softmax(x)[idx]) in double. */
double nm_log_softmax_at(const float *x, int64_t n, int64_t idx);

#endif
