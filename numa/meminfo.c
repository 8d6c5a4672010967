/* Reading what memory the machine can give: sysfs node meminfo, zoneinfo
 * watermarks, cgroup v2 (or v1) limits, RLIMIT_AS. Every file may be absent
 * (containers, old kernels); what cannot be read is not checked. */
#include "meminfo.h"

#include "common/util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define MIB (1ull << 20)
/* Re-read a node's figures when its budget falls below this. */
#define GUARD_REFRESH (256 * MIB)
/* Kept under a cgroup limit for what the load allocates besides the arenas
 * (page tables, thread stacks, the loader's buffers). */
#define CG_GUARD_RESERVE (8 * MIB)

/* Reads a small text file whole into buf; -1 when it cannot. */
static int read_text(const char *path, char *buf, size_t n) {
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t len = fread(buf, 1, n - 1, f);
    fclose(f);
    buf[len] = '\0';
    return 0;
}

/* The kB figure after "KEY:" in a meminfo-style text (any prefix before
 * the key on its line, e.g. "Node 0 "); -1 when absent. */
static int kb_field(const char *text, const char *key, uint64_t *out) {
    size_t n = strlen(key);
    for (const char *p = strstr(text, key); p; p = strstr(p + 1, key)) {
        unsigned long long v;
        bool line_start_ok = p == text || p[-1] == ' ' || p[-1] == '\n';
        if (line_start_ok && p[n] == ':' && sscanf(p + n + 1, "%llu", &v) == 1) {
            *out = (uint64_t)v * 1024;
            return 0;
        }
    }
    return -1;
}

int nm_parse_node_meminfo(const char *text, nm_node_mem *out) {
    if (kb_field(text, "MemTotal", &out->total) || kb_field(text, "MemFree", &out->free) ||
        kb_field(text, "Inactive(file)", &out->reclaimable))
        return -1;
    return 0;
}

