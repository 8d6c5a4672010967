/* The placement planner against every topology of shared/topologies and
 * synthetic llama models of real shapes (header only: the planner never
 * reads tensor data, so a 2 GB TinyLlama costs a few KB here). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/util.h"
#include "gguf/ggml_types.h"
#include "gguf/gguf_write.h"
#include "numa/plan.h"
#include "test_topos.h"
#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct model_spec {
    const char *name;
    uint32_t n_embd, n_ff, n_head, n_head_kv, n_layer, n_vocab;
    uint32_t type;
    bool tied;                                  /* no output.weight: the embedding is the LM head */
    const char *arch;                           /* NULL: llama */
    uint32_t head_dim;                          /* 0: embd / heads; else written as key_length */
    uint32_t n_expert, n_expert_used, n_ff_exp; /* qwen3moe */
} model_spec;

static const model_spec MODELS[] = {
    {"tinyllama-f16", 2048, 5632, 32, 4, 22, 32000, NM_TYPE_F16, false, NULL, 0, 0, 0, 0},
    {"tinyllama-q4_0", 2048, 5632, 32, 4, 22, 32000, NM_TYPE_Q4_0, false, NULL, 0, 0, 0, 0},
    {"tiny-q4_0-tied", 128, 352, 8, 4, 2, 512, NM_TYPE_Q4_0, true, NULL, 0, 0, 0, 0},
    {"tiny-f16", 64, 192, 8, 4, 3, 300, NM_TYPE_F16, false, NULL, 0, 0, 0, 0},
    /* fewer KV heads than nodes */
    {"tiny-kv2", 64, 128, 4, 2, 2, 100, NM_TYPE_F16, false, NULL, 0, 0, 0, 0},
    /* K-quants: rows split on whole 256-value super-blocks */
    {"tinyllama-q4_k", 2048, 5632, 32, 4, 22, 32000, NM_TYPE_Q4_K, false, NULL, 0, 0, 0, 0},
    {"tiny-q6_k-tied", 256, 768, 8, 4, 2, 300, NM_TYPE_Q6_K, true, NULL, 0, 0, 0, 0},
    /* Qwen2.5-0.5B: Q/K/V biases, tied; Qwen3-0.6B: head size 128 with
     * embedding 1024 (Q has 2048 rows), Q/K norms */
    {"qwen2.5-0.5b", 896, 4864, 14, 2, 24, 151936, NM_TYPE_Q8_0, true, "qwen2", 0, 0, 0, 0},
    {"qwen3-0.6b", 1024, 3072, 16, 8, 28, 151936, NM_TYPE_Q8_0, true, "qwen3", 128, 0, 0, 0},
    /* Qwen3-30B-A3B's block (12 of its 48: 4608 expert units, 128 experts
     * of which 8 are used); a small mixture whose 6 experts do not divide
     * evenly */
    {"qwen3-30b-a3b", 2048, 6144, 32, 4, 12, 151936, NM_TYPE_Q8_0, false, "qwen3moe", 128, 128, 8,
     768},
    {"moe-6", 64, 192, 4, 2, 2, 300, NM_TYPE_F16, true, "qwen3moe", 32, 6, 2, 48},
};
#define N_MODELS (sizeof MODELS / sizeof MODELS[0])

static nm_gguf *g_models[N_MODELS];
static char g_topo_dir[1024];
static char *g_topo_files[32];
static int g_n_topo;

#define OK(call) assert_int_equal((call), 0)

static void add_tensor3(nm_gguf_writer *w, const char *name, uint64_t ne0, uint64_t ne1,
                        uint64_t ne2, uint32_t type) {
    nm_error err = {{0}};
    uint64_t ne[3] = {ne0, ne1, ne2};
    if (nm_gguf_w_tensor(w, name, ne2 > 1 ? 3 : ne1 ? 2 : 1, ne, ne1 ? type : NM_TYPE_F32, &err))
        fail_msg("%s", err.msg);
}

static void add_tensor(nm_gguf_writer *w, const char *name, uint64_t ne0, uint64_t ne1,
                       uint32_t type) {
    add_tensor3(w, name, ne0, ne1, 1, type);
}

/* Writes the header of a GGUF file to a memfd and reads it back with the
 * real reader; the declared file size covers the (absent) tensor data. */
