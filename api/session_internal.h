/* The session behind numalm.h's opaque handle, for the programs of this
 * repository that report on the internal objects (the command's load, plan
 * and run reports, tests): the GGUF file, the topology, the plan, the loaded
 * weights and the model, each NULL until its stage is reached. Programs
 * outside the repository use numalm.h only. */
#ifndef NM_SESSION_INTERNAL_H
#define NM_SESSION_INTERNAL_H

#include "numalm.h"

#include "common/error.h"
#include "gguf/gguf.h"
#include "io/loader.h"
#include "numa/fit.h"
#include "numa/plan.h"
#include "numa/topo.h"
#include "runtime/generate.h"
#include "runtime/model.h"
#include "runtime/tokenizer.h"

struct numalm_session {
    numalm_stage stage;
    numalm_options opts; /* as last given; model_path points at path */
    char *path;
    nm_gguf *gguf;            /* stage PLAN */
    nm_topo *topo;            /* stage PLAN */
    nm_plan *plan;            /* stage PLAN */
    nm_plan_opts plan_opts;   /* as asked (placement auto included) */
    nm_fit_table *fit;        /* the memory fit of every placement, as last computed */
    nm_loaded *loaded;        /* stage WEIGHTS */
    nm_tokenizer *tok;        /* stage MODEL */
    nm_model *model;          /* stage MODEL */
    struct nm_device *dev;    /* stage WEIGHTS, with n_gpu_layers */
    struct nm_upload *upload; /* stage WEIGHTS: the blocks' weights on dev */
    int gpu_layers;           /* blocks on dev */
    bool gpu_head;            /* the LM head on dev */
    double load_s;            /* numalm_open + numalm_advance, wall clock */
    nm_error err;             /* the last error */
};

/* api/gpu.c: with options.n_gpu_layers, opens the device and uploads the
 * blocks' weights; *skip (malloc'd, one byte per tensor, NULL without a
 * GPU) says which tensors the CPU loader leaves out. 0 or -1. */
int nm_session_gpu_open(numalm_session *s, uint8_t **skip);
void nm_session_gpu_close(numalm_session *s);
void nm_session_log(const numalm_session *s, numalm_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
