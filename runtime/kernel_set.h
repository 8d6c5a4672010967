/* The kernel contract: the table of functions every kernel set fills
 * (kernels_scalar*.c, the reference; kernels_avx2*.c, kernels_avx512*.c),
 * indexed by ggml type id, and the prepared activation formats they read.
 * kernels.c picks a set and dispatches to it; it knows no weight type: the
 * type table (gguf/ggml_types.c) says which activation format a type's
 * kernels take. ISA files depend on this header and the scalar set only.
 * Not part of the public API: tests and benchmarks include it to reach each
 * sub-path (e.g. AVX-512 with and without VNNI) on one machine. */
#ifndef NM_KERNEL_SET_H
#define NM_KERNEL_SET_H

#include "gguf/ggml_types.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nm_act;

/* Weight kernels prefetch into L2 this many bytes ahead of the weight byte
 * they read. Hardware prefetch alone left the F16 decode loop at 0.62-0.73 of
 * the read bandwidth here; 32 KiB ahead gave 0.78-0.89 (2, 4, 8, 16 and
 * 64 KiB did less; into L1 did nothing). Prefetches never fault, so running
 * past the end of the weights is harmless. */
#define NM_PREFETCH_BYTES 32768

/* Decode's four-row kernels (rows4) read four streams a quarter of the
 * matrix apart (nm_matvec_set) and prefetch this far ahead in each. With 32
 * KiB in each stream (128 KiB ahead per thread) matvec/read was 0.79-0.87;
 * 4-8 KiB gave 0.80-0.89, 1-3 KiB 0.90-0.96 for every type, 512 bytes less
 * again (2 threads, DRAM copies, docs/kernels.md). */
#define NM_PREFETCH_ROWS4_BYTES 2048

/* How far ahead a kernel of R rows prefetches: four rows are rows4 (the
 * row tiles have fewer rows: each kernel file asserts it). */
#define NM_PREFETCH_AHEAD(R) ((R) == 4 ? NM_PREFETCH_ROWS4_BYTES : NM_PREFETCH_BYTES)

/* Most tokens a row kernel handles in one call (matmat token group). */
#define NM_K_MAX_TOK 8

/* Largest tile a set may have: rows x tokens (the AMX tiles' 16 x 16; the
 * vector tiles have at most 4 rows and NM_K_MAX_TOK tokens). */
#define NM_K_MAX_TILE_ROWS 16
#define NM_K_MAX_TILE_TOK 16

/* out[t] = dot(row, acts[t]) for t < nt (1 <= nt <= the set's tok_group).
 * acts[t] is a row of the type's activation format (nm_act_format): a float
 * vector for F32, an F16 or BF16 vector, a prepared Q8 row (layouts below).
 * n is the number of elements. */
typedef void (*nm_rowdot_fn)(const void *row, const void *const *acts, int nt, int64_t n,
                             float *out);

/* out[r] = dot(row r, act) for the 4 rows at w, w + row_bytes, ... It must
 * give the same bits as rowdot on each row: only the memory traffic differs
 * (one activation load serves four rows). */
typedef void (*nm_rows4_fn)(const void *w, size_t row_bytes, const void *act, int64_t n,
                            float *out);

/* out[r * nt + t] = dot(row r, acts[t]) for the set's tile_rows rows at w,
 * w + row_bytes, ... and t < nt (1 <= nt <= the set's tile_tok): a block of
 * prompt matmat in which each loaded weight vector serves nt tokens and each
 * loaded activation vector serves tile_rows rows. Same bits as rowdot.
 * acts[0] is the row of token t0 of a batch prepared for several tokens, t0
 * a multiple of tile_tok, and acts[t] its token t0 + t (nm_matmat_set calls
 * them so): the AMX tiles read the batch's token-interleaved copy
 * (nm_actk_lines) from there. */
typedef void (*nm_tile_fn)(const void *w, size_t row_bytes, const void *const *acts, int nt,
                           int64_t n, float *out);