static nm_gguf *make_model(const model_spec *m) {
    nm_error err = {{0}};
    nm_gguf_writer *w = nm_gguf_writer_new(32);
    assert_non_null(w);
    const char *arch = m->arch ? m->arch : "llama";
    char key[96];
#define KEY(sfx) (snprintf(key, sizeof key, "%s.%s", arch, sfx), key)
    OK(nm_gguf_w_str(w, "general.architecture", arch, &err));
    OK(nm_gguf_w_u32(w, KEY("block_count"), m->n_layer, &err));
    OK(nm_gguf_w_u32(w, KEY("embedding_length"), m->n_embd, &err));
    OK(nm_gguf_w_u32(w, KEY("feed_forward_length"), m->n_ff, &err));
    OK(nm_gguf_w_u32(w, KEY("attention.head_count"), m->n_head, &err));
    OK(nm_gguf_w_u32(w, KEY("attention.head_count_kv"), m->n_head_kv, &err));
    OK(nm_gguf_w_u32(w, KEY("context_length"), 2048, &err));
    if (m->head_dim) {
        OK(nm_gguf_w_u32(w, KEY("attention.key_length"), m->head_dim, &err));
        OK(nm_gguf_w_u32(w, KEY("attention.value_length"), m->head_dim, &err));
    }
    if (m->n_expert) {
        OK(nm_gguf_w_u32(w, KEY("expert_count"), m->n_expert, &err));
        OK(nm_gguf_w_u32(w, KEY("expert_used_count"), m->n_expert_used, &err));
        OK(nm_gguf_w_u32(w, KEY("expert_feed_forward_length"), m->n_ff_exp, &err));
    }
#undef KEY
    uint32_t hd = m->head_dim ? m->head_dim : m->n_embd / m->n_head;
    uint32_t q_dim = hd * m->n_head, kv_dim = hd * m->n_head_kv;
    bool qwen2 = m->arch && !strcmp(m->arch, "qwen2"),
         qwen3 = m->arch && !strncmp(m->arch, "qwen3", 5);
    add_tensor(w, "token_embd.weight", m->n_embd, m->n_vocab, m->type);
    for (uint32_t l = 0; l < m->n_layer; l++) {
        char name[64];
#define T(suffix, ne0, ne1)                                                                        \
    snprintf(name, sizeof name, "blk.%u." suffix, l);                                              \
    add_tensor(w, name, ne0, ne1, m->type)
        T("attn_norm.weight", m->n_embd, 0);
        T("attn_q.weight", m->n_embd, q_dim);
        T("attn_k.weight", m->n_embd, kv_dim);
        T("attn_v.weight", m->n_embd, kv_dim);
        if (qwen2) {
            T("attn_q.bias", q_dim, 0);
            T("attn_k.bias", kv_dim, 0);
            T("attn_v.bias", kv_dim, 0);
        }
        if (qwen3) {
            T("attn_q_norm.weight", hd, 0);
            T("attn_k_norm.weight", hd, 0);
        }
        T("attn_output.weight", q_dim, m->n_embd);
        T("ffn_norm.weight", m->n_embd, 0);
        if (m->n_expert) {
            uint32_t ne = m->n_expert, fe = m->n_ff_exp;
            snprintf(name, sizeof name, "blk.%u.ffn_gate_inp.weight", l);
            add_tensor(w, name, m->n_embd, ne, NM_TYPE_F32);
            snprintf(name, sizeof name, "blk.%u.ffn_gate_exps.weight", l);
            add_tensor3(w, name, m->n_embd, fe, ne, m->type);
            snprintf(name, sizeof name, "blk.%u.ffn_up_exps.weight", l);
            add_tensor3(w, name, m->n_embd, fe, ne, m->type);
            snprintf(name, sizeof name, "blk.%u.ffn_down_exps.weight", l);
            add_tensor3(w, name, fe, m->n_embd, ne, m->type);
            continue;
        }
        T("ffn_gate.weight", m->n_embd, m->n_ff);
        T("ffn_up.weight", m->n_embd, m->n_ff);
        T("ffn_down.weight", m->n_ff, m->n_embd);
#undef T
    }
    add_tensor(w, "output_norm.weight", m->n_embd, 0, m->type);
    if (!m->tied)
        add_tensor(w, "output.weight", m->n_embd, m->n_vocab, m->type);
    int fd = memfd_create(m->name, 0);
    assert_true(fd >= 0);
    int wfd = dup(fd);
    if (nm_gguf_w_begin_fd(w, wfd, m->name, &err))
        fail_msg("%s", err.msg);
    uint64_t size = nm_gguf_w_file_size(w);
    nm_gguf_writer_free(w);
    close(wfd);
    FILE *f = fdopen(fd, "rb");
    assert_non_null(f);
    rewind(f);
    nm_gguf *g = nm_gguf_read(f, size, m->name, &err);
    fclose(f);
    if (!g)
        fail_msg("%s: %s", m->name, err.msg);
    return g;
}

static int setup(void **state) {
    (void)state;
    for (size_t i = 0; i < N_MODELS; i++)
        g_models[i] = make_model(&MODELS[i]);
    g_n_topo = nm_test_list_topos(g_topo_dir, sizeof g_topo_dir, g_topo_files, 32);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    for (size_t i = 0; i < N_MODELS; i++)
        nm_gguf_close(g_models[i]);
    nm_test_free_topos(g_topo_files, g_n_topo);
    return 0;
}

static nm_topo *load_topo(const char *file) {
    return nm_test_load_topo(g_topo_dir, file);
}

