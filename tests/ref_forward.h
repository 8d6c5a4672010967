/* A plain F64 forward pass of the llama family (llama, qwen2, qwen3,
 * qwen3moe),
 * written from the equations and llama.cpp's graphs, for the tests to check
 * numalm's logits against: every weight read with fread and dequantized to
 * double, nothing shared with the loader or the kernels but the reference
 * dequantizers. Header-only (static functions) for the cmocka programs. */
#ifndef NM_TEST_REF_FORWARD_H
#define NM_TEST_REF_FORWARD_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "gguf/gguf.h"
#include "gguf/llama_hparams.h"
#include "gguf/quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

/* Biases and Q/K norms are NULL when the file has none. */
typedef struct ref_layer {
    double *attn_norm, *ffn_norm, *q, *k, *v, *o, *gate, *up, *down;
    double *q_norm, *k_norm, *qb, *kb, *vb, *ob, *gb, *ub, *db;
    /* qwen3moe: router [n_expert][E], experts [n_expert][rows][cols] */
    double *router, *gate_exps, *up_exps, *down_exps;
} ref_layer;

typedef struct ref_model {
    nm_llama_hparams hp;
    double *embd, *out_norm, *out, *out_bias, *rope_freqs;
    ref_layer *L;
    double *kcache, *vcache; /* [layer][pos][kv dim] */
    int max_pos;
} ref_model;

/* Every weight read with fread and dequantized to double: nothing shared
 * with the loader or the kernels but the reference dequantizers. NULL when
 * absent and optional. */
static double *ref_tensor_opt(FILE *f, const nm_gguf *g, const char *name, bool optional) {
    const nm_gguf_tensor *t = nm_gguf_find_tensor(g, name);
    if (!t && optional)
        return NULL;
    if (!t)
        fail_msg("reference: no tensor %s", name);
    uint8_t *raw = malloc(t->nbytes);
    float *row = malloc(t->ne[0] * sizeof(float));
    double *out = malloc(t->ne[0] * t->n_rows * sizeof(double));
    assert_true(raw && row && out);
    assert_int_equal(fseeko(f, (off_t)t->file_offset, SEEK_SET), 0);
    assert_int_equal(fread(raw, 1, t->nbytes, f), t->nbytes);
    for (uint64_t r = 0; r < t->n_rows; r++) {
        assert_int_equal(nm_dequantize_row(t->type, raw + r * t->row_bytes, row, (int64_t)t->ne[0]),
                         0);
        for (uint64_t i = 0; i < t->ne[0]; i++)
            out[r * t->ne[0] + i] = row[i];
    }
    free(raw), free(row);
    return out;
}

static double *ref_tensor(FILE *f, const nm_gguf *g, const char *name) {
    return ref_tensor_opt(f, g, name, false);
}

#define REF_LAYER_TENSORS 22

static double **ref_layer_slots(ref_layer *L, double **p[REF_LAYER_TENSORS]) {
    double **v[REF_LAYER_TENSORS] = {&L->attn_norm, &L->ffn_norm, &L->q,  &L->k,      &L->v,
                                     &L->o,         &L->gate,     &L->up, &L->down,   &L->q_norm,
                                     &L->k_norm,    &L->qb,       &L->kb, &L->vb,     &L->ob,
                                     &L->gb,        &L->ub,       &L->db, &L->router, &L->gate_exps,
                                     &L->up_exps,   &L->down_exps};
    memcpy(p, v, sizeof v);
    return p[0];
}

static void ref_load(ref_model *r, const nm_gguf *g, int max_pos) {
    nm_error err = {{0}};
    memset(r, 0, sizeof *r);
    assert_int_equal(nm_llama_hparams_read(g, &r->hp, true, &err), 0);
    FILE *f = fopen(g->path, "rb");
    assert_non_null(f);
    char name[96];
    static const char *const names[REF_LAYER_TENSORS] = {
        "attn_norm.weight",   "ffn_norm.weight",     "attn_q.weight",       "attn_k.weight",
        "attn_v.weight",      "attn_output.weight",  "ffn_gate.weight",     "ffn_up.weight",
        "ffn_down.weight",    "attn_q_norm.weight",  "attn_k_norm.weight",  "attn_q.bias",
        "attn_k.bias",        "attn_v.bias",         "attn_output.bias",    "ffn_gate.bias",
        "ffn_up.bias",        "ffn_down.bias",       "ffn_gate_inp.weight", "ffn_gate_exps.weight",
        "ffn_up_exps.weight", "ffn_down_exps.weight"};
    r->L = calloc(r->hp.n_layer, sizeof *r->L);
    for (uint32_t l = 0; l < r->hp.n_layer; l++) {
        double **dst[REF_LAYER_TENSORS];
        ref_layer_slots(&r->L[l], dst);
        for (int i = 0; i < REF_LAYER_TENSORS; i++) {
            snprintf(name, sizeof name, "blk.%u.%s", l, names[i]);
            /* a mixture has experts instead of gate, up and down */
            bool moe = r->hp.n_expert > 0;
            *dst[i] = ref_tensor_opt(f, g, name, i >= 9 || (moe && i >= 6 && i <= 8));
        }
    }
    r->embd = ref_tensor(f, g, "token_embd.weight");
    r->out_norm = ref_tensor(f, g, "output_norm.weight");
    r->out = nm_gguf_find_tensor(g, "output.weight") ? ref_tensor(f, g, "output.weight") : r->embd;
    r->out_bias = ref_tensor_opt(f, g, "output.bias", true);
    r->rope_freqs = ref_tensor_opt(f, g, "rope_freqs.weight", true);
    fclose(f);
    size_t kvd = (size_t)r->hp.n_head_kv * r->hp.head_dim;
    r->max_pos = max_pos;
    r->kcache = calloc((size_t)r->hp.n_layer * max_pos * kvd, sizeof(double));
    r->vcache = calloc((size_t)r->hp.n_layer * max_pos * kvd, sizeof(double));
}

