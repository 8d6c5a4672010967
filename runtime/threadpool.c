#include "threadpool.h"

#include "common/util.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Spinning keeps the wake-up latency of a barrier in the tens of
 * nanoseconds while work phases are short (decode: ~150 phases a token);
 * after this many polls the thread sleeps on a futex so an idle pool (the
 * user typing, sampling on worker 0) costs no CPU. */
#define NM_SPIN_POLLS 4000

#define CACHE_LINE 64

typedef struct {
    _Alignas(CACHE_LINE) atomic_uint arrived; /* workers of this node at the barrier */
    _Alignas(CACHE_LINE) atomic_uint gen;     /* node-barrier generation (futex word) */
    atomic_uint node_arrived;                 /* for nm_pool_node_barrier */
    atomic_int sleepers;
    int n_workers;
} node_sync;

typedef struct {
    nm_pool *pool;
    nm_worker w;
    pthread_t thread;
    bool started;
} worker_slot;

struct nm_pool {
    int n_nodes, n_workers;
    node_sync nodes[NM_MAX_NODES];
    _Alignas(CACHE_LINE) atomic_uint global_arrived; /* nodes at the barrier */
    _Alignas(CACHE_LINE) atomic_uint gen;            /* barrier generation (futex word) */
    atomic_int sleepers;
    _Alignas(CACHE_LINE) atomic_uint job_gen; /* futex word for new jobs */
    atomic_int job_sleepers;
    nm_pool_fn fn;
    void *ctx;
    bool quit;
    worker_slot *slots;
    cpu_set_t saved_affinity;
    bool restore_affinity;
};

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void futex_wait(atomic_uint *addr, unsigned val) {
    syscall(SYS_futex, (unsigned *)addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake_all(atomic_uint *addr) {
    syscall(SYS_futex, (unsigned *)addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/* Waits until *word != seen: spin, then sleep. The sleeper count is bumped
 * before the futex re-checks the word, and the waker stores the word before
 * reading the count (both seq_cst), so a wake-up is never lost. */
static void wait_change(atomic_uint *word, unsigned seen, atomic_int *sleepers) {
    for (int i = 0; i < NM_SPIN_POLLS; i++) {
        if (atomic_load_explicit(word, memory_order_acquire) != seen)
            return;
        cpu_relax();
    }
    atomic_fetch_add(sleepers, 1);
    while (atomic_load(word) == seen)
        futex_wait(word, seen);
    atomic_fetch_sub(sleepers, 1);
}

static void bump_and_wake(atomic_uint *word, atomic_int *sleepers) {
    atomic_fetch_add(word, 1);
    if (atomic_load(sleepers) > 0)
        futex_wake_all(word);
}

void nm_pool_barrier(const nm_worker *w) {
    nm_pool *p = w->pool;
    node_sync *ns = &p->nodes[w->node];
    unsigned seen = atomic_load_explicit(&p->gen, memory_order_acquire);
    if (atomic_fetch_add(&ns->arrived, 1) + 1 == (unsigned)ns->n_workers) {
        /* Last of its node: reset the node counter before telling the
         * others; nobody touches it again before the release below. */
        atomic_store_explicit(&ns->arrived, 0, memory_order_relaxed);
        if (atomic_fetch_add(&p->global_arrived, 1) + 1 == (unsigned)p->n_nodes) {
            atomic_store_explicit(&p->global_arrived, 0, memory_order_relaxed);
            bump_and_wake(&p->gen, &p->sleepers);
            return;
        }
    }
    wait_change(&p->gen, seen, &p->sleepers);
}

void nm_pool_node_barrier(const nm_worker *w) {
    node_sync *ns = &w->pool->nodes[w->node];
    if (ns->n_workers == 1)
        return;
    unsigned seen = atomic_load_explicit(&ns->gen, memory_order_acquire);
    if (atomic_fetch_add(&ns->node_arrived, 1) + 1 == (unsigned)ns->n_workers) {
        atomic_store_explicit(&ns->node_arrived, 0, memory_order_relaxed);
        bump_and_wake(&ns->gen, &ns->sleepers);
        return;
    }
    wait_change(&ns->gen, seen, &ns->sleepers);
}

static void *worker_main(void *arg) {
    worker_slot *s = arg;
    nm_pool *p = s->pool;
    unsigned seen = 0;
    for (;;) {
        wait_change(&p->job_gen, seen, &p->job_sleepers);
        seen = atomic_load(&p->job_gen);
        if (p->quit)
            return NULL;
        p->fn(p->ctx, &s->w);
        nm_pool_barrier(&s->w);
    }
}

void nm_pool_run(nm_pool *p, nm_pool_fn fn, void *ctx) {
    p->fn = fn;
    p->ctx = ctx;
    bump_and_wake(&p->job_gen, &p->job_sleepers);
    fn(ctx, &p->slots[0].w);
    nm_pool_barrier(&p->slots[0].w);
}

static int pin_self(const nm_topo *topo, int cpu, nm_error *err) {
    if (!topo || topo->from_xml || cpu < 0)
        return 0;
    return nm_pin_thread_to_cpu(topo, cpu, err);
}

typedef struct {
    worker_slot *slot;
    const nm_topo *topo;
    nm_error err;
    int rc;
    atomic_int ready;
} start_arg;

/* Pins itself first, so that everything the worker allocates or faults
 * later lands on its node. */
static void *worker_start(void *arg) {
    start_arg *sa = arg;
    worker_slot *slot = sa->slot;
    int rc = pin_self(sa->topo, slot->w.cpu, &sa->err);
    sa->rc = rc;
    atomic_store(&sa->ready, 1); /* sa is gone after this */
    if (rc < 0)
        return NULL;
    return worker_main(slot);
}

static void stop_workers(nm_pool *p) {
    p->quit = true;
    bump_and_wake(&p->job_gen, &p->job_sleepers);
    for (int i = 1; i < p->n_workers; i++)
        if (p->slots[i].started)
            pthread_join(p->slots[i].thread, NULL);
}

static int start_worker(nm_pool *p, int i, const nm_topo *topo, nm_error *err) {
    start_arg sa = {.slot = &p->slots[i], .topo = topo, .rc = 0};
    atomic_init(&sa.ready, 0);
    int rc = pthread_create(&p->slots[i].thread, NULL, worker_start, &sa);
    if (rc)
        return nm_fail(err, "thread pool: creating worker %d: %s", i, strerror(rc));
    p->slots[i].started = true;
    while (!atomic_load(&sa.ready))
        sched_yield();
    if (sa.rc < 0) {
        pthread_join(p->slots[i].thread, NULL);
        p->slots[i].started = false;
        *err = sa.err;
        return nm_fail_prefix(err, "thread pool: pinning worker %d to cpu %d", i,
                              p->slots[i].w.cpu);
    }
    return 0;
}

nm_pool *nm_pool_create(const nm_plan *plan, const nm_topo *topo, nm_error *err) {
    int total = 0;
    for (int n = 0; n < plan->n_nodes; n++) {
        if (plan->nodes[n].n_threads < 1 || plan->nodes[n].n_threads > 256) {
            nm_fail(err, "thread pool: plan node %d (OS node %d) has %d workers", n,
                    plan->nodes[n].os_index, plan->nodes[n].n_threads);
            return NULL;
        }
        total += plan->nodes[n].n_threads;
    }
    if (plan->n_nodes < 1) {
        nm_fail(err, "thread pool: the plan has no compute node");
        return NULL;
    }
    nm_pool *p = aligned_alloc(CACHE_LINE, (sizeof *p + CACHE_LINE - 1) / CACHE_LINE * CACHE_LINE);
    if (!p) {
        nm_fail(err, "thread pool: out of memory");
        return NULL;
    }
    memset(p, 0, sizeof *p);
    p->n_nodes = plan->n_nodes;
    p->n_workers = total;
    if (!(p->slots = nm_calloc((size_t)total, sizeof *p->slots, "the worker list", err))) {
        free(p);
        return NULL;
    }
    int id = 0;
    for (int n = 0; n < plan->n_nodes; n++) {
        p->nodes[n].n_workers = plan->nodes[n].n_threads;
        for (int l = 0; l < plan->nodes[n].n_threads; l++, id++) {
            worker_slot *s = &p->slots[id];
            s->pool = p;
            s->w = (nm_worker){.pool = p,
                               .id = id,
                               .node = n,
                               .local = l,
                               .n_local = plan->nodes[n].n_threads,
                               .cpu = plan->nodes[n].cpus[l]};
        }
    }
    if (topo && !topo->from_xml) {
        p->restore_affinity = pthread_getaffinity_np(pthread_self(), sizeof p->saved_affinity,
                                                     &p->saved_affinity) == 0;
        if (pin_self(topo, p->slots[0].w.cpu, err) < 0) {
            nm_fail_prefix(err, "thread pool: pinning the main thread to cpu %d",
                           p->slots[0].w.cpu);
            nm_pool_free(p);
            return NULL;
        }
    }
    for (int i = 1; i < total; i++) {
        if (start_worker(p, i, topo, err) < 0) {
            nm_pool_free(p);
            return NULL;
        }
    }
    return p;
}

void nm_pool_free(nm_pool *p) {
    if (!p)
        return;
    stop_workers(p);
    if (p->restore_affinity)
        pthread_setaffinity_np(pthread_self(), sizeof p->saved_affinity, &p->saved_affinity);
    free(p->slots);
    free(p);
}

int nm_pool_n_workers(const nm_pool *p) {
    return p->n_workers;
}
int nm_pool_n_nodes(const nm_pool *p) {
    return p->n_nodes;
}
int nm_pool_node_workers(const nm_pool *p, int node) {
    return p->nodes[node].n_workers;
}

void nm_split_rows(uint64_t n, int local, int n_local, uint64_t align, uint64_t *r0, uint64_t *r1) {
    if (align < 1)
        align = 1;
    uint64_t units = (n + align - 1) / align;
    uint64_t a = units * (uint64_t)local / (uint64_t)n_local * align;
    uint64_t b = units * (uint64_t)(local + 1) / (uint64_t)n_local * align;
    *r0 = a < n ? a : n;
    *r1 = b < n ? b : n;
}