static nm_topo *load_named(const char *file) {
    if (g_n_topo == 0)
        skip();
    return load_topo(file);
}

static nm_plan *build(const nm_gguf *g, const nm_topo *t, const nm_plan_opts *o) {
    nm_error err = {{0}};
    nm_plan *p = nm_plan_build(g, t, o, &err);
    if (!p)
        fail_msg("plan on %s: %s", t->source, err.msg);
    return p;
}

/* ---- invariants every plan must satisfy ---- */

static int total_threads(const nm_plan *p) {
    int n = 0;
    for (int k = 0; k < p->n_nodes; k++)
        n += p->nodes[k].n_threads;
    return n;
}

/* Workers run on allowed CPUs of their own node, each CPU once. */
static void check_nodes(const nm_plan *p, const nm_topo *t) {
    assert_true(p->n_nodes >= 1);
    for (int k = 0; k < p->n_nodes; k++) {
        const nm_plan_node *pn = &p->nodes[k];
        int ti = nm_topo_node_index(t, pn->os_index);
        assert_true(ti >= 0);
        assert_true(t->nodes[ti].n_cores > 0);
        assert_true(pn->n_threads >= 1);
        if (k > 0)
            assert_true(pn->os_index > p->nodes[k - 1].os_index);
        for (int c = 0; c < pn->n_threads; c++) {
            bool found = false;
            for (int j = 0; j < t->nodes[ti].n_pus; j++)
                found |= t->nodes[ti].cpus[j] == pn->cpus[c];
            assert_true(found);
            for (int c2 = 0; c2 < c; c2++)
                assert_int_not_equal(pn->cpus[c], pn->cpus[c2]);
        }
    }
}

/* node k's share of `units`, proportional to threads, within one unit */
static void check_share(const nm_plan *p, int k, uint64_t got, uint64_t units) {
    double want = (double)units * p->nodes[k].n_threads / total_threads(p);
    if ((double)got < want - 1.0 || (double)got > want + 1.0)
        fail_msg("node %d: %llu of %llu units, proportional share %.2f", p->nodes[k].os_index,
                 (unsigned long long)got, (unsigned long long)units, want);
}

static void check_kv_heads(const nm_plan *p) {
    uint32_t next = 0;
    for (int k = 0; k < p->n_nodes; k++) {
        assert_int_equal(p->nodes[k].kv_head0, next);
        assert_true(p->nodes[k].kv_head1 >= next);
        next = p->nodes[k].kv_head1;
        check_share(p, k, p->nodes[k].kv_head1 - p->nodes[k].kv_head0, p->hp.n_head_kv);
    }
    assert_int_equal(next, p->hp.n_head_kv);
}

/* Every row of every split tensor is computed by exactly one node, on head
 * and block boundaries, in proportion to threads. Returns the granularity
 * (bytes of one unit) used, for the byte-proportion check. */
/* An expert tensor's own entry computes and holds nothing (its experts
 * do); with whole experts per node, expert e lives on the node whose share
 * of the experts (in proportion to threads) holds e. */
static uint64_t check_expert_split(const nm_plan *p, const nm_tensor_plan *tp) {
    if (tp->first_expert >= 0) {
        for (int k = 0; k < p->n_nodes; k++)
            assert_int_equal(tp->rows[k].row1, tp->rows[k].row0);
        return 0;
    }
    const nm_gguf_tensor *t = tp->t;
    const nm_tensor_plan *parent = &p->tensors[tp->file_tensor];
    assert_true(parent->first_expert >= 0);
    assert_int_equal(tp->expert, (int)(tp - p->tensors) - parent->first_expert);
    assert_int_equal(t->file_offset, parent->t->file_offset + (uint64_t)tp->expert * t->nbytes);
    uint64_t n_expert = parent->t->ne[2], next = 0;
    int owners = 0;
    for (int k = 0; k < p->n_nodes; k++) {
        uint64_t r0 = tp->rows[k].row0, r1 = tp->rows[k].row1;
        assert_int_equal(r0, next);
        next = r1;
        if (p->moe == NM_MOE_ROWS) {
            check_share(p, k, r1 - r0, t->n_rows);
            continue;
        }
        assert_true(r1 == r0 || (r0 == 0 && r1 == t->n_rows));
        if (r1 > r0) {
            owners++;
            /* experts [0, e] hold at least node k's first expert ... */
            uint64_t before = 0;
            for (int j = 0; j < k; j++)
                before += (uint64_t)p->nodes[j].n_threads;
            double lo = (double)n_expert * before / total_threads(p);
            double hi = (double)n_expert * (before + p->nodes[k].n_threads) / total_threads(p);
            assert_true(tp->expert + 1.0 > lo - 0.5 && tp->expert < hi + 0.5);
        }
    }
    assert_int_equal(next, t->n_rows);
    if (p->moe == NM_MOE_EXPERTS)
        assert_int_equal(owners, 1);
    /* whole experts: each node within one expert of its share, per tensor */
    return p->moe == NM_MOE_ROWS ? t->row_bytes : t->nbytes / n_expert;
}

