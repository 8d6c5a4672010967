/* The placement plan: which bytes of which tensor live on which node, and
 * which threads compute on them. Everything after this (readers, arenas,
 * workers) just executes the plan.
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
} nm_role;

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
    nm_tensor_plan *tensors;         /* same order as the file's tensors */
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
} nm_plan_opts;

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
 * every matrix, every copied vector; an untied token embedding excluded). */
uint64_t nm_plan_node_read_bytes(const nm_plan *p, int k);

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
