/* SentencePiece ("llama" vocab), as llama.cpp's SPM tokenizer: spaces
 * become "▁", neighbours merge by the score of their concatenation (highest
 * first, leftmost among equals), and characters that no piece covers are
 * spelled with byte tokens <0xXX>. */
#include "tokenizer_internal.h"

#include "common/util.h"

#include <stdlib.h>
#include <string.h>

/* "▁" (U+2581): SentencePiece's visible stand-in for a space. */
static const char SPACE_MARK[] = "\xe2\x96\x81";
#define SPACE_MARK_LEN 3

/* A symbol is a run of the text: one UTF-8 character at first, growing as
 * its right neighbour is merged into it (n = 0: merged away). */
typedef struct symbol {
    int32_t prev, next;
    size_t start, n;
} symbol;

typedef struct spm_session {
    const nm_tokenizer *t;
    const char *text;
    symbol *sym;
    nm_merge_queue queue; /* a: the right symbol, b: the merged length */
} spm_session;

/* Queues the merge of two neighbours if their concatenation is a piece. */
static int try_pair(spm_session *s, int32_t left, int32_t right, nm_error *err) {
    if (left < 0 || right < 0)
        return 0;
    size_t n = s->sym[left].n + s->sym[right].n;
    int32_t id = nm_tok_lookup(s->t, s->text + s->sym[left].start, n);
    if (id < 0)
        return 0;
    /* highest score first: the key is minus the score (exact in a double) */
    return nm_merge_push(&s->queue,
                         (nm_merge){-(double)s->t->score[id], left, right, (int32_t)n, 0}, err);
}

/* Byte length of a UTF-8 sequence from its first byte, as llama.cpp counts
 * it: stray continuation bytes stand alone, 0xF8.. count as 4. */
static size_t utf8_len(unsigned char c) {
    static const uint8_t len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return len[c >> 4];
}

static int split_chars(spm_session *s, size_t n_text, int32_t *n_sym, nm_error *err) {
    s->sym = malloc(n_text * sizeof *s->sym);
    if (!s->sym)
        return nm_fail(err, "tokenize: out of memory for %zu symbols", n_text);
    int32_t n = 0;
    for (size_t off = 0; off < n_text; n++) {
        size_t len = utf8_len((unsigned char)s->text[off]);
        if (len > n_text - off)
            len = n_text - off;
        s->sym[n] = (symbol){n - 1, off + len == n_text ? -1 : n + 1, off, len};
        off += len;
    }
    *n_sym = n;
    return 0;
}

static int merge_all(spm_session *s, int32_t n_sym, nm_error *err) {
    for (int32_t i = 1; i < n_sym; i++)
        if (try_pair(s, i - 1, i, err) < 0)
            return -1;
    while (s->queue.n) {
        nm_merge m = nm_merge_pop(&s->queue);
        symbol *l = &s->sym[m.left], *r = &s->sym[m.a];
        if (l->n == 0 || r->n == 0 || l->n + r->n != (size_t)m.b)
            continue; /* stale: one side has changed since it was queued */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0)
            s->sym[r->next].prev = m.left;
        if (try_pair(s, l->prev, m.left, err) < 0 || try_pair(s, m.left, l->next, err) < 0)
            return -1;
    }
    return 0;
}

/* Every merged symbol is a vocab piece (a pair is only queued when its text
 * is one), so a symbol missing from the vocab is always a single character
 * that was never merged: llama.cpp's re-split through its merge record can
 * not apply to it, and its bytes are spelled with byte tokens. */
static int emit_symbols(spm_session *s, nm_ids *out, nm_error *err) {
    for (int32_t i = 0; i >= 0; i = s->sym[i].next) {
        const char *text = s->text + s->sym[i].start;
        int32_t id = nm_tok_lookup(s->t, text, s->sym[i].n);
        if (id >= 0) {
            if (nm_ids_push(out, id, err) < 0)
                return -1;
            continue;
        }
        for (size_t j = 0; j < s->sym[i].n; j++) {
            unsigned char c = (unsigned char)text[j];
            if (s->t->byte_token[c] < 0)
                return nm_fail(err,
                               "tokenize: the vocab has no byte token <0x%02X> "
                               "for a byte it cannot spell otherwise",
                               c);
            if (nm_ids_push(out, s->t->byte_token[c], err) < 0)
                return -1;
        }
    }
    return 0;
}

/* Escapes spaces to "▁", prefixes one when asked, then merges. */
int nm_spm_encode(const nm_tokenizer *t, const char *text, size_t len, bool prefix, nm_ids *out,
                  nm_error *err) {
    size_t spaces = (prefix ? 1 : 0);
    for (size_t i = 0; i < len; i++)
        spaces += text[i] == ' ';
    if (len > (SIZE_MAX - SPACE_MARK_LEN) / 4)
        return nm_fail(err, "tokenize: text of %zu bytes is too long", len);
    size_t n_esc = len + spaces * (SPACE_MARK_LEN - 1) + (prefix ? 1 : 0);
    char *esc = malloc(n_esc ? n_esc : 1);
    if (!esc)
        return nm_fail(err, "tokenize: out of memory for %zu bytes of text", n_esc);
    size_t at = 0;
    if (prefix) {
        memcpy(esc, SPACE_MARK, SPACE_MARK_LEN);
        at = SPACE_MARK_LEN;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(esc + at, SPACE_MARK, SPACE_MARK_LEN);
            at += SPACE_MARK_LEN;
        } else {
            esc[at++] = text[i];
        }
    }
    spm_session s = {.t = t, .text = esc};
    int32_t n_sym = 0;
    int rc = 0;
    if (at > INT32_MAX)
        rc = nm_fail(err, "tokenize: text of %zu bytes is too long", len);
    else if (at > 0)
        rc = (split_chars(&s, at, &n_sym, err) < 0 || merge_all(&s, n_sym, err) < 0 ||
              emit_symbols(&s, out, err) < 0)
                 ? -1
                 : 0;
    free(s.sym);
    free(s.queue.v);
    free(esc);
    return rc;
}
