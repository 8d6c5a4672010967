/* The placement plan: which bytes of which tensor live on which node, and
 * which threads compute on them. Everything after this (readers, arenas,
 * workers) just executes the plan.
 *
 * Mixture-of-experts tensors (ffn_{gate,up,down}_exps, one matrix per
 * expert stacked in 3-D) are planned as one unit per expert, appended after
 * the file's tensors: by default every expert's rows are split across the
 * nodes like a matrix's (each node computes its share of every active
 * expert); NM_MOE_EXPERTS gives each node whole experts instead.
 *
 * Compute split is the same for every placement: each weight matrix's rows
 * are split across the plan's nodes in proportion to their worker threads,
 * on whole rows; attention matrices on whole KV-head groups. Placement only
 * decides where the bytes live:
 *   shard      node n's arena holds exactly the rows node n computes;
 *              small tensors (norms) are copied to every node;
 *   replicate  every node's arena holds a full copy;
 *   interleave one arena, pages round-robin over the nodes (MPOL_INTERLEAVE);
 *   node:N     one arena bound to node N.  */
#ifndef NM_PLAN_H
#define NM_PLAN_H

#include "gguf/gguf.h"
#include "gguf/llama_hparams.h"
#include "topo.h"

#define NM_MAX_NODES 64

typedef enum nm_placement {
    NM_PLACE_SHARD,
    NM_PLACE_REPLICATE,
    NM_PLACE_INTERLEAVE,
    NM_PLACE_NODE,
    /* Chosen against the machine's memory (numa/fit.h: replicate, else
     * shard, else interleave); nm_plan_build takes only the four above. */
    NM_PLACE_AUTO,
} nm_placement;

typedef enum nm_role {
    NM_ROLE_OTHER,
    NM_ROLE_TOKEN_EMBD,
    NM_ROLE_NORM, /* 1-D: copied, never split */
    NM_ROLE_ATTN_Q,
    NM_ROLE_ATTN_K,
    NM_ROLE_ATTN_V,
    NM_ROLE_ATTN_OUT,
    NM_ROLE_FFN_GATE,
    NM_ROLE_FFN_UP,
    NM_ROLE_FFN_DOWN,
    NM_ROLE_OUTPUT,
    NM_ROLE_BIAS,       /* 1-D: copied */
    NM_ROLE_ROPE_FREQS, /* 1-D: copied */
    NM_ROLE_FFN_ROUTER, /* ffn_gate_inp: n_expert rows, split like a matrix */
    NM_ROLE_FFN_GATE_EXPS,
    NM_ROLE_FFN_UP_EXPS,
    NM_ROLE_FFN_DOWN_EXPS,
} nm_role;

/* Where a mixture's experts are computed (and, in shard, held). */
typedef enum nm_moe_placement {
    NM_MOE_ROWS,    /* every expert's rows split across the nodes */
    NM_MOE_EXPERTS, /* whole experts per node, in proportion to threads */
} nm_moe_placement;

/* A contiguous byte range of the file that one arena holds. */
typedef struct nm_range {
    uint64_t row0, row1;  /* tensor rows [row0, row1) */
    uint64_t file_offset; /* absolute */
    uint64_t nbytes;
    uint64_t arena_offset; /* in the arena; == file_offset mod the
                              placement alignment (see nm_plan.align) */
} nm_range;

typedef struct nm_tensor_plan {
    const nm_gguf_tensor *t;
    nm_role role;
    int layer; /* -1 when not in a block */
    /* A 3-D expert tensor is planned as its experts: first_expert is the
     * index of its expert 0 unit (its own rows[] and held[] stay empty); a
     * unit has expert >= 0 and t describing that expert's matrix (owned by
     * the plan), file_tensor its tensor's index in the file. Otherwise -1,
     * -1 and the unit's own index. */
    int first_expert, expert, file_tensor;
    /* Rows computed by each plan node: [rows[n].row0, rows[n].row1). */
    struct {
        uint64_t row0, row1;
    } rows[NM_MAX_NODES];
    /* What each arena holds of this tensor (nbytes 0: nothing). */
    nm_range held[NM_MAX_NODES];
} nm_tensor_plan;

typedef struct nm_plan_node {
    int os_index;                /* NUMA node OS index */
    int n_threads;               /* workers on this node */
    int cpus[256];               /* OS PU index for each worker */
    uint32_t kv_head0, kv_head1; /* KV heads [kv_head0, kv_head1) it owns */
} nm_plan_node;