uint64_t nm_parse_zoneinfo_high(const char *text, int node) {
    /* "Node 0, zone   Normal" headers, then "        high     1234" */
    uint64_t pages = 0;
    bool ours = false;
    const char *line = text;
    while (line && *line) {
        int nd;
        unsigned long long v;
        if (sscanf(line, "Node %d, zone", &nd) == 1)
            ours = nd == node;
        else if (ours && sscanf(line, " high %llu", &v) == 1)
            pages += v;
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    long ps = sysconf(_SC_PAGESIZE);
    return pages * (uint64_t)(ps > 0 ? ps : 4096);
}

uint64_t nm_node_mem_margin(uint64_t total, uint64_t high) {
    uint64_t m = high + total / 100;
    return m < 16 * MIB ? 16 * MIB : m;
}

int nm_parse_cgroup_limit(const char *text, uint64_t *out) {
    while (*text == ' ')
        text++;
    if (!strncmp(text, "max", 3)) {
        *out = UINT64_MAX;
        return 0;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (end == text || errno)
        return -1;
    /* cgroup v1 says "no limit" with the largest page-aligned long */
    *out = v >= (1ull << 62) ? UINT64_MAX : (uint64_t)v;
    return 0;
}

/* ---- nodes ---- */

static int read_node(int os_index, nm_node_mem *n, const char *zoneinfo) {
    char path[96], text[8192];
    snprintf(path, sizeof path, "/sys/devices/system/node/node%d/meminfo", os_index);
    if (read_text(path, text, sizeof text) || nm_parse_node_meminfo(text, n))
        return -1;
    n->margin =
        nm_node_mem_margin(n->total, zoneinfo ? nm_parse_zoneinfo_high(zoneinfo, os_index) : 0);
    n->known = true;
    return 0;
}

/* /proc/zoneinfo is ~30 KiB per node on big machines: read it once. */
static char *read_zoneinfo(void) {
    FILE *f = fopen("/proc/zoneinfo", "r");
    if (!f)
        return NULL;
    size_t cap = 0, len = 0;
    char *buf = NULL;
    for (;;) {
        char *b = nm_grow(buf, &cap, len + 1, 1 << 16, 1); /* a byte to read and a NUL */
        if (!b) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = b;
        len += fread(buf + len, 1, cap - 1 - len, f);
        if (len < cap - 1)
            break;
    }
    fclose(f);
    if (buf)
        buf[len] = '\0';
    return buf;
}

/* ---- cgroup ---- */

/* The mount point of the cgroup2 hierarchy (v2) or of the v1 memory
 * controller, and the mount's root within the hierarchy. */
static int find_mount(int version, char *point, size_t np, char *root, size_t nr) {
    FILE *f = fopen("/proc/self/mountinfo", "r");
    char line[1024];
    int rc = -1;
    while (f && rc && fgets(line, sizeof line, f)) {
        /* id parent major:minor root point options... - fstype source super */
        char r[256], p[256], fstype[32], super[256] = "";
        const char *dash = strstr(line, " - ");
        if (!dash || sscanf(line, "%*d %*d %*s %255s %255s", r, p) != 2 ||
            sscanf(dash + 3, "%31s %*s %255s", fstype, super) < 1)
            continue;
        bool v1_mem = !strcmp(fstype, "cgroup") && strstr(super, "memory");
        if ((version == 2 && !strcmp(fstype, "cgroup2")) || (version == 1 && v1_mem)) {
            snprintf(point, np, "%s", p);
            snprintf(root, nr, "%s", r);
            rc = 0;
        }
    }
    if (f)
        fclose(f);
    return rc;
}

/* A "key value" line of memory.stat, in bytes; 0 when absent. */
static uint64_t stat_field(const char *dir, const char *key) {
    char path[600], text[8192];
    snprintf(path, sizeof path, "%s/memory.stat", dir);
    if (read_text(path, text, sizeof text))
        return 0;
    size_t n = strlen(key);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        unsigned long long v;
        if (!strncmp(p, key, n) && p[n] == ' ' && sscanf(p + n + 1, "%llu", &v) == 1)
            return v;
    }
    return 0;
}

static int read_value(const char *dir, const char *file, uint64_t *v) {
    char path[600], text[64];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    return read_text(path, text, sizeof text) ? -1 : nm_parse_cgroup_limit(text, v);
}

/* Every level from the process's cgroup up to the mount's root: the one
 * that leaves the least memory counts. */
static void probe_cgroup_dir(nm_mem_state *m, int version, const char *point, const char *rel) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s%s", point, rel);
    const char *max_file = version == 2 ? "memory.max" : "memory.limit_in_bytes";
    const char *use_file = version == 2 ? "memory.current" : "memory.usage_in_bytes";
    const char *inactive = version == 2 ? "inactive_file" : "total_inactive_file";
    uint64_t best = m->cg_limited ? nm_cgroup_avail(m) : UINT64_MAX;
    for (;;) {
        uint64_t max, use;
        if (read_value(dir, max_file, &max) == 0 && max != UINT64_MAX &&
            read_value(dir, use_file, &use) == 0) {
            uint64_t rec = stat_field(dir, inactive);
            uint64_t avail = max > use ? max - use + rec : rec;
            if (avail < best) {
                best = avail;
                m->cg_limited = true;
                m->cg_version = version;
                snprintf(m->cg_file, sizeof m->cg_file, "%s/%s", dir, max_file);
                m->cg_max = max;
                m->cg_usage = use;
                m->cg_reclaimable = rec;
            }
        }
        char *slash = strrchr(dir, '/');
        if (!slash || (size_t)(slash - dir) < strlen(point))
            break;
        *slash = '\0';
    }
}

