/* The SentencePiece "llama" tokenizer stored in GGUF (tokenizer.ggml.*):
 * scores, byte-fallback tokens <0xXX>, the leading-space rule, BOS/EOS.
 * Other vocab types (BPE "gpt2", ...) are refused by name. */
#ifndef NM_TOKENIZER_H
#define NM_TOKENIZER_H

#include "gguf/gguf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct nm_tokenizer nm_tokenizer;

nm_tokenizer *nm_tokenizer_load(const nm_gguf *g, nm_error *err);
void nm_tokenizer_free(nm_tokenizer *t);

int32_t nm_tokenizer_n_vocab(const nm_tokenizer *t);
int32_t nm_tokenizer_bos(const nm_tokenizer *t);
int32_t nm_tokenizer_eos(const nm_tokenizer *t);
bool nm_tokenizer_add_bos(const nm_tokenizer *t); /* default true */

/* Encodes text (len bytes) as llama.cpp does with parse_special = false.
 * Adds BOS first when add_bos. Returns the count; *out is malloc'd. */
int nm_tokenize(const nm_tokenizer *t, const char *text, size_t len, bool add_bos, int32_t **out,
                nm_error *err);

/* The bytes token `id` stands for when it follows token `prev` (-1 at the
 * start of the text: the leading space of the first piece is dropped, as
 * llama.cpp's detokenizer does). Control tokens (BOS/EOS) give "". Returns
 * the byte count written to buf (at most cap).
 * Details: the space is dropped only when the vocab adds a space prefix, and
 * also after BOS (prev == BOS), so that concatenating the texts of
 * [BOS, prompt..., generated...] gives the prompt back without a leading
 * space. Unknown and unused tokens give "" (as llama.cpp with special =
 * false); byte tokens <0xXX> give that one byte (a UTF-8 character may span
 * several tokens: concatenate before printing); out-of-range ids give "". */
size_t nm_token_to_text(const nm_tokenizer *t, int32_t id, int32_t prev, char *buf, size_t cap);

/* The raw piece as stored in the vocab ("▁Once", "<0x0A>"). */
const char *nm_token_piece(const nm_tokenizer *t, int32_t id);

#endif
