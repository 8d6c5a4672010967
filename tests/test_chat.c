/* The built-in chat templates against llama.cpp: every template, two
 * conversations, with and without the generation prompt, byte for byte;
 * for ChatML (Qwen 3 vocab) and Llama 3 (Llama 3 vocab) the prompt tokens
 * too. Template detection from the vocab files' own Jinja templates, the
 * override, and the messages for templates that are not built in. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "gguf/gguf.h"
#include "runtime/chat.h"
#include "test_vocab.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LLAMA3 "models/vocab/vocab-llama3.gguf"
#define QWEN3 "models/vocab/vocab-qwen3.gguf"

static const nm_chat_msg CONV0[] = {
    {"system", "You are a helpful assistant."},
    {"user", "Hello"},
    {"assistant", " Hi there! How can I help?\n"},
    {"user", "  What is 2+2?  \n"},
};
static const nm_chat_msg CONV1[] = {{"user", "Hi"}};

/* Expected text and ids: llama.cpp (d32676d), from a program calling its
 * public API on CONV0 and CONV1 above:
 *   llama_chat_apply_template(NAME, messages, n, add_ass, buf, size)
 * (the built-in template code, which llama-cli --chat-template NAME and
 * llama-server without --jinja use), then for chatml and llama3
 *   llama_tokenize(vocab, text, n, ids, max, add_special = true, parse_special = true)
 * with vocab-qwen3.gguf and vocab-llama3.gguf loaded vocab_only, as
 * llama-server tokenizes a chat prompt. The files' own Jinja templates give
 * the same for both conversations: llama-server (--jinja, its default) on
 * tiny-qwen3-e64-f32.gguf and tiny-llama3-e64-f32.gguf (the same vocabs and
 * templates), POST /apply-template {"messages": CONV} and then POST
 * /tokenize {"content": prompt, "add_special": true, "parse_special": true},
 * returned exactly the chatml and llama3 texts and ids below with the
 * generation prompt (ids lists end at -1). */
typedef struct chat_case {
    const char *name;
    int conv, add;
    const char *text;
    int32_t ids[64];
} chat_case;

