/*
 * The C client's harness for client conformance:
 *
 *   dask-conformance client -- ./conformance_client {scheduler}
 *
 * It connects to the runner (playing the scheduler), prints {"ready": true},
 * then reads the driver protocol's commands on stdin, one JSON object a
 * line, and answers each on stdout (spec/CONFORMANCE.md, "Client
 * conformance"). Everything goes through libdask's public API; the
 * commands' fields are found with a small reader made for these lines.
 */
#define _POSIX_C_SOURCE 200809L

#include <libdask.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUTURES_MAX 256
#define LINE_MAX_BYTES 65536
#define FIELD_MAX_BYTES 8192

/* One held future, by its key. */
typedef struct {
    char key[FIELD_MAX_BYTES];
    dask_future *future;
} held;

static held futures[FUTURES_MAX];
static size_t nfutures;

/* Writes `text` as a JSON string. */
static void put_json_string(const char *text) {
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (*p == '"' || *p == '\\') {
            printf("\\%c", *p);
        } else if (*p < 0x20) {
            printf("\\u%04x", *p);
        } else {
            putchar(*p);
        }
    }
    putchar('"');
}

/* The string value of field `name` in the one-line JSON object `line`
 * (the runner writes `"name":"value"` without spaces), copied into `out`.
 * Returns 0 when found. */
static int field(const char *line, const char *name, char *out, size_t size) {
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\":\"", name);
    const char *p = strstr(line, pattern);
    if (p == NULL) {
        return -1;
    }
    p += strlen(pattern);
    size_t n = 0;
    while (*p && *p != '"' && n + 1 < size) {
        if (*p == '\\' && p[1]) {
            p++;
        }
        out[n++] = *p++;
    }
    out[n] = '\0';
    return *p == '"' ? 0 : -1;
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static held *find(const char *key) {
    for (size_t i = 0; i < nfutures; i++) {
        if (futures[i].future != NULL && strcmp(futures[i].key, key) == 0) {
            return &futures[i];
        }
    }
    return NULL;
}

static const char *kind_of(dask_result r) {
    switch (r) {
    case DASK_REMOTE_ERROR: return "remote";
    case DASK_CANCELLED: return "cancelled";
    case DASK_LOST: return "lost";
    case DASK_REFUSED: return "refused";
    case DASK_CONNECTION:
    case DASK_CLOSED: return "connection";
    default: return "other";
    }
}

static void submit(dask_client *client, const char *line) {
    static char function[FIELD_MAX_BYTES], hex[LINE_MAX_BYTES];
    static unsigned char args[LINE_MAX_BYTES / 2];
    if (field(line, "function", function, sizeof function) != 0 ||
        field(line, "args_hex", hex, sizeof hex) != 0 || nfutures == FUTURES_MAX) {
        printf("{\"error\":\"bad-command\"}\n");
        return;
    }
    size_t len = 0;
    for (const char *p = hex; p[0] && p[1]; p += 2) {
        args[len++] = (unsigned char)(hex_digit(p[0]) * 16 + hex_digit(p[1]));
    }
    dask_future *future = NULL;
    dask_error *err = NULL;
    if (dask_client_submit_msgpack(client, function, args, len, &future, &err) != DASK_OK) {
        printf("{\"error\":\"submit\",\"message\":");
        put_json_string(dask_error_message(err));
        printf("}\n");
        dask_error_free(err);
        return;
    }
    held *h = &futures[nfutures++];
    snprintf(h->key, sizeof h->key, "%s", dask_future_key(future));
    h->future = future;
    printf("{\"submitted\":");
    put_json_string(h->key);
    printf("}\n");
}

static void result(const char *key) {
    held *h = find(key);
    if (h == NULL) {
        printf("{\"key\":");
        put_json_string(key);
        printf(",\"error\":\"unknown-key\"}\n");
        return;
    }
    dask_bytes *bytes = NULL;
    dask_error *err = NULL;
    dask_result r = dask_future_result_msgpack(h->future, DASK_NO_TIMEOUT, &bytes, &err);
    printf("{\"key\":");
    put_json_string(key);
    if (r == DASK_OK) {
        printf(",\"result_hex\":\"");
        const uint8_t *data = dask_bytes_data(bytes);
        for (size_t i = 0; i < dask_bytes_len(bytes); i++) {
            printf("%02x", data[i]);
        }
        printf("\"}\n");
        dask_bytes_free(bytes);
        return;
    }
    printf(",\"error\":\"%s\"", kind_of(r));
    if (r == DASK_REMOTE_ERROR) {
        printf(",\"error_type\":");
        put_json_string(dask_error_remote_type(err));
        printf(",\"message\":");
        put_json_string(dask_error_remote_message(err));
    } else {
        printf(",\"message\":");
        put_json_string(dask_error_message(err));
    }
    printf("}\n");
    dask_error_free(err);
}

int main(int argc, char **argv) {
    const char *address = argc > 1 ? argv[1] : getenv("DASK_SCHEDULER_ADDRESS");
    dask_client *client = NULL;
    dask_error *err = NULL;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (address == NULL || dask_client_connect(address, 10000, &client, &err) != DASK_OK) {
        printf("{\"error\":\"connection\",\"message\":");
        put_json_string(err ? dask_error_message(err) : "no scheduler address");
        printf("}\n");
        dask_error_free(err);
        return 1;
    }
    printf("{\"ready\":true}\n");
    static char line[LINE_MAX_BYTES], what[64], key[FIELD_MAX_BYTES];
    while (fgets(line, sizeof line, stdin) != NULL) {
        if (field(line, "do", what, sizeof what) != 0) {
            printf("{\"error\":\"bad-command\"}\n");
            continue;
        }
        int has_key = field(line, "key", key, sizeof key) == 0;
        if (strcmp(what, "submit") == 0) {
            submit(client, line);
        } else if (strcmp(what, "result") == 0 && has_key) {
            result(key);
        } else if (strcmp(what, "release") == 0 && has_key) {
            held *h = find(key);
            if (h != NULL) {
                dask_future_free(h->future);
                h->future = NULL;
            }
            printf("{\"released\":");
            put_json_string(key);
            printf("}\n");
        } else if (strcmp(what, "cancel") == 0 && has_key) {
            held *h = find(key);
            if (h != NULL) {
                dask_future_cancel(h->future, NULL);
            }
            printf("{\"cancelled\":");
            put_json_string(key);
            printf("}\n");
        } else if (strcmp(what, "close") == 0) {
            dask_client_close(client, NULL);
            printf("{\"closed\":true}\n");
            break;
        } else {
            printf("{\"error\":\"bad-command\"}\n");
        }
    }
    for (size_t i = 0; i < nfutures; i++) {
        dask_future_free(futures[i].future);
    }
    dask_client_free(client);
    return 0;
}
