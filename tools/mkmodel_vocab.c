/* The generated SentencePiece-style vocab of mkmodel files (see mkmodel.h).
 * Pieces are added in a fixed order and kept unique with a small hash set;
 * each multi-character piece is the concatenation of two pieces added before
 * it, so the tokenizer's pairwise merges can reach every one. */
#include "mkmodel.h"

#include "common/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SP "\xe2\x96\x81" /* U+2581, SentencePiece's word-start mark */

enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_BYTE = 6 };

/* Letters by rough English frequency, so common n-grams come first. */
static const char FREQ[] = "etaoinshrdlcumwfgypbvkjxqz";
static const char UPPER[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
static const char DIGITS[] = "0123456789";
static const char PUNCT[] = ".,!?'\";:-()[]{}/\\&%$#@*+=<>_~`|^";

/* Words whose "▁"-prefixed forms are grown one letter at a time. */
static const char *const WORDS[] = {
    "the",    "and",    "was",    "to",     "of",    "a",      "in",     "that",   "he",
    "she",    "it",     "they",   "have",   "for",   "not",    "with",   "you",    "this",
    "but",    "his",    "her",    "from",   "said",  "all",    "one",    "there",  "what",
    "out",    "about",  "who",    "when",   "make",  "can",    "like",   "time",   "just",
    "him",    "know",   "take",   "people", "into",  "year",   "your",   "good",   "some",
    "could",  "them",   "see",    "other",  "than",  "then",   "now",    "look",   "only",
    "come",   "over",   "think",  "also",   "back",  "after",  "use",    "two",    "how",
    "our",    "work",   "first",  "well",   "way",   "even",   "new",    "want",   "because",
    "any",    "these",  "give",   "day",    "most",  "once",   "upon",   "little", "girl",
    "boy",    "named",  "played", "park",   "happy", "friend", "loved",  "saw",    "big",
    "dog",    "cat",    "sun",    "tree",   "house", "mom",    "dad",    "went",   "very",
    "wanted", "help",   "found",  "ball",   "fun",   "run",    "jump",   "play",   "smile",
    "red",    "blue",   "green",  "small",  "water", "bird",   "fish",   "story",  "world",
    "number", "model",  "token",  "memory", "node",  "thread", "weight", "layer",  "socket",
    "vector", "matrix",
};
static const char *const CAP_WORDS[] = {"The",  "Once", "One",   "She",  "He",
                                        "They", "It",   "There", "Lily", "Tom"};

typedef struct builder {
    nm_mkmodel_vocab *v;
    uint32_t cap;    /* the target size: adding stops there */
    uint32_t *slots; /* open addressing; 0 = empty, else index + 1 */
    uint32_t mask;
    uint32_t n_normal;
    bool oom; /* a piece could not be copied: building stops */
} builder;

static uint32_t hash_str(const char *s) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static bool full(const builder *b) {
    return b->oom || b->v->n >= b->cap;
}

/* Adds s unless present or the vocab is full. */
static void add(builder *b, const char *s, int32_t type) {
    if (full(b))
        return;
    uint32_t i = hash_str(s) & b->mask;
    for (; b->slots[i]; i = (i + 1) & b->mask)
        if (!strcmp(b->v->pieces[b->slots[i] - 1], s))
            return;
    char *copy = strdup(s);
    if (!copy) {
        b->oom = true;
        return;
    }
    uint32_t id = b->v->n++;
    b->slots[i] = id + 1;
    b->v->pieces[id] = copy;
    b->v->types[id] = type;
    /* SentencePiece merges the highest score first: earlier pieces win */
    b->v->scores[id] = type == TT_NORMAL ? -(float)b->n_normal++ : 0.0f;
}

static void add_chars(builder *b, const char *prefix, const char *chars) {
    char s[16];
    for (const char *c = chars; *c && !full(b); c++) {
        snprintf(s, sizeof s, "%s%c", prefix, *c);
        add(b, s, TT_NORMAL);
    }
}

/* "▁w", "▁wo", "▁wor", "▁word": each is the previous one plus a letter. */
static void add_word_chain(builder *b, const char *word) {
    char s[64] = SP;
    size_t base = strlen(s);
    for (size_t i = 0; word[i] && base + i + 1 < sizeof s; i++) {
        s[base + i] = word[i];
        s[base + i + 1] = 0;
        if (i > 0) /* "▁"+single letters come from add_chars */
            add(b, s, TT_NORMAL);
    }
}

/* All lowercase n-grams of length len (letters in FREQ order), each with
 * the given prefix. The (len-1)-grams were added before, so every n-gram
 * is an (len-1)-gram plus a letter. */
static void add_ngrams(builder *b, const char *prefix, int len) {
    int idx[8] = {0};
    char s[32];
    size_t p = strlen(prefix);
    memcpy(s, prefix, p);
    while (!full(b)) {
        for (int k = 0; k < len; k++)
            s[p + k] = FREQ[idx[k]];
        s[p + len] = 0;
        add(b, s, TT_NORMAL);
        int k = len - 1; /* odometer, last letter fastest */
        while (k >= 0 && ++idx[k] == 26)
            idx[k--] = 0;
        if (k < 0)
            return;
    }
}

static void add_specials(builder *b) {
    char s[8];
    add(b, "<unk>", TT_UNKNOWN);
    add(b, "<s>", TT_CONTROL);
    add(b, "</s>", TT_CONTROL);
    for (int i = 0; i < 256; i++) {
        snprintf(s, sizeof s, "<0x%02X>", i);
        add(b, s, TT_BYTE);
    }
}

static void add_pieces(builder *b) {
    add(b, SP, TT_NORMAL);
    add_chars(b, "", FREQ);
    add_chars(b, "", UPPER);
    add_chars(b, "", DIGITS);
    add_chars(b, "", PUNCT);
    add_chars(b, SP, FREQ);
    add_chars(b, SP, UPPER);
    add_chars(b, SP, DIGITS);
    for (size_t i = 0; i < sizeof WORDS / sizeof WORDS[0]; i++)
        add_word_chain(b, WORDS[i]);
    for (size_t i = 0; i < sizeof CAP_WORDS / sizeof CAP_WORDS[0]; i++)
        add_word_chain(b, CAP_WORDS[i]);
    /* 2*(26+676+17576+456976) pieces: more than NM_MKMODEL_MAX_VOCAB */
    for (int len = 2; len <= 4 && !full(b); len++) {
        add_ngrams(b, "", len);
        add_ngrams(b, SP, len);
    }
}

void nm_mkmodel_vocab_free(nm_mkmodel_vocab *v) {
    if (!v)
        return;
    for (uint32_t i = 0; v->pieces && i < v->n; i++)
        free(v->pieces[i]);
    free(v->pieces);
    free(v->scores);
    free(v->types);
    memset(v, 0, sizeof *v);
}

int nm_mkmodel_vocab_build(uint32_t n, nm_mkmodel_vocab *v, nm_error *err) {
    memset(v, 0, sizeof *v);
    if (n < NM_MKMODEL_MIN_VOCAB || n > NM_MKMODEL_MAX_VOCAB)
        return nm_fail(err, "vocab size %u is out of range (%d..%d)", n, NM_MKMODEL_MIN_VOCAB,
                       NM_MKMODEL_MAX_VOCAB);
    builder b = {.v = v, .cap = n};
    uint32_t slots = 1;
    while (slots < 2 * n)
        slots *= 2;
    v->pieces = calloc(n, sizeof *v->pieces);
    v->scores = calloc(n, sizeof *v->scores);
    v->types = calloc(n, sizeof *v->types);
    b.slots = calloc(slots, sizeof *b.slots);
    b.mask = slots - 1;
    if (v->pieces && v->scores && v->types && b.slots) {
        add_specials(&b);
        add_pieces(&b);
    } else {
        b.oom = true;
    }
    free(b.slots);
    if (b.oom) {
        nm_mkmodel_vocab_free(v);
        return nm_fail(err, "out of memory for a vocab of %u pieces", n);
    }
    if (v->n != n) {
        uint32_t got = v->n;
        nm_mkmodel_vocab_free(v);
        return nm_fail(err, "vocab generator made only %u of %u pieces", got, n);
    }
    return 0;
}
