/* numalm: a NUMA-aware GGUF model loader and llama inference runtime.
 *
 * The public C interface, self-contained: it includes only the C library's
 * headers and shows no internal structure. One call sequence serves every
 * program, the numalm command included:
 *
 *     numalm_options o;
 *     numalm_options_init(&o);              // every field at its default
 *     o.model_path = "model.gguf";
 *     char err[1024];
 *     numalm_session *s = numalm_open(&o, err, sizeof err);
 *     if (!s) { fprintf(stderr, "%s\n", err); return 1; }
 *     numalm_gen_params p;
 *     numalm_gen_params_init(&p);           // greedy, 128 tokens
 *     if (numalm_generate(s, "Once upon a time", &p, on_text, NULL, NULL) < 0)
 *         fprintf(stderr, "%s\n", numalm_last_error(s));
 *     numalm_close(s);
 *
 * numalm_open reads the GGUF header, probes the NUMA topology (hwloc), plans
 * where every weight and worker thread goes, loads the weights into
 * node-local memory and builds the model (tokenizer, KV cache, workers).
 *
 * Errors: numalm_open writes its message into the caller's buffer; every
 * other call that can fail returns -1 (or NULL) and leaves its message in the
 * session, read with numalm_last_error. The library never prints: warnings,
 * fallbacks and progress go to the callbacks set in the options.
 *
 * Threads: a session is used by one thread at a time; it runs its own worker
 * threads inside the calls. Structs that the caller fills (numalm_options,
 * numalm_gen_params) must first be set by their _init function, so that
 * fields added later get their defaults. */
#ifndef NUMALM_H
#define NUMALM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define NUMALM_API __attribute__((visibility("default")))
#else
#define NUMALM_API
#endif

/* ---- options ---------------------------------------------------------- */

/* How far numalm_open goes. Each stage includes the ones before it. */
typedef enum numalm_stage {
    NUMALM_STAGE_PLAN = 1,    /* GGUF header, topology, placement plan */
    NUMALM_STAGE_WEIGHTS = 2, /* + the weights in node-local memory */
    NUMALM_STAGE_MODEL = 3,   /* + tokenizer, KV cache, workers: ready to run */
} numalm_stage;

/* Where the weight bytes live. The compute split is the same for all: each
 * node's workers compute the rows the plan gives that node. */
typedef enum numalm_placement {
    NUMALM_PLACE_SHARD = 0,      /* each node holds the rows it computes */
    NUMALM_PLACE_REPLICATE = 1,  /* each node holds a full copy */
    NUMALM_PLACE_INTERLEAVE = 2, /* one copy, pages round-robin over the nodes */
    NUMALM_PLACE_NODE = 3,       /* one copy on fixed_node */
    /* Replicate when every node has room for a copy, else shard, else
     * interleave, from the nodes' free memory (see no_mem_check);
     * numalm_placement_used says which. */
    NUMALM_PLACE_AUTO = 4,
} numalm_placement;

/* Where a mixture of experts' experts are computed (and, in shard, held). */
typedef enum numalm_moe_placement {
    NUMALM_MOE_ROWS = 0,    /* every expert's rows split across the nodes */
    NUMALM_MOE_EXPERTS = 1, /* whole experts per node */
} numalm_moe_placement;

/* How the bytes arrive. Fallbacks (O_DIRECT refused, no io_uring) are taken
 * automatically and reported through the log callback. */
typedef enum numalm_io {
    NUMALM_IO_DIO = 0,      /* O_DIRECT + io_uring, per-node readers */
    NUMALM_IO_BUFFERED = 1, /* pread by node-pinned threads */
    NUMALM_IO_MMAP = 2,     /* map the file, interleave/bind policy (baseline) */
    NUMALM_IO_AUTO = 3,     /* copy what the page cache holds, O_DIRECT the rest */
} numalm_io;

/* Transparent huge pages for the weight arenas. */
typedef enum numalm_thp {
    NUMALM_THP_OFF = -1,
    NUMALM_THP_AUTO = 0, /* on, except where freed memory goes back to a hypervisor */
    NUMALM_THP_ON = 1,
    NUMALM_THP_COLLAPSE = 2, /* fill with small pages, then MADV_COLLAPSE */
} numalm_thp;

