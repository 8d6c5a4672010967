#include "generate.h"

#include "common/util.h"
#include "ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Streams the text of token id (after prev) through fn; buf holds
 * nm_tokenizer_max_text bytes. Non-zero when the callback asks to stop. */
static int emit(const nm_tokenizer *tok, int32_t id, int32_t prev, char *buf, nm_text_fn fn,
                void *ud) {
    size_t n = nm_token_to_text(tok, id, prev, buf, nm_tokenizer_max_text(tok));
    return n && fn ? fn(ud, buf, n) : 0;
}

typedef struct gen_state {
    int32_t *toks;
    int n;
    size_t cap;
    float *logits;
    char *text; /* one token's text */
} gen_state;

static int gen_push(gen_state *g, int32_t id, nm_error *err) {
    int32_t *t = nm_grow(g->toks, &g->cap, (size_t)g->n, 256, sizeof *t);
    if (!t)
        return nm_fail(err, "out of memory for %d tokens", g->n + 1);
    g->toks = t;
    g->toks[g->n++] = id;
    return 0;
}

static int run_prompt(nm_model *m, const nm_tokenizer *tok, const char *prompt,
                      const nm_gen_opts *o, nm_text_fn fn, void *ud, gen_state *g, nm_gen_stats *st,
                      nm_error *err) {
    int32_t *ids = NULL;
    int n = o->n_prompt_tokens, from = 0, rc = 0;
    if (o->prompt_tokens) {
        for (int i = 0; i < n && rc == 0; i++)
            rc = gen_push(g, o->prompt_tokens[i], err);
        from = o->n_cached < n ? o->n_cached : n - 1; /* the last one gives the logits */
        if (from < 0)
            from = 0;
    } else {
        n = nm_tokenize(tok, prompt, strlen(prompt),
                        NM_TOK_ADD_SPECIAL | (o->parse_special ? NM_TOK_PARSE_SPECIAL : 0), &ids,
                        err);
        if (n < 0)
            return nm_fail_prefix(err, "tokenizing the prompt");
        for (int i = 0; i < n && rc == 0; i++)
            rc = gen_push(g, ids[i], err);
        free(ids);
    }
    if (rc < 0)
        return -1;
    if (n == 0)
        return nm_fail(err, "the prompt is empty and the vocab adds no BOS: nothing to "
                            "start from");
    if (n > nm_model_n_ctx(m))
        return nm_fail(err,
                       "the prompt has %d tokens, more than the context of %d "
                       "(raise -c)",
                       n, nm_model_n_ctx(m));
    st->n_prompt = n;
    for (int i = 0; o->echo && i < n && !st->hit_stop; i++)
        st->hit_stop = emit(tok, g->toks[i], i ? g->toks[i - 1] : -1, g->text, fn, ud) != 0;
    if (st->hit_stop)
        return 0;
    st->n_evaluated = n - from;
    double t0 = nm_now();
    if (nm_model_eval(m, g->toks + from, n - from, from, n - from - 1, g->logits, err) < 0)
        return -1;
    st->prompt_s = nm_now() - t0;
    st->n_kv = n;
    return 0;
}

int nm_generate(nm_model *m, const nm_tokenizer *tok, const char *prompt, const nm_gen_opts *o,
                nm_text_fn on_text, void *ud, int32_t **tokens_out, int *n_tokens_out,
                nm_gen_stats *st, nm_error *err) {
    memset(st, 0, sizeof *st);
    gen_state g = {0};
    nm_read_probe probe = {0};
    int n_vocab = nm_model_n_vocab(m), rc = -1;
    nm_sampler *smp = nm_sampler_new(&o->sampler, n_vocab);
    g.logits = malloc((size_t)n_vocab * sizeof(float));
    g.text = malloc(nm_tokenizer_max_text(tok) + 1);
    if (!smp || !g.logits || !g.text) {
        nm_fail(err, "out of memory for the sampler");
        goto done;
    }
    if (run_prompt(m, tok, prompt, o, on_text, ud, &g, st, err) < 0)
        goto done;
    double t0 = nm_now(), t_step = t0, t_probes = 0;
    for (int i = 0; (o->n_predict < 0 || i < o->n_predict) && !st->hit_stop; i++) {
        int32_t id = nm_sample(smp, g.logits);
        if (nm_token_is_eog(tok, id) || (o->has_stop_token && id == o->stop_token)) {
            st->hit_eos = true;
            break;
        }
        st->hit_stop = emit(tok, id, g.toks[g.n - 1], g.text, on_text, ud) != 0;
        if (gen_push(&g, id, err) < 0)
            goto done;
        st->n_decode++;
        if (i + 1 == o->n_predict || st->hit_stop)
            break; /* the last token needs no pass of its own */
        if (g.n >= nm_model_n_ctx(m)) {
            st->hit_ctx = true;
            break;
        }
        if (nm_model_eval(m, &id, 1, g.n - 1, 0, g.logits, err) < 0)
            goto done;
        st->n_decode_evals++;
        st->n_kv = g.n;
        if (o->read_probe) {
            double t = nm_now(), read_s = nm_read_probe_pair(&probe, m, t - t_step);
            if (read_s < 0) {
                nm_fail(err, "read probe: out of memory");
                goto done;
            }
            t_probes += read_s;
            t_step = nm_now();
        }
    }
    st->decode_s = nm_now() - t0 - t_probes;
    nm_read_probe_summary(&probe, &st->probe);
    rc = 0;
done:
    nm_read_probe_free(&probe);
    nm_sampler_free(smp);
    free(g.logits);
    free(g.text);
    if (rc == 0 && tokens_out) {
        *tokens_out = g.toks;
        *n_tokens_out = g.n;
    } else {
        free(g.toks);
    }
    return rc;
}