/* One weight type's kernels in a set. */
typedef struct nm_type_kernels {
    nm_rowdot_fn rowdot; /* NULL: the set cannot compute with the type */
    nm_rows4_fn rows4;   /* matvec on 4 rows, or NULL */
    nm_tile_fn tile;     /* matmat tile, or NULL: rowdot per row */
    /* the tile's shape: rows x tokens (at most NM_K_MAX_TILE_ROWS x
     * NM_K_MAX_TILE_TOK; leftover rows run rowdot, tok_group tokens a call) */
    int tile_rows, tile_tok;
    /* in the scalar set: every set gives these kernels' results bit for bit
     * (the K-quants); else only as exactly (test_kernels checks both) */
    bool exact;
} nm_type_kernels;

#define NM_TYPE_KERNELS(ROWDOT, ROWS4, TILE, TILE_ROWS, TILE_TOK)                                  \
    ((nm_type_kernels){.rowdot = ROWDOT,                                                           \
                       .rows4 = ROWS4,                                                             \
                       .tile = TILE,                                                               \
                       .tile_rows = TILE_ROWS,                                                     \
                       .tile_tok = TILE_TOK})

typedef struct nm_kernel_set {
    const char *name;
    int tok_group;                    /* tokens per pass over a weight row in matmat */
    nm_type_kernels k[NM_TYPE_COUNT]; /* by ggml type id */
    /* F16 weights with several tokens: the F16-rounded activations stored
     * widened to F32 (nm_act.wide), which saves the prompt tiles a widening
     * per load */
    nm_type_kernels f16_wide;
    float (*dot_f32)(const float *a, const float *b, int64_t n);
    float (*dot_f16_f32)(const uint16_t *a, const float *b, int64_t n);
    void (*axpy_f32)(float *y, float a, const float *x, int64_t n);
    void (*axpy_f16)(float *y, float a, const uint16_t *x, int64_t n);
    /* x rounded to F16 (round to nearest even, as nm_f32_to_fp16): as F16
     * into h, or (h NULL) widened back to F32 into w. F16 activations are
     * prepared with it for every matrix input, so F16C does it. */
    void (*round_f16)(const float *x, int64_t n, uint16_t *h, float *w);
    /* h = SwiGLU(g, u), element by element: nm_dm_swiglu's bits
     * (runtime/device_math.h), its exp in vector steps */
    void (*swiglu)(float *h, const float *g, const float *u, int64_t n);
    /* nm_sum_words (common/util.h) with vector loads, for the read
     * bandwidth probes, which must be limited by memory and not by the
     * loop. Same value as nm_sum_words. The AVX2 loop on AVX2 and AVX-512
     * machines: alternating pass by pass in one process (2 threads, 512
     * MiB each, 3 runs of 12 passes), the best passes read 34.9-36.0 GB/s
     * with 16-byte loads, 35.0-35.9 with AVX2, 34.2-35.3 with AVX-512. */
    uint64_t (*sum_words)(const void *p, size_t bytes);
    /* nm_act_quantize_q8k with vector code: the same bits (prompts prepare
     * every matrix input of every token with it) */
    void (*act_quantize_q8k)(const float *x, int64_t n, void *row);
    /* nm_act_quantize_q8 (Q8_0 / Q4_0 activations) likewise: the same bits */
    void (*act_quantize_q8)(const float *x, int64_t n, void *row);
    /* NULL, or what a thread calls as it leaves nm_matmat_set: the AMX sets
     * hand the tile state back (tilerelease), so a thread that is not in a
     * matmat has none for the kernel to save at each context switch */
    void (*matmat_end)(void);
} nm_kernel_set;

/* AVX-512 sub-paths, picked from CPUID unless a test asks for one. */
enum {
    NM_AVX512_VNNI = 1, /* vpdpbusd for the Q8_0 / Q4_0 integer dots */
    NM_AVX512_BF16 = 2, /* vdpbf16ps for BF16 weights */
    NM_AVX512_GFNI = 4, /* with VNNI: vgf2p8affineqb unpacks 2- and 4-bit codes */
    NM_AVX512_AMX = 8,  /* with VNNI: AMX int8 tiles for the K-quants' and Q8_0's matmat */
};

/* True when this CPU has AMX-TILE and AMX-INT8 and the kernel lets the
 * process use the tile data (the permission is requested on the first
 * call, once per process: kernels.c). */
bool nm_amx_usable(void);

