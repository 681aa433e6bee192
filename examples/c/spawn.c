/*
 * spawn.c: one call, the right place for each job.
 *
 *   weft_spawn(loop, where, work, done, user_data, free_fn, options)
 *       where: WEFT_ON_LOOP  short, non-blocking work, on the loop thread
 *              WEFT_ON_IO    blocking calls (files, sleeps, DNS, a database client)
 *              WEFT_ON_CPU   computation, on a pool of one thread per core
 *       work(task, user_data) runs there and returns a status (>= 0); then
 *       done(loop, id, status, result, len, user_data) runs on the loop thread, once.
 *   weft_task_write / weft_task_emit      a result for done, events for subscribers
 *   weft_task_cancelled                   true after weft_cancel or a timeout
 *   weft_pool_new / weft_pool_free        a pool of your own: kind, threads, name, hooks
 *
 * The tour:
 *   primes   CPU   counts the primes below 2,000,000, emitting "progress.primes" events
 *   os       IO    reads /etc/os-release (a blocking read)
 *   hello    LOOP  a small job on the loop thread itself
 *   tile 0/1 CPU   half a Mandelbrot set each, on a pool "render" of 2 threads
 *   slow     IO    overruns its 100 ms timeout: done gets WEFT_ERR_TIMEOUT
 *   doomed   IO    cancelled by a timer after 30 ms: done gets WEFT_ERR_CANCELLED
 *
 * Each task keeps WEFT_RUN_DEFAULT running until its done has run. The progress
 * subscription would keep it running for ever, so the last done cancels it.
 */
#define _GNU_SOURCE /* pthread_getname_np */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <weft.h>

static void fail(const char *what)
{
    char msg[256];
    weft_last_error(msg, sizeof msg);
    fprintf(stderr, "spawn: %s failed: %s\n", what, msg);
    exit(1);
}

/* A work function's status for "a weft call failed in here". weft_last_error is per
 * thread, so the message is read right here, on the pool thread that got it. */
enum { WORK_FAILED = 100 };

static int work_failed(const char *what)
{
    char msg[256];
    weft_last_error(msg, sizeof msg);
    fprintf(stderr, "spawn: %s failed in a task: %s\n", what, msg);
    return WORK_FAILED;
}

static struct timespec start;

static long elapsed_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
}

static void sleep_ms(long ms)
{
    nanosleep(&(struct timespec){.tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000}, NULL);
}

/* State of the whole tour. While the loop runs, only done callbacks, the subscriber and
 * the timer touch it, and they all run on the loop thread (main): it needs no lock. */
struct tour {
    int pending;          /* tasks whose done has not run yet */
    int failures;         /* tasks whose done got an unexpected status */
    weft_id progress_sub; /* the subscription the last done cancels */
    weft_id doomed;       /* the task the timer cancels */
};

/* Every task's user_data: allocated per task, released by free_job. */
enum { ANY_STATUS = -1000 }; /* `expect` for a task whose status is any value >= 0 */
struct job {
    const char *name;
    int expect;          /* the status done should get */
    int tile;            /* render tasks: which half */
    struct tour *tour;   /* used only by done, on the loop thread */
};

/* free_fn runs once per task, after both its done and its work are over: on the loop
 * thread, or on the work's thread when the work outlives done (the timed-out task). */
static atomic_int jobs_spawned, jobs_freed;

static void free_job(void *user_data)
{
    free(user_data);
    atomic_fetch_add(&jobs_freed, 1);
}

/* ---- the work functions ----------------------------------------------------------- */

static int is_prime(int n)
{
    if (n < 2 || (n > 2 && n % 2 == 0))
        return 0;
    for (int d = 3; d * d <= n; d += 2)
        if (n % d == 0)
            return 0;
    return 1;
}

/* CPU: pure computation, so it goes to the CPU pool, where it cannot delay the loop
 * or the blocking calls on the IO pool. */
