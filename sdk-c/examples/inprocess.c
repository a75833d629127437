/*
 * A graph computed in this process: no scheduler, no worker, no socket.
 * A C function (square) registered beside the built-ins, a tree of adds
 * over squares built from delayed calls, computed on two threads and again
 * on the calling thread alone; then a task that fails and the error it
 * gives.
 *
 * Usage: inprocess
 */
#include <libdask.h>

#include <stdio.h>
#include <stdlib.h>

/* Prints the error of a failed call and exits. */
/* Takes the error by address: the call in `check(f(&err), &err, ...)` sets it,
 * and C leaves the order in which arguments are evaluated unspecified. */
static void check(dask_result result, dask_error **err, const char *what) {
    if (result != DASK_OK) {
        fprintf(stderr, "inprocess: %s failed: %s (%s)\n", what, dask_error_message(*err),
                dask_result_name(result));
        dask_error_free(*err);
        exit(1);
    }
}

/* square(x) -> x * x, for integers. */
static void square(void *user_data, const uint8_t *args, size_t args_len, const uint8_t *kwargs,
                   size_t kwargs_len, dask_task_output *output) {
    dask_value *array = NULL;
    const dask_value *x = NULL;
    int64_t n = 0;
    (void)user_data;
    (void)kwargs;
    (void)kwargs_len;
    if (dask_value_from_msgpack(args, args_len, &array, NULL) != DASK_OK ||
        dask_value_array_get(array, 0, &x, NULL) != DASK_OK ||
        dask_value_as_int(x, &n, NULL) != DASK_OK) {
        dask_task_output_set_error(output, "TypeError", "square() takes one integer", NULL);
    } else {
        dask_task_output_set_int(output, n * n, NULL);
    }
    dask_value_free(array);
}

/* A delayed call of `function` on two references (or one when b is NULL). */
static dask_delayed *call(const char *function, const dask_delayed *a, const dask_delayed *b) {
    dask_error *err = NULL;
    dask_value *args = dask_value_new_array(), *ref = NULL;
    dask_delayed *out = NULL;
    check(dask_value_new_delayed(a, &ref, &err), &err, "a reference");
    dask_value_array_push(args, ref, NULL);
    if (b != NULL) {
        check(dask_value_new_delayed(b, &ref, &err), &err, "a reference");
        dask_value_array_push(args, ref, NULL);
    }
    check(dask_delayed_new(function, args, &out, &err), &err, "a delayed call");
    dask_value_free(args);
    return out;
}

int main(void) {
    enum { N = 16 };
    dask_functions *functions = dask_functions_new_builtins();
    dask_error *err = NULL;
    dask_delayed *level[N], *bad = NULL, *downstream = NULL;
    dask_value *args, *result = NULL;
    int64_t total = 0, again = 0;
    size_t i, width;

    check(dask_functions_register(functions, "square", square, NULL, NULL, &err), &err,
          "registering square");

    /* square(i) for i in 0..N, then added pairwise down to one. */
    for (i = 0; i < N; i++) {
        args = dask_value_new_array();
        dask_value_array_push_int(args, (int64_t)i, NULL);
        check(dask_delayed_new("square", args, &level[i], &err), &err, "delayed square");
        dask_value_free(args);
    }
    for (width = N; width > 1; width /= 2) {
        for (i = 0; i < width / 2; i++) {
            dask_delayed *sum = call("add", level[2 * i], level[2 * i + 1]);
            dask_delayed_free(level[2 * i]);
            dask_delayed_free(level[2 * i + 1]);
            level[i] = sum;
        }
    }

    check(dask_delayed_compute_in_process(level[0], functions, 2, &result, &err), &err,
          "computing on two threads");
    check(dask_value_as_int(result, &total, &err), &err, "reading the result");
    dask_value_free(result);
    printf("sum of squares below %d, on two threads: %lld\n", N, (long long)total);

    check(dask_delayed_compute_in_process(level[0], functions, 0, &result, &err), &err,
          "computing on the calling thread");
    check(dask_value_as_int(result, &again, &err), &err, "reading the result");
    dask_value_free(result);
    printf("again on the calling thread: %lld\n", (long long)again);

    /* square("x") fails; what depends on it fails with its error. */
    args = dask_value_new_array();
    dask_value_array_push_string(args, "x", NULL);
    check(dask_delayed_new("square", args, &bad, &err), &err, "delayed square");
    dask_value_free(args);
    downstream = call("inc", bad, NULL);
    if (dask_delayed_compute_in_process(downstream, functions, 2, &result, &err) ==
        DASK_REMOTE_ERROR) {
        printf("inc(square(\"x\")) failed as it should: %s: %s\n", dask_error_remote_type(err),
               dask_error_remote_message(err));
    } else {
        total = -1;
    }
    dask_error_free(err);

    dask_delayed_free(downstream);
    dask_delayed_free(bad);
    dask_delayed_free(level[0]);
    dask_functions_free(functions);
    return total == 1240 && again == total ? 0 : 1;
}