static uint64_t check_tensor_split(const nm_plan *p, const nm_tensor_plan *tp) {
    const nm_gguf_tensor *t = tp->t;
    const nm_type_info *ti = nm_type_get(t->type);
    if (tp->first_expert >= 0 || tp->expert >= 0)
        return check_expert_split(p, tp);
    if (nm_tensor_is_copied(t)) {
        for (int k = 0; k < p->n_nodes; k++) {
            assert_int_equal(tp->rows[k].row0, 0);
            assert_int_equal(tp->rows[k].row1, t->n_rows);
        }
        return 0;
    }
    uint64_t hd = p->hp.head_dim, group = p->hp.n_head / p->hp.n_head_kv;
    uint64_t unit = 1;
    if (tp->role == NM_ROLE_ATTN_Q)
        unit = hd * group;
    else if (tp->role == NM_ROLE_ATTN_K || tp->role == NM_ROLE_ATTN_V)
        unit = hd;
    uint64_t next = 0;
    for (int k = 0; k < p->n_nodes; k++) {
        uint64_t r0 = tp->rows[k].row0, r1 = tp->rows[k].row1;
        assert_int_equal(r0, next);
        assert_true(r1 >= r0);
        next = r1;
        assert_int_equal(r0 % unit, 0);
        assert_int_equal((r0 * t->ne[0]) % ti->block_size, 0);
        if (unit > 1) {
            assert_int_equal(r0 / unit, p->nodes[k].kv_head0);
            assert_int_equal(r1 / unit, p->nodes[k].kv_head1);
        } else {
            check_share(p, k, r1 - r0, t->n_rows);
        }
    }
    assert_int_equal(next, t->n_rows);
    return unit * t->row_bytes;
}

static void check_bytes_proportional(const nm_plan *p) {
    uint64_t total = 0, slack = 0;
    for (int i = 0; i < p->n_tensors; i++) {
        const nm_tensor_plan *tp = &p->tensors[i];
        if (nm_tensor_is_copied(tp->t))
            continue;
        total += tp->first_expert >= 0 ? 0 : tp->t->nbytes; /* counted as its experts */
        slack += check_tensor_split(p, tp);
    }
    for (int k = 0; k < p->n_nodes; k++) {
        uint64_t got = 0;
        for (int i = 0; i < p->n_tensors; i++) {
            const nm_tensor_plan *tp = &p->tensors[i];
            if (!nm_tensor_is_copied(tp->t))
                got += (tp->rows[k].row1 - tp->rows[k].row0) * tp->t->row_bytes;
        }
        double want = (double)total * p->nodes[k].n_threads / total_threads(p);
        if ((double)got < want - (double)slack || (double)got > want + (double)slack)
            fail_msg("node %d holds %llu split bytes, proportional %.0f, slack %llu",
                     p->nodes[k].os_index, (unsigned long long)got, want,
                     (unsigned long long)slack);
    }
}

/* What each arena holds, by placement. */
static void check_held(const nm_plan *p) {
    bool per_node = p->placement == NM_PLACE_SHARD || p->placement == NM_PLACE_REPLICATE;
    assert_int_equal(p->n_arenas, per_node ? p->n_nodes : 1);
    for (int a = 0; a < p->n_arenas; a++) {
        int want = per_node                        ? p->nodes[a].os_index
                   : p->placement == NM_PLACE_NODE ? p->fixed_node
                                                   : -1;
        assert_int_equal(p->arena_node[a], want);
    }
    for (int i = 0; i < p->n_tensors; i++) {
        const nm_tensor_plan *tp = &p->tensors[i];
        const nm_gguf_tensor *t = tp->t;
        for (int a = 0; a < p->n_arenas; a++) {
            const nm_range *r = &tp->held[a];
            uint64_t r0 = 0, r1 = t->n_rows;
            if (tp->first_expert >= 0) /* held as its experts */
                r1 = 0;
            else if (p->placement == NM_PLACE_SHARD && !nm_tensor_is_copied(t)) {
                r0 = tp->rows[a].row0;
                r1 = tp->rows[a].row1;
            }
            assert_int_equal(r->nbytes, (r1 - r0) * t->row_bytes);
            if (r->nbytes) {
                assert_int_equal(r->row0, r0);
                assert_int_equal(r->row1, r1);
                assert_int_equal(r->file_offset, t->file_offset + r0 * t->row_bytes);
            }
        }
    }
}

static const nm_plan *g_cmp_plan;
static int g_cmp_arena;
static int cmp_range(const void *x, const void *y) {
    const nm_range *a = &g_cmp_plan->tensors[*(const int *)x].held[g_cmp_arena];
    const nm_range *b = &g_cmp_plan->tensors[*(const int *)y].held[g_cmp_arena];
    return a->arena_offset < b->arena_offset ? -1 : a->arena_offset > b->arena_offset;
}

