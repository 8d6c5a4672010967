/* Byte-level BPE (tokenizer.ggml.model = "gpt2"), as llama.cpp encodes it:
 * the pre-tokenizer cuts the text into words; each byte of a word stands
 * for one printable character (GPT-2's byte-to-unicode table, so pieces
 * are valid UTF-8); neighbours merge by the rank of their pair in
 * tokenizer.ggml.merges, lowest rank first, leftmost first among equals.
 * Symbols are token ids from the start: every merge must make a piece of
 * the vocab (checked when loading), so a pair is a 64-bit key. */
#include "tokenizer_internal.h"

#include "common/util.h"
#include "unicode.h"

#include <stdlib.h>
#include <string.h>

typedef struct merge_slot {
    uint64_t key; /* left id << 32 | right id; 0 with rank -1: empty */
    int32_t rank, result;
} merge_slot;

struct nm_bpe {
    nm_pre_kind pre;
    bool ignore_merges; /* a word that is a piece is taken whole (llama-bpe) */
    merge_slot *merges;
    uint64_t merge_mask;
    unsigned char enc[256][2]; /* the UTF-8 of each byte's stand-in character */
    uint8_t enc_len[256];
    int16_t dec[324];         /* stand-in character (U+0000..U+0143) -> byte, -1: none */
    int32_t fallback[256][2]; /* a byte whose character is no piece: its UTF-8 bytes as pieces */
    char *text;               /* what each normal or byte piece stands for */
    size_t *text_off;
    uint32_t *text_len;
};

/* ---- GPT-2's byte <-> character table ------------------------------------ */

/* Bytes that print stand for themselves; the others, in order, for U+0100
 * onwards. */
static uint32_t byte_char(int b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))
        return (uint32_t)b;
    int n = 0;
    for (int c = 0; c < b; c++)
        n += !((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF));
    return 256 + (uint32_t)n;
}

/* The byte a character stands for, or -1. */
static int char_byte(const nm_bpe *b, uint32_t cp) {
    return cp < sizeof b->dec / sizeof b->dec[0] ? b->dec[cp] : -1;
}

/* ---- merges ---------------------------------------------------------------- */

static uint64_t mix(uint64_t k) {
    k ^= k >> 31;
    k *= 0x9E3779B97F4A7C15ull;
    return k ^ (k >> 29);
}

static const merge_slot *find_merge(const nm_bpe *b, int32_t left, int32_t right) {
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    for (uint64_t h = mix(key);; h++) {
        const merge_slot *s = &b->merges[h & b->merge_mask];
        if (s->rank < 0)
            return NULL;
        if (s->key == key)
            return s;
    }
}