static void probe_cgroup(nm_mem_state *m) {
    FILE *f = fopen("/proc/self/cgroup", "r");
    char line[1024];
    while (f && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        /* "0::/path" (v2) or "4:memory:/path" (v1) */
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c1 = *c2 = '\0';
        const char *ctrl = c1 + 1, *path = c2 + 1;
        int version = !strcmp(line, "0") && !*ctrl ? 2 : strstr(ctrl, "memory") ? 1 : 0;
        char point[256], root[256];
        if (!version || find_mount(version, point, sizeof point, root, sizeof root))
            continue;
        /* the path is relative to the hierarchy's root; the mount may show
         * only a subtree of it (containers) */
        size_t rl = strcmp(root, "/") ? strlen(root) : 0;
        const char *rel = rl && !strncmp(path, root, rl) ? path + rl : path;
        probe_cgroup_dir(m, version, point, strcmp(rel, "/") ? rel : "");
    }
    if (f)
        fclose(f);
}

/* ---- address space ---- */

static void probe_rlimit_as(nm_mem_state *m) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) || rl.rlim_cur == RLIM_INFINITY)
        return;
    char text[4096];
    uint64_t vm = 0;
    if (read_text("/proc/self/status", text, sizeof text) == 0)
        (void)kb_field(text, "VmSize", &vm);
    m->as_limited = true;
    m->as_max = rl.rlim_cur;
    m->as_used = vm;
}

void nm_mem_probe(const nm_topo *t, nm_mem_state *m) {
    memset(m, 0, sizeof *m);
    m->n_nodes = t->n_nodes < NM_MEM_MAX_NODES ? t->n_nodes : NM_MEM_MAX_NODES;
    m->capacity_only = t->from_xml;
    snprintf(m->source, sizeof m->source, "%s",
             t->from_xml ? "the topology file (capacity, nothing in use)" : "this machine");
    char *zi = t->from_xml ? NULL : read_zoneinfo();
    for (int i = 0; i < m->n_nodes; i++) {
        nm_node_mem *n = &m->nodes[i];
        n->os_index = t->nodes[i].os_index;
        if (t->from_xml) {
            n->total = n->free = t->nodes[i].memory_bytes;
            n->margin = nm_node_mem_margin(n->total, 0);
            n->known = n->total > 0;
        } else {
            (void)read_node(n->os_index, n, zi);
        }
    }
    free(zi);
    if (!t->from_xml) {
        probe_cgroup(m);
        probe_rlimit_as(m);
    }
}

uint64_t nm_node_mem_avail(const nm_mem_state *m, int i) {
    const nm_node_mem *n = &m->nodes[i];
    if (!n->known)
        return UINT64_MAX;
    uint64_t have = n->free + n->reclaimable;
    return have > n->margin ? have - n->margin : 0;
}

uint64_t nm_cgroup_avail(const nm_mem_state *m) {
    if (!m->cg_limited)
        return UINT64_MAX;
    uint64_t room = m->cg_max > m->cg_usage ? m->cg_max - m->cg_usage : 0;
    return room + m->cg_reclaimable;
}

uint64_t nm_as_avail(const nm_mem_state *m) {
    if (!m->as_limited)
        return UINT64_MAX;
    return m->as_max > m->as_used ? m->as_max - m->as_used : 0;
}

/* ---- the guard ---- */

void nm_mem_guard_init(nm_mem_guard *g, const nm_topo *t, bool enabled) {
    memset(g, 0, sizeof *g);
    pthread_mutex_init(&g->lock, NULL);
    g->enabled = enabled && t && !t->from_xml;
    g->n_nodes = t ? (t->n_nodes < NM_MEM_MAX_NODES ? t->n_nodes : NM_MEM_MAX_NODES) : 0;
    for (int i = 0; i < g->n_nodes; i++)
        g->os_index[i] = t->nodes[i].os_index;
}

void nm_mem_guard_destroy(nm_mem_guard *g) {
    pthread_mutex_destroy(&g->lock);
}

