/* bench_upload: host -> device copy bandwidth from three kinds of host
 * memory, side by side in one run and alternating: page-locked memory on
 * the device's own NUMA node (what numalm stages in), page-locked memory on
 * another node, and pageable memory on the device's node. The copying
 * thread is pinned to the device's node for all three, so only where the
 * bytes are and whether they are page-locked differ. Each pass copies SIZE
 * bytes in CHUNK pieces spread over STREAMS streams and waits for them; the
 * table gives the median, min and max GB/s (1e9 bytes/s) of REPS passes.
 *
 *   bench_upload [--gpu DEV] [--size 1G] [--chunk 32M] [--streams 4]
 *                [--reps 5] [--json]
 * DEV as numalm's --gpu: a CUDA device number (default 0), or cpu[:NODE]
 * (the device interface's CPU implementation: its "copies" are memcpy, so
 * the figures are memory bandwidth, useful only to check this program). */
#include "common/json.h"
#include "common/util.h"
#include "cuda/gpu.h"
#include "numa/arena.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { OWN, OTHER, PAGEABLE, N_KINDS };
static const char *const KIND_NAME[N_KINDS] = {"pinned_own_node", "pinned_other_node",
                                               "pageable_own_node"};
#define MAX_REPS 100

typedef struct opts {
    const char *gpu;
    uint64_t size, chunk;
    int streams, reps;
    bool json;
} opts;

static int parse(int argc, char **argv, opts *o, nm_error *err) {
    *o = (opts){"0", 1ull << 30, 32u << 20, 4, 5, false};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        if (!strcmp(a, "--json")) {
            o->json = true;
            continue;
        }
        if (!v)
            return nm_fail(err, "%s: unknown, or missing its value", a);
        i++;
        if (!strcmp(a, "--gpu"))
            o->gpu = v;
        else if (!strcmp(a, "--size") || !strcmp(a, "--chunk")) {
            if (nm_parse_size(v, !strcmp(a, "--size") ? &o->size : &o->chunk, err) < 0)
                return -1;
        } else if (!strcmp(a, "--streams") || !strcmp(a, "--reps")) {
            if (nm_parse_long(v, 1, !strcmp(a, "--reps") ? MAX_REPS : NM_DEV_MAX_STREAMS, &n, a,
                              err) < 0)
                return -1;
            *(!strcmp(a, "--reps") ? &o->reps : &o->streams) = (int)n;
        } else
            return nm_fail(err, "unknown option %s", a);
    }
    if (o->chunk == 0 || o->size == 0)
        return nm_fail(err, "--size and --chunk must be above 0");
    if (o->chunk > o->size)
        o->chunk = o->size;
    return 0;
}

/* One pass: SIZE bytes from host to dev in chunks over the streams. */
static double pass_gbps(nm_device *d, const opts *o, uint8_t *dev, const uint8_t *host,
                        nm_error *err) {
    double t0 = nm_now();
    int k = 0;
    for (uint64_t off = 0; off < o->size; off += o->chunk, k++) {
        uint64_t n = o->size - off < o->chunk ? o->size - off : o->chunk;
        if (d->ops->to_device(d, k % o->streams, dev + off, host + off, n, err) != 0)
            return -1;
    }
    for (int s = 0; s < o->streams; s++)
        if (d->ops->sync(d, s, err) != 0)
            return -1;
    return (double)o->size / (nm_now() - t0) / 1e9;
}

static int other_node(const nm_topo *t, int own) {
    for (int i = 0; i < t->n_nodes; i++)
        if (t->nodes[i].os_index != own && t->nodes[i].memory_bytes)
            return t->nodes[i].os_index;
    return -1;
}

typedef struct result {
    double gbps[MAX_REPS];
    int n;
    double median, min, max;
} result;

static void summarise(result *r) {
    double v[MAX_REPS];
    memcpy(v, r->gbps, (size_t)r->n * sizeof *v);
    nm_sort_doubles(v, (size_t)r->n);
    r->min = v[0];
    r->max = v[r->n - 1];
    r->median = r->n % 2 ? v[r->n / 2] : (v[r->n / 2 - 1] + v[r->n / 2]) / 2;
}