/* Offsets congruent to file offsets, no overlap, file order, and rounded
 * (O_DIRECT) reads never write different file bytes over a neighbour. */
static void check_arena_layout(const nm_plan *p) {
    uint64_t al = p->align;
    int *idx = calloc((size_t)p->n_tensors + 1, sizeof(int));
    assert_non_null(idx);
    for (int a = 0; a < p->n_arenas; a++) {
        int n = 0;
        for (int i = 0; i < p->n_tensors; i++)
            if (p->tensors[i].held[a].nbytes)
                idx[n++] = i;
        g_cmp_plan = p;
        g_cmp_arena = a;
        qsort(idx, (size_t)n, sizeof(int), cmp_range);
        uint64_t sum = 0;
        for (int j = 0; j < n; j++) {
            const nm_range *r = &p->tensors[idx[j]].held[a];
            sum += r->nbytes;
            assert_int_equal(r->arena_offset % al, r->file_offset % al);
            assert_true(nm_align_up(r->arena_offset + r->nbytes, al) <= p->arena_bytes[a]);
            if (j == 0)
                continue;
            const nm_range *q = &p->tensors[idx[j - 1]].held[a];
            assert_true(q->arena_offset + q->nbytes <= r->arena_offset);
            assert_true(q->file_offset < r->file_offset);
            bool fresh_block =
                nm_align_down(r->arena_offset, al) >= nm_align_up(q->arena_offset + q->nbytes, al);
            bool same_shift = r->file_offset - r->arena_offset == q->file_offset - q->arena_offset;
            assert_true(fresh_block || same_shift);
        }
        assert_int_equal(p->arena_bytes[a] % al, 0);
        assert_true(p->arena_bytes[a] >= sum);
        /* packed: at most two partial blocks of padding per range */
        if (p->arena_bytes[a] > sum + 2 * (uint64_t)(n + 1) * al)
            fail_msg("%s arena %d: %llu bytes for %llu in %d ranges, align %llu",
                     nm_placement_name(p->placement), a, (unsigned long long)p->arena_bytes[a],
                     (unsigned long long)sum, n, (unsigned long long)al);
    }
    free(idx);
}

/* Remote bytes recomputed from the tensors, independently of the planner's
 * own per-node sums. */
static void check_remote(const nm_plan *p, const nm_gguf *g) {
    bool tied = nm_gguf_find_tensor(g, "output.weight") == NULL;
    uint64_t read_total = 0, read_on_fixed = 0, experts = 0, experts_on_fixed = 0;
    for (int i = 0; i < p->n_tensors; i++) {
        const nm_tensor_plan *tp = &p->tensors[i];
        if ((tp->role == NM_ROLE_TOKEN_EMBD && !tied) || tp->first_expert >= 0)
            continue;
        uint64_t copies = nm_tensor_is_copied(tp->t) ? (uint64_t)p->n_nodes : 1;
        *(tp->expert >= 0 ? &experts : &read_total) += tp->t->nbytes * copies;
        for (int k = 0; k < p->n_nodes; k++)
            if (p->nodes[k].os_index == p->fixed_node)
                *(tp->expert >= 0 ? &experts_on_fixed : &read_on_fixed) +=
                    (tp->rows[k].row1 - tp->rows[k].row0) * tp->t->row_bytes;
    }
    /* a token reads expert_used_count / expert_count of the experts */
    if (p->hp.n_expert) {
        read_total += experts * p->hp.n_expert_used / p->hp.n_expert;
        read_on_fixed += experts_on_fixed * p->hp.n_expert_used / p->hp.n_expert;
    }
    uint64_t n = (uint64_t)p->n_nodes, got = p->remote_bytes_per_token;
    switch (p->placement) {
    case NM_PLACE_SHARD:
    case NM_PLACE_REPLICATE:
        assert_int_equal(got, 0);
        break;
    case NM_PLACE_INTERLEAVE: {
        uint64_t want = read_total * (n - 1) / n;
        assert_true(got + n >= want && got <= want + n);
        break;
    }
    case NM_PLACE_NODE: /* per-node roundings of the experts' share */
        assert_true(got + n >= read_total - read_on_fixed && got <= read_total - read_on_fixed + n);
        break;
    case NM_PLACE_AUTO:
        fail_msg("a built plan has placement auto");
    }
    if (!tied)
        assert_int_equal(p->embd_row_bytes, nm_gguf_find_tensor(g, "token_embd.weight")->row_bytes);
    else
        assert_int_equal(p->embd_row_bytes, 0);
}

static void check_plan(const nm_plan *p, const nm_topo *t, const nm_gguf *g) {
    check_nodes(p, t);
    check_kv_heads(p);
    check_bytes_proportional(p);
    check_held(p);
    check_arena_layout(p);
    check_remote(p, g);
    assert_int_equal(p->n_file_tensors, (int)g->n_tensors);
    uint64_t units = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++)
        units += p->tensors[i].first_expert >= 0 ? g->tensors[i].ne[2] : 0;
    assert_int_equal(p->n_tensors, (int)(g->n_tensors + units));
}

