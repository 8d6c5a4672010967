#include "pretokenize.h"

#include "common/util.h"
#include "unicode.h"

#include <string.h>

/* Set in the flags of every code point of the text, so that 0 means "past
 * the end of the piece being cut" (unassigned code points have class 0). */
#define VALID 0x10

static const struct {
    const char *name;
    nm_pre_kind kind;
} NAMES[] = {
    {"default", NM_PRE_DEFAULT}, {"gpt2", NM_PRE_GPT2},
    {"gpt-2", NM_PRE_GPT2},      {"llama-bpe", NM_PRE_LLAMA3},
    {"llama3", NM_PRE_LLAMA3},   {"llama-v3", NM_PRE_LLAMA3},
    {"qwen2", NM_PRE_QWEN2},     {"deepseek-r1-qwen", NM_PRE_QWEN2},
};

int nm_pre_parse(const char *name, nm_pre_kind *kind) {
    for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++)
        if (!strcmp(name, NAMES[i].name)) {
            *kind = NAMES[i].kind;
            return 0;
        }
    return -1;
}

const char *nm_pre_name(nm_pre_kind kind) {
    switch (kind) {
    case NM_PRE_GPT2:
        return "gpt2";
    case NM_PRE_LLAMA3:
        return "llama-bpe";
    case NM_PRE_QWEN2:
        return "qwen2";
    default:
        return "default";
    }
}

/* ---- one piece [b, e) of the text, cut into words ------------------------ */

typedef struct cutter {
    const uint32_t *cp;
    const uint8_t *fl;
    size_t e;    /* end of the piece being cut */
    size_t last; /* end of the last word emitted */
    size_t *out;
    size_t n;
} cutter;

