/* Kernel dispatch (the set of the current SIMD level, picked from CPUID)
 * and activation preparation by activation format. The contract every
 * kernel set fulfils is in kernel_set.h; the scalar reference set is in
 * kernels_scalar*.c. Nothing here names a weight type: kernel tables are
 * indexed by ggml type id and the type table gives the activation format. */
#include "kernels.h"

#include "common/util.h"
#include "gguf/ggml_types.h"
#include "kernel_set.h"
#include "ops.h"
#include "gguf/quant.h"

#include <cpuid.h>
#include <errno.h>
#include <xmmintrin.h>
#include <float.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- CPU detection ---------------------------------------------------- */

/* clang's __builtin_cpu_supports does not know "f16c"; CPUID.1:ECX does. */
static bool cpu_has_f16c(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return false;
    return (c & bit_F16C) != 0;
}

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

static bool amx_ok;
static int amx_errno; /* arch_prctl's, when it refused */

/* CPUID.(7,0):EDX bit 24 AMX-TILE, bit 25 AMX-INT8; the kernel must then
 * grant the process the tile data (Linux 5.16+: without it the first tile
 * instruction is SIGILL; it refuses while a thread's signal stack is too
 * small for the tile state), and XCR0 bits 17 and 18 say the OS saves the
 * tile state. Here, not in the AMX kernel file: this file is compiled for
 * any x86-64. */
static void amx_probe(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 24)) || !(d & (1u << 25)))
        return;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE))
        return;
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) {
        amx_errno = errno;
        return;
    }
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    amx_ok = (lo & (3u << 17)) == (3u << 17);
}

bool nm_amx_usable(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, amx_probe);
    return amx_ok;
}

int nm_amx_refused(void) {
    nm_amx_usable();
    return amx_errno;
}

static bool cpu_level_ok(nm_simd level) {
    __builtin_cpu_init();
    switch (level) {
    case NM_SIMD_SCALAR:
        return true;
    case NM_SIMD_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
    case NM_SIMD_AVX512:
        return cpu_level_ok(NM_SIMD_AVX2) && __builtin_cpu_supports("avx512f") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512dq");
    case NM_SIMD_AMX: /* the AMX tiles sit on the VNNI K-quant kernels */
        return cpu_level_ok(NM_SIMD_AVX512) && __builtin_cpu_supports("avx512vnni") &&
               nm_amx_usable();
    }
    return false;
}

bool nm_simd_supported(nm_simd level) {
    return cpu_level_ok(level);
}

const char *nm_simd_name(nm_simd level) {
    switch (level) {
    case NM_SIMD_SCALAR:
        return "scalar";
    case NM_SIMD_AVX2:
        return "avx2";
    case NM_SIMD_AVX512:
        return "avx512";
    case NM_SIMD_AMX:
        return "amx";
    }
    return "unknown";
}

static atomic_int detected = -1;
static atomic_int current = -1;

nm_simd nm_simd_detect(void) {
    int d = atomic_load(&detected);
    if (d >= 0)
        return (nm_simd)d;
    int best = NM_SIMD_SCALAR;
    for (int l = NM_SIMD_AVX2; l <= NM_SIMD_AMX; l++)
        if (cpu_level_ok((nm_simd)l))
            best = l;
    atomic_store(&detected, best);
    return (nm_simd)best;
}

/* The kernel set of the current level, cached: attention calls nm_dot_f32
 * once per head and position, too often to look at CPUID each time. */
static const nm_kernel_set *_Atomic current_set;

int nm_simd_set(nm_simd level) {
    if (!cpu_level_ok(level))
        return -1;
    atomic_store(&current, (int)level);
    atomic_store(&current_set, nm_kernels_for(level));
    return 0;
}

nm_simd nm_simd_get(void) {
    int c = atomic_load(&current);
    if (c < 0) {
        c = (int)nm_simd_detect();
        atomic_store(&current_set, nm_kernels_for(c));
        atomic_store(&current, c);
    }
    return (nm_simd)c;
}

