/* The llama-family hyperparameters and tensor shapes read from GGUF keys
 * (gguf/llama_hparams.c): every architecture's keys, per-layer arrays,
 * mixture-of-experts keys, and the refusals, each naming the key or tensor
 * and what was expected. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "gguf_builder.h"
#include "gguf_parse.h"
#include "gguf/ggml_types.h"
#include "gguf/gguf.h"
#include "gguf/llama_hparams.h"
#include "test_util.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void expect_llama_fail(const gb_llama *o, bool strict, const char *want1,
                              const char *want2) {
    gb b = {0};
    gb_write_llama(&b, o);
    nm_gguf *g = parse_ok(&b);
    nm_llama_hparams hp;
    nm_error err = {{0}};
    int rc = nm_llama_hparams_read(g, &hp, strict, &err);
    if (rc == 0)
        rc = nm_llama_check_tensors(g, &hp, &err);
    nm_gguf_close(g);
    gb_free(&b);
    if (rc == 0)
        fail_msg("accepted, expected '%s'", want1);
    assert_contains(err.msg, "t.gguf: ");
    assert_contains(err.msg, want1);
    if (want2)
        assert_contains(err.msg, want2);
}

static void test_llama_refusals(void **state) {
    (void)state;
    gb_llama o = gb_llama_default();
    o.n_head = 3; /* 32 % 3 */
    o.n_head_kv = 3;
    expect_llama_fail(&o, false, "llama.embedding_length 32 is not a multiple of", "head_count 3");
    o = gb_llama_default();
    o.n_head_kv = 3; /* 4 % 3 */
    expect_llama_fail(&o, false, "head_count 4 is not a multiple of", "head_count_kv 3");
    o = gb_llama_default();
    o.arch = "gpt2";
    expect_llama_fail(&o, true, "architecture 'gpt2' is not supported yet", NULL);
    o = gb_llama_default();
    o.extra_key = "llama.rope.scaling.type";
    o.extra_val = "yarn";
    expect_llama_fail(&o, true, "key 'llama.rope.scaling.type'",
                      "'yarn': yarn rope scaling is not supported yet");
    o.extra_val = "longrope";
    expect_llama_fail(&o, true, "'longrope': longrope rope scaling", NULL);
    o.extra_val = "bogus";
    expect_llama_fail(&o, true, "'bogus': this rope scaling", NULL);
    o = gb_llama_default();
    o.matrix_type = NM_TYPE_IQ2_XXS; /* a type without kernels */
    o.n_embd = 256, o.n_ff = 512;
    expect_llama_fail(&o, true, "tensor 'token_embd.weight' has type IQ2_XXS",
                      "which is not supported yet");
    o = gb_llama_default();
    o.with_tokens = 0;
    o.n_vocab = 1; /* n_vocab comes from token_embd's rows */
    gb b = {0};
    gb_write_llama(&b, &o);
    nm_gguf *g = parse_ok(&b);
    nm_llama_hparams hp;
    nm_error err = {{0}};
    assert_int_equal(nm_llama_hparams_read(g, &hp, true, &err), 0);
    assert_int_equal(hp.n_vocab, 1);
    nm_gguf_close(g);
    gb_free(&b);
}

