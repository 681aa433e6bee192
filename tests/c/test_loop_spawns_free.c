/* Tasks spawned from the loop's own callbacks (weft's lock-free path, see
 * test_loop_spawns.c), freed in flight: a loop or a pool freed with such tasks queued
 * or running (done and free_fn exactly once), and workers that start while a long
 * callback is still spawning (publication). */
#include "harness.h"
#include "tasks_util.h"
#include "loop_spawns_work.h"

#include <sched.h>
#include <sys/mman.h>
#include <sys/wait.h>

/* ---- freeing ----------------------------------------------------------------------- */

static int active_works(rec *r, int n) {
    int a = 0;
    for (int i = 0; i < n; i++) a += atomic_load(&r[i].work_active);
    return a;
}
/* A loop freed with tasks it spawned from its callbacks still in flight (running, and
 * queued behind them): no done runs after the free, every free_fn runs once, on the
 * work's thread for a task that had started; a queued task never starts. */
TEST(loop_freed_with_loop_spawned_tasks_in_flight) {
    weft_pool_options po = pool_opts(WEFT_POOL_CPU, 2, "lsf");
    weft_pool *two = weft_pool_new(&po);
    REQUIRE(two != NULL);
    weft_spawn_options on2 = spawn_opts(two, 0);
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    enum { N = 100 };
    static rec r[N];
    _Atomic int gate = 0;
    for (int i = 0; i < N; i++) {
        rec_init(&r[i]);
        r[i].gate = &gate;
        r[i].out = (const unsigned char *)"lost";
        r[i].out_len = 4;
    }
    spawner s = {.where = WEFT_ON_CPU, .opts = &on2, .recs = r, .n = N};
    REQUIRE(spawn_from_callback(lp, &s));
    /* Both threads busy (which two tasks: see the known bug in test_tasks'
     * loop_freed_with_tasks_in_flight). */
    CHECK(WAIT_FOR(active_works(r, N) == 2, h_slack_ms(5000)));
    CHECK_OK(weft_cancel(lp, atomic_load(&r[N - 1].id))); /* one cancelled, not yet reported */
    weft_loop_free(lp);
    int started[N];
    for (int i = 0; i < N; i++) started[i] = atomic_load(&r[i].work_runs);
    for (int i = 0; i < N; i++)
        if (!started[i]) CHECK_MSG(atomic_load(&r[i].frees) == 1, "queued task %d not freed with its loop", i);
    atomic_store(&gate, 1);
    for (int i = 0; i < N; i++)
        CHECK_MSG(WAIT_FOR(atomic_load(&r[i].frees) == 1, h_slack_ms(5000)), "task %d: free_fn ran %d times", i,
                  atomic_load(&r[i].frees));
    weft_pool_free(two);
    for (int i = 0; i < N; i++) {
        CHECK_EQ(atomic_load(&r[i].dones), 0);
        CHECK_EQ(atomic_load(&r[i].frees), 1);
        CHECK_EQ(atomic_load(&r[i].work_runs), started[i]);
        if (started[i]) CHECK(pthread_equal(r[i].free_thread, r[i].work_thread));
    }
    int n_started = 0;
    for (int i = 0; i < N; i++) n_started += started[i];
    CHECK_EQ(n_started, 2);
}

/* A pool freed by the very callback that spawned tasks on it (so before they were
 * published): each task gets one done, CANCELLED or its status, and one free_fn. */