static const chat_case CASES[] = {
    {"chatml",
     0,
     0,
     "<|im_start|>system\nYou are a helpful "
     "assistant.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n Hi there! "
     "How can I help?\n<|im_end|>\n<|im_start|>user\n  What is 2+2?  \n<|im_end|>\n",
     {151644, 8948, 198,  2610,   525,    264,    10950,  17847, 13,    151645, 198,  151644,
      872,    198,  9707, 151645, 198,    151644, 77091,  198,   21018, 1052,   0,    2585,
      646,    358,  1492, 5267,   151645, 198,    151644, 872,   198,   220,    3555, 374,
      220,    17,   10,   17,     30,     2303,   151645, 198,   -1}},
    {"chatml",
     0,
     1,
     "<|im_start|>system\nYou are a helpful "
     "assistant.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n Hi there! "
     "How can I help?\n<|im_end|>\n<|im_start|>user\n  What is 2+2?  "
     "\n<|im_end|>\n<|im_start|>assistant\n",
     {151644, 8948, 198,  2610,   525,    264,    10950,  17847, 13,     151645, 198,  151644,
      872,    198,  9707, 151645, 198,    151644, 77091,  198,   21018,  1052,   0,    2585,
      646,    358,  1492, 5267,   151645, 198,    151644, 872,   198,    220,    3555, 374,
      220,    17,   10,   17,     30,     2303,   151645, 198,   151644, 77091,  198,  -1}},
    {"chatml",
     1,
     0,
     "<|im_start|>user\nHi<|im_end|>\n",
     {151644, 872, 198, 13048, 151645, 198, -1}},
    {"chatml",
     1,
     1,
     "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
     {151644, 872, 198, 13048, 151645, 198, 151644, 77091, 198, -1}},
    {"llama3",
     0,
     0,
     "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful "
     "assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_"
     "header_id|>assistant<|end_header_id|>\n\nHi there! How can I "
     "help?<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>",
     {128000, 128006, 9125, 128007, 271, 2675, 527,    264,    11190,  18328,  13,
      128009, 128006, 882,  128007, 271, 9906, 128009, 128006, 78191,  128007, 271,
      13347,  1070,   0,    2650,   649, 358,  1520,   30,     128009, 128006, 882,
      128007, 271,    3923, 374,    220, 17,   10,     17,     30,     128009, -1}},
    {"llama3",
     0,
     1,
     "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful "
     "assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_"
     "header_id|>assistant<|end_header_id|>\n\nHi there! How can I "
     "help?<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhat is "
     "2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
     {128000, 128006, 9125,   128007, 271,  2675,   527,    264,    11190,  18328,  13,    128009,
      128006, 882,    128007, 271,    9906, 128009, 128006, 78191,  128007, 271,    13347, 1070,
      0,      2650,   649,    358,    1520, 30,     128009, 128006, 882,    128007, 271,   3923,
      374,    220,    17,     10,     17,   30,     128009, 128006, 78191,  128007, 271,   -1}},
    {"llama3",
     1,
     0,
     "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
     {128000, 128006, 882, 128007, 271, 13347, 128009, -1}},
    {"llama3",
     1,
     1,
     "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_"
     "header_id|>\n\n",
     {128000, 128006, 882, 128007, 271, 13347, 128009, 128006, 78191, 128007, 271, -1}},
    {"llama2",
     0,
     0,
     "[INST] You are a helpful assistant.\nHello [/INST] Hi there! How can I help?\n</s>[INST]   "
     "What is 2+2?  \n [/INST]",
     {-1}},
    {"llama2",
     0,
     1,
     "[INST] You are a helpful assistant.\nHello [/INST] Hi there! How can I help?\n</s>[INST]   "
     "What is 2+2?  \n [/INST]",
     {-1}},
    {"llama2", 1, 0, "[INST] Hi [/INST]", {-1}},
    {"llama2", 1, 1, "[INST] Hi [/INST]", {-1}},
    {"llama2-sys",
     0,
     0,
     "[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nHello [/INST] Hi there! How can I "
     "help?\n</s>[INST]   What is 2+2?  \n [/INST]",
     {-1}},
    {"llama2-sys",
     0,
     1,
     "[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nHello [/INST] Hi there! How can I "
     "help?\n</s>[INST]   What is 2+2?  \n [/INST]",
     {-1}},
    {"llama2-sys", 1, 0, "[INST] Hi [/INST]", {-1}},
    {"llama2-sys", 1, 1, "[INST] Hi [/INST]", {-1}},
    {"llama2-sys-bos",
     0,
     0,
     "[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nHello [/INST] Hi there! How can I "
     "help?\n</s><s>[INST]   What is 2+2?  \n [/INST]",
     {-1}},
    {"llama2-sys-bos",
     0,
     1,
     "[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nHello [/INST] Hi there! How can I "
     "help?\n</s><s>[INST]   What is 2+2?  \n [/INST]",
     {-1}},
    {"llama2-sys-bos", 1, 0, "[INST] Hi [/INST]", {-1}},
    {"llama2-sys-bos", 1, 1, "[INST] Hi [/INST]", {-1}},
    {"llama2-sys-strip",
     0,
     0,
     "[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nHello [/INST]Hi there! How can I "
     "help?</s>[INST] What is 2+2? [/INST]",
     {-1}},
    {"llama2-sys-strip",
     0,
     1,
     "[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nHello [/INST]Hi there! How can I "
     "help?</s>[INST] What is 2+2? [/INST]",
     {-1}},
    {"llama2-sys-strip", 1, 0, "[INST] Hi [/INST]", {-1}},
    {"llama2-sys-strip", 1, 1, "[INST] Hi [/INST]", {-1}},
    {"mistral-v1",
     0,
     0,
     " [INST] You are a helpful assistant.\n\nHello [/INST]  Hi there! How can I help?\n</s> "
     "[INST]   What is 2+2?  \n [/INST]",
     {-1}},
    {"mistral-v1",
     0,
     1,
     " [INST] You are a helpful assistant.\n\nHello [/INST]  Hi there! How can I help?\n</s> "
     "[INST]   What is 2+2?  \n [/INST]",
     {-1}},
    {"mistral-v1", 1, 0, " [INST] Hi [/INST]", {-1}},
    {"mistral-v1", 1, 1, " [INST] Hi [/INST]", {-1}},
    {"mistral-v3",
     0,
     0,
     "[INST] You are a helpful assistant.\n\nHello[/INST] Hi there! How can I help?</s>[INST]   "
     "What is 2+2?  \n[/INST]",
     {-1}},
    {"mistral-v3",
     0,
     1,
     "[INST] You are a helpful assistant.\n\nHello[/INST] Hi there! How can I help?</s>[INST]   "
     "What is 2+2?  \n[/INST]",
     {-1}},
    {"mistral-v3", 1, 0, "[INST] Hi[/INST]", {-1}},
    {"mistral-v3", 1, 1, "[INST] Hi[/INST]", {-1}},
    {"mistral-v3-tekken",
     0,
     0,
     "[INST]You are a helpful assistant.\n\nHello[/INST] Hi there! How can I help?\n</s>[INST]  "
     "What is 2+2?  \n[/INST]",
     {-1}},
    {"mistral-v3-tekken",
     0,
     1,
     "[INST]You are a helpful assistant.\n\nHello[/INST] Hi there! How can I help?\n</s>[INST]  "
     "What is 2+2?  \n[/INST]",
     {-1}},
    {"mistral-v3-tekken", 1, 0, "[INST]Hi[/INST]", {-1}},
    {"mistral-v3-tekken", 1, 1, "[INST]Hi[/INST]", {-1}},
    {"mistral-v7",
     0,
     0,
     "[SYSTEM_PROMPT] You are a helpful assistant.[/SYSTEM_PROMPT][INST] Hello[/INST]  Hi there! "
     "How can I help?\n</s>[INST]   What is 2+2?  \n[/INST]",
     {-1}},
    {"mistral-v7",
     0,
     1,
     "[SYSTEM_PROMPT] You are a helpful assistant.[/SYSTEM_PROMPT][INST] Hello[/INST]  Hi there! "
     "How can I help?\n</s>[INST]   What is 2+2?  \n[/INST]",
     {-1}},
    {"mistral-v7", 1, 0, "[INST] Hi[/INST]", {-1}},
    {"mistral-v7", 1, 1, "[INST] Hi[/INST]", {-1}},
    {"mistral-v7-tekken",
     0,
     0,
     "[SYSTEM_PROMPT]You are a helpful assistant.[/SYSTEM_PROMPT][INST]Hello[/INST] Hi there! How "
     "can I help?\n</s>[INST]  What is 2+2?  \n[/INST]",
     {-1}},
    {"mistral-v7-tekken",
     0,
     1,
     "[SYSTEM_PROMPT]You are a helpful assistant.[/SYSTEM_PROMPT][INST]Hello[/INST] Hi there! How "
     "can I help?\n</s>[INST]  What is 2+2?  \n[/INST]",
     {-1}},
    {"mistral-v7-tekken", 1, 0, "[INST]Hi[/INST]", {-1}},
    {"mistral-v7-tekken", 1, 1, "[INST]Hi[/INST]", {-1}},
    {"gemma",
     0,
     0,
     "<start_of_turn>user\nYou are a helpful "
     "assistant.\n\nHello<end_of_turn>\n<start_of_turn>model\nHi there! How can I "
     "help?<end_of_turn>\n<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n",
     {-1}},
    {"gemma",
     0,
     1,
     "<start_of_turn>user\nYou are a helpful "
     "assistant.\n\nHello<end_of_turn>\n<start_of_turn>model\nHi there! How can I "
     "help?<end_of_turn>\n<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n",
     {-1}},
    {"gemma", 1, 0, "<start_of_turn>user\nHi<end_of_turn>\n", {-1}},
    {"gemma", 1, 1, "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n", {-1}},
};

