/* Spawns made by the loop's owner outside its callbacks: before weft_loop_run, between
 * WEFT_RUN_NOWAIT passes, and from any thread while no thread runs the loop (weft.h,
 * "Who owns a loop"). Such a spawn takes the lock-free path of a spawn made in a
 * callback: its task lives in the loop's task table. Everything the API promises must
 * hold on that path too, and when a spawn races a thread that starts weft_loop_run, the
 * run must neither fail nor lose a task: done and free_fn exactly once, cancel from any
 * thread with the same answers. */
#include "harness.h"
#include "tasks_util.h"

#include <poll.h>
#include <sched.h>

/* A task-table id: kind bits 51..50 are 11 (src/slots.rs). White-box, on purpose: the
 * point of these cases is that the fast path is taken. */
static bool is_table_id(weft_id id) { return ((id >> 50) & 3u) == 3u; }


/* ---- before run, and between passes ------------------------------------------------ */

/* Tasks spawned before the loop ever ran, on the default CPU pool, a CPU pool of its
 * own and the default IO pool, take the table; each runs once, done and free once. */
TEST(spawns_before_run_take_the_table_and_run_once_each) {
    weft_pool_options po = pool_opts(WEFT_POOL_CPU, 2, "own-cpu");
    weft_pool *cpu = weft_pool_new(&po);
    REQUIRE(cpu != NULL);
    weft_spawn_options on_cpu = spawn_opts(cpu, 0);
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    enum { N = 600 };
    static rec r[N];
    int table = 0;
    for (int i = 0; i < N; i++) {
        rec_init(&r[i]);
        r[i].ret = i;
        weft_where where = i % 3 == 2 ? WEFT_ON_IO : WEFT_ON_CPU;
        weft_id id = CHECK_ID(rec_spawn(lp, where, &r[i], i % 3 == 1 ? &on_cpu : NULL));
        table += is_table_id(id);
    }
    CHECK_EQ(table, N);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    for (int i = 0; i < N; i++) {
        WAIT_FREED(r[i]);
        CHECK_EQ(atomic_load(&r[i].dones), 1);
        CHECK_EQ(atomic_load(&r[i].work_runs), 1);
        CHECK_EQ(r[i].status, i);
        CHECK_EQ(r[i].done_id, atomic_load(&r[i].id));
    }
    weft_loop_free(lp);
    weft_pool_free(cpu);
}

/* The bindings' shape: spawns between NOWAIT passes; each pass serves what is back. */
TEST(spawns_between_nowait_passes_take_the_table) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    enum { N = 2000 };
    static rec r[N];
    int table = 0;
    for (int i = 0; i < N; i++) {
        rec_init(&r[i]);
        table += is_table_id(CHECK_ID(rec_spawn(lp, WEFT_ON_CPU, &r[i], NULL)));
        if (i % 50 == 49) CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    }
    CHECK_EQ(table, N);
    uint64_t end = now_ms() + h_slack_ms(10000);
    while (rec_dones(r, N) < N && now_ms() < end) CHECK_OK(weft_loop_run(lp, WEFT_RUN_ONCE));
    CHECK_EQ(rec_dones(r, N), N);
    for (int i = 0; i < N; i++) {
        WAIT_FREED(r[i]);
        CHECK_EQ(atomic_load(&r[i].dones), 1);
    }
    weft_loop_free(lp);
}

/* A 1-thread CPU pool named `name`, spawn options naming it, and a loop; false (nothing
 * made) if either fails. */
static bool one_thread_pool_and_loop(const char *name, weft_pool **pool, weft_spawn_options *opts, weft_loop **lp) {
    weft_pool_options po = pool_opts(WEFT_POOL_CPU, 1, name);
    *pool = weft_pool_new(&po);
    if (*pool == NULL) return false;
    *opts = spawn_opts(*pool, 0);
    *lp = weft_loop_new();
    if (*lp == NULL) weft_pool_free(*pool);
    return *lp != NULL;
}

