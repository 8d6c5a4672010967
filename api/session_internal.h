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
#include "numa/plan.h"
#include "numa/topo.h"
#include "runtime/generate.h"
#include "runtime/model.h"
#include "runtime/tokenizer.h"

struct numalm_session {
    numalm_stage stage;
    numalm_options opts; /* as last given; model_path points at path */
    char *path;
    nm_gguf *gguf;     /* stage PLAN */
    nm_topo *topo;     /* stage PLAN */
    nm_plan *plan;     /* stage PLAN */
    nm_loaded *loaded; /* stage WEIGHTS */
    nm_tokenizer *tok; /* stage MODEL */
    nm_model *model;   /* stage MODEL */
    double load_s;     /* numalm_open + numalm_advance, wall clock */
    nm_error err;      /* the last error */
};

#endif