static void test_texts(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        const chat_case *c = &CASES[i];
        nm_chat_kind kind;
        assert_int_equal(nm_chat_kind_parse(c->name, &kind), 0);
        assert_string_equal(nm_chat_kind_name(kind), c->name);
        char *text;
        size_t len;
        nm_error err = {{0}};
        const nm_chat_msg *m = c->conv ? CONV1 : CONV0;
        size_t n = c->conv ? 1 : 4;
        assert_int_equal(nm_chat_format(kind, m, n, c->add, &text, &len, &err), 0);
        if (len != strlen(c->text) || strcmp(text, c->text))
            fail_msg("%s conversation %d (generation prompt %d):\n want '%s'\n got  '%s'", c->name,
                     c->conv, c->add, c->text, text);
        free(text);
    }
}

static void check_tokens(const char *vocab, const char *name) {
    if (!nm_test_have(vocab)) {
        fprintf(stderr, "skipped: %s/%s is absent\n", nm_test_shared_dir(), vocab);
        skip();
    }
    nm_gguf *g = nm_test_open_gguf(vocab);
    nm_error err = {{0}};
    nm_tokenizer *tok = nm_tokenizer_load(g, &err);
    assert_non_null(tok);
    nm_chat_kind kind;
    /* the file's own template is recognised as this one */
    assert_int_equal(nm_chat_select(g, NULL, &kind, &err), 0);
    assert_string_equal(nm_chat_kind_name(kind), name);
    int checked = 0;
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        const chat_case *c = &CASES[i];
        if (strcmp(c->name, name))
            continue;
        int32_t *ids;
        int n = nm_chat_tokenize(tok, kind, c->conv ? CONV1 : CONV0, c->conv ? 1 : 4, c->add, &ids,
                                 &err);
        int n_want = 0;
        while (c->ids[n_want] >= 0)
            n_want++;
        if (n != n_want || memcmp(ids, c->ids, (size_t)n * sizeof *ids))
            fail_msg("%s conversation %d: %d tokens, llama.cpp has %d (or they differ)", name,
                     c->conv, n, n_want);
        free(ids);
        checked++;
    }
    assert_int_equal(checked, 4);
    nm_tokenizer_free(tok);
    nm_gguf_close(g);
}

static void test_chatml_tokens(void **state) {
    (void)state;
    check_tokens(QWEN3, "chatml");
}

