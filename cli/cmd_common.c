#include "cmd_common.h"

#include "common/json.h"
#include "runtime/kernels.h"

#include "cli_opt.h"

#include "common/util.h"
#include "gguf/ggml_types.h"

#include <string.h>
#include <unistd.h>

void nm_cli_common_init(nm_cli_common *c) {
    memset(c, 0, sizeof *c);
    c->plan.placement = NM_PLACE_SHARD;
    c->load.io = NM_IO_AUTO;
    c->load.progress = isatty(STDERR_FILENO);
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
    if (!strcmp(opt, "--model")) {
        c->model = v;
    } else if (!strcmp(opt, "--topology")) {
        c->topology = v;
    } else if (!strcmp(opt, "--io")) {
        return nm_io_parse(v, &c->load.io, err) < 0 ? -1 : 1;
    } else if (!strcmp(opt, "--placement")) {
        return nm_placement_parse(v, &c->plan.placement, &c->plan.fixed_node, err) < 0 ? -1 : 1;
    } else if (!strcmp(opt, "--nodes")) {
        int n = nm_parse_int_list(v, c->plan.nodes_req, NM_MAX_NODES, 4095, err);
        if (n < 0)
            return nm_fail_prefix(err, "--nodes");
        c->plan.n_nodes_req = n;
    } else if (!strcmp(opt, "--threads")) {
        return int_value(opt, v, 1, 4096, &c->plan.n_threads, err);
    } else if (!strcmp(opt, "--threads-per-node")) {
        return int_value(opt, v, 1, 256, &c->plan.threads_per_node, err);
    } else if (!strcmp(opt, "--thp")) {
        static const char *const modes[] = {"off", "auto", "on", "collapse"};
        int m = 0;
        while (m < 4 && strcmp(v, modes[m]))
            m++;
        if (m == 4)
            return nm_fail(err, "--thp %s: expected on, off, auto or collapse", v);
        c->load.thp = m - 1; /* nm_load_opts.thp: -1 off, 0 auto, 1 on, 2 collapse */
    }
    return 1;
}

int nm_cli_common_arg(nm_cli_common *c, int argc, char **argv, int *i, nm_error *err) {
    static const struct {
        const char *name, *alias;
    } VALUE_OPTS[] = {{"--model", "-m"},
                      {"--topology", NULL},
                      {"--io", NULL},
                      {"--placement", NULL},
                      {"--nodes", NULL},
                      {"--threads", "-t"},
                      {"--threads-per-node", NULL},
                      {"--thp", NULL}};
    for (size_t k = 0; k < sizeof VALUE_OPTS / sizeof VALUE_OPTS[0]; k++) {
        const char *v;
        int rc = nm_cli_opt(argc, argv, i, VALUE_OPTS[k].name, VALUE_OPTS[k].alias, &v, err);
        if (rc != 0)
            return rc < 0 ? -1 : value_arg(c, VALUE_OPTS[k].name, v, err);
    }
    const char *a = argv[*i];
    if (!strcmp(a, "--mlock"))
        c->load.arena.mlock = true;
    else if (!strcmp(a, "--hugepages"))
        c->load.arena.hugepages = true;
    else if (!strcmp(a, "--verify"))
        c->load.verify = true;
    else if (!strcmp(a, "--drop-caches"))
        c->load.drop_caches = true;
    else if (!strcmp(a, "--no-progress"))
        c->load.progress = false;
    else if (!strcmp(a, "--json"))
        c->json = true;
    else
        return 0;
    return 1;
}

int nm_cli_model_arg(nm_model_opts *o, int argc, char **argv, int *i, nm_error *err) {
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
            o->kv_type = NM_TYPE_F16;
        else if (!strcmp(v, "f32") || !strcmp(v, "F32"))
            o->kv_type = NM_TYPE_F32;
        else
            return nm_fail(err, "--kv-type: '%s' is not f16 or f32", v);
        return 1;
    }
    return 0;
}

int nm_cli_open(const nm_cli_common *c, nm_cli_session *s, nm_error *err) {
    memset(s, 0, sizeof *s);
    if (!c->model)
        return nm_fail(err, "no model given (-m FILE)");
    double t0 = nm_now();
    /* the loader pins readers with the same topology: probing hwloc twice
     * costs milliseconds and could see a different allowed set */
    nm_load_opts load = c->load;
    if (!(s->gguf = nm_gguf_open(c->model, err)) || !(s->topo = nm_topo_load(c->topology, err)) ||
        !(s->plan = nm_plan_build(s->gguf, s->topo, &c->plan, err)) ||
        !(load.topo = s->topo, s->w = nm_load(s->gguf, s->plan, &load, err))) {
        nm_cli_close(s);
        return -1;
    }
    s->load_s = nm_now() - t0;
    return 0;
}

void nm_cli_close(nm_cli_session *s) {
    if (s->w)
        nm_loaded_free(s->w);
    if (s->plan)
        nm_plan_free(s->plan);
    if (s->topo)
        nm_topo_free(s->topo);
    if (s->gguf)
        nm_gguf_close(s->gguf);
    memset(s, 0, sizeof *s);
}

void nm_cli_json_run_setup(nm_json *j, const nm_cli_session *s, const nm_model *m) {
    nm_json_kstr(j, "io", nm_io_name(s->w->io));
    nm_json_kstr(j, "placement", nm_placement_name(s->plan->placement));
    nm_json_kint(j, "nodes", s->plan->n_nodes);
    nm_json_kint(j, "threads", nm_model_n_threads(m));
    nm_json_kstr(j, "simd", nm_simd_name(nm_simd_get()));
    nm_json_kstr(j, "kv_type", nm_model_kv_type(m) == NM_TYPE_F16 ? "f16" : "f32");
}
