/* What a session at stage MODEL runs: tokens, evaluation, generation and
 * perplexity, on the runtime's model and tokenizer. */
#include "session_internal.h"

#include "common/util.h"

#include <stdlib.h>
#include <string.h>

/* 0 when s can run the model, else -1 with the reason. */
static int need_model(numalm_session *s, const char *what) {
    if (s->stage >= NUMALM_STAGE_MODEL)
        return 0;
    return nm_fail(&s->err, "%s needs a session at stage MODEL (this one stops at %s)", what,
                   s->stage == NUMALM_STAGE_PLAN ? "PLAN" : "WEIGHTS");
}

bool numalm_add_bos(const numalm_session *s) {
    return s->tok ? nm_tokenizer_add_bos(s->tok) : false;
}

int32_t numalm_token_bos(const numalm_session *s) {
    return s->tok ? nm_tokenizer_bos(s->tok) : -1;
}

int32_t numalm_token_eos(const numalm_session *s) {
    return s->tok ? nm_tokenizer_eos(s->tok) : -1;
}

int numalm_tokenize(numalm_session *s, const char *text, size_t len, bool add_bos, int32_t *tokens,
                    int max_tokens) {
    if (need_model(s, "tokenize") < 0)
        return -1;
    int32_t *ids = NULL;
    int n = nm_tokenize(s->tok, text, len, add_bos, &ids, &s->err);
    if (n < 0)
        return -1;
    if (tokens && max_tokens > 0)
        memcpy(tokens, ids, (size_t)(n < max_tokens ? n : max_tokens) * sizeof *ids);
    free(ids);
    return n;
}

int64_t numalm_detokenize(numalm_session *s, const int32_t *tokens, int n, char *buf, size_t size) {
    if (need_model(s, "detokenize") < 0)
        return -1;
    int64_t len = 0;
    size_t cap = nm_tokenizer_max_text(s->tok); /* BPE pieces can be long */
    char *piece = malloc(cap + 1);
    if (!piece)
        return nm_fail(&s->err, "detokenize: out of memory");
    for (int i = 0; i < n; i++) {
        size_t k = nm_token_to_text(s->tok, tokens[i], i ? tokens[i - 1] : -1, piece, cap);
        if (buf && size && (uint64_t)len < size - 1) {
            size_t room = size - 1 - (size_t)len;
            memcpy(buf + len, piece, k < room ? k : room);
        }
        len += (int64_t)k;
    }
    free(piece);
    if (buf && size)
        buf[(uint64_t)len < size - 1 ? (size_t)len : size - 1] = 0;
    return len;
}

int numalm_eval(numalm_session *s, const int32_t *tokens, int n, int pos, int logits_from,
                float *logits) {
    if (need_model(s, "eval") < 0)
        return -1;
    return nm_model_eval(s->model, tokens, n, pos, logits_from, logits, &s->err);
}

int numalm_eval_batch(numalm_session *s, const numalm_batch_token *b, int n, float *logits) {
    if (need_model(s, "eval_batch") < 0)
        return -1;
    int cap = nm_model_n_batch(s->model);
    if (n < 0 || n > cap)
        return nm_fail(&s->err,
                       "eval_batch: a batch of %d tokens (at most %d: numalm_options.n_batch)", n,
                       cap);
    nm_batch_tok *t = nm_calloc(n ? (size_t)n : 1, sizeof *t, "the batch", &s->err);
    if (!t)
        return -1;
    for (int i = 0; i < n; i++)
        t[i] = (nm_batch_tok){b[i].token, b[i].seq, b[i].pos, b[i].logits};
    int rc = nm_model_eval_batch(s->model, t, n, logits, &s->err);
    free(t);
    return rc;
}

void numalm_gen_params_init(numalm_gen_params *p) {
    memset(p, 0, sizeof *p);
    p->n_predict = 128;
    p->sampler.top_p = 1.0f;
    p->stop_token = -1;
}

typedef struct text_relay {
    numalm_text_fn fn;
    void *user;
} text_relay;

