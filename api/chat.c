/* The chat calls of numalm.h over runtime/chat.h. */
#include "session_internal.h"

#include "runtime/chat.h"

#include <stdlib.h>
#include <string.h>

static int need_tokenizer(numalm_session *s) {
    if (s->tok && s->gguf)
        return 0;
    return nm_fail(&s->err, "chat needs a session at stage MODEL");
}

static int check_tmpl(numalm_session *s, int tmpl) {
    if (tmpl >= 0 && tmpl < NM_CHAT_N_KINDS)
        return 0;
    return nm_fail(&s->err, "chat template id %d is not one of numalm_chat_template's", tmpl);
}

int numalm_chat_template(numalm_session *s, const char *name) {
    nm_chat_kind kind;
    if (need_tokenizer(s) < 0 || nm_chat_select(s->gguf, name, &kind, &s->err) < 0)
        return -1;
    return (int)kind;
}

const char *numalm_chat_template_name(int tmpl) {
    return nm_chat_kind_name((nm_chat_kind)tmpl);
}

const char *numalm_chat_template_names(void) {
    return nm_chat_kind_names();
}

/* numalm_chat_msg and nm_chat_msg are the same two pointers. */
_Static_assert(sizeof(numalm_chat_msg) == sizeof(nm_chat_msg), "chat message layouts differ");

int64_t numalm_chat_format(numalm_session *s, int tmpl, const numalm_chat_msg *msgs, size_t n,
                           bool add_generation_prompt, char *buf, size_t size) {
    char *text;
    size_t len;
    if (check_tmpl(s, tmpl) < 0 || nm_chat_format((nm_chat_kind)tmpl, (const nm_chat_msg *)msgs, n,
                                                  add_generation_prompt, &text, &len, &s->err) < 0)
        return -1;
    if (buf && size) {
        size_t k = len < size - 1 ? len : size - 1;
        memcpy(buf, text, k);
        buf[k] = 0;
    }
    free(text);
    return (int64_t)len;
}

int numalm_chat_tokenize(numalm_session *s, int tmpl, const numalm_chat_msg *msgs, size_t n,
                         const int32_t *prev, int n_prev, int32_t *tokens, int max_tokens) {
    int32_t *ids;
    if (need_tokenizer(s) < 0 || check_tmpl(s, tmpl) < 0)
        return -1;
    int count = nm_chat_tokenize_next(s->tok, (nm_chat_kind)tmpl, (const nm_chat_msg *)msgs, n,
                                      prev, prev ? n_prev : 0, &ids, &s->err);
    if (count < 0)
        return -1;
    if (tokens && max_tokens > 0)
        memcpy(tokens, ids, (size_t)(count < max_tokens ? count : max_tokens) * sizeof *ids);
    free(ids);
    return count;
}

int32_t numalm_chat_end_of_turn(numalm_session *s, int tmpl) {
    if (need_tokenizer(s) < 0 || check_tmpl(s, tmpl) < 0)
        return -1;
    return nm_chat_end_of_turn(s->tok, (nm_chat_kind)tmpl);
}

bool numalm_token_is_eog(const numalm_session *s, int32_t token) {
    return s->tok && nm_token_is_eog(s->tok, token);
}
