/*
 * topics.c: publish/subscribe across threads.
 *
 *   weft_subscribe(loop, pattern, cb, ...)       pattern: "job.done" (exact), "job.*"
 *                                                (any topic under "job."), or "*"
 *   weft_emit(loop, topic, payload, len)         from any thread; never waits
 *
 * A worker pthread emits progress events and then "job.done". Subscribers run on the
 * loop thread (here: main), so they can touch main's state without locks. Emits of one
 * thread arrive in the order they were made.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <weft.h>

static void fail(const char *what)
{
    char msg[256];
    weft_last_error(msg, sizeof msg);
    fprintf(stderr, "topics: %s failed: %s\n", what, msg);
    exit(1);
}

/* The worker: a stand-in for any thread that does work and reports on it. */
static void *worker(void *arg)
{
    weft_loop *loop = arg;
    for (int percent = 25; percent <= 100; percent += 25) {
        nanosleep(&(struct timespec){.tv_nsec = 20 * 1000 * 1000}, NULL); /* "work" */
        char text[16];
        int len = snprintf(text, sizeof text, "%d%%", percent);
        /* The payload is copied: `text` may go away as soon as weft_emit returns. */
        if (weft_emit(loop, "job.progress", text, (size_t)len) != WEFT_OK)
            fail("weft_emit(job.progress)"); /* weft_last_error is per thread: read it here */
    }
    if (weft_emit(loop, "job.done", "ok", 2) != WEFT_OK)
        fail("weft_emit(job.done)");
    return NULL;
}

/* "job.*": sees every job event, "job.done" included. */
static void on_job_event(weft_loop *loop, weft_id sub, const char *topic, const void *payload,
                         size_t len, void *user_data)
{
    (void)loop;
    (void)sub;
    int *seen = user_data;
    ++*seen;
    /* payload is not NUL-terminated, and valid only until this callback returns */
    printf("[job.*]    %s: %.*s\n", topic, (int)len, (const char *)payload);
}

/* "job.done": the job is over, so stop the loop. The pass in progress still finishes,
 * so the "job.*" subscriber gets "job.done" too. */
static void on_done(weft_loop *loop, weft_id sub, const char *topic, const void *payload,
                    size_t len, void *user_data)
{
    (void)sub;
    int *done = user_data;
    *done = 1;
    printf("[job.done] %s: %.*s, stopping the loop\n", topic, (int)len, (const char *)payload);
    if (weft_loop_stop(loop) != WEFT_OK)
        fail("weft_loop_stop");
}

int main(void)
{
    weft_loop *loop = weft_loop_new();
    if (!loop)
        fail("weft_loop_new");

    /* Subscribe before the worker starts: an event reaches the subscribers that exist
     * when the loop delivers it. */
    int seen = 0, done = 0;
    if (weft_subscribe(loop, "job.*", on_job_event, &seen, NULL) == 0)
        fail("weft_subscribe(job.*)");
    if (weft_subscribe(loop, "job.done", on_done, &done, NULL) == 0)
        fail("weft_subscribe(job.done)");

    pthread_t thread;
    if (pthread_create(&thread, NULL, worker, loop) != 0) {
        fprintf(stderr, "topics: pthread_create failed\n");
        return 1;
    }

    /* Subscriptions keep a DEFAULT run going; on_done's weft_loop_stop ends it. */
    if (weft_loop_run(loop, WEFT_RUN_DEFAULT) != WEFT_OK)
        fail("weft_loop_run");

    /* The worker must be finished with the loop before it is freed. Freeing ends both
     * subscriptions. */
    pthread_join(thread, NULL);
    weft_loop_free(loop);

    if (!done || seen != 5) {
        fprintf(stderr, "topics: done %d, job.* saw %d events (expected 5)\n", done, seen);
        return 1;
    }
    return 0;
}
