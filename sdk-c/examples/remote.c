/*
 * A C client of a running cluster: a `dask-scheduler`, a `dask-worker` and
 * the C worker of worker.c, started as separate processes. Calls built-in
 * functions and the C worker's own functions (c.word_count, c.fib).
 *
 * Usage: remote tcp://HOST:PORT [WORKERS]
 *   waits (at most 60 s) until WORKERS workers (default 2) are connected.
 */
#define _POSIX_C_SOURCE 200809L

#include <libdask.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Takes the error by address: the call in `check(f(&err), &err, ...)` sets it,
 * and C leaves the order in which arguments are evaluated unspecified. */
static void check(dask_result result, dask_error **err, const char *what) {
    if (result != DASK_OK) {
        fprintf(stderr, "remote: %s failed: %s (%s)\n", what, dask_error_message(*err),
                dask_result_name(result));
        dask_error_free(*err);
        exit(1);
    }
}

/* Calls function(arg) with one argument and returns its integer result. */
static int64_t call_int(dask_client *client, const char *function, dask_value *arg) {
    dask_error *err = NULL;
    dask_value *args = dask_value_new_array(), *result = NULL;
    dask_future *future = NULL;
    int64_t n = 0;
    check(dask_value_array_push(args, arg, &err), &err, "building arguments");
    check(dask_client_submit(client, function, args, &future, &err), &err, function);
    check(dask_future_result(future, 120000, &result, &err), &err, function);
    check(dask_value_as_int(result, &n, &err), &err, "reading the result");
    dask_value_free(result);
    dask_value_free(args);
    dask_future_free(future);
    return n;
}

int main(int argc, char **argv) {
    dask_client *client = NULL;
    dask_security security = {0};
    dask_error *err = NULL;
    dask_value *text = NULL, *args;
    dask_future *f = NULL;
    size_t workers = 0, wanted = 2;
    int waited;
    int64_t words, fib, total;

    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s tcp://HOST:PORT|tls://HOST:PORT [WORKERS]\n", argv[0]);
        return 2;
    }
    if (argc == 3) {
        wanted = (size_t)strtoul(argv[2], NULL, 10);
    }
    /* The cluster's credentials are found as every dask-rs program finds
     * them (DASK_CREDENTIALS, or the file dask-scheduler created on this
     * machine); TLS files, for a tls:// address, from this example's own
     * environment variables. */
    security.tls_ca_file = getenv("DASK_TLS_CA_FILE");
    security.tls_cert_file = getenv("DASK_TLS_CERT");
    check(dask_client_connect_secure(argv[1], 10000, &security, &client, &err), &err, "connect");
    for (waited = 0; waited < 600; waited++) {
        struct timespec tick = {0, 100 * 1000 * 1000};
        check(dask_client_worker_count(client, &workers, &err), &err, "worker count");
        if (workers >= wanted) {
            break;
        }
        nanosleep(&tick, NULL);
    }
    printf("connected to %s, %zu workers\n", dask_client_address(client), workers);

    total = call_int(client, "inc", dask_value_new_int(41));
    printf("inc(41) = %lld (a built-in function)\n", (long long)total);

    check(dask_value_new_string("the quick brown fox", &text, &err), &err, "a string");
    words = call_int(client, "c.word_count", text);
    printf("c.word_count(\"the quick brown fox\") = %lld (a C function)\n", (long long)words);
    fib = call_int(client, "c.fib", dask_value_new_int(50));
    printf("c.fib(50) = %lld (a C function)\n", (long long)fib);

    /* A C function's error reaches the client with its type and message. */
    args = dask_value_new_array();
    dask_value_array_push_int(args, 100, NULL);
    check(dask_client_submit(client, "c.fib", args, &f, &err), &err, "submit c.fib(100)");
    if (dask_future_wait(f, 120000, &err) == DASK_REMOTE_ERROR) {
        printf("c.fib(100) failed as it should: %s: %s\n", dask_error_remote_type(err),
               dask_error_remote_message(err));
    } else {
        fprintf(stderr, "remote: c.fib(100) did not fail\n");
        return 1;
    }
    dask_error_free(err);
    dask_future_free(f);
    dask_value_free(args);
    dask_client_free(client);
    return total == 42 && words == 4 && fib == 12586269025LL ? 0 : 1;
}