static void test_llama_keys(void **state) {
    (void)state;
    /* rope scaling "none" and a neutral factor pass; a real factor does not */
    gb_llama o = gb_llama_default();
    o.extra_key = "llama.rope.scaling.type";
    o.extra_val = "none";
    gb b = {0};
    gb_write_llama(&b, &o);
    nm_gguf *g = parse_ok(&b);
    nm_llama_hparams hp;
    nm_error err = {{0}};
    if (nm_llama_hparams_read(g, &hp, true, &err))
        fail_msg("%s", err.msg);
    nm_gguf_close(g);
    gb_free(&b);
    /* a hand-written file: factor key, missing block_count, wrong key type */
    gb_header(&b, 3, 0, 3);
    gb_kv_str(&b, "general.architecture", "llama");
    gb_kv_u32(&b, "llama.block_count", 1);
    gb_kv_str(&b, "llama.embedding_length", "big");
    g = parse_ok(&b);
    assert_int_equal(nm_llama_hparams_read(g, &hp, true, &err), -1);
    assert_contains(err.msg, "key 'llama.embedding_length' (at byte");
    assert_contains(err.msg, "has type string; expected an integer");
    nm_gguf_close(g);
    gb_free(&b);
    gb_header(&b, 3, 0, 1);
    gb_kv_str(&b, "general.architecture", "llama");
    g = parse_ok(&b);
    assert_int_equal(nm_llama_hparams_read(g, &hp, false, &err), -1);
    assert_contains(err.msg, "key 'llama.block_count' is missing");
    nm_gguf_close(g);
    gb_free(&b);
    gb_header(&b, 3, 0, 6);
    gb_kv_str(&b, "general.architecture", "llama");
    gb_kv_f32(&b, "llama.rope.scaling.factor", 4.0f);
    gb_kv_u32(&b, "llama.block_count", 1);
    gb_kv_u32(&b, "llama.embedding_length", 8);
    gb_kv_u32(&b, "llama.feed_forward_length", 8);
    gb_kv_u32(&b, "llama.attention.head_count", 2);
    g = parse_ok(&b);
    assert_int_equal(nm_llama_hparams_read(g, &hp, true, &err), -1);
    assert_contains(err.msg, "key 'llama.context_length' is missing");
    nm_gguf_close(g);
    gb_free(&b);
}

/* Per-layer head counts are accepted when uniform, refused when not. */
static void test_llama_per_layer_arrays(void **state) {
    (void)state;
    for (int uniform = 0; uniform < 2; uniform++) {
        gb b = {0};
        gb_header(&b, 3, 0, 8);
        gb_kv_str(&b, "general.architecture", "llama");
        gb_kv_f32(&b, "llama.rope.scaling.factor", 4.0f);
        gb_kv_u32(&b, "llama.block_count", 2);
        gb_kv_u32(&b, "llama.embedding_length", 8);
        gb_kv_u32(&b, "llama.feed_forward_length", 8);
        gb_kv_arr_header(&b, "llama.attention.head_count", GB_I32, 2);
        gb_u32(&b, 2), gb_u32(&b, uniform ? 2 : 4);
        gb_kv_u32(&b, "llama.context_length", 64);
        gb_kv_arr_header(&b, "tokenizer.ggml.tokens", GB_STR, 1), gb_str(&b, "a");
        nm_gguf *g = parse_ok(&b);
        nm_llama_hparams hp;
        nm_error err = {{0}};
        int rc = nm_llama_hparams_read(g, &hp, false, &err);
        if (uniform) {
            if (rc)
                fail_msg("%s", err.msg);
            assert_int_equal(hp.n_head, 2);
            /* linear scaling (the default type): positions times 1/factor */
            assert_true(hp.rope_freq_scale == 0.25f && hp.rope_attn_factor == 1.0f);
        } else {
            assert_int_equal(rc, -1);
            assert_contains(err.msg, "'llama.attention.head_count'");
            assert_contains(err.msg, "per-layer values");
        }
        nm_gguf_close(g);
        gb_free(&b);
    }
}

static void expect_arch_ok(const gb_llama *o, nm_llama_hparams *hp) {
    gb b = {0};
    gb_write_llama(&b, o);
    nm_gguf *g = parse_ok(&b);
    nm_error err = {{0}};
    if (nm_llama_hparams_read(g, hp, true, &err) || nm_llama_check_tensors(g, hp, &err))
        fail_msg("%s: %s", o->arch, err.msg);
    nm_gguf_close(g);
    gb_free(&b);
}

/* The architectures numalm runs, each with what llama.cpp's graph reads:
 * rope type, head size from key_length, Q/K norms, optional biases; a
 * tensor outside the graph and other architectures are refused by name. */
