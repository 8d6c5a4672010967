/* What both vocab types share: the pieces and their index, token types,
 * special ids and flags, the end-of-generation set, cutting special pieces
 * out of the text before the merges, and decoding. */
#include "tokenizer_internal.h"

#include "common/util.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* ---- piece -> id hash map ------------------------------------------------ */

static uint64_t piece_hash(const char *s, size_t n) {
    return XXH3_64bits(s, n);
}

int32_t nm_tok_lookup(const nm_tokenizer *t, const char *s, size_t n) {
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
        int32_t dup = nm_tok_lookup(t, s, t->len[i]);
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

static int check_model_name(const nm_gguf *g, nm_vocab_kind *kind, nm_error *err) {
    static const struct {
        const char *name, *kind;
    } other[] = {{"bert", "WordPiece"}, {"rwkv", "RWKV"},     {"t5", "Unigram"},
                 {"plamo2", "PLaMo-2"}, {"none", "no vocab"}, {"no_vocab", "no vocab"}};
    const char *model = NULL;
    int r = nm_gguf_get_str(g, "tokenizer.ggml.model", &model, err);
    if (r < 0)
        return -1;
    if (r == 0)
        return nm_fail(err,
                       "%s: key tokenizer.ggml.model is missing: no tokenizer in "
                       "this file",
                       g->path);
    if (strcmp(model, "llama") == 0 || strcmp(model, "gpt2") == 0) {
        *kind = model[0] == 'l' ? NM_VOCAB_SPM : NM_VOCAB_BPE;
        return 0;
    }
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++)
        if (strcmp(model, other[i].name) == 0)
            return nm_fail(err,
                           "%s: tokenizer '%s' (%s) is not supported; numalm reads "
                           "'llama' (SentencePiece) and 'gpt2' (byte-level BPE)",
                           g->path, model, other[i].kind);
    return nm_fail(err,
                   "%s: tokenizer.ggml.model '%s' is unknown; numalm reads 'llama' "
                   "(SentencePiece) and 'gpt2' (byte-level BPE)",
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
    memset(t->type, NM_TT_NORMAL, (size_t)t->n_vocab);
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
        if (types[i] < NM_TT_UNDEFINED || types[i] > NM_TT_BYTE)
            return nm_fail(err,
                           "%s: tokenizer.ggml.token_type[%d] = %d is not a "
                           "token type (0..6)",
                           g->path, i, types[i]);
        const char *piece = t->blob + t->offset[i];
        if (types[i] == NM_TT_BYTE && byte_piece_value(piece, t->len[i]) < 0)
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

/* llama.cpp's defaults: SPM <unk>=0 <s>=1 </s>=2, BOS added, a space
 * prefix; BPE BOS = EOS = 11 (GPT-2's), BOS added only by llama-bpe. */
static int load_specials(nm_tokenizer *t, const nm_gguf *g, nm_error *err) {
    bool spm = t->kind == NM_VOCAB_SPM;
    t->unk = spm ? 0 : -1;
    t->bos = spm ? 1 : 11;
    t->eos = spm ? 2 : 11;
    t->eot = t->eom = -1;
    t->add_bos = spm || !strcmp(nm_bpe_pre_name(t), "llama-bpe");
    t->add_eos = false;
    t->add_space_prefix = spm;
    if (load_special_id(g, "tokenizer.ggml.bos_token_id", t->n_vocab, &t->bos, err) ||
        load_special_id(g, "tokenizer.ggml.eos_token_id", t->n_vocab, &t->eos, err) ||
        load_special_id(g, "tokenizer.ggml.eot_token_id", t->n_vocab, &t->eot, err) ||
        load_special_id(g, "tokenizer.ggml.eom_token_id", t->n_vocab, &t->eom, err) ||
        load_special_id(g, "tokenizer.ggml.unknown_token_id", t->n_vocab, &t->unk, err) ||
        load_flag(g, "tokenizer.ggml.add_bos_token", &t->add_bos, err) ||
        load_flag(g, "tokenizer.ggml.add_eos_token", &t->add_eos, err))
        return -1;
    if (spm && load_flag(g, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix, err))
        return -1;
    return 0;
}

/* Pieces that end generation, found by their text as llama.cpp finds them
 * (end of turn first: the first of these that the vocab has is its EOT). */
static const char *const EOG_PIECES[] = {
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<end_of_utterance>",
    "<|eom_id|>",
    "[EOS]",
    "<eos>",
    "</s>",
    "<|return|>",
    "<|call|>",
    "<\357\275\234end\342\226\201of\342\226\201sentence\357\275\234>", /* DeepSeek */
};
#define N_EOT_PIECES 10 /* the first ten name an end of turn */

static int load_eog(nm_tokenizer *t, const nm_gguf *g, nm_error *err) {
    static const char *const fim_keys[] = {"tokenizer.ggml.fim_pad_token_id",
                                           "tokenizer.ggml.fim_rep_token_id",
                                           "tokenizer.ggml.fim_sep_token_id"};
    if (!(t->eog = calloc((size_t)t->n_vocab, 1)))
        return nm_fail(err, "tokenizer: out of memory for the end-of-generation set");
    for (size_t k = 0; k < sizeof EOG_PIECES / sizeof EOG_PIECES[0]; k++) {
        const char *p = EOG_PIECES[k];
        int32_t id = nm_tok_lookup(t, p, strlen(p));
        if (id < 0)
            continue;
        t->eog[id] = 1;
        t->type[id] = NM_TT_CONTROL; /* llama.cpp makes them control tokens */
        if (t->eot < 0 && k < N_EOT_PIECES)
            t->eot = id;
        if (t->eom < 0 && !strcmp(p, "<|eom_id|>"))
            t->eom = id;
    }
    for (size_t k = 0; k < 3; k++) {
        int32_t id = -1;
        if (load_special_id(g, fim_keys[k], t->n_vocab, &id, err) < 0)
            return -1;
        if (id >= 0)
            t->eog[id] = 1;
    }
    int32_t ids[] = {t->eos, t->eot, t->eom};
    for (size_t k = 0; k < 3; k++)
        if (ids[k] >= 0)
            t->eog[ids[k]] = 1;
    return 0;
}

static void build_spm_byte_map(nm_tokenizer *t) {
    for (int b = 0; b < 256; b++) {
        char hex[8];
        snprintf(hex, sizeof hex, "<0x%02X>", b);
        int32_t id = nm_tok_lookup(t, hex, 6);
        if (id < 0) { /* llama.cpp's fallback: the byte itself as a piece */
            char one = (char)b;
            id = nm_tok_lookup(t, &one, 1);
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

static bool is_special_type(uint8_t type) {
    return type == NM_TT_CONTROL || type == NM_TT_USER_DEFINED || type == NM_TT_UNKNOWN;
}

/* Control, user-defined and unknown pieces are cut out of the text before
 * the merges, longest first, as llama.cpp does. */
static int collect_specials(nm_tokenizer *t, nm_error *err) {
    int32_t n = 0;
    for (int32_t i = 0; i < t->n_vocab; i++)
        n += is_special_type(t->type[i]);
    if (n == 0)
        return 0;
    t->specials = malloc((size_t)n * sizeof *t->specials);
    if (!t->specials)
        return nm_fail(err, "tokenizer: out of memory for %d special pieces", n);
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (is_special_type(t->type[i]))
            t->specials[t->n_specials++] = i;
    qsort_r(t->specials, (size_t)n, sizeof *t->specials, cmp_longer_first, t);
    return 0;
}

static void find_max_text(nm_tokenizer *t) {
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (t->len[i] > t->max_text)
            t->max_text = t->len[i]; /* SPM and BPE user-defined: at most the piece */
}

nm_tokenizer *nm_tokenizer_load(const nm_gguf *g, nm_error *err) {
    nm_vocab_kind kind = NM_VOCAB_SPM;
    if (check_model_name(g, &kind, err) < 0)
        return NULL;
    nm_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        nm_fail(err, "%s: out of memory for the tokenizer", g->path);
        return NULL;
    }
    t->kind = kind;
    if (load_pieces(t, g, err) < 0 || load_scores(t, g, err) < 0 || load_types(t, g, err) < 0 ||
        build_index(t, err) < 0 || (kind == NM_VOCAB_BPE && nm_bpe_load(t, g, err) < 0) ||
        load_specials(t, g, err) < 0 || load_eog(t, g, err) < 0 || collect_specials(t, err) < 0) {
        nm_tokenizer_free(t);
        return NULL;
    }
    if (kind == NM_VOCAB_SPM)
        build_spm_byte_map(t);
    find_max_text(t);
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
    free(t->eog);
    free(t->slots);
    free(t->specials);
    nm_bpe_free(t->bpe);
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
int32_t nm_tokenizer_eot(const nm_tokenizer *t) {
    return t->eot;
}
bool nm_tokenizer_add_bos(const nm_tokenizer *t) {
    return t->add_bos;
}
bool nm_tokenizer_add_eos(const nm_tokenizer *t) {
    return t->add_eos;
}
nm_vocab_kind nm_tokenizer_kind(const nm_tokenizer *t) {
    return t->kind;
}
const char *nm_tokenizer_kind_name(const nm_tokenizer *t) {
    return t->kind == NM_VOCAB_SPM ? "SPM" : "BPE";
}
const char *nm_tokenizer_pre_name(const nm_tokenizer *t) {
    return t->kind == NM_VOCAB_BPE ? nm_bpe_pre_name(t) : "";
}
size_t nm_tokenizer_max_text(const nm_tokenizer *t) {
    return t->max_text;
}

const char *nm_token_piece(const nm_tokenizer *t, int32_t id) {
    if (id < 0 || id >= t->n_vocab)
        return NULL;
    return t->blob + t->offset[id];
}

const char *nm_token_type_name(const nm_tokenizer *t, int32_t id) {
    static const char *const names[] = {"undefined",    "normal", "unknown", "control",
                                        "user-defined", "unused", "byte"};
    return id < 0 || id >= t->n_vocab ? "undefined" : names[t->type[id]];
}

bool nm_token_is_control(const nm_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && t->type[id] == NM_TT_CONTROL;
}

bool nm_token_is_eog(const nm_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && t->eog[id];
}

int32_t nm_tokenizer_find(const nm_tokenizer *t, const char *piece) {
    return nm_tok_lookup(t, piece, strlen(piece));
}

/* ---- encoding ------------------------------------------------------------ */

int nm_ids_push(nm_ids *o, int32_t id, nm_error *err) {
    int32_t *v = nm_grow(o->v, &o->cap, o->n, 64, sizeof *v);
    if (!v)
        return nm_fail(err, "tokenize: out of memory for %zu token ids", o->n + 1);
    o->v = v;
    o->v[o->n++] = id;
    return 0;
}

static bool merge_before(const nm_merge *x, const nm_merge *y) {
    return x->key < y->key || (x->key == y->key && x->left < y->left);
}

int nm_merge_push(nm_merge_queue *q, nm_merge m, nm_error *err) {
    nm_merge *h = nm_grow(q->v, &q->cap, q->n, 64, sizeof *h);
    if (!h)
        return nm_fail(err, "tokenize: out of memory for %zu merge candidates", q->n + 1);
    q->v = h;
    size_t i = q->n++;
    while (i > 0 && merge_before(&m, &h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = m;
    return 0;
}

nm_merge nm_merge_pop(nm_merge_queue *q) {
    nm_merge *h = q->v, top = h[0], last = h[--q->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= q->n)
            break;
        if (c + 1 < q->n && merge_before(&h[c + 1], &h[c]))
            c++;
        if (!merge_before(&h[c], &last))
            break;
        h[i] = h[c];
        i = c;
    }
    if (q->n)
        h[i] = last;
    return top;
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

/* Cuts every occurrence of special piece `id` out of the raw fragments. */
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

static int partition(const nm_tokenizer *t, const char *text, size_t len, bool parse_special,
                     frag_vec *frags, nm_error *err) {
    if (frag_push(frags, (fragment){-1, 0, len}, err) < 0)
        return -1;
    frag_vec tmp = {0};
    for (int32_t k = 0; k < t->n_specials; k++) {
        int32_t id = t->specials[k];
        if (!parse_special && t->type[id] != NM_TT_USER_DEFINED)
            continue; /* control and unknown pieces only when asked */
        if (split_on_piece(t, text, id, frags, &tmp, err) < 0) {
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

static int encode_fragments(const nm_tokenizer *t, const char *text, const frag_vec *frags,
                            nm_ids *ids, nm_error *err) {
    bool prev_special = true; /* SPM: the space prefix goes on the first raw fragment */
    for (size_t i = 0; i < frags->n; i++) {
        fragment f = frags->v[i];
        int rc;
        if (f.token >= 0)
            rc = nm_ids_push(ids, f.token, err);
        else if (t->kind == NM_VOCAB_SPM)
            rc = nm_spm_encode(t, text + f.off, f.len, t->add_space_prefix && prev_special, ids,
                               err);
        else
            rc = nm_bpe_encode(t, text + f.off, f.len, ids, err);
        if (rc < 0)
            return -1;
        prev_special = f.token >= 0;
    }
    return 0;
}

int nm_tokenize(const nm_tokenizer *t, const char *text, size_t len, unsigned flags, int32_t **out,
                nm_error *err) {
    *out = NULL;
    nm_ids ids = {0};
    frag_vec frags = {0};
    bool add = flags & NM_TOK_ADD_SPECIAL;
    int rc = 0;
    if (add && t->add_bos)
        rc = t->bos < 0 ? nm_fail(err, "tokenize: the vocab asks for BOS but has no BOS token")
                        : nm_ids_push(&ids, t->bos, err);
    /* The empty text gives no tokens at all, not even the space prefix. */
    if (rc == 0 && len > 0)
        rc = partition(t, text, len, flags & NM_TOK_PARSE_SPECIAL, &frags, err);
    if (rc == 0)
        rc = encode_fragments(t, text, &frags, &ids, err);
    if (rc == 0 && add && t->add_eos)
        rc = t->eos < 0 ? nm_fail(err, "tokenize: the vocab asks for EOS but has no EOS token")
                        : nm_ids_push(&ids, t->eos, err);
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

static size_t copy_out(const char *p, size_t n, char *buf, size_t cap) {
    size_t w = n < cap ? n : cap;
    memcpy(buf, p, w);
    return w;
}

static size_t spm_text(const nm_tokenizer *t, int32_t id, int32_t prev, char *buf, size_t cap) {
    const char *p = t->blob + t->offset[id];
    size_t n = t->len[id], w = 0;
    /* The encoder put a space in front of the text; take it back off. */
    bool strip = t->add_space_prefix && (prev < 0 || prev == t->bos);
    if (t->type[id] == NM_TT_BYTE) {
        char c = (char)byte_piece_value(p, (uint32_t)n);
        if (!(strip && c == ' ') && cap > 0)
            buf[w++] = c;
        return w;
    }
    if (t->type[id] == NM_TT_USER_DEFINED) {
        if (strip && n > 0 && p[0] == ' ')
            p++, n--;
        return copy_out(p, n, buf, cap);
    }
    for (size_t i = 0; i < n && w < cap;) {
        if (n - i >= 3 && memcmp(p + i, "\xe2\x96\x81", 3) == 0) { /* "▁" */
            if (!strip)
                buf[w++] = ' ';
            i += 3;
        } else {
            if (!(strip && p[i] == ' '))
                buf[w++] = p[i];
            i++;
        }
        strip = false;
    }
    return w;
}

size_t nm_token_to_text(const nm_tokenizer *t, int32_t id, int32_t prev, char *buf, size_t cap) {
    if (id < 0 || id >= t->n_vocab)
        return 0;
    uint8_t type = t->type[id];
    if (type != NM_TT_NORMAL && type != NM_TT_BYTE && type != NM_TT_USER_DEFINED)
        return 0; /* control, unknown, unused: nothing to show */
    if (t->kind == NM_VOCAB_SPM)
        return spm_text(t, id, prev, buf, cap);
    if (type == NM_TT_USER_DEFINED)
        return copy_out(t->blob + t->offset[id], t->len[id], buf, cap);
    size_t n;
    const char *p = nm_bpe_text(t, id, &n);
    return copy_out(p, n, buf, cap);
}
