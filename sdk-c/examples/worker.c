/*
 * A dask worker written in C. It offers its own functions, written in C:
 *
 *   c.word_count(text)      -> number of words in a string
 *   c.fib(n)                -> the n-th Fibonacci number (OverflowError past 92)
 *   conformance.echo(x)     -> x
 *   conformance.add(a, b)   -> a + b
 *   conformance.fail(m)     -> always errs: ConformanceError, m
 *   conformance.sleep(ms[, value]) -> value after ms milliseconds
 *   conformance.bytes(n)    -> n bytes, byte i = i % 251
 *
 * (the conformance.* functions are those every dask/1 worker offers, so
 * this program passes `dask-conformance worker -- ./worker {scheduler} {nthreads} {name}`).
 *
 * Usage: worker tcp://HOST:PORT [NTHREADS [NAME]]
 *
 * Runs until the scheduler closes it (exit 0), the connection is lost
 * and registering again fails for 60 s (exit 1; a scheduler restarted on
 * its journal within that time takes the worker back, with the results it
 * holds), or SIGINT / SIGTERM, which a second thread turns into
 * dask_worker_stop() (exit 0).
 */
#define _POSIX_C_SOURCE 200809L

#include <libdask.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- binding arguments like Python: positional, then by keyword ---- */

#define PARAMS_MAX 4

typedef struct {
    dask_value *args;   /* the positional arguments (an array) */
    dask_value *kwargs; /* the keyword arguments (a map) */
    const dask_value *bound[PARAMS_MAX];
} call;

static void call_free(call *c) {
    dask_value_free(c->args);
    dask_value_free(c->kwargs);
}

/* Decodes and binds the arguments to `names` (the first `required` are
 * mandatory). On failure, reports a TypeError and returns -1. */
static int bind(call *c, const char *function, const char *const *names, size_t n_names,
                size_t required, const uint8_t *args, size_t args_len, const uint8_t *kwargs,
                size_t kwargs_len, dask_task_output *output) {
    char message[256];
    size_t i;
    memset(c, 0, sizeof *c);
    if (dask_value_from_msgpack(args, args_len, &c->args, NULL) != DASK_OK ||
        dask_value_from_msgpack(kwargs, kwargs_len, &c->kwargs, NULL) != DASK_OK) {
        dask_task_output_set_error(output, "TypeError", "arguments are not valid msgpack", NULL);
        call_free(c);
        return -1;
    }
    if (dask_value_len(c->args) > n_names) {
        snprintf(message, sizeof message, "%s() takes at most %zu arguments (%zu given)", function,
                 n_names, dask_value_len(c->args));
        goto fail;
    }
    for (i = 0; i < dask_value_len(c->args); i++) {
        dask_value_array_get(c->args, i, &c->bound[i], NULL);
    }
    for (i = 0; i < dask_value_len(c->kwargs); i++) {
        const dask_value *key, *value;
        const char *name = "";
        size_t at;
        dask_value_map_entry(c->kwargs, i, &key, &value, NULL);
        dask_value_as_string(key, &name, NULL, NULL);
        for (at = 0; at < n_names && strcmp(names[at], name) != 0; at++) {
        }
        if (at == n_names) {
            snprintf(message, sizeof message, "%s() got an unexpected keyword argument \"%s\"",
                     function, name);
            goto fail;
        }
        if (c->bound[at] != NULL) {
            snprintf(message, sizeof message, "%s() got multiple values for argument \"%s\"",
                     function, name);
            goto fail;
        }
        c->bound[at] = value;
    }
    for (i = 0; i < required; i++) {
        if (c->bound[i] == NULL) {
            snprintf(message, sizeof message, "%s() missing required argument \"%s\"", function,
                     names[i]);
            goto fail;
        }
    }
    return 0;
fail:
    dask_task_output_set_error(output, "TypeError", message, NULL);
    call_free(c);
    return -1;
}

static int is_number(const dask_value *v) {
    return dask_value_type(v) == DASK_TYPE_INT || dask_value_type(v) == DASK_TYPE_FLOAT;
}

