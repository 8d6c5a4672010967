/* numalm_open and the session's life: GGUF header -> topology -> plan ->
 * loaded weights -> tokenizer + model, each stage on the one before. */
#include "session_internal.h"

#include "common/util.h"
#include "cuda/upload.h"
#include "gguf/ggml_types.h"
#include "runtime/kernels.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The public enums are the internal ones under their public names. */
_Static_assert(NUMALM_PLACE_SHARD == (int)NM_PLACE_SHARD &&
                   NUMALM_PLACE_REPLICATE == (int)NM_PLACE_REPLICATE &&
                   NUMALM_PLACE_INTERLEAVE == (int)NM_PLACE_INTERLEAVE &&
                   NUMALM_PLACE_NODE == (int)NM_PLACE_NODE &&
                   NUMALM_PLACE_AUTO == (int)NM_PLACE_AUTO,
               "numalm_placement matches nm_placement");
_Static_assert(NUMALM_IO_DIO == (int)NM_IO_DIO && NUMALM_IO_BUFFERED == (int)NM_IO_BUFFERED &&
                   NUMALM_IO_MMAP == (int)NM_IO_MMAP && NUMALM_IO_AUTO == (int)NM_IO_AUTO,
               "numalm_io matches nm_io_mode");
_Static_assert(NUMALM_SIMD_SCALAR == (int)NM_SIMD_SCALAR && NUMALM_SIMD_AVX2 == (int)NM_SIMD_AVX2 &&
                   NUMALM_SIMD_AVX512 == (int)NM_SIMD_AVX512 && NUMALM_SIMD_AMX == (int)NM_SIMD_AMX,
               "numalm_simd matches nm_simd");
_Static_assert(NUMALM_KV_F32 == (int)NM_TYPE_F32 && NUMALM_KV_F16 == (int)NM_TYPE_F16,
               "numalm_kv_type holds GGUF type ids");
_Static_assert(NUMALM_MAX_NODES == NM_MAX_NODES, "one node limit");
_Static_assert(NUMALM_MOE_ROWS == (int)NM_MOE_ROWS && NUMALM_MOE_EXPERTS == (int)NM_MOE_EXPERTS,
               "numalm_moe_placement matches nm_moe_placement");

void numalm_options_init(numalm_options *o) {
    memset(o, 0, sizeof *o);
    o->stage = NUMALM_STAGE_MODEL;
    o->placement = NUMALM_PLACE_SHARD;
    o->io = NUMALM_IO_AUTO;
    o->thp = NUMALM_THP_AUTO;
    o->kv_type = NUMALM_KV_F16;
    o->simd_max = NUMALM_SIMD_AMX;
    o->log_level = NUMALM_LOG_INFO;
    o->gpu_staging_node = -1;
}

_Static_assert(NUMALM_LOG_DEBUG == (int)NM_LOG_DEBUG && NUMALM_LOG_INFO == (int)NM_LOG_INFO &&
                   NUMALM_LOG_WARN == (int)NM_LOG_WARN && NUMALM_LOG_ERROR == (int)NM_LOG_ERROR,
               "numalm_log_level matches nm_log_level");

/* The layers' messages, on to the caller's callback. */
static void relay_log(void *ud, nm_log_level level, const char *msg) {
    const numalm_session *s = ud;
    s->opts.log(s->opts.log_user, (numalm_log_level)level, msg);
}

/* The log the layers below report to (the loader's fallback lines). */
static nm_log layer_log(const numalm_session *s) {
    return (nm_log){.fn = s->opts.log ? relay_log : NULL,
                    .ud = (void *)s,
                    .min_level = (nm_log_level)s->opts.log_level};
}

/* A message for the caller's log callback, when its level is wanted. */
void nm_session_log(const numalm_session *s, numalm_log_level level, const char *fmt, ...) {
    nm_log l = layer_log(s);
    va_list ap;
    va_start(ap, fmt);
    nm_vlogf(&l, (nm_log_level)level, fmt, ap);
    va_end(ap);
}

/* ---- stages ------------------------------------------------------------ */

/* What the session will hold besides the weights when it goes on to
 * `upto` (the KV cache and scratch from stage MODEL), for the memory
 * admission (numa/fit.h). */
