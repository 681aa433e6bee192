/*
 * Work functions for the Node binding's process-task tests (test/process-tasks.test.js):
 * weft_work_fns that run in a forked child of the test's node process. They call only
 * libc and weft's task functions, never V8, Node or libuv. test-support/native.js
 * builds this file with `cc -shared -fPIC` against the libweft.so the binding loaded.
 *
 * user_data is the NUL-terminated text the binding copied for the task (or NULL).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <dirent.h>

#include "weft.h"

/* Changed by the works, in the child: how many tasks this process has run. */
static int g_runs;

static int write_text(weft_task *task, const char *text)
{
    return weft_task_write(task, text, strlen(text)) == WEFT_OK ? 0 : 100;
}

/* Writes "<pid> <runs in this process> <user_data>"; returns 0. */
int proc_work_pid(weft_task *task, void *user_data)
{
    char text[256];
    snprintf(text, sizeof text, "%d %d %s", (int)getpid(), ++g_runs, user_data ? (const char *)user_data : "");
    return write_text(task, text);
}

/* Emits "proc.sleep" with its pid, then sleeps user_data milliseconds and writes
 * "slept". A cancel or a timeout kills the child (SIGTERM at its default action). */
int proc_work_sleep(weft_task *task, void *user_data)
{
    char pid[16];
    int len = snprintf(pid, sizeof pid, "%d", (int)getpid());
    if (weft_task_emit(task, "proc.sleep", pid, (size_t)len) != WEFT_OK)
        return 101;
    long ms = user_data ? strtol(user_data, NULL, 10) : 0;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
    return write_text(task, "slept");
}

/* Writes a little, then abort()s: the child dies by SIGABRT (no core file). */
int proc_work_crash(weft_task *task, void *user_data)
{
    (void)user_data;
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none);
    write_text(task, "partial");
    abort();
}

/* user_data "<topic> <n>": emits n events on <topic>, payloads "1".."n", then writes
 * "emitted <n>". */
int proc_work_emit(weft_task *task, void *user_data)
{
    char topic[128] = "proc.event";
    unsigned n = 0;
    if (user_data)
        sscanf(user_data, "%127s %u", topic, &n);
    for (unsigned i = 1; i <= n; i++) {
        char text[16];
        int len = snprintf(text, sizeof text, "%u", i);
        if (weft_task_emit(task, topic, text, (size_t)len) != WEFT_OK)
            return 102;
    }
    char text[32];
    snprintf(text, sizeof text, "emitted %u", n);
    return write_text(task, text);
}

/* Writes user_data back and returns its number as the status. */
int proc_work_status(weft_task *task, void *user_data)
{
    if (user_data && write_text(task, user_data) != 0)
        return 100;
    return user_data ? atoi(user_data) : 0;
}

/* Writes the numbers of the fds open in the child, as "3 5 7 " (opendir is fine: the
 * child runs only this thread, and glibc's malloc survives a fork). */
int proc_work_fds(weft_task *task, void *user_data)
{
    (void)user_data;
    char out[4096];
    size_t len = 0;
    DIR *dir = opendir("/proc/self/fd");
    if (dir == NULL) return 101;
    int own = dirfd(dir);
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL && len + 16 < sizeof out) {
        if (entry->d_name[0] == '.' || atoi(entry->d_name) == own) continue;
        len += (size_t)snprintf(out + len, sizeof out - len, "%s ", entry->d_name);
    }
    closedir(dir);
    return weft_task_write(task, out, len) == WEFT_OK ? 0 : 100;
}