/* The printers must not crash on any plan; output goes nowhere. */
static void print_all(const nm_plan *p) {
    FILE *f = fopen("/dev/null", "w");
    assert_non_null(f);
    nm_plan_print(p, f);
    nm_plan_print_table(p, f);
    nm_plan_print_json(p, f);
    fclose(f);
}

static int first_cpu_node(const nm_topo *t) {
    for (int i = 0; i < t->n_nodes; i++)
        if (t->nodes[i].n_cores > 0)
            return t->nodes[i].os_index;
    return -1;
}

static void check_all_placements(const nm_topo *t) {
    for (size_t m = 0; m < N_MODELS; m++) {
        for (int pl = NM_PLACE_SHARD; pl <= NM_PLACE_NODE; pl++)
            for (int moe = 0; moe <= (MODELS[m].n_expert ? 1 : 0); moe++) {
                nm_plan_opts o = {.placement = (nm_placement)pl, .moe = (nm_moe_placement)moe};
                o.fixed_node = t->nodes[t->n_nodes - 1].os_index;
                nm_plan *p = build(g_models[m], t, &o);
                check_plan(p, t, g_models[m]);
                if (m == 0 || (MODELS[m].n_expert && MODELS[m].n_layer < 4))
                    print_all(p);
                nm_plan_free(p);
            }
    }
}

static void test_every_topology(void **state) {
    (void)state;
    if (g_n_topo == 0)
        skip();
    for (int i = 0; i < g_n_topo; i++) {
        nm_topo *t = load_topo(g_topo_files[i]);
        printf("# %s: %d allowed nodes, first with CPUs %d\n", g_topo_files[i], t->n_nodes,
               first_cpu_node(t));
        check_all_placements(t);
        nm_topo_free(t);
    }
}

static void test_this_machine(void **state) {
    (void)state;
    nm_error err = {{0}};
    nm_topo *t = nm_topo_load(NULL, &err);
    if (!t)
        fail_msg("this machine: %s", err.msg);
    check_all_placements(t);
    nm_topo_free(t);
}

/* Default: one worker per allowed core, every node with CPUs. */
static void test_default_threads(void **state) {
    (void)state;
    nm_topo *t = load_named("24em64t-2n6c2t-pci.xml");
    nm_plan_opts o = {0};
    nm_plan *p = build(g_models[0], t, &o);
    assert_int_equal(p->n_nodes, 2);
    for (int k = 0; k < 2; k++)
        assert_int_equal(p->nodes[k].n_threads, 6);
    /* 4 KV heads over two equal nodes: 2 each, so 16 query heads each */
    assert_int_equal(p->nodes[0].kv_head1, 2);
    nm_plan_free(p);
    nm_topo_free(t);
}

/* Memory-only nodes (MCDRAM) get no workers; node:N may still name them. */
static void test_memory_only_nodes(void **state) {
    (void)state;
    nm_topo *t = load_named("64intel64-fakeKNL-SNC4-hybrid.xml");
    int memonly = -1, with_cpus = 0;
    for (int i = 0; i < t->n_nodes; i++) {
        if (t->nodes[i].n_cores == 0)
            memonly = t->nodes[i].os_index;
        else
            with_cpus++;
    }
    assert_true(memonly >= 0);
    nm_plan_opts o = {.placement = NM_PLACE_NODE, .fixed_node = memonly};
    nm_plan *p = build(g_models[1], t, &o);
    assert_int_equal(p->n_nodes, with_cpus);
    assert_int_equal(p->arena_node[0], memonly);
    check_plan(p, t, g_models[1]);
    /* nobody computes on the memory node: every weight byte read is remote */
    uint64_t read = 0;
    for (int k = 0; k < p->n_nodes; k++)
        read += nm_plan_node_read_bytes(p, k);
    assert_int_equal(p->remote_bytes_per_token, read);
    nm_plan_free(p);

    nm_error err = {{0}};
    o = (nm_plan_opts){.n_nodes_req = 1, .nodes_req = {memonly}};
    assert_null(nm_plan_build(g_models[1], t, &o, &err));
    char want[64];
    snprintf(want, sizeof want, "node %d has no CPUs", memonly);
    assert_non_null(strstr(err.msg, want));
    nm_topo_free(t);
}

/* A restricted cpuset: only allowed nodes and PUs appear in the plan, and
 * the restriction really excludes part of the machine. */
