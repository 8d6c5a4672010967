/* What the AVX-512 Q8_0 kernels share (kernels_avx512_q8.c, the VNNI sets';
 * kernels_avx512_q8_0_amx.c, the amx set's vector kernels): four blocks a
 * step, block k in 128-bit lane k of every register. A row's 136 bytes of
 * a step come in by four 64-byte loads (at +0, +8, +64, +72: nothing past
 * the four blocks), a token's 128 activation bytes by two. */
#ifndef NM_KERNELS_AVX512_Q8_0_H
#define NM_KERNELS_AVX512_Q8_0_H

#include <immintrin.h>
#include <stdint.h>

#define Q8_AI static inline __attribute__((always_inline))

/* Bytes [0, len) of a 64-byte window, 0 <= len. */
Q8_AI __mmask64 first_bytes(int64_t len) {
    return len >= 64 ? ~(__mmask64)0 : len <= 0 ? 0 : (((__mmask64)1 << len) - 1);
}

/* A row's step: the windows at +0 and +64 (they hold the scales) and the
 * low and high 16 codes of block k in lane k of lo and hi. */
typedef struct q8_0_w4 {
    __m512i a0, a64, lo, hi;
} q8_0_w4;

/* nblk (1..4) blocks at p; FULL: nblk == 4, plain loads. */
Q8_AI q8_0_w4 q8_0_weights4(const char *p, int nblk, const int FULL) {
    /* word k of (a, b) is bytes 2k, 2k + 1 of the 128 bytes they hold:
     * block k starts at byte 34k (its F16 scale), codes at 34k + 2 */
    const __m512i idx_lo =
        _mm512_set_epi16(59, 58, 57, 56, 55, 54, 53, 52, 42, 41, 40, 39, 38, 37, 36, 35, 25, 24, 23,
                         22, 21, 20, 19, 18, 8, 7, 6, 5, 4, 3, 2, 1);
    /* the same with the windows at +8 and +72: high codes at 34k + 18 */
    const __m512i idx_hi =
        _mm512_set_epi16(63, 62, 61, 60, 59, 58, 57, 56, 46, 45, 44, 43, 42, 41, 40, 39, 29, 28, 27,
                         26, 25, 24, 23, 22, 12, 11, 10, 9, 8, 7, 6, 5);
    __m512i a8, a72;
    q8_0_w4 w;
    if (FULL) {
        w.a0 = _mm512_loadu_si512(p);
        a8 = _mm512_loadu_si512(p + 8);
        w.a64 = _mm512_loadu_si512(p + 64);
        a72 = _mm512_loadu_si512(p + 72);
    } else {
        const int64_t len = 34 * (int64_t)nblk;
        w.a0 = _mm512_maskz_loadu_epi8(first_bytes(len), p);
        a8 = _mm512_maskz_loadu_epi8(first_bytes(len - 8), p + 8);
        w.a64 = _mm512_maskz_loadu_epi8(first_bytes(len - 64), p + 64);
        a72 = _mm512_maskz_loadu_epi8(first_bytes(len - 72), p + 72);
    }
    w.lo = _mm512_permutex2var_epi16(w.a0, idx_lo, w.a64);
    w.hi = _mm512_permutex2var_epi16(a8, idx_hi, a72);
    return w;
}

/* Word 4k + j (j < 4, k < 4) of the result: block k's F16 scale in the
 * words of mask (words 4k + j for the j in it), zero elsewhere. */
Q8_AI __m512i q8_0_scale_words(const q8_0_w4 *w, __mmask32 mask) {
    const __m512i idx_d = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 51, 51,
                                           51, 51, 34, 34, 34, 34, 17, 17, 17, 17, 0, 0, 0, 0);
    return _mm512_maskz_permutex2var_epi16(mask, w->a0, idx_d, w->a64);
}

/* One token's nblk (1..4) blocks of codes at qa: the low and high 16 of
 * block k in lane k of *lo and *hi; FULL: nblk == 4, plain loads. */
Q8_AI void q8_0_act4(const int8_t *qa, int nblk, const int FULL, __m512i *lo, __m512i *hi) {
    __m512i x0, x1;
    if (FULL) {
        x0 = _mm512_loadu_si512(qa);
        x1 = _mm512_loadu_si512(qa + 64);
    } else {
        x0 = _mm512_maskz_loadu_epi8(first_bytes(32 * (int64_t)nblk), qa);
        x1 = _mm512_maskz_loadu_epi8(first_bytes(32 * (int64_t)nblk - 64), qa + 64);
    }
    /* x0 = [b0 lo, b0 hi, b1 lo, b1 hi], x1 the same for b2, b3 */
    *lo = _mm512_shuffle_i64x2(x0, x1, 0x88);
    *hi = _mm512_shuffle_i64x2(x0, x1, 0xdd);
}

#endif