static const char *type_name(const dask_value *v) {
    switch (dask_value_type(v)) {
    case DASK_TYPE_NULL: return "null";
    case DASK_TYPE_BOOL: return "bool";
    case DASK_TYPE_INT: return "int";
    case DASK_TYPE_FLOAT: return "float";
    case DASK_TYPE_STRING: return "str";
    case DASK_TYPE_BYTES: return "bytes";
    case DASK_TYPE_ARRAY: return "list";
    case DASK_TYPE_MAP: return "dict";
    default: return "other";
    }
}

/* a + b for two msgpack integers (each an int64, or a uint64 above
 * INT64_MAX); -1 when the sum leaves the int64 range. */
static int add_ints(const dask_value *a, const dask_value *b, int64_t *sum) {
    int64_t x = 0, y = 0;
    uint64_t big = 0;
    int x_big = dask_value_as_int(a, &x, NULL) != DASK_OK;
    int y_big = dask_value_as_int(b, &y, NULL) != DASK_OK;
    if (x_big && y_big) {
        return -1;
    }
    if (!x_big && !y_big) {
        if ((y > 0 && x > INT64_MAX - y) || (y < 0 && x < INT64_MIN - y)) {
            return -1;
        }
        *sum = x + y;
        return 0;
    }
    /* One is above INT64_MAX: only a negative other brings it back. */
    dask_value_as_uint(x_big ? a : b, &big, NULL);
    {
        int64_t small = x_big ? y : x;
        uint64_t down;
        if (small >= 0) {
            return -1;
        }
        down = (uint64_t)(-(small + 1)) + 1u;
        if (big - down > (uint64_t)INT64_MAX) {
            return -1;
        }
        *sum = (int64_t)(big - down);
        return 0;
    }
}

/* ---- the functions ---- */

static void word_count(void *user_data, const uint8_t *args, size_t args_len,
                       const uint8_t *kwargs, size_t kwargs_len, dask_task_output *output) {
    static const char *const names[] = {"text"};
    call c;
    const char *text;
    size_t len, i;
    int64_t words = 0;
    int in_word = 0;
    (void)user_data;
    if (bind(&c, "c.word_count", names, 1, 1, args, args_len, kwargs, kwargs_len, output) != 0) {
        return;
    }
    if (dask_value_as_string(c.bound[0], &text, &len, NULL) != DASK_OK) {
        dask_task_output_set_error(output, "TypeError", "c.word_count() needs a string", NULL);
        call_free(&c);
        return;
    }
    for (i = 0; i < len; i++) {
        int space = text[i] == ' ' || text[i] == '\n' || text[i] == '\t' || text[i] == '\r';
        if (!space && !in_word) {
            words++;
        }
        in_word = !space;
    }
    dask_task_output_set_int(output, words, NULL);
    call_free(&c);
}

static void fib(void *user_data, const uint8_t *args, size_t args_len, const uint8_t *kwargs,
                size_t kwargs_len, dask_task_output *output) {
    static const char *const names[] = {"n"};
    call c;
    int64_t n, i, a = 0, b = 1;
    (void)user_data;
    if (bind(&c, "c.fib", names, 1, 1, args, args_len, kwargs, kwargs_len, output) != 0) {
        return;
    }
    if (dask_value_as_int(c.bound[0], &n, NULL) != DASK_OK || n < 0) {
        dask_task_output_set_error(output, "ValueError", "c.fib() needs a non-negative integer",
                                   NULL);
    } else if (n > 92) {
        dask_task_output_set_error(output, "OverflowError", "c.fib(n) for n > 92 overflows int64",
                                   NULL);
    } else {
        for (i = 0; i < n; i++) {
            int64_t next = a + b;
            a = b;
            b = next;
        }
        dask_task_output_set_int(output, a, NULL);
    }
    call_free(&c);
}

static void conformance_echo(void *user_data, const uint8_t *args, size_t args_len,
                             const uint8_t *kwargs, size_t kwargs_len, dask_task_output *output) {
    static const char *const names[] = {"x"};
    call c;
    (void)user_data;
    if (bind(&c, "conformance.echo", names, 1, 1, args, args_len, kwargs, kwargs_len, output) !=
        0) {
        return;
    }
    dask_task_output_set_value(output, c.bound[0], NULL);
    call_free(&c);
}