/* Each set starts as a copy of the scalar one, so a type that an ISA file
 * does not accelerate runs the scalar kernel, then the kernel families fill
 * their types' entries: one function per family and set, called once when
 * the set is built (kernels_scalar.c says how to add a type). */
void nm_kernels_scalar_kquant(nm_kernel_set *ks);
void nm_kernels_scalar_legacy(nm_kernel_set *ks);
void nm_kernels_avx2_kquant(nm_kernel_set *ks);
void nm_kernels_avx2_legacy(nm_kernel_set *ks);
/* features: the NM_AVX512_* sub-paths the set may use */
void nm_kernels_avx512_kquant(nm_kernel_set *ks, int features);
void nm_kernels_avx512_legacy(nm_kernel_set *ks, int features);
void nm_kernels_avx512_q8_0(nm_kernel_set *ks, int features);
/* the AMX tiles over a VNNI set's K-quant kernels (kernels_avx512_amx.c) */
void nm_kernels_avx512_amx(nm_kernel_set *ks, int features);
/* the amx set's Q8_0 kernels, AMX tiles and vector kernels of one
 * definition (kernels_avx512_q8_0_amx.c) */
void nm_kernels_avx512_q8_0_amx(nm_kernel_set *ks);

const nm_kernel_set *nm_kernels_scalar(void);
uint64_t nm_sum_words_avx2(const void *p, size_t bytes); /* kernels_avx2.c */
void nm_swiglu_avx2(float *h, const float *g, const float *u, int64_t n);
/* kernels_avx2.c (one block quantizer for both); the AVX-512 sets use them
 * too */
void nm_act_quantize_q8k_avx2(const float *x, int64_t n, void *row);
void nm_act_quantize_q8_avx2(const float *x, int64_t n, void *row);
const nm_kernel_set *nm_kernels_avx2(void);
const nm_kernel_set *nm_kernels_avx512(void);         /* best sub-path for this CPU, no AMX */
const nm_kernel_set *nm_kernels_avx512_amx_set(void); /* the same with the AMX tiles */
const nm_kernel_set *nm_kernels_avx512_variant(int features);
/* Alternatives that bench_kernels measures against the chosen kernels: the
 * Q8_0 and BF16 kernels take F32 activations (acts[t] = float vectors)
 * instead of the prepared Q8 / BF16 ones. The others are the plain AVX-512
 * kernels. */
const nm_kernel_set *nm_kernels_avx512_alt(void);
/* The set nm_matvec_at(level) uses. */
const nm_kernel_set *nm_kernels_for(int level);

/* nm_matvec / nm_matmat with an explicit kernel set. */
void nm_matvec_set(const nm_kernel_set *ks, const void *w, int64_t n_rows, const struct nm_act *x,
                   float *y);
void nm_matmat_set(const nm_kernel_set *ks, const void *w, int64_t n_rows, const struct nm_act *x,
                   float *y, int64_t ldy);

/* Prepared Q8 activation row for n elements (n a multiple of 32), nb = n/32:
 *   int8_t qs[n];   x[j] ~= qs[j] * d[j / 32]
 *   float  d[nb];   block scale (kept in F32: finer than llama.cpp's F16)
 *   float  m[nb];   8 * d * sum(qs of the block): the Q4_0 kernels multiply
 *                   the unsigned nibbles q in 0..15 and subtract this for the
 *                   -8 offset, so they need no sign fix-up per byte.
 *   int32  s[nb];   sum(qs of the block), exact: the VNNI kernels of Q5_0
 *                   and IQ4_NL multiply unsigned codes (q, values[q] + 128)
 *                   and take 16 s or 128 s off each block's integer sum,
 *                   eight blocks with two instructions instead of a second
 *                   vpdpbusd and a subtraction per 64 bytes.
 * Rows are padded to 64 bytes. Splitting qs from the scales lets SIMD code
 * load 64 activation bytes and several scales with one instruction each. */
void nm_act_quantize_q8(const float *x, int64_t n, void *row);