static const nm_kernel_set *current_kernels(void) {
    const nm_kernel_set *ks = atomic_load(&current_set);
    if (!ks) {
        nm_simd_get();
        ks = atomic_load(&current_set);
    }
    return ks;
}

const nm_kernel_set *nm_kernels_for(int level) {
    switch (level) {
    case NM_SIMD_AMX:
        return nm_kernels_avx512_amx_set();
    case NM_SIMD_AVX512:
        return nm_kernels_avx512();
    case NM_SIMD_AVX2:
        return nm_kernels_avx2();
    default:
        return nm_kernels_scalar();
    }
}

/* The kernels of weight type wtype in ks, or NULL when the set has none. */
static const nm_type_kernels *type_kernels(const nm_kernel_set *ks, uint32_t wtype, bool wide) {
    if (wtype >= NM_TYPE_COUNT)
        return NULL;
    const nm_type_kernels *tk = wide ? &ks->f16_wide : &ks->k[wtype];
    return tk->rowdot ? tk : NULL;
}

bool nm_kernels_supports(uint32_t wtype) {
    return nm_type_computes(wtype) && type_kernels(nm_kernels_scalar(), wtype, false);
}

static nm_act_format act_format(uint32_t wtype) {
    const nm_type_info *t = nm_type_get(wtype);
    return t ? t->act : NM_ACT_NONE;
}

/* ---- activation preparation ------------------------------------------ */

/* Activations are prepared by format, which the type table gives for each
 * weight type. BF16 weights take BF16 activations: vdpbf16ps then
 * multiplies pairs with no conversion, and every level computes the same
 * products (llama.cpp also rounds activations to BF16 for BF16 weights). F16
 * weights take F16 activations: half the bytes per weight loaded from L1,
 * which let the F16 decode loop stream faster (llama.cpp does the same).
 * docs/kernels.md has the measurements behind these and the Q8 choice. */
static uint64_t act_row_bytes_of(int64_t n, uint64_t esize) {
    return nm_align_up((uint64_t)n * esize, 64);
}

static bool f16_wide(nm_act_format f, int n_tok) {
    return f == NM_ACT_F16 && n_tok > 1;
}

static uint64_t act_row_bytes(nm_act_format f, int64_t n, int n_tok) {
    switch (f) {
    case NM_ACT_Q8_32:
        return n_tok > 1 ? nm_actq_batch_row_bytes(n) : nm_actq_row_bytes(n);
    case NM_ACT_Q8_K:
        return n_tok > 1 ? nm_actk_batch_row_bytes(n) : nm_actk_row_bytes(n);
    case NM_ACT_F16:
        return act_row_bytes_of(n, f16_wide(f, n_tok) ? 4 : 2);
    case NM_ACT_BF16:
        return act_row_bytes_of(n, 2);
    case NM_ACT_F32:
    case NM_ACT_NONE:
        break;
    }
    return 0;
}

/* Rows a batch's buffer holds: Q8_K and Q8 batches have rows for a whole
 * last group of 16 tokens (their lines, nm_act_lines). */
static size_t act_rows(nm_act_format f, int n_tok) {
    if ((f == NM_ACT_Q8_K || f == NM_ACT_Q8_32) && n_tok > 1)
        return ((size_t)n_tok + 15) / 16 * 16;
    return (size_t)n_tok;
}

size_t nm_act_buffer_bytes(uint32_t wtype, int64_t n, int n_tok) {
    nm_act_format f = act_format(wtype);
    return (size_t)act_row_bytes(f, n, n_tok) * act_rows(f, n_tok);
}

/* One loop over the copy's 8-byte words: gcc 12 -O2 dropped the call of a
 * three-loop version (super-block, piece, word) where it was inlined. */