/* A task spawned before run and cancelled before run reports CANCELLED once, in the
 * first pass; its work never runs (the 1-thread pool is blocked meanwhile). A second
 * cancel, and one after done, find nothing. */
TEST(cancel_of_a_task_spawned_before_run) {
    weft_pool *one;
    weft_spawn_options on1;
    weft_loop *lp;
    REQUIRE(one_thread_pool_and_loop("own-one", &one, &on1, &lp));
    _Atomic int gate = 0;
    rec blocker, queued;
    rec_init(&blocker);
    rec_init(&queued);
    blocker.gate = &gate;
    CHECK_ID(rec_spawn(lp, WEFT_ON_CPU, &blocker, &on1));
    weft_id id = CHECK_ID(rec_spawn(lp, WEFT_ON_CPU, &queued, &on1));
    CHECK(is_table_id(id));
    CHECK(WAIT_FOR(atomic_load(&blocker.work_runs) == 1, h_slack_ms(5000)));
    CHECK_OK(weft_cancel(lp, id));
    CHECK_RC(weft_cancel(lp, id), WEFT_ERR_NOT_FOUND);
    atomic_store(&gate, 1);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    WAIT_FREED(queued);
    WAIT_FREED(blocker);
    CHECK_EQ(atomic_load(&queued.dones), 1);
    CHECK_EQ(queued.status, WEFT_ERR_CANCELLED);
    CHECK_EQ(atomic_load(&queued.work_runs), 0);
    CHECK_EQ(atomic_load(&blocker.dones), 1);
    CHECK_RC(weft_cancel(lp, id), WEFT_ERR_NOT_FOUND);
    weft_loop_free(lp);
    weft_pool_free(one);
}

/* A loop freed before it ever ran, with table tasks queued behind a busy pool and one
 * running: no done, every free_fn once, a queued task never starts. */
TEST(loop_freed_before_run_with_table_tasks_in_flight) {
    weft_pool *one;
    weft_spawn_options on1;
    weft_loop *lp;
    REQUIRE(one_thread_pool_and_loop("own-free", &one, &on1, &lp));
    enum { N = 20 };
    static rec r[N];
    _Atomic int gate = 0;
    for (int i = 0; i < N; i++) {
        rec_init(&r[i]);
        r[i].gate = &gate;
        CHECK(is_table_id(CHECK_ID(rec_spawn(lp, WEFT_ON_CPU, &r[i], &on1))));
    }
    CHECK(WAIT_FOR(atomic_load(&r[0].work_active) == 1, h_slack_ms(5000)));
    weft_loop_free(lp);
    atomic_store(&gate, 1);
    for (int i = 0; i < N; i++) WAIT_FREED(r[i]);
    weft_pool_free(one);
    for (int i = 0; i < N; i++) {
        CHECK_EQ(atomic_load(&r[i].dones), 0);
        CHECK_EQ(atomic_load(&r[i].frees), 1);
        CHECK_EQ(atomic_load(&r[i].work_runs), i == 0 ? 1 : 0);
    }
}

/* ---- threads racing for the loop ----------------------------------------------------- */

/* Spawner threads spawn in a tight loop while another thread keeps starting and ending
 * runs (NOWAIT and ONCE) and a third cancels at random. A spawn that finds the loop
 * free takes the table, one that finds it running takes the locked path: both kinds
 * occur, no run fails (a spawn holding the loop makes a starting run wait, not fail),
 * and every task has done once and free once, CANCELLED exactly when a cancel said OK. */
