/*
 * tour.c: the program of examples/cpp/tour.cpp, written against the C header: timers,
 * topics, an fd watch, a CPU task, an IO task that times out, a process task, and a post
 * from another thread. Every callback is a function taking user_data; every
 * registration that owns memory passes a free_fn; every call is checked by hand.
 */
#define _DEFAULT_SOURCE /* usleep */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <weft.h>

static struct timespec t0;

static void logf_(const char *fmt, ...)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long long ms = (now.tv_sec - t0.tv_sec) * 1000LL + (now.tv_nsec - t0.tv_nsec) / 1000000;
    printf("%4lld ms  ", ms);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

static weft_id check_id(weft_id id, const char *what)
{
    if (id == 0) {
        char msg[256];
        weft_last_error(msg, sizeof msg);
        fprintf(stderr, "tour: %s failed: %s\n", what, msg);
        exit(1);
    }
    return id;
}

static void check_rc(int rc, const char *what)
{
    if (rc < 0)
        check_id(0, what);
}

/* 1. Timers. */
static void on_tick(weft_loop *loop, weft_id id, void *ud)
{
    int *ticks = ud;
    logf_("tick %d", ++*ticks);
    if (*ticks == 5)
        check_rc(weft_cancel(loop, id), "weft_cancel"); /* from its own callback: final */
}

static void on_once(weft_loop *loop, weft_id id, void *ud)
{
    (void)loop, (void)id, (void)ud;
    logf_("after 250 ms");
}

static void on_never(weft_loop *loop, weft_id id, void *ud)
{
    (void)loop, (void)id, (void)ud;
    logf_("never: cancelled");
}

/* 2. Events. */
static void on_job(weft_loop *loop, weft_id sub, const char *topic, const void *p, size_t len,
                   void *ud)
{
    (void)ud;
    logf_("[job.*] %s: %.*s", topic, (int)len, (const char *)p);
    if (strcmp(topic, "job.done") == 0)
        check_rc(weft_cancel(loop, sub), "weft_cancel");
}

static void on_done_event(weft_loop *loop, weft_id sub, const char *topic, const void *p,
                          size_t len, void *ud)
{
    (void)topic, (void)ud;
    logf_("[job.done] the job says %.*s; unsubscribing", (int)len, (const char *)p);
    check_rc(weft_cancel(loop, sub), "weft_cancel");
}

static void emit_done(weft_loop *loop, weft_id id, void *ud)
{
    (void)id, (void)ud;
    check_rc(weft_emit(loop, "job.done", "ok", 2), "weft_emit");
}

/* 3. An fd watch: a pipe, written to by a timer. */
static int fds[2];

static void on_readable(weft_loop *loop, weft_id id, int fd, uint32_t events, void *ud)
{
    (void)ud;
    char buf[100];
    ssize_t n = read(fd, buf, sizeof buf);
    logf_("fd %d readable (events %u): \"%.*s\"", fd, events, (int)(n > 0 ? n : 0), buf);
    check_rc(weft_cancel(loop, id), "weft_cancel");
    close(fds[0]);
    close(fds[1]);
}

static void write_pipe(weft_loop *loop, weft_id id, void *ud)
{
    (void)loop, (void)id, (void)ud;
    if (write(fds[1], "hello through a pipe", 20) != 20)
        perror("write");
}

/* 4. Work off the loop. */
static int sum_work(weft_task *task, void *ud)
{
    const char *numbers = ud;
    long sum = 0;
    char *end;
    for (const char *p = numbers;; p = end) {
        long x = strtol(p, &end, 10);
        if (end == p)
            break;
        sum += x;
    }
    char out[32];
    int n = snprintf(out, sizeof out, "%ld", sum);
    return weft_task_write(task, out, (size_t)n) == WEFT_OK ? 0 : 1;
}

static void sum_done(weft_loop *loop, weft_id id, int status, const uint8_t *r, size_t len,
                     void *ud)
{
    (void)loop, (void)id, (void)status, (void)ud;
    logf_("cpu task: sum = %.*s", (int)len, (const char *)r);
}

