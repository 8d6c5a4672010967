#include "ops.h"

#include "gguf/ggml_types.h"
#include "kernels.h"

#include <math.h>
#include <string.h>

/* The sum of squares in double (each square exact), in 8 interleaved
 * partial sums added in a fixed order: one chain of dependent adds waited
 * on each add's latency, and RMSNorm was 2.3 % of a serve --parallel 8 step
 * (Q4_K_M, measured with each of 2 workers normalizing every token;
 * batched passes split the tokens among a node's workers, model_forward.c). */
static double sum_squares(const float *x, int64_t n) {
    /* named variables, not an array: the compiler kept an array's sums in
     * memory across iterations */
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const float *v = x + i;
        s0 += (double)v[0] * v[0];
        s1 += (double)v[1] * v[1];
        s2 += (double)v[2] * v[2];
        s3 += (double)v[3] * v[3];
        s4 += (double)v[4] * v[4];
        s5 += (double)v[5] * v[5];
        s6 += (double)v[6] * v[6];
        s7 += (double)v[7] * v[7];
    }
    for (; i < n; i++)
        s0 += (double)x[i] * x[i];
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7));
}

void nm_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps) {
    double ss = sum_squares(x, n);
    float scale = 1.0f / sqrtf((float)(ss / (double)n) + eps);
    for (int64_t i = 0; i < n; i++)
        y[i] = (x[i] * scale) * w[i];
}

void nm_rope_table(float *cs, int pos, int n_rot, const nm_rope_params *p) {
    const float step = powf(p->base, -2.0f / (float)n_rot);
    float theta = (float)pos;
    for (int i = 0; i < n_rot / 2; i++) {
        float ff = p->freq_factors ? p->freq_factors[i] : 1.0f;
        float th = p->freq_scale * (theta / ff);
        cs[2 * i] = cosf(th) * p->attn_factor;
        cs[2 * i + 1] = sinf(th) * p->attn_factor;
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

void nm_rope_head_neox(float *x, const float *cs, int n_rot) {
    const int half = n_rot / 2;
    for (int i = 0; i < half; i++) {
        float c = cs[2 * i], s = cs[2 * i + 1];
        float a = x[i], b = x[i + half];
        x[i] = a * c - b * s;
        x[i + half] = a * s + b * c;
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

/* nm_attend_head's f16_online path. */
static void attend_f16_online(const float *q, const uint16_t *K, const uint16_t *V, int hd,
                              int n_pos, float scale, float *tmp, float *out) {
    float *qh = tmp, *acc = tmp + hd;
    memcpy(qh, q, (size_t)hd * sizeof(float));
    nm_round_f16(qh, hd);
    memset(acc, 0, (size_t)hd * sizeof(float));
    float M = -INFINITY, S = 0.0f;
    for (int p = 0; p < n_pos; p++) {
        float sc = nm_dot_f16_f32(K + (size_t)p * hd, qh, hd) * scale, ms = 1.0f, vs = 1.0f;
        if (sc > M) { /* a new maximum rescales what was summed */
            ms = expf(M - sc);
            M = sc;
            for (int d = 0; d < hd; d++)
                acc[d] *= ms;
            nm_round_f16(acc, hd);
        } else {
            vs = expf(sc - M);
        }
        nm_axpy_f16(acc, vs, V + (size_t)p * hd, hd);
        nm_round_f16(acc, hd);
        S = S * ms + vs;
    }
    const float inv = 1.0f / S;
    for (int d = 0; d < hd; d++)
        out[d] = acc[d] * inv;
}

void nm_attend_head(const float *q, const void *k, const void *v, uint32_t kv_type, int head_dim,
                    int n_pos, bool f16_online, float *scores, float *tmp, float *out) {
    const float scale = 1.0f / sqrtf((float)head_dim);
    const size_t hd = (size_t)head_dim;
    if (kv_type == NM_TYPE_F16 && f16_online) {
        attend_f16_online(q, k, v, head_dim, n_pos, scale, tmp, out);
    } else if (kv_type == NM_TYPE_F16) {
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