static inline const int8_t *nm_actq_qs(const void *row) {
    return (const int8_t *)row;
}
static inline const float *nm_actq_d(const void *row, int64_t n) {
    return (const float *)((const char *)row + n);
}
static inline const float *nm_actq_m(const void *row, int64_t n) {
    return (const float *)((const char *)row + n) + n / 32;
}
static inline const int32_t *nm_actq_s(const void *row, int64_t n) {
    return (const int32_t *)((const char *)row + n) + n / 32 * 2;
}
static inline uint64_t nm_actq_row_bytes(int64_t n) {
    uint64_t b = (uint64_t)n + (uint64_t)(n / 32) * 12;
    return (b + 63) / 64 * 64;
}

/* Q8 batches (nm_act_prepare with n_tok > 1) also hold their qs and block
 * scales interleaved by groups of 16 tokens, for the AMX Q8_0 tile
 * (kernels_avx512_q8_0_amx.c). Within a group's 16 rows, after each row's
 * Q8 row: the qs lines, word w (qs 4w .. 4w + 3) of token 16g + c at byte 4c
 * of line w, line w in group row w % 16 at nm_actq_vnni_off(n) + 64 (w / 16)
 * (the layout of Q8_K's lines, below, in the values' order), so block b's
 * 8 lines are one tile load with the batch row stride; then the scale
 * lines, d[b] of token 16g + c at byte 4c of line b, in group row b % 16 at
 * nm_actq_dline_off(n) + 64 (b / 16). The buffer has rows for a whole last
 * group, as for Q8_K batches. */
static inline uint64_t nm_actq_vnni_off(int64_t n) {
    return nm_actq_row_bytes(n);
}
static inline uint64_t nm_actq_dline_off(int64_t n) {
    return nm_actq_vnni_off(n) + ((uint64_t)n + 63) / 64 * 64;
}
static inline uint64_t nm_actq_batch_row_bytes(int64_t n) {
    return nm_actq_dline_off(n) + ((uint64_t)(n / 32) + 15) / 16 * 64;
}
/* Line l of the kind at off (nm_actq_*_off, nm_actk_*_off) of the group
 * whose first row is at group, rows ra apart: row l % 16, 64-byte column
 * l / 16. */
static inline const char *nm_act_line(const void *group, size_t ra, uint64_t off, int64_t l) {
    return (const char *)group + (size_t)(l % 16) * ra + off + (size_t)(l / 16) * 64;
}
/* The lines of blocks [b0, b1) of every group of a batch of n_tok prepared
 * rows; rows: the batch's first row. Workers that take disjoint blocks
 * write disjoint cache lines (nm_act_lines). */
void nm_actq_lines(void *rows, int n_tok, int64_t n, int64_t b0, int64_t b1);

/* Prepared Q8_K activation row for n elements (n a multiple of 256), the
 * format of the K-quant kernels (kernels_scalar_kquant.c), nb = n/256:
 *   int8_t  qs[n];       x[j] ~= qs[j] * d[j / 256]
 *   float   d[nb];       super-block scale amax/127
 *   int16_t bsums[n/16]; sum of the qs of each 16 values: the kernels take
 *                        the weights' minima and offsets off per sub-block
 *                        with them, so their dot products stay integer.
 * Rows are padded to 64 bytes; qs first, as in the Q8 row above. */
void nm_act_quantize_q8k(const float *x, int64_t n, void *row);

static inline const int8_t *nm_actk_qs(const void *row) {
    return (const int8_t *)row;
}
static inline const float *nm_actk_d(const void *row, int64_t n) {
    return (const float *)((const char *)row + n);
}
static inline const int16_t *nm_actk_bsums(const void *row, int64_t n) {
    return (const int16_t *)((const char *)row + n + n / 256 * 4);
}
static inline uint64_t nm_actk_row_bytes(int64_t n) {
    uint64_t b = (uint64_t)n + (uint64_t)(n / 256) * 4 + (uint64_t)(n / 16) * 2;
    return (b + 63) / 64 * 64;
}

/* Rows prepared for several tokens (nm_act_prepare with n_tok > 1, the
 * matmat tiles' input) are followed by their qs in the tiles' order: per
 * super-block four pieces of 64 bytes, piece k holding in its 8-byte word q
 * the values 32q + 8k .. 32q + 8k + 7 (of sub-block q). A vpdpbusd chain over
 * the four pieces then sums 16 products of one sub-block in every int32
 * lane, which the Q4_K tile packs to int16 before it applies the scales.
 * Then, per super-block, the 8 sums of 32 qs (int16, bsums added in pairs:
 * Q4_K's minima are per 32 values). Padded to 64 bytes.
 * nm_actk_tile_order writes both from the row's qs and bsums. */