typedef struct ppl_acc {
    double nll, nll2;
    int count;
} ppl_acc;

static void score_chunk(const float *logits, const int32_t *toks, int n_ctx, int n_vocab,
                        ppl_acc *acc) {
    int first = n_ctx / 2;
    for (int j = first; j < n_ctx - 1; j++) {
        double lp = nm_log_softmax_at(logits + (size_t)(j - first) * n_vocab, n_vocab, toks[j + 1]);
        acc->nll -= lp;
        acc->nll2 += lp * lp;
        acc->count++;
    }
}

int nm_perplexity(nm_model *m, const nm_tokenizer *tok, const char *text, size_t len, int n_ctx,
                  nm_ppl_fn on_chunk, void *ud, nm_ppl_result *res, nm_error *err) {
    memset(res, 0, sizeof *res);
    if (n_ctx < 4 || n_ctx > nm_model_n_ctx(m))
        return nm_fail(err, "perplexity: context %d must be in [4, %d]", n_ctx, nm_model_n_ctx(m));
    int32_t *ids = NULL;
    int n = nm_tokenize(tok, text, len, NM_TOK_ADD_SPECIAL, &ids, err);
    if (n < 0)
        return nm_fail_prefix(err, "tokenizing the text");
    res->n_tokens = n;
    int n_chunks = n / n_ctx;
    if (n_chunks < 1) {
        free(ids);
        return nm_fail(err,
                       "perplexity: the text has %d tokens, fewer than one chunk of "
                       "%d (lower -c)",
                       n, n_ctx);
    }
    int n_vocab = nm_model_n_vocab(m), first = n_ctx / 2;
    float *logits = malloc((size_t)(n_ctx - first) * n_vocab * sizeof(float));
    int32_t *chunk = malloc((size_t)n_ctx * sizeof *chunk);
    if (!logits || !chunk) {
        free(ids), free(logits), free(chunk);
        return nm_fail(err, "perplexity: out of memory for %d x %d logits", n_ctx, n_vocab);
    }
    ppl_acc acc = {0};
    double t0 = nm_now();
    int rc = 0;
    for (int c = 0; c < n_chunks && rc == 0; c++) {
        memcpy(chunk, ids + (size_t)c * n_ctx, (size_t)n_ctx * sizeof *chunk);
        if (nm_tokenizer_add_bos(tok)) /* as llama-perplexity: only where the vocab adds BOS */
            chunk[0] = nm_tokenizer_bos(tok);
        rc = nm_model_eval(m, chunk, n_ctx, 0, first, logits, err);
        if (rc < 0)
            break;
        score_chunk(logits, chunk, n_ctx, n_vocab, &acc);
        res->n_chunks = c + 1;
        res->ppl = exp(acc.nll / acc.count);
        if (on_chunk)
            on_chunk(ud, c + 1, res->ppl);
    }
    res->seconds = nm_now() - t0;
    res->n_scored = acc.count;
    if (acc.count > 1) {
        double mean = acc.nll / acc.count, var = acc.nll2 / acc.count - mean * mean;
        res->ppl_err = var > 0 ? res->ppl * sqrt(var / (acc.count - 1)) : 0;
    }
    free(ids), free(logits), free(chunk);
    return rc;
}
