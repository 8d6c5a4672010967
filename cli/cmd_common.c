#include "cmd_common.h"

#include "cli_opt.h"
#include "messages.h"

#include "api/session_internal.h"
#include "common/json.h"
#include "common/util.h"
#include "cuda/gpu.h"
#include "io/loader.h"
#include "numa/plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* NUMALM_SIMD: a level name; anything else is ignored with a warning. */
static void env_simd(numalm_options *o, const char *v) {
    if (numalm_simd_from_name(v, &o->simd_max) == 0)
        return;
    fprintf(stderr, "numalm: NUMALM_SIMD=%s is not scalar, avx2, avx512 or amx; ignoring it\n", v);
}

static bool env_set(const char *name) {
    const char *v = getenv(name);
    return v && *v;
}

static void env_overrides(numalm_options *o) {
    const char *v;
    if ((v = getenv("NUMALM_SIMD")) && *v)
        env_simd(o, v);
    o->no_odirect = env_set("NUMALM_DISABLE_ODIRECT");
    o->no_uring = env_set("NUMALM_DISABLE_URING") && strcmp(getenv("NUMALM_DISABLE_URING"), "0");
    o->no_staging = env_set("NUMALM_NO_STAGING");
    o->no_map = env_set("NUMALM_NO_MAP");
    if ((v = getenv("NUMALM_DIO_ALIGN")) && *v)
        o->dio_align = (uint32_t)strtoul(v, NULL, 0);
}

void nm_cli_common_init(nm_cli_common *c) {
    memset(c, 0, sizeof *c);
    numalm_options_init(&c->opts);
    env_overrides(&c->opts);
    c->opts.log = nm_cli_log;
    if (nm_cli_progress_wanted())
        c->opts.progress = nm_cli_progress;
}

