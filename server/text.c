#include "text.h"

#include "common/util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void nm_gen_text_init(nm_gen_text *t, const char *const *stop, int n_stop) {
    memset(t, 0, sizeof *t);
    for (int i = 0; i < n_stop && t->n_stop < NM_MAX_STOP; i++) {
        size_t n = strlen(stop[i]);
        if (n == 0)
            continue;
        t->stop[t->n_stop] = stop[i];
        t->stop_len[t->n_stop++] = n;
    }
}

void nm_gen_text_free(nm_gen_text *t) {
    free(t->buf);
    memset(t, 0, sizeof *t);
}

static size_t longest_stop(const nm_gen_text *t) {
    size_t m = 0;
    for (int i = 0; i < t->n_stop; i++)
        m = t->stop_len[i] > m ? t->stop_len[i] : m;
    return m;
}

int nm_gen_text_add(nm_gen_text *t, const char *piece, size_t n) {
    if (t->stopped)
        return 1;
    char *b = nm_grow(t->buf, &t->cap, t->len + n, 256, 1); /* and a NUL */
    if (!b)
        return -1;
    t->buf = b;
    size_t old = t->len;
    memcpy(t->buf + t->len, piece, n);
    t->len += n;
    t->buf[t->len] = 0;
    /* A new match must end in the new bytes: start looking where the
     * longest stop sequence could have begun. Text already sent is never
     * taken back, so a match cannot start before t->sent. */
    size_t ml = longest_stop(t);
    if (!ml)
        return 0;
    size_t from = old >= ml - 1 ? old - (ml - 1) : 0;
    from = from > t->sent ? from : t->sent;
    size_t best = SIZE_MAX;
    for (int i = 0; i < t->n_stop; i++) {
        const char *p = memmem(t->buf + from, t->len - from, t->stop[i], t->stop_len[i]);
        if (p && (size_t)(p - t->buf) < best)
            best = (size_t)(p - t->buf);
    }
    if (best == SIZE_MAX)
        return 0;
    t->len = best;
    t->buf[best] = 0;
    t->stopped = true;
    return 1;
}

/* The longest suffix of buf that is a proper prefix of a stop sequence:
 * those bytes may yet turn into a stop and must wait. */
static size_t stop_prefix_tail(const nm_gen_text *t) {
    size_t best = 0;
    for (int i = 0; i < t->n_stop; i++) {
        size_t k = t->stop_len[i] - 1 < t->len ? t->stop_len[i] - 1 : t->len;
        for (; k > best; k--)
            if (!memcmp(t->buf + t->len - k, t->stop[i], k)) {
                best = k;
                break;
            }
    }
    return best;
}

size_t nm_gen_text_ready_end(const nm_gen_text *t, bool final) {
    if (final || t->stopped)
        return t->len;
    size_t end = t->len - stop_prefix_tail(t);
    end -= nm_utf8_incomplete_tail(t->buf, end);
    return end > t->sent ? end : t->sent;
}

/* Length of the well-formed character at s[0..n) (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF); 0 if none; -k if s holds
 * only the first k bytes of one. */
static int utf8_char(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    int len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    for (int i = 1; i < len; i++) {
        if ((size_t)i >= n)
            return -i;
        unsigned b = s[i];
        if (b < (i == 1 ? lo : 0x80) || b > (i == 1 ? hi : 0xBF))
            return 0;
    }
    return len;
}

size_t nm_utf8_incomplete_tail(const char *s, size_t n) {
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        const unsigned char *p = (const unsigned char *)s + n - back;
        if ((*p & 0xC0) == 0x80)
            continue; /* a continuation byte: look further back */
        int r = utf8_char(p, back);
        return r < 0 ? back : 0;
    }
    return 0;
}

/* The bytes of an ill-formed sequence at s[0..n) that one U+FFFD stands
 * for: its maximal subpart (Unicode 15, section 3.9: the longest start of
 * a well-formed character, at least one byte), as Python and browsers
 * decode. */
static size_t maximal_subpart(const unsigned char *s, size_t n) {
    size_t k = 1; /* utf8_char(s, k) < 0: s[0..k) is a proper start */
    while (k < n && utf8_char(s, k + 1) < 0)
        k++;
    return k;
}

size_t nm_utf8_sanitize(const char *src, size_t n, char *dst) {
    const unsigned char *s = (const unsigned char *)src;
    size_t i = 0, o = 0;
    while (i < n) {
        int r = utf8_char(s + i, n - i);
        if (r > 0) {
            memcpy(dst + o, s + i, (size_t)r);
            o += (size_t)r;
            i += (size_t)r;
        } else {
            memcpy(dst + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i += maximal_subpart(s + i, n - i);
        }
    }
    return o;
}