void nm_actk_tile_order(void *row, int64_t n) {
    const int8_t *qs = nm_actk_qs(row);
    int8_t *t = (int8_t *)row + nm_actk_row_bytes(n);
    for (int64_t i = 0; i < n / 8; i++) {
        int64_t b = i / 32, k = i / 8 % 4, q = i % 8;
        memcpy(t + 8 * i, qs + 256 * b + 32 * q + 8 * k, 8);
    }
    const int16_t *bsums = nm_actk_bsums(row, n);
    int16_t *s32 = (int16_t *)(t + n);
    for (int64_t j = 0; j < n / 32; j++) /* |sum| <= 32 * 127 */
        s32[j] = (int16_t)(bsums[2 * j] + bsums[2 * j + 1]);
}

/* Line l at off of a group (rows ra apart) from the 4 bytes at src of each
 * of its nt tokens' rows, token c at byte 4c: the whole 64-byte line from
 * one writer. The columns of the tokens a partial group lacks are zeroed: a
 * tile reads every column of a line, so no byte it reads is left as the
 * buffer held it (the results of those columns are discarded, but
 * uninitialised bytes are what valgrind and MSan report). */
static void line_of_rows(char *group, size_t ra, int nt, uint64_t off, int64_t l, size_t src) {
    char *line = (char *)nm_act_line(group, ra, off, l);
    for (int c = 0; c < nt; c++)
        memcpy(line + 4 * c, group + (size_t)c * ra + src, 4);
    if (nt < 16)
        memset(line + 4 * nt, 0, 4 * (size_t)(16 - nt));
}

/* Per group of 16 tokens and super-block: 64 qs lines (16 rows x 4 pieces
 * of 64 bytes) in the lines' order, a d line and 4 sums lines. */
void nm_actk_lines(void *rows, int n_tok, int64_t n, int64_t b0, int64_t b1) {
    const size_t ra = (size_t)nm_actk_batch_row_bytes(n);
    const uint64_t vo = nm_actk_vnni_off(n), d_o = nm_actk_dline_off(n), so = nm_actk_sline_off(n);
    const size_t sums = (size_t)nm_actk_row_bytes(n) + (size_t)n; /* nm_actk_tiled_sums32 */
    for (int g = 0; 16 * g < n_tok; g++) {
        char *group = (char *)rows + (size_t)g * 16 * ra;
        const int nt = n_tok - 16 * g < 16 ? n_tok - 16 * g : 16;
        for (int64_t b = b0; b < b1; b++) {
            for (int j = 0; j < 64; j++)
                line_of_rows(group, ra, nt, vo, 64 * b + j,
                             (size_t)(256 * b + 32 * NM_ACTK_LINE_SUB(j / 8) + 4 * (j % 8)));
            line_of_rows(group, ra, nt, d_o, b, (size_t)n + 4 * (size_t)b); /* nm_actk_d */
            for (int i = 0; i < 4; i++)
                line_of_rows(group, ra, nt, so, 4 * b + i, sums + 2 * (size_t)(8 * b + 2 * i));
        }
    }
}

/* Per group of 16 tokens and block of 32: 8 qs lines and a d line. */
void nm_actq_lines(void *rows, int n_tok, int64_t n, int64_t b0, int64_t b1) {
    const size_t ra = (size_t)nm_actq_batch_row_bytes(n);
    const uint64_t vo = nm_actq_vnni_off(n), d_o = nm_actq_dline_off(n);
    for (int g = 0; 16 * g < n_tok; g++) {
        char *group = (char *)rows + (size_t)g * 16 * ra;
        const int nt = n_tok - 16 * g < 16 ? n_tok - 16 * g : 16;
        for (int64_t b = b0; b < b1; b++) {
            for (int j = 0; j < 8; j++)
                line_of_rows(group, ra, nt, vo, 8 * b + j, (size_t)(32 * b + 4 * j));
            line_of_rows(group, ra, nt, d_o, b, (size_t)n + 4 * (size_t)b); /* nm_actq_d */
        }
    }
}