const char *nm_cli_value(int argc, char **argv, int *i, nm_error *err) {
    if (*i + 1 >= argc) {
        nm_fail(err, "option %s needs a value", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

static int int_value(const char *opt, const char *v, long min, long max, int *out, nm_error *err) {
    long x;
    if (nm_parse_long(v, min, max, &x, opt, err) < 0)
        return -1;
    *out = (int)x;
    return 1;
}

/* Options with a value, as "NAME VALUE" or "NAME=VALUE" (cli_opt.h). */
static int value_arg(nm_cli_common *c, const char *opt, const char *v, nm_error *err) {
    numalm_options *o = &c->opts;
    if (!strcmp(opt, "--model")) {
        o->model_path = v;
    } else if (!strcmp(opt, "--topology")) {
        o->topology_xml = v;
    } else if (!strcmp(opt, "--io")) {
        nm_io_mode io;
        if (nm_io_parse(v, &io, err) < 0)
            return -1;
        o->io = (numalm_io)io;
    } else if (!strcmp(opt, "--placement")) {
        nm_placement p;
        if (nm_placement_parse(v, &p, &o->fixed_node, err) < 0)
            return -1;
        o->placement = (numalm_placement)p;
    } else if (!strcmp(opt, "--moe-placement")) {
        nm_moe_placement m;
        if (nm_moe_placement_parse(v, &m, err) < 0)
            return -1;
        o->moe = (numalm_moe_placement)m;
    } else if (!strcmp(opt, "--nodes")) {
        int n = nm_parse_int_list(v, o->nodes, NUMALM_MAX_NODES, 4095, err);
        if (n < 0)
            return nm_fail_prefix(err, "--nodes");
        o->n_nodes = n;
    } else if (!strcmp(opt, "--threads")) {
        return int_value(opt, v, 1, 4096, &o->n_threads, err);
    } else if (!strcmp(opt, "--threads-per-node")) {
        return int_value(opt, v, 1, 256, &o->threads_per_node, err);
    } else if (!strcmp(opt, "--n-gpu-layers")) {
        c->ngl_given = true;
        if (!strcmp(v, "all")) {
            o->n_gpu_layers = NM_CLI_NGL_ALL;
            return 1;
        }
        return int_value("-ngl", v, 0, NM_CLI_NGL_ALL, &o->n_gpu_layers, err);
    } else if (!strcmp(opt, "--gpu")) {
        if (nm_device_spec_check(v, err) < 0)
            return -1;
        o->gpu = v;
    } else if (!strcmp(opt, "--thp")) {
        static const char *const modes[] = {"off", "auto", "on", "collapse"};
        int m = 0;
        while (m < 4 && strcmp(v, modes[m]))
            m++;
        if (m == 4)
            return nm_fail(err, "--thp %s: expected on, off, auto or collapse", v);
        o->thp = (numalm_thp)(m - 1); /* -1 off, 0 auto, 1 on, 2 collapse */
    }
    return 1;
}

int nm_cli_common_arg(nm_cli_common *c, int argc, char **argv, int *i, nm_error *err) {
    static const nm_cli_optdef VALUE_OPTS[] = {{"--model", "-m"},
                                               {"--topology", NULL},
                                               {"--io", NULL},
                                               {"--placement", NULL},
                                               {"--moe-placement", NULL},
                                               {"--nodes", NULL},
                                               {"--threads", "-t"},
                                               {"--threads-per-node", NULL},
                                               {"--thp", NULL},
                                               {"--n-gpu-layers", "-ngl"},
                                               {"--gpu", NULL}};
    const char *name, *v;
    int rc = nm_cli_opt_any(argc, argv, i, VALUE_OPTS, sizeof VALUE_OPTS / sizeof VALUE_OPTS[0],
                            &name, &v, err);
    if (rc != 0)
        return rc < 0 ? -1 : value_arg(c, name, v, err);
    const char *a = argv[*i];
    if (!strcmp(a, "--mlock"))
        c->opts.mlock = true;
    else if (!strcmp(a, "--hugepages"))
        c->opts.hugepages = true;
    else if (!strcmp(a, "--verify"))
        c->opts.verify = true;
    else if (!strcmp(a, "--drop-caches"))
        c->opts.drop_caches = true;
    else if (!strcmp(a, "--no-progress"))
        c->opts.progress = NULL;
    else if (!strcmp(a, "--json"))
        c->json = true;
    else if (!strcmp(a, "--no-mem-check"))
        c->opts.no_mem_check = true;
    else
        return 0;
    return 1;
}

int nm_cli_parse_run(nm_cli_common *c, const char *cmd, int argc, char **argv, nm_cli_arg_fn own,
                     void *cmd_opts, nm_error *err) {
    for (int i = 1; i < argc; i++) {
        int rc = own(cmd_opts, argc, argv, &i, err);
        if (rc == 0)
            rc = nm_cli_common_arg(c, argc, argv, &i, err);
        if (rc == 0)
            rc = nm_cli_model_arg(&c->opts, argc, argv, &i, err);
        if (rc < 0)
            return -1;
        if (rc == 0)
            return nm_fail(err, "unknown option '%s' (see numalm %s --help)", argv[i], cmd);
    }
    if (c->opts.topology_xml)
        return nm_fail(err, "--topology describes another machine: it is for `numalm plan`, "
                            "not for running a model here");
    return 0;
}

int nm_cli_model_arg(numalm_options *o, int argc, char **argv, int *i, nm_error *err) {
    const char *v;
    int rc;
    if ((rc = nm_cli_opt(argc, argv, i, "--ctx-size", "-c", &v, err)) != 0)
        return rc < 0 ? -1 : int_value("--ctx-size", v, 1, 1 << 24, &o->n_ctx, err);
    if ((rc = nm_cli_opt(argc, argv, i, "--batch", NULL, &v, err)) != 0)
        return rc < 0 ? -1 : int_value("--batch", v, 1, 4096, &o->n_batch, err);
    if ((rc = nm_cli_opt(argc, argv, i, "--kv-type", NULL, &v, err)) != 0) {
        if (rc < 0)
            return -1;
        if (!strcmp(v, "f16") || !strcmp(v, "F16"))
            o->kv_type = NUMALM_KV_F16;
        else if (!strcmp(v, "f32") || !strcmp(v, "F32"))
            o->kv_type = NUMALM_KV_F32;
        else
            return nm_fail(err, "--kv-type: '%s' is not f16 or f32", v);
        return 1;
    }
    return 0;
}

numalm_session *nm_cli_open(const nm_cli_common *c, nm_error *err) {
    if (!c->opts.model_path) {
        nm_fail(err, "no model given (-m FILE)");
        return NULL;
    }
    numalm_options o = c->opts;
    if (o.gpu && !c->ngl_given)
        o.n_gpu_layers = NM_CLI_NGL_ALL;
    return numalm_open(&o, err->msg, sizeof err->msg);
}

void nm_cli_json_run_setup(nm_json *j, const numalm_session *s) {
    nm_json_kstr(j, "io", numalm_io_name(numalm_io_used(s)));
    nm_json_kstr(j, "placement", numalm_placement_name(numalm_placement_used(s)));
    nm_json_kint(j, "nodes", numalm_n_nodes(s));
    nm_json_kint(j, "threads", numalm_n_threads(s));
    nm_json_kstr(j, "simd", numalm_simd_name(numalm_simd_level()));
    nm_json_kstr(j, "kv_type", numalm_kv_type_name(numalm_kv_type_used(s)));
    numalm_gpu_info g;
    if (numalm_gpu_info_get(s, &g) != 0)
        return;
    nm_json_key(j, "gpu");
    nm_json_obj_begin(j);
    nm_json_kstr(j, "device", g.device);
    nm_json_kint(j, "ordinal", g.ordinal);
    nm_json_kstr(j, "name", g.name);
    nm_json_kint(j, "layers", g.n_layers);
    nm_json_kbool(j, "head", g.head);
    nm_json_kint(j, "device_node", g.device_node);
    nm_json_kint(j, "staging_node", g.staging_node);
    nm_json_kuint(j, "upload_bytes", g.bytes);
    nm_json_kdouble(j, "upload_s", g.seconds);
    nm_json_kdouble(j, "disk_gbps", g.disk_gbps);
    nm_json_kdouble(j, "h2d_gbps", g.h2d_gbps);
    nm_json_obj_end(j);
}

void nm_cli_json_traffic(nm_json *j, const numalm_session *s) {
    if (!s->model)
        return;
    nm_json_key(j, "traffic");
    nm_json_obj_begin(j);
    uint64_t w, kv, evals = 0;
    nm_json_key(j, "nodes");
    nm_json_arr_begin(j);
    for (int k = 0; k < s->plan->n_nodes; k++) {
        nm_model_traffic(s->model, k, &w, &kv, &evals);
        nm_json_obj_begin(j);
        nm_json_kint(j, "node", s->plan->nodes[k].os_index);
        nm_json_kuint(j, "weight_bytes", w);
        nm_json_kuint(j, "kv_bytes", kv);
        nm_json_obj_end(j);
    }
    nm_json_arr_end(j);
    nm_json_kuint(j, "decode_evals", evals);
    nm_json_obj_end(j);
}
