/* What the tokenizer's files share: the vocab, its piece index, and the two
 * encoders (SentencePiece in tokenizer_spm.c, byte-level BPE in
 * tokenizer_bpe.c) that tokenizer.c calls for each run of raw text. */
#ifndef NM_TOKENIZER_INTERNAL_H
#define NM_TOKENIZER_INTERNAL_H

#include "pretokenize.h"
#include "tokenizer.h"

/* tokenizer.ggml.token_type values (the GGUF convention). */
enum {
    NM_TT_UNDEFINED = 0,
    NM_TT_NORMAL = 1,
    NM_TT_UNKNOWN = 2,
    NM_TT_CONTROL = 3,
    NM_TT_USER_DEFINED = 4,
    NM_TT_UNUSED = 5,
    NM_TT_BYTE = 6,
};

typedef struct nm_bpe nm_bpe; /* tokenizer_bpe.c */

struct nm_tokenizer {
    nm_vocab_kind kind;
    int32_t n_vocab;
    char *blob;     /* every piece, NUL-terminated, back to back */
    size_t *offset; /* piece i starts at blob + offset[i] */
    uint32_t *len;  /* its length (pieces may hold NULs) */
    float *score;
    uint8_t *type;
    uint8_t *eog;   /* 1: ends generation */
    int32_t *slots; /* open-addressing hash: piece -> id, -1 empty */
    uint64_t slot_mask;
    int32_t byte_token[256]; /* SPM: <0xXX> pieces; -1: the vocab cannot spell that byte */
    int32_t *specials;       /* user-defined, control and unknown pieces, longest first */
    int32_t n_specials;
    int32_t bos, eos, eot, eom, unk;
    bool add_bos, add_eos, add_space_prefix;
    size_t max_text; /* the longest text nm_token_to_text can give */
    nm_bpe *bpe;     /* BPE vocabs only */
};

/* The id of the piece s[0..n), or -1. */
int32_t nm_tok_lookup(const nm_tokenizer *t, const char *s, size_t n);

typedef struct nm_ids {
    int32_t *v;
    size_t n, cap;
} nm_ids;

int nm_ids_push(nm_ids *o, int32_t id, nm_error *err);

/* A candidate merge of two neighbouring symbols. The queue pops the
 * smallest key first, the leftmost among equal keys (SPM: minus the score of
 * the merged piece, BPE: the rank of the pair); a, b, c are what the encoder
 * needs to tell a stale candidate and to apply it. */
typedef struct nm_merge {
    double key;
    int32_t left, a, b, c;
} nm_merge;

typedef struct nm_merge_queue {
    nm_merge *v;
    size_t n, cap;
} nm_merge_queue;

int nm_merge_push(nm_merge_queue *q, nm_merge m, nm_error *err);
nm_merge nm_merge_pop(nm_merge_queue *q); /* q->n > 0 */

/* SentencePiece: escapes spaces to "▁" (one in front when prefix), merges
 * by score, spells unknown characters with byte tokens. */
int nm_spm_encode(const nm_tokenizer *t, const char *text, size_t len, bool prefix, nm_ids *out,
                  nm_error *err);

/* BPE: tokenizer.ggml.pre and the merges; the byte-level text of every
 * piece for decoding (t->max_text is set). */
int nm_bpe_load(nm_tokenizer *t, const nm_gguf *g, nm_error *err);
void nm_bpe_free(nm_bpe *b);
int nm_bpe_encode(const nm_tokenizer *t, const char *text, size_t len, nm_ids *out, nm_error *err);
/* The bytes a normal or byte piece stands for (not NUL-terminated). */
const char *nm_bpe_text(const nm_tokenizer *t, int32_t id, size_t *len);
const char *nm_bpe_pre_name(const nm_tokenizer *t);

#endif
