/*
 * A C worker embedded in a program comes back after its scheduler is
 * killed and restarted on its journal, and the result it held is adopted,
 * not computed again (issue 16): a real dask-scheduler process with
 * --journal, SIGKILLed and started again on the same port and directory.
 *
 *   worker A (dask_worker_start: registers again for 60 s by default)
 *     offers c.count(x) = 2x, counting its runs;
 *   worker B (dask_worker_start_reconnecting(..., 0)) never registers
 *     again: dask_worker_run gives DASK_CONNECTION once the scheduler dies.
 *
 * f1 = c.count(21) runs before the kill (runs: 1). After the restart,
 * f2 = c.count(f1) must give 84 with runs at 2: A registered again (f2 ran
 * on it) and f1 was adopted from A, not run again.
 *
 * Usage: test_reconnect PATH/TO/dask-scheduler
 * (credentials: the scheduler creates them in DASK_RS_HOME, as
 * scripts/ci/c-sdk.sh sets it, and the client and workers find them there).
 * Prints one line per failed check and ends with "N passed, M failed".
 */
#define _XOPEN_SOURCE 700

#include <libdask.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#include "check.h"

static void report(const char *what, dask_error **err) {
    fprintf(stderr, "%s: %s\n", what, *err ? dask_error_message(*err) : "(no error)");
    dask_error_free(*err);
    *err = NULL;
}

static atomic_int runs;

/* c.count(x) = 2x, counting its runs. */
static void count(void *user_data, const uint8_t *args, size_t args_len, const uint8_t *kwargs,
                  size_t kwargs_len, dask_task_output *output) {
    int64_t n = 0;
    (void)user_data;
    (void)kwargs;
    (void)kwargs_len;
    atomic_fetch_add(&runs, 1);
    if (int_arg(args, args_len, &n)) {
        dask_task_output_set_int(output, 2 * n, NULL);
    } else {
        dask_task_output_set_error(output, "TypeError", "c.count takes one integer", NULL);
    }
}

/* A port free now on 127.0.0.1. */
static int free_port(void) {
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0) {
        port = ntohs(a.sin_port);
    }
    if (fd >= 0) close(fd);
    return port;
}

/* Starts dask-scheduler on `port` with its journal in `dir`, its output
 * appended to dir/../scheduler.log. */