static int count_primes(weft_task *task, void *user_data)
{
    (void)user_data;
    enum { LIMIT = 2000000, STEP = LIMIT / 4 };
    int count = 0;
    for (int n = 0; n < LIMIT; n++) {
        count += is_prime(n);
        if ((n + 1) % STEP == 0) {
            /* A long computation checks now and then whether anyone still wants it. */
            if (weft_task_cancelled(task))
                return 1;
            char text[64];
            int len = snprintf(text, sizeof text, "%d%% (%d primes so far)",
                               (n + 1) / STEP * 25, count);
            /* Copied and delivered to subscribers on the loop thread, before done. */
            if (weft_task_emit(task, "progress.primes", text, (size_t)len) != WEFT_OK)
                return work_failed("weft_task_emit");
        }
    }
    char text[64];
    int len = snprintf(text, sizeof text, "%d primes below %d", count, LIMIT);
    if (weft_task_write(task, text, (size_t)len) != WEFT_OK) /* copied: done gets it */
        return work_failed("weft_task_write");
    return 0;
}

/* IO: a blocking read. On the loop thread it would stall every timer and watch; on the
 * IO pool it stalls nothing but its own thread. The status is ours: errno, or 0. */
static int read_os_release(weft_task *task, void *user_data)
{
    (void)user_data;
    FILE *file = fopen("/etc/os-release", "r");
    if (!file) {
        int err = errno;
        const char *text = strerror(err);
        if (weft_task_write(task, text, strlen(text)) != WEFT_OK)
            return work_failed("weft_task_write");
        return err;
    }
    char line[256];
    const char *text = "no PRETTY_NAME line";
    while (fgets(line, sizeof line, file)) {
        if (strncmp(line, "PRETTY_NAME=", 12) == 0) {
            line[strcspn(line, "\n")] = '\0';
            text = line + 12;
            break;
        }
    }
    int rc = weft_task_write(task, text, strlen(text));
    fclose(file);
    return rc == WEFT_OK ? 0 : work_failed("weft_task_write");
}

static pthread_t main_thread;

/* LOOP: runs on the loop thread in its next pass, so it must be quick. */
static int hello(weft_task *task, void *user_data)
{
    (void)user_data;
    const char *text = pthread_equal(pthread_self(), main_thread)
                           ? "ran on the loop thread (main)"
                           : "ran on some other thread?";
    if (weft_task_write(task, text, strlen(text)) != WEFT_OK)
        return work_failed("weft_task_write");
    return 0;
}

/* CPU, on the "render" pool: counts the points of half a 240x160 grid over
 * [-2, 1] x [-1.2, 1.2] that stay in the Mandelbrot set for 200 iterations. */
static int render_tile(weft_task *task, void *user_data)
{
    const struct job *job = user_data;
    enum { W = 240, H = 160, MAX_ITER = 200 };
    int inside = 0;
    for (int row = job->tile * H / 2; row < (job->tile + 1) * H / 2; row++) {
        if (weft_task_cancelled(task))
            return 1;
        for (int col = 0; col < W; col++) {
            double cr = -2.0 + 3.0 * (col + 0.5) / W, ci = -1.2 + 2.4 * (row + 0.5) / H;
            double zr = 0, zi = 0;
            int i = 0;
            while (i < MAX_ITER && zr * zr + zi * zi <= 4.0) {
                double t = zr * zr - zi * zi + cr;
                zi = 2 * zr * zi + ci;
                zr = t;
                i++;
            }
            inside += i == MAX_ITER;
        }
    }
    char thread[16]; /* the pool named it "render-<index>" */
    if (pthread_getname_np(pthread_self(), thread, sizeof thread) != 0)
        strcpy(thread, "?");
    char text[96];
    int len = snprintf(text, sizeof text, "%d of %d points in the set, on thread %s",
                       inside, W * H / 2, thread);
    if (weft_task_write(task, text, (size_t)len) != WEFT_OK)
        return work_failed("weft_task_write");
    return 0;
}

