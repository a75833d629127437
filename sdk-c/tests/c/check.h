/*
 * What the C test programs share: CHECK counts passed and failed checks
 * (each program prints "N passed, M failed" and exits non-zero on a
 * failure), and WAIT_MS bounds their waits.
 */
#ifndef DASK_TESTS_CHECK_H
#define DASK_TESTS_CHECK_H

#include <stdio.h>

/* Generous: valgrind runs everything many times slower. */
#define WAIT_MS 120000

static int passed, failed;

#define CHECK(cond)                                                                       \
    do {                                                                                  \
        if (cond) {                                                                       \
            passed++;                                                                     \
        } else {                                                                          \
            failed++;                                                                     \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);      \
        }                                                                                 \
    } while (0)

#endif
