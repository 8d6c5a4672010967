/* libFuzzer target for the GGUF reader: any byte string must be either read
 * and validated, or refused with a message; never a crash, a leak or a hang.
 * Valid files also go through the llama hyperparameter and tensor checks, and
 * the tokenizer and chat template metadata: loaded (then a text tokenized and
 * decoded) or refused with a message. Tensor data inside the input goes
 * through the type table's scale check and dequantizer (the first rows),
 * whatever the bytes: a broken block may give NaN, never a crash. */
#include "gguf/ggml_types.h"
#include "gguf/gguf.h"
#include "gguf/quant.h"
#include "gguf/llama_hparams.h"
#include "runtime/chat.h"
#include "runtime/tokenizer.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_tokenizer(const nm_gguf *g) {
    static const char text[] = "Hello world <|im_end|> 123 \xc3\xa9\xff <s>";
    nm_error err = {{0}};
    nm_tokenizer *t = nm_tokenizer_load(g, &err);
    if (!t) {
        if (!err.msg[0])
            __builtin_trap();
        return;
    }
    int32_t *ids;
    int n = nm_tokenize(t, text, sizeof text - 1, NM_TOK_ADD_SPECIAL | NM_TOK_PARSE_SPECIAL, &ids,
                        &err);
    if (n < 0 && !err.msg[0])
        __builtin_trap();
    char *buf = malloc(nm_tokenizer_max_text(t) + 1);
    if (!buf)
        __builtin_trap();
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= nm_tokenizer_n_vocab(t))
            __builtin_trap();
        nm_token_to_text(t, ids[i], i ? ids[i - 1] : -1, buf, nm_tokenizer_max_text(t));
    }
    free(buf);
    if (n >= 0)
        free(ids);
    nm_chat_kind kind;
    err.msg[0] = 0;
    if (nm_chat_select(g, NULL, &kind, &err) < 0 && !err.msg[0])
        __builtin_trap();
    nm_tokenizer_free(t);
}

/* At most 64 KiB of a tensor's data, copied to an aligned buffer as the
 * loader's arenas are. */
static void check_tensor_data(const nm_gguf_tensor *t, const uint8_t *data, size_t size) {
    const nm_type_info *ti = nm_type_get(t->type);
    if (!ti || !ti->dequantize || t->file_offset >= size || !t->row_bytes)
        return;
    uint64_t len = size - t->file_offset < t->nbytes ? size - t->file_offset : t->nbytes;
    uint64_t rows = (len < 65536 ? len : 65536) / t->row_bytes;
    if (!rows || t->ne[0] > 65536)
        return;
    void *blocks = aligned_alloc(64, (size_t)(rows * t->row_bytes + 63) / 64 * 64);
    float *f = malloc((size_t)t->ne[0] * sizeof *f);
    if (!blocks || !f)
        __builtin_trap();
    memcpy(blocks, data + t->file_offset, (size_t)(rows * t->row_bytes));
    int64_t n_blocks = (int64_t)(rows * t->row_bytes / ti->type_size);
    if (nm_type_find_bad_block(t->type, blocks, n_blocks) >= n_blocks)
        __builtin_trap();
    for (uint64_t r = 0; r < rows; r++)
        if (nm_dequantize_row(t->type, (const char *)blocks + r * t->row_bytes, f,
                              (int64_t)t->ne[0]) != 0)
            __builtin_trap();
    free(blocks);
    free(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0)
        return 0; /* fmemopen refuses an empty buffer */
    FILE *f = fmemopen((void *)data, size, "rb");
    if (!f)
        return 0;
    nm_error err = {{0}};
    nm_gguf *g = nm_gguf_read(f, size, "fuzz.gguf", &err);
    fclose(f);
    if (!g) {
        /* every refusal must say something, and name the input */
        if (strncmp(err.msg, "fuzz.gguf: ", 11))
            __builtin_trap();
        return 0;
    }
    for (int strict = 0; strict < 2; strict++) {
        nm_llama_hparams hp;
        err.msg[0] = 0;
        if (nm_llama_hparams_read(g, &hp, strict, &err) == 0)
            (void)nm_llama_check_tensors(g, &hp, &err);
        else if (!err.msg[0])
            __builtin_trap();
    }
    check_tokenizer(g);
    /* lookups over whatever was read */
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        if (nm_gguf_find_tensor(g, g->tensors[i].name) == NULL)
            __builtin_trap();
        check_tensor_data(&g->tensors[i], data, size);
    }
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (nm_gguf_find(g, g->kv[i].key) == NULL)
            __builtin_trap();
    nm_gguf_close(g);
    return 0;
}