enum { RACE_SPAWNERS = 2, RACE_PER = 6000 };
typedef struct race {
    weft_loop *lp;
    rec *r;
    _Atomic int *ok;
    _Atomic int spawned, table, stop;
} race;
typedef struct spawner_arg {
    race *race;
    int from, to;
} spawner_arg;
static void *race_spawner(void *arg) {
    spawner_arg *a = (spawner_arg *)arg;
    race *rc = a->race;
    for (int i = a->from; i < a->to; i++) {
        weft_id id = rec_spawn(rc->lp, WEFT_ON_CPU, &rc->r[i], NULL);
        if (id == 0) h_fail(__FILE__, __LINE__, "spawn %d failed: %s", i, h_last_error());
        atomic_fetch_add(&rc->table, is_table_id(id));
        atomic_fetch_add(&rc->spawned, 1);
        if (i % 64 == 0) sched_yield();
    }
    return NULL;
}
static void *race_canceller(void *arg) {
    race *rc = (race *)arg;
    unsigned seed = 12345;
    int n = RACE_SPAWNERS * (int)h_scale(RACE_PER, 300);
    while (!atomic_load(&rc->stop)) {
        int i = (int)(rand_r(&seed) % (unsigned)n);
        weft_id id = atomic_load(&rc->r[i].id);
        if (id == 0) {
            sched_yield();
            continue;
        }
        int code = weft_cancel(rc->lp, id);
        if (code == WEFT_OK)
            atomic_fetch_add(&rc->ok[i], 1);
        else if (code != WEFT_ERR_NOT_FOUND)
            h_fail(__FILE__, __LINE__, "weft_cancel returned %d", code);
        if (h_valgrind()) sched_yield();
    }
    return NULL;
}
TEST(spawns_race_runs_starting_on_another_thread) {
    int per = (int)h_scale(RACE_PER, 300), n = RACE_SPAWNERS * per;
    static race rc;
    memset((void *)&rc, 0, sizeof rc);
    rc.lp = weft_loop_new();
    REQUIRE(rc.lp != NULL);
    rc.r = (rec *)calloc((size_t)n, sizeof(rec));
    rc.ok = (_Atomic int *)calloc((size_t)n, sizeof(_Atomic int));
    REQUIRE(rc.r != NULL && rc.ok != NULL);
    pthread_t sp[RACE_SPAWNERS], canceller;
    spawner_arg args[RACE_SPAWNERS];
    for (int t = 0; t < RACE_SPAWNERS; t++) {
        args[t] = (spawner_arg){&rc, t * per, (t + 1) * per};
        REQUIRE(pthread_create(&sp[t], NULL, race_spawner, &args[t]) == 0);
    }
    REQUIRE(pthread_create(&canceller, NULL, race_canceller, &rc) == 0);
    int runs = 0;
    uint64_t end = now_ms() + h_slack_ms(20000);
    while ((atomic_load(&rc.spawned) < n || rec_dones(rc.r, n) < n) && now_ms() < end) {
        CHECK_OK(weft_loop_run(rc.lp, runs % 2 ? WEFT_RUN_NOWAIT : WEFT_RUN_ONCE));
        runs++;
        if (runs % 4 == 0) nanosleep(&(struct timespec){0, 50000}, NULL); /* nobody runs the loop */
    }
    for (int t = 0; t < RACE_SPAWNERS; t++) pthread_join(sp[t], NULL);
    atomic_store(&rc.stop, 1);
    pthread_join(canceller, NULL);
    CHECK_OK(weft_loop_run(rc.lp, WEFT_RUN_DEFAULT));
    int bad = 0, cancelled = 0;
    for (int i = 0; i < n; i++) {
        rec *r = &rc.r[i];
        if (!WAIT_FOR(atomic_load(&r->frees) == 1, h_slack_ms(5000))) bad++;
        int ok = atomic_load(&rc.ok[i]);
        if (atomic_load(&r->dones) != 1 || ok > 1 || (ok == 1) != (r->status == WEFT_ERR_CANCELLED) ||
            atomic_load(&r->work_runs) > 1) {
            if (bad++ < 5)
                h_fail(__FILE__, __LINE__, "task %d: %d dones, %d frees, %d cancels OK, status %d, %d runs", i,
                       atomic_load(&r->dones), atomic_load(&r->frees), ok, r->status, atomic_load(&r->work_runs));
        }
        cancelled += ok;
    }
    CHECK_EQ(bad, 0);
    int table = atomic_load(&rc.table);
    printf("    %d tasks from %d threads over %d runs: %d in the table, %d locked; %d cancelled\n", n,
           RACE_SPAWNERS, runs, table, n - table, cancelled);
    /* Both paths covered: spawners that found nobody running the loop took the table.
     * Since a spawn that is not the owner's goes locked at once, that window is narrow;
     * under ASan or valgrind a run may miss it (the accounting above still holds). */
    CHECK(table > 0 || h_asan() || h_valgrind());
    weft_loop_free(rc.lp);
    free(rc.r);
    free((void *)rc.ok);
}