static void test_architectures(void **state) {
    (void)state;
    nm_llama_hparams hp;
    gb_llama o = gb_llama_default();
    o.qkv_bias = 1; /* every architecture's optional Q/K/V biases */
    expect_arch_ok(&o, &hp);
    assert_int_equal(hp.arch_id, NM_ARCH_LLAMA), assert_int_equal(hp.rope_type, NM_ROPE_NORM);
    o.arch = "qwen2";
    expect_arch_ok(&o, &hp);
    assert_int_equal(hp.arch_id, NM_ARCH_QWEN2), assert_int_equal(hp.rope_type, NM_ROPE_NEOX);
    /* qwen3: head size 16 from key_length, not 32 / 4 heads; rope over it */
    o = gb_llama_default();
    o.arch = "qwen3", o.key_length = 16, o.qk_norm = 1;
    expect_arch_ok(&o, &hp);
    assert_int_equal(hp.arch_id, NM_ARCH_QWEN3), assert_int_equal(hp.rope_type, NM_ROPE_NEOX);
    assert_int_equal(hp.head_dim, 16), assert_int_equal(hp.n_rot, 16);
    assert_int_equal(hp.n_expert, 0);
    o.qk_norm = 0;
    expect_llama_fail(&o, true, "tensor 'blk.0.attn_q_norm.weight' is missing", NULL);
    /* a llama file with qwen3's norms: a tensor its graph does not read */
    o = gb_llama_default();
    o.qk_norm = 1;
    expect_llama_fail(&o, true, "tensor 'blk.0.attn_q_norm.weight' (info at byte",
                      "not part of the llama graph");
    o = gb_llama_default();
    o.extra_tensor = "blk.9.attn_norm.weight";
    expect_llama_fail(&o, true, "'blk.9.attn_norm.weight'", "block beyond block_count");
    o.extra_tensor = "output.bias"; /* qwen2 only */
    expect_llama_fail(&o, true, "'output.bias'", "unknown to this architecture");
    o.arch = "qwen2"; /* known there, but n_vocab long */
    expect_llama_fail(&o, true, "tensor 'output.bias' (info at byte", "expected [40, 1, 1, 1]");
    /* qwen2's graph has Q as n_embd rows: key_length must agree */
    o = gb_llama_default();
    o.arch = "qwen2", o.key_length = 16;
    expect_llama_fail(&o, true, "qwen2 with head size 16 x 4 heads != embedding 32", NULL);
    o.arch = "deepseek2";
    expect_llama_fail(&o, true, "architecture 'deepseek2' is not supported yet",
                      "mixture of experts");
    o.arch = "gpt-oss";
    expect_llama_fail(&o, true, "architecture 'gpt-oss'", "docs/design.md");
    o.arch = "qwen2moe";
    expect_llama_fail(&o, true, "architecture 'qwen2moe'", "mixture of experts");
    o.arch = "phi3";
    expect_llama_fail(&o, true, "architecture 'phi3' is not supported yet",
                      "numalm runs llama, qwen2, qwen3 and qwen3moe");
    /* llama.cpp requires rope.dimension_count == the head size; `info`
     * (lenient) reads a partial rotation */
    gb b = {0};
    gb_header(&b, 3, 0, 7);
    gb_kv_str(&b, "general.architecture", "llama");
    gb_kv_u32(&b, "llama.block_count", 1);
    gb_kv_u32(&b, "llama.embedding_length", 8);
    gb_kv_u32(&b, "llama.feed_forward_length", 8);
    gb_kv_u32(&b, "llama.attention.head_count", 2);
    gb_kv_u32(&b, "llama.context_length", 64);
    gb_kv_u32(&b, "llama.rope.dimension_count", 2);
    nm_gguf *g = parse_ok(&b);
    nm_error err = {{0}};
    assert_int_equal(nm_llama_hparams_read(g, &hp, true, &err), -1);
    assert_contains(err.msg, "key 'llama.rope.dimension_count' is 2; expected equal to the head "
                             "size 4");
    assert_int_equal(nm_llama_hparams_read(g, &hp, false, &err), -1);
    assert_contains(err.msg, "neither key 'tokenizer.ggml.tokens' nor tensor"); /* past rope */
    nm_gguf_close(g);
    gb_free(&b);
}

/* A qwen3moe header: experts read with llama.cpp's defaults; bad expert
 * counts and llama files with experts (Mixtral) refused by key. */