static int load_merges(nm_tokenizer *t, const nm_gguf *g, nm_error *err) {
    nm_bpe *b = t->bpe;
    uint64_t count;
    const void *data;
    int r = nm_gguf_get_arr(g, "tokenizer.ggml.merges", NM_GGUF_STRING, &count, &data, err);
    if (r < 0)
        return -1;
    if (r == 0)
        return nm_fail(err, "%s: key tokenizer.ggml.merges is missing: a BPE vocab needs them",
                       g->path);
    if (count > INT32_MAX)
        return nm_fail(err, "%s: tokenizer.ggml.merges holds %llu merges", g->path,
                       (unsigned long long)count);
    uint64_t cap = 16;
    while (cap < count * 2)
        cap *= 2;
    b->merges = malloc(cap * sizeof *b->merges);
    if (!b->merges)
        return nm_fail(err, "%s: out of memory for %llu merges", g->path,
                       (unsigned long long)count);
    for (uint64_t i = 0; i < cap; i++)
        b->merges[i] = (merge_slot){0, -1, -1};
    b->merge_mask = cap - 1;
    const nm_gguf_str *m = data;
    char *both = NULL;
    size_t both_cap = 0;
    int rc = 0;
    for (uint64_t i = 0; i < count && rc == 0; i++) {
        /* "left right", split at the first space after the first byte */
        const char *s = m[i].data, *sp = m[i].len > 1 ? memchr(s + 1, ' ', m[i].len - 1) : NULL;
        if (!sp) {
            rc = nm_fail(err, "%s: tokenizer.ggml.merges[%llu] '%.*s' is not two pieces", g->path,
                         (unsigned long long)i, (int)(m[i].len > 64 ? 64 : m[i].len), s);
            break;
        }
        size_t nl = (size_t)(sp - s), nr = m[i].len - nl - 1;
        char *p = nm_grow(both, &both_cap, nl + nr, 64, 1);
        if (!p) {
            rc = nm_fail(err, "%s: out of memory reading the merges", g->path);
            break;
        }
        both = p;
        memcpy(both, s, nl);
        memcpy(both + nl, sp + 1, nr);
        int32_t left = nm_tok_lookup(t, s, nl), right = nm_tok_lookup(t, sp + 1, nr);
        int32_t result = nm_tok_lookup(t, both, nl + nr);
        if (left < 0 || right < 0 || result < 0) {
            rc = nm_fail(err,
                         "%s: tokenizer.ggml.merges[%llu] '%.*s': %s is not a piece of the "
                         "vocab",
                         g->path, (unsigned long long)i, (int)(m[i].len > 64 ? 64 : m[i].len), s,
                         left < 0    ? "its left side"
                         : right < 0 ? "its right side"
                                     : "the merge");
            break;
        }
        uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
        uint64_t h = mix(key);
        while (b->merges[h & b->merge_mask].rank >= 0 && b->merges[h & b->merge_mask].key != key)
            h++;
        merge_slot *slot = &b->merges[h & b->merge_mask];
        if (slot->rank < 0) /* a repeated pair keeps its first rank */
            *slot = (merge_slot){key, (int32_t)i, result};
    }
    free(both);
    return rc;
}

/* ---- loading ----------------------------------------------------------- */

static int load_byte_map(nm_tokenizer *t) {
    nm_bpe *b = t->bpe;
    memset(b->dec, 0xff, sizeof b->dec);
    for (int x = 0; x < 256; x++) {
        uint32_t cp = byte_char(x);
        b->dec[cp] = (int16_t)x;
        b->enc_len[x] = (uint8_t)nm_utf8_encode(cp, b->enc[x]);
        t->byte_token[x] = nm_tok_lookup(t, (const char *)b->enc[x], b->enc_len[x]);
        for (int k = 0; k < 2; k++)
            b->fallback[x][k] =
                k < b->enc_len[x] ? nm_tok_lookup(t, (const char *)&b->enc[x][k], 1) : -1;
    }
    return 0;
}

/* llama.cpp writes a character outside the byte table as this marker: its
 * UTF-8 in hex, then the whole piece. out NULL: only the length. */
static size_t unknown_char(char *out, const unsigned char *ch, size_t n, const char *piece,
                           size_t len) {
    static const char hex[] = "0123456789abcdef";
    if (!out)
        return 12 + 2 * n + len + 1;
    size_t w = 12;
    memcpy(out, "[UNK_BYTE_0x", w);
    for (size_t i = 0; i < n; i++) {
        out[w++] = hex[ch[i] >> 4];
        out[w++] = hex[ch[i] & 15];
    }
    memcpy(out + w, piece, len);
    w += len;
    out[w++] = ']';
    return w;
}

/* The text of piece id into out; out NULL: only its length. */
static size_t piece_text(const nm_tokenizer *t, int32_t id, char *out) {
    const char *p = t->blob + t->offset[id];
    size_t n = t->len[id], w = 0;
    if (t->type[id] == NM_TT_BYTE) {
        if (out)
            out[0] = (char)strtol(p + 3, NULL, 16); /* <0xXX>, checked when loading */
        return 1;
    }
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = nm_utf8_decode((const unsigned char *)p + i, n - i, &cp);
        unsigned char ch[4];
        size_t chn = nm_utf8_encode(cp, ch);
        int byte = char_byte(t->bpe, cp);
        if (byte < 0)
            w += unknown_char(out ? out + w : NULL, ch, chn, p, n);
        else if (out)
            out[w++] = (char)byte;
        else
            w++;
        i += k;
    }
    return w;
}

