#include "unicode.h"

#include <pthread.h>

#define N_CODEPOINTS 0x110000

static uint8_t table[N_CODEPOINTS];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void build_table(void) {
    for (size_t i = 0; i < nm_unicode_n_ranges; i++) {
        uint32_t start = nm_unicode_ranges[i] >> 8;
        uint32_t end = i + 1 < nm_unicode_n_ranges ? nm_unicode_ranges[i + 1] >> 8 : N_CODEPOINTS;
        uint8_t flags = (uint8_t)(nm_unicode_ranges[i] & 0xff);
        for (uint32_t c = start; c < end; c++)
            table[c] = flags;
    }
}

const uint8_t *nm_unicode_table(void) {
    pthread_once(&table_once, build_table);
    return table;
}

size_t nm_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
    unsigned char c = s[0];
    size_t len;
    uint32_t v;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c < 0xC0 || c >= 0xF8) { /* stray continuation byte, or no such length */
        *cp = 0xFFFD;
        return 1;
    }
    if (c < 0xE0)
        len = 2, v = c & 0x1F;
    else if (c < 0xF0)
        len = 3, v = c & 0x0F;
    else
        len = 4, v = c & 0x07;
    if (len > n) {
        *cp = 0xFFFD;
        return 1;
    }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            *cp = 0xFFFD;
            return 1;
        }
        v = v << 6 | (s[i] & 0x3F);
    }
    if (v > 0x10FFFF) { /* llama.cpp decodes it, then fails to encode it again */
        *cp = 0xFFFD;
        return 1;
    }
    *cp = v;
    return len;
}

size_t nm_utf8_encode(uint32_t cp, unsigned char *out) {
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | cp >> 6);
        out[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | cp >> 12);
        out[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    if (cp < 0x110000) {
        out[0] = (unsigned char)(0xF0 | cp >> 18);
        out[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        out[3] = (unsigned char)(0x80 | (cp & 0x3F));
        return 4;
    }
    return 0;
}
