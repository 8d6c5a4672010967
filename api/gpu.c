/* Blocks on a GPU (options.n_gpu_layers): the device, the upload of the
 * blocks' weights through node-local staging, and what the CPU loader then
 * leaves out. */
#include "session_internal.h"

#include "cuda/gpu.h"
#include "cuda/upload.h"

#include <stdlib.h>
#include <string.h>

static void log_upload(const numalm_session *s) {
    const nm_upload *u = s->upload;
    const nm_device *d = s->dev;
    for (int i = 0; i < u->n_notes; i++)
        nm_session_log(s, NUMALM_LOG_WARN, "gpu: %s", u->notes[i]);
    double sec = u->seconds > 0 ? u->seconds : 1e-9;
    nm_session_log(s, NUMALM_LOG_INFO,
                   "gpu: %d blocks%s on %s device %d (%s): %d tensors, %.1f MB in %.3f s "
                   "(%.2f GB/s; disk %.2f, host->device %.2f), staging on node %d%s",
                   s->gpu_layers, s->gpu_head ? " + LM head" : "", d->kind, d->ordinal, d->name,
                   u->n_uploaded, (double)u->bytes / 1e6, u->seconds, (double)u->bytes / sec / 1e9,
                   u->read_s > 0 ? (double)u->bytes / u->read_s / 1e9 : 0,
                   u->copy_s > 0 ? (double)u->bytes / u->copy_s / 1e9 : 0, u->staging_node,
                   u->pinned ? "" : " (pageable)");
    if (u->verified && !u->verify_ok)
        nm_session_log(s, NUMALM_LOG_ERROR,
                       "gpu: verify: %d tensors differ on the device from the file: %s",
                       u->n_mismatches, u->mismatches);
}

int nm_session_gpu_open(numalm_session *s, uint8_t **skip) {
    const numalm_options *o = &s->opts;
    *skip = NULL;
    if (o->n_gpu_layers <= 0)
        return 0;
    uint8_t *mask = calloc(s->gguf->n_tensors + 1, 1);
    *skip = calloc(s->gguf->n_tensors + 1, 1);
    if (!mask || !*skip) {
        free(mask);
        free(*skip);
        *skip = NULL;
        return nm_fail(&s->err, "out of memory for the GPU tensor list");
    }
    nm_offload_select(s->gguf, s->plan->hp.n_layer, o->n_gpu_layers, mask, &s->gpu_layers,
                      &s->gpu_head);
    nm_upload_opts uo = {
        .topo = s->topo,
        .staging_node = o->gpu_staging_node,
        .slot_bytes = o->gpu_slot_bytes,
        .n_slots = o->gpu_slots,
        .buffered = o->io == NUMALM_IO_BUFFERED,
        .pageable = o->gpu_pageable,
        .verify = o->verify,
        .progress = o->progress,
        .progress_ud = o->progress_user,
        .queue_depth = o->queue_depth,
    };
    if ((s->dev = nm_device_open(o->gpu ? o->gpu : "0", s->topo, &s->err)) &&
        (s->upload = nm_upload_run(s->dev, s->gguf, mask, &uo, &s->err))) {
        for (uint64_t i = 0; i < s->gguf->n_tensors; i++)
            (*skip)[i] = mask[i] == NM_OFFLOAD_DEVICE;
        free(mask);
        log_upload(s);
        return 0;
    }
    free(mask);
    free(*skip);
    *skip = NULL;
    nm_session_gpu_close(s);
    if (o->n_gpu_layers > (int)s->plan->hp.n_layer)
        return nm_fail_prefix(&s->err, "-ngl all");
    return nm_fail_prefix(&s->err, "-ngl %d", o->n_gpu_layers);
}

void nm_session_gpu_close(numalm_session *s) {
    nm_upload_free(s->upload);
    nm_device_close(s->dev);
    s->upload = NULL;
    s->dev = NULL;
}

int numalm_gpu_info_get(const numalm_session *s, numalm_gpu_info *info) {
    const nm_upload *u = s->upload;
    if (!u)
        return -1;
    const nm_device *d = s->dev;
    *info = (numalm_gpu_info){
        .device = d->kind,
        .ordinal = d->ordinal,
        .name = d->name,
        .busid = d->busid,
        .device_node = d->node,
        .staging_node = u->staging_node,
        .pinned = u->pinned,
        .n_layers = s->gpu_layers,
        .head = s->gpu_head,
        .n_tensors = u->n_uploaded,
        .bytes = u->bytes,
        .seconds = u->seconds,
        .disk_gbps = u->read_s > 0 ? (double)u->bytes / u->read_s / 1e9 : 0,
        .h2d_gbps = u->copy_s > 0 ? (double)u->bytes / u->copy_s / 1e9 : 0,
        .verified = u->verified,
        .verify_ok = u->verify_ok,
    };
    return 0;
}
