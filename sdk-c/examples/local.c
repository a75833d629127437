/*
 * A C client on an embedded cluster: the scheduler and a worker run inside
 * this process. Submits calls, builds a graph, scatters data, gathers
 * results and iterates over futures as they complete; every error is
 * checked and printed.
 *
 * Usage: local
 */
#include <libdask.h>

#include <stdio.h>
#include <stdlib.h>

/* Prints the error of a failed call and exits. */
/* Takes the error by address: the call in `check(f(&err), &err, ...)` sets it,
 * and C leaves the order in which arguments are evaluated unspecified. */
static void check(dask_result result, dask_error **err, const char *what) {
    if (result != DASK_OK) {
        fprintf(stderr, "local: %s failed: %s (%s)\n", what, dask_error_message(*err),
                dask_result_name(result));
        dask_error_free(*err);
        exit(1);
    }
}

static int64_t as_int(dask_value *v) {
    dask_error *err = NULL;
    int64_t n = 0;
    check(dask_value_as_int(v, &n, &err), &err, "reading an integer");
    return n;
}

int main(void) {
    enum { N = 4 };
    dask_client *client = NULL;
    dask_error *err = NULL;
    dask_future *squares[N], *total = NULL, *next = NULL, *stored = NULL, *failing = NULL;
    dask_value *args, *ref, *results[N], *value;
    dask_delayed *inc = NULL, *sum = NULL;
    dask_as_completed *completed = NULL;
    int64_t i, check_sum = 0;

    /* One worker with two threads, offering the built-in functions. */
    check(dask_client_start_local(1, 2, NULL, &client, &err), &err, "starting a cluster");
    printf("cluster at %s\n", dask_client_address(client));

    /* mul(i, i) for i in 0..N, submitted one by one. */
    for (i = 0; i < N; i++) {
        args = dask_value_new_array();
        dask_value_array_push_int(args, i, NULL);
        dask_value_array_push_int(args, i, NULL);
        check(dask_client_submit(client, "mul", args, &squares[i], &err), &err, "submit");
        dask_value_free(args);
    }
    /* All results in one request. */
    check(dask_client_gather(client, (const dask_future *const *)squares, N, 30000, results, &err),
          &err, "gather");
    for (i = 0; i < N; i++) {
        printf("mul(%lld, %lld) = %lld\n", (long long)i, (long long)i, (long long)as_int(results[i]));
        dask_value_free(results[i]);
    }

    /* A graph: sum([inc(41), square 3]) computed as one submission. */
    args = dask_value_new_array();
    dask_value_array_push_int(args, 41, NULL);
    check(dask_delayed_new("inc", args, &inc, &err), &err, "delayed inc");
    dask_value_free(args);
    value = dask_value_new_array();
    check(dask_value_new_delayed(inc, &ref, &err), &err, "reference to inc");
    dask_value_array_push(value, ref, NULL);
    check(dask_value_new_future(squares[3], &ref, &err), &err, "reference to a future");
    dask_value_array_push(value, ref, NULL);
    args = dask_value_new_array();
    dask_value_array_push(args, value, NULL);
    check(dask_delayed_new("sum", args, &sum, &err), &err, "delayed sum");
    dask_value_free(args);
    check(dask_client_compute(client, sum, &total, &err), &err, "compute");
    check(dask_future_result(total, 30000, &value, &err), &err, "result");
    printf("sum([inc(41), 9]) = %lld\n", (long long)as_int(value));
    dask_value_free(value);

    /* Data put on the cluster, then used as an argument. */
    value = dask_value_new_int(1000);
    check(dask_client_scatter(client, (const dask_value *const *)&value, 1, &stored, &err), &err,
          "scatter");
    dask_value_free(value);
    args = dask_value_new_array();
    check(dask_value_new_future(stored, &ref, &err), &err, "reference to scattered data");
    dask_value_array_push(args, ref, NULL);
    check(dask_client_submit(client, "neg", args, &next, &err), &err, "submit neg");
    dask_value_free(args);
    check(dask_future_result(next, 30000, &value, &err), &err, "result of neg");
    printf("neg(scattered 1000) = %lld\n", (long long)as_int(value));
    dask_value_free(value);
    dask_future_free(next);

    /* Futures as they complete. */
    check(dask_client_as_completed(client, (const dask_future *const *)squares, N, &completed, &err),
          &err, "as_completed");
    while (dask_as_completed_next(completed, 30000, &next, &err) == DASK_OK) {
        check(dask_future_result(next, 30000, &value, &err), &err, "result");
        check_sum += as_int(value);
        dask_value_free(value);
        dask_future_free(next);
    }
    printf("squares add up to %lld\n", (long long)check_sum);

    /* A task that fails: the error says why. */
    args = dask_value_new_array();
    dask_value_array_push_int(args, 1, NULL);
    dask_value_array_push_string(args, "two", NULL);
    check(dask_client_submit(client, "add", args, &failing, &err), &err, "submit add");
    dask_value_free(args);
    if (dask_future_wait(failing, 30000, &err) == DASK_REMOTE_ERROR) {
        printf("add(1, \"two\") failed as it should: %s\n", dask_error_remote_type(err));
    }
    dask_error_free(err);

    dask_as_completed_free(completed);
    dask_future_free(failing);
    dask_future_free(stored);
    dask_future_free(total);
    dask_delayed_free(sum);
    dask_delayed_free(inc);
    for (i = 0; i < N; i++) {
        dask_future_free(squares[i]);
    }
    dask_client_free(client); /* also stops the embedded cluster */
    return check_sum == 14 ? 0 : 1;
}