/* IO: stands for a call that takes too long. weft cannot stop a thread, so the work
 * polls weft_task_cancelled, which turns true on weft_cancel and at the timeout. The
 * 5 s bound only keeps a broken build from hanging. */
static int wait_for_cancel(weft_task *task, void *user_data)
{
    (void)user_data;
    for (int i = 0; i < 500 && !weft_task_cancelled(task); i++)
        sleep_ms(10);
    /* Written, but discarded: done already got (or will get) the cancel or timeout. */
    if (weft_task_write(task, "finished", 8) != WEFT_OK)
        return work_failed("weft_task_write");
    return 0;
}

/* ---- the loop side -------------------------------------------------------------- */

/* done: on the loop thread, exactly once per task. result/len are what the work wrote
 * (NULL/0 when cancelled or timed out), valid until done returns. */
static void on_done(weft_loop *loop, weft_id id, int status, const uint8_t *result,
                    size_t len, void *user_data)
{
    (void)id;
    struct job *job = user_data;
    struct tour *tour = job->tour;
    if (status >= 0)
        printf("[%4ld ms] %-7s status %d: %.*s\n", elapsed_ms(), job->name, status,
               (int)len, len ? (const char *)result : "");
    else
        printf("[%4ld ms] %-7s %s\n", elapsed_ms(), job->name, weft_strerror(status));

    int ok = job->expect == ANY_STATUS ? status >= 0 : status == job->expect;
    if (!ok) {
        fprintf(stderr, "spawn: %s: expected status %d, got %d\n", job->name, job->expect,
                status);
        tour->failures++;
    }
    /* The last task is done: end the subscription, so that the loop has nothing left
     * and WEFT_RUN_DEFAULT returns. */
    if (--tour->pending == 0 && weft_cancel(loop, tour->progress_sub) != WEFT_OK)
        fail("weft_cancel(subscription)");
}

/* The subscriber: events that count_primes emitted with weft_task_emit. */
static void on_progress(weft_loop *loop, weft_id sub, const char *topic, const void *payload,
                        size_t len, void *user_data)
{
    (void)loop;
    (void)sub;
    (void)user_data;
    printf("[%4ld ms] %s: %.*s\n", elapsed_ms(), topic, (int)len, (const char *)payload);
}

static void cancel_doomed(weft_loop *loop, weft_id timer, void *user_data)
{
    (void)timer;
    struct tour *tour = user_data;
    /* The work may be running (its weft_task_cancelled turns true; done comes when it
     * returns) or still queued (it never runs; done comes in the next pass). */
    printf("[%4ld ms] weft_cancel(doomed)\n", elapsed_ms());
    if (weft_cancel(loop, tour->doomed) != WEFT_OK)
        fail("weft_cancel(doomed)");
}

/* Allocates a task's user_data and spawns it; weft owns the job from then on. */
static weft_id spawn_job(weft_loop *loop, struct tour *tour, weft_where where,
                         weft_work_fn work, const char *name, int expect, int tile,
                         const weft_spawn_options *options)
{
    struct job *job = malloc(sizeof *job);
    if (!job) {
        fprintf(stderr, "spawn: out of memory\n");
        exit(1);
    }
    *job = (struct job){.name = name, .expect = expect, .tile = tile, .tour = tour};
    weft_id id = weft_spawn(loop, where, work, on_done, job, free_job, options);
    if (id == 0) {
        free(job); /* a failed call never runs free_fn: the job is still ours */
        fail(name);
    }
    tour->pending++;
    atomic_fetch_add(&jobs_spawned, 1);
    return id;
}

/* Pool thread hooks: run on each "render" thread as it starts and before it exits. */
struct hook_counts {
    atomic_int started, stopped;
};

static void on_render_start(uint32_t index, void *data)
{
    (void)index;
    atomic_fetch_add(&((struct hook_counts *)data)->started, 1);
}

static void on_render_stop(uint32_t index, void *data)
{
    (void)index;
    atomic_fetch_add(&((struct hook_counts *)data)->stopped, 1);
}