static void conformance_add(void *user_data, const uint8_t *args, size_t args_len,
                            const uint8_t *kwargs, size_t kwargs_len, dask_task_output *output) {
    static const char *const names[] = {"a", "b"};
    call c;
    char message[160];
    (void)user_data;
    if (bind(&c, "conformance.add", names, 2, 2, args, args_len, kwargs, kwargs_len, output) !=
        0) {
        return;
    }
    if (!is_number(c.bound[0]) || !is_number(c.bound[1])) {
        snprintf(message, sizeof message, "conformance.add() needs numbers, got %s and %s",
                 type_name(c.bound[0]), type_name(c.bound[1]));
        dask_task_output_set_error(output, "TypeError", message, NULL);
    } else if (dask_value_type(c.bound[0]) == DASK_TYPE_INT &&
               dask_value_type(c.bound[1]) == DASK_TYPE_INT) {
        int64_t sum;
        if (add_ints(c.bound[0], c.bound[1], &sum) == 0) {
            dask_task_output_set_int(output, sum, NULL);
        } else {
            dask_task_output_set_error(output, "OverflowError",
                                       "conformance.add(): integer result is outside the 64-bit range",
                                       NULL);
        }
    } else {
        double a = 0, b = 0;
        dask_value_as_double(c.bound[0], &a, NULL);
        dask_value_as_double(c.bound[1], &b, NULL);
        dask_task_output_set_double(output, a + b, NULL);
    }
    call_free(&c);
}

static void conformance_fail(void *user_data, const uint8_t *args, size_t args_len,
                             const uint8_t *kwargs, size_t kwargs_len, dask_task_output *output) {
    static const char *const names[] = {"message"};
    call c;
    const char *message = NULL;
    char text[64];
    (void)user_data;
    if (bind(&c, "conformance.fail", names, 1, 1, args, args_len, kwargs, kwargs_len, output) !=
        0) {
        return;
    }
    if (dask_value_as_string(c.bound[0], &message, NULL, NULL) != DASK_OK) {
        int64_t i;
        double d;
        if (dask_value_as_int(c.bound[0], &i, NULL) == DASK_OK) {
            snprintf(text, sizeof text, "%lld", (long long)i);
        } else if (dask_value_as_double(c.bound[0], &d, NULL) == DASK_OK) {
            snprintf(text, sizeof text, "%g", d);
        } else {
            snprintf(text, sizeof text, "<%s>", type_name(c.bound[0]));
        }
        message = text;
    }
    dask_task_output_set_error(output, "ConformanceError", message, NULL);
    call_free(&c);
}

static void conformance_sleep(void *user_data, const uint8_t *args, size_t args_len,
                              const uint8_t *kwargs, size_t kwargs_len, dask_task_output *output) {
    static const char *const names[] = {"ms", "value"};
    call c;
    double ms = 0;
    (void)user_data;
    if (bind(&c, "conformance.sleep", names, 2, 1, args, args_len, kwargs, kwargs_len, output) !=
        0) {
        return;
    }
    if (!is_number(c.bound[0])) {
        char message[128];
        snprintf(message, sizeof message, "conformance.sleep() needs numbers, got %s",
                 type_name(c.bound[0]));
        dask_task_output_set_error(output, "TypeError", message, NULL);
    } else if (dask_value_as_double(c.bound[0], &ms, NULL) != DASK_OK || !(ms >= 0) ||
               ms > 1e12) {
        dask_task_output_set_error(output, "ValueError",
                                   "conformance.sleep() needs a non-negative duration", NULL);
    } else {
        struct timespec left;
        left.tv_sec = (time_t)(ms / 1000);
        left.tv_nsec = (long)((ms - (double)left.tv_sec * 1000) * 1e6);
        while (nanosleep(&left, &left) != 0 && errno == EINTR) {
        }
        if (c.bound[1] != NULL) {
            dask_task_output_set_value(output, c.bound[1], NULL);
        }
    }
    call_free(&c);
}