static void test_restricted_cpuset(void **state) {
    (void)state;
    nm_topo *t = load_named("16amd64-8n2c-cpusets.xml");
    hwloc_topology_t full;
    char path[2048];
    snprintf(path, sizeof path, "%s/16amd64-8n2c-cpusets.xml", g_topo_dir);
    OK(hwloc_topology_init(&full));
    OK(hwloc_topology_set_xml(full, path));
    OK(hwloc_topology_set_flags(full, HWLOC_TOPOLOGY_FLAG_INCLUDE_DISALLOWED));
    OK(hwloc_topology_load(full));
    hwloc_const_cpuset_t allowed_cpus = hwloc_topology_get_allowed_cpuset(full);
    hwloc_const_nodeset_t allowed_nodes = hwloc_topology_get_allowed_nodeset(full);
    /* the export holds only the allowed part; the complete sets say what the
     * machine has beyond it */
    hwloc_const_nodeset_t all_nodes = hwloc_topology_get_complete_nodeset(full);
    assert_true(hwloc_bitmap_weight(allowed_nodes) < hwloc_bitmap_weight(all_nodes));
    assert_true(hwloc_bitmap_weight(allowed_cpus) <
                hwloc_bitmap_weight(hwloc_topology_get_complete_cpuset(full)));

    nm_plan *p = build(g_models[1], t, &(nm_plan_opts){0});
    check_plan(p, t, g_models[1]);
    int threads = 0;
    for (int k = 0; k < p->n_nodes; k++) {
        assert_true(hwloc_bitmap_isset(allowed_nodes, (unsigned)p->nodes[k].os_index));
        for (int c = 0; c < p->nodes[k].n_threads; c++)
            assert_true(hwloc_bitmap_isset(allowed_cpus, (unsigned)p->nodes[k].cpus[c]));
        threads += p->nodes[k].n_threads;
    }
    assert_true(threads <= hwloc_bitmap_weight(allowed_cpus));
    nm_plan_free(p);

    /* a node of the machine outside the cpuset is refused by name */
    int outside = -1, id;
    hwloc_bitmap_foreach_begin(id, all_nodes) {
        if (!hwloc_bitmap_isset(allowed_nodes, (unsigned)id))
            outside = id;
    }
    hwloc_bitmap_foreach_end();
    assert_true(outside >= 0);
    nm_error err = {{0}};
    nm_plan_opts o = {.n_nodes_req = 1, .nodes_req = {outside}};
    assert_null(nm_plan_build(g_models[1], t, &o, &err));
    char want[64];
    snprintf(want, sizeof want, "node %d not allowed", outside);
    assert_non_null(strstr(err.msg, want));
    o = (nm_plan_opts){.placement = NM_PLACE_NODE, .fixed_node = outside};
    assert_null(nm_plan_build(g_models[1], t, &o, &err));
    assert_non_null(strstr(err.msg, "not allowed"));
    hwloc_topology_destroy(full);
    nm_topo_free(t);
}

static void test_nodes_narrowing(void **state) {
    (void)state;
    nm_topo *t = load_named("28intel64-2p2g7c-CoDgroups.v1tov2.xml");
    assert_true(t->n_nodes >= 4);
    int a = t->nodes[2].os_index, b = t->nodes[0].os_index;
    nm_plan_opts o = {.n_nodes_req = 2, .nodes_req = {a, b}};
    for (int pl = NM_PLACE_SHARD; pl <= NM_PLACE_NODE; pl++) {
        o.placement = (nm_placement)pl;
        o.fixed_node = t->nodes[3].os_index; /* bound outside the compute nodes */
        nm_plan *p = build(g_models[0], t, &o);
        assert_int_equal(p->n_nodes, 2);
        assert_int_equal(p->nodes[0].os_index, b); /* sorted */
        assert_int_equal(p->nodes[1].os_index, a);
        check_plan(p, t, g_models[0]);
        if (pl == NM_PLACE_NODE) {
            uint64_t read = nm_plan_node_read_bytes(p, 0) + nm_plan_node_read_bytes(p, 1);
            assert_int_equal(p->remote_bytes_per_token, read);
        }
        nm_plan_free(p);
    }
    /* one node: it computes everything, and nothing is remote */
    o = (nm_plan_opts){.placement = NM_PLACE_INTERLEAVE, .n_nodes_req = 1, .nodes_req = {a}};
    nm_plan *p = build(g_models[0], t, &o);
    assert_int_equal(p->n_nodes, 1);
    assert_int_equal(p->remote_bytes_per_token, 0);
    nm_plan_free(p);

    nm_error err = {{0}};
    o = (nm_plan_opts){.n_nodes_req = 2, .nodes_req = {a, 63}};
    assert_null(nm_plan_build(g_models[0], t, &o, &err));
    assert_non_null(strstr(err.msg, "node 63 not allowed"));
    o = (nm_plan_opts){.n_nodes_req = 2, .nodes_req = {a, a}};
    assert_null(nm_plan_build(g_models[0], t, &o, &err));
    char want[48];
    snprintf(want, sizeof want, "node %d is named twice", a);
    assert_non_null(strstr(err.msg, want));
    nm_topo_free(t);
}