static nm_fit_opts fit_opts(const numalm_options *o, numalm_stage upto) {
    nm_load_opts lo = {.io = (nm_io_mode)o->io,
                       .queue_depth = o->queue_depth,
                       .readers_per_node = o->readers_per_node};
    nm_fit_opts f = {
        .with_model = upto >= NUMALM_STAGE_MODEL,
        .n_ctx = o->n_ctx,
        .n_seq = o->n_seq,
        .kv_elem_bytes = o->kv_type == NUMALM_KV_F32 ? 4 : 2,
        .n_batch = o->n_batch,
        .staging_bytes = nm_load_staging_bytes(&lo),
    };
    if (o->io == NUMALM_IO_MMAP)
        f.weights_unchecked = "--io mmap: they are the file's page cache, which the kernel can "
                              "drop and read again";
    else if (o->hugepages)
        f.weights_unchecked = "--hugepages: they come from the huge-page pool";
    return f;
}

/* The fit table for the session's plan options on the machine as it is
 * now, into s->fit. */
static int fit_table(numalm_session *s, const nm_plan_opts *po, const nm_fit_opts *fo) {
    nm_mem_state m;
    nm_mem_probe(s->topo, &m);
    if (!s->fit && !(s->fit = nm_calloc(1, sizeof *s->fit, "the fit table", &s->err)))
        return -1;
    return nm_fit_table_build(s->gguf, s->topo, po, fo, &m, s->fit, &s->err);
}

static int open_plan(numalm_session *s) {
    const numalm_options *o = &s->opts;
    nm_plan_opts po = {
        .placement = (nm_placement)o->placement,
        .fixed_node = o->fixed_node,
        .n_nodes_req = o->n_nodes,
        .threads_per_node = o->threads_per_node,
        .n_threads = o->n_threads,
        .align = o->align,
        .moe = (nm_moe_placement)o->moe,
    };
    if (o->n_nodes < 0 || o->n_nodes > NM_MAX_NODES)
        return nm_fail(&s->err, "options: %d nodes requested (at most %d)", o->n_nodes,
                       NM_MAX_NODES);
    memcpy(po.nodes_req, o->nodes, (size_t)o->n_nodes * sizeof o->nodes[0]);
    s->plan_opts = po;
    /* the fit table counts what the stages asked for will hold, the KV
     * cache at least as `numalm run` would (a plan-only session) */
    nm_fit_opts fo =
        fit_opts(o, o->stage == NUMALM_STAGE_WEIGHTS ? NUMALM_STAGE_WEIGHTS : NUMALM_STAGE_MODEL);
    if ((s->gguf = nm_gguf_open(s->path, &s->err)) &&
        (s->topo = nm_topo_load(o->topology_xml, &s->err)) && fit_table(s, &po, &fo) == 0) {
        if (po.placement == NM_PLACE_AUTO) {
            /* decided here; the admission before the load checks it */
            const nm_fit_table *t = s->fit;
            int r = t->auto_row >= 0 ? t->auto_row : nm_fit_table_row(t, NM_PLACE_SHARD, -1);
            po.placement = t->rows[r].placement;
            po.fixed_node = t->rows[r].fixed_node;
            nm_session_log(s, NUMALM_LOG_INFO, "--placement auto: %s (%s)",
                           nm_placement_name(po.placement),
                           t->auto_row >= 0 ? t->auto_why : "no placement fits; shard planned");
        }
        if ((s->plan = nm_plan_build(s->gguf, s->topo, &po, &s->err)))
            return 0;
    }
    free(s->fit);
    nm_topo_free(s->topo);
    nm_gguf_close(s->gguf);
    s->fit = NULL, s->topo = NULL, s->gguf = NULL;
    return -1;
}

/* Before anything is mapped: does the plan fit what the nodes, the cgroup
 * and RLIMIT_AS can give now? fo says what is counted. */
static int admit(numalm_session *s, const nm_fit_opts *fo) {
    if (s->opts.no_mem_check || s->topo->from_xml)
        return 0;
    nm_plan_opts po = s->plan_opts;
    if (fit_table(s, &po, fo) != 0)
        return -1;
    int chosen, r = nm_fit_table_row(s->fit, s->plan->placement, s->plan->fixed_node);
    if (r >= 0 && s->fit->rows[r].fits)
        return 0;
    if (s->opts.placement != NUMALM_PLACE_AUTO)
        return nm_fit_admit(s->fit, s->plan->placement, s->plan->fixed_node, &chosen, &s->err);
    if (nm_fit_admit(s->fit, NM_PLACE_AUTO, -1, &chosen, &s->err) != 0)
        return -1;
    return nm_fail(&s->err,
                   "--placement auto chose %s, which no longer fits: the nodes' free memory "
                   "changed since; open the session again",
                   nm_placement_name(s->plan->placement));
}