/* One token's prepared row; several (many, for matmat tiles) when n_tok > 1. */
static void prepare_row(nm_act_format f, int n_tok, const float *x, int64_t n, void *row) {
    bool wide = f16_wide(f, n_tok);
    switch (f) {
    case NM_ACT_F16:
        if (wide)
            current_kernels()->round_f16(x, n, NULL, row);
        else
            current_kernels()->round_f16(x, n, row, NULL);
        break;
    case NM_ACT_BF16:
        nm_quantize_bf16(x, row, n);
        break;
    case NM_ACT_Q8_32:
        current_kernels()->act_quantize_q8(x, n, row);
        break;
    case NM_ACT_Q8_K:
        current_kernels()->act_quantize_q8k(x, n, row);
        if (n_tok > 1)
            nm_actk_tile_order(row, n);
        break;
    case NM_ACT_F32:
    case NM_ACT_NONE:
        break;
    }
}

bool nm_act_same_format(uint32_t a, uint32_t b) {
    return act_format(a) == act_format(b);
}

void nm_act_prepare(uint32_t wtype, const float *x, int64_t n, int n_tok, void *buf, nm_act *act) {
    nm_act_prepare_rows(wtype, x, n, n_tok, 0, n_tok, buf, act);
    nm_act_lines(act, 0, 1);
}

bool nm_act_has_lines(const nm_act *act) {
    nm_act_format f = act_format(act->wtype);
    return act->q && act->n_tok > 1 && (f == NM_ACT_Q8_K || f == NM_ACT_Q8_32);
}

void nm_act_lines(const nm_act *act, int part, int parts) {
    if (!nm_act_has_lines(act))
        return;
    const bool k = act_format(act->wtype) == NM_ACT_Q8_K;
    const int64_t nb = act->n / (k ? 256 : 32); /* super-blocks, blocks */
    (k ? nm_actk_lines : nm_actq_lines)((void *)act->q, act->n_tok, act->n, nb * part / parts,
                                        nb * (part + 1) / parts);
}

void nm_act_prepare_rows(uint32_t wtype, const float *x, int64_t n, int n_tok, int t0, int t1,
                         void *buf, nm_act *act) {
    nm_act_format f = act_format(wtype);
    act->wtype = wtype;
    act->n = n;
    act->n_tok = n_tok;
    act->f32 = x;
    act->q = NULL;
    act->q_row_bytes = 0;
    act->wide = f16_wide(f, n_tok);
    size_t rb = (size_t)act_row_bytes(f, n, n_tok);
    if (rb == 0)
        return;
    for (int t = t0; t < t1; t++)
        prepare_row(f, n_tok, x + (size_t)t * (size_t)n, n, (char *)buf + t * rb);
    act->q = buf;
    act->q_row_bytes = rb;
}

/* ---- drivers ----------------------------------------------------------- */

static uint64_t row_bytes_of(uint32_t wtype, int64_t n) {
    uint64_t b = 0;
    if (nm_type_row_bytes(wtype, (uint64_t)n, &b) != 0)
        return 0;
    return b;
}

static const void *act_row(const nm_act *x, int t) {
    if (x->q)
        return (const char *)x->q + (size_t)t * x->q_row_bytes;
    return x->f32 + (size_t)t * (size_t)x->n;
}

static void fill_nan(float *y, int64_t n_rows, int n_tok, int64_t ldy) {
    for (int t = 0; t < n_tok; t++)
        for (int64_t i = 0; i < n_rows; i++)
            y[t * ldy + i] = NAN;
}

/* The four rows of a rows4 call are s = n_rows / 4 rows apart: the calls
 * j = 0 .. s - 1 take rows j, j + s, j + 2s, j + 3s, so each of the four
 * streams a call reads runs over a quarter of the rows, contiguous memory,
 * as the read probe's four streams do (nm_read_sum). Four adjacent short
 * rows (a Q2_K row of 5632 values is 1848 bytes) were four streams side by
 * side in a few KiB, which the hardware prefetcher followed badly: Q2_K
 * decode read at 0.75 of a one-stream read from DRAM, at 1.0 with the rows
 * about 16 KiB apart, and at 0.85 of the four-stream read with quarters
 * (16 KiB apart: 0.78; docs/kernels.md). A row's result does not depend on the
 * call that computes it. */