static void test_llama3_tokens(void **state) {
    (void)state;
    check_tokens(LLAMA3, "llama3");
}

/* Markers as in the templates these families ship. */
static void test_detect(void **state) {
    (void)state;
    static const struct {
        const char *jinja, *want;
    } cases[] = {
        {"{{ '<|im_start|>' + message['role'] }}", "chatml"},
        {"<|start_header_id|>{{ role }}<|end_header_id|>", "llama3"},
        {"{{ bos_token }}[INST] {{ m }} [/INST]", "llama2"},
        {"[INST] <<SYS>>\\n{{ s }}\\n<</SYS>>", "llama2-sys"},
        {"{{ bos_token + '[INST] ' + content.strip() }} <<SYS>>", "llama2-sys-strip"},
        {"{{ bos_token + '[INST] ' }} <<SYS>>", "llama2-sys-bos"},
        {"[SYSTEM_PROMPT]{{ s }}[/SYSTEM_PROMPT][INST]", "mistral-v7"},
        {"{{ ' [INST] ' + system_message }}", "mistral-v1"},
        {"[AVAILABLE_TOOLS]{{ \"[INST]\" }}", "mistral-v3-tekken"},
        {"[AVAILABLE_TOOLS][INST]", "mistral-v3"},
        {"<start_of_turn>user\\n{{ c }}<end_of_turn>", "gemma"},
        {"gemma", "gemma"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        nm_chat_kind kind;
        if (nm_chat_detect(cases[i].jinja, &kind) < 0)
            fail_msg("'%s' not recognised", cases[i].jinja);
        assert_string_equal(nm_chat_kind_name(kind), cases[i].want);
    }
    static const char *const unknown[] = {
        "{{ '<|im_start|>' + role + '<|im_sep|>' }}", /* Phi-4 */
        "<|user|>\\n{{ c }}<|end|>\\n<|assistant|>",  /* Phi-3 */
        "### Instruction: {{ c }}",
        "",
    };
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        nm_chat_kind kind;
        assert_int_equal(nm_chat_detect(unknown[i], &kind), -1);
    }
}

static void test_select_messages(void **state) {
    (void)state;
    if (!nm_test_have(QWEN3))
        skip();
    nm_gguf *g = nm_test_open_gguf(QWEN3);
    nm_chat_kind kind;
    nm_error err = {{0}};
    assert_int_equal(nm_chat_select(g, "llama3", &kind, &err), 0); /* the override wins */
    assert_int_equal(kind, NM_CHAT_LLAMA3);
    assert_int_equal(nm_chat_select(g, "vicuna", &kind, &err), -1);
    assert_non_null(strstr(err.msg, "--chat-template vicuna: not a built-in template"));
    assert_non_null(strstr(err.msg, "chatml"));
    /* a template we cannot read: the message names the override */
    nm_gguf_kv *kv = (nm_gguf_kv *)nm_gguf_find(g, "tokenizer.chat_template");
    assert_non_null(kv);
    nm_gguf_str keep = kv->v.str;
    kv->v.str = (nm_gguf_str){12, (char *)"### User: x "};
    assert_int_equal(nm_chat_select(g, NULL, &kind, &err), -1);
    kv->v.str = keep;
    assert_non_null(strstr(err.msg, "not one numalm recognises"));
    assert_non_null(strstr(err.msg, "--chat-template NAME"));
    nm_gguf_close(g);
}

static void test_end_of_turn(void **state) {
    (void)state;
    if (!nm_test_have(QWEN3) || !nm_test_have(LLAMA3))
        skip();
    const char *files[] = {QWEN3, LLAMA3};
    const char *ends[] = {"<|im_end|>", "<|eot_id|>"};
    nm_chat_kind kinds[] = {NM_CHAT_CHATML, NM_CHAT_LLAMA3};
    for (int f = 0; f < 2; f++) {
        nm_gguf *g = nm_test_open_gguf(files[f]);
        nm_error err = {{0}};
        nm_tokenizer *tok = nm_tokenizer_load(g, &err);
        assert_non_null(tok);
        int32_t end = nm_chat_end_of_turn(tok, kinds[f]);
        assert_int_equal(end, nm_tokenizer_find(tok, ends[f]));
        assert_true(nm_chat_is_stop(tok, kinds[f], end));
        assert_true(nm_chat_is_stop(tok, kinds[f], nm_tokenizer_eos(tok)));
        assert_false(nm_chat_is_stop(tok, kinds[f], 100));
        nm_tokenizer_free(tok);
        nm_gguf_close(g);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_texts),           cmocka_unit_test(test_chatml_tokens),
        cmocka_unit_test(test_llama3_tokens),   cmocka_unit_test(test_detect),
        cmocka_unit_test(test_select_messages), cmocka_unit_test(test_end_of_turn),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