/* While a thread runs the loop (blocked in DEFAULT), another thread's spawns take the
 * locked path and still complete once each. */
static void *run_default(void *lp) { return (void *)(intptr_t)weft_loop_run((weft_loop *)lp, WEFT_RUN_DEFAULT); }
static void keep_alive(weft_loop *lp, weft_id id, void *ud) { (void)lp, (void)id, (void)ud; }

/* A loop that thread `th` runs in DEFAULT, kept alive by an hour's timer `keep`. */
typedef struct {
    weft_loop *lp;
    weft_id keep;
    pthread_t th;
} running_loop;

static bool running_loop_start(running_loop *r) {
    r->lp = weft_loop_new();
    if (!r->lp) return false;
    r->keep = CHECK_ID(weft_timer_after(r->lp, 3600 * 1000, keep_alive, NULL, NULL));
    if (pthread_create(&r->th, NULL, run_default, r->lp) != 0) return false;
    sleep_ms(20); /* the run has begun (and holds the loop) */
    return true;
}

/* Cancels the timer, checks that the run returned WEFT_OK, frees the loop. */
static void running_loop_end(running_loop *r) {
    CHECK_OK(weft_cancel(r->lp, r->keep));
    void *rc;
    pthread_join(r->th, &rc);
    CHECK_EQ((int)(intptr_t)rc, WEFT_OK);
    weft_loop_free(r->lp);
}
TEST(spawns_while_another_thread_runs_the_loop_take_the_locked_path) {
    running_loop run;
    REQUIRE(running_loop_start(&run));
    weft_loop *lp = run.lp;
    enum { N = 500 };
    static rec r[N];
    int table = 0;
    for (int i = 0; i < N; i++) {
        rec_init(&r[i]);
        table += is_table_id(CHECK_ID(rec_spawn(lp, WEFT_ON_CPU, &r[i], NULL)));
    }
    CHECK_EQ(table, 0);
    for (int i = 0; i < N; i++) WAIT_FREED(r[i]);
    CHECK_EQ(rec_dones(r, N), N);
    running_loop_end(&run);
}

/* ---- no staged job waits for a later call ------------------------------------------ */

/* Spawns outside callbacks are staged where the pool's workers take them (src/pool/
 * stage.rs). Whatever the owner does next, even block without calling weft at all,
 * every such task must run: here the last of a group of tasks writes to a pipe, and the
 * spawner blocks on the pipe. Groups of 1, 2, 63 and 2000 tasks, each after the
 * workers had time to park, on the default CPU pool and on pools of 1 and 2 threads;
 * then from another thread while nobody runs the loop. */
typedef struct {
    int fd;           /* the pipe's write end */
    int n;            /* the group's size: the n-th task to run writes */
    _Atomic int ran;
    _Atomic int dones, frees;
} group;

static int group_work(weft_task *t, void *ud) {
    (void)t;
    group *g = (group *)ud;
    if (atomic_fetch_add(&g->ran, 1) + 1 == g->n) {
        char c = 'x';
        if (write(g->fd, &c, 1) != 1) abort();
    }
    return 0;
}
static void group_done(weft_loop *lp, weft_id id, int status, const uint8_t *res, size_t len, void *ud) {
    (void)lp, (void)id, (void)res, (void)len;
    if (status != 0) abort();
    atomic_fetch_add(&((group *)ud)->dones, 1);
}
static void group_free(void *ud) { atomic_fetch_add(&((group *)ud)->frees, 1); }

