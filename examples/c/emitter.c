/*
 * emitter.c: a small C library built on weft (see emitter.h). Built as a shared
 * library by `make -C examples/c emitter`; the Node example loads it with koffi.
 */
#define _POSIX_C_SOURCE 200809L
#include "emitter.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct emitter {
    pthread_t thread;
    weft_loop *loop;
    uint32_t count;
    uint32_t interval_us;
    int failures;
    char tick[224];
    char done[224];
};

static void sleep_us(uint32_t us)
{
    struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (long)(us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static void *emitter_main(void *arg)
{
    emitter *em = arg;
    char text[16];
    for (uint32_t i = 0; i < em->count; i++) {
        if (i > 0 && em->interval_us > 0)
            sleep_us(em->interval_us);
        int len = snprintf(text, sizeof text, "%u", i);
        /* weft copies the topic and the payload, and never waits for the loop. */
        if (weft_emit(em->loop, em->tick, text, (size_t)len) != WEFT_OK)
            em->failures++;
    }
    int len = snprintf(text, sizeof text, "%u", em->count);
    if (weft_emit(em->loop, em->done, text, (size_t)len) != WEFT_OK)
        em->failures++;
    return NULL;
}

emitter *emitter_start(weft_loop *loop, const char *prefix, uint32_t count, uint32_t interval_us)
{
    if (!loop || !prefix || strlen(prefix) > 200)
        return NULL;
    emitter *em = calloc(1, sizeof *em);
    if (!em)
        return NULL;
    em->loop = loop;
    em->count = count;
    em->interval_us = interval_us;
    snprintf(em->tick, sizeof em->tick, "%s.tick", prefix);
    snprintf(em->done, sizeof em->done, "%s.done", prefix);
    if (pthread_create(&em->thread, NULL, emitter_main, em) != 0) {
        free(em);
        return NULL;
    }
    return em;
}

int emitter_join(emitter *em)
{
    if (!em)
        return -1;
    pthread_join(em->thread, NULL);
    int failures = em->failures;
    free(em);
    return failures;
}

static int write_text(weft_task *task, const char *text)
{
    return weft_task_write(task, text, strlen(text));
}

int emitter_work_sum(weft_task *task, void *user_data)
{
    long long sum = 0;
    const char *p = user_data;
    while (p && *p) {
        char *end;
        long long v = strtoll(p, &end, 10);
        if (end == p)
            break;
        sum += v;
        p = end;
    }
    char text[32];
    snprintf(text, sizeof text, "%lld", sum);
    write_text(task, text);
    return 0;
}

int emitter_work_sleep(weft_task *task, void *user_data)
{
    long ms = user_data ? strtol(user_data, NULL, 10) : 0;
    for (long i = 0; i < ms; i++) {
        if (weft_task_cancelled(task)) {
            write_text(task, "cancelled");
            return 1;
        }
        sleep_us(1000);
    }
    write_text(task, "slept");
    return 0;
}

int emitter_work_progress(weft_task *task, void *user_data)
{
    char topic[200] = "progress";
    unsigned n = 0;
    if (user_data)
        sscanf(user_data, "%199s %u", topic, &n);
    for (unsigned i = 1; i <= n; i++) {
        char text[16];
        int len = snprintf(text, sizeof text, "%u", i);
        weft_task_emit(task, topic, text, (size_t)len);
    }
    write_text(task, "done");
    return 0;
}

int emitter_work_status(weft_task *task, void *user_data)
{
    (void)task;
    return user_data ? atoi(user_data) : 0;
}