static int relay_text(void *ud, const char *text, size_t len) {
    const text_relay *r = ud;
    return r->fn ? r->fn(r->user, text, len) : 0;
}

static void public_stats(const nm_gen_stats *st, int n_tokens, numalm_gen_stats *out) {
    memset(out, 0, sizeof *out);
    out->n_prompt = st->n_prompt;
    out->n_decode = st->n_decode;
    out->n_decode_evals = st->n_decode_evals;
    out->n_tokens = n_tokens;
    out->prompt_s = st->prompt_s;
    out->n_prompt_cached = st->n_prompt - st->n_evaluated;
    out->n_kv = st->n_kv;
    out->decode_s = st->decode_s;
    out->stop = st->hit_stop  ? NUMALM_STOP_CALLER
                : st->hit_eos ? NUMALM_STOP_EOS
                : st->hit_ctx ? NUMALM_STOP_CONTEXT
                              : NUMALM_STOP_LENGTH;
    const nm_read_probe_stats *pr = &st->probe;
    out->probe_pairs = pr->pairs;
    out->probe_decode_gbps = pr->decode_gbps;
    out->probe_read_gbps = pr->read_gbps;
    out->probe_of_read = pr->of_read;
    out->probe_of_read_q25 = pr->of_read_q25;
    out->probe_of_read_q75 = pr->of_read_q75;
    out->probe_read_bytes = pr->read_bytes;
    out->probe_checksum = pr->checksum;
}

int numalm_generate(numalm_session *s, const char *prompt, const numalm_gen_params *p,
                    numalm_text_fn on_text, void *user, numalm_gen_stats *stats) {
    if (need_model(s, "generate") < 0)
        return -1;
    nm_gen_opts o = {
        .n_predict = p->n_predict,
        .sampler = {.temp = p->sampler.temp,
                    .top_k = p->sampler.top_k,
                    .top_p = p->sampler.top_p,
                    .seed = p->sampler.seed},
        .echo = p->echo,
        .parse_special = p->parse_special,
        .read_probe = p->read_probe,
        .prompt_tokens = p->prompt_tokens,
        .n_prompt_tokens = p->n_prompt_tokens,
        .n_cached = p->n_cached,
        .has_stop_token = p->stop_token >= 0,
        .stop_token = p->stop_token,
    };
    text_relay relay = {on_text, user};
    nm_gen_stats st;
    int32_t *toks = NULL;
    int n_toks = 0;
    if (nm_generate(s->model, s->tok, prompt, &o, relay_text, &relay, &toks, &n_toks, &st,
                    &s->err) < 0)
        return -1;
    if (p->tokens && p->max_tokens > 0)
        memcpy(p->tokens, toks,
               (size_t)(n_toks < p->max_tokens ? n_toks : p->max_tokens) * sizeof *toks);
    free(toks);
    if (stats)
        public_stats(&st, n_toks, stats);
    return 0;
}

typedef struct ppl_relay {
    numalm_ppl_fn fn;
    void *user;
} ppl_relay;

static void relay_chunk(void *ud, int chunk, double ppl) {
    const ppl_relay *r = ud;
    if (r->fn)
        r->fn(r->user, chunk, ppl);
}

int numalm_perplexity(numalm_session *s, const char *text, size_t len, int n_ctx,
                      numalm_ppl_fn on_chunk, void *user, numalm_ppl_result *r) {
    if (need_model(s, "perplexity") < 0)
        return -1;
    ppl_relay relay = {on_chunk, user};
    nm_ppl_result res;
    if (nm_perplexity(s->model, s->tok, text, len, n_ctx, relay_chunk, &relay, &res, &s->err) < 0)
        return -1;
    *r = (numalm_ppl_result){.n_tokens = res.n_tokens,
                             .n_chunks = res.n_chunks,
                             .n_scored = res.n_scored,
                             .ppl = res.ppl,
                             .ppl_err = res.ppl_err,
                             .seconds = res.seconds};
    return 0;
}