/* Spawns g->n tasks on `opts`'s pool (NULL: the default CPU pool), then waits for the
 * pipe without a weft call; true if the last task wrote within the time allowed. */
static bool spawn_group_and_block(weft_loop *lp, group *g, int rd, const weft_spawn_options *opts) {
    for (int i = 0; i < g->n; i++)
        if (weft_spawn(lp, WEFT_ON_CPU, group_work, group_done, g, group_free, opts) == 0) return false;
    struct pollfd p = {.fd = rd, .events = POLLIN};
    if (poll(&p, 1, (int)h_slack_ms(5000)) != 1) return false;
    char c;
    return read(rd, &c, 1) == 1;
}

TEST(a_task_spawned_outside_callbacks_runs_with_no_later_call) {
    static const int sizes[] = {1, 2, 63, 2000};
    enum { SIZES = sizeof sizes / sizeof sizes[0] };
    weft_pool_options o1 = pool_opts(WEFT_POOL_CPU, 1, "stage-1"), o2 = pool_opts(WEFT_POOL_CPU, 2, "stage-2");
    weft_pool *pools[3] = {NULL, weft_pool_new(&o1), weft_pool_new(&o2)};
    REQUIRE(pools[1] != NULL && pools[2] != NULL);
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    static group g[3][SIZES];
    for (int p = 0; p < 3; p++) {
        weft_spawn_options opts = spawn_opts(pools[p], 0);
        for (int s = 0; s < SIZES; s++) {
            g[p][s] = (group){.fd = fds[1], .n = sizes[s]};
            sleep_ms(5); /* the workers go to sleep */
            CHECK_MSG(spawn_group_and_block(lp, &g[p][s], fds[0], p ? &opts : NULL),
                      "pool %d, group of %d: %d of them ran", p, sizes[s], atomic_load(&g[p][s].ran));
        }
    }
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    for (int p = 0; p < 3; p++)
        for (int s = 0; s < SIZES; s++) {
            CHECK_EQ(atomic_load(&g[p][s].ran), sizes[s]);
            CHECK_EQ(atomic_load(&g[p][s].dones), sizes[s]);
            CHECK(WAIT_FOR(atomic_load(&g[p][s].frees) == sizes[s], h_slack_ms(5000)));
        }
    weft_loop_free(lp);
    weft_pool_free(pools[1]);
    weft_pool_free(pools[2]);
    close(fds[0]);
    close(fds[1]);
}

/* The same from another thread, while no thread runs the loop (the spawns take the
 * gate from that thread). */
typedef struct {
    weft_loop *lp;
    group *g;
    int rd;
    bool ok;
} blocker_arg;
static void *spawn_and_block(void *ud) {
    blocker_arg *a = (blocker_arg *)ud;
    a->ok = spawn_group_and_block(a->lp, a->g, a->rd, NULL);
    return NULL;
}
TEST(a_task_spawned_from_another_thread_outside_run_runs_with_no_later_call) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    static group g[3];
    static const int sizes[] = {1, 5, 500};
    for (int s = 0; s < 3; s++) {
        g[s] = (group){.fd = fds[1], .n = sizes[s]};
        blocker_arg a = {lp, &g[s], fds[0], false};
        sleep_ms(5);
        pthread_t th;
        REQUIRE(pthread_create(&th, NULL, spawn_and_block, &a) == 0);
        pthread_join(th, NULL);
        CHECK(a.ok);
    }
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    for (int s = 0; s < 3; s++) {
        CHECK_EQ(atomic_load(&g[s].dones), sizes[s]);
        CHECK(WAIT_FOR(atomic_load(&g[s].frees) == sizes[s], h_slack_ms(5000)));
    }
    weft_loop_free(lp);
    close(fds[0]);
    close(fds[1]);
}

/* The locked path stages too (on the loop's shared feeder, under its lock): spawns from
 * a thread while another runs the loop, blocked in DEFAULT with nothing to do, run with
 * no later call; groups of 1, 3 and 700 tasks. */