/* KV cache element type (the GGUF type ids). */
typedef enum numalm_kv_type {
    NUMALM_KV_F32 = 0,
    NUMALM_KV_F16 = 1,
} numalm_kv_type;

/* Kernel instruction-set levels, lowest first. */
typedef enum numalm_simd {
    NUMALM_SIMD_SCALAR = 0,
    NUMALM_SIMD_AVX2 = 1,
    NUMALM_SIMD_AVX512 = 2,
    NUMALM_SIMD_AMX = 3, /* AVX-512 and AMX int8 tiles (K-quant prompts, batches) */
} numalm_simd;

typedef enum numalm_log_level {
    NUMALM_LOG_DEBUG = 0,
    NUMALM_LOG_INFO = 1,  /* what was done ("... collapsed into huge pages") */
    NUMALM_LOG_WARN = 2,  /* a fallback was taken; the work goes on */
    NUMALM_LOG_ERROR = 3, /* also returned as the call's error */
} numalm_log_level;

/* One message, without a trailing newline. */
typedef void (*numalm_log_fn)(void *user, numalm_log_level level, const char *msg);

/* Progress of long work (what: "loading"): done of total bytes after
 * seconds; called at most about ten times a second, from any thread, and
 * once more with finished true at the end. */
typedef void (*numalm_progress_fn)(void *user, const char *what, uint64_t done, uint64_t total,
                                   double seconds, bool finished);

#define NUMALM_MAX_NODES 64

typedef struct numalm_options {
    /* what to open */
    const char *model_path;   /* GGUF file (copied) */
    const char *topology_xml; /* hwloc XML export of another machine: plan
                                 for it (stage PLAN only); NULL: this one */
    numalm_stage stage;       /* default NUMALM_STAGE_MODEL */

    /* where the weights and the workers go */
    numalm_placement placement;  /* default shard */
    numalm_moe_placement moe;    /* default rows */
    int fixed_node;              /* NUMALM_PLACE_NODE: its OS index */
    int nodes[NUMALM_MAX_NODES]; /* compute on these nodes (OS indexes) */
    int n_nodes;                 /* 0: every allowed node with CPUs */
    int n_threads;               /* workers in all, spread in proportion
                                    to cores; 0: one per allowed core */
    int threads_per_node;        /* workers on each node; 0: see n_threads */
    uint64_t align;              /* arena/file offset congruence; 0: 4096 */

    /* how the bytes arrive */
    numalm_io io;         /* default auto */
    numalm_thp thp;       /* default auto */
    bool mlock;           /* lock the weights in memory */
    bool hugepages;       /* explicit MAP_HUGETLB pages (falls back) */
    bool verify;          /* check page placement and checksums after the load */
    bool drop_caches;     /* drop the whole page cache first (root) */
    bool drop_file_cache; /* evict only the model from the page cache first */
    bool no_map;          /* auto: copy cached pages, never map them */
    uint64_t chunk_bytes; /* O_DIRECT request size; 0: 4 MiB */
    int queue_depth;      /* io_uring depth per reader; 0: 32 */
    int readers_per_node; /* 0: 1 for O_DIRECT, up to 4 for copies */
    /* Memory admission: before anything is mapped, what every node will hold
     * (weights, and from stage MODEL the KV cache at n_ctx and scratch) is
     * compared with what it can give (free + inactive file pages - a
     * reserve), the cgroup memory limit and RLIMIT_AS; numalm_open fails
     * with the figures per node and the placements that fit. true skips
     * that check (a node that runs out during the load still stops it with
     * an error instead of the OOM killer). */
    bool no_mem_check;
    /* switches that simulate a poorer machine (tests) or work around a
       broken one; each one taken is reported as a fallback */
    bool no_odirect;    /* as if the filesystem refused O_DIRECT */
    bool no_uring;      /* as if the kernel had no io_uring (preadv) */
    bool no_staging;    /* replicate: every node reads its copy from disk
                           instead of 1/n of it and copying the rest */
    uint32_t dio_align; /* O_DIRECT offset alignment to use when it is a
                           larger power of two than the filesystem's */

    /* the model */
    int n_ctx;              /* KV cache positions; 0: the model's training context */
    numalm_kv_type kv_type; /* default F16 */
    int n_batch;            /* prompt tokens per batched pass; 0: 64 */
    int n_seq;              /* KV sequences (a server's slots), each of n_ctx; 0: 1 */
    numalm_simd simd_max;   /* highest kernel level to use (default AMX:
                               the best this CPU has); process-wide, set
                               when a session reaches stage MODEL */

    /* blocks on a GPU (llama.cpp's -ngl): their weights are read by a reader
     * pinned to the GPU's NUMA node into page-locked staging buffers on that
     * node and copied up while the next ones are read (docs/gpu.md) */
    int n_gpu_layers;        /* the last blocks run on the device; more than
                                the model has: the LM head too; 0: none */
    const char *gpu;         /* "0", "1", ...: a CUDA device (NULL: "0");
                                "cpu" or "cpu:NODE": the CPU implementation of
                                the device interface (tests, comparisons) */
    int gpu_staging_node;    /* -1 (default): the node the GPU hangs off */
    uint64_t gpu_slot_bytes; /* staging slot size; 0: 32 MiB */
    int gpu_slots;           /* staging slots, one copy stream each; 0: 4 */
    bool gpu_pageable;       /* stage in memory that is not page-locked
                                (measurements: the copy from pageable memory) */

    /* messages */
    numalm_log_fn log; /* NULL: messages are dropped */
    void *log_user;
    numalm_log_level log_level;  /* lowest level passed on; default INFO */
    numalm_progress_fn progress; /* NULL: no progress reports */
    void *progress_user;
} numalm_options;