typedef struct pool_gone {
    weft_pool *pool;
    rec *r;
    int n;
    _Atomic int over;
} pool_gone;
static void pool_gone_cb(weft_loop *lp, weft_id id, void *ud) {
    (void)id;
    pool_gone *g = (pool_gone *)ud;
    weft_spawn_options o = spawn_opts(g->pool, 0);
    for (int i = 0; i < g->n; i++) rec_spawn(lp, WEFT_ON_CPU, &g->r[i], &o);
    weft_pool_free(g->pool);
    atomic_store(&g->over, 1);
}
static void spawn_on_freed_cb(weft_loop *lp, weft_id id, void *ud) {
    (void)id;
    pool_gone *g = (pool_gone *)ud;
    weft_spawn_options o = spawn_opts(g->pool, 0); /* freed: refused, free_fn not run */
    if (weft_spawn(lp, WEFT_ON_CPU, rec_work, rec_done, &g->r[0], never_free, &o) != 0)
        h_fail(__FILE__, __LINE__, "a spawn on a freed pool was accepted");
    else if (weft_last_error_code() != WEFT_ERR_INVALID && weft_last_error_code() != WEFT_ERR_CLOSED)
        h_fail(__FILE__, __LINE__, "a spawn on a freed pool failed with %d: %s", weft_last_error_code(),
               h_last_error());
    atomic_store(&g->over, 1);
}
TEST(pool_freed_by_the_callback_that_spawned_on_it) {
    weft_pool_options po = pool_opts(WEFT_POOL_CPU, 1, "lsg");
    weft_pool *pool = weft_pool_new(&po);
    REQUIRE(pool != NULL);
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    enum { N = 10 };
    rec r[N];
    for (int i = 0; i < N; i++) rec_init(&r[i]), r[i].ret = 5;
    pool_gone g = {.pool = pool, .r = r, .n = N};
    CHECK_ID(weft_post(lp, pool_gone_cb, &g, NULL));
    CHECK(run_until(lp, &g.over, 1, h_slack_ms(5000)));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    for (int i = 0; i < N; i++) {
        CHECK_EQ(atomic_load(&r[i].dones), 1);
        CHECK_EQ(atomic_load(&r[i].frees), 1);
        CHECK_MSG(r[i].status == 5 || r[i].status == WEFT_ERR_CANCELLED, "task %d: status %d", i, r[i].status);
        if (r[i].status == WEFT_ERR_CANCELLED) CHECK_EQ(atomic_load(&r[i].work_runs), 0);
    }
    /* And a later spawn on the freed pool, from a callback, is refused. */
    atomic_store(&g.over, 0);
    CHECK_ID(weft_post(lp, spawn_on_freed_cb, &g, NULL));
    CHECK(run_until(lp, &g.over, 1, h_slack_ms(5000)));
    CHECK_EQ(atomic_load(&r[0].dones), 1);
    weft_loop_free(lp);
}

/* Many loops, each run on a thread of its own, spawn from their callbacks onto one
 * CPU pool at once: each task completes once on its own loop. */
typedef struct loop_job {
    weft_loop *lp;
    rec *r;
    int n;
} loop_job;
static void *loop_job_main(void *arg) {
    loop_job *j = (loop_job *)arg;
    spawner s = {.where = WEFT_ON_CPU, .recs = j->r, .n = j->n};
    if (weft_post(j->lp, spawn_cb, &s, NULL) == 0) h_fail(__FILE__, __LINE__, "post failed");
    if (weft_loop_run(j->lp, WEFT_RUN_DEFAULT) != WEFT_OK) h_fail(__FILE__, __LINE__, "run failed");
    return NULL;
}
TEST(four_loops_spawn_from_callbacks_onto_one_pool) {
    enum { L = 4, N = 2000 };
    static rec r[L][N];
    loop_job j[L];
    pthread_t th[L];
    int n = (int)h_scale(N, 200);
    for (int l = 0; l < L; l++) {
        j[l].lp = weft_loop_new();
        REQUIRE(j[l].lp != NULL);
        j[l].r = r[l];
        j[l].n = n;
        for (int i = 0; i < n; i++) rec_init(&r[l][i]), r[l][i].ret = l;
    }
    for (int l = 0; l < L; l++) pthread_create(&th[l], NULL, loop_job_main, &j[l]);
    for (int l = 0; l < L; l++) pthread_join(th[l], NULL);
    for (int l = 0; l < L; l++) {
        CHECK_EQ(rec_dones(r[l], n), n);
        for (int i = 0; i < n; i++) {
            CHECK_EQ(atomic_load(&r[l][i].frees), 1);
            CHECK_EQ(r[l][i].status, l);
            CHECK(r[l][i].done_lp == j[l].lp);
        }
        weft_loop_free(j[l].lp);
    }
}