TEST(a_task_spawned_on_the_locked_path_runs_with_no_later_call) {
    running_loop run;
    REQUIRE(running_loop_start(&run));
    weft_loop *lp = run.lp;
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    static group g[3];
    static const int sizes[] = {1, 3, 700};
    for (int s = 0; s < 3; s++) {
        g[s] = (group){.fd = fds[1], .n = sizes[s]};
        sleep_ms(5); /* the workers go to sleep */
        CHECK_MSG(spawn_group_and_block(lp, &g[s], fds[0], NULL), "group of %d: %d of them ran", sizes[s],
                  atomic_load(&g[s].ran));
    }
    for (int s = 0; s < 3; s++) CHECK(WAIT_FOR(atomic_load(&g[s].frees) == sizes[s], h_slack_ms(5000)));
    running_loop_end(&run);
    for (int s = 0; s < 3; s++) CHECK_EQ(atomic_load(&g[s].dones), sizes[s]);
    close(fds[0]);
    close(fds[1]);
}

/* ---- the owner keeps the loop between its calls ----------------------------------- */

/* A thread that spawned outside run keeps the loop for its next spawns (table ids);
 * another thread's spawns meanwhile take the locked path. A run on a third thread takes
 * the loop away from the first and serves every task; after it, the first thread's
 * spawns take the table again. done and free_fn once each. */
typedef struct {
    weft_loop *lp;
    rec *r;
    int n, table;
} spawn_arg;
static void *spawn_some(void *ud) {
    spawn_arg *a = (spawn_arg *)ud;
    for (int i = 0; i < a->n; i++) {
        rec_init(&a->r[i]);
        weft_id id = rec_spawn(a->lp, WEFT_ON_CPU, &a->r[i], NULL);
        if (id == 0) h_fail(__FILE__, __LINE__, "spawn %d failed: %s", i, h_last_error());
        a->table += is_table_id(id);
    }
    return NULL;
}
TEST(the_owner_keeps_the_loop_until_another_thread_runs_it) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    enum { N = 300 };
    static rec mine[N], other[N], again[N];
    spawn_arg a = {lp, mine, N, 0}, b = {lp, other, N, 0}, c = {lp, again, N, 0};
    spawn_some(&a);
    CHECK_EQ(a.table, N);
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, spawn_some, &b) == 0);
    pthread_join(th, NULL);
    CHECK_EQ(b.table, 0);
    REQUIRE(pthread_create(&th, NULL, run_default, lp) == 0);
    void *rc;
    pthread_join(th, &rc);
    CHECK_EQ((int)(intptr_t)rc, WEFT_OK);
    spawn_some(&c);
    CHECK_EQ(c.table, N);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    rec *all[] = {mine, other, again};
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < N; i++) {
            WAIT_FREED(all[s][i]);
            CHECK_EQ(atomic_load(&all[s][i].dones), 1);
            CHECK_EQ(atomic_load(&all[s][i].work_runs), 1);
        }
    weft_loop_free(lp);
}

/* A thread keeps the loop after its spawns (before and after a NOWAIT pass); another
 * thread frees it, taking it away: done at most once, free_fn once each. */
static void *free_loop(void *lp) {
    weft_loop_free((weft_loop *)lp);
    return NULL;
}
TEST(a_loop_kept_by_one_thread_is_freed_by_another) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    enum { N = 200 };
    static rec r1[N], r2[N];
    spawn_arg a = {lp, r1, N, 0}, b = {lp, r2, N, 0};
    spawn_some(&a);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    spawn_some(&b);
    CHECK_EQ(a.table + b.table, 2 * N);
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, free_loop, lp) == 0);
    pthread_join(th, NULL);
    rec *all[] = {r1, r2};
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < N; i++) {
            WAIT_FREED(all[s][i]);
            CHECK(atomic_load(&all[s][i].dones) <= 1);
        }
}
