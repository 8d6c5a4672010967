/* Node-local arenas: binding, interleave, prefault, the move_pages query,
 * the huge-page fallback and the mlock message. Runs on any machine: the
 * per-node checks loop over the nodes this process may allocate on, so in
 * the multi-node VM (tests/test_numa_vm.sh) they cover every node. Lines
 * starting with "# arena" are read by tests/vm/checks.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "numa/arena.h"

#include <numa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define MiB (1024u * 1024u)
#define MAX_NODE 64

static int g_nodes[MAX_NODE];
static int g_n_nodes;

/* Nodes this process may allocate on: the cpuset's memory nodes, narrowed
 * by the memory policy it was started with (numactl --membind). */
static int setup(void **state) {
    (void)state;
    struct bitmask *mems = numa_get_mems_allowed();
    struct bitmask *bind = numa_get_membind();
    for (int n = 0; n <= numa_max_node() && g_n_nodes < MAX_NODE; n++)
        if (numa_bitmask_isbitset(mems, (unsigned)n) && numa_bitmask_isbitset(bind, (unsigned)n) &&
            numa_node_size64(n, NULL) > 0)
            g_nodes[g_n_nodes++] = n;
    numa_bitmask_free(mems);
    numa_bitmask_free(bind);
    printf("# arena: %d allowed memory node(s)\n", g_n_nodes);
    return g_n_nodes > 0 ? 0 : -1;
}

static uint64_t pages_of(uint64_t bytes) {
    return bytes / (uint64_t)sysconf(_SC_PAGESIZE);
}

static void create_ok(nm_arena *a, uint64_t size, int node, const int *nodes, int n,
                      const nm_arena_opts *o) {
    nm_error err = {{0}};
    if (nm_arena_create(a, size, node, nodes, n, o, &err))
        fail_msg("arena on node %d: %s", node, err.msg);
}

/* Bound to each node in turn: every page lands there, whichever CPU this
 * thread runs on. */
static void test_bind_each_node(void **state) {
    (void)state;
    for (int i = 0; i < g_n_nodes; i++) {
        nm_arena a;
        nm_error err = {{0}};
        create_ok(&a, 16 * MiB, g_nodes[i], NULL, 0, NULL);
        assert_int_equal(a.node, g_nodes[i]);
        assert_true(a.mapped >= 16 * MiB);
        nm_arena_prefault(&a, 0, a.size);
        double pct = 0;
        uint64_t hist[MAX_NODE];
        assert_int_equal(
            nm_pages_on_node(a.base, a.size, g_nodes[i], 0, &pct, hist, MAX_NODE, &err), 0);
        printf("# arena bound to node %d: %.1f%% of %llu pages on it\n", g_nodes[i], pct,
               (unsigned long long)pages_of(a.size));
        assert_true(pct == 100.0);
        assert_int_equal(hist[g_nodes[i]], pages_of(a.size));
        nm_arena_destroy(&a);
    }
}

/* Before the prefault nothing is placed: the query really looks at pages. */
static void test_untouched_pages_are_nowhere(void **state) {
    (void)state;
    nm_arena a;
    nm_error err = {{0}};
    create_ok(&a, 16 * MiB, g_nodes[0], NULL, 0, NULL);
    double pct = -1;
    uint64_t hist[MAX_NODE];
    assert_int_equal(nm_pages_on_node(a.base, a.size, g_nodes[0], 0, &pct, hist, MAX_NODE, &err),
                     0);
    assert_true(pct == 0.0);
    /* a quarter prefaulted: a quarter placed, plus at most one transparent
     * huge page (2 MiB = 12.5%) where the quarter ends inside one */
    nm_arena_prefault(&a, 0, a.size / 4);
    assert_int_equal(nm_pages_on_node(a.base, a.size, g_nodes[0], 0, &pct, hist, MAX_NODE, &err),
                     0);
    printf("# arena: a quarter prefaulted, %.1f%% of pages placed\n", pct);
    assert_true(pct >= 25.0 && pct <= 37.5);
    nm_arena_destroy(&a);
}