static void test_thread_options(void **state) {
    (void)state;
    nm_topo *t = load_named("24em64t-2n6c2t-pci.xml");
    nm_plan_opts o = {.threads_per_node = 12}; /* 6 cores x 2 threads */
    nm_plan *p = build(g_models[0], t, &o);
    for (int k = 0; k < p->n_nodes; k++)
        assert_int_equal(p->nodes[k].n_threads, 12);
    check_plan(p, t, g_models[0]);
    nm_plan_free(p);

    o = (nm_plan_opts){.n_threads = 5};
    p = build(g_models[0], t, &o);
    assert_int_equal(total_threads(p), 5);
    assert_int_equal(p->nodes[0].n_threads, 3);
    assert_int_equal(p->nodes[1].n_threads, 2);
    check_plan(p, t, g_models[0]);
    nm_plan_free(p);

    /* fewer threads than nodes: the node without a worker computes nothing */
    o = (nm_plan_opts){.n_threads = 1};
    p = build(g_models[2], t, &o);
    assert_int_equal(p->n_nodes, 1);
    check_plan(p, t, g_models[2]);
    nm_plan_free(p);

    nm_error err = {{0}};
    o = (nm_plan_opts){.threads_per_node = 13};
    assert_null(nm_plan_build(g_models[0], t, &o, &err));
    assert_non_null(strstr(err.msg, "only 12 CPUs"));
    o = (nm_plan_opts){.threads_per_node = 2, .n_threads = 4};
    assert_null(nm_plan_build(g_models[0], t, &o, &err));
    assert_non_null(strstr(err.msg, "both given"));
    nm_topo_free(t);
}

/* More nodes than KV heads: some nodes own no attention rows and hold
 * nothing of the attention matrices, but still their share of the rest. */
static void test_node_without_heads(void **state) {
    (void)state;
    nm_topo *t = load_named("28intel64-2p2g7c-CoDgroups.v1tov2.xml");
    const nm_gguf *g = g_models[4];
    nm_plan *p = build(g, t, &(nm_plan_opts){0});
    check_plan(p, t, g);
    int idle = 0;
    for (int k = 0; k < p->n_nodes; k++) {
        if (p->nodes[k].kv_head0 != p->nodes[k].kv_head1)
            continue;
        idle++;
        for (int i = 0; i < p->n_tensors; i++) {
            const nm_tensor_plan *tp = &p->tensors[i];
            bool attn = tp->role == NM_ROLE_ATTN_Q || tp->role == NM_ROLE_ATTN_K ||
                        tp->role == NM_ROLE_ATTN_V;
            if (attn)
                assert_int_equal(tp->held[k].nbytes, 0);
            if (tp->role == NM_ROLE_FFN_UP)
                assert_true(tp->held[k].nbytes > 0);
        }
    }
    assert_int_equal(idle, p->n_nodes - 2);
    nm_plan_free(p);
    nm_topo_free(t);
}

static void test_placement_parse(void **state) {
    (void)state;
    nm_placement pl;
    int node = -1;
    nm_error err = {{0}};
    OK(nm_placement_parse("interleave", &pl, &node, &err));
    assert_int_equal(pl, NM_PLACE_INTERLEAVE);
    OK(nm_placement_parse("node:3", &pl, &node, &err));
    assert_int_equal(pl, NM_PLACE_NODE);
    assert_int_equal(node, 3);
    assert_int_equal(nm_placement_parse("node:x", &pl, &node, &err), -1);
    assert_int_equal(nm_placement_parse("mirror", &pl, &node, &err), -1);
    assert_non_null(strstr(err.msg, "mirror"));
}

/* A bigger alignment keeps the congruence and the layout rules. */
static void test_alignment(void **state) {
    (void)state;
    nm_topo *t = load_named("8intel64-4n2t-memattrs.xml");
    for (uint64_t al = 512; al <= (1u << 21); al <<= 4) {
        nm_plan_opts o = {.align = al};
        nm_plan *p = build(g_models[3], t, &o);
        assert_int_equal(p->align, al);
        check_plan(p, t, g_models[3]);
        nm_plan_free(p);
    }
    nm_error err = {{0}};
    nm_plan_opts o = {.align = 3000};
    assert_null(nm_plan_build(g_models[3], t, &o, &err));
    assert_non_null(strstr(err.msg, "alignment 3000 is not a power of two"));
    nm_topo_free(t);
}

int main(void) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/topologies", nm_test_shared_dir());
    if (access(dir, R_OK) != 0) {
        printf("test_plan: skipped: %s is absent (set NUMALM_SHARED)\n", dir);
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_placement_parse),   cmocka_unit_test(test_every_topology),
        cmocka_unit_test(test_this_machine),      cmocka_unit_test(test_default_threads),
        cmocka_unit_test(test_memory_only_nodes), cmocka_unit_test(test_restricted_cpuset),
        cmocka_unit_test(test_nodes_narrowing),   cmocka_unit_test(test_thread_options),
        cmocka_unit_test(test_alignment),         cmocka_unit_test(test_node_without_heads),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