static int open_weights(numalm_session *s) {
    const numalm_options *o = &s->opts;
    if (s->topo->from_xml)
        return nm_fail(&s->err,
                       "%s describes another machine: a session on it can plan, not load "
                       "(stage PLAN)",
                       s->topo->source);
    nm_load_opts lo = {
        .io = (nm_io_mode)o->io,
        .arena = {.mlock = o->mlock, .hugepages = o->hugepages},
        .chunk_bytes = o->chunk_bytes,
        .queue_depth = o->queue_depth,
        .readers_per_node = o->readers_per_node,
        .verify = o->verify,
        .drop_caches = o->drop_caches,
        .progress = o->progress,
        .progress_ud = o->progress_user,
        .topo = s->topo, /* readers pin with the plan's topology */
        .drop_file_cache = o->drop_file_cache,
        .thp = o->thp,
        .no_map = o->no_map,
        .log = layer_log(s),
        .no_odirect = o->no_odirect,
        .no_uring = o->no_uring,
        .no_staging = o->no_staging,
        .dio_align = o->dio_align,
    };
    /* before the GPU upload too; counted as if every weight stayed on the
     * host (blocks on the GPU leave their arena pages untouched) */
    nm_fit_opts fo = fit_opts(o, o->stage);
    uint8_t *skip = NULL;
    if (admit(s, &fo) != 0 || nm_session_gpu_open(s, &skip) != 0)
        return -1;
    lo.skip = skip;
    s->loaded = nm_load(s->gguf, s->plan, &lo, &s->err);
    free(skip);
    if (!s->loaded) {
        nm_session_gpu_close(s);
        return -1;
    }
    return 0;
}

static int open_model(numalm_session *s) {
    const numalm_options *o = &s->opts;
    if (o->kv_type != NUMALM_KV_F16 && o->kv_type != NUMALM_KV_F32)
        return nm_fail(&s->err, "options: KV type %d is not f16 or f32", (int)o->kv_type);
    nm_simd best = nm_simd_detect();
    nm_simd level = (int)o->simd_max < (int)best ? (nm_simd)o->simd_max : best;
    if ((int)level < 0 || nm_simd_set(level) != 0)
        return nm_fail(&s->err, "options: SIMD level %d is not usable on this CPU",
                       (int)o->simd_max);
    int amx_err = nm_amx_refused();
    if (amx_err && o->simd_max >= NUMALM_SIMD_AMX)
        nm_session_log(
            s, NUMALM_LOG_WARN,
            "the CPU has AMX tiles, but Linux refused this process their state "
            "(arch_prctl ARCH_REQ_XCOMP_PERM: %s%s): level %s, the AVX-512 VNNI tiles "
            "instead",
            strerror(amx_err),
            amx_err == ENOSPC ? "; a thread's signal stack is smaller than the tile state" : "",
            nm_simd_name(level));
    /* the KV cache and scratch against what the nodes have left now */
    nm_fit_opts fo = fit_opts(o, NUMALM_STAGE_MODEL);
    fo.weights_unchecked = "loaded already";
    fo.weights_mapped = true; /* counted in the address space in use */
    fo.staging_bytes = 0;     /* the loader freed its buffers */
    if (admit(s, &fo) != 0)
        return -1;
    nm_model_opts mo = nm_model_opts_default();
    if (s->upload)
        mo.offload = (nm_model_offload){s->dev, s->upload->tensor, s->gpu_layers, s->gpu_head};
    mo.n_ctx = o->n_ctx;
    mo.kv_type = (uint32_t)o->kv_type;
    if (o->n_batch)
        mo.n_batch = o->n_batch;
    mo.n_seq = o->n_seq;
    if ((s->tok = nm_tokenizer_load(s->gguf, &s->err)) &&
        (s->model = nm_model_create(s->loaded, s->topo, &mo, &s->err)))
        return 0;
    if (s->tok)
        nm_tokenizer_free(s->tok);
    s->tok = NULL;
    return -1;
}

/* Runs the stages after s->stage up to o->stage. */
static int run_stages(numalm_session *s, const numalm_options *o) {
    if (o->stage < NUMALM_STAGE_PLAN || o->stage > NUMALM_STAGE_MODEL)
        return nm_fail(&s->err, "options: unknown stage %d", (int)o->stage);
    char *path = s->path;
    s->opts = *o;
    s->opts.model_path = path;
    double t0 = nm_now();
    int rc = 0;
    while (rc == 0 && s->stage < o->stage) {
        numalm_stage next = (numalm_stage)(s->stage + 1);
        rc = next == NUMALM_STAGE_PLAN      ? open_plan(s)
             : next == NUMALM_STAGE_WEIGHTS ? open_weights(s)
                                            : open_model(s);
        if (rc == 0)
            s->stage = next;
    }
    s->load_s += nm_now() - t0;
    return rc;
}