typedef struct nm_plan {
    nm_placement placement;
    int fixed_node; /* os index for NM_PLACE_NODE */
    int n_nodes;    /* compute nodes */
    nm_plan_node nodes[NM_MAX_NODES];
    int n_arenas; /* n_nodes for shard/replicate, 1 otherwise */
    uint64_t arena_bytes[NM_MAX_NODES];
    int arena_node[NM_MAX_NODES]; /* os index; -1 = interleaved over all */
    uint64_t align;               /* alignment the arena keeps offsets congruent to */
    int n_tensors;
    nm_tensor_plan *tensors; /* the file's tensors in file order, then the
                                expert units (n_file_tensors.. n_tensors) */
    int n_file_tensors;
    nm_moe_placement moe;
    nm_gguf_tensor *expert_t; /* the expert units' matrices */
    char *expert_names;
    uint64_t remote_bytes_per_token; /* weight bytes read across nodes */
    uint64_t embd_row_bytes;         /* one token_embd row (read per token) */
    nm_llama_hparams hp;
} nm_plan;

typedef struct nm_plan_opts {
    nm_placement placement;
    int fixed_node;  /* for NM_PLACE_NODE */
    int n_nodes_req; /* 0: all allowed nodes with CPUs */
    int nodes_req[NM_MAX_NODES];
    int threads_per_node; /* 0: one per allowed core */
    int n_threads;        /* 0: all allowed cores; else total, spread */
    uint64_t align;       /* 0: 4096 */
    nm_moe_placement moe; /* default NM_MOE_ROWS */
} nm_plan_opts;

int nm_moe_placement_parse(const char *s, nm_moe_placement *m, nm_error *err);
const char *nm_moe_placement_name(nm_moe_placement m);

int nm_placement_parse(const char *s, nm_placement *p, int *node, nm_error *err);
const char *nm_placement_name(nm_placement p);

nm_plan *nm_plan_build(const nm_gguf *g, const nm_topo *topo, const nm_plan_opts *opts,
                       nm_error *err);
void nm_plan_free(nm_plan *p);

void nm_plan_print(const nm_plan *p, FILE *out);
void nm_plan_print_json(const nm_plan *p, FILE *out);
/* The plan's keys, into a JSON object the caller has begun. */
struct nm_json;
void nm_plan_json_fields(const nm_plan *p, struct nm_json *j);

/* The full per-tensor table (`numalm plan --verbose`). */
void nm_plan_print_table(const nm_plan *p, FILE *out);

const char *nm_role_name(nm_role r);

/* True for vectors (norms, rope factors): every node gets a whole copy and
 * rows[] spans the whole tensor on every node. */
bool nm_tensor_is_copied(const nm_gguf_tensor *t);

/* Weight bytes plan node k's workers read per decoded token (its rows of
 * every matrix, every copied vector; an untied token embedding excluded).
 * Experts count as the expected share that is active: expert_used_count /
 * expert_count of node k's expert bytes (exact per token when experts are
 * split by rows, the mean over tokens under uniform routing when whole). */
uint64_t nm_plan_node_read_bytes(const nm_plan *p, int k);

/* Node k's rows of every expert of every layer, in bytes (what it
 * computes of the experts; what it holds of them in shard), and the
 * largest share one token can make it read: expert_used_count experts'
 * worth, every active expert on it (whole experts), or exactly
 * expert_used_count / expert_count of its bytes (rows). */
uint64_t nm_plan_node_expert_bytes(const nm_plan *p, int k);
uint64_t nm_plan_node_expert_bytes_max(const nm_plan *p, int k);

/* About the held[] layout: a reader may round a range out to `align` on both
 * ends (O_DIRECT) and read straight into the arena: ranges that share an
 * align block map file to arena with the same shift, so the rounded read
 * writes only the file's own bytes. arena_bytes[] are multiples of align.
 * embd_row_bytes is 0 when there is no output.weight (the embedding is then
 * the LM head, split and read like a matrix). */

/* (file offset - arena offset) mod align of arena a's first range. Whole
 * tensors consecutive in the file keep that shift, so an arena placed at
 * this phase (nm_arena_create_phased) holds most of its bytes at their file
 * alignment. */
uint64_t nm_plan_arena_phase(const nm_plan *p, int a, uint64_t align);

#endif