static int moe_header(const char *arch, long n_expert, long n_used, bool ff_exp,
                      nm_llama_hparams *hp, nm_error *err) {
    gb b = {0};
    gb_header(&b, 3, 0, 8 + (n_expert >= 0) + (n_used >= 0) + ff_exp);
    char key[96];
#define K(sfx) (snprintf(key, sizeof key, "%s.%s", arch, sfx), key)
    gb_kv_str(&b, "general.architecture", arch);
    gb_kv_u32(&b, K("block_count"), 1);
    gb_kv_u32(&b, K("embedding_length"), 8);
    gb_kv_u32(&b, K("feed_forward_length"), 24);
    gb_kv_u32(&b, K("attention.head_count"), 2);
    gb_kv_u32(&b, K("context_length"), 64);
    if (n_expert >= 0)
        gb_kv_u32(&b, K("expert_count"), (uint32_t)n_expert);
    if (n_used >= 0)
        gb_kv_u32(&b, K("expert_used_count"), (uint32_t)n_used);
    if (ff_exp)
        gb_kv_u32(&b, K("expert_feed_forward_length"), 16);
#undef K
    gb_kv_arr_header(&b, "tokenizer.ggml.tokens", GB_STR, 1), gb_str(&b, "a");
    gb_kv_u32(&b, "general.alignment", 32);
    nm_gguf *g = parse_ok(&b);
    int rc = nm_llama_hparams_read(g, hp, true, err);
    nm_gguf_close(g);
    gb_free(&b);
    return rc;
}

static void test_moe_keys(void **state) {
    (void)state;
    nm_llama_hparams hp;
    nm_error err = {{0}};
    if (moe_header("qwen3moe", 8, 2, true, &hp, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(hp.n_expert, 8), assert_int_equal(hp.n_expert_used, 2);
    assert_int_equal(hp.n_ff_exp, 16), assert_int_equal(hp.rope_type, NM_ROPE_NEOX);
    /* expert_feed_forward_length defaults to feed_forward_length / used */
    assert_int_equal(moe_header("qwen3moe", 8, 2, false, &hp, &err), 0);
    assert_int_equal(hp.n_ff_exp, 12);
    assert_int_equal(moe_header("qwen3moe", -1, 2, true, &hp, &err), -1);
    assert_contains(err.msg, "key 'qwen3moe.expert_count' is missing");
    assert_int_equal(moe_header("qwen3moe", 8, 9, true, &hp, &err), -1);
    assert_contains(err.msg, "key 'qwen3moe.expert_used_count' (at byte");
    assert_contains(err.msg, "is 9; expected 1 to 8");
    assert_int_equal(moe_header("qwen3moe", 8, -1, true, &hp, &err), -1);
    assert_contains(err.msg, "'qwen3moe.expert_used_count' is missing");
    assert_int_equal(moe_header("qwen3moe", 600, 2, true, &hp, &err), -1);
    assert_contains(err.msg, "expected 1 to 512");
    assert_int_equal(moe_header("llama", 8, 2, true, &hp, &err), -1);
    assert_contains(err.msg, "key 'llama.expert_count' is 8: llama with experts (a "
                             "Mixtral-style mixture) is not supported yet");
}

static void test_llama_tensor_shapes(void **state) {
    (void)state;
    /* a file declaring more blocks than it has */
    gb_llama o = gb_llama_default();
    gb b = {0};
    gb_write_llama(&b, &o);
    nm_gguf *g = parse_ok(&b);
    nm_llama_hparams hp;
    nm_error err = {{0}};
    assert_int_equal(nm_llama_hparams_read(g, &hp, true, &err), 0);
    hp.n_layer = 3;
    assert_int_equal(nm_llama_check_tensors(g, &hp, &err), -1);
    assert_contains(err.msg, "tensor 'blk.2.attn_norm.weight' is missing");
    hp.n_layer = 2;
    hp.n_ff = 48;
    assert_int_equal(nm_llama_check_tensors(g, &hp, &err), -1);
    assert_contains(err.msg, "tensor 'blk.0.ffn_gate.weight' (info at byte");
    assert_contains(err.msg, "expected [32, 48, 1, 1]");
    nm_gguf_close(g);
    gb_free(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_refusals),         cmocka_unit_test(test_llama_keys),
        cmocka_unit_test(test_llama_per_layer_arrays), cmocka_unit_test(test_llama_tensor_shapes),
        cmocka_unit_test(test_architectures),          cmocka_unit_test(test_moe_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