/* The node's budget right now: -1 when it has no figures (not checked). */
static int64_t node_budget_now(int os_index, uint64_t *margin_cache) {
    nm_node_mem n = {.os_index = os_index};
    char path[96], text[8192];
    snprintf(path, sizeof path, "/sys/devices/system/node/node%d/meminfo", os_index);
    if (read_text(path, text, sizeof text) || nm_parse_node_meminfo(text, &n))
        return -1;
    if (!*margin_cache) {
        char *zi = read_zoneinfo();
        *margin_cache = nm_node_mem_margin(n.total, zi ? nm_parse_zoneinfo_high(zi, os_index) : 0);
        free(zi);
    }
    uint64_t have = n.free + n.reclaimable;
    return have > *margin_cache ? (int64_t)(have - *margin_cache) : 0;
}

static int64_t cgroup_budget_now(void) {
    nm_mem_state m;
    memset(&m, 0, sizeof m);
    probe_cgroup(&m);
    uint64_t a = nm_cgroup_avail(&m);
    return a == UINT64_MAX ? -1 : (int64_t)(a > INT64_MAX ? INT64_MAX : a);
}

static int take_node(nm_mem_guard *g, int i, uint64_t bytes, nm_error *err) {
    if (!g->primed[i] || g->budget[i] < (int64_t)(bytes + GUARD_REFRESH)) {
        int64_t b = node_budget_now(g->os_index[i], &g->margin[i]);
        if (b < 0) {
            g->budget[i] = INT64_MAX / 2; /* no figures: not checked */
        } else {
            g->budget[i] = b;
        }
        g->primed[i] = true;
    }
    if (g->budget[i] < (int64_t)bytes) {
        char a[32], b[32], c[32];
        return nm_fail(err,
                       "node %d ran out of memory during the load: %s of its pages are in, "
                       "the next %s would cut into the reserve the kernel keeps (%s left "
                       "above it); the load stopped before the OOM killer would have ended "
                       "it. `numalm plan -m MODEL` shows what fits",
                       g->os_index[i], nm_fmt_bytes(g->taken[i], a, sizeof a),
                       nm_fmt_bytes(bytes, b, sizeof b),
                       nm_fmt_bytes((uint64_t)(g->budget[i] > 0 ? g->budget[i] : 0), c, sizeof c));
    }
    g->budget[i] -= (int64_t)bytes;
    g->taken[i] += bytes;
    return 0;
}

static int take_cgroup(nm_mem_guard *g, uint64_t bytes, nm_error *err) {
    if (!g->cg_primed || g->cg_budget < (int64_t)(bytes + GUARD_REFRESH)) {
        int64_t b = cgroup_budget_now();
        g->cg_budget = b < 0 ? INT64_MAX / 2 : b - (int64_t)CG_GUARD_RESERVE;
        g->cg_primed = true;
    }
    if (g->cg_budget < (int64_t)bytes) {
        char a[32], b[32];
        return nm_fail(err,
                       "the cgroup memory limit was reached during the load: the next %s "
                       "do not fit (%s left under the limit above an 8 MiB reserve); the load "
                       "stopped before the OOM killer would have ended it",
                       nm_fmt_bytes(bytes, a, sizeof a),
                       nm_fmt_bytes((uint64_t)(g->cg_budget > 0 ? g->cg_budget : 0), b, sizeof b));
    }
    g->cg_budget -= (int64_t)bytes;
    return 0;
}

int nm_mem_guard_take_nodes(nm_mem_guard *g, const int *nodes, int n, uint64_t bytes,
                            nm_error *err) {
    if (!g || !g->enabled || bytes == 0)
        return 0;
    pthread_mutex_lock(&g->lock);
    int rc = 0;
    uint64_t share = n > 0 ? (bytes + (uint64_t)n - 1) / (uint64_t)n : 0;
    for (int k = 0; k < n && rc == 0; k++)
        for (int i = 0; i < g->n_nodes && rc == 0; i++)
            if (g->os_index[i] == nodes[k])
                rc = take_node(g, i, share, err);
    if (rc == 0)
        rc = take_cgroup(g, bytes, err);
    pthread_mutex_unlock(&g->lock);
    return rc;
}
