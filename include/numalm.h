/* numalm's public header: the layers in data-flow order.
 *   file  -> nm_gguf      (io/gguf.h)       validated header
 *   plan  -> nm_plan      (numa/plan.h)     bytes -> nodes, threads -> cores
 *   read  -> nm_loaded    (io/loader.h)     per-node readers fill arenas
 *   run   -> nm_model     (runtime/model.h) per-node workers on local rows */
#ifndef NUMALM_H
#define NUMALM_H

#include "../common/error.h"
#include "../io/ggml_types.h"
#include "../io/gguf.h"
#include "../io/llama_hparams.h"
#include "../io/loader.h"
#include "../numa/arena.h"
#include "../numa/plan.h"
#include "../numa/topo.h"

#endif
