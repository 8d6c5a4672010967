#include "ops.h"

#include "gguf/ggml_types.h"
#include "kernels.h"

#include <math.h>
#include <string.h>

void nm_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps) {
    double ss = 0;
    for (int64_t i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    float scale = 1.0f / sqrtf((float)(ss / (double)n) + eps);
    for (int64_t i = 0; i < n; i++)
        y[i] = (x[i] * scale) * w[i];
}

void nm_rope_table(float *cs, int pos, int n_rot, float base) {
    const float step = powf(base, -2.0f / (float)n_rot);
    float theta = (float)pos;
    for (int i = 0; i < n_rot / 2; i++) {
        cs[2 * i] = cosf(theta);
        cs[2 * i + 1] = sinf(theta);
        theta *= step;
    }
}

void nm_rope_head(float *x, const float *cs, int n_rot) {
    for (int i = 0; i < n_rot / 2; i++) {
        float c = cs[2 * i], s = cs[2 * i + 1];
        float a = x[2 * i], b = x[2 * i + 1];
        x[2 * i] = a * c - b * s;
        x[2 * i + 1] = a * s + b * c;
    }
}

void nm_softmax(float *x, int64_t n) {
    float max = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        if (x[i] > max)
            max = x[i];
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++)
        x[i] *= inv;
}

void nm_swiglu(float *h, const float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        h[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void nm_attend_head(const float *q, const void *k, const void *v, uint32_t kv_type, int head_dim,
                    int n_pos, float *scores, float *out) {
    const float scale = 1.0f / sqrtf((float)head_dim);
    const size_t hd = (size_t)head_dim;
    if (kv_type == NM_TYPE_F16) {
        const uint16_t *K = k, *V = v;
        for (int p = 0; p < n_pos; p++)
            scores[p] = nm_dot_f16_f32(K + (size_t)p * hd, q, head_dim) * scale;
        nm_softmax(scores, n_pos);
        memset(out, 0, hd * sizeof(float));
        for (int p = 0; p < n_pos; p++)
            nm_axpy_f16(out, scores[p], V + (size_t)p * hd, head_dim);
    } else {
        const float *K = k, *V = v;
        for (int p = 0; p < n_pos; p++)
            scores[p] = nm_dot_f32(K + (size_t)p * hd, q, head_dim) * scale;
        nm_softmax(scores, n_pos);
        memset(out, 0, hd * sizeof(float));
        for (int p = 0; p < n_pos; p++)
            nm_axpy_f32(out, scores[p], V + (size_t)p * hd, head_dim);
    }
}

double nm_log_softmax_at(const float *x, int64_t n, int64_t idx) {
    float max = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        if (x[i] > max)
            max = x[i];
    double sum = 0;
    for (int64_t i = 0; i < n; i++)
        sum += exp((double)x[i] - max);
    return (double)x[idx] - max - log(sum);
}
