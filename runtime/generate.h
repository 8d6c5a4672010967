/* Text in, text out: the prompt + decode loop with a streaming callback, and
 * llama.cpp's perplexity method. */
#ifndef NM_GENERATE_H
#define NM_GENERATE_H

#include "model.h"
#include "read_probe.h"
#include "sampler.h"
#include "tokenizer.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct nm_gen_opts {
    int n_predict; /* tokens to generate (stops earlier at EOS); < 0: no limit */
    nm_sampler_opts sampler;
    bool echo;          /* stream the prompt (detokenized) first */
    bool parse_special; /* control pieces in the prompt text become their token */
    /* after each decode step, a read pass over the same weights
     * (read_probe.h); its time is not counted in decode_s */
    bool read_probe;
    /* A prompt given as tokens (a chat: nm_chat_tokenize) instead of the
     * text: used when prompt_tokens is set. The first n_cached of them are
     * already in the model's KV cache at positions 0.. (the earlier turns of
     * a conversation): only the rest is evaluated. */
    const int32_t *prompt_tokens;
    int n_prompt_tokens, n_cached;
    /* With has_stop_token, stop_token (a chat template's end of turn) stops
     * generation too, beside the vocab's end-of-generation tokens. */
    bool has_stop_token;
    int32_t stop_token;
} nm_gen_opts;

/* Receives the bytes of each piece as soon as it is known; a non-zero
 * return stops the generation (the caller has what it wants). */
typedef int (*nm_text_fn)(void *ud, const char *text, size_t len);

typedef struct nm_gen_stats {
    int n_prompt;              /* prompt tokens, BOS included */
    int n_decode;              /* tokens generated (EOS not counted) */
    int n_decode_evals;        /* single-token passes through the model */
    double prompt_s;           /* batched prompt pass */
    double decode_s;           /* decode passes + sampling */
    bool hit_eos;              /* an end-of-generation token, or opts.stop_token */
    bool hit_ctx;              /* stopped because the context is full */
    bool hit_stop;             /* stopped because on_text asked to */
    int n_evaluated;           /* prompt tokens evaluated (not n_cached) */
    int n_kv;                  /* leading tokens of *tokens_out that the KV cache holds */
    nm_read_probe_stats probe; /* with opts.read_probe */
} nm_gen_stats;

/* Tokenizes prompt (BOS first when the vocab asks for it), runs it as one
 * batched pass from position 0 (or from n_cached, for prompt_tokens), then
 * samples and decodes up to n_predict tokens. *tokens_out (optional, malloc'd) gets every token,
 * prompt included. */
int nm_generate(nm_model *m, const nm_tokenizer *tok, const char *prompt, const nm_gen_opts *o,
                nm_text_fn on_text, void *ud, int32_t **tokens_out, int *n_tokens_out,
                nm_gen_stats *st, nm_error *err);

typedef struct nm_ppl_result {
    int n_tokens; /* of the whole text, BOS included */
    int n_chunks;
    int n_scored; /* tokens scored */
    double ppl;
    double ppl_err; /* standard error estimate */
    double seconds;
} nm_ppl_result;

/* After each chunk: its number (1-based) and the running perplexity. */
typedef void (*nm_ppl_fn)(void *ud, int chunk, double ppl);

/* llama.cpp's method: the text is tokenized once with BOS in front and cut
 * into floor(n_tokens / n_ctx) chunks; each chunk is evaluated from position
 * 0 with its first token replaced by BOS, and the logits at positions
 * n_ctx/2 .. n_ctx-2 score the next token. n_ctx must fit the model's
 * context. */
int nm_perplexity(nm_model *m, const nm_tokenizer *tok, const char *text, size_t len, int n_ctx,
                  nm_ppl_fn on_chunk, void *ud, nm_ppl_result *res, nm_error *err);

#endif
