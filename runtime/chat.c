/* The built-in chat templates. Each formats as llama.cpp's
 * llm_chat_apply_template does for the same kind, byte for byte: that is
 * what tests/test_chat.c checks against strings produced by llama.cpp. */
#include "chat.h"

#include "common/util.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static const char *const NAMES[NM_CHAT_N_KINDS] = {
    [NM_CHAT_CHATML] = "chatml",
    [NM_CHAT_LLAMA3] = "llama3",
    [NM_CHAT_LLAMA2] = "llama2",
    [NM_CHAT_LLAMA2_SYS] = "llama2-sys",
    [NM_CHAT_LLAMA2_SYS_BOS] = "llama2-sys-bos",
    [NM_CHAT_LLAMA2_SYS_STRIP] = "llama2-sys-strip",
    [NM_CHAT_MISTRAL_V1] = "mistral-v1",
    [NM_CHAT_MISTRAL_V3] = "mistral-v3",
    [NM_CHAT_MISTRAL_V3_TEKKEN] = "mistral-v3-tekken",
    [NM_CHAT_MISTRAL_V7] = "mistral-v7",
    [NM_CHAT_MISTRAL_V7_TEKKEN] = "mistral-v7-tekken",
    [NM_CHAT_GEMMA] = "gemma",
};

const char *nm_chat_kind_name(nm_chat_kind kind) {
    return kind < NM_CHAT_N_KINDS ? NAMES[kind] : "?";
}

const char *nm_chat_kind_names(void) {
    return "chatml, llama3, llama2, llama2-sys, llama2-sys-bos, llama2-sys-strip, mistral-v1, "
           "mistral-v3, mistral-v3-tekken, mistral-v7, mistral-v7-tekken, gemma";
}

int nm_chat_kind_parse(const char *name, nm_chat_kind *kind) {
    for (int k = 0; k < NM_CHAT_N_KINDS; k++)
        if (!strcmp(name, NAMES[k])) {
            *kind = (nm_chat_kind)k;
            return 0;
        }
    return -1;
}

/* llama.cpp's detection order, for the families built in here. */
int nm_chat_detect(const char *t, nm_chat_kind *kind) {
    if (nm_chat_kind_parse(t, kind) == 0)
        return 0;
#define HAS(s) (strstr(t, s) != NULL)
    if (HAS("<|im_start|>")) {
        if (HAS("<|im_sep|>") || HAS("<end_of_utterance>"))
            return -1; /* Phi-4, SmolVLM: look like ChatML but are not */
        *kind = NM_CHAT_CHATML;
    } else if (!strncmp(t, "mistral", 7) || HAS("[INST]")) {
        if (HAS("[SYSTEM_PROMPT]"))
            *kind = NM_CHAT_MISTRAL_V7;
        else if (HAS("' [INST] ' + system_message") || HAS("[AVAILABLE_TOOLS]"))
            *kind = HAS(" [INST]")      ? NM_CHAT_MISTRAL_V1
                    : HAS("\"[INST]\"") ? NM_CHAT_MISTRAL_V3_TEKKEN
                                        : NM_CHAT_MISTRAL_V3;
        else if (HAS("content.strip()"))
            *kind = NM_CHAT_LLAMA2_SYS_STRIP;
        else if (HAS("bos_token + '[INST]"))
            *kind = NM_CHAT_LLAMA2_SYS_BOS;
        else
            *kind = HAS("<<SYS>>") ? NM_CHAT_LLAMA2_SYS : NM_CHAT_LLAMA2;
    } else if ((HAS("<|assistant|>") && (HAS("<|end|>") || HAS("<|user|>"))) || HAS("[gMASK]") ||
               (HAS("<|user|>") && HAS("<|endoftext|>"))) {
        return -1; /* Phi-3, GLM, Falcon 3, Zephyr: formats not built in */
    } else if (HAS("<start_of_turn>")) {
        *kind = NM_CHAT_GEMMA;
    } else if (HAS("<|start_header_id|>") && HAS("<|end_header_id|>")) {
        *kind = NM_CHAT_LLAMA3;
    } else {
        return -1;
    }
#undef HAS
    return 0;
}