static inline uint8_t flags_at(const cutter *c, size_t p) {
    return p < c->e ? c->fl[p] : 0;
}
static inline int is_letter(uint8_t f) {
    return (f & NM_UC_CLASS) == NM_UC_LETTER;
}
static inline int is_number(uint8_t f) {
    return (f & NM_UC_CLASS) == NM_UC_NUMBER;
}
static inline int is_space(uint8_t f) {
    return f & NM_UC_SPACE;
}
/* [^\s\p{L}\p{N}] inside the piece */
static inline int is_other(uint8_t f) {
    return (f & VALID) && !is_space(f) && !is_letter(f) && !is_number(f);
}
static inline int is_newline(uint32_t c) {
    return c == '\r' || c == '\n';
}
static inline uint32_t ascii_lower(uint32_t c) {
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* Ends a word at `end` (nothing when it would be empty). */
static void emit(cutter *c, size_t end) {
    if (end > c->last) {
        c->out[c->n++] = end;
        c->last = end;
    }
}

/* 's 't 're 've 'm 'll 'd at pos: their length, else 0. */
static size_t contraction(const cutter *c, size_t pos, int fold) {
    if (c->cp[pos] != '\'' || pos + 1 >= c->e)
        return 0;
    uint32_t a = fold ? ascii_lower(c->cp[pos + 1]) : c->cp[pos + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd')
        return 2;
    if (pos + 2 >= c->e)
        return 0;
    uint32_t b = fold ? ascii_lower(c->cp[pos + 2]) : c->cp[pos + 2];
    return (a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l') ? 3 : 0;
}

/* \s+(?!\S) then \s+ : a run of spaces followed by more text leaves its last
 * space to the next word. pos is at a space or at no match at all. */
static size_t spaces_end(const cutter *c, size_t pos) {
    size_t n = 0;
    while (is_space(flags_at(c, pos + n)))
        n++;
    if (n > 1 && pos + n < c->e)
        return pos + n - 1;
    return pos + (n ? n : 1); /* no match: the code point alone */
}

static void cut_gpt2(cutter *c, size_t pos) {
    while (pos < c->e) {
        size_t k = contraction(c, pos, 0);
        if (k) {
            emit(c, pos += k);
            continue;
        }
        int sp = c->cp[pos] == ' ';
        uint8_t f = flags_at(c, pos + (size_t)sp);
        if (is_letter(f) || is_number(f) || is_other(f)) { /* ' ?' then a run of one class */
            int (*same)(uint8_t) = is_letter(f) ? is_letter : is_number(f) ? is_number : is_other;
            pos += (size_t)sp;
            while (same(flags_at(c, pos)))
                pos++;
            emit(c, pos);
            continue;
        }
        emit(c, pos = spaces_end(c, pos));
    }
}

/* llama-bpe and qwen2; max_digits 3 or 1. */
static void cut_llama3(cutter *c, size_t pos, size_t max_digits) {
    while (pos < c->e) {
        size_t k = contraction(c, pos, 1);
        if (k) {
            emit(c, pos += k);
            continue;
        }
        uint32_t ch = c->cp[pos];
        uint8_t f = flags_at(c, pos);
        /* [^\r\n\p{L}\p{N}]?\p{L}+ */
        if (!is_newline(ch) && !is_number(f) && (is_letter(f) || is_letter(flags_at(c, pos + 1)))) {
            pos++;
            while (is_letter(flags_at(c, pos)))
                pos++;
            emit(c, pos);
            continue;
        }
        if (is_number(f)) { /* \p{N}{1,max} */
            size_t start = pos;
            while (is_number(flags_at(c, pos)) && pos - start < max_digits)
                pos++;
            emit(c, pos);
            continue;
        }
        /* ' ?[^\s\p{L}\p{N}]+[\r\n]*'; a lone space at the end of the piece
         * is taken here too */
        uint8_t f2 = ch == ' ' ? flags_at(c, pos + 1) : f;
        if (!is_space(f2) && !is_letter(f2) && !is_number(f2)) {
            pos += ch == ' ';
            while (is_other(flags_at(c, pos)))
                pos++;
            while (pos < c->e && is_newline(c->cp[pos]))
                pos++;
            emit(c, pos);
            continue;
        }
        /* \s*[\r\n]+ : up to the last newline of the run of spaces */
        size_t n = 0, after_newline = 0;
        while (is_space(flags_at(c, pos + n))) {
            if (is_newline(c->cp[pos + n]))
                after_newline = pos + n + 1;
            n++;
        }
        emit(c, pos = after_newline ? after_newline : spaces_end(c, pos));
    }
}

/* [\p{P}$+<=>^~|]+ : Unicode punctuation, and every ASCII punctuation or
 * symbol but '`'. */
static int default_punct(uint32_t cp, uint8_t f) {
    if (cp < 128)
        return (cp >= 0x21 && cp <= 0x2F) || (cp >= 0x3A && cp <= 0x40) ||
               (cp >= 0x5B && cp <= 0x5F) || (cp >= 0x7B && cp <= 0x7E);
    return (f & NM_UC_CLASS) == NM_UC_PUNCT;
}

static int default_number(uint32_t cp, uint8_t f) {
    (void)cp;
    return is_number(f);
}

/* Runs of a class and the gaps between them each become a piece. */
static void cut_runs(cutter *c, size_t pos, int (*in)(uint32_t, uint8_t)) {
    while (pos < c->e) {
        int m = in(c->cp[pos], c->fl[pos]);
        while (pos < c->e && in(c->cp[pos], c->fl[pos]) == m)
            pos++;
        emit(c, pos);
    }
}

static int ascii_digit(uint32_t cp) {
    return cp >= '0' && cp <= '9';
}

/* [0-9][0-9][0-9], left to right, without overlap. */
static void cut_digit_triples(cutter *c, size_t pos) {
    while (pos + 2 < c->e) {
        if (ascii_digit(c->cp[pos]) && ascii_digit(c->cp[pos + 1]) && ascii_digit(c->cp[pos + 2])) {
            emit(c, pos);
            emit(c, pos += 3);
        } else {
            pos++;
        }
    }
    emit(c, c->e);
}

enum { STEP_GPT2, STEP_LLAMA3, STEP_QWEN2, STEP_PUNCT, STEP_NUMBERS, STEP_TRIPLES };

/* Cuts every piece of w->ends into w->tmp, then swaps them. */
static void run_step(nm_pre_words *w, int step) {
    cutter c = {.cp = w->cp, .fl = w->fl, .out = w->tmp};
    size_t b = 0;
    for (size_t i = 0; i < w->n_words; i++) {
        c.e = w->ends[i];
        c.last = b;
        switch (step) {
        case STEP_GPT2:
            cut_gpt2(&c, b);
            break;
        case STEP_LLAMA3:
            cut_llama3(&c, b, 3);
            break;
        case STEP_QWEN2:
            cut_llama3(&c, b, 1);
            break;
        case STEP_PUNCT:
            cut_runs(&c, b, default_punct);
            break;
        case STEP_NUMBERS:
            cut_runs(&c, b, default_number);
            break;
        default:
            cut_digit_triples(&c, b);
            break;
        }
        b = c.e;
    }
    size_t *t = w->ends;
    w->ends = w->tmp;
    w->tmp = t;
    w->n_words = c.n;
}

static int reserve(nm_pre_words *w, size_t n_cp, nm_error *err) {
    if (n_cp > w->cap_cp) {
        uint32_t *cp = realloc(w->cp, n_cp * sizeof *cp);
        if (cp)
            w->cp = cp;
        uint8_t *fl = cp ? realloc(w->fl, n_cp) : NULL;
        if (fl)
            w->fl = fl;
        size_t *e = fl ? realloc(w->ends, n_cp * sizeof *e) : NULL;
        if (e)
            w->ends = e;
        size_t *t = e ? realloc(w->tmp, n_cp * sizeof *t) : NULL;
        if (!t)
            return nm_fail(err, "tokenize: out of memory for %zu code points", n_cp);
        w->tmp = t;
        w->cap_cp = w->cap_words = n_cp;
    }
    return 0;
}

int nm_pretokenize(nm_pre_kind kind, const char *text, size_t len, nm_pre_words *w, nm_error *err) {
    w->n_cp = w->n_words = 0;
    if (len == 0)
        return 0;
    if (reserve(w, len, err) < 0) /* never more code points than bytes */
        return -1;
    const uint8_t *table = nm_unicode_table();
    const unsigned char *s = (const unsigned char *)text;
    for (size_t off = 0; off < len;) {
        uint32_t cp;
        off += nm_utf8_decode(s + off, len - off, &cp);
        w->cp[w->n_cp] = cp;
        w->fl[w->n_cp++] = table[cp] | VALID;
    }
    /* each step emits at most one end per code point, so ends never
     * outgrow the code points */
    w->ends[0] = w->n_cp;
    w->n_words = 1;
    switch (kind) {
    case NM_PRE_GPT2:
        run_step(w, STEP_GPT2);
        break;
    case NM_PRE_LLAMA3:
        run_step(w, STEP_LLAMA3);
        break;
    case NM_PRE_QWEN2:
        run_step(w, STEP_QWEN2);
        break;
    default:
        run_step(w, STEP_PUNCT);
        run_step(w, STEP_GPT2);
        run_step(w, STEP_NUMBERS);
        run_step(w, STEP_TRIPLES);
        break;
    }
    return 0;
}

void nm_pre_words_free(nm_pre_words *w) {
    free(w->cp);
    free(w->fl);
    free(w->ends);
    free(w->tmp);
    memset(w, 0, sizeof *w);
}
