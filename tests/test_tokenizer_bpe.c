/* The byte-level BPE tokenizer against llama.cpp: its test vectors for the
 * Llama 3 (llama-bpe) and Qwen 3 (qwen2) vocabs, exact ids and an exact
 * round trip on every line; special pieces with and without parse_special;
 * the end-of-generation set; the gpt2 and default pre-tokenizers (the Llama
 * 3 vocab with tokenizer.ggml.pre replaced, ids from llama.cpp's
 * llama-tokenize on the same replacement); refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "gguf/gguf.h"
#include "runtime/pretokenize.h"
#include "runtime/tokenizer.h"
#include "test_vocab.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LLAMA3 "models/vocab/vocab-llama3.gguf"
#define QWEN3 "models/vocab/vocab-qwen3.gguf"

#define NEED(rel)                                                                                  \
    do {                                                                                           \
        if (!nm_test_have(rel)) {                                                                  \
            fprintf(stderr, "skipped: %s/%s is absent\n", nm_test_shared_dir(), rel);              \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* ---- llama.cpp's test vectors ------------------------------------------ */

static void test_llama3_vectors(void **state) {
    (void)state;
    NEED(LLAMA3);
    nm_test_vectors(LLAMA3, 46);
}

static void test_qwen3_vectors(void **state) {
    (void)state;
    NEED(QWEN3);
    nm_test_vectors(QWEN3, 46);
}

/* ---- the gpt2 and default pre-tokenizers ---------------------------------- */

/* The Llama 3 vocab with tokenizer.ggml.pre replaced, so that only the
 * pre-tokenizer differs. Expected ids: llama.cpp (d32676d) on the same file
 * rewritten with tokenizer.ggml.pre = "gpt-2" / "default":
 *   llama-tokenize -m FILE -f TEXT --ids --no-bos --no-parse-special
 * (each list ends at -1). */
typedef struct pre_case {
    const char *text;
    int32_t gpt2[48], dflt[48];
} pre_case;

