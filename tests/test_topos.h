/* The shared hwloc XML exports of real machines (SHARED/topologies/NAME.xml)
 * for the tests that plan for other machines. Include after cmocka.h. */
#ifndef NM_TEST_TOPOS_H
#define NM_TEST_TOPOS_H

#include "numa/topo.h"
#include "test_util.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

static inline int nm_test_cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The folder into dir and up to max file names (malloc'd, sorted) into
 * files; returns their count, 0 when the folder is absent. */
static inline int nm_test_list_topos(char *dir, size_t dir_size, char **files, int max) {
    snprintf(dir, dir_size, "%s/topologies", nm_test_shared_dir());
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < max) {
        size_t len = strlen(e->d_name);
        if (len > 4 && !strcmp(e->d_name + len - 4, ".xml") && (files[n] = strdup(e->d_name)))
            n++;
    }
    closedir(d);
    qsort(files, (size_t)n, sizeof(char *), nm_test_cmp_str);
    return n;
}

static inline void nm_test_free_topos(char **files, int n) {
    for (int i = 0; i < n; i++)
        free(files[i]);
}

/* dir/file as the machine to plan for; a failure fails the test. */
static inline nm_topo *nm_test_load_topo(const char *dir, const char *file) {
    char path[2048];
    nm_error err = {{0}};
    snprintf(path, sizeof path, "%s/%s", dir, file);
    nm_topo *t = nm_topo_load(path, &err);
    if (!t)
        fail_msg("%s: %s", path, err.msg);
    return t;
}

#endif