static void ref_free(ref_model *r) {
    for (uint32_t l = 0; l < r->hp.n_layer; l++) {
        double **p[REF_LAYER_TENSORS];
        ref_layer_slots(&r->L[l], p);
        for (int i = 0; i < REF_LAYER_TENSORS; i++)
            free(*p[i]);
    }
    if (r->out != r->embd)
        free(r->out);
    free(r->embd), free(r->out_norm), free(r->out_bias), free(r->rope_freqs);
    free(r->L), free(r->kcache), free(r->vcache);
}

/* y = W x (+ b). */
static void ref_matvec(const double *w, const double *x, double *y, int rows, int cols,
                       const double *b) {
    for (int i = 0; i < rows; i++) {
        double s = b ? b[i] : 0;
        for (int j = 0; j < cols; j++)
            s += w[(size_t)i * cols + j] * x[j];
        y[i] = s;
    }
}

static void ref_rmsnorm(const double *x, const double *w, double *y, int n, double eps) {
    double ss = 0;
    for (int i = 0; i < n; i++)
        ss += x[i] * x[i];
    double scale = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++)
        y[i] = x[i] * scale * w[i];
}

/* Per head: the RMSNorm (qwen3's q/k norms), then RoPE: the angle of pair i
 * is scale * pos * base^(-2i/n_rot) / factor[i]; llama rotates (x[2i],
 * x[2i+1]), qwen (neox) (x[i], x[i + n_rot/2]). */
static void ref_heads(const ref_model *r, double *v, int n_heads, const double *norm, int pos) {
    const nm_llama_hparams *hp = &r->hp;
    const int hd = (int)hp->head_dim, n_rot = (int)hp->n_rot, half = n_rot / 2;
    for (int h = 0; h < n_heads; h++) {
        double *x = v + h * hd;
        if (norm)
            ref_rmsnorm(x, norm, x, hd, hp->rms_eps);
        for (int i = 0; i < half; i++) {
            double th = hp->rope_freq_scale * pos * pow(hp->rope_freq_base, -2.0 * i / n_rot) /
                        (r->rope_freqs ? r->rope_freqs[i] : 1.0);
            double c = cos(th) * hp->rope_attn_factor, s = sin(th) * hp->rope_attn_factor;
            double *a = hp->rope_type == NM_ROPE_NEOX ? x + i : x + 2 * i;
            double *b = hp->rope_type == NM_ROPE_NEOX ? x + i + half : x + 2 * i + 1;
            double a0 = *a, b0 = *b;
            *a = a0 * c - b0 * s;
            *b = a0 * s + b0 * c;
        }
    }
}

/* The mixture of experts on xb into out (n_embd): softmax over the router
 * logits, the n_expert_used most probable experts, their probabilities
 * renormalised to sum to one, each a SwiGLU FFN. */