static void conformance_bytes(void *user_data, const uint8_t *args, size_t args_len,
                              const uint8_t *kwargs, size_t kwargs_len, dask_task_output *output) {
    static const char *const names[] = {"n"};
    const uint64_t limit = 256u * 1024u * 1024u; /* one frame */
    call c;
    int64_t n = 0;
    (void)user_data;
    if (bind(&c, "conformance.bytes", names, 1, 1, args, args_len, kwargs, kwargs_len, output) !=
        0) {
        return;
    }
    if (dask_value_type(c.bound[0]) != DASK_TYPE_INT) {
        dask_task_output_set_error(output, "TypeError", "conformance.bytes() needs an integer",
                                   NULL);
    } else if (dask_value_as_int(c.bound[0], &n, NULL) != DASK_OK || (uint64_t)n > limit) {
        dask_task_output_set_error(output, n < 0 ? "ValueError" : "ValueTooLarge",
                                   n < 0 ? "conformance.bytes() needs a non-negative count"
                                         : "conformance.bytes() would not fit in one frame",
                                   NULL);
    } else {
        uint8_t *data = malloc(n > 0 ? (size_t)n : 1u);
        int64_t i;
        if (data == NULL) {
            dask_task_output_set_error(output, "MemoryError", "out of memory", NULL);
        } else {
            for (i = 0; i < n; i++) {
                data[i] = (uint8_t)(i % 251);
            }
            dask_task_output_set_bytes(output, data, (size_t)n, NULL);
            free(data);
        }
    }
    call_free(&c);
}

/* ---- the program ---- */

static dask_worker *running;

/* Waits for SIGINT or SIGTERM and stops the worker; SIGUSR1 only ends
 * this thread (sent by main once the worker ended by itself). */
static void *signal_thread(void *set) {
    int sig = 0;
    if (sigwait((sigset_t *)set, &sig) == 0 && sig != SIGUSR1) {
        dask_error *err = NULL;
        if (dask_worker_stop(running, &err) != DASK_OK) {
            fprintf(stderr, "worker: %s\n", dask_error_message(err));
        }
        dask_error_free(err);
    }
    return NULL;
}

static int register_all(dask_functions *functions) {
    static const struct {
        const char *name;
        dask_function function;
    } table[] = {
        {"c.word_count", word_count},
        {"c.fib", fib},
        {"conformance.echo", conformance_echo},
        {"conformance.add", conformance_add},
        {"conformance.fail", conformance_fail},
        {"conformance.sleep", conformance_sleep},
        {"conformance.bytes", conformance_bytes},
    };
    size_t i;
    for (i = 0; i < sizeof table / sizeof table[0]; i++) {
        dask_error *err = NULL;
        if (dask_functions_register(functions, table[i].name, table[i].function, NULL, NULL,
                                    &err) != DASK_OK) {
            fprintf(stderr, "worker: %s\n", dask_error_message(err));
            dask_error_free(err);
            return -1;
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    dask_functions *functions;
    dask_security security = {0};
    dask_error *err = NULL;
    sigset_t signals;
    pthread_t waiter;
    size_t nthreads = 1;
    int status = 0;

    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: %s tcp://HOST:PORT|tls://HOST:PORT [NTHREADS [NAME]]\n", argv[0]);
        return 2;
    }
    if (argc >= 3) {
        nthreads = (size_t)strtoul(argv[2], NULL, 10);
    }

    /* Block the stop signals before any thread starts, so that every
     * thread (the library's too) inherits the mask and only sigwait sees them. */
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);

    functions = dask_functions_new();
    if (register_all(functions) != 0) {
        dask_functions_free(functions);
        return 1;
    }
    /* Credentials as every dask-rs program finds them; TLS files (for a
     * tls:// scheduler; the data address is then tls:// too) from this
     * example's own environment variables. */
    security.tls_ca_file = getenv("DASK_TLS_CA_FILE");
    security.tls_cert_file = getenv("DASK_TLS_CERT");
    if (dask_worker_start_secure(argv[1], nthreads, argc == 4 ? argv[3] : NULL, functions,
                                 &security, &running, &err) != DASK_OK) {
        fprintf(stderr, "worker: %s\n", dask_error_message(err));
        dask_error_free(err);
        dask_functions_free(functions);
        return 1;
    }
    dask_functions_free(functions); /* the worker keeps its own copy */
    printf("worker %s serving at %s\n", dask_worker_name(running), dask_worker_address(running));
    fflush(stdout);

    pthread_create(&waiter, NULL, signal_thread, &signals);
    if (dask_worker_run(running, &err) != DASK_OK) {
        fprintf(stderr, "worker: %s\n", dask_error_message(err));
        dask_error_free(err);
        status = 1;
    }
    pthread_kill(waiter, SIGUSR1);
    pthread_join(waiter, NULL);
    dask_worker_free(running);
    return status;
}