void nm_matvec_set(const nm_kernel_set *ks, const void *w, int64_t n_rows, const nm_act *x,
                   float *y) {
    const nm_type_kernels *tk = type_kernels(ks, x->wtype, x->wide);
    if (!tk) {
        fill_nan(y, n_rows, 1, n_rows);
        return;
    }
    nm_rowdot_fn dot = tk->rowdot;
    nm_rows4_fn rows4 = tk->rows4;
    uint64_t rb = row_bytes_of(x->wtype, x->n);
    const void *a = act_row(x, 0);
    int64_t i = 0;
    if (rows4) { /* F32-sized activations: share each load among four rows */
        const int64_t s = n_rows / 4;
        for (int64_t j = 0; j < s; j++) {
            float o[4];
            rows4((const char *)w + j * rb, s * rb, a, x->n, o);
            for (int k = 0; k < 4; k++)
                y[j + k * s] = o[k];
        }
        i = 4 * s; /* the last n_rows % 4 rows one at a time */
    }
    for (; i < n_rows; i++)
        dot((const char *)w + i * rb, &a, 1, x->n, &y[i]);
}

/* Rows are taken in blocks that stay in L2 while every token group passes
 * over them, so a weight is read from memory once per call, and each token
 * group's activations stay in L1/L2 across the block. */
#define MATMAT_BLOCK_BYTES (192 * 1024)

/* y[t * ldy + r] = out[r * nt + t]: a tile's results into the tokens' rows */
static void scatter_tile(const float *out, int tr, int nt, float *y, int64_t ldy) {
    int t0 = 0;
    if (tr % 4 == 0) /* 4 x 4 blocks: a 16-byte store per token and 4 rows */
        for (; t0 + 4 <= nt; t0 += 4)
            for (int r = 0; r < tr; r += 4) {
                __m128 a = _mm_loadu_ps(out + r * nt + t0),
                       b = _mm_loadu_ps(out + (r + 1) * nt + t0);
                __m128 c = _mm_loadu_ps(out + (r + 2) * nt + t0),
                       d = _mm_loadu_ps(out + (r + 3) * nt + t0);
                _MM_TRANSPOSE4_PS(a, b, c, d);
                _mm_storeu_ps(y + t0 * ldy + r, a);
                _mm_storeu_ps(y + (t0 + 1) * ldy + r, b);
                _mm_storeu_ps(y + (t0 + 2) * ldy + r, c);
                _mm_storeu_ps(y + (t0 + 3) * ldy + r, d);
            }
    for (int r = 0; r < tr; r++)
        for (int t = t0; t < nt; t++)
            y[t * ldy + r] = out[r * nt + t];
}

/* Rows [r0, r1) x tokens [t0, t0 + nt): tiles of tile_rows rows where the
 * set has them (each loaded weight vector serves nt tokens and each loaded
 * activation vector tile_rows rows), one row at a time for the rest. */
static void matmat_rows(const nm_type_kernels *tk, int tok_group, const void *w, uint64_t rb,
                        int64_t r0, int64_t r1, const nm_act *x, int t0, int nt, float *y,
                        int64_t ldy) {
    const void *acts[NM_K_MAX_TILE_TOK];
    float out[NM_K_MAX_TOK], tiles[2][NM_K_MAX_TILE_ROWS * NM_K_MAX_TILE_TOK];
    for (int t = 0; t < nt; t++)
        acts[t] = act_row(x, t0 + t);
    int64_t i = r0;
    nm_tile_fn tile = tk->tile;
    int tr = tk->tile_rows;
    if (tile) {
        /* A tile's results go out to y one tile later, when the tile's
         * vector stores are done: the copy right after them was 3.4 % of
         * the Q4_K tiles' time in bench_batch -N 8 (Q4_K_M), one tile later
         * 2.1 %. */
        int64_t prev = -1;
        int k = 0; /* the tile being computed goes to tiles[k], the last one is in tiles[k ^ 1] */
        for (; i + tr <= r1; i += tr, k ^= 1) {
            tile((const char *)w + i * rb, rb, acts, nt, x->n, tiles[k]);
            if (prev >= 0)
                scatter_tile(tiles[k ^ 1], tr, nt, y + t0 * ldy + prev, ldy);
            prev = i;
        }
        if (prev >= 0)
            scatter_tile(tiles[k ^ 1], tr, nt, y + t0 * ldy + prev, ldy);
    }
    for (; i < r1; i++)
        for (int g = 0; g < nt; g += tok_group) { /* a tile's tokens may be more */
            int ng = nt - g < tok_group ? nt - g : tok_group;
            tk->rowdot((const char *)w + i * rb, acts + g, ng, x->n, out);
            for (int t = 0; t < ng; t++)
                y[(t0 + g + t) * ldy + i] = out[t];
        }
}