/* Every field at its default. */
NUMALM_API void numalm_options_init(numalm_options *o);

/* ---- the library ------------------------------------------------------ */

/* The version, "MAJOR.MINOR.PATCH". */
NUMALM_API const char *numalm_version(void);

/* How this copy of the library was built. */
typedef struct numalm_build {
    const char *version;    /* as numalm_version() */
    const char *commit;     /* git commit built from ("-dirty": with local
                               changes; "unknown" outside a checkout) */
    const char *simd;       /* kernel levels compiled in: "scalar avx2 avx512 amx" */
    bool cuda;              /* the CUDA device compiled in */
    const char *compiler;   /* "GNU 12.2.0" */
    const char *build_type; /* "Release", "Debug" */
} numalm_build;

/* Static storage: valid for the life of the process. */
NUMALM_API const numalm_build *numalm_build_info(void);

/* ---- sessions --------------------------------------------------------- */

typedef struct numalm_session numalm_session;

/* Opens o->model_path and goes as far as o->stage. NULL on failure, with the
 * message (naming the file, key or tensor and offset) in err[0..err_size). */
NUMALM_API numalm_session *numalm_open(const numalm_options *o, char *err, size_t err_size);

/* Carries a session opened to an earlier stage on to o->stage, with o's
 * fields for the stages still to run (the finished ones keep theirs): e.g.
 * open to NUMALM_STAGE_WEIGHTS, size the context from
 * numalm_n_ctx_train, then advance to NUMALM_STAGE_MODEL. 0 or -1. */
NUMALM_API int numalm_advance(numalm_session *s, const numalm_options *o);

/* Frees everything; NULL is ignored. */
NUMALM_API void numalm_close(numalm_session *s);

/* The message of the last failed call on s ("" if none). */
NUMALM_API const char *numalm_last_error(const numalm_session *s);

/* ---- what was opened -------------------------------------------------- */

NUMALM_API numalm_stage numalm_session_stage(const numalm_session *s);
NUMALM_API const char *numalm_model_path(const numalm_session *s);
/* Seconds spent in numalm_open and numalm_advance so far. */
NUMALM_API double numalm_load_seconds(const numalm_session *s);
NUMALM_API numalm_placement numalm_placement_used(const numalm_session *s);
NUMALM_API int numalm_n_nodes(const numalm_session *s);     /* compute nodes */
NUMALM_API int numalm_n_threads(const numalm_session *s);   /* workers in all */
NUMALM_API int numalm_n_ctx_train(const numalm_session *s); /* llama.context_length */
/* From stage WEIGHTS: the io mode after fallbacks (auto stays auto). */
NUMALM_API numalm_io numalm_io_used(const numalm_session *s);
/* From stage MODEL (else 0 / -1): */
NUMALM_API int numalm_n_vocab(const numalm_session *s);
NUMALM_API int numalm_n_ctx(const numalm_session *s);   /* positions per sequence */
NUMALM_API int numalm_n_seq(const numalm_session *s);   /* KV sequences (numalm_eval_batch) */
NUMALM_API int numalm_n_batch(const numalm_session *s); /* tokens per numalm_eval_batch */
NUMALM_API numalm_kv_type numalm_kv_type_used(const numalm_session *s);
/* Weight bytes one decode step reads (every matrix + one embedding row). */
NUMALM_API uint64_t numalm_weight_bytes_per_token(const numalm_session *s);