static void ref_moe(const ref_model *r, const ref_layer *L, const double *xb, double *out) {
    const nm_llama_hparams *hp = &r->hp;
    const int E = (int)hp->n_embd, F = (int)hp->n_ff_exp, ne = (int)hp->n_expert;
    double *p = malloc((size_t)ne * sizeof(double)), *g = malloc((size_t)F * sizeof(double));
    double *u = malloc((size_t)F * sizeof(double)), *d = malloc((size_t)E * sizeof(double));
    int *sel = malloc(hp->n_expert_used * sizeof(int));
    ref_matvec(L->router, xb, p, ne, E, NULL);
    double max = -INFINITY, sum = 0, wsum = 0;
    for (int e = 0; e < ne; e++)
        max = p[e] > max ? p[e] : max;
    for (int e = 0; e < ne; e++)
        sum += (p[e] = exp(p[e] - max));
    for (int j = 0; j < (int)hp->n_expert_used; j++) {
        int best = -1;
        for (int e = 0; e < ne; e++) {
            bool taken = false;
            for (int i = 0; i < j; i++)
                taken |= sel[i] == e;
            if (!taken && (best < 0 || p[e] > p[best]))
                best = e;
        }
        sel[j] = best;
        wsum += p[best] / sum;
    }
    memset(out, 0, (size_t)E * sizeof(double));
    for (int j = 0; j < (int)hp->n_expert_used; j++) {
        size_t e = (size_t)sel[j];
        ref_matvec(L->gate_exps + e * F * E, xb, g, F, E, NULL);
        ref_matvec(L->up_exps + e * F * E, xb, u, F, E, NULL);
        for (int i = 0; i < F; i++)
            g[i] = g[i] / (1 + exp(-g[i])) * u[i];
        ref_matvec(L->down_exps + e * E * F, g, d, E, F, NULL);
        for (int i = 0; i < E; i++)
            out[i] += p[e] / sum / wsum * d[i];
    }
    free(p), free(g), free(u), free(d), free(sel);
}

/* One token at position pos; logits (n_vocab doubles) out. */
static void ref_step(ref_model *r, int32_t token, int pos, double *logits) {
    const nm_llama_hparams *hp = &r->hp;
    const int E = (int)hp->n_embd, F = (int)hp->n_ff, hd = (int)hp->head_dim;
    const int Q = (int)hp->n_head * hd, KV = (int)hp->n_head_kv * hd;
    const int gqa = (int)(hp->n_head / hp->n_head_kv), big = Q > F ? Q : F;
    double *x = malloc(E * sizeof(double)), *xb = malloc(E * sizeof(double));
    double *q = malloc(Q * sizeof(double)), *att = malloc(Q * sizeof(double));
    double *g = malloc(F * sizeof(double)), *u = malloc(F * sizeof(double));
    double *tmp = malloc((size_t)(big > E ? big : E) * sizeof(double));
    double *sc = malloc((size_t)(pos + 1) * sizeof(double));
    memcpy(x, r->embd + (size_t)token * E, E * sizeof(double));
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        ref_layer *L = &r->L[l];
        double *kc = r->kcache + (size_t)l * r->max_pos * KV,
               *vc = r->vcache + (size_t)l * r->max_pos * KV;
        ref_rmsnorm(x, L->attn_norm, xb, E, hp->rms_eps);
        ref_matvec(L->q, xb, q, Q, E, L->qb);
        ref_matvec(L->k, xb, kc + (size_t)pos * KV, KV, E, L->kb);
        ref_matvec(L->v, xb, vc + (size_t)pos * KV, KV, E, L->vb);
        ref_heads(r, q, (int)hp->n_head, L->q_norm, pos);
        ref_heads(r, kc + (size_t)pos * KV, (int)hp->n_head_kv, L->k_norm, pos);
        for (int h = 0; h < (int)hp->n_head; h++) {
            int kvh = h / gqa;
            double max = -INFINITY, sum = 0;
            for (int p = 0; p <= pos; p++) {
                double s = 0;
                for (int d = 0; d < hd; d++)
                    s += q[h * hd + d] * kc[(size_t)p * KV + kvh * hd + d];
                sc[p] = s / sqrt((double)hd);
                max = sc[p] > max ? sc[p] : max;
            }
            for (int p = 0; p <= pos; p++)
                sum += (sc[p] = exp(sc[p] - max));
            for (int d = 0; d < hd; d++) {
                double a = 0;
                for (int p = 0; p <= pos; p++)
                    a += sc[p] / sum * vc[(size_t)p * KV + kvh * hd + d];
                att[h * hd + d] = a;
            }
        }
        ref_matvec(L->o, att, tmp, E, Q, L->ob);
        for (int i = 0; i < E; i++)
            x[i] += tmp[i];
        ref_rmsnorm(x, L->ffn_norm, xb, E, hp->rms_eps);
        if (L->router) {
            ref_moe(r, L, xb, tmp);
            for (int i = 0; i < E; i++)
                x[i] += tmp[i];
            continue;
        }
        ref_matvec(L->gate, xb, g, F, E, L->gb);
        ref_matvec(L->up, xb, u, F, E, L->ub);
        for (int i = 0; i < F; i++)
            g[i] = g[i] / (1 + exp(-g[i])) * u[i];
        ref_matvec(L->down, g, tmp, E, F, L->db);
        for (int i = 0; i < E; i++)
            x[i] += tmp[i];
    }
    ref_rmsnorm(x, r->out_norm, xb, E, hp->rms_eps);
    ref_matvec(r->out, xb, logits, (int)hp->n_vocab, E, r->out_bias);
    free(x), free(xb), free(q), free(att), free(g), free(u), free(tmp), free(sc);
}

/* Relative RMS error of a against the reference b. */
static double rel_rms(const float *a, const double *b, int n) {
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    return sqrt(num / den);
}

#endif