int main(void)
{
    clock_gettime(CLOCK_MONOTONIC, &start);
    main_thread = pthread_self();

    weft_loop *loop = weft_loop_new();
    if (!loop)
        fail("weft_loop_new");
    struct tour tour = {0};

    /* Subscribe before spawning, so no progress event finds no subscriber. */
    tour.progress_sub = weft_subscribe(loop, "progress.*", on_progress, NULL, NULL);
    if (tour.progress_sub == 0)
        fail("weft_subscribe(progress.*)");

    /* The defaults need no options (NULL): the default CPU and IO pools start on
     * first use. */
    spawn_job(loop, &tour, WEFT_ON_CPU, count_primes, "primes", 0, 0, NULL);
    spawn_job(loop, &tour, WEFT_ON_IO, read_os_release, "os", ANY_STATUS, 0, NULL);
    spawn_job(loop, &tour, WEFT_ON_LOOP, hello, "hello", 0, 0, NULL);

    /* A pool of our own. Options structs start with their size: zero-initialise, set
     * size = sizeof, then the fields you need (a later weft may add fields at the end). */
    struct hook_counts hooks = {0};
    weft_pool_options pool_options = {
        .size = sizeof pool_options,
        .kind = WEFT_POOL_CPU,
        .threads = 2,
        .name = "render", /* threads "render-0", "render-1", as in top -H and gdb */
        .on_thread_start = on_render_start,
        .on_thread_stop = on_render_stop,
        .hook_data = &hooks,
    };
    weft_pool *render = weft_pool_new(&pool_options);
    if (!render)
        fail("weft_pool_new(render)");
    weft_spawn_options on_render = {.size = sizeof on_render, .pool = render};
    spawn_job(loop, &tour, WEFT_ON_CPU, render_tile, "tile 0", 0, 0, &on_render);
    spawn_job(loop, &tour, WEFT_ON_CPU, render_tile, "tile 1", 0, 1, &on_render);

    /* A deadline: done gets WEFT_ERR_TIMEOUT at 100 ms, without waiting for the work. */
    weft_spawn_options within_100ms = {.size = sizeof within_100ms, .timeout_ms = 100};
    spawn_job(loop, &tour, WEFT_ON_IO, wait_for_cancel, "slow", WEFT_ERR_TIMEOUT, 0,
              &within_100ms);

    /* A task cancelled with weft_cancel, from a timer on the loop thread. */
    tour.doomed = spawn_job(loop, &tour, WEFT_ON_IO, wait_for_cancel, "doomed",
                            WEFT_ERR_CANCELLED, 0, NULL);
    if (weft_timer_after(loop, 30, cancel_doomed, &tour, NULL) == 0)
        fail("weft_timer_after");

    /* WEFT_ON_PROCESS (work in a forked child) has an example of its own: render.c. */

    /* Runs until every done has run and the last one cancelled the subscription. */
    if (weft_loop_run(loop, WEFT_RUN_DEFAULT) != WEFT_OK)
        fail("weft_loop_run");

    /* Joins the render threads (their tasks are over). Then the loop: nothing is
     * registered any more. weft_shutdown joins the default pools: a work that outlived
     * its done (like "slow" after its timeout) is waited for, and its free_fn runs when
     * it returns, on its pool thread. After this weft holds no thread and no fd. */
    weft_pool_free(render);
    weft_loop_free(loop);
    weft_shutdown();

    int started = atomic_load(&hooks.started), stopped = atomic_load(&hooks.stopped);
    int spawned = atomic_load(&jobs_spawned), freed = atomic_load(&jobs_freed);
    printf("render pool: %d threads started, %d stopped; %d of %d jobs freed\n", started,
           stopped, freed, spawned);
    if (tour.pending != 0 || tour.failures != 0 || started != 2 || stopped != 2 ||
        freed != spawned) {
        fprintf(stderr, "spawn: %d tasks pending, %d failed\n", tour.pending, tour.failures);
        return 1;
    }
    return 0;
}