/* The blocks on a GPU and how their weights got there (from stage
 * WEIGHTS). GB/s are bytes / 1e9 per second. */
typedef struct numalm_gpu_info {
    const char *device; /* "cuda" or "cpu" (the CPU implementation) */
    int ordinal;
    const char *name;
    const char *busid;        /* PCI bus id, "" if none */
    int device_node;          /* the NUMA node it hangs off, -1 unknown */
    int staging_node;         /* where the staging buffers were */
    bool pinned;              /* staging page-locked */
    int n_layers;             /* blocks on the device (the last ones) */
    bool head;                /* the LM head too */
    int n_tensors;            /* uploaded */
    uint64_t bytes;           /* uploaded */
    double seconds;           /* the upload, wall clock */
    double disk_gbps;         /* disk -> staging, while the reader was reading */
    double h2d_gbps;          /* staging -> device, while a copy was in flight */
    bool verified, verify_ok; /* options.verify: every tensor hashed on the device */
} numalm_gpu_info;

/* 0 with *info filled when blocks run on a device, -1 when none do. */
NUMALM_API int numalm_gpu_info_get(const numalm_session *s, numalm_gpu_info *info);

/* The kernel level in use (process-wide: the best this CPU supports, at
 * most the simd_max of the last session that reached stage MODEL). */
NUMALM_API numalm_simd numalm_simd_level(void);

NUMALM_API const char *numalm_placement_name(numalm_placement p); /* "shard" */
NUMALM_API const char *numalm_io_name(numalm_io io);              /* "auto" */
NUMALM_API const char *numalm_simd_name(numalm_simd level);       /* "avx2" */
NUMALM_API const char *numalm_kv_type_name(numalm_kv_type t);     /* "f16" */

/* The level numalm_simd_name calls name ("scalar", "avx2", "avx512", "amx";
 * exact, lower case) into *level: 0, or -1 with *level unchanged when name
 * is NULL or none of them. Whether this CPU runs it is numalm_open's check. */
NUMALM_API int numalm_simd_from_name(const char *name, numalm_simd *level);

/* ---- tokens ----------------------------------------------------------- */

/* Encodes text[0..len) as llama.cpp's llama_tokenize: with add_bos, BOS
 * (and EOS) as the vocab asks for them (numalm_add_bos; a vocab that adds no
 * BOS gets none); special pieces in the text (<|eot_id|>) stay text.
 * Returns the token count,
 * of which the first max_tokens are stored (call again with more room when
 * it is larger), or -1. */
NUMALM_API int numalm_tokenize(numalm_session *s, const char *text, size_t len, bool add_bos,
                               int32_t *tokens, int max_tokens);

/* Whether the vocab asks for BOS in front of a text. */
NUMALM_API bool numalm_add_bos(const numalm_session *s);
NUMALM_API int32_t numalm_token_bos(const numalm_session *s);
NUMALM_API int32_t numalm_token_eos(const numalm_session *s);

/* The text of tokens[0..n) as generation prints it (the leading space of the
 * first piece dropped, control tokens empty). Writes at most size - 1 bytes
 * and a NUL; returns the full length (more than size - 1: call again with a
 * larger buffer), or -1. */
NUMALM_API int64_t numalm_detokenize(numalm_session *s, const int32_t *tokens, int n, char *buf,
                                     size_t size);

/* ---- evaluation ------------------------------------------------------- */

/* Runs tokens[0..n) at positions pos..pos+n-1 of the session's one sequence
 * (pos 0 starts a new one; the cache must hold positions 0..pos-1). The
 * logits of tokens [logits_from, n) go to logits[(i - logits_from) *
 * n_vocab]; logits_from == n computes none. 0 or -1 (e.g. past the
 * context, without touching the cache). */
