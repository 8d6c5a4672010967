/* Chat templates built in, as llama.cpp's own (llm_chat_apply_template):
 * no Jinja engine; the template a GGUF carries in tokenizer.chat_template is
 * recognised by its markers, or one is named (--chat-template NAME, with
 * llama.cpp's names). A formatted conversation is tokenized with BOS/EOS as
 * the vocab asks and with special pieces parsed, as llama-server does, so
 * the prompt tokens are the ones llama.cpp feeds its model. */
#ifndef NM_CHAT_H
#define NM_CHAT_H

#include "gguf/gguf.h"
#include "tokenizer.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum nm_chat_kind {
    NM_CHAT_CHATML,            /* <|im_start|>role\n...<|im_end|>\n (Qwen) */
    NM_CHAT_LLAMA3,            /* <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|> */
    NM_CHAT_LLAMA2,            /* [INST] ... [/INST] answer</s> */
    NM_CHAT_LLAMA2_SYS,        /* + <<SYS>> system <</SYS>> */
    NM_CHAT_LLAMA2_SYS_BOS,    /* + <s> before each later [INST] */
    NM_CHAT_LLAMA2_SYS_STRIP,  /* + contents trimmed */
    NM_CHAT_MISTRAL_V1,        /* " [INST] ... [/INST]" */
    NM_CHAT_MISTRAL_V3,        /* "[INST] ... [/INST]", answers trimmed */
    NM_CHAT_MISTRAL_V3_TEKKEN, /* "[INST]...[/INST]" */
    NM_CHAT_MISTRAL_V7,        /* [SYSTEM_PROMPT] ... [/SYSTEM_PROMPT][INST] ... [/INST] */
    NM_CHAT_MISTRAL_V7_TEKKEN,
    NM_CHAT_GEMMA, /* <start_of_turn>user\n...<end_of_turn>\n, system folded into the user turn */
    NM_CHAT_N_KINDS
} nm_chat_kind;

/* One message; role is "system", "user" or "assistant" (others are passed
 * through where the template prints the role). */
typedef struct nm_chat_msg {
    const char *role;
    const char *content;
} nm_chat_msg;

/* llama.cpp's name ("chatml", "llama3", "llama2", "mistral-v7", "gemma",
 * ...); the list of every name, comma-separated, for messages. */
const char *nm_chat_kind_name(nm_chat_kind kind);
const char *nm_chat_kind_names(void);
/* By name; -1 when it is none of them. */
int nm_chat_kind_parse(const char *name, nm_chat_kind *kind);
/* By the markers of a Jinja template text (or a bare name); -1 when none
 * of the built-in templates matches. */
int nm_chat_detect(const char *jinja, nm_chat_kind *kind);

/* The template for a model: `name` when given (--chat-template), else the
 * one tokenizer.chat_template holds. Fails with a message naming the
 * override when the file has no template or one we cannot recognise. */
int nm_chat_select(const nm_gguf *g, const char *name, nm_chat_kind *kind, nm_error *err);

/* The conversation as text (malloc'd, NUL-terminated; *len its length),
 * with the assistant's header at the end when add_generation_prompt. */
int nm_chat_format(nm_chat_kind kind, const nm_chat_msg *msgs, size_t n, bool add_generation_prompt,
                   char **text, size_t *len, nm_error *err);

/* nm_chat_format, then nm_tokenize with NM_TOK_ADD_SPECIAL |
 * NM_TOK_PARSE_SPECIAL. Returns the count, *ids malloc'd. */
int nm_chat_tokenize(const nm_tokenizer *tok, nm_chat_kind kind, const nm_chat_msg *msgs, size_t n,
                     bool add_generation_prompt, int32_t **ids, nm_error *err);

/* The prompt of the next turn of a conversation whose earlier part the KV
 * cache holds: prev[0..n_prev) are the last turn's prompt and reply tokens
 * (the reply as generated), msgs the conversation with that reply second to
 * last and the new message last. When the template leaves the reply's text
 * as it was and what follows it starts at a special piece (so that it
 * tokenizes alone as within the whole), the result is prev followed by the
 * tokens of that text: the reply keeps its generated tokens, as llama-cli
 * keeps them. Otherwise (or without prev) it is nm_chat_tokenize of the
 * whole conversation, and only the tokens it shares with prev can be
 * reused. Returns the count, *ids malloc'd. */
int nm_chat_tokenize_next(const nm_tokenizer *tok, nm_chat_kind kind, const nm_chat_msg *msgs,
                          size_t n, const int32_t *prev, int n_prev, int32_t **ids, nm_error *err);

/* The token the template ends an assistant turn with (<|im_end|>,
 * <|eot_id|>, <end_of_turn>, EOS for the [INST] ones), -1 when the vocab
 * lacks it. */
int32_t nm_chat_end_of_turn(const nm_tokenizer *tok, nm_chat_kind kind);
/* Whether a sampled token ends the reply: nm_token_is_eog or the
 * template's end of turn. */
bool nm_chat_is_stop(const nm_tokenizer *tok, nm_chat_kind kind, int32_t id);

#endif