static pid_t start_scheduler(const char *binary, int port, const char *dir, const char *log) {
    char port_text[16];
    char *argv[] = {(char *)binary, "--port", port_text, "--journal", (char *)dir, NULL};
    posix_spawn_file_actions_t actions;
    pid_t pid = -1;
    snprintf(port_text, sizeof port_text, "%d", port);
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    if (posix_spawn(&pid, binary, &actions, NULL, argv, environ) != 0) pid = -1;
    posix_spawn_file_actions_destroy(&actions);
    return pid;
}

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int main(int argc, char **argv) {
    char home[] = "/tmp/dask-c-reconnect-XXXXXX", journal[64], log[64], address[64];
    dask_client *client = NULL;
    dask_functions *functions = NULL;
    dask_worker *a = NULL, *b = NULL;
    dask_future *f1 = NULL, *f2 = NULL;
    dask_value *args = NULL, *result = NULL, *ref = NULL;
    dask_error *err = NULL;
    int64_t n = 0;
    size_t workers = 0;
    pid_t scheduler;
    int port, i, status;
    if (argc != 2) {
        fprintf(stderr, "usage: test_reconnect PATH/TO/dask-scheduler\n");
        return 2;
    }
    port = free_port();
    if (port < 0 || mkdtemp(home) == NULL) {
        perror("test_reconnect: a port and a directory");
        return 1;
    }
    snprintf(journal, sizeof journal, "%s/journal", home);
    snprintf(log, sizeof log, "%s/scheduler.log", home);
    snprintf(address, sizeof address, "tcp://127.0.0.1:%d", port);
    scheduler = start_scheduler(argv[1], port, journal, log);
    CHECK(scheduler > 0);
    for (i = 0; i < 200 && dask_client_connect(address, 1000, &client, &err) != DASK_OK; i++) {
        dask_error_free(err);
        err = NULL;
        sleep_ms(50);
    }
    CHECK(client != NULL);
    if (client == NULL) goto done;

    functions = dask_functions_new();
    CHECK(dask_functions_register(functions, "c.count", count, NULL, NULL, &err) == DASK_OK);
    if (dask_worker_start(address, 1, "c-reconnect-a", functions, &a, &err) != DASK_OK)
        report("worker a", &err);
    if (dask_worker_start_reconnecting(address, 1, "c-reconnect-b", NULL, NULL, 0, &b, &err) !=
        DASK_OK)
        report("worker b", &err);
    CHECK(a != NULL && b != NULL);
    if (a == NULL || b == NULL) goto done;
    /* A negative time is refused, naming the argument. */
    {
        dask_worker *c = NULL;
        CHECK(dask_worker_start_reconnecting(address, 1, "c", NULL, NULL, -1, &c, &err) ==
              DASK_INVALID_ARGUMENT);
        CHECK(c == NULL && err != NULL &&
              strstr(dask_error_message(err), "reconnect_timeout_ms") != NULL);
        dask_error_free(err);
        err = NULL;
    }

    args = dask_value_new_array();
    dask_value_array_push_int(args, 21, NULL);
    if (dask_client_submit(client, "c.count", args, &f1, &err) != DASK_OK) report("f1", &err);
    dask_value_free(args);
    args = NULL;
    CHECK(f1 != NULL);
    if (f1 == NULL) goto done;
    CHECK(dask_future_result(f1, WAIT_MS, &result, &err) == DASK_OK);
    CHECK(result != NULL && dask_value_as_int(result, &n, NULL) == DASK_OK && n == 42);
    dask_value_free(result);
    result = NULL;
    CHECK(atomic_load(&runs) == 1);

    /* The scheduler dies: B ends at once, A tries again. */
    kill(scheduler, SIGKILL);
    waitpid(scheduler, &status, 0);
    CHECK(dask_worker_run(b, &err) == DASK_CONNECTION);
    dask_error_free(err);
    err = NULL;

    scheduler = start_scheduler(argv[1], port, journal, log);
    CHECK(scheduler > 0);
    /* The client resumes its session; A registers again (every second). */
    for (i = 0; i < 600; i++) {
        if (dask_client_worker_count(client, &workers, &err) == DASK_OK && workers == 1) break;
        dask_error_free(err);
        err = NULL;
        sleep_ms(100);
    }
    CHECK(workers == 1);

    args = dask_value_new_array();
    CHECK(dask_value_new_future(f1, &ref, &err) == DASK_OK);
    dask_value_array_push(args, ref, NULL);
    ref = NULL;
    if (dask_client_submit(client, "c.count", args, &f2, &err) != DASK_OK) report("f2", &err);
    CHECK(f2 != NULL);
    if (f2 != NULL) {
        if (dask_future_result(f2, WAIT_MS, &result, &err) != DASK_OK) report("f2 result", &err);
        CHECK(result != NULL && dask_value_as_int(result, &n, NULL) == DASK_OK && n == 84);
    }
    /* f1 was adopted from A, not run again; f2 ran once. */
    CHECK(atomic_load(&runs) == 2);

done:
    dask_value_free(result);
    dask_value_free(args);
    dask_value_free(ref);
    dask_future_free(f1);
    dask_future_free(f2);
    dask_client_free(client);
    if (a != NULL) {
        dask_worker_stop(a, NULL);
        dask_worker_free(a);
    }
    dask_worker_free(b);
    dask_functions_free(functions);
    dask_error_free(err);
    if (scheduler > 0) {
        kill(scheduler, SIGTERM);
        waitpid(scheduler, &status, 0);
    }
    if (failed) {
        char line[256];
        FILE *f = fopen(log, "r");
        fprintf(stderr, "-- %s:\n", log);
        while (f != NULL && fgets(line, sizeof line, f) != NULL) fputs(line, stderr);
        if (f != NULL) fclose(f);
    }
    nftw(home, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
