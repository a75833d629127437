/*
 * Tests every public function of libdask from C, good input and bad:
 * NULL pointers, invalid msgpack, an unreachable address, a closed client,
 * a C function that reports an error. Each failure must give its code and
 * a clear message; nothing may crash. Run under ASan+UBSan and valgrind by
 * scripts/ci/c-sdk.sh.
 *
 * Usage: test_api   (starts its own embedded clusters on 127.0.0.1)
 * Prints one line per failed check and ends with "N passed, M failed".
 */
#define _POSIX_C_SOURCE 200809L

#include <libdask.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"

/* A call that must succeed and leave *err NULL. */
#define CHECK_OK(call)                                                                    \
    do {                                                                                  \
        dask_error *err_ = NULL;                                                          \
        dask_result r_ = (call);                                                          \
        if (r_ == DASK_OK && err_ == NULL) {                                              \
            passed++;                                                                     \
        } else {                                                                          \
            failed++;                                                                     \
            fprintf(stderr, "%s:%d: %s gave %s: %s\n", __FILE__, __LINE__, #call,         \
                    dask_result_name(r_), dask_error_message(err_));                      \
        }                                                                                 \
        dask_error_free(err_);                                                            \
    } while (0)

/* A call that must fail with `code` and a message containing `needle`
 * (the call must pass &err_ as its error parameter). */
