/*
 * What the C test programs share: CHECK counts passed and failed checks
 * (each program prints "N passed, M failed" and exits non-zero on a
 * failure), WAIT_MS bounds their waits, and int_arg reads the integer
 * argument of their task functions.
 */
#ifndef DASK_TESTS_CHECK_H
#define DASK_TESTS_CHECK_H

#include <libdask.h>
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

/* Whether a task's msgpack arguments start with an integer; if so it is
 * stored in *n. */
static inline int int_arg(const uint8_t *args, size_t args_len, int64_t *n) {
    dask_value *array = NULL;
    const dask_value *x = NULL;
    int ok = dask_value_from_msgpack(args, args_len, &array, NULL) == DASK_OK &&
             dask_value_array_get(array, 0, &x, NULL) == DASK_OK &&
             dask_value_as_int(x, n, NULL) == DASK_OK;
    dask_value_free(array);
    return ok;
}

#endif
