/* Sessions in the cmocka tests, opened as every program opens them
 * (numalm_open): a failure fails the test with the message and the options
 * that led to it. Include after cmocka.h. */
#ifndef NM_TEST_SESSION_H
#define NM_TEST_SESSION_H

#include "numalm.h"

static inline numalm_session *nm_test_open(const numalm_options *o) {
    char err[1024];
    numalm_session *s = numalm_open(o, err, sizeof err);
    if (!s)
        fail_msg("numalm_open %s (%s, io %s, %d threads): %s",
                 o->model_path ? o->model_path : "(no model)", numalm_placement_name(o->placement),
                 numalm_io_name(o->io), o->n_threads, err);
    return s;
}

#endif