static const pre_case PRE_CASES[] = {
    {"Hello world", {9906, 1917, -1}, {9906, 1917, -1}},
    {"I'VE been 'told he's there, 'RE you sure? We'Ve a'lL",
     {40,  6,   4592, 1027, 364,  83, 820,   568, 596, 1070, 11, 364,
      793, 499, 2771, 30,   1226, 6,  43712, 264, 6,   75,   43, -1},
     {40, 6,   4592, 1027, 220, 6,    83, 820,   568, 6, 82, 1070, 11, 220,
      6,  793, 499,  2771, 30,  1226, 6,  43712, 264, 6, 75, 43,   -1}},
    {"3 33 333 3333 33333 1234567 3.14 3..3",
     {18,   220,  1644, 220, 8765, 220, 1644, 1644, 220, 1644, 8765, 220,
      4513, 1774, 3080, 220, 18,   13,  975,  220,  18,  497,  18,   -1},
     {18,   220,   1644, 220, 8765, 220, 8765, 18,  220, 8765, 1644, 220,
      4513, 10961, 22,   220, 18,   13,  975,  220, 18,  497,  18,   -1}},
    {"  leading   and trailing spaces  ",
     {220, 6522, 256, 323, 28848, 12908, 256, -1},
     {220, 6522, 256, 323, 28848, 12908, 256, -1}},
    {"tabs\tand\n\nnew\r\nlines \n\t x",
     {32093, 197, 438, 198, 198, 943, 201, 198, 8128, 720, 197, 865, -1},
     {32093, 197, 438, 198, 198, 943, 201, 198, 8128, 720, 197, 865, -1}},
    {"$+<=>^~|` !!?? (brackets) [x] {y} @#%&*_-/",
     {3,   10, 27, 2228, 61, 93, 91,  63, 11261, 7801, 320, 1347,  18889, 8,
      510, 87, 60, 314,  88, 92, 571, 2,  4,     5,    9,   40411, 14,    -1},
     {3,  10, 27, 2228, 61, 93, 91, 63,  220, 3001, 7801, 220, 7, 1347,  18889, 8, 220,
      58, 87, 60, 220,  90, 88, 92, 220, 31,  2,    4,    5,   9, 40411, 14,    -1}},
    {"\320\275\320\265\321\211\320\276 \320\275\320\260 "
     "\320\221\321\212\320\273\320\263\320\260\321\200\321\201\320\272\320\270 \302\275 \302\276 "
     "\331\243\331\244\331\245 \342\221\240\342\221\241",
     {79862, 102118, 13373, 64571,  34694,  3114, 112203, 80112, 2188,   121, 2188,
      122,   100256, 96,    124079, 124043, 2928, 239,    254,   119560, -1},
     {79862, 102118, 13373, 64571,  34694,  3114,   112203, 80112,  220,    27154,
      220,   68496,  220,   117413, 124079, 124043, 220,    118075, 119560, -1}},
    {"\360\237\232\200 (normal) \360\237\230\266\342\200\215\360\237\214\253\357\270\217 "
     "\342\234\205 \360\237\246\231.cpp",
     {9468, 248,   222,   320, 8416,  8,  27623, 114, 102470, 9468, 234,
      104,  31643, 26602, 227, 11410, 99, 247,   13,  11055,  -1},
     {9468, 248, 222,   220,   7,   8416,  8,  27623, 114, 102470, 9468,
      234,  104, 31643, 26602, 227, 11410, 99, 247,   13,  11055,  -1}},
    {"Hello, y'all! How are you \360\237\230\201 "
     "?\346\210\221\346\203\263\345\234\250apple\345\267\245\344\275\2341314151\345\244\251\357\275"
     "\236",
     {9906,  11,     379,   6,     543,    0,    2650, 527,  499,   27623, 223, 949,
      37046, 101067, 19000, 23182, 102301, 1032, 975,  9690, 36827, 21909, -1},
     {9906, 11,    379,    6,     543,   0,      2650, 527,   499, 27623, 223,   220,
      30,   37046, 101067, 19000, 23182, 102301, 9263, 18136, 16,  36827, 21909, -1}},
    {"\302\253quotes\302\273 \342\200\224 dashes\342\200\246 and \342\200\230curly\342\200\231 "
     "\342\200\234ones\342\200\235",
     {24633, 54382, 13289, 2001, 88646, 1981, 323, 3451, 2407, 398, 529, 1054, 3233, 863, -1},
     {24633, 54382, 13289, 220, 2345, 88646, 1981, 323, 220, 14336, 2407, 398, 529, 220, 2118, 3233,
      863, -1}},
    {"   \n\n   end", {35033, 256, 842, -1}, {35033, 256, 842, -1}},
    {"x=1;y=22;z=333;w=4444",
     {87, 28, 16, 26, 88, 28, 1313, 26, 89, 28, 8765, 26, 86, 28, 2096, 2096, -1},
     {87, 28, 16, 26, 88, 28, 1313, 26, 89, 28, 8765, 26, 86, 28, 14870, 19, -1}},
};

static int count_ids(const int32_t *v) {
    int n = 0;
    while (v[n] >= 0)
        n++;
    return n;
}

/* Loads g's tokenizer with tokenizer.ggml.pre set to `pre` in memory. */
static nm_tokenizer *load_with_pre(nm_gguf *g, const char *pre, nm_error *err) {
    nm_gguf_kv *kv = (nm_gguf_kv *)nm_gguf_find(g, "tokenizer.ggml.pre");
    assert_non_null(kv);
    nm_gguf_str keep = kv->v.str;
    kv->v.str = (nm_gguf_str){strlen(pre), (char *)pre};
    nm_tokenizer *t = nm_tokenizer_load(g, err);
    kv->v.str = keep;
    return t;
}