static int sleep_work(weft_task *task, void *ud)
{
    (void)ud;
    while (!weft_task_cancelled(task))
        usleep(5000);
    return 0;
}

static void sleep_done(weft_loop *loop, weft_id id, int status, const uint8_t *r, size_t len,
                       void *ud)
{
    (void)loop, (void)id, (void)r, (void)len, (void)ud;
    logf_("io task: %s", weft_strerror(status));
}

static int child_work(weft_task *task, void *ud)
{
    (void)ud;
    char out[32];
    int n = snprintf(out, sizeof out, "pid %d", (int)getpid());
    const char *msg = "from the child";
    check_rc(weft_task_emit(task, "job.progress", msg, strlen(msg)), "weft_task_emit");
    return weft_task_write(task, out, (size_t)n) == WEFT_OK ? 0 : 1;
}

static void child_done(weft_loop *loop, weft_id id, int status, const uint8_t *r, size_t len,
                       void *ud)
{
    (void)loop, (void)id, (void)status, (void)ud;
    logf_("process task (parent pid %d): %.*s", (int)getpid(), (int)len, (const char *)r);
}

/* 5. A post from another thread. */
static void on_post(weft_loop *loop, weft_id id, void *ud)
{
    (void)loop, (void)id, (void)ud;
    logf_("posted from another thread");
}

static void *poster(void *loop)
{
    check_id(weft_post(loop, on_post, NULL, NULL), "weft_post");
    return NULL;
}

int main(void)
{
    clock_gettime(CLOCK_MONOTONIC, &t0);
    weft_loop *loop = weft_loop_new();
    if (!loop)
        check_id(0, "weft_loop_new");
    logf_("weft %s, loop fd %d", weft_version(), weft_loop_fd(loop));

    int ticks = 0;
    check_id(weft_timer_every(loop, 100, on_tick, &ticks, NULL), "weft_timer_every");
    weft_id once = check_id(weft_timer_after(loop, 250, on_once, NULL, NULL), "weft_timer_after");
    logf_("timer id %#llx", (unsigned long long)once);
    weft_id never = check_id(weft_timer_after(loop, 1000, on_never, NULL, NULL), "weft_timer_after");
    check_rc(weft_cancel(loop, never), "weft_cancel");

    check_id(weft_subscribe(loop, "job.*", on_job, NULL, NULL), "weft_subscribe");
    check_id(weft_subscribe(loop, "job.done", on_done_event, NULL, NULL), "weft_subscribe");
    check_rc(weft_emit(loop, "job.progress", "50%", 3), "weft_emit");
    check_rc(weft_emit(loop, "job.progress", "100%", 4), "weft_emit");
    check_id(weft_timer_after(loop, 50, emit_done, NULL, NULL), "weft_timer_after");

    if (pipe(fds) != 0)
        return 1;
    check_id(weft_watch_fd(loop, fds[0], WEFT_READABLE, on_readable, NULL, NULL), "weft_watch_fd");
    check_id(weft_timer_after(loop, 150, write_pipe, NULL, NULL), "weft_timer_after");

    /* user_data is the caller's: a string that outlives the task, so no free_fn. */
    static const char numbers[] = "1 2 3 4 5";
    check_id(weft_spawn(loop, WEFT_ON_CPU, sum_work, sum_done, (void *)numbers, NULL, NULL),
             "weft_spawn");
    weft_spawn_options opts;
    memset(&opts, 0, sizeof opts);
    opts.size = sizeof opts;
    opts.timeout_ms = 200;
    check_id(weft_spawn(loop, WEFT_ON_IO, sleep_work, sleep_done, NULL, NULL, &opts), "weft_spawn");
    check_id(weft_spawn(loop, WEFT_ON_PROCESS, child_work, child_done, NULL, NULL, NULL),
             "weft_spawn");

    pthread_t thread;
    pthread_create(&thread, NULL, poster, loop);
    pthread_join(thread, NULL);

    check_rc(weft_loop_run(loop, WEFT_RUN_DEFAULT), "weft_loop_run");
    logf_("done");
    weft_loop_free(loop);
    return 0;
}