static void test_prefault_keeps_contents(void **state) {
    (void)state;
    nm_arena a;
    create_ok(&a, 2 * MiB + 123, g_nodes[g_n_nodes - 1], NULL, 0, NULL);
    unsigned char *p = a.base;
    for (uint64_t i = 0; i < a.size; i += 4093)
        p[i] = (unsigned char)(i * 7 + 1);
    nm_arena_prefault(&a, 0, a.size);
    for (uint64_t i = 0; i < a.size; i += 4093)
        assert_int_equal(p[i], (unsigned char)(i * 7 + 1));
    nm_arena_destroy(&a);
}

/* A phased arena starts at the requested offset from a 2 MiB boundary, its
 * whole length is usable and on the node, and destroying it unmaps only it
 * (the slack around it was given back). */
static void test_phase(void **state) {
    (void)state;
    static const uint64_t phases[] = {0, 4096, 1u << 20, NM_ARENA_PHASE_ALIGN - 4096,
                                      NM_ARENA_PHASE_ALIGN + 8192};
    for (size_t i = 0; i < sizeof phases / sizeof phases[0]; i++) {
        nm_arena a;
        nm_error err;
        int node = g_nodes[g_n_nodes - 1];
        assert_int_equal(
            nm_arena_create_phased(&a, 3 * MiB + 5, node, NULL, 0, NULL, phases[i], &err), 0);
        assert_int_equal((uintptr_t)a.base % NM_ARENA_PHASE_ALIGN,
                         phases[i] % NM_ARENA_PHASE_ALIGN);
        memset(a.base, 0x5a, a.size);
        nm_arena_prefault(&a, 0, a.size);
        assert_int_equal(((unsigned char *)a.base)[a.size - 1], 0x5a);
        nm_arena_destroy(&a);
    }
}

/* Interleaved over every allowed node: each holds about 1/n of the pages. */
static void test_interleave(void **state) {
    (void)state;
    nm_arena a;
    nm_error err = {{0}};
    uint64_t size = 32 * MiB;
    create_ok(&a, size, -1, g_nodes, g_n_nodes, NULL);
    nm_arena_prefault(&a, 0, size);
    double pct = 0;
    uint64_t hist[MAX_NODE];
    assert_int_equal(nm_pages_on_node(a.base, size, -1, 0, &pct, hist, MAX_NODE, &err), 0);
    assert_true(pct == 100.0);
    uint64_t pages = pages_of(size), sum = 0;
    for (int i = 0; i < g_n_nodes; i++) {
        uint64_t got = hist[g_nodes[i]];
        sum += got;
        printf("# arena interleaved: node %d holds %llu of %llu pages\n", g_nodes[i],
               (unsigned long long)got, (unsigned long long)pages);
        /* with transparent huge pages the unit is 2 MiB, not a page, so
         * only "a fair part on every node" holds for a 32 MiB arena */
        assert_true(got * 2 * (uint64_t)g_n_nodes >= pages);
    }
    assert_int_equal(sum, pages);
    nm_arena_destroy(&a);
}

static void test_sampled_query(void **state) {
    (void)state;
    nm_arena a;
    nm_error err = {{0}};
    create_ok(&a, 8 * MiB, g_nodes[0], NULL, 0, NULL);
    nm_arena_prefault(&a, 0, a.size);
    double pct = 0;
    uint64_t hist[MAX_NODE];
    assert_int_equal(nm_pages_on_node(a.base, a.size, g_nodes[0], 16, &pct, hist, MAX_NODE, &err),
                     0);
    assert_true(pct == 100.0);
    assert_int_equal(hist[g_nodes[0]], 16);
    nm_arena_destroy(&a);
}

static void test_bad_node(void **state) {
    (void)state;
    nm_arena a;
    nm_error err = {{0}};
    assert_int_equal(nm_arena_create(&a, MiB, 4000, NULL, 0, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "node 4000"));
    assert_null(a.base);
    /* interleave over nodes that cannot exist, or over none */
    const int bad[] = {0, 4000};
    assert_int_equal(nm_arena_create(&a, MiB, -1, bad, 2, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "interleave node 4000 does not exist"));
    assert_null(a.base);
    assert_int_equal(nm_arena_create(&a, MiB, -1, bad, 0, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "interleave needs 1 to 64 nodes, got 0"));
}

