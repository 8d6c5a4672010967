/* The tokenizers stored in GGUF (tokenizer.ggml.*), behaving as llama.cpp's
 * so that prompts give the same token ids (and so the same logits):
 * - "llama": SentencePiece (scores, byte-fallback tokens <0xXX>, the
 *   leading-space rule);
 * - "gpt2": byte-level BPE (merges by rank) after the pre-tokenizer named by
 *   tokenizer.ggml.pre (pretokenize.h: llama-bpe, qwen2, gpt2, default).
 * Other vocab types and pre-tokenizers are refused by name. Special pieces
 * (control, user-defined, unknown) are matched in the text before the
 * merges: user-defined ones always, control ones only when asked
 * (NM_TOK_PARSE_SPECIAL, llama.cpp's parse_special). */
#ifndef NM_TOKENIZER_H
#define NM_TOKENIZER_H

#include "gguf/gguf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct nm_tokenizer nm_tokenizer;

typedef enum nm_vocab_kind { NM_VOCAB_SPM, NM_VOCAB_BPE } nm_vocab_kind;

nm_tokenizer *nm_tokenizer_load(const nm_gguf *g, nm_error *err);
void nm_tokenizer_free(nm_tokenizer *t);

int32_t nm_tokenizer_n_vocab(const nm_tokenizer *t);
/* -1 when the vocab has none. */
int32_t nm_tokenizer_bos(const nm_tokenizer *t);
int32_t nm_tokenizer_eos(const nm_tokenizer *t);
/* End of turn: tokenizer.ggml.eot_token_id, else a piece such as
 * <|eot_id|>, <|im_end|>, <end_of_turn>; -1 when none. */
int32_t nm_tokenizer_eot(const nm_tokenizer *t);
/* tokenizer.ggml.add_bos_token / add_eos_token, or the vocab type's
 * default (SPM and llama-bpe add BOS, the others nothing). */
bool nm_tokenizer_add_bos(const nm_tokenizer *t);
bool nm_tokenizer_add_eos(const nm_tokenizer *t);
nm_vocab_kind nm_tokenizer_kind(const nm_tokenizer *t);
/* "SPM" or "BPE"; the pre-tokenizer ("llama-bpe", ...; "" for SPM). */
const char *nm_tokenizer_kind_name(const nm_tokenizer *t);
const char *nm_tokenizer_pre_name(const nm_tokenizer *t);

/* nm_tokenize flags. NM_TOK_ADD_SPECIAL is 1, so `true` asks for it. */
enum {
    NM_TOK_ADD_SPECIAL = 1u,   /* BOS / EOS around the text as the vocab asks */
    NM_TOK_PARSE_SPECIAL = 2u, /* control pieces in the text become their token */
};

/* Encodes text (len bytes, any bytes) as llama.cpp's llama_tokenize with
 * add_special and parse_special as flags say. Returns the count; *out is
 * malloc'd (also when the count is 0). */
int nm_tokenize(const nm_tokenizer *t, const char *text, size_t len, unsigned flags, int32_t **out,
                nm_error *err);

/* The bytes token `id` stands for when it follows token `prev` (-1 at the
 * start of the text), as llama.cpp's token_to_piece without special: control,
 * unknown and unused tokens give "". Returns the byte count written to buf
 * (at most cap; nm_tokenizer_max_text() bytes are always enough).
 * SPM details: the leading space of the first piece is dropped (and of the
 * first after BOS) when the vocab adds a space prefix, so that the texts of
 * [BOS, prompt..., generated...] concatenate to the prompt; byte tokens
 * <0xXX> give that one byte (a UTF-8 character may span several tokens:
 * concatenate before printing); out-of-range ids give "". */
size_t nm_token_to_text(const nm_tokenizer *t, int32_t id, int32_t prev, char *buf, size_t cap);
size_t nm_tokenizer_max_text(const nm_tokenizer *t);

/* The raw piece as stored in the vocab ("▁Once", "<0x0A>", "Ġworld",
 * "<|eot_id|>"); NULL for an id out of range. */
const char *nm_token_piece(const nm_tokenizer *t, int32_t id);
/* "normal", "control", "user-defined", "byte", "unused", "unknown",
 * "undefined". */
const char *nm_token_type_name(const nm_tokenizer *t, int32_t id);
bool nm_token_is_control(const nm_tokenizer *t, int32_t id);
/* Whether sampling this token ends generation: EOS, EOT, EOM and the
 * end-of-turn pieces llama.cpp knows by their text (<|eot_id|>, <|im_end|>,
 * <|endoftext|>, <end_of_turn>, <|end|>, <|eom_id|>, <|end_of_text|>, ...). */
bool nm_token_is_eog(const nm_tokenizer *t, int32_t id);
/* The id of the piece with exactly this text, or -1. */
int32_t nm_tokenizer_find(const nm_tokenizer *t, const char *piece);

#endif
