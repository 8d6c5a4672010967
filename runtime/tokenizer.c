/* The SentencePiece "llama" tokenizer, behaving as llama.cpp's SPM tokenizer
 * with parse_special = false, so that prompts give the same token ids (and
 * thus the same logits) as llama.cpp. */
#include "tokenizer.h"

#include "common/util.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* tokenizer.ggml.token_type values (the GGUF convention). */
enum {
    TT_UNDEFINED = 0,
    TT_NORMAL = 1,
    TT_UNKNOWN = 2,
    TT_CONTROL = 3,
    TT_USER_DEFINED = 4,
    TT_UNUSED = 5,
    TT_BYTE = 6,
};

/* "▁" (U+2581): SentencePiece's visible stand-in for a space. */
static const char SPACE_MARK[] = "\xe2\x96\x81";
#define SPACE_MARK_LEN 3

struct nm_tokenizer {
    int32_t n_vocab;
    char *blob;     /* every piece, NUL-terminated, back to back */
    size_t *offset; /* piece i starts at blob + offset[i] */
    uint32_t *len;  /* its length (pieces may hold NULs) */
    float *score;
    uint8_t *type;
    int32_t *slots; /* open-addressing hash: piece -> id, -1 empty */
    uint64_t slot_mask;
    int32_t byte_token[256]; /* -1: the vocab cannot spell that byte */
    int32_t *user_defined;   /* matched in the text before the merges */
    int32_t n_user_defined;
    int32_t bos, eos, unk;
    bool add_bos, add_space_prefix;
};

/* ---- piece -> id hash map ------------------------------------------------ */

static uint64_t piece_hash(const char *s, size_t n) {
    return XXH3_64bits(s, n);
}

static int32_t lookup(const nm_tokenizer *t, const char *s, size_t n) {
    for (uint64_t h = piece_hash(s, n);; h++) {
        int32_t id = t->slots[h & t->slot_mask];
        if (id < 0)
            return -1;
        if (t->len[id] == n && memcmp(t->blob + t->offset[id], s, n) == 0)
            return id;
    }
}

/* Duplicates are refused: llama.cpp asserts that every piece is unique, and
 * a second id for the same text could never be produced by the encoder. */
static int build_index(nm_tokenizer *t, nm_error *err) {
    uint64_t cap = 16;
    while (cap < (uint64_t)t->n_vocab * 2)
        cap *= 2;
    t->slots = malloc(cap * sizeof *t->slots);
    if (!t->slots)
        return nm_fail(err, "tokenizer: out of memory for a %llu-slot piece index",
                       (unsigned long long)cap);
    memset(t->slots, 0xff, cap * sizeof *t->slots);
    t->slot_mask = cap - 1;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        const char *s = t->blob + t->offset[i];
        int32_t dup = lookup(t, s, t->len[i]);
        if (dup >= 0)
            return nm_fail(err,
                           "tokenizer.ggml.tokens: piece '%s' appears twice, at "
                           "index %d and %d",
                           s, dup, i);
        uint64_t h = piece_hash(s, t->len[i]);
        while (t->slots[h & t->slot_mask] >= 0)
            h++;
        t->slots[h & t->slot_mask] = i;
    }
    return 0;
}

/* ---- loading ---------------------------------------------------------- */

static int check_model_name(const nm_gguf *g, nm_error *err) {
    static const struct {
        const char *name, *kind;
    } other[] = {{"gpt2", "BPE"},         {"bert", "WordPiece"}, {"rwkv", "RWKV"},
                 {"t5", "Unigram"},       {"plamo2", "PLaMo-2"}, {"none", "no vocab"},
                 {"no_vocab", "no vocab"}};
    const char *model = NULL;
    int r = nm_gguf_get_str(g, "tokenizer.ggml.model", &model, err);
    if (r < 0)
        return -1;
    if (r == 0)
        return nm_fail(err,
                       "%s: key tokenizer.ggml.model is missing: no tokenizer in "
                       "this file",
                       g->path);
    if (strcmp(model, "llama") == 0)
        return 0;
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++)
        if (strcmp(model, other[i].name) == 0)
            return nm_fail(err,
                           "%s: tokenizer '%s' (%s) is not supported yet; only "
                           "'llama' (SentencePiece)",
                           g->path, model, other[i].kind);
    return nm_fail(err,
                   "%s: tokenizer.ggml.model '%s' is unknown; only 'llama' "
                   "(SentencePiece) is supported",
                   g->path, model);
}