static uint64_t meminfo(const char *key) {
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    unsigned long long v = 0;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, n) && line[n] == ':')
            sscanf(line + n + 1, "%llu", &v);
    if (f)
        fclose(f);
    return v;
}

/* --hugepages: explicit huge pages when reserved, else normal pages with a
 * note telling how to reserve them. */
static void test_hugepages(void **state) {
    (void)state;
    nm_arena a;
    nm_arena_opts o = {.hugepages = true};
    uint64_t hps = meminfo("Hugepagesize") * 1024;
    uint64_t free_huge = meminfo("HugePages_Free");
    create_ok(&a, 4 * MiB, g_nodes[0], NULL, 0, &o);
    printf("# arena hugepages: %llu free of %llu KiB; huge=%d note='%s'\n",
           (unsigned long long)free_huge, (unsigned long long)(hps >> 10), a.huge, a.note);
    if (hps && free_huge * hps >= 8 * MiB) {
        /* enough reserved (only on machines set up for it; not node-bound) */
        assert_true(a.huge || a.note[0]);
    } else {
        assert_false(a.huge);
        assert_non_null(strstr(a.note, "nr_hugepages"));
    }
    /* either way the memory works and is bound */
    nm_arena_prefault(&a, 0, a.size);
    memset(a.base, 1, a.size);
    nm_arena_destroy(&a);
}

/* In a child: a tiny RLIMIT_MEMLOCK, without CAP_IPC_LOCK (root would ignore
 * the limit), must give a message that names the limit and the need. */
static void mlock_child(int fd) {
    struct rlimit rl = {64 * 1024, 64 * 1024};
    if (setrlimit(RLIMIT_MEMLOCK, &rl) != 0 || (geteuid() == 0 && setuid(65534) != 0))
        _exit(3);
    nm_arena a;
    nm_arena_opts o = {.mlock = true};
    nm_error err = {{0}};
    int rc = nm_arena_create(&a, 4 * MiB, g_nodes[0], NULL, 0, &o, &err);
    if (write(fd, err.msg, strlen(err.msg) + 1) < 0)
        _exit(4);
    /* a small arena fits under the limit and is locked */
    nm_arena small;
    int rc2 = nm_arena_create(&small, 16 * 1024, g_nodes[0], NULL, 0, &o, &err);
    _exit(rc == -1 && rc2 == 0 && small.locked ? 0 : 5);
}

#if defined(__SANITIZE_ADDRESS__)
#define ASAN_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ASAN_BUILD 1
#endif
#endif

static void test_mlock_limit_message(void **state) {
    (void)state;
#ifdef ASAN_BUILD
    /* ASan's mlock interceptor returns 0 without locking anything */
    printf("# arena mlock: skipped under AddressSanitizer (mlock is a no-op there)\n");
    skip();
#endif
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    fflush(stdout);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        mlock_child(pfd[1]);
    }
    close(pfd[1]);
    char msg[1100] = {0};
    ssize_t n = 0, r;
    while ((r = read(pfd[0], msg + n, sizeof msg - 1 - (size_t)n)) > 0)
        n += r;
    close(pfd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    printf("# arena mlock message: %s\n", msg);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_non_null(strstr(msg, "RLIMIT_MEMLOCK"));
    assert_non_null(strstr(msg, "ulimit -l"));
    assert_non_null(strstr(msg, "64 KiB"));
    assert_non_null(strstr(msg, "4096 KiB"));
}

int main(void) {
    if (numa_available() < 0) {
        printf("test_arena: skipped: libnuma says NUMA is not available here\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bind_each_node),
        cmocka_unit_test(test_untouched_pages_are_nowhere),
        cmocka_unit_test(test_prefault_keeps_contents),
        cmocka_unit_test(test_interleave),
        cmocka_unit_test(test_phase),
        cmocka_unit_test(test_sampled_query),
        cmocka_unit_test(test_bad_node),
        cmocka_unit_test(test_hugepages),
        cmocka_unit_test(test_mlock_limit_message),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
