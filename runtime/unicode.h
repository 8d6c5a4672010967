/* Code points for the BPE pre-tokenizers: UTF-8 decoding as llama.cpp does
 * it (so that both split a text alike, invalid bytes included) and the
 * Unicode class of a code point (runtime/unicode_data.c, generated). */
#ifndef NM_UNICODE_H
#define NM_UNICODE_H

#include <stddef.h>
#include <stdint.h>

/* Class codes (low three bits of the flags): the regex classes \p{N},
 * \p{L}, \p{Z}, \p{M}, \p{P}, \p{S}, \p{C}, and unassigned code points. */
enum {
    NM_UC_UNASSIGNED = 0,
    NM_UC_NUMBER = 1,
    NM_UC_LETTER = 2,
    NM_UC_SEPARATOR = 3,
    NM_UC_MARK = 4,
    NM_UC_PUNCT = 5,
    NM_UC_SYMBOL = 6,
    NM_UC_OTHER = 7,
    NM_UC_CLASS = 0x07,
    NM_UC_SPACE = 0x08, /* White_Space: the \s of the pre-tokenizer regexes */
};

/* Generated ranges: (first code point << 8) | flags, ascending. */
extern const uint32_t nm_unicode_ranges[];
extern const size_t nm_unicode_n_ranges;

/* The flags of every code point (0x110000 bytes), built once on first use;
 * thread-safe. */
const uint8_t *nm_unicode_table(void);

/* Decodes the code point at s[0..n) (n >= 1) into *cp and returns its
 * length. Like llama.cpp: a lead byte's high bits give the length; a stray
 * continuation byte, a truncated sequence or a bad continuation byte gives
 * U+FFFD for one byte; overlong forms and surrogates are taken as they
 * decode, and 0xF8..0xFF lead bytes give U+FFFD. */
size_t nm_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);

/* Writes cp as UTF-8 into out (4 bytes of room); returns the length, 0 for
 * code points above U+10FFFF. */
size_t nm_utf8_encode(uint32_t cp, unsigned char *out);

#endif