static void report(const opts *o, const nm_device *d, int own, int other, const result *r) {
    if (!o->json) {
        printf("device: %s %d, %s (bus %s), node %d%s\n", d->kind, d->ordinal, d->name,
               d->busid[0] ? d->busid : "-", own, d->node < 0 ? " (unknown: the first node)" : "");
        printf("%llu MiB per pass in %llu MiB chunks over %d streams, %d passes each\n",
               (unsigned long long)(o->size >> 20), (unsigned long long)(o->chunk >> 20),
               o->streams, o->reps);
        printf("%-20s %6s %10s %8s %8s\n", "host memory", "node", "median", "min", "max");
        for (int k = 0; k < N_KINDS; k++)
            if (r[k].n)
                printf("%-20s %6d %7.2f GB/s %8.2f %8.2f\n", KIND_NAME[k], k == OTHER ? other : own,
                       r[k].median, r[k].min, r[k].max);
            else
                printf("%-20s %6s  (one node only)\n", KIND_NAME[k], "-");
        if (r[OTHER].n)
            printf("other node / own node: %.2f\n", r[OTHER].median / r[OWN].median);
        printf("pageable / pinned own node: %.2f\n", r[PAGEABLE].median / r[OWN].median);
        return;
    }
    nm_json j;
    nm_json_init(&j, stdout);
    nm_json_obj_begin(&j);
    nm_json_kstr(&j, "device", d->kind);
    nm_json_kint(&j, "ordinal", d->ordinal);
    nm_json_kstr(&j, "name", d->name);
    nm_json_kstr(&j, "busid", d->busid);
    nm_json_kint(&j, "device_node", d->node);
    nm_json_kint(&j, "own_node", own);
    nm_json_kint(&j, "other_node", other);
    nm_json_kuint(&j, "size", o->size);
    nm_json_kuint(&j, "chunk", o->chunk);
    nm_json_kint(&j, "streams", o->streams);
    nm_json_kint(&j, "reps", o->reps);
    for (int k = 0; k < N_KINDS; k++) {
        nm_json_key(&j, KIND_NAME[k]);
        if (!r[k].n) {
            nm_json_null(&j);
            continue;
        }
        nm_json_obj_begin(&j);
        nm_json_kdouble(&j, "median_gbps", r[k].median);
        nm_json_kdouble(&j, "min_gbps", r[k].min);
        nm_json_kdouble(&j, "max_gbps", r[k].max);
        nm_json_obj_end(&j);
    }
    nm_json_obj_end(&j);
    nm_json_finish(&j);
}

int main(int argc, char **argv) {
    opts o;
    nm_error err = {{0}};
    nm_topo *t = NULL;
    nm_device *d = NULL;
    nm_arena host[N_KINDS];
    void *dev = NULL;
    bool reg[N_KINDS] = {false};
    result r[N_KINDS];
    int rc = 1;
    memset(host, 0, sizeof host);
    memset(r, 0, sizeof r);
    if (parse(argc, argv, &o, &err) < 0) {
        fprintf(stderr, "bench_upload: %s\n", err.msg);
        return 2;
    }
    if (!(t = nm_topo_load(NULL, &err)) || !(d = nm_device_open(o.gpu, t, &err)))
        goto out;
    int own = d->node >= 0 ? d->node : t->nodes[0].os_index, other = other_node(t, own);
    nm_error e;
    if (nm_pin_thread_to_node(t, own, &e) != 0)
        fprintf(stderr, "bench_upload: the copying thread runs unpinned: %s\n", e.msg);
    nm_arena_opts ao = {0};
    for (int k = 0; k < N_KINDS; k++) {
        if (k == OTHER && other < 0)
            continue;
        if (nm_arena_create(&host[k], o.size, k == OTHER ? other : own, NULL, 0, &ao, &err) != 0)
            goto out;
        memset(host[k].base, 0x5a + k, o.size); /* faulted in, on its node (mbind) */
        if (k != PAGEABLE) {
            if (d->ops->host_register(d, host[k].base, host[k].mapped, &err) != 0)
                goto out;
            reg[k] = true;
        }
    }
    if (d->ops->alloc(d, o.size, &dev, &err) != 0)
        goto out;
    /* warm up (first-use costs), then passes rotating the kinds' order */
    for (int k = 0; k < N_KINDS; k++)
        if (host[k].base && pass_gbps(d, &o, dev, host[k].base, &err) < 0)
            goto out;
    for (int rep = 0; rep < o.reps; rep++)
        for (int i = 0; i < N_KINDS; i++) {
            int k = (rep + i) % N_KINDS;
            if (!host[k].base)
                continue;
            double g = pass_gbps(d, &o, dev, host[k].base, &err);
            if (g < 0)
                goto out;
            r[k].gbps[r[k].n++] = g;
        }
    for (int k = 0; k < N_KINDS; k++)
        if (r[k].n)
            summarise(&r[k]);
    report(&o, d, own, other, r);
    rc = 0;
out:
    if (rc)
        fprintf(stderr, "bench_upload: %s\n", err.msg);
    if (d) {
        if (dev)
            d->ops->free(d, dev);
        for (int k = 0; k < N_KINDS; k++)
            if (reg[k])
                d->ops->host_unregister(d, host[k].base);
    }
    for (int k = 0; k < N_KINDS; k++)
        if (host[k].base)
            nm_arena_destroy(&host[k]);
    nm_device_close(d);
    nm_topo_free(t);
    return rc;
}