/* ---- publication -------------------------------------------------------------------- */

/* A callback spawns exactly 64 tasks (one full group, nothing left for the callback's
 * end) while one worker of a 2-thread pool is busy and the other sleeps: the sleeper is
 * woken, and runs them all while the busy one still is. */
static _Atomic int full_runs;
static int full_work(weft_task *t, void *ud) {
    (void)t, (void)ud;
    atomic_fetch_add(&full_runs, 1);
    return 0;
}
typedef struct full_group {
    weft_spawn_options *opts;
    int n;
    _Atomic int over;
} full_group;
static void full_group_cb(weft_loop *lp, weft_id id, void *ud) {
    (void)id;
    full_group *g = (full_group *)ud;
    for (int i = 0; i < g->n; i++)
        if (weft_spawn(lp, WEFT_ON_CPU, full_work, NULL, NULL, NULL, g->opts) == 0)
            h_fail(__FILE__, __LINE__, "spawn failed: %s", h_last_error());
    atomic_store(&g->over, 1);
}
TEST(whole_groups_of_64_wake_a_sleeping_worker) {
    int sizes[] = {63, 64, 65, 128};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        weft_pool_options po = pool_opts(WEFT_POOL_CPU, 2, "ls64");
        weft_pool *pool = weft_pool_new(&po);
        REQUIRE(pool != NULL);
        weft_spawn_options o = spawn_opts(pool, 0);
        weft_loop *lp = weft_loop_new();
        REQUIRE(lp != NULL);
        _Atomic int gate = 0;
        rec busy;
        rec_init(&busy);
        busy.gate = &gate;
        CHECK_ID(rec_spawn(lp, WEFT_ON_CPU, &busy, &o)); /* outside a callback */
        CHECK(WAIT_FOR(atomic_load(&busy.work_active) == 1, h_slack_ms(2000)));
        sleep_ms(50); /* the other worker parks */
        atomic_store(&full_runs, 0);
        full_group g = {.opts = &o, .n = sizes[k]};
        CHECK_ID(weft_post(lp, full_group_cb, &g, NULL));
        CHECK(run_until(lp, &g.over, 1, h_slack_ms(5000)));
        CHECK_MSG(WAIT_FOR(atomic_load(&full_runs) == sizes[k], h_slack_ms(2000)),
                  "%d tasks spawned in a callback: %d ran while a worker slept", sizes[k], atomic_load(&full_runs));
        atomic_store(&gate, 1);
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
        CHECK_EQ(atomic_load(&busy.frees), 1);
        weft_loop_free(lp);
        weft_pool_free(pool);
    }
}

/* Loop A's callback runs loop B (NOWAIT) whose callback spawns a task; then another
 * thread frees B, which is allowed since nobody runs it. B's tasks were published when
 * its run returned: nothing is left pointing at B's feeders (valgrind would see it when
 * A's callback returns), and the task's free_fn runs once. */