void nm_matmat_set(const nm_kernel_set *ks, const void *w, int64_t n_rows, const nm_act *x,
                   float *y, int64_t ldy) {
    const nm_type_kernels *tk = type_kernels(ks, x->wtype, x->wide);
    if (!tk) {
        fill_nan(y, n_rows, x->n_tok, ldy);
        return;
    }
    uint64_t rb = row_bytes_of(x->wtype, x->n);
    int64_t block = rb ? (int64_t)(MATMAT_BLOCK_BYTES / rb) : 1;
    int group = ks->tok_group;
    if (tk->tile) {
        /* whole tiles per block: a leftover row runs at the one-row speed */
        group = tk->tile_tok;
        block -= block % tk->tile_rows;
        if (block < tk->tile_rows)
            block = tk->tile_rows;
    }
    if (block < 1)
        block = 1;
    for (int64_t r0 = 0; r0 < n_rows; r0 += block) {
        int64_t r1 = r0 + block < n_rows ? r0 + block : n_rows;
        for (int t0 = 0; t0 < x->n_tok; t0 += group) {
            int nt = x->n_tok - t0 < group ? x->n_tok - t0 : group;
            matmat_rows(tk, ks->tok_group, w, rb, r0, r1, x, t0, nt, y, ldy);
        }
    }
    if (ks->matmat_end)
        ks->matmat_end();
}

void nm_matvec_at(nm_simd level, const void *w, int64_t n_rows, const nm_act *x, float *y) {
    nm_matvec_set(nm_kernels_for(level), w, n_rows, x, y);
}

void nm_matmat_at(nm_simd level, const void *w, int64_t n_rows, const nm_act *x, float *y,
                  int64_t ldy) {
    nm_matmat_set(nm_kernels_for(level), w, n_rows, x, y, ldy);
}

void nm_matvec(const void *w, int64_t n_rows, const nm_act *x, float *y) {
    nm_matvec_set(current_kernels(), w, n_rows, x, y);
}

void nm_matmat(const void *w, int64_t n_rows, const nm_act *x, float *y, int64_t ldy) {
    nm_matmat_set(current_kernels(), w, n_rows, x, y, ldy);
}

uint64_t nm_read_sum(const void *p, size_t bytes) {
    return current_kernels()->sum_words(p, bytes);
}

float nm_dot_f32(const float *a, const float *b, int64_t n) {
    return current_kernels()->dot_f32(a, b, n);
}
float nm_dot_f16_f32(const uint16_t *a, const float *b, int64_t n) {
    return current_kernels()->dot_f16_f32(a, b, n);
}
void nm_axpy_f32(float *y, float a, const float *x, int64_t n) {
    current_kernels()->axpy_f32(y, a, x, n);
}
void nm_axpy_f16(float *y, float a, const uint16_t *x, int64_t n) {
    current_kernels()->axpy_f16(y, a, x, n);
}
void nm_round_f16(float *x, int64_t n) {
    current_kernels()->round_f16(x, n, NULL, x);
}
void nm_swiglu(float *h, const float *g, const float *u, int64_t n) {
    current_kernels()->swiglu(h, g, u, n);
}