NUMALM_API int numalm_eval(numalm_session *s, const int32_t *tokens, int n, int pos,
                           int logits_from, float *logits);

/* One token of a batch over several sequences (numalm_eval_batch). */
typedef struct numalm_batch_token {
    int32_t token;
    int seq;     /* its KV sequence, 0 .. numalm_n_seq() - 1 */
    int pos;     /* its position in that sequence */
    bool logits; /* return its logits */
} numalm_batch_token;

/* A server's step: runs b[0..n) (n <= numalm_n_batch()) as one pass over the
 * weights, every matrix multiplying all n tokens at once, each token
 * attending within its own sequence. A sequence's tokens come in order of
 * consecutive positions, the first at most where its cache ends (0 starts
 * it anew); its cache then ends after its last token here. The logits of
 * the tokens with .logits go to logits[k * n_vocab], k counting those
 * tokens in batch order. A token's logits are bit for bit those its
 * sequence gets evaluated alone: the other sequences change nothing. 0, or
 * -1 (numalm_last_error) without touching any cache for a bad batch. The
 * session's one-sequence calls (numalm_eval, numalm_generate) use
 * sequence 0. */
NUMALM_API int numalm_eval_batch(numalm_session *s, const numalm_batch_token *b, int n,
                                 float *logits);

/* ---- generation ------------------------------------------------------- */

/* Applied in llama.cpp's default order: top-k, top-p, temperature. */
typedef struct numalm_sampler_params {
    float temp;    /* <= 0: greedy */
    int top_k;     /* <= 0: off */
    float top_p;   /* >= 1: off */
    uint64_t seed; /* the same seed gives the same tokens */
} numalm_sampler_params;

typedef struct numalm_gen_params {
    int n_predict;                 /* tokens to generate at most (default 128; < 0: no
                                      limit); stops at the end of generation */
    numalm_sampler_params sampler; /* default greedy */
    bool echo;                     /* stream the prompt first, as the model read it */
    bool parse_special;            /* control pieces written in the prompt (<|im_start|>)
                                      become their token (llama.cpp's parse_special) */
    bool read_probe;               /* after each decode step, time a read of the same
                                      weights by the same threads (see the stats) */
    int32_t *tokens;               /* optional: receives every token, prompt included, */
    int max_tokens;                /* at most this many */
    /* Optional: the prompt as tokens (numalm_chat_tokenize); the text prompt
     * is then ignored. The first n_cached of them are in the KV cache from
     * the call before (a conversation's earlier turns): only the rest is
     * evaluated. */
    const int32_t *prompt_tokens;
    int n_prompt_tokens, n_cached;
    int32_t stop_token; /* >= 0: this token ends generation too (a chat
                           template's end of turn); default -1 */
} numalm_gen_params;

/* Greedy, 128 tokens, no echo, no probe, no token copy, no stop token. */
NUMALM_API void numalm_gen_params_init(numalm_gen_params *p);

/* Receives each piece of text as soon as it is known (a UTF-8 character may
 * be split across calls). Return 0 to go on, non-zero to stop generating. */
typedef int (*numalm_text_fn)(void *user, const char *text, size_t len);

typedef enum numalm_stop {
    NUMALM_STOP_LENGTH = 0,  /* n_predict tokens */
    NUMALM_STOP_EOS = 1,     /* the model ended the text */
    NUMALM_STOP_CONTEXT = 2, /* the context is full */
    NUMALM_STOP_CALLER = 3,  /* the text callback asked to stop */
} numalm_stop;

typedef struct numalm_gen_stats {
    int n_prompt;       /* prompt tokens, BOS included */
    int n_decode;       /* tokens generated (EOS not counted) */
    int n_decode_evals; /* single-token passes through the model */
    int n_tokens;       /* prompt + generated (may exceed max_tokens) */
    double prompt_s;    /* the batched prompt pass */
    double decode_s;    /* decode passes + sampling (not the read probe) */
    numalm_stop stop;
    int n_prompt_cached; /* prompt tokens taken from the KV cache (n_cached) */
    int n_kv;            /* leading tokens (of all n_tokens) the KV cache holds after the call:
                            give them as n_cached next time */
    /* read_probe: medians over the decode/read pairs */
    int probe_pairs;
    double probe_decode_gbps, probe_read_gbps;
    double probe_of_read, probe_of_read_q25, probe_of_read_q75; /* decode / read */
    uint64_t probe_read_bytes, probe_checksum;                  /* of the last read pass */
} numalm_gen_stats;

