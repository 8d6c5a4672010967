#include "read_probe.h"

#include "common/util.h"

#include <stdlib.h>
#include <string.h>

double nm_read_probe_pair(nm_read_probe *p, nm_model *m, double step_s) {
    struct nm_probe_times *a = nm_grow(p->pairs, &p->cap, (size_t)p->n, 64, sizeof *a);
    if (!a)
        return -1;
    p->pairs = a;
    double t0 = nm_now();
    if (nm_model_read_pass(m, &p->checksum, &p->read_bytes) < 0)
        return -1;
    double read_s = nm_now() - t0;
    if (p->n == 0)
        p->step_bytes = nm_model_weight_bytes_per_token(m);
    p->pairs[p->n++] = (struct nm_probe_times){step_s, read_s};
    return read_s;
}

/* the q-quantile of sorted[0..n) by the nearest rank */
static double quantile(const double *sorted, int n, double q) {
    return sorted[(int)(q * (n - 1) + 0.5)];
}

void nm_read_probe_summary(const nm_read_probe *p, nm_read_probe_stats *out) {
    memset(out, 0, sizeof *out);
    if (p->n == 0)
        return;
    double *v = malloc((size_t)p->n * 3 * sizeof *v);
    if (!v)
        return;
    double *dec = v, *rd = v + p->n, *frac = v + 2 * p->n;
    for (int i = 0; i < p->n; i++) {
        const struct nm_probe_times *t = &p->pairs[i];
        dec[i] = t->step_s > 0 ? (double)p->step_bytes / t->step_s / 1e9 : 0;
        rd[i] = t->read_s > 0 ? (double)p->read_bytes / t->read_s / 1e9 : 0;
        frac[i] = rd[i] > 0 ? dec[i] / rd[i] : 0;
    }
    for (int k = 0; k < 3; k++)
        nm_sort_doubles(v + (size_t)k * p->n, (size_t)p->n);
    out->pairs = p->n;
    out->decode_gbps = quantile(dec, p->n, 0.5);
    out->read_gbps = quantile(rd, p->n, 0.5);
    out->of_read_q25 = quantile(frac, p->n, 0.25);
    out->of_read = quantile(frac, p->n, 0.5);
    out->of_read_q75 = quantile(frac, p->n, 0.75);
    out->read_bytes = p->read_bytes;
    out->checksum = p->checksum;
    free(v);
}

void nm_read_probe_free(nm_read_probe *p) {
    free(p->pairs);
    memset(p, 0, sizeof *p);
}