numalm_session *numalm_open(const numalm_options *o, char *err, size_t err_size) {
    numalm_session *s = calloc(1, sizeof *s);
    const char *msg = "out of memory for a session";
    if (s && !o->model_path) {
        msg = "no model given (options.model_path)";
    } else if (s && (s->path = strdup(o->model_path))) {
        if (run_stages(s, o) == 0)
            return s;
        msg = s->err.msg;
    }
    if (err && err_size)
        snprintf(err, err_size, "%s", msg);
    numalm_close(s);
    return NULL;
}

int numalm_advance(numalm_session *s, const numalm_options *o) {
    return run_stages(s, o);
}

void numalm_close(numalm_session *s) {
    if (!s)
        return;
    nm_model_free(s->model);
    if (s->tok)
        nm_tokenizer_free(s->tok);
    nm_loaded_free(s->loaded);
    nm_session_gpu_close(s);
    nm_plan_free(s->plan);
    free(s->fit);
    nm_topo_free(s->topo);
    nm_gguf_close(s->gguf);
    free(s->path);
    free(s);
}

const char *numalm_last_error(const numalm_session *s) {
    return s ? s->err.msg : "no session";
}

/* ---- what was opened --------------------------------------------------- */

numalm_stage numalm_session_stage(const numalm_session *s) {
    return s->stage;
}

const char *numalm_model_path(const numalm_session *s) {
    return s->path;
}

double numalm_load_seconds(const numalm_session *s) {
    return s->load_s;
}

numalm_placement numalm_placement_used(const numalm_session *s) {
    return (numalm_placement)s->plan->placement;
}

int numalm_n_nodes(const numalm_session *s) {
    return s->plan->n_nodes;
}

int numalm_n_threads(const numalm_session *s) {
    if (s->model)
        return nm_model_n_threads(s->model);
    int n = 0;
    for (int i = 0; i < s->plan->n_nodes; i++)
        n += s->plan->nodes[i].n_threads;
    return n;
}

int numalm_n_ctx_train(const numalm_session *s) {
    return (int)s->plan->hp.n_ctx_train;
}

numalm_io numalm_io_used(const numalm_session *s) {
    return s->loaded ? (numalm_io)s->loaded->io : s->opts.io;
}

int numalm_n_vocab(const numalm_session *s) {
    return s->model ? nm_model_n_vocab(s->model) : 0;
}

int numalm_n_ctx(const numalm_session *s) {
    return s->model ? nm_model_n_ctx(s->model) : 0;
}

int numalm_n_seq(const numalm_session *s) {
    return s->model ? nm_model_n_seq(s->model) : 0;
}

int numalm_n_batch(const numalm_session *s) {
    return s->model ? nm_model_n_batch(s->model) : 0;
}

numalm_kv_type numalm_kv_type_used(const numalm_session *s) {
    return s->model ? (numalm_kv_type)nm_model_kv_type(s->model) : s->opts.kv_type;
}

uint64_t numalm_weight_bytes_per_token(const numalm_session *s) {
    return s->model ? nm_model_weight_bytes_per_token(s->model) : 0;
}

numalm_simd numalm_simd_level(void) {
    return (numalm_simd)nm_simd_get();
}

const char *numalm_placement_name(numalm_placement p) {
    return nm_placement_name((nm_placement)p);
}

const char *numalm_io_name(numalm_io io) {
    return nm_io_name((nm_io_mode)io);
}

const char *numalm_simd_name(numalm_simd level) {
    return nm_simd_name((nm_simd)level);
}

int numalm_simd_from_name(const char *name, numalm_simd *level) {
    for (int l = NUMALM_SIMD_SCALAR; name && l <= NUMALM_SIMD_AMX; l++)
        if (!strcmp(name, numalm_simd_name((numalm_simd)l))) {
            *level = (numalm_simd)l;
            return 0;
        }
    return -1;
}

const char *numalm_kv_type_name(numalm_kv_type t) {
    return t == NUMALM_KV_F16 ? "f16" : t == NUMALM_KV_F32 ? "f32" : "?";
}