#define CHECK_FAIL(code, needle, call)                                                    \
    do {                                                                                  \
        dask_error *err_ = NULL;                                                          \
        dask_result r_ = (call);                                                          \
        check_failure(__FILE__, __LINE__, #call, r_, err_, (code), (needle));             \
        dask_error_free(err_);                                                            \
    } while (0)

static void check_failure(const char *file, int line, const char *text, dask_result got,
                          const dask_error *err, dask_result want, const char *needle) {
    const char *message = dask_error_message(err);
    if (got == want && err != NULL && dask_error_code(err) == want &&
        strstr(message, needle) != NULL) {
        passed++;
    } else {
        failed++;
        fprintf(stderr, "%s:%d: %s gave %s (%s), wanted %s with \"%s\"\n", file, line, text,
                dask_result_name(got), message, dask_result_name(want), needle);
    }
}

static dask_value *ints(int64_t a, int64_t b) {
    dask_value *args = dask_value_new_array();
    dask_value_array_push_int(args, a, NULL);
    dask_value_array_push_int(args, b, NULL);
    return args;
}

static dask_value *one_int(int64_t a) {
    dask_value *args = dask_value_new_array();
    dask_value_array_push_int(args, a, NULL);
    return args;
}

static int64_t int_result(dask_future *f) {
    dask_value *v = NULL;
    int64_t n = -999;
    CHECK_OK(dask_future_result(f, WAIT_MS, &v, &err_));
    CHECK_OK(dask_value_as_int(v, &n, &err_));
    dask_value_free(v);
    return n;
}

/* ---- errors and versions ---- */

static void test_errors_and_version(void) {
    char version[32];
    dask_value *v = NULL;
    dask_error *err = (dask_error *)&err; /* garbage: must be overwritten */
    snprintf(version, sizeof version, "%d.%d.%d", DASK_VERSION_MAJOR, DASK_VERSION_MINOR,
             DASK_VERSION_PATCH);
    CHECK(strcmp(dask_version(), version) == 0);

    CHECK(strcmp(dask_result_name(DASK_OK), "DASK_OK") == 0);
    CHECK(strcmp(dask_result_name(DASK_TIMEOUT), "DASK_TIMEOUT") == 0);
    CHECK(strcmp(dask_result_name(DASK_PANIC), "DASK_PANIC") == 0);
    CHECK(strcmp(dask_result_name(9999), "DASK_UNKNOWN_RESULT") == 0);

    CHECK(strcmp(dask_error_message(NULL), "") == 0);
    CHECK(dask_error_code(NULL) == DASK_OK);
    CHECK(dask_error_remote_type(NULL) == NULL);
    CHECK(dask_error_remote_message(NULL) == NULL);
    dask_error_free(NULL);

    /* *err is written on success (NULL) and on failure (a new error). */
    CHECK(dask_value_new_string("x", &v, &err) == DASK_OK);
    CHECK(err == NULL);
    dask_value_free(v);
    CHECK(dask_value_new_string(NULL, &v, &err) == DASK_NULL_PARAMETER);
    CHECK(err != NULL && v == NULL);
    CHECK(strstr(dask_error_message(err), "dask_value_new_string") != NULL);
    CHECK(strstr(dask_error_message(err), "`text` is NULL") != NULL);
    CHECK(dask_error_remote_type(err) == NULL);
    dask_error_free(err);
    /* err itself may be NULL. */
    CHECK(dask_value_new_string(NULL, &v, NULL) == DASK_NULL_PARAMETER);
}

/* ---- values ---- */

static void test_scalars(void) {
    dask_value *v;
    bool b = false;
    int64_t i = 0;
    uint64_t u = 0;
    double d = 0;
    const char *s = NULL;
    size_t len = 0;
    const uint8_t *data = NULL;
    static const uint8_t raw[3] = {1, 0, 2};

    v = dask_value_new_null();
    CHECK(dask_value_type(v) == DASK_TYPE_NULL);
    CHECK_FAIL(DASK_WRONG_TYPE, "expected an integer, got null", dask_value_as_int(v, &i, &err_));
    dask_value_free(v);

    v = dask_value_new_bool(true);
    CHECK(dask_value_type(v) == DASK_TYPE_BOOL);
    CHECK_OK(dask_value_as_bool(v, &b, &err_));
    CHECK(b);
    CHECK_FAIL(DASK_WRONG_TYPE, "expected a number, got a bool", dask_value_as_double(v, &d, &err_));
    dask_value_free(v);

    v = dask_value_new_int(-42);
    CHECK(dask_value_type(v) == DASK_TYPE_INT);
    CHECK_OK(dask_value_as_int(v, &i, &err_));
    CHECK(i == -42);
    CHECK_OK(dask_value_as_double(v, &d, &err_));
    CHECK(d == -42.0);
    CHECK_FAIL(DASK_OUT_OF_RANGE, "negative", dask_value_as_uint(v, &u, &err_));
    CHECK_FAIL(DASK_WRONG_TYPE, "expected a bool", dask_value_as_bool(v, &b, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`out` is NULL", dask_value_as_int(v, NULL, &err_));
    dask_value_free(v);

    v = dask_value_new_uint(UINT64_MAX);
    CHECK(dask_value_type(v) == DASK_TYPE_INT);
    CHECK_OK(dask_value_as_uint(v, &u, &err_));
    CHECK(u == UINT64_MAX);
    CHECK_FAIL(DASK_OUT_OF_RANGE, "does not fit in int64_t", dask_value_as_int(v, &i, &err_));
    dask_value_free(v);
    v = dask_value_new_uint(7);
    CHECK_OK(dask_value_as_int(v, &i, &err_));
    CHECK(i == 7);
    dask_value_free(v);

    v = dask_value_new_double(2.5);
    CHECK(dask_value_type(v) == DASK_TYPE_FLOAT);
    CHECK_OK(dask_value_as_double(v, &d, &err_));
    CHECK(d == 2.5);
    CHECK_FAIL(DASK_WRONG_TYPE, "expected an integer, got a float", dask_value_as_int(v, &i, &err_));
    dask_value_free(v);

    CHECK_OK(dask_value_new_string("héllo", &v, &err_));
    CHECK(dask_value_type(v) == DASK_TYPE_STRING);
    CHECK(dask_value_len(v) == 6);
    CHECK_OK(dask_value_as_string(v, &s, &len, &err_));
    CHECK(strcmp(s, "héllo") == 0 && len == 6);
    CHECK_OK(dask_value_as_string(v, &s, NULL, &err_)); /* len is optional */
    CHECK_FAIL(DASK_WRONG_TYPE, "expected bytes, got a string",
               dask_value_as_bytes(v, &data, &len, &err_));
    dask_value_free(v);
    CHECK_FAIL(DASK_INVALID_ARGUMENT, "not valid UTF-8", dask_value_new_string("\xff", &v, &err_));
    CHECK(v == NULL);

    CHECK_OK(dask_value_new_bytes(raw, sizeof raw, &v, &err_));
    CHECK(dask_value_type(v) == DASK_TYPE_BYTES);
    CHECK_OK(dask_value_as_bytes(v, &data, &len, &err_));
    CHECK(len == 3 && memcmp(data, raw, 3) == 0);
    CHECK_FAIL(DASK_WRONG_TYPE, "expected a string, got bytes",
               dask_value_as_string(v, &s, &len, &err_));
    CHECK(s == NULL);
    CHECK_FAIL(DASK_NULL_PARAMETER, "`len` is NULL", dask_value_as_bytes(v, &data, NULL, &err_));
    dask_value_free(v);
    CHECK_OK(dask_value_new_bytes(NULL, 0, &v, &err_)); /* (NULL, 0) is empty */
    CHECK_OK(dask_value_as_bytes(v, &data, &len, &err_));
    CHECK(len == 0);
    dask_value_free(v);
    CHECK_FAIL(DASK_NULL_PARAMETER, "`data` is NULL", dask_value_new_bytes(NULL, 5, &v, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`out` is NULL", dask_value_new_bytes(raw, 3, NULL, &err_));

    /* Every reader refuses NULL. */
    CHECK(dask_value_type(NULL) == DASK_TYPE_INVALID);
    CHECK(dask_value_len(NULL) == 0);
    CHECK(dask_value_clone(NULL) == NULL);
    dask_value_free(NULL);
    CHECK_FAIL(DASK_NULL_PARAMETER, "`value` is NULL", dask_value_as_bool(NULL, &b, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`value` is NULL", dask_value_as_int(NULL, &i, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`value` is NULL", dask_value_as_uint(NULL, &u, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`value` is NULL", dask_value_as_double(NULL, &d, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`value` is NULL", dask_value_as_string(NULL, &s, &len, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`value` is NULL",
               dask_value_as_bytes(NULL, &data, &len, &err_));
}

static void test_containers(void) {
    dask_value *a = dask_value_new_array();
    dask_value *m = dask_value_new_map();
    dask_value *copy, *deep, *leaf;
    const dask_value *item = NULL, *key = NULL, *val = NULL;
    const char *s;
    int64_t i;
    double d;
    int level;

    CHECK(dask_value_type(a) == DASK_TYPE_ARRAY && dask_value_len(a) == 0);
    CHECK_OK(dask_value_array_push(a, dask_value_new_null(), &err_));
    CHECK_OK(dask_value_array_push_int(a, 5, &err_));
    CHECK_OK(dask_value_array_push_double(a, 1.5, &err_));
    CHECK_OK(dask_value_array_push_string(a, "s", &err_));
    CHECK(dask_value_len(a) == 4);
    CHECK_OK(dask_value_array_get(a, 1, &item, &err_));
    CHECK_OK(dask_value_as_int(item, &i, &err_));
    CHECK(i == 5);
    CHECK_OK(dask_value_array_get(a, 2, &item, &err_));
    CHECK_OK(dask_value_as_double(item, &d, &err_));
    CHECK(d == 1.5);
    CHECK_OK(dask_value_array_get(a, 3, &item, &err_));
    CHECK_OK(dask_value_as_string(item, &s, NULL, &err_));
    CHECK(strcmp(s, "s") == 0);
    CHECK_FAIL(DASK_OUT_OF_RANGE, "index 4 is past the end of an array of 4",
               dask_value_array_get(a, 4, &item, &err_));
    CHECK(item == NULL);
    CHECK_FAIL(DASK_WRONG_TYPE, "expected an array, got a map", dask_value_array_get(m, 0, &item, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`array` is NULL", dask_value_array_get(NULL, 0, &item, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`out` is NULL", dask_value_array_get(a, 0, NULL, &err_));
    /* push consumes the item even when it fails: no leak here. */
    CHECK_FAIL(DASK_WRONG_TYPE, "expected an array", dask_value_array_push(m, dask_value_new_int(1), &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`array` is NULL", dask_value_array_push(NULL, dask_value_new_int(1), &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`item` is NULL", dask_value_array_push(a, NULL, &err_));
    CHECK_FAIL(DASK_WRONG_TYPE, "expected an array", dask_value_array_push_int(m, 1, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`array` is NULL", dask_value_array_push_double(NULL, 1, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`item` is NULL", dask_value_array_push_string(a, NULL, &err_));
    CHECK_FAIL(DASK_INVALID_ARGUMENT, "not valid UTF-8", dask_value_array_push_string(a, "\xc3", &err_));
    CHECK(dask_value_len(a) == 4);

    CHECK_OK(dask_value_map_set(m, "x", dask_value_new_int(1), &err_));
    CHECK_OK(dask_value_map_set(m, "y", dask_value_clone(a), &err_));
    CHECK_OK(dask_value_map_set(m, "x", dask_value_new_int(2), &err_)); /* replaces */
    CHECK(dask_value_len(m) == 2);
    CHECK_OK(dask_value_map_get(m, "x", &val, &err_));
    CHECK_OK(dask_value_as_int(val, &i, &err_));
    CHECK(i == 2);
    CHECK_FAIL(DASK_NOT_FOUND, "no key \"z\" in the map", dask_value_map_get(m, "z", &val, &err_));
    CHECK(val == NULL);
    CHECK_OK(dask_value_map_entry(m, 1, &key, &val, &err_));
    CHECK_OK(dask_value_as_string(key, &s, NULL, &err_));
    CHECK(strcmp(s, "y") == 0 && dask_value_len(val) == 4);
    CHECK_FAIL(DASK_OUT_OF_RANGE, "past the end of a map of 2", dask_value_map_entry(m, 2, &key, &val, &err_));
    CHECK_FAIL(DASK_WRONG_TYPE, "expected a map, got an array", dask_value_map_entry(a, 0, &key, &val, &err_));
    CHECK_FAIL(DASK_WRONG_TYPE, "expected a map", dask_value_map_get(a, "x", &val, &err_));
    CHECK_FAIL(DASK_WRONG_TYPE, "expected a map", dask_value_map_set(a, "k", dask_value_new_null(), &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`key` is NULL", dask_value_map_set(m, NULL, dask_value_new_null(), &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`value` is NULL", dask_value_map_set(m, "k", NULL, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`map` is NULL", dask_value_map_get(NULL, "x", &val, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`key` is NULL", dask_value_map_entry(m, 0, NULL, &val, &err_));

    copy = dask_value_clone(m);
    CHECK(copy != NULL && dask_value_len(copy) == 2);
    dask_value_free(copy);

    /* At most 100 containers deep (the dask/1 limit). */
    deep = dask_value_new_array();
    for (level = 1; level < 100; level++) {
        dask_value *outer = dask_value_new_array();
        CHECK(dask_value_array_push(outer, deep, NULL) == DASK_OK);
        deep = outer;
    }
    leaf = dask_value_new_array();
    CHECK_FAIL(DASK_OUT_OF_RANGE, "at most 100 containers deep", dask_value_array_push(leaf, deep, &err_));
    dask_value_free(leaf);

    dask_value_free(a);
    dask_value_free(m);
}

static void test_msgpack(void) {
    /* [1, "a", {"k": nil}, b"\x01", 2.5] */
    static const uint8_t good[] = {0x95, 0x01, 0xa1, 'a', 0x81, 0xa1, 'k', 0xc0,
                                   0xc4, 0x01, 0x01, 0xcb, 0x40, 0x04, 0, 0, 0, 0, 0, 0};
    static const uint8_t truncated[] = {0x92, 0x01};
    static const uint8_t trailing[] = {0x01, 0x02};
    static const uint8_t reserved[] = {0xc1};
    static const uint8_t bad_utf8[] = {0xa1, 0xff};
    static const uint8_t ext[] = {0xd4, 0x05, 0x07};
    uint8_t too_deep[120];
    dask_value *v = NULL;
    dask_bytes *bytes = NULL;
    const dask_value *item;
    size_t i;

    CHECK_OK(dask_value_from_msgpack(good, sizeof good, &v, &err_));
    CHECK(dask_value_type(v) == DASK_TYPE_ARRAY && dask_value_len(v) == 5);
    CHECK_OK(dask_value_array_get(v, 2, &item, &err_));
    CHECK(dask_value_type(item) == DASK_TYPE_MAP);
    CHECK_OK(dask_value_to_msgpack(v, &bytes, &err_));
    CHECK(dask_bytes_len(bytes) == sizeof good && memcmp(dask_bytes_data(bytes), good, sizeof good) == 0);
    dask_bytes_free(bytes);
    dask_value_free(v);

    CHECK_OK(dask_value_from_msgpack(ext, sizeof ext, &v, &err_));
    CHECK(dask_value_type(v) == DASK_TYPE_EXT);
    dask_value_free(v);

    CHECK_FAIL(DASK_INVALID_MSGPACK, "not one valid msgpack value",
               dask_value_from_msgpack(truncated, sizeof truncated, &v, &err_));
    CHECK(v == NULL);
    CHECK_FAIL(DASK_INVALID_MSGPACK, "after the end", dask_value_from_msgpack(trailing, sizeof trailing, &v, &err_));
    CHECK_FAIL(DASK_INVALID_MSGPACK, "0xc1", dask_value_from_msgpack(reserved, sizeof reserved, &v, &err_));
    CHECK_FAIL(DASK_INVALID_MSGPACK, "UTF-8", dask_value_from_msgpack(bad_utf8, sizeof bad_utf8, &v, &err_));
    CHECK_FAIL(DASK_INVALID_MSGPACK, "not one valid msgpack value", dask_value_from_msgpack(NULL, 0, &v, &err_));
    for (i = 0; i < sizeof too_deep; i++) {
        too_deep[i] = 0x91; /* [[[[...]]]] */
    }
    too_deep[sizeof too_deep - 1] = 0x90;
    CHECK_FAIL(DASK_INVALID_MSGPACK, "nested deeper than 100", dask_value_from_msgpack(too_deep, sizeof too_deep, &v, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`data` is NULL", dask_value_from_msgpack(NULL, 3, &v, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`out` is NULL", dask_value_from_msgpack(good, sizeof good, NULL, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`value` is NULL", dask_value_to_msgpack(NULL, &bytes, &err_));
    CHECK(bytes == NULL);

    CHECK(dask_bytes_data(NULL) == NULL);
    CHECK(dask_bytes_len(NULL) == 0);
    dask_bytes_free(NULL);
}

/* ---- C functions for the workers ---- */

static int user_data_freed;
static pthread_mutex_t freed_lock = PTHREAD_MUTEX_INITIALIZER;

static void count_free(void *user_data) {
    (void)user_data;
    pthread_mutex_lock(&freed_lock);
    user_data_freed++;
    pthread_mutex_unlock(&freed_lock);
}

static int freed_count(void) {
    int n;
    pthread_mutex_lock(&freed_lock);
    n = user_data_freed;
    pthread_mutex_unlock(&freed_lock);
    return n;
}

/* c.scale(x): x * (the int64 user_data points to). */
static void scale(void *user_data, const uint8_t *args, size_t args_len, const uint8_t *kwargs,
                  size_t kwargs_len, dask_task_output *output) {
    int64_t n = 0;
    (void)kwargs;
    (void)kwargs_len;
    if (int_arg(args, args_len, &n)) {
        dask_task_output_set_int(output, n * *(const int64_t *)user_data, NULL);
    } else {
        dask_task_output_set_error(output, "TypeError", "c.scale(x) needs an integer", NULL);
    }
}

/* c.fail(): reports an error. */
static void fail(void *user_data, const uint8_t *args, size_t args_len, const uint8_t *kwargs,
                 size_t kwargs_len, dask_task_output *output) {
    (void)user_data;
    (void)args;
    (void)args_len;
    (void)kwargs;
    (void)kwargs_len;
    dask_task_output_set_error(output, "ValueError", "c.fail always fails", NULL);
}

/* c.outputs(kind): every setter, and their bad inputs. */
static void outputs(void *user_data, const uint8_t *args, size_t args_len, const uint8_t *kwargs,
                    size_t kwargs_len, dask_task_output *output) {
    static const uint8_t bad[] = {0xc1};
    static const uint8_t array12[] = {0x92, 0x01, 0x02};
    dask_value *v = NULL, *kw = NULL;
    const dask_value *kind_value = NULL, *flag = NULL;
    const char *kind = "";
    int ok = 1;
    (void)user_data;
    dask_value_from_msgpack(args, args_len, &v, NULL);
    dask_value_from_msgpack(kwargs, kwargs_len, &kw, NULL);
    dask_value_array_get(v, 0, &kind_value, NULL);
    dask_value_as_string(kind_value, &kind, NULL, NULL);
    /* Bad input to every setter fails cleanly and changes nothing. */
    ok &= dask_task_output_set_int(NULL, 1, NULL) == DASK_NULL_PARAMETER;
    ok &= dask_task_output_set_double(NULL, 1, NULL) == DASK_NULL_PARAMETER;
    ok &= dask_task_output_set_string(output, NULL, NULL) == DASK_NULL_PARAMETER;
    ok &= dask_task_output_set_string(output, "\xff", NULL) == DASK_INVALID_ARGUMENT;
    ok &= dask_task_output_set_bytes(output, NULL, 4, NULL) == DASK_NULL_PARAMETER;
    ok &= dask_task_output_set_value(output, NULL, NULL) == DASK_NULL_PARAMETER;
    ok &= dask_task_output_set_msgpack(output, bad, sizeof bad, NULL) == DASK_INVALID_MSGPACK;
    ok &= dask_task_output_set_error(NULL, "T", "m", NULL) == DASK_NULL_PARAMETER;
    if (!ok) {
        dask_task_output_set_error(output, "TestError", "a setter accepted bad input", NULL);
    } else if (strcmp(kind, "int") == 0) {
        dask_task_output_set_int(output, 7, NULL);
    } else if (strcmp(kind, "double") == 0) {
        dask_task_output_set_double(output, 0.25, NULL);
    } else if (strcmp(kind, "string") == 0) {
        dask_task_output_set_string(output, "text", NULL);
    } else if (strcmp(kind, "bytes") == 0) {
        dask_task_output_set_bytes(output, (const uint8_t *)"ab", 2, NULL);
    } else if (strcmp(kind, "msgpack") == 0) {
        dask_task_output_set_msgpack(output, array12, sizeof array12, NULL);
    } else if (strcmp(kind, "value") == 0 && dask_value_map_get(kw, "flag", &flag, NULL) == DASK_OK) {
        dask_task_output_set_value(output, flag, NULL);
    } else if (strcmp(kind, "error") == 0) {
        dask_task_output_set_error(output, NULL, NULL, NULL);
    }
    /* "nothing": no setter called gives null. */
    dask_value_free(v);
    dask_value_free(kw);
}

static const int64_t factor = 3;

static dask_functions *test_functions(void) {
    dask_functions *f = dask_functions_new_builtins();
    CHECK_OK(dask_functions_register(f, "c.scale", scale, (void *)&factor, count_free, &err_));
    CHECK_OK(dask_functions_register(f, "c.fail", fail, NULL, NULL, &err_));
    CHECK_OK(dask_functions_register(f, "c.outputs", outputs, NULL, NULL, &err_));
    return f;
}

static void test_functions_registry(void) {
    dask_functions *f = dask_functions_new();
    dask_functions *b = dask_functions_new_builtins();
    int before = freed_count();
    CHECK(dask_functions_len(f) == 0);
    CHECK(dask_functions_len(b) > 20);
    CHECK(dask_functions_contains(b, "add"));
    CHECK(dask_functions_contains(b, "conformance.echo"));
    CHECK(!dask_functions_contains(b, "c.scale"));
    CHECK(!dask_functions_contains(NULL, "add"));
    CHECK(!dask_functions_contains(b, NULL));
    CHECK(dask_functions_len(NULL) == 0);
    CHECK_OK(dask_functions_register(f, "c.scale", scale, (void *)&factor, count_free, &err_));
    CHECK(dask_functions_contains(f, "c.scale") && dask_functions_len(f) == 1);
    /* Replacing frees the old user data; failures free the given one. */
    CHECK_OK(dask_functions_register(f, "c.scale", scale, (void *)&factor, count_free, &err_));
    CHECK(freed_count() == before + 1);
    CHECK_FAIL(DASK_NULL_PARAMETER, "`function` is NULL",
               dask_functions_register(f, "c.x", NULL, (void *)&factor, count_free, &err_));
    CHECK(freed_count() == before + 2);
    CHECK_FAIL(DASK_NULL_PARAMETER, "`functions` is NULL",
               dask_functions_register(NULL, "c.x", scale, (void *)&factor, count_free, &err_));
    CHECK(freed_count() == before + 3);
    CHECK_FAIL(DASK_NULL_PARAMETER, "`name` is NULL", dask_functions_register(f, NULL, scale, NULL, NULL, &err_));
    CHECK_FAIL(DASK_INVALID_ARGUMENT, "`name` is empty", dask_functions_register(f, "", scale, NULL, NULL, &err_));
    dask_functions_free(f);
    CHECK(freed_count() == before + 4);
    dask_functions_free(b);
    dask_functions_free(NULL);
}

/* ---- clients ---- */

/* A loopback port nobody listens on (bound, then closed). */
static int closed_port(void) {
    struct sockaddr_in addr;
    socklen_t len = sizeof addr;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int port = 1;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0 &&
        getsockname(fd, (struct sockaddr *)&addr, &len) == 0) {
        port = ntohs(addr.sin_port);
    }
    if (fd >= 0) {
        close(fd);
    }
    return port;
}

static void test_connect_failures(void) {
    char address[64];
    dask_client *c = (dask_client *)&c; /* garbage: must become NULL */
    snprintf(address, sizeof address, "tcp://127.0.0.1:%d", closed_port());
    CHECK_FAIL(DASK_CONNECTION, "cannot connect to tcp://127.0.0.1:", dask_client_connect(address, 5000, &c, &err_));
    CHECK(c == NULL);
    CHECK_FAIL(DASK_CONNECTION, "Connection refused", dask_client_connect(address, DASK_NO_TIMEOUT, &c, &err_));
    CHECK_FAIL(DASK_CONNECTION, "cannot connect", dask_client_connect(address, 0, &c, &err_));
    CHECK_FAIL(DASK_INVALID_ARGUMENT, "bad address \"nonsense\"", dask_client_connect("nonsense", 1000, &c, &err_));
    CHECK_FAIL(DASK_INVALID_ARGUMENT, "unsupported scheme", dask_client_connect("http://127.0.0.1:1", 1000, &c, &err_));
    CHECK_FAIL(DASK_INVALID_ARGUMENT, "UTF-8", dask_client_connect("tcp://\xff", 1000, &c, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`address` is NULL", dask_client_connect(NULL, 1000, &c, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`out` is NULL", dask_client_connect(address, 1000, NULL, &err_));

    CHECK(strcmp(dask_client_address(NULL), "") == 0);
    CHECK(!dask_client_is_connected(NULL));
    dask_client_free(NULL);
}

static void test_submit_and_futures(dask_client *c) {
    static const uint8_t args_msgpack[] = {0x92, 0x05, 0x06}; /* [5, 6] */
    static const uint8_t not_array[] = {0x05};
    static const uint8_t bad[] = {0x92, 0x05};
    dask_value *args, *v = NULL, *plain;
    dask_future *f = NULL, *g = NULL, *h = NULL, *copy;
    dask_bytes *bytes = NULL;
    size_t workers = 0;

    CHECK(dask_client_is_connected(c));
    CHECK(strncmp(dask_client_address(c), "tcp://127.0.0.1:", 16) == 0);
    CHECK_OK(dask_client_worker_count(c, &workers, &err_));
    CHECK(workers == 1);
    CHECK_FAIL(DASK_NULL_PARAMETER, "`client` is NULL", dask_client_worker_count(NULL, &workers, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`out` is NULL", dask_client_worker_count(c, NULL, &err_));

    /* submit, result, key, status, clone */
    args = ints(40, 2);
    CHECK_OK(dask_client_submit(c, "add", args, &f, &err_));
    CHECK(strncmp(dask_future_key(f), "add-", 4) == 0);
    CHECK(int_result(f) == 42);
    CHECK(dask_future_status(f) == DASK_STATUS_FINISHED);
    CHECK_OK(dask_future_wait(f, 0, &err_));
    CHECK_OK(dask_future_wait(f, DASK_NO_TIMEOUT, &err_));
    copy = dask_future_clone(f);
    CHECK(copy != NULL && strcmp(dask_future_key(copy), dask_future_key(f)) == 0);
    CHECK_OK(dask_future_result_msgpack(copy, WAIT_MS, &bytes, &err_));
    CHECK(dask_bytes_len(bytes) == 1 && dask_bytes_data(bytes)[0] == 42);
    dask_bytes_free(bytes);
    CHECK_OK(dask_future_result_msgpack(copy, DASK_NO_TIMEOUT, &bytes, &err_));
    dask_bytes_free(bytes);
    CHECK_OK(dask_future_result(copy, DASK_NO_TIMEOUT, &v, &err_));
    dask_value_free(v);
    dask_future_free(copy);

    /* A future as an argument of the next call. */
    plain = dask_value_new_array();
    CHECK_OK(dask_value_new_future(f, &v, &err_));
    CHECK(dask_value_type(v) == DASK_TYPE_TASK_REF);
    CHECK_OK(dask_value_array_push(plain, v, &err_));
    CHECK_OK(dask_value_array_push_int(plain, 8, &err_));
    CHECK_OK(dask_client_submit(c, "add", plain, &g, &err_));
    dask_future_free(f); /* the argument holds its own reference */
    CHECK(int_result(g) == 50);
    dask_future_free(g);
    /* A reference cannot be a result or a scattered value; to_msgpack writes ext 1. */
    CHECK_OK(dask_value_to_msgpack(plain, &bytes, &err_));
    CHECK(dask_bytes_data(bytes)[1] == 0xc7);
    dask_bytes_free(bytes);
    dask_value_free(plain);

    /* submit with no args; bad function, args and handles */
    CHECK_OK(dask_client_submit(c, "range", NULL, &f, &err_));
    CHECK_FAIL(DASK_REMOTE_ERROR, "TypeError", dask_future_result(f, WAIT_MS, &v, &err_));
    dask_future_free(f);
    CHECK_FAIL(DASK_INVALID_ARGUMENT, "must be an array, got an integer",
               dask_client_submit(c, "add", (v = dask_value_new_int(1)), &f, &err_));
    CHECK(f == NULL);
    dask_value_free(v);
    CHECK_FAIL(DASK_NULL_PARAMETER, "`client` is NULL", dask_client_submit(NULL, "add", args, &f, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`function` is NULL", dask_client_submit(c, NULL, args, &f, &err_));
    CHECK_FAIL(DASK_INVALID_ARGUMENT, "`function` is empty", dask_client_submit(c, "", args, &f, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`out` is NULL", dask_client_submit(c, "add", args, NULL, &err_));


    /* msgpack in */
    CHECK_OK(dask_client_submit_msgpack(c, "mul", args_msgpack, sizeof args_msgpack, &f, &err_));
    CHECK(int_result(f) == 30);
    dask_future_free(f);
    CHECK_FAIL(DASK_INVALID_MSGPACK, "not one valid msgpack value",
               dask_client_submit_msgpack(c, "mul", bad, sizeof bad, &f, &err_));
    CHECK_FAIL(DASK_INVALID_ARGUMENT, "encoding of an array",
               dask_client_submit_msgpack(c, "mul", not_array, sizeof not_array, &f, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`args` is NULL", dask_client_submit_msgpack(c, "mul", NULL, 3, &f, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`client` is NULL",
               dask_client_submit_msgpack(NULL, "mul", args_msgpack, 3, &f, &err_));
    CHECK_FAIL(DASK_INVALID_ARGUMENT, "`function` is empty",
               dask_client_submit_msgpack(c, "", args_msgpack, 3, &f, &err_));

    /* Wait with a timeout, then cancel: a function no worker offers waits
     * (for a worker that offers it), and is never started, so no thread
     * is left running it. */
    CHECK_OK(dask_client_submit(c, "no.such.function", args, &h, &err_));
    CHECK_FAIL(DASK_TIMEOUT, "timed out", dask_future_wait(h, 50, &err_));
    CHECK_FAIL(DASK_TIMEOUT, "timed out", dask_future_result(h, 50, &v, &err_));
    CHECK(v == NULL);
    CHECK_FAIL(DASK_TIMEOUT, "timed out", dask_future_result_msgpack(h, 50, &bytes, &err_));
    CHECK(dask_future_status(h) == DASK_STATUS_PENDING);
    CHECK_OK(dask_future_cancel(h, &err_));
    CHECK_FAIL(DASK_CANCELLED, "CancelledError", dask_future_wait(h, WAIT_MS, &err_));
    CHECK(dask_future_status(h) == DASK_STATUS_CANCELLED);
    dask_future_free(h);
    dask_value_free(args);

    /* NULL futures */
    CHECK(strcmp(dask_future_key(NULL), "") == 0);
    CHECK(dask_future_status(NULL) == DASK_STATUS_INVALID);
    CHECK(dask_future_clone(NULL) == NULL);
    dask_future_free(NULL);
    CHECK_FAIL(DASK_NULL_PARAMETER, "`future` is NULL", dask_future_wait(NULL, 0, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`future` is NULL", dask_future_result(NULL, 0, &v, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`future` is NULL", dask_future_result_msgpack(NULL, 0, &bytes, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`future` is NULL", dask_future_cancel(NULL, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`future` is NULL", dask_value_new_future(NULL, &v, &err_));
}

/* Why a key waits (dask/1.1 key-waiting) and progress counts. */
static void test_waiting_and_progress(dask_client *c) {
    dask_future *f = NULL, *g = NULL;
    dask_value *args = ints(1, 2);
    const dask_future *both[2];
    dask_progress p;
    char small[8], text[256];
    size_t len = 0;
    int tries;

    CHECK_OK(dask_client_submit(c, "nowhere.fn", NULL, &f, &err_));
    CHECK_OK(dask_client_submit(c, "add", args, &g, &err_));
    dask_value_free(args);
    CHECK(int_result(g) == 3);
    for (tries = 0; tries < 12000 && len == 0; tries++) {
        len = dask_future_waiting(f, text, sizeof text);
        if (len == 0) {
            struct timespec ts = {0, 5000000};
            nanosleep(&ts, NULL);
        }
    }
    CHECK(len > 0 && len < sizeof text);
    CHECK(strncmp(text, "no-function: it cannot run: no connected worker offers function `nowhere.fn`", 76) == 0);
    /* snprintf-like: cut, NUL-terminated, the whole length returned. */
    CHECK(dask_future_waiting(f, small, sizeof small) == len);
    CHECK(strcmp(small, "no-func") == 0);
    CHECK(dask_future_waiting(f, NULL, 0) == len);
    CHECK(dask_future_waiting(g, text, sizeof text) == 0);
    CHECK(dask_future_waiting(NULL, text, sizeof text) == 0);

    both[0] = f;
    both[1] = g;
    CHECK_OK(dask_client_progress(c, both, 2, &p, &err_));
    CHECK(p.total == 2 && p.finished == 1 && p.pending == 1 && p.waiting == 1);
    CHECK(p.erred == 0 && p.failed == 0);
    CHECK_FAIL(DASK_NULL_PARAMETER, "`out` is NULL", dask_client_progress(c, both, 2, NULL, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`client` is NULL", dask_client_progress(NULL, both, 2, &p, &err_));
    dask_future_free(f);
    dask_future_free(g);
}

static void test_c_functions(dask_client *c) {
    static const char *kinds[] = {"int", "double", "string", "bytes", "msgpack", "nothing"};
    dask_value *args, *v = NULL;
    dask_future *f = NULL;
    size_t i;
    int64_t n;
    double d;
    const char *s;
    const uint8_t *data;
    size_t len;

    args = one_int(14);
    CHECK_OK(dask_client_submit(c, "c.scale", args, &f, &err_));
    CHECK(int_result(f) == 42);
    dask_future_free(f);
    dask_value_free(args);

    /* A C function that reports an error: the client sees its type and message. */
    {
        dask_error *err = NULL;
        CHECK_OK(dask_client_submit(c, "c.fail", NULL, &f, &err_));
        CHECK(dask_future_result(f, WAIT_MS, &v, &err) == DASK_REMOTE_ERROR);
        CHECK(dask_error_code(err) == DASK_REMOTE_ERROR);
        CHECK(dask_error_remote_type(err) != NULL && strcmp(dask_error_remote_type(err), "ValueError") == 0);
        CHECK(dask_error_remote_message(err) != NULL &&
              strcmp(dask_error_remote_message(err), "c.fail always fails") == 0);
        CHECK(strstr(dask_error_message(err), "ValueError: c.fail always fails") != NULL);
        dask_error_free(err);
        dask_future_free(f);
    }
    args = dask_value_new_array();
    CHECK_OK(dask_value_array_push_string(args, "error", &err_));
    CHECK_OK(dask_client_submit(c, "c.outputs", args, &f, &err_));
    CHECK_FAIL(DASK_REMOTE_ERROR, "Error: ", dask_future_wait(f, WAIT_MS, &err_));
    dask_future_free(f);
    dask_value_free(args);

    /* Every output setter. */
    for (i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        args = dask_value_new_array();
        CHECK_OK(dask_value_array_push_string(args, kinds[i], &err_));
        CHECK_OK(dask_client_submit(c, "c.outputs", args, &f, &err_));
        CHECK_OK(dask_future_result(f, WAIT_MS, &v, &err_));
        switch (i) {
        case 0: CHECK(dask_value_as_int(v, &n, NULL) == DASK_OK && n == 7); break;
        case 1: CHECK(dask_value_as_double(v, &d, NULL) == DASK_OK && d == 0.25); break;
        case 2: CHECK(dask_value_as_string(v, &s, NULL, NULL) == DASK_OK && strcmp(s, "text") == 0); break;
        case 3: CHECK(dask_value_as_bytes(v, &data, &len, NULL) == DASK_OK && len == 2 && data[1] == 'b'); break;
        case 4: CHECK(dask_value_type(v) == DASK_TYPE_ARRAY && dask_value_len(v) == 2); break;
        default: CHECK(dask_value_type(v) == DASK_TYPE_NULL); break;
        }
        dask_value_free(v);
        dask_future_free(f);
        dask_value_free(args);
    }
}

static void test_graphs(dask_client *c) {
    dask_delayed *a = NULL, *b = NULL, *total = NULL, *bad = NULL;
    dask_delayed *many[2];
    dask_future *futures[2] = {NULL, NULL};
    dask_future *f = NULL;
    dask_value *args, *ref = NULL, *list, *results[2] = {NULL, NULL};
    int64_t n;

    /* total = add(inc(1), sum([inc(1), 10])) as one graph */
    args = one_int(1);
    CHECK_OK(dask_delayed_new("inc", args, &a, &err_));
    dask_value_free(args);
    CHECK(strncmp(dask_delayed_key(a), "inc-", 4) == 0);
    CHECK_OK(dask_delayed_set_key(a, "my-inc", &err_));
    CHECK(strcmp(dask_delayed_key(a), "my-inc") == 0);
    CHECK_OK(dask_delayed_set_priority(a, 5, &err_));
    CHECK_OK(dask_delayed_set_retries(a, 1, &err_));
    list = dask_value_new_array();
    CHECK_OK(dask_value_new_delayed(a, &ref, &err_));
    CHECK_OK(dask_value_array_push(list, ref, &err_));
    CHECK_OK(dask_value_array_push_int(list, 10, &err_));
    args = dask_value_new_array();
    CHECK_OK(dask_value_array_push(args, list, &err_));
    CHECK_OK(dask_delayed_new("sum", args, &b, &err_));
    dask_value_free(args);
    args = dask_value_new_array();
    CHECK_OK(dask_value_new_delayed(a, &ref, &err_));
    CHECK_OK(dask_value_array_push(args, ref, &err_));
    CHECK_OK(dask_value_new_delayed(b, &ref, &err_));
    CHECK_OK(dask_value_array_push(args, ref, &err_));
    CHECK_OK(dask_delayed_new("add", args, &total, &err_));
    dask_value_free(args);
    CHECK_OK(dask_client_compute(c, total, &f, &err_));
    CHECK(int_result(f) == 14);
    dask_future_free(f);

    /* compute_many: both results, one graph */
    many[0] = a;
    many[1] = total;
    CHECK_OK(dask_client_compute_many(c, (const dask_delayed *const *)many, 2, futures, &err_));
    CHECK_OK(dask_client_gather(c, (const dask_future *const *)futures, 2, WAIT_MS, results, &err_));
    CHECK(dask_value_as_int(results[0], &n, NULL) == DASK_OK && n == 2);
    CHECK(dask_value_as_int(results[1], &n, NULL) == DASK_OK && n == 14);
    dask_value_free(results[0]);
    dask_value_free(results[1]);
    CHECK_OK(dask_client_gather(c, (const dask_future *const *)futures, 2, DASK_NO_TIMEOUT, results, &err_));
    dask_value_free(results[0]);
    dask_value_free(results[1]);
    dask_future_free(futures[0]);
    dask_future_free(futures[1]);
    CHECK_OK(dask_client_compute_many(c, NULL, 0, NULL, &err_));
    many[1] = NULL;
    CHECK_FAIL(DASK_NULL_PARAMETER, "`delayed[1]` is NULL", dask_client_compute_many(c, (const dask_delayed *const *)many, 2, futures, &err_));
    CHECK(futures[0] == NULL && futures[1] == NULL);
    CHECK_FAIL(DASK_NULL_PARAMETER, "`futures` is NULL", dask_client_compute_many(c, (const dask_delayed *const *)many, 2, NULL, &err_));

    /* references are refused inside maps, and as results */
    args = dask_value_new_array();
    list = dask_value_new_map();
    CHECK_OK(dask_value_new_delayed(a, &ref, &err_));
    CHECK_OK(dask_value_map_set(list, "x", ref, &err_));
    CHECK_OK(dask_value_array_push(args, list, &err_));
    CHECK_FAIL(DASK_INVALID_ARGUMENT, "only allowed in the arguments of a call", dask_delayed_new("identity", args, &bad, &err_));
    CHECK(bad == NULL);
    dask_value_free(args);

    /* bad input */
    CHECK_FAIL(DASK_NULL_PARAMETER, "`function` is NULL", dask_delayed_new(NULL, NULL, &bad, &err_));
    CHECK_FAIL(DASK_INVALID_ARGUMENT, "`function` is empty", dask_delayed_new("", NULL, &bad, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`out` is NULL", dask_delayed_new("inc", NULL, NULL, &err_));
    CHECK_FAIL(DASK_INVALID_ARGUMENT, "must be an array", dask_delayed_new("inc", (ref = dask_value_new_null()), &bad, &err_));
    dask_value_free(ref);
    CHECK_FAIL(DASK_INVALID_ARGUMENT, "a key has 1 to 4096 bytes", dask_delayed_set_key(a, "", &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`key` is NULL", dask_delayed_set_key(a, NULL, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`delayed` is NULL", dask_delayed_set_key(NULL, "k", &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`delayed` is NULL", dask_delayed_set_priority(NULL, 1, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`delayed` is NULL", dask_delayed_set_retries(NULL, 1, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`delayed` is NULL", dask_client_compute(c, NULL, &f, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`delayed` is NULL", dask_value_new_delayed(NULL, &ref, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`client` is NULL", dask_client_compute(NULL, a, &f, &err_));
    CHECK(strcmp(dask_delayed_key(NULL), "") == 0);
    CHECK(dask_delayed_clone(NULL) == NULL);
    bad = dask_delayed_clone(a);
    CHECK(bad != NULL && strcmp(dask_delayed_key(bad), "my-inc") == 0);
    CHECK_OK(dask_delayed_set_key(bad, "other", &err_));
    CHECK(strcmp(dask_delayed_key(a), "my-inc") == 0);
    dask_delayed_free(bad);
    dask_delayed_free(NULL);
    dask_delayed_free(a);
    dask_delayed_free(b);
    dask_delayed_free(total);
}

/* Graphs computed in this process: no scheduler, no socket. The client is
 * only there to make a future, which such a graph cannot use. */
static void test_in_process(dask_client *c) {
    dask_functions *fns = test_functions();
    dask_delayed *scaled = NULL, *total = NULL, *failing = NULL, *below = NULL, *remote = NULL;
    dask_delayed *many[2];
    dask_future *future = NULL;
    dask_value *args, *ref = NULL, *v = NULL, *results[2] = {NULL, NULL};
    int64_t n = 0;
    size_t threads;

    /* total = add(c.scale(14), inc(1)): 42 + 2, on 3 threads and on this one */
    args = one_int(14);
    CHECK_OK(dask_delayed_new("c.scale", args, &scaled, &err_));
    dask_value_free(args);
    args = dask_value_new_array();
    CHECK_OK(dask_value_new_delayed(scaled, &ref, &err_));
    CHECK_OK(dask_value_array_push(args, ref, &err_));
    CHECK_OK(dask_value_array_push_int(args, 2, &err_));
    CHECK_OK(dask_delayed_new("add", args, &total, &err_));
    dask_value_free(args);
    for (threads = 0; threads < 4; threads += 3) {
        CHECK_OK(dask_delayed_compute_in_process(total, fns, threads, &v, &err_));
        CHECK(dask_value_as_int(v, &n, NULL) == DASK_OK && n == 44);
        dask_value_free(v);
        v = NULL;
    }
    many[0] = scaled;
    many[1] = total;
    CHECK_OK(dask_delayed_compute_in_process_many((const dask_delayed *const *)many, 2, fns, 2, results, &err_));
    CHECK(dask_value_as_int(results[0], &n, NULL) == DASK_OK && n == 42);
    CHECK(dask_value_as_int(results[1], &n, NULL) == DASK_OK && n == 44);
    dask_value_free(results[0]);
    dask_value_free(results[1]);

    /* A C function's error reaches the caller with its type, message and origin. */
    CHECK_OK(dask_delayed_new("c.fail", NULL, &failing, &err_));
    CHECK_OK(dask_delayed_set_key(failing, "the-failing-one", &err_));
    args = dask_value_new_array();
    CHECK_OK(dask_value_new_delayed(failing, &ref, &err_));
    CHECK_OK(dask_value_array_push(args, ref, &err_));
    CHECK_OK(dask_delayed_new("inc", args, &below, &err_));
    dask_value_free(args);
    {
        dask_error *err = NULL;
        CHECK(dask_delayed_compute_in_process(below, fns, 2, &v, &err) == DASK_REMOTE_ERROR);
        CHECK(v == NULL);
        CHECK(dask_error_remote_type(err) != NULL && strcmp(dask_error_remote_type(err), "ValueError") == 0);
        CHECK(dask_error_remote_message(err) != NULL &&
              strcmp(dask_error_remote_message(err), "c.fail always fails") == 0);
        CHECK(strstr(dask_error_message(err), "(raised by the-failing-one)") != NULL);
        dask_error_free(err);
    }
    many[1] = below;
    CHECK_FAIL(DASK_REMOTE_ERROR, "c.fail always fails",
               dask_delayed_compute_in_process_many((const dask_delayed *const *)many, 2, fns, 0, results, &err_));
    CHECK(results[0] == NULL && results[1] == NULL);

    /* A future's result lives on a cluster: such a graph is refused. */
    args = one_int(1);
    CHECK_OK(dask_client_submit(c, "inc", args, &future, &err_));
    dask_value_free(args);
    args = dask_value_new_array();
    CHECK_OK(dask_value_new_future(future, &ref, &err_));
    CHECK_OK(dask_value_array_push(args, ref, &err_));
    CHECK_OK(dask_delayed_new("inc", args, &remote, &err_));
    dask_value_free(args);
    CHECK_FAIL(DASK_REFUSED, "unknown-key", dask_delayed_compute_in_process(remote, fns, 1, &v, &err_));

    /* bad input */
    CHECK_FAIL(DASK_NULL_PARAMETER, "`delayed` is NULL", dask_delayed_compute_in_process(NULL, fns, 1, &v, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`functions` is NULL", dask_delayed_compute_in_process(total, NULL, 1, &v, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`result` is NULL", dask_delayed_compute_in_process(total, fns, 1, NULL, &err_));
    many[1] = NULL;
    CHECK_FAIL(DASK_NULL_PARAMETER, "`delayed[1]` is NULL",
               dask_delayed_compute_in_process_many((const dask_delayed *const *)many, 2, fns, 1, results, &err_));
    CHECK_OK(dask_delayed_compute_in_process_many(NULL, 0, fns, 1, NULL, &err_));

    dask_future_free(future);
    dask_delayed_free(remote);
    dask_delayed_free(below);
    dask_delayed_free(failing);
    dask_delayed_free(total);
    dask_delayed_free(scaled);
    dask_functions_free(fns);
}

static void test_gather_scatter_as_completed(dask_client *c) {
    dask_value *values[3], *results[3] = {NULL, NULL, NULL}, *args, *ref = NULL;
    dask_future *none[1] = {NULL};
    dask_as_completed *other = NULL;
    dask_future *stored[3] = {NULL, NULL, NULL}, *f[3] = {NULL, NULL, NULL}, *next = NULL;
    dask_as_completed *it = NULL;
    int64_t n, total = 0;
    int seen = 0;
    dask_result r;

    values[0] = dask_value_new_int(1);
    values[1] = dask_value_new_int(2);
    CHECK_OK(dask_value_new_string("three", &values[2], &err_));
    CHECK_OK(dask_client_scatter(c, (const dask_value *const *)values, 3, stored, &err_));
    CHECK_OK(dask_client_gather(c, (const dask_future *const *)stored, 3, WAIT_MS, results, &err_));
    CHECK(dask_value_as_int(results[1], &n, NULL) == DASK_OK && n == 2);
    CHECK(dask_value_type(results[2]) == DASK_TYPE_STRING);
    for (n = 0; n < 3; n++) {
        dask_value_free(results[n]);
    }
    /* a scattered value as an argument */
    args = dask_value_new_array();
    CHECK_OK(dask_value_new_future(stored[1], &ref, &err_));
    CHECK_OK(dask_value_array_push(args, ref, &err_));
    CHECK_OK(dask_client_submit(c, "inc", args, &next, &err_));
    CHECK(int_result(next) == 3);
    dask_future_free(next);
    next = NULL;
    dask_value_free(args);

    /* gather failures: an erred future fails the whole call */
    CHECK_OK(dask_client_submit(c, "c.fail", NULL, &f[0], &err_));
    results[0] = results[1] = NULL;
    f[1] = stored[0];
    CHECK_FAIL(DASK_REMOTE_ERROR, "c.fail always fails",
               dask_client_gather(c, (const dask_future *const *)f, 2, WAIT_MS, results, &err_));
    CHECK(results[0] == NULL && results[1] == NULL);
    dask_future_free(f[0]);
    f[1] = NULL;
    CHECK_FAIL(DASK_NULL_PARAMETER, "`futures[1]` is NULL",
               dask_client_gather(c, (const dask_future *const *)f, 2, WAIT_MS, results, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`results` is NULL",
               dask_client_gather(c, (const dask_future *const *)stored, 3, WAIT_MS, NULL, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`client` is NULL",
               dask_client_gather(NULL, (const dask_future *const *)stored, 3, WAIT_MS, results, &err_));
    CHECK_OK(dask_client_gather(c, NULL, 0, WAIT_MS, NULL, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`values` is NULL", dask_client_scatter(c, NULL, 2, f, &err_));
    CHECK(f[0] == NULL && f[1] == NULL);
    CHECK_FAIL(DASK_NULL_PARAMETER, "`futures` is NULL",
               dask_client_scatter(c, (const dask_value *const *)values, 2, NULL, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`client` is NULL",
               dask_client_scatter(NULL, (const dask_value *const *)values, 2, f, &err_));
    for (n = 0; n < 3; n++) {
        dask_value_free(values[n]);
    }

    /* as_completed: three sleeps finish in order of their durations */
    for (n = 0; n < 3; n++) {
        args = ints(300 * (3 - n), n);
        CHECK_OK(dask_client_submit(c, "conformance.sleep", args, &f[n], &err_));
        dask_value_free(args);
    }
    CHECK_OK(dask_client_as_completed(c, (const dask_future *const *)f, 2, &it, &err_));
    CHECK_OK(dask_as_completed_add(it, f[2], &err_));
    CHECK(dask_as_completed_count(it) == 3);
    CHECK_FAIL(DASK_TIMEOUT, "no future completed within 0 ms", dask_as_completed_next(it, 0, &next, &err_));
    CHECK(next == NULL);
    while ((r = dask_as_completed_next(it, WAIT_MS, &next, NULL)) == DASK_OK) {
        total += int_result(next);
        seen++;
        dask_future_free(next);
    }
    CHECK(r == DASK_DONE && next == NULL && seen == 3 && total == 3);
    CHECK(dask_as_completed_count(it) == 0);
    {
        dask_error *err = (dask_error *)&err;
        CHECK(dask_as_completed_next(it, DASK_NO_TIMEOUT, &next, &err) == DASK_DONE);
        CHECK(err == NULL); /* DASK_DONE is not an error */
    }
    CHECK_FAIL(DASK_NULL_PARAMETER, "`future` is NULL", dask_as_completed_add(it, NULL, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`iterator` is NULL", dask_as_completed_add(NULL, f[0], &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`iterator` is NULL", dask_as_completed_next(NULL, 0, &next, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`out` is NULL", dask_as_completed_next(it, 0, NULL, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`futures[0]` is NULL",
               dask_client_as_completed(c, (const dask_future *const *)none, 1, &other, &err_));
    CHECK(other == NULL);
    CHECK_FAIL(DASK_NULL_PARAMETER, "`client` is NULL",
               dask_client_as_completed(NULL, (const dask_future *const *)none, 0, &other, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`out` is NULL",
               dask_client_as_completed(c, (const dask_future *const *)none, 0, NULL, &err_));
    CHECK(dask_as_completed_count(NULL) == 0);
    dask_as_completed_free(it);
    dask_as_completed_free(NULL);
    for (n = 0; n < 3; n++) {
        dask_future_free(f[n]);
        dask_future_free(stored[n]);
    }
}

/* ---- the embedded cluster handle and workers from C ---- */

static void *run_worker(void *worker) {
    static dask_result result;
    result = dask_worker_run((const dask_worker *)worker, NULL);
    return &result;
}

static void test_local_cluster_and_worker(void) {
    dask_local_cluster *cluster = NULL;
    dask_client *c = NULL, *other = NULL;
    dask_worker *w = NULL, *duplicate = NULL;
    dask_functions *fns = dask_functions_new();
    dask_future *f = NULL;
    dask_value *args;
    pthread_t runner;
    void *ran = NULL;
    char address[64];
    size_t workers = 0;
    int before;

    CHECK_OK(dask_local_cluster_start(1, 1, NULL, &cluster, &err_));
    CHECK(strncmp(dask_local_cluster_address(cluster), "tcp://127.0.0.1:", 16) == 0);
    CHECK(strcmp(dask_local_cluster_address(NULL), "") == 0);
    CHECK_OK(dask_local_cluster_client(cluster, &c, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`cluster` is NULL", dask_local_cluster_client(NULL, &other, &err_));
    CHECK(other == NULL);
    CHECK_FAIL(DASK_NULL_PARAMETER, "`out` is NULL", dask_local_cluster_client(cluster, NULL, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`out` is NULL", dask_local_cluster_start(1, 1, NULL, NULL, &err_));

    /* A worker offering a C function joins the cluster. */
    before = freed_count();
    CHECK_OK(dask_functions_register(fns, "c.scale", scale, (void *)&factor, count_free, &err_));
    CHECK_OK(dask_worker_start(dask_local_cluster_address(cluster), 2, "c-worker", fns, &w, &err_));
    dask_functions_free(fns); /* the worker keeps its copy */
    CHECK(freed_count() == before);
    CHECK(strcmp(dask_worker_name(w), "c-worker") == 0);
    CHECK(strncmp(dask_worker_address(w), "tcp://127.0.0.1:", 16) == 0);
    CHECK(strcmp(dask_worker_name(NULL), "") == 0 && strcmp(dask_worker_address(NULL), "") == 0);
    CHECK_OK(dask_client_worker_count(c, &workers, &err_));
    CHECK(workers == 2);
    /* A client that dials the worker's data address is told what it reached. */
    CHECK_FAIL(DASK_CONNECTION, "this is a dask/1 worker's data address", dask_client_connect(dask_worker_address(w), 5000, &other, &err_));
    CHECK(other == NULL);
    /* The name is taken: the scheduler refuses a second worker of that name. */
    CHECK_FAIL(DASK_REFUSED, "the scheduler refused the worker (3004)", dask_worker_start(dask_local_cluster_address(cluster), 1, "c-worker", NULL, &duplicate, &err_));
    CHECK(duplicate == NULL);

    /* Only the C worker offers c.scale: the task runs there. */
    args = one_int(5);
    CHECK_OK(dask_client_submit(c, "c.scale", args, &f, &err_));
    CHECK(int_result(f) == 15);
    dask_future_free(f);
    dask_value_free(args);

    /* run on a thread, stop from this one */
    pthread_create(&runner, NULL, run_worker, w);
    CHECK_OK(dask_worker_stop(w, &err_));
    pthread_join(runner, &ran);
    CHECK(*(dask_result *)ran == DASK_OK);
    CHECK_OK(dask_worker_stop(w, &err_)); /* twice is fine */
    CHECK_OK(dask_worker_run(w, &err_));  /* over: returns at once */
    dask_worker_free(w);
    CHECK(freed_count() == before + 1); /* the worker's copy is gone */

    /* bad input */
    snprintf(address, sizeof address, "tcp://127.0.0.1:%d", closed_port());
    CHECK_FAIL(DASK_CONNECTION, "cannot start a worker for tcp://127.0.0.1:", dask_worker_start(address, 1, NULL, NULL, &w, &err_));
    CHECK(w == NULL);
    CHECK_FAIL(DASK_INVALID_ARGUMENT, "bad address", dask_worker_start("127.0.0.1", 1, NULL, NULL, &w, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`scheduler` is NULL", dask_worker_start(NULL, 1, NULL, NULL, &w, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`out` is NULL", dask_worker_start(address, 1, NULL, NULL, NULL, &err_));
    CHECK_FAIL(DASK_INVALID_ARGUMENT, "`name` is not valid UTF-8", dask_worker_start(address, 1, "\xff", NULL, &w, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`worker` is NULL", dask_worker_run(NULL, &err_));
    CHECK_FAIL(DASK_NULL_PARAMETER, "`worker` is NULL", dask_worker_stop(NULL, &err_));
    dask_worker_free(NULL);

    dask_client_free(c);
    dask_local_cluster_free(cluster);
    dask_local_cluster_free(NULL);
}

/* ---- a worker whose scheduler goes away ---- */

static void test_worker_loses_scheduler(void) {
    dask_local_cluster *cluster = NULL;
    dask_worker *w = NULL;
    CHECK_OK(dask_local_cluster_start(1, 1, NULL, &cluster, &err_));
    CHECK_OK(dask_worker_start(dask_local_cluster_address(cluster), 1, NULL, NULL, &w, &err_));
    dask_local_cluster_free(cluster); /* the scheduler says close, then stops */
    {
        dask_error *err = NULL;
        dask_result r = dask_worker_run(w, &err);
        /* A close from the scheduler is a clean end; a dropped connection is not. */
        CHECK(r == DASK_OK || (r == DASK_CONNECTION && strstr(dask_error_message(err), "lost its scheduler")));
        dask_error_free(err);
    }
    dask_worker_free(w);
}

/* ---- a closed client ---- */

static void test_closed_client(dask_client *c) {
    dask_value *args = ints(1, 2), *v = NULL;
    dask_future *f = NULL, *after = NULL;
    dask_delayed *d = NULL;
    dask_as_completed *it = NULL;
    size_t n;
    CHECK_OK(dask_client_submit(c, "conformance.sleep", args, &f, &err_));
    CHECK_OK(dask_delayed_new("inc", NULL, &d, &err_));
    CHECK_OK(dask_client_close(c, &err_));
    CHECK(!dask_client_is_connected(c));
    CHECK_OK(dask_client_close(c, &err_)); /* twice is fine */
    CHECK_FAIL(DASK_CLOSED, "the client is closed", dask_client_submit(c, "add", args, &after, &err_));
    CHECK(after == NULL);
    CHECK_FAIL(DASK_CLOSED, "the client is closed", dask_client_submit_msgpack(c, "add", NULL, 0, &after, &err_));
    CHECK_FAIL(DASK_CLOSED, "the client is closed", dask_client_compute(c, d, &after, &err_));
    CHECK_FAIL(DASK_CLOSED, "the client is closed", dask_client_compute_many(c, (const dask_delayed *const *)&d, 1, &after, &err_));
    CHECK_FAIL(DASK_CLOSED, "the client is closed", dask_client_gather(c, (const dask_future *const *)&f, 1, 0, &v, &err_));
    CHECK_FAIL(DASK_CLOSED, "the client is closed", dask_client_scatter(c, (const dask_value *const *)&args, 1, &after, &err_));
    CHECK_FAIL(DASK_CLOSED, "the client is closed", dask_client_as_completed(c, (const dask_future *const *)&f, 1, &it, &err_));
    CHECK_FAIL(DASK_CLOSED, "the client is closed", dask_client_worker_count(c, &n, &err_));
    /* Its futures fail, cleanly. */
    CHECK_FAIL(DASK_CONNECTION, "connection error", dask_future_result(f, WAIT_MS, &v, &err_));
    CHECK(dask_future_status(f) == DASK_STATUS_FAILED);
    CHECK(strcmp(dask_client_address(c), "") != 0);
    CHECK_FAIL(DASK_NULL_PARAMETER, "`client` is NULL", dask_client_close(NULL, &err_));
    dask_future_free(f);
    dask_delayed_free(d);
    dask_value_free(args);
}

/* dask_security: a named credentials file must exist and hold the role's
 * secret; tls:// needs the secure calls and a CA. */
static void test_security_options(void) {
    dask_security security = {0};
    dask_client *c = NULL;
    dask_worker *w = NULL;
    security.credentials_file = "/nonexistent/dask-credentials.json";
    CHECK_FAIL(DASK_INVALID_ARGUMENT, "/nonexistent/dask-credentials.json: does not exist",
               dask_client_connect_secure("tcp://127.0.0.1:1", 1000, &security, &c, &err_));
    CHECK(c == NULL);
    CHECK_FAIL(DASK_INVALID_ARGUMENT, "/nonexistent/dask-credentials.json: does not exist",
               dask_worker_start_secure("tcp://127.0.0.1:1", 1, NULL, NULL, &security, &w, &err_));
    CHECK(w == NULL);
    CHECK_FAIL(DASK_INVALID_ARGUMENT, "is a TLS address", dask_client_connect("tls://127.0.0.1:1", 1000, &c, &err_));
    security.credentials_file = NULL;
    security.no_auth = true;
    security.tls_cert_file = "/nonexistent/cluster.pem";
    CHECK_FAIL(DASK_INVALID_ARGUMENT, "--tls-cert /nonexistent/cluster.pem",
               dask_client_connect_secure("tls://127.0.0.1:1", 1000, &security, &c, &err_));
    CHECK(c == NULL);
}

int main(void) {
    dask_client *c = NULL;
    dask_functions *fns;
    test_errors_and_version();
    test_scalars();
    test_containers();
    test_msgpack();
    test_functions_registry();
    test_connect_failures();
    test_security_options();

    fns = test_functions();
    CHECK_OK(dask_client_start_local(1, 2, fns, &c, &err_));
    dask_functions_free(fns);
    CHECK_FAIL(DASK_NULL_PARAMETER, "`out` is NULL", dask_client_start_local(1, 1, NULL, NULL, &err_));
    if (c != NULL) {
        test_submit_and_futures(c);
        test_waiting_and_progress(c);
        test_c_functions(c);
        test_graphs(c);
        test_in_process(c);
        test_gather_scatter_as_completed(c);
        test_closed_client(c);
    }
    dask_client_free(c);
    test_local_cluster_and_worker();
    test_worker_loses_scheduler();
    CHECK(freed_count() == 7);

    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