/* Tokenizes prompt (BOS first when the vocab asks for it), runs it from
 * position 0 as one batched pass, then samples and decodes. stats may be
 * NULL. 0 or -1. */
NUMALM_API int numalm_generate(numalm_session *s, const char *prompt, const numalm_gen_params *p,
                               numalm_text_fn on_text, void *user, numalm_gen_stats *stats);

/* ---- chat -------------------------------------------------------------- */

/* Built-in chat templates (no Jinja engine): ChatML, Llama 3, Llama 2 and
 * Mistral [INST] variants, Gemma, formatted as llama.cpp's own code does. */

/* One message; role is "system", "user" or "assistant". */
typedef struct numalm_chat_msg {
    const char *role;
    const char *content;
} numalm_chat_msg;

/* The template named `name` (llama.cpp's names: "chatml", "llama3",
 * "llama2", "mistral-v7", "gemma", ...), or with name NULL the one the
 * model's tokenizer.chat_template is recognised as. Returns its id (>= 0),
 * or -1 when the name is none of them or the file's template is not
 * recognised (the message lists the names). Needs stage MODEL. */
NUMALM_API int numalm_chat_template(numalm_session *s, const char *name);
NUMALM_API const char *numalm_chat_template_name(int tmpl);
/* Every name, comma-separated. */
NUMALM_API const char *numalm_chat_template_names(void);

/* The conversation as text, with the assistant's header at the end when
 * add_generation_prompt: into buf (NUL-terminated, cut to size; NULL to
 * ask the length). Returns the full length, or -1. */
NUMALM_API int64_t numalm_chat_format(numalm_session *s, int tmpl, const numalm_chat_msg *msgs,
                                      size_t n, bool add_generation_prompt, char *buf, size_t size);

/* The prompt tokens of the conversation, as llama.cpp's server makes them
 * (BOS/EOS as the vocab asks, special pieces such as <|im_end|> parsed),
 * with the generation prompt. For a conversation whose last reply came
 * from numalm_generate, prev[0..n_prev) are that call's tokens (its
 * params.tokens): the result then starts with them, the reply as generated,
 * where the template allows (see runtime/chat.h); else pass NULL, 0.
 * Returns the count (tokens gets at most max_tokens), or -1. */
NUMALM_API int numalm_chat_tokenize(numalm_session *s, int tmpl, const numalm_chat_msg *msgs,
                                    size_t n, const int32_t *prev, int n_prev, int32_t *tokens,
                                    int max_tokens);

/* The token template tmpl ends a reply with (<|im_end|>, <|eot_id|>, ...;
 * EOS for the [INST] templates), for numalm_gen_params.stop_token; -1 when
 * the vocab has none. */
NUMALM_API int32_t numalm_chat_end_of_turn(numalm_session *s, int tmpl);

/* Whether a token ends generation: EOS, end of turn (<|eot_id|>,
 * <|im_end|>, ...) and the others llama.cpp stops at. */
NUMALM_API bool numalm_token_is_eog(const numalm_session *s, int32_t token);

/* ---- perplexity ------------------------------------------------------- */

typedef struct numalm_ppl_result {
    int n_tokens; /* of the whole text, BOS included */
    int n_chunks;
    int n_scored; /* tokens scored */
    double ppl;
    double ppl_err; /* standard error estimate */
    double seconds;
} numalm_ppl_result;

/* After each chunk: its number (from 1) and the running perplexity. */
typedef void (*numalm_ppl_fn)(void *user, int chunk, double ppl);

/* llama.cpp's method: the text, tokenized with BOS, is cut into chunks of
 * n_ctx tokens; each is evaluated from position 0 with BOS first, and the
 * logits of its second half score the next token. n_ctx must fit the
 * session's context. 0 or -1. */
NUMALM_API int numalm_perplexity(numalm_session *s, const char *text, size_t len, int n_ctx,
                                 numalm_ppl_fn on_chunk, void *user, numalm_ppl_result *r);

#ifdef __cplusplus
}
#endif

#endif