int nm_chat_select(const nm_gguf *g, const char *name, nm_chat_kind *kind, nm_error *err) {
    if (name) {
        if (nm_chat_kind_parse(name, kind) == 0)
            return 0;
        return nm_fail(err, "--chat-template %s: not a built-in template (one of: %s)", name,
                       nm_chat_kind_names());
    }
    const char *jinja = NULL;
    int r = nm_gguf_get_str(g, "tokenizer.chat_template", &jinja, err);
    if (r < 0)
        return -1;
    if (r == 0)
        return nm_fail(err,
                       "%s: no tokenizer.chat_template in this file; name one with "
                       "--chat-template NAME (%s)",
                       g->path, nm_chat_kind_names());
    if (nm_chat_detect(jinja, kind) < 0)
        return nm_fail(err,
                       "%s: tokenizer.chat_template is not one numalm recognises (it has no "
                       "Jinja engine); name the format with --chat-template NAME (%s)",
                       g->path, nm_chat_kind_names());
    return 0;
}

/* ---- formatting ------------------------------------------------------------ */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int failed;
} sbuf;

static void put_n(sbuf *b, const char *s, size_t n) {
    if (b->failed)
        return;
    char *p = nm_grow(b->p, &b->cap, b->n + n, 256, 1); /* and a NUL */
    if (!p) {
        b->failed = 1;
        return;
    }
    b->p = p;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void put(sbuf *b, const char *s) {
    put_n(b, s, strlen(s));
}

/* Without leading and trailing ASCII white space (C isspace). */
static void put_trimmed(sbuf *b, const char *s) {
    size_t n = strlen(s);
    while (n && isspace((unsigned char)*s))
        s++, n--;
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    put_n(b, s, n);
}

static bool is_role(const nm_chat_msg *m, const char *role) {
    return !strcmp(m->role, role);
}

static void format_mistral_v7(sbuf *b, nm_chat_kind kind, const nm_chat_msg *msgs, size_t n) {
    const char *sp = kind == NM_CHAT_MISTRAL_V7 ? " " : "";
    for (size_t i = 0; i < n; i++) {
        if (is_role(&msgs[i], "system")) {
            put(b, "[SYSTEM_PROMPT]"), put(b, sp), put(b, msgs[i].content);
            put(b, "[/SYSTEM_PROMPT]");
        } else if (is_role(&msgs[i], "user")) {
            put(b, "[INST]"), put(b, sp), put(b, msgs[i].content), put(b, "[/INST]");
        } else {
            put(b, sp), put(b, msgs[i].content), put(b, "</s>");
        }
    }
}

static void format_mistral(sbuf *b, nm_chat_kind kind, const nm_chat_msg *msgs, size_t n) {
    const char *lead = kind == NM_CHAT_MISTRAL_V1 ? " " : "";
    const char *trail = kind == NM_CHAT_MISTRAL_V3_TEKKEN ? "" : " ";
    bool in_turn = false;
    for (size_t i = 0; i < n; i++) {
        if (!in_turn) {
            put(b, lead), put(b, "[INST]"), put(b, trail);
            in_turn = true;
        }
        if (is_role(&msgs[i], "system")) {
            put(b, msgs[i].content), put(b, "\n\n");
        } else if (is_role(&msgs[i], "user")) {
            put(b, msgs[i].content), put(b, lead), put(b, "[/INST]");
        } else {
            put(b, trail);
            if (kind == NM_CHAT_MISTRAL_V3)
                put_trimmed(b, msgs[i].content);
            else
                put(b, msgs[i].content);
            put(b, "</s>");
            in_turn = false;
        }
    }
}

static void format_llama2(sbuf *b, nm_chat_kind kind, const nm_chat_msg *msgs, size_t n) {
    bool in_turn = true; /* BOS comes from the tokenizer, not the text */
    put(b, "[INST] ");
    for (size_t i = 0; i < n; i++) {
        if (!in_turn) {
            in_turn = true;
            put(b, kind == NM_CHAT_LLAMA2_SYS_BOS ? "<s>[INST] " : "[INST] ");
        }
        void (*content)(sbuf *, const char *) =
            kind == NM_CHAT_LLAMA2_SYS_STRIP ? put_trimmed : put;
        if (is_role(&msgs[i], "system")) {
            if (kind != NM_CHAT_LLAMA2) {
                put(b, "<<SYS>>\n"), content(b, msgs[i].content), put(b, "\n<</SYS>>\n\n");
            } else {
                content(b, msgs[i].content), put(b, "\n");
            }
        } else if (is_role(&msgs[i], "user")) {
            content(b, msgs[i].content), put(b, " [/INST]");
        } else {
            content(b, msgs[i].content), put(b, "</s>");
            in_turn = false;
        }
    }
}

/* Gemma has no system turn: system text goes in front of the next user turn. */
static void format_gemma(sbuf *b, const nm_chat_msg *msgs, size_t n, bool add_gen) {
    sbuf sys = {0};
    for (size_t i = 0; i < n; i++) {
        if (is_role(&msgs[i], "system")) {
            put_trimmed(&sys, msgs[i].content);
            continue;
        }
        const char *role = is_role(&msgs[i], "assistant") ? "model" : msgs[i].role;
        put(b, "<start_of_turn>"), put(b, role), put(b, "\n");
        if (sys.n && strcmp(role, "model")) {
            put_n(b, sys.p, sys.n), put(b, "\n\n");
            sys.n = 0;
        }
        put_trimmed(b, msgs[i].content), put(b, "<end_of_turn>\n");
    }
    b->failed |= sys.failed;
    free(sys.p);
    if (add_gen)
        put(b, "<start_of_turn>model\n");
}

int nm_chat_format(nm_chat_kind kind, const nm_chat_msg *msgs, size_t n, bool add_generation_prompt,
                   char **text, size_t *len, nm_error *err) {
    sbuf b = {0};
    put(&b, ""); /* an empty conversation is still a string */
    switch (kind) {
    case NM_CHAT_CHATML:
        for (size_t i = 0; i < n; i++) {
            put(&b, "<|im_start|>"), put(&b, msgs[i].role), put(&b, "\n");
            put(&b, msgs[i].content), put(&b, "<|im_end|>\n");
        }
        if (add_generation_prompt)
            put(&b, "<|im_start|>assistant\n");
        break;
    case NM_CHAT_LLAMA3:
        for (size_t i = 0; i < n; i++) {
            put(&b, "<|start_header_id|>"), put(&b, msgs[i].role);
            put(&b, "<|end_header_id|>\n\n"), put_trimmed(&b, msgs[i].content);
            put(&b, "<|eot_id|>");
        }
        if (add_generation_prompt)
            put(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
    case NM_CHAT_LLAMA2:
    case NM_CHAT_LLAMA2_SYS:
    case NM_CHAT_LLAMA2_SYS_BOS:
    case NM_CHAT_LLAMA2_SYS_STRIP:
        format_llama2(&b, kind, msgs, n);
        break;
    case NM_CHAT_MISTRAL_V1:
    case NM_CHAT_MISTRAL_V3:
    case NM_CHAT_MISTRAL_V3_TEKKEN:
        format_mistral(&b, kind, msgs, n);
        break;
    case NM_CHAT_MISTRAL_V7:
    case NM_CHAT_MISTRAL_V7_TEKKEN:
        format_mistral_v7(&b, kind, msgs, n);
        break;
    case NM_CHAT_GEMMA:
        format_gemma(&b, msgs, n, add_generation_prompt);
        break;
    default:
        free(b.p);
        return nm_fail(err, "chat: template kind %d is not built in", (int)kind);
    }
    if (b.failed) {
        free(b.p);
        return nm_fail(err, "chat: out of memory formatting %zu messages", n);
    }
    *text = b.p;
    *len = b.n;
    return 0;
}

int nm_chat_tokenize(const nm_tokenizer *tok, nm_chat_kind kind, const nm_chat_msg *msgs, size_t n,
                     bool add_generation_prompt, int32_t **ids, nm_error *err) {
    char *text;
    size_t len;
    *ids = NULL;
    if (nm_chat_format(kind, msgs, n, add_generation_prompt, &text, &len, err) < 0)
        return -1;
    int r = nm_tokenize(tok, text, len, NM_TOK_ADD_SPECIAL | NM_TOK_PARSE_SPECIAL, ids, err);
    free(text);
    return r;
}

/* The text the conversation adds after its last reply (that reply's end
 * marker, the new message, the assistant's header) when the formatted
 * conversation is the previous prompt, the reply and then that text; NULL
 * when the template changes earlier text (e.g. trims the reply). */
static char *text_after_reply(nm_chat_kind kind, const nm_chat_msg *msgs, size_t n, nm_error *err) {
    if (n < 3 || strcmp(msgs[n - 2].role, "assistant"))
        return NULL;
    char *before, *full, *rest = NULL;
    size_t n_before, n_full, n_reply = strlen(msgs[n - 2].content);
    if (nm_chat_format(kind, msgs, n - 2, true, &before, &n_before, err) < 0)
        return NULL;
    if (nm_chat_format(kind, msgs, n, true, &full, &n_full, err) == 0) {
        if (n_full >= n_before + n_reply && !memcmp(full, before, n_before) &&
            !memcmp(full + n_before, msgs[n - 2].content, n_reply))
            rest = strdup(full + n_before + n_reply);
        free(full);
    }
    free(before);
    return rest;
}

int nm_chat_tokenize_next(const nm_tokenizer *tok, nm_chat_kind kind, const nm_chat_msg *msgs,
                          size_t n, const int32_t *prev, int n_prev, int32_t **ids, nm_error *err) {
    char *rest = n_prev > 0 ? text_after_reply(kind, msgs, n, err) : NULL;
    int32_t *more = NULL;
    int n_more = rest ? nm_tokenize(tok, rest, strlen(rest), NM_TOK_PARSE_SPECIAL, &more, err) : -1;
    free(rest);
    if (n_more > 0 && nm_token_is_control(tok, more[0])) {
        int32_t *all = malloc(((size_t)n_prev + (size_t)n_more) * sizeof *all);
        if (!all) {
            free(more);
            return nm_fail(err, "chat: out of memory for %d tokens", n_prev + n_more);
        }
        memcpy(all, prev, (size_t)n_prev * sizeof *all);
        memcpy(all + n_prev, more, (size_t)n_more * sizeof *all);
        free(more);
        *ids = all;
        return n_prev + n_more;
    }
    free(more);
    return nm_chat_tokenize(tok, kind, msgs, n, true, ids, err);
}

int32_t nm_chat_end_of_turn(const nm_tokenizer *tok, nm_chat_kind kind) {
    switch (kind) {
    case NM_CHAT_CHATML:
        return nm_tokenizer_find(tok, "<|im_end|>");
    case NM_CHAT_LLAMA3:
        return nm_tokenizer_find(tok, "<|eot_id|>");
    case NM_CHAT_GEMMA:
        return nm_tokenizer_find(tok, "<end_of_turn>");
    default: /* the [INST] templates end an answer with </s>: EOS */
        return nm_tokenizer_eos(tok);
    }
}

bool nm_chat_is_stop(const nm_tokenizer *tok, nm_chat_kind kind, int32_t id) {
    return nm_token_is_eog(tok, id) || (id >= 0 && id == nm_chat_end_of_turn(tok, kind));
}
