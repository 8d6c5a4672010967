/* Text from a GGUF model with numalm's library, greedy. Build it against an
 * installed numalm and run it:
 *     cc generate.c $(pkg-config --cflags --libs numalm) -o generate
 *     ./generate model.gguf "Once upon a time" 32 */
#include <numalm.h>

#include <stdio.h>
#include <stdlib.h>

static int print_text(void *user, const char *text, size_t len) {
    (void)user;
    fwrite(text, 1, len, stdout);
    return 0; /* go on */
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL.gguf PROMPT [N_TOKENS]\n", argv[0]);
        return 2;
    }
    numalm_options o;
    numalm_options_init(&o);
    o.model_path = argv[1];
    char err[1024];
    numalm_session *s = numalm_open(&o, err, sizeof err);
    if (!s) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    numalm_gen_params p;
    numalm_gen_params_init(&p); /* greedy */
    p.n_predict = argc > 3 ? atoi(argv[3]) : 32;
    p.echo = true; /* the prompt, then what follows */
    int rc = numalm_generate(s, argv[2], &p, print_text, NULL, NULL);
    if (rc < 0)
        fprintf(stderr, "%s\n", numalm_last_error(s));
    else
        putchar('\n');
    numalm_close(s);
    return rc < 0 ? 1 : 0;
}