/* llama.cpp renames empty pieces to "[EMPTY_<i>]" so that they stay unique;
 * we do the same so that ids and lookups agree with it. */
static int empty_name(char *buf, size_t cap, int32_t i) {
    return snprintf(buf, cap, "[EMPTY_%d]", i);
}

static int load_pieces(nm_tokenizer *t, const nm_gguf *g, nm_error *err) {
    uint64_t count;
    const void *data;
    int r = nm_gguf_get_arr(g, "tokenizer.ggml.tokens", NM_GGUF_STRING, &count, &data, err);
    if (r < 0)
        return -1;
    if (r == 0)
        return nm_fail(err, "%s: key tokenizer.ggml.tokens is missing", g->path);
    if (count == 0 || count > INT32_MAX)
        return nm_fail(err,
                       "%s: tokenizer.ggml.tokens holds %llu pieces (expected "
                       "1..%d)",
                       g->path, (unsigned long long)count, INT32_MAX);
    const nm_gguf_str *str = data;
    t->n_vocab = (int32_t)count;
    size_t total = 0;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        uint64_t n = str[i].len ? str[i].len : (uint64_t)empty_name(NULL, 0, i);
        if (n > UINT32_MAX)
            return nm_fail(err, "%s: tokenizer.ggml.tokens[%d] is %llu bytes long", g->path, i,
                           (unsigned long long)n);
        total += n + 1;
    }
    t->blob = malloc(total);
    t->offset = malloc(count * sizeof *t->offset);
    t->len = malloc(count * sizeof *t->len);
    if (!t->blob || !t->offset || !t->len)
        return nm_fail(err, "%s: out of memory for %d tokenizer pieces", g->path, t->n_vocab);
    size_t at = 0;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        t->offset[i] = at;
        if (str[i].len) {
            memcpy(t->blob + at, str[i].data, str[i].len);
            t->len[i] = (uint32_t)str[i].len;
        } else {
            t->len[i] = (uint32_t)empty_name(t->blob + at, total - at, i);
        }
        at += t->len[i];
        t->blob[at++] = 0;
    }
    return 0;
}

/* Scores and types are optional in llama.cpp (0.0 and NORMAL), but when
 * present they must describe every piece. */