static bool has_text(uint8_t type) {
    return type == NM_TT_NORMAL || type == NM_TT_BYTE;
}

/* Every normal and byte piece decoded once, as llama.cpp caches them. */
static int load_texts(nm_tokenizer *t, nm_error *err) {
    nm_bpe *b = t->bpe;
    size_t total = 0;
    b->text_off = malloc((size_t)t->n_vocab * sizeof *b->text_off);
    b->text_len = malloc((size_t)t->n_vocab * sizeof *b->text_len);
    if (!b->text_off || !b->text_len)
        return nm_fail(err, "tokenizer: out of memory for the text of %d pieces", t->n_vocab);
    for (int32_t i = 0; i < t->n_vocab; i++) {
        size_t n = has_text(t->type[i]) ? piece_text(t, i, NULL) : 0;
        if (n > UINT32_MAX || total + n < total)
            return nm_fail(err, "tokenizer: the text of piece %d is too long", i);
        b->text_off[i] = total;
        b->text_len[i] = (uint32_t)n;
        total += n;
        if (n > t->max_text)
            t->max_text = n;
    }
    if (!(b->text = malloc(total + 1)))
        return nm_fail(err, "tokenizer: out of memory for %zu bytes of piece text", total);
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (has_text(t->type[i]))
            piece_text(t, i, b->text + b->text_off[i]);
    return 0;
}

int nm_bpe_load(nm_tokenizer *t, const nm_gguf *g, nm_error *err) {
    const char *pre = NULL;
    if (!(t->bpe = calloc(1, sizeof *t->bpe)))
        return nm_fail(err, "%s: out of memory for the tokenizer", g->path);
    int r = nm_gguf_get_str(g, "tokenizer.ggml.pre", &pre, err);
    if (r < 0)
        return -1;
    if (r == 0) /* llama.cpp warns and uses its default regexes */
        pre = "default";
    if (nm_pre_parse(pre, &t->bpe->pre) < 0)
        return nm_fail(err,
                       "%s: tokenizer.ggml.pre '%s' is not supported; numalm knows the BPE "
                       "pre-tokenizers llama-bpe (Llama 3), qwen2 (Qwen 2/2.5/3), gpt2 and "
                       "default",
                       g->path, pre);
    t->bpe->ignore_merges = t->bpe->pre == NM_PRE_LLAMA3;
    if (load_byte_map(t) < 0 || load_merges(t, g, err) < 0 || load_texts(t, err) < 0)
        return -1;
    return 0;
}

void nm_bpe_free(nm_bpe *b) {
    if (!b)
        return;
    free(b->merges);
    free(b->text);
    free(b->text_off);
    free(b->text_len);
    free(b);
}

const char *nm_bpe_text(const nm_tokenizer *t, int32_t id, size_t *len) {
    *len = t->bpe->text_len[id];
    return t->bpe->text + t->bpe->text_off[id];
}

const char *nm_bpe_pre_name(const nm_tokenizer *t) {
    return nm_pre_name(t->bpe->pre);
}

/* ---- encoding ---------------------------------------------------------- */

/* One word being merged; symbol i starts at byte i of the word. Queued
 * merges: a, b the two ids, c the merged piece. */
typedef struct word_state {
    int32_t *id; /* -1: a byte with no piece; -2: merged away */
    int32_t *next, *prev;
    nm_merge_queue queue;
    size_t cap;
    char *enc; /* the word in stand-in characters (ignore_merges) */
} word_state;

static int try_pair(const nm_bpe *b, word_state *w, int32_t left, nm_error *err) {
    if (left < 0 || w->next[left] < 0)
        return 0;
    int32_t l = w->id[left], r = w->id[w->next[left]];
    if (l < 0 || r < 0)
        return 0;
    const merge_slot *m = find_merge(b, l, r);
    return m ? nm_merge_push(&w->queue, (nm_merge){m->rank, left, l, r, m->result}, err) : 0;
}

