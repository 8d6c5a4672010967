/* Compute kernels for weights of type F32, F16, BF16, Q8_0 and Q4_0.
 * Each has a scalar reference and AVX2 / AVX-512 versions, picked at run time
 * from CPUID (never -march=native: the NUMA VM has no AVX-512).
 *
 * Activations are prepared once per input vector for a weight type
 * (nm_act_prepare): e.g. quantized to Q8_0 blocks for Q8_0/Q4_0 weights when
 * that kernel works on integer dot products. */
#ifndef NM_KERNELS_H
#define NM_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum nm_simd {
    NM_SIMD_SCALAR = 0,
    NM_SIMD_AVX2 = 1,
    NM_SIMD_AVX512 = 2,
    NM_SIMD_AMX = 3, /* AVX-512 with AMX int8 tiles for the K-quants' matmat */
} nm_simd;

/* Best level this CPU supports (cached). A session caps the level in use
 * with its simd_max option (nm_simd_set), so one binary can be measured at
 * each level and a suspected SIMD bug ruled out without a rebuild. */
nm_simd nm_simd_detect(void);
bool nm_simd_supported(nm_simd level);
/* 0, or the errno with which Linux refused this process the AMX tile data
 * on a CPU that has the tiles (level amx is then unsupported, and the
 * K-quant matmat runs the AVX-512 VNNI tiles): for the session's log. */
int nm_amx_refused(void);
/* Level used by nm_matvec/nm_matmat; defaults to nm_simd_detect(). Returns -1
 * if the CPU lacks it. Not thread-safe: call before starting workers. */
int nm_simd_set(nm_simd level);
nm_simd nm_simd_get(void);
const char *nm_simd_name(nm_simd level);

/* A batch of n_tok activation vectors of n elements each, as a weight type's
 * kernel wants them. */
typedef struct nm_act {
    uint32_t wtype; /* weight type it was prepared for */
    int64_t n;      /* elements per vector */
    int n_tok;
    const float *f32; /* n_tok x n, row-major */
    const void *q;    /* prepared form (n_tok x q_row_bytes) or NULL */
    size_t q_row_bytes;
    bool wide; /* F16: the F16-rounded values stored as F32 (prompts) */
} nm_act;

/* True for the weight types with kernels (F32, F16, BF16, Q8_0, Q4_0).
 * nm_matvec/nm_matmat fill y with NaN for any other type. */
bool nm_kernels_supports(uint32_t wtype);

/* Bytes of the prepared buffer for n_tok vectors of n elements (0 if the
 * type's kernel uses F32 directly). */
size_t nm_act_buffer_bytes(uint32_t wtype, int64_t n, int n_tok);
/* Fills *act; buf must hold nm_act_buffer_bytes() and be 4-byte aligned (64
 * is best). x stays referenced. Q8_0 and Q4_0 weights get activations
 * quantized to 8 bits per block of 32 (integer dot products), BF16 weights
 * get them rounded to BF16 (AVX512_BF16 dot products), F16 weights rounded
 * to F16 (half the L1 traffic in decode; for several tokens the rounded
 * values are stored widened to F32, which saves the prompt tiles a widening
 * per load and gives the same products), F32 weights use x as is. See
 * docs/kernels.md for why. */
void nm_act_prepare(uint32_t wtype, const float *x, int64_t n, int n_tok, void *buf, nm_act *act);
/* nm_act_prepare's *act with only the rows of tokens [t0, t1) written into
 * buf (workers that share a buffer each take some tokens), and without the
 * lines below. */
void nm_act_prepare_rows(uint32_t wtype, const float *x, int64_t n, int n_tok, int t0, int t1,
                         void *buf, nm_act *act);
/* True when a batch's prepared rows are followed by token-interleaved lines
 * (the AMX tiles' input, kernel_set.h), written once every row is prepared:
 * nm_act_lines writes part `part` of `parts`, disjoint memory for each part
 * (when several workers each wrote their tokens' columns of the same lines,
 * the cache lines moving between cores cost 3.5 % of a serve --parallel 8
 * decode step). nm_act_prepare writes them all. */
bool nm_act_has_lines(const nm_act *act);
void nm_act_lines(const nm_act *act, int part, int parts);
/* True when weights of types a and b take the same prepared activations. */
bool nm_act_same_format(uint32_t a, uint32_t b);

/* y[i] = dot(row i of w, x) for i in [0, n_rows); rows are contiguous, each
 * n_cols elements of act->wtype. Uses the current SIMD level. */
void nm_matvec(const void *w, int64_t n_rows, const nm_act *x, float *y);

/* y[t * ldy + i] = dot(row i of w, x_t), t in [0, n_tok), i in [0, n_rows).
 * Prompt processing: each weight row is read once per group of tokens. */
void nm_matmat(const void *w, int64_t n_rows, const nm_act *x, float *y, int64_t ldy);

/* Same, at an explicit level (tests compare each level with scalar). */
void nm_matvec_at(nm_simd level, const void *w, int64_t n_rows, const nm_act *x, float *y);
void nm_matmat_at(nm_simd level, const void *w, int64_t n_rows, const nm_act *x, float *y,
                  int64_t ldy);

/* nm_sum_words (common/util.h) with this CPU's vector loads: what the
 * read bandwidth probes run. */
uint64_t nm_read_sum(const void *p, size_t bytes);

/* Vector helpers for attention and norms (current SIMD level). */
float nm_dot_f32(const float *a, const float *b, int64_t n);
float nm_dot_f16_f32(const uint16_t *a, const float *b, int64_t n);
void nm_axpy_f32(float *y, float a, const float *x, int64_t n);    /* y += a*x */
void nm_axpy_f16(float *y, float a, const uint16_t *x, int64_t n); /* y += a*x */
void nm_round_f16(float *x, int64_t n); /* x rounded to F16 values, in place */

#endif
