/* BPE pre-tokenizers (tokenizer.ggml.pre): a text is cut into words before
 * the merges, by the regex of the model's tokenizer.json. Each is written
 * out by hand as llama.cpp's own splitters are, so that both cut every text
 * (invalid UTF-8 included) at the same places:
 *   gpt2      's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *   llama-bpe (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}
 *             | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 *   qwen2     as llama-bpe with \p{N} (one digit a word)
 *   default   [\p{P}$+<=>^~|]+, then gpt2, then \p{N}+, then [0-9]{3}, each
 *             cutting the pieces of the one before */
#ifndef NM_PRETOKENIZE_H
#define NM_PRETOKENIZE_H

#include "common/error.h"

#include <stddef.h>
#include <stdint.h>

typedef enum nm_pre_kind {
    NM_PRE_DEFAULT,
    NM_PRE_GPT2,
    NM_PRE_LLAMA3,
    NM_PRE_QWEN2,
} nm_pre_kind;

/* The kind for a tokenizer.ggml.pre value (llama.cpp's names and aliases
 * for these four); -1 when it is none of them. */
int nm_pre_parse(const char *name, nm_pre_kind *kind);
const char *nm_pre_name(nm_pre_kind kind);

/* The code points of a text and its words: word i is code points
 * [i ? ends[i-1] : 0, ends[i]). Reused between calls. */
typedef struct nm_pre_words {
    uint32_t *cp;
    uint8_t *fl; /* unicode.h flags | NM_PRE_VALID */
    size_t n_cp, cap_cp;
    size_t *ends, *tmp;
    size_t n_words, cap_words;
} nm_pre_words;

int nm_pretokenize(nm_pre_kind kind, const char *text, size_t len, nm_pre_words *w, nm_error *err);
void nm_pre_words_free(nm_pre_words *w);

#endif