/* Merges the bytes s[0..n) and appends the pieces. */
static int encode_word(const nm_tokenizer *t, word_state *w, const unsigned char *s, size_t n,
                       nm_ids *out, nm_error *err) {
    const nm_bpe *b = t->bpe;
    if (b->ignore_merges) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            memcpy(w->enc + m, b->enc[s[i]], b->enc_len[s[i]]);
            m += b->enc_len[s[i]];
        }
        int32_t id = nm_tok_lookup(t, w->enc, m);
        if (id >= 0)
            return nm_ids_push(out, id, err);
    }
    for (size_t i = 0; i < n; i++) {
        w->id[i] = t->byte_token[s[i]];
        w->prev[i] = (int32_t)i - 1;
        w->next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    w->queue.n = 0;
    for (size_t i = 0; i + 1 < n; i++)
        if (try_pair(b, w, (int32_t)i, err) < 0)
            return -1;
    while (w->queue.n) {
        nm_merge p = nm_merge_pop(&w->queue);
        int32_t right = w->next[p.left];
        if (right < 0 || w->id[p.left] != p.a || w->id[right] != p.b)
            continue; /* stale: a side has merged since */
        w->id[p.left] = p.c;
        w->id[right] = -2;
        w->next[p.left] = w->next[right];
        if (w->next[right] >= 0)
            w->prev[w->next[right]] = p.left;
        if (try_pair(b, w, w->prev[p.left], err) < 0 || try_pair(b, w, p.left, err) < 0)
            return -1;
    }
    for (int32_t i = 0; i >= 0; i = w->next[i]) {
        if (w->id[i] >= 0) {
            if (nm_ids_push(out, w->id[i], err) < 0)
                return -1;
            continue;
        }
        /* a byte with no piece: llama.cpp looks its character's bytes up one
         * by one, and drops those that are no piece either */
        for (int k = 0; k < 2; k++)
            if (b->fallback[s[i]][k] >= 0 && nm_ids_push(out, b->fallback[s[i]][k], err) < 0)
                return -1;
    }
    return 0;
}

static int word_reserve(word_state *w, size_t n, nm_error *err) {
    if (n <= w->cap)
        return 0;
    free(w->id), free(w->next), free(w->prev), free(w->enc);
    w->id = malloc(n * sizeof *w->id);
    w->next = malloc(n * sizeof *w->next);
    w->prev = malloc(n * sizeof *w->prev);
    w->enc = malloc(2 * n);
    w->cap = n;
    if (!w->id || !w->next || !w->prev || !w->enc) {
        w->cap = 0;
        return nm_fail(err, "tokenize: out of memory for a word of %zu bytes", n);
    }
    return 0;
}

/* Each word is written back from its code points: invalid UTF-8 became
 * U+FFFD and overlong forms their shortest form, as in llama.cpp. */
int nm_bpe_encode(const nm_tokenizer *t, const char *text, size_t len, nm_ids *out, nm_error *err) {
    nm_pre_words pw = {0};
    word_state w = {0};
    unsigned char *bytes = NULL;
    size_t cap_bytes = 0;
    int rc = nm_pretokenize(t->bpe->pre, text, len, &pw, err);
    size_t start = 0;
    for (size_t i = 0; rc == 0 && i < pw.n_words; start = pw.ends[i++]) {
        size_t n_cp = pw.ends[i] - start, n = 0;
        if (4 * n_cp > cap_bytes) {
            free(bytes);
            cap_bytes = 4 * n_cp;
            if (!(bytes = malloc(cap_bytes))) {
                rc = nm_fail(err, "tokenize: out of memory for a word of %zu characters", n_cp);
                break;
            }
        }
        for (size_t k = start; k < pw.ends[i]; k++)
            n += nm_utf8_encode(pw.cp[k], bytes + n);
        rc = word_reserve(&w, n, err);
        if (rc == 0)
            rc = encode_word(t, &w, bytes, n, out, err);
    }
    nm_pre_words_free(&pw);
    free(w.id), free(w.next), free(w.prev), free(w.enc), free(w.queue.v);
    free(bytes);
    return rc;
}
