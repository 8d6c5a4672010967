/* The text a request generates, as clients may see it: stop sequences cut
 * it (the stop text itself is not returned), and a stream only sends what
 * can no longer change: not the start of a possible stop sequence, not half
 * a UTF-8 character (byte tokens split them). JSON strings must be valid
 * UTF-8, so bytes that never form a character become U+FFFD. */
#ifndef NM_SERVER_TEXT_H
#define NM_SERVER_TEXT_H

#include <stdbool.h>
#include <stddef.h>

#define NM_MAX_STOP 4
#define NM_MAX_STOP_LEN 256

typedef struct nm_gen_text {
    char *buf;
    size_t len, cap;
    size_t sent; /* bytes already handed out */
    const char *stop[NM_MAX_STOP];
    size_t stop_len[NM_MAX_STOP];
    int n_stop;
    bool stopped; /* a stop sequence matched: buf ends where it began */
} nm_gen_text;

/* stop[0..n) must outlive t; empty strings are ignored. */
void nm_gen_text_init(nm_gen_text *t, const char *const *stop, int n_stop);
void nm_gen_text_free(nm_gen_text *t);

/* Appends a piece; true when a stop sequence now matches (then the text is
 * cut before it, and nothing more should be added). -1 on out of memory. */
int nm_gen_text_add(nm_gen_text *t, const char *piece, size_t n);

/* The bytes that may be sent now, from t->sent: [t->buf + t->sent, end).
 * final: generation is over, so everything left goes. */
size_t nm_gen_text_ready_end(const nm_gen_text *t, bool final);

/* Valid UTF-8 of src[0..n) into dst (room for 3 * n bytes): each maximal
 * ill-formed subpart (a stray byte, or the start of a character cut short)
 * becomes one U+FFFD, as the Unicode standard recommends. Returns the bytes
 * written. */
size_t nm_utf8_sanitize(const char *src, size_t n, char *dst);

/* Bytes at the end of s[0..n) that begin a well-formed but incomplete
 * character (0 to 3). */
size_t nm_utf8_incomplete_tail(const char *s, size_t n);

#endif
