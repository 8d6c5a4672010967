/* libFuzzer target for the GGUF reader: any byte string must be either read
 * and validated, or refused with a message; never a crash, a leak or a hang.
 * Valid files also go through the llama hyperparameter and tensor checks. */
#include "gguf/gguf.h"
#include "gguf/llama_hparams.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
    /* lookups over whatever was read */
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (nm_gguf_find_tensor(g, g->tensors[i].name) == NULL)
            __builtin_trap();
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (nm_gguf_find(g, g->kv[i].key) == NULL)
            __builtin_trap();
    nm_gguf_close(g);
    return 0;
}