static weft_loop *nest_b;
static rec nest_rec;
static void nest_b_cb(weft_loop *lp, weft_id id, void *ud) {
    (void)id, (void)ud;
    if (rec_spawn(lp, WEFT_ON_CPU, &nest_rec, NULL) == 0) h_fail(__FILE__, __LINE__, "spawn failed");
}
static void *nest_free_b(void *arg) {
    (void)arg;
    weft_loop_free(nest_b);
    return NULL;
}
static _Atomic int nest_over;
static void nest_a_cb(weft_loop *lp, weft_id id, void *ud) {
    (void)lp, (void)id, (void)ud;
    if (weft_post(nest_b, nest_b_cb, NULL, NULL) == 0) h_fail(__FILE__, __LINE__, "post failed");
    if (weft_loop_run(nest_b, WEFT_RUN_NOWAIT) != WEFT_OK) h_fail(__FILE__, __LINE__, "nested run failed");
    pthread_t th;
    pthread_create(&th, NULL, nest_free_b, NULL);
    pthread_join(th, NULL);
    atomic_store(&nest_over, 1);
}
TEST(a_loop_run_inside_another_loops_callback_leaves_nothing_staged) {
    weft_loop *a = weft_loop_new();
    nest_b = weft_loop_new();
    REQUIRE(a != NULL && nest_b != NULL);
    rec_init(&nest_rec);
    atomic_store(&nest_over, 0);
    CHECK_ID(weft_post(a, nest_a_cb, NULL, NULL));
    CHECK(run_until(a, &nest_over, 1, h_slack_ms(5000)));
    WAIT_FREED(nest_rec);
    CHECK_EQ(atomic_load(&nest_rec.frees), 1);
    CHECK_EQ(atomic_load(&nest_rec.dones), 0); /* its loop was freed first */
    CHECK(atomic_load(&nest_rec.work_runs) <= 1);
    weft_loop_free(a);
}

/* A host forks inside a callback (as Python's os.fork() may) right after the callback
 * spawned a task, and the child returns into weft: the task is the parent's, and runs
 * there only. */
static int *fork_runs_shared; /* [0]: runs in the parent, [1]: in a child */
static pid_t fork_parent;
static int fork_work(weft_task *t, void *ud) {
    (void)t, (void)ud;
    __atomic_fetch_add(&fork_runs_shared[getpid() == fork_parent ? 0 : 1], 1, __ATOMIC_SEQ_CST);
    return 0;
}
static weft_pool *fork_pool;
static _Atomic int fork_dones;
static void fork_done(weft_loop *lp, weft_id id, int status, const uint8_t *res, size_t len, void *ud) {
    (void)lp, (void)id, (void)status, (void)res, (void)len, (void)ud;
    atomic_fetch_add(&fork_dones, 1);
}
static void fork_cb(weft_loop *lp, weft_id id, void *ud) {
    (void)id, (void)ud;
    weft_spawn_options o = spawn_opts(fork_pool, 0);
    if (weft_spawn(lp, WEFT_ON_CPU, fork_work, fork_done, NULL, NULL, &o) == 0)
        h_fail(__FILE__, __LINE__, "spawn failed");
    pid_t c = fork();
    if (c == 0) return; /* the child goes back into weft */
    int st;
    waitpid(c, &st, 0);
}
TEST(a_fork_inside_a_callback_leaves_its_tasks_to_the_parent) {
    fork_runs_shared = (int *)mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    REQUIRE(fork_runs_shared != MAP_FAILED);
    fork_parent = getpid();
    weft_pool_options po = pool_opts(WEFT_POOL_CPU, 1, "lsfk"); /* not started yet */
    fork_pool = weft_pool_new(&po);
    REQUIRE(fork_pool != NULL);
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    atomic_store(&fork_dones, 0);
    CHECK_ID(weft_post(lp, fork_cb, NULL, NULL));
    weft_loop_run(lp, WEFT_RUN_ONCE);
    if (getpid() != fork_parent) {
        sleep_ms(300); /* time for a pool thread to run the task, were one started */
        _exit(0);
    }
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    CHECK_EQ(atomic_load(&fork_dones), 1);
    CHECK_EQ(fork_runs_shared[0], 1);
    CHECK_EQ(fork_runs_shared[1], 0);
    weft_loop_free(lp);
    weft_pool_free(fork_pool);
    munmap(fork_runs_shared, 4096);
}