static void run_pre(const char *pre, int which) {
    NEED(LLAMA3);
    nm_gguf *g = nm_test_open_gguf(LLAMA3);
    nm_error err = {{0}};
    nm_tokenizer *t = load_with_pre(g, pre, &err);
    if (!t)
        fail_msg("%s", err.msg);
    assert_string_equal(nm_tokenizer_pre_name(t), which ? "default" : "gpt2");
    int bad = 0;
    for (size_t i = 0; i < sizeof PRE_CASES / sizeof PRE_CASES[0]; i++) {
        const int32_t *want = which ? PRE_CASES[i].dflt : PRE_CASES[i].gpt2;
        const char *s = PRE_CASES[i].text;
        bad += nm_test_check_ids(t, s, strlen(s), 0, want, count_ids(want), pre);
        size_t dlen;
        char *text = nm_test_detokenize(t, want, count_ids(want), &dlen);
        assert_int_equal(dlen, strlen(s));
        assert_memory_equal(text, s, dlen);
        free(text);
    }
    assert_int_equal(bad, 0);
    nm_tokenizer_free(t);
    nm_gguf_close(g);
}

static void test_gpt2_pre(void **state) {
    (void)state;
    run_pre("gpt2", 0);
    run_pre("gpt-2", 0); /* llama.cpp's spelling */
}

static void test_default_pre(void **state) {
    (void)state;
    run_pre("default", 1);
}

static void test_unknown_pre_refused(void **state) {
    (void)state;
    NEED(LLAMA3);
    nm_gguf *g = nm_test_open_gguf(LLAMA3);
    nm_error err = {{0}};
    assert_null(load_with_pre(g, "deepseek-llm", &err));
    assert_non_null(strstr(err.msg, "tokenizer.ggml.pre 'deepseek-llm' is not supported"));
    assert_non_null(strstr(err.msg, "llama-bpe"));
    nm_gguf_close(g);
}

/* ---- special pieces and the end of generation ------------------------------- */

/* Expected ids: llama.cpp's llama-tokenize on the same text, with BOS as the
 * vocab asks, --parse-special (its default) and --no-parse-special. */
static void test_llama3_specials(void **state) {
    (void)state;
    NEED(LLAMA3);
    nm_gguf *g = nm_test_open_gguf(LLAMA3);
    nm_tokenizer *t = nm_test_tokenizer(g);
    static const char text[] =
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>";
    static const int32_t special[] = {128000, 128000, 128006, 882, 128007, 271, 13347, 128009};
    static const int32_t plain[] = {128000, 27,   91,    7413, 3659, 4424, 91,  1822, 91,   2527,
                                    8932,   851,  91,    29,   882,  27,   91,  408,  8932, 851,
                                    91,     1363, 13347, 27,   91,   68,   354, 851,  91,   29};
    assert_int_equal(nm_test_check_ids(t, text, strlen(text),
                                       NM_TOK_ADD_SPECIAL | NM_TOK_PARSE_SPECIAL, special, 8,
                                       "llama3 special"),
                     0);
    assert_int_equal(
        nm_test_check_ids(t, text, strlen(text), NM_TOK_ADD_SPECIAL, plain, 30, "llama3"), 0);
    assert_true(nm_tokenizer_add_bos(t));
    assert_false(nm_tokenizer_add_eos(t));
    assert_int_equal(nm_tokenizer_bos(t), 128000);
    assert_int_equal(nm_tokenizer_eot(t), 128009);
    assert_string_equal(nm_tokenizer_kind_name(t), "BPE");
    assert_string_equal(nm_tokenizer_pre_name(t), "llama-bpe");
    /* <|end_of_text|> (EOS) and <|eot_id|> end generation (this is the
     * Llama 3.0 vocab: no <|eom_id|>) */
    assert_true(nm_token_is_eog(t, 128001));
    assert_true(nm_token_is_eog(t, 128009));
    assert_int_equal(nm_tokenizer_find(t, "<|eom_id|>"), -1);
    assert_false(nm_token_is_eog(t, 128000));
    assert_false(nm_token_is_eog(t, 128006));
    assert_false(nm_token_is_eog(t, 13347));
    assert_false(nm_token_is_eog(t, -1));
    /* control tokens print nothing; their piece is their text */
    char buf[64];
    assert_int_equal(nm_token_to_text(t, 128009, 13347, buf, sizeof buf), 0);
    assert_string_equal(nm_token_piece(t, 128009), "<|eot_id|>");
    assert_string_equal(nm_token_type_name(t, 128009), "control");
    assert_string_equal(nm_token_type_name(t, 13347), "normal");
    assert_int_equal(nm_token_to_text(t, 13347, -1, buf, sizeof buf), 2);
    assert_memory_equal(buf, "Hi", 2);
    assert_string_equal(nm_token_piece(t, 1917), "\xc4\xa0world"); /* "Ġworld" */
    nm_tokenizer_free(t);
    nm_gguf_close(g);
}