static inline uint64_t nm_actk_tiled_row_bytes(int64_t n) {
    return nm_actk_row_bytes(n) + ((uint64_t)n + (uint64_t)(n / 16) + 63) / 64 * 64;
}
static inline const int8_t *nm_actk_tiled_qs(const void *row, int64_t n) {
    return (const int8_t *)row + nm_actk_row_bytes(n);
}
static inline const int16_t *nm_actk_tiled_sums32(const void *row, int64_t n) {
    return (const int16_t *)(nm_actk_tiled_qs(row, n) + n);
}
void nm_actk_tile_order(void *row, int64_t n);

/* Batches prepared for several tokens also hold their qs interleaved by
 * groups of 16 tokens, as AMX's second operand wants them: 4-byte word w of
 * every token of a group side by side in one 64-byte line, token 16g + c at
 * byte 4c of group g's line w. Each super-block's 64 words are in the
 * order of a Q4_K row's nibbles: by 32 values, position p holds the values
 * of sub-block NM_ACTK_LINE_SUB(p) (0, 2, 1, 3, 4, 6, 5, 7), so the low
 * nibbles of code bytes 64h .. 64h + 63 are the values of window 2h (lines
 * 16 (2h) .. 16 (2h) + 15) and their high nibbles window 2h + 1, without a
 * broadcast or shift per 32 bytes (word w of a super-block: its qs 32
 * NM_ACTK_LINE_SUB(w / 8) + 4 (w % 8) ..). The lines of a group
 * sit in its 16 rows, after the tiled qs: line w in row 16g + w % 16, at
 * nm_actk_vnni_off(n) + 64 (w / 16). So 16 aligned lines (8 from a multiple
 * of 8, ...) are one tile load with the row stride nm_actk_batch_row_bytes.
 * The per-token values of each super-block b follow in lines of the same
 * kind, for the tiles' float steps (plain loads instead of gathers): d[b]
 * (float) in line b at nm_actk_dline_off(n), and the sums of 32 qs of
 * sub-blocks 2i, 2i + 1 (the int16 pair of the tiled row) in line 4b + i at
 * nm_actk_sline_off(n). The buffer has rows for a whole last group
 * (nm_act_buffer_bytes): a tile reads the lines of every group row, and the
 * columns of the tokens a batch lacks hold zeros (their results are never
 * used). nm_actk_lines writes the lines once every token's row is
 * prepared. */
#define NM_ACTK_LINE_SUB(p) (((p) & ~3) | (((p)&1) << 1) | (((p) >> 1) & 1))
static inline uint64_t nm_actk_vnni_off(int64_t n) {
    return nm_actk_tiled_row_bytes(n);
}
static inline uint64_t nm_actk_dline_off(int64_t n) {
    return nm_actk_vnni_off(n) + (uint64_t)n; /* n: a multiple of 256 */
}
static inline uint64_t nm_actk_sline_off(int64_t n) {
    return nm_actk_dline_off(n) + ((uint64_t)(n / 256) + 15) / 16 * 64;
}
static inline uint64_t nm_actk_batch_row_bytes(int64_t n) {
    return nm_actk_sline_off(n) + ((uint64_t)(n / 64) + 15) / 16 * 64;
}
/* The lines of super-blocks [b0, b1) of every group of a batch of n_tok
 * prepared rows; rows: the batch's first row. Workers that take disjoint
 * super-blocks write disjoint cache lines. */
void nm_actk_lines(void *rows, int n_tok, int64_t n, int64_t b0, int64_t b1);

/* Rounds to nearest even for |v| < 2^22 without a libm call: adding 1.5 *
 * 2^23 leaves no fraction bits. (nearbyintf is a call on baseline x86-64, and
 * the activation quantizers run it for every activation of every token.) */
static inline int nm_round_small(float v) {
    return (int)((v + 0x1.8p23f) - 0x1.8p23f);
}

#endif