static int load_scores(nm_tokenizer *t, const nm_gguf *g, nm_error *err) {
    uint64_t count;
    const void *data;
    t->score = calloc((size_t)t->n_vocab, sizeof *t->score);
    if (!t->score)
        return nm_fail(err, "%s: out of memory for tokenizer scores", g->path);
    int r = nm_gguf_get_arr(g, "tokenizer.ggml.scores", NM_GGUF_FLOAT32, &count, &data, err);
    if (r < 0)
        return -1;
    if (r == 0)
        return 0;
    if (count != (uint64_t)t->n_vocab)
        return nm_fail(err,
                       "%s: tokenizer.ggml.scores has %llu entries but "
                       "tokenizer.ggml.tokens has %d",
                       g->path, (unsigned long long)count, t->n_vocab);
    memcpy(t->score, data, count * sizeof(float)); /* LE host, as everywhere */
    return 0;
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* The byte a "<0xXX>" piece stands for, or -1. */
static int byte_piece_value(const char *s, uint32_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
        return -1;
    int hi = hex_digit(s[3]), lo = hex_digit(s[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

static int load_types(nm_tokenizer *t, const nm_gguf *g, nm_error *err) {
    uint64_t count;
    const void *data;
    t->type = malloc((size_t)t->n_vocab);
    if (!t->type)
        return nm_fail(err, "%s: out of memory for tokenizer types", g->path);
    memset(t->type, TT_NORMAL, (size_t)t->n_vocab);
    int r = nm_gguf_get_arr(g, "tokenizer.ggml.token_type", NM_GGUF_INT32, &count, &data, err);
    if (r < 0)
        return -1;
    if (r == 0)
        return 0;
    if (count != (uint64_t)t->n_vocab)
        return nm_fail(err,
                       "%s: tokenizer.ggml.token_type has %llu entries but "
                       "tokenizer.ggml.tokens has %d",
                       g->path, (unsigned long long)count, t->n_vocab);
    const int32_t *types = data;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        if (types[i] < TT_UNDEFINED || types[i] > TT_BYTE)
            return nm_fail(err,
                           "%s: tokenizer.ggml.token_type[%d] = %d is not a "
                           "token type (0..6)",
                           g->path, i, types[i]);
        const char *piece = t->blob + t->offset[i];
        if (types[i] == TT_BYTE && byte_piece_value(piece, t->len[i]) < 0)
            return nm_fail(err,
                           "%s: tokenizer.ggml.token_type[%d] says byte token "
                           "but its piece '%s' is not of the form <0xXX>",
                           g->path, i, piece);
        t->type[i] = (uint8_t)types[i];
    }
    return 0;
}

/* A present but out-of-range id is refused (llama.cpp only warns and keeps
 * its default, which hides a broken file). */
static int load_special_id(const nm_gguf *g, const char *key, int32_t n_vocab, int32_t *id,
                           nm_error *err) {
    uint32_t v;
    int r = nm_gguf_get_u32(g, key, &v, err);
    if (r < 0)
        return -1;
    if (r == 0) {
        if (*id >= n_vocab) /* the llama default does not exist in this vocab */
            *id = -1;
        return 0;
    }
    if (v >= (uint32_t)n_vocab)
        return nm_fail(err, "%s: %s = %u is out of range: the vocab has %d tokens", g->path, key, v,
                       n_vocab);
    *id = (int32_t)v;
    return 0;
}

static int load_flag(const nm_gguf *g, const char *key, bool *flag, nm_error *err) {
    return nm_gguf_get_bool(g, key, flag, err) < 0 ? -1 : 0;
}

static int load_specials(nm_tokenizer *t, const nm_gguf *g, nm_error *err) {
    t->unk = 0; /* llama.cpp's defaults for the "llama" model */
    t->bos = 1;
    t->eos = 2;
    t->add_bos = true;
    t->add_space_prefix = true;
    if (load_special_id(g, "tokenizer.ggml.bos_token_id", t->n_vocab, &t->bos, err) ||
        load_special_id(g, "tokenizer.ggml.eos_token_id", t->n_vocab, &t->eos, err) ||
        load_special_id(g, "tokenizer.ggml.unknown_token_id", t->n_vocab, &t->unk, err) ||
        load_flag(g, "tokenizer.ggml.add_bos_token", &t->add_bos, err) ||
        load_flag(g, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix, err))
        return -1;
    return 0;
}

static void build_byte_map(nm_tokenizer *t) {
    for (int b = 0; b < 256; b++) {
        char hex[8];
        snprintf(hex, sizeof hex, "<0x%02X>", b);
        int32_t id = lookup(t, hex, 6);
        if (id < 0) { /* llama.cpp's fallback: the byte itself as a piece */
            char one = (char)b;
            id = lookup(t, &one, 1);
        }
        t->byte_token[b] = id;
    }
}

static int cmp_longer_first(const void *a, const void *b, void *ctx) {
    const nm_tokenizer *t = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (t->len[x] != t->len[y])
        return t->len[x] > t->len[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

/* User-defined pieces are cut out of the text before the merges, longest
 * first, as llama.cpp does even with parse_special = false. */
static int collect_user_defined(nm_tokenizer *t, nm_error *err) {
    int32_t n = 0;
    for (int32_t i = 0; i < t->n_vocab; i++)
        n += t->type[i] == TT_USER_DEFINED;
    if (n == 0)
        return 0;
    t->user_defined = malloc((size_t)n * sizeof *t->user_defined);
    if (!t->user_defined)
        return nm_fail(err, "tokenizer: out of memory for %d user-defined pieces", n);
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (t->type[i] == TT_USER_DEFINED)
            t->user_defined[t->n_user_defined++] = i;
    qsort_r(t->user_defined, (size_t)n, sizeof *t->user_defined, cmp_longer_first, t);
    return 0;
}

nm_tokenizer *nm_tokenizer_load(const nm_gguf *g, nm_error *err) {
    if (check_model_name(g, err) < 0)
        return NULL;
    nm_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        nm_fail(err, "%s: out of memory for the tokenizer", g->path);
        return NULL;
    }
    if (load_pieces(t, g, err) < 0 || load_scores(t, g, err) < 0 || load_types(t, g, err) < 0 ||
        load_specials(t, g, err) < 0 || build_index(t, err) < 0 ||
        collect_user_defined(t, err) < 0) {
        nm_tokenizer_free(t);
        return NULL;
    }
    build_byte_map(t);
    return t;
}

void nm_tokenizer_free(nm_tokenizer *t) {
    if (!t)
        return;
    free(t->blob);
    free(t->offset);
    free(t->len);
    free(t->score);
    free(t->type);
    free(t->slots);
    free(t->user_defined);
    free(t);
}

int32_t nm_tokenizer_n_vocab(const nm_tokenizer *t) {
    return t->n_vocab;
}
int32_t nm_tokenizer_bos(const nm_tokenizer *t) {
    return t->bos;
}
int32_t nm_tokenizer_eos(const nm_tokenizer *t) {
    return t->eos;
}
bool nm_tokenizer_add_bos(const nm_tokenizer *t) {
    return t->add_bos;
}

const char *nm_token_piece(const nm_tokenizer *t, int32_t id) {
    if (id < 0 || id >= t->n_vocab)
        return NULL;
    return t->blob + t->offset[id];
}

/* ---- encoding ------------------------------------------------------------ */

typedef struct ids_vec {
    int32_t *v;
    size_t n, cap;
} ids_vec;

static int ids_push(ids_vec *o, int32_t id, nm_error *err) {
    int32_t *v = nm_grow(o->v, &o->cap, o->n, 64, sizeof *v);
    if (!v)
        return nm_fail(err, "tokenize: out of memory for %zu token ids", o->n + 1);
    o->v = v;
    o->v[o->n++] = id;
    return 0;
}

/* A symbol is a run of the text: one UTF-8 character at first, growing as
 * its right neighbour is merged into it (n = 0: merged away). */
typedef struct symbol {
    int32_t prev, next;
    size_t start, n;
} symbol;

typedef struct bigram {
    float score;
    int32_t left, right;
    size_t size;
} bigram;

typedef struct spm_session {
    const nm_tokenizer *t;
    const char *text;
    symbol *sym;
    bigram *heap;
    size_t heap_n, heap_cap;
} spm_session;

/* Pops highest score first; among equal scores the leftmost pair. */
static bool bigram_before(const bigram *a, const bigram *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static int heap_push(spm_session *s, bigram b, nm_error *err) {
    bigram *h = nm_grow(s->heap, &s->heap_cap, s->heap_n, 64, sizeof *h);
    if (!h)
        return nm_fail(err, "tokenize: out of memory for %zu merge candidates", s->heap_n + 1);
    s->heap = h;
    size_t i = s->heap_n++;
    while (i > 0 && bigram_before(&b, &s->heap[(i - 1) / 2])) {
        s->heap[i] = s->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->heap[i] = b;
    return 0;
}

static bigram heap_pop(spm_session *s) {
    bigram top = s->heap[0], last = s->heap[--s->heap_n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->heap_n)
            break;
        if (c + 1 < s->heap_n && bigram_before(&s->heap[c + 1], &s->heap[c]))
            c++;
        if (!bigram_before(&s->heap[c], &last))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (s->heap_n)
        s->heap[i] = last;
    return top;
}

/* Queues the merge of two neighbours if their concatenation is a piece. */
static int try_pair(spm_session *s, int32_t left, int32_t right, nm_error *err) {
    if (left < 0 || right < 0)
        return 0;
    size_t n = s->sym[left].n + s->sym[right].n;
    int32_t id = lookup(s->t, s->text + s->sym[left].start, n);
    if (id < 0)
        return 0;
    return heap_push(s, (bigram){s->t->score[id], left, right, n}, err);
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
    while (s->heap_n) {
        bigram b = heap_pop(s);
        symbol *l = &s->sym[b.left], *r = &s->sym[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size)
            continue; /* stale: one side has changed since it was queued */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0)
            s->sym[r->next].prev = b.left;
        if (try_pair(s, l->prev, b.left, err) < 0 || try_pair(s, b.left, l->next, err) < 0)
            return -1;
    }
    return 0;
}

/* Every merged symbol is a vocab piece (a pair is only queued when its text
 * is one), so a symbol missing from the vocab is always a single character
 * that was never merged: llama.cpp's re-split through its merge record can
 * not apply to it, and its bytes are spelled with byte tokens. */
static int emit_symbols(spm_session *s, ids_vec *out, nm_error *err) {
    for (int32_t i = 0; i >= 0; i = s->sym[i].next) {
        const char *text = s->text + s->sym[i].start;
        int32_t id = lookup(s->t, text, s->sym[i].n);
        if (id >= 0) {
            if (ids_push(out, id, err) < 0)
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
            if (ids_push(out, s->t->byte_token[c], err) < 0)
                return -1;
        }
    }
    return 0;
}

/* Escapes spaces to "▁", prefixes one when asked, then merges. */
static int encode_raw(const nm_tokenizer *t, const char *text, size_t len, bool prefix,
                      ids_vec *out, nm_error *err) {
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
    free(s.heap);
    free(esc);
    return rc;
}

/* A piece of the input: raw text to merge, or an already-known token. */
typedef struct fragment {
    int32_t token; /* -1: raw text [off, off+len) */
    size_t off, len;
} fragment;

typedef struct frag_vec {
    fragment *v;
    size_t n, cap;
} frag_vec;

static int frag_push(frag_vec *f, fragment x, nm_error *err) {
    fragment *v = nm_grow(f->v, &f->cap, f->n, 16, sizeof *v);
    if (!v)
        return nm_fail(err, "tokenize: out of memory for %zu text fragments", f->n + 1);
    f->v = v;
    f->v[f->n++] = x;
    return 0;
}

/* Cuts every occurrence of user-defined piece `id` out of the raw fragments. */
static int split_on_piece(const nm_tokenizer *t, const char *text, int32_t id, frag_vec *in,
                          frag_vec *out, nm_error *err) {
    const char *p = t->blob + t->offset[id];
    size_t plen = t->len[id];
    out->n = 0;
    for (size_t i = 0; i < in->n; i++) {
        fragment f = in->v[i];
        while (f.token < 0 && f.len >= plen) {
            const char *hit = memmem(text + f.off, f.len, p, plen);
            if (!hit)
                break;
            size_t left = (size_t)(hit - (text + f.off));
            if (left && frag_push(out, (fragment){-1, f.off, left}, err) < 0)
                return -1;
            if (frag_push(out, (fragment){id, 0, 0}, err) < 0)
                return -1;
            f.off += left + plen;
            f.len -= left + plen;
        }
        if ((f.token >= 0 || f.len > 0) && frag_push(out, f, err) < 0)
            return -1;
    }
    return 0;
}

static int partition(const nm_tokenizer *t, const char *text, size_t len, frag_vec *frags,
                     nm_error *err) {
    if (frag_push(frags, (fragment){-1, 0, len}, err) < 0)
        return -1;
    frag_vec tmp = {0};
    for (int32_t k = 0; k < t->n_user_defined; k++) {
        if (split_on_piece(t, text, t->user_defined[k], frags, &tmp, err) < 0) {
            free(tmp.v);
            return -1;
        }
        frag_vec swap = *frags;
        *frags = tmp;
        tmp = swap;
    }
    free(tmp.v);
    return 0;
}

int nm_tokenize(const nm_tokenizer *t, const char *text, size_t len, bool add_bos, int32_t **out,
                nm_error *err) {
    *out = NULL;
    ids_vec ids = {0};
    frag_vec frags = {0};
    int rc = 0;
    if (add_bos) {
        if (t->bos < 0)
            rc = nm_fail(err, "tokenize: BOS requested but the vocab has no BOS token");
        else
            rc = ids_push(&ids, t->bos, err);
    }
    /* The empty text gives no tokens at all, not even the space prefix. */
    if (rc == 0 && len > 0)
        rc = partition(t, text, len, &frags, err);
    bool prev_special = true; /* the prefix goes on the first raw fragment */
    for (size_t i = 0; rc == 0 && i < frags.n; i++) {
        fragment f = frags.v[i];
        if (f.token >= 0) {
            rc = ids_push(&ids, f.token, err);
            prev_special = true;
        } else {
            rc = encode_raw(t, text + f.off, f.len, t->add_space_prefix && prev_special, &ids, err);
            prev_special = false;
        }
    }
    free(frags.v);
    if (rc == 0 && ids.n > INT_MAX)
        rc = nm_fail(err, "tokenize: %zu tokens do not fit in an int", ids.n);
    if (rc < 0) {
        free(ids.v);
        return -1;
    }
    if (!ids.v && !(ids.v = malloc(sizeof *ids.v))) /* callers may free(*out) */
        return nm_fail(err, "tokenize: out of memory");
    *out = ids.v;
    return (int)ids.n;
}

/* ---- decoding ------------------------------------------------------------ */

size_t nm_token_to_text(const nm_tokenizer *t, int32_t id, int32_t prev, char *buf, size_t cap) {
    if (id < 0 || id >= t->n_vocab || id == t->bos || id == t->eos)
        return 0;
    const char *p = t->blob + t->offset[id];
    size_t n = t->len[id], w = 0;
    /* The encoder put a space in front of the text; take it back off. */
    bool strip = t->add_space_prefix && (prev < 0 || prev == t->bos);
    switch (t->type[id]) {
    case TT_BYTE: {
        char c = (char)byte_piece_value(p, (uint32_t)n);
        if (!(strip && c == ' ') && cap > 0)
            buf[w++] = c;
        return w;
    }
    case TT_USER_DEFINED:
        if (strip && n > 0 && p[0] == ' ') {
            p++;
            n--;
        }
        w = n < cap ? n : cap;
        memcpy(buf, p, w);
        return w;
    case TT_NORMAL:
        break;
    default: /* control, unknown, unused: nothing to show */
        return 0;
    }
    for (size_t i = 0; i < n && w < cap;) {
        if (n - i >= SPACE_MARK_LEN && memcmp(p + i, SPACE_MARK, SPACE_MARK_LEN) == 0) {
            if (!strip)
                buf[w++] = ' ';
            i += SPACE_MARK_LEN;
        } else {
            if (!(strip && p[i] == ' '))
                buf[w++] = p[i];
            i++;
        }
        strip = false;
    }
    return w;
}
