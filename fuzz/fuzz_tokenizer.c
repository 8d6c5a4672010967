/* libFuzzer target for the tokenizers: any bytes, as any prompt may be,
 * through the Llama 3 and Qwen 3 BPE vocabs (llama-bpe, qwen2, and the
 * Llama 3 vocab again with the gpt2 and default pre-tokenizers) and the
 * LLaMA SentencePiece vocab, with and without special-token parsing. Every
 * id must be in range, and text that is valid UTF-8 must decode back to
 * itself exactly. The vocabs come from ../shared/models/vocab (or
 * $NUMALM_SHARED/models/vocab); scripts/fuzz.sh skips this target without
 * them. */
#include "gguf/gguf.h"
#include "runtime/tokenizer.h"
#include "runtime/unicode.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { N_VOCABS = 5 };
static nm_gguf *files[3];
static nm_tokenizer *toks[N_VOCABS];

static nm_gguf *open_vocab(const char *name) {
    char path[4096];
    const char *shared = getenv("NUMALM_SHARED");
    if (shared && *shared)
        snprintf(path, sizeof path, "%s/models/vocab/%s", shared, name);
    else
        snprintf(path, sizeof path, "%.*s/../../shared/models/vocab/%s",
                 (int)(strrchr(__FILE__, '/') - __FILE__), __FILE__, name); /* beside the source */
    nm_error err = {{0}};
    nm_gguf *g = nm_gguf_open(path, &err);
    if (!g) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", err.msg);
        exit(2);
    }
    return g;
}

static nm_tokenizer *load(nm_gguf *g, const char *pre) {
    nm_gguf_kv *kv = pre ? (nm_gguf_kv *)nm_gguf_find(g, "tokenizer.ggml.pre") : NULL;
    nm_gguf_str keep = {0};
    if (kv) {
        keep = kv->v.str;
        kv->v.str = (nm_gguf_str){strlen(pre), (char *)pre};
    }
    nm_error err = {{0}};
    nm_tokenizer *t = nm_tokenizer_load(g, &err);
    if (kv)
        kv->v.str = keep;
    if (!t) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", err.msg);
        exit(2);
    }
    return t;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    files[0] = open_vocab("vocab-llama3.gguf");
    files[1] = open_vocab("vocab-qwen3.gguf");
    files[2] = open_vocab("ggml-vocab-llama-spm.gguf");
    toks[0] = load(files[0], NULL);
    toks[1] = load(files[1], NULL);
    toks[2] = load(files[0], "gpt2");
    toks[3] = load(files[0], "default");
    toks[4] = load(files[2], NULL);
    return 0;
}

/* Whether every character decodes and encodes back to the same bytes (so
 * that the tokenizer sees exactly this text). */
static int clean_utf8(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        unsigned char back[4];
        size_t k = nm_utf8_decode(s + i, n - i, &cp);
        if (cp == 0xFFFD && !(k == 3 && s[i] == 0xEF))
            return 0;
        if (nm_utf8_encode(cp, back) != k || memcmp(back, s + i, k))
            return 0;
        i += k;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0)
        return 0;
    unsigned flags = data[0] & 3; /* NM_TOK_ADD_SPECIAL, NM_TOK_PARSE_SPECIAL */
    int which = data[0] >> 2;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    nm_tokenizer *t = toks[which % N_VOCABS];
    nm_error err = {{0}};
    int32_t *ids;
    int n = nm_tokenize(t, text, len, flags, &ids, &err);
    if (n < 0) { /* a vocab that spells every byte never refuses a text */
        fprintf(stderr, "tokenize failed: %s\n", err.msg);
        __builtin_trap();
    }
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= nm_tokenizer_n_vocab(t))
            __builtin_trap();
    /* SentencePiece writes a space as U+2581 "▁" and reads "▁" back as a
     * space, so a text holding "▁" itself cannot come back (nor in
     * llama.cpp) */
    bool spm_mark = which % N_VOCABS == 4 && memmem(text, len, "\xe2\x96\x81", 3);
    if (flags == 0 && !spm_mark && clean_utf8(data + 1, len)) {
        size_t cap = (size_t)n * nm_tokenizer_max_text(t) + 1, w = 0;
        char *back = malloc(cap);
        if (!back)
            __builtin_trap();
        for (int i = 0; i < n; i++)
            w += nm_token_to_text(t, ids[i], i ? ids[i - 1] : -1, back + w, cap - w);
        if (w != len || memcmp(back, text, len))
            __builtin_trap();
        free(back);
    }
    free(ids);
    return 0;
}