static void test_qwen3_specials(void **state) {
    (void)state;
    NEED(QWEN3);
    nm_gguf *g = nm_test_open_gguf(QWEN3);
    nm_tokenizer *t = nm_test_tokenizer(g);
    static const char text[] = "<|im_start|>user\nHi<think>x</think><|im_end|>";
    static const int32_t special[] = {151644, 872, 198, 13048, 151667, 87, 151668, 151645};
    /* <think> and </think> are user-defined: matched even without parsing */
    static const int32_t plain[] = {27,     91, 318,    4906, 91, 29,  872,  198, 13048,
                                    151667, 87, 151668, 27,   91, 318, 6213, 91,  29};
    assert_int_equal(nm_test_check_ids(t, text, strlen(text),
                                       NM_TOK_ADD_SPECIAL | NM_TOK_PARSE_SPECIAL, special, 8,
                                       "qwen3 special"),
                     0);
    assert_int_equal(
        nm_test_check_ids(t, text, strlen(text), NM_TOK_ADD_SPECIAL, plain, 18, "qwen3"), 0);
    assert_false(nm_tokenizer_add_bos(t)); /* the file says so: no BOS added */
    assert_string_equal(nm_tokenizer_pre_name(t), "qwen2");
    assert_int_equal(nm_tokenizer_eos(t), 151645);
    assert_int_equal(nm_tokenizer_eot(t), 151645);
    assert_true(nm_token_is_eog(t, 151645));  /* <|im_end|> */
    assert_true(nm_token_is_eog(t, 151643));  /* <|endoftext|> */
    assert_false(nm_token_is_eog(t, 151644)); /* <|im_start|> */
    assert_false(nm_token_is_eog(t, 151667)); /* <think> */
    char buf[64];
    assert_int_equal(nm_token_to_text(t, 151667, 872, buf, sizeof buf), 7);
    assert_memory_equal(buf, "<think>", 7);
    nm_tokenizer_free(t);
    nm_gguf_close(g);
}

/* Invalid UTF-8 is read as llama.cpp reads it (U+FFFD for a bad byte), and
 * long runs without a break, any bytes at all, never fail. */
static void test_odd_bytes(void **state) {
    (void)state;
    NEED(QWEN3);
    nm_gguf *g = nm_test_open_gguf(QWEN3);
    nm_tokenizer *t = nm_test_tokenizer(g);
    int32_t *a, *b;
    nm_error err = {{0}};
    int na = nm_tokenize(t, "x\xff y", 4, 0, &a, &err);
    int nb = nm_tokenize(t, "x\xef\xbf\xbd y", 6, 0, &b, &err);
    assert_true(na > 0);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, (size_t)na * sizeof *a);
    free(a), free(b);
    static char big[1 << 16];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)(i * 7 % 251 + 1);
    assert_true(nm_tokenize(t, big, sizeof big, NM_TOK_PARSE_SPECIAL, &a, &err) > 0);
    free(a);
    memset(big, 'a', sizeof big);
    assert_true(nm_tokenize(t, big, sizeof big, 0, &a, &err) > 0);
    free(a);
    nm_tokenizer_free(t);
    nm_gguf_close(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama3_vectors),
        cmocka_unit_test(test_qwen3_vectors),
        cmocka_unit_test(test_gpt2_pre),
        cmocka_unit_test(test_default_pre),
        cmocka_unit_test(test_unknown_pre_refused),
        cmocka_unit_test(test_llama3_specials),
        cmocka_unit_test(test_qwen3_specials),
        cmocka_unit_test(test_odd_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
