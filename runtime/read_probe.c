#include "read_probe.h"

#include "../common/util.h"

#include <stdlib.h>
#include <string.h>

double nm_read_probe_pair(nm_read_probe *p, nm_model *m, double step_s) {
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 64;
        double *a = realloc(p->step_s, (size_t)cap * sizeof *a);
        if (!a)
            return -1;
        p->step_s = a;
        double *b = realloc(p->read_s, (size_t)cap * sizeof *b);
        if (!b)
            return -1;
        p->read_s = b;
        p->cap = cap;
    }
    double t0 = nm_now();
    if (nm_model_read_pass(m, &p->checksum, &p->read_bytes) < 0)
        return -1;
    double read_s = nm_now() - t0;
    if (p->n == 0)
        p->step_bytes = nm_model_weight_bytes_per_token(m);
    p->step_s[p->n] = step_s;
    p->read_s[p->n] = read_s;
    p->n++;
    return read_s;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* v sorted in place; the q-quantile by the nearest rank */
static double quantile(double *v, int n, double q) {
    qsort(v, (size_t)n, sizeof *v, by_value);
    int i = (int)(q * (n - 1) + 0.5);
    return v[i];
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
        dec[i] = p->step_s[i] > 0 ? (double)p->step_bytes / p->step_s[i] / 1e9 : 0;
        rd[i] = p->read_s[i] > 0 ? (double)p->read_bytes / p->read_s[i] / 1e9 : 0;
        frac[i] = rd[i] > 0 ? dec[i] / rd[i] : 0;
    }
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
    free(p->step_s);
    free(p->read_s);
    memset(p, 0, sizeof *p);
}
