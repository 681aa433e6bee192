/* Pools freed: weft_pool_free (queued work cancelled, running work waited for,
 * refused from the pool's own threads and for a pool freed already, racing spawns),
 * and weft_shutdown (the default pools joined: the thread count back to the
 * baseline). */
#include "harness.h"
#include "tasks_util.h"

#include <sched.h>

/* ---- weft_pool_free ---------------------------------------------------------------- */

typedef struct {
    weft_pool *pool;
    _Atomic int finished;
    pthread_t thread;
} freer;

static void *freer_main(void *arg) {
    freer *f = (freer *)arg;
    weft_pool_free(f->pool);
    atomic_store(&f->finished, 1);
    return NULL;
}

static void free_in_background(freer *f, weft_pool *p) {
    f->pool = p;
    atomic_store(&f->finished, 0);
    pthread_create(&f->thread, NULL, freer_main, f);
}

/* A 1-thread pool, busy, with 20 tasks queued, is freed (on another thread: the free
 * waits for the running work): the queued tasks get done(CANCELLED) at once, while the
 * running one still runs, and never run; the running one finishes with its status;
 * then the free returns; every free_fn runs once. For a CPU and an IO pool. */
TEST(pool_free_cancels_queued_tasks_and_waits_for_running_ones) {
    weft_pool_kind kinds[] = {WEFT_POOL_CPU, WEFT_POOL_IO};
    weft_where wheres[] = {WEFT_ON_CPU, WEFT_ON_IO};
    for (int k = 0; k < 2; k++) {
        weft_pool *p;
        weft_loop *lp;
        REQUIRE(pool_and_loop(kinds[k], 1, "pfq", &p, &lp));
        weft_spawn_options so = spawn_opts(p, 0);
        _Atomic int gate = 0;
        enum { Q = 20 };
        rec blocker, q[Q];
        rec_init(&blocker);
        blocker.gate = &gate;
        blocker.ret = 17;
        CHECK_ID(rec_spawn(lp, wheres[k], &blocker, &so));
        REQUIRE(WAIT_FOR(atomic_load(&blocker.work_active) == 1, h_slack_ms(2000)));
        for (int i = 0; i < Q; i++) {
            rec_init(&q[i]);
            CHECK_ID(rec_spawn(lp, wheres[k], &q[i], &so));
        }
        freer f;
        free_in_background(&f, p);
        int dones = 0;
        uint64_t end = now_ms() + h_slack_ms(3000);
        while (dones < Q && now_ms() < end) {
            CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
            dones = 0;
            for (int i = 0; i < Q; i++) dones += atomic_load(&q[i].dones);
            sleep_ms(1);
        }
        CHECK_MSG(dones == Q, "%d of %d queued tasks got done while the pool was being freed", dones, Q);
        CHECK_EQ(atomic_load(&blocker.work_active), 1);
        CHECK_EQ(atomic_load(&f.finished), 0); /* waiting for the running work */
        for (int i = 0; i < Q; i++) {
            CHECK_EQ(q[i].status, WEFT_ERR_CANCELLED);
            CHECK_EQ(atomic_load(&q[i].work_runs), 0);
        }
        atomic_store(&gate, 1);
        pthread_join(f.thread, NULL);
        CHECK_EQ(atomic_load(&blocker.work_returned), 1);
        CHECK(run_until(lp, &blocker.dones, 1, h_slack_ms(2000)));
        CHECK_EQ(blocker.status, 17);
        WAIT_FREED(blocker);
        for (int i = 0; i < Q; i++) {
            WAIT_FREED(q[i]);
            CHECK_EQ(atomic_load(&q[i].work_runs), 0);
            CHECK_EQ(atomic_load(&q[i].dones), 1);
        }
        CHECK_EQ(proc_threads_settled("pfq-", 0), 0);
        /* The freed pool takes no more tasks. */
        rec late;
        rec_init(&late);
        CHECK_ID_FAILS(weft_spawn(lp, wheres[k], rec_work, rec_done, &late, never_free, &so), "pool");
        weft_loop_free(lp);
    }
}

/* Nested tasks queued by work on a 1-thread CPU pool sit in that worker's own deque;
 * when the pool is freed while that work still runs, they too are queued tasks that
 * have not started: done(CANCELLED), and they never run. */
typedef struct {
    weft_loop *lp;
    weft_pool *pool;
    _Atomic int *gate;
    rec *children;
    int nchildren;
    _Atomic int spawned;
} parent;

static int parent_work(weft_task *t, void *ud) {
    (void)t;
    parent *pa = (parent *)ud;
    weft_spawn_options so = spawn_opts(pa->pool, 0);
    for (int i = 0; i < pa->nchildren; i++)
        if (rec_spawn(pa->lp, WEFT_ON_CPU, &pa->children[i], &so) == 0) h_fail_e(__FILE__, __LINE__, "nested spawn");
    atomic_store(&pa->spawned, 1);
    while (!atomic_load(pa->gate)) sleep_ms(1);
    return 0;
}

TEST(pool_free_cancels_nested_tasks_not_yet_started) {
    weft_pool *p;
    weft_loop *lp;
    REQUIRE(pool_and_loop(WEFT_POOL_CPU, 1, "pfn", &p, &lp));
    _Atomic int gate = 0;
    enum { C = 10 };
    rec children[C];
    for (int i = 0; i < C; i++) rec_init(&children[i]), children[i].ret = 5;
    parent pa = {lp, p, &gate, children, C, 0};
    weft_spawn_options so = spawn_opts(p, 0);
    CHECK_ID(weft_spawn(lp, WEFT_ON_CPU, parent_work, NULL, &pa, NULL, &so));
    REQUIRE(WAIT_FOR(atomic_load(&pa.spawned), h_slack_ms(2000)));
    freer f;
    free_in_background(&f, p);
    sleep_ms(20); /* the free has begun: it waits for the parent */
    atomic_store(&gate, 1);
    pthread_join(f.thread, NULL);
    for (int i = 0; i < C; i++) {
        CHECK(run_until(lp, &children[i].dones, 1, h_slack_ms(2000)));
        CHECK_MSG(children[i].status == WEFT_ERR_CANCELLED && atomic_load(&children[i].work_runs) == 0,
                  "nested task %d: done got %d, its work ran %d times", i, children[i].status,
                  atomic_load(&children[i].work_runs));
        WAIT_FREED(children[i]);
    }
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    weft_loop_free(lp);
}

/* weft_pool_free from one of the pool's own threads is refused (it would wait for
 * itself): a message naming weft_pool_free, and the pool goes on working. From a
 * thread of another pool it works. */
typedef struct {
    weft_pool *target;
    char err[256];
} self_free;

static int self_free_work(weft_task *t, void *ud) {
    (void)t;
    self_free *s = (self_free *)ud;
    reset_last_error();
    weft_pool_free(s->target);
    weft_last_error(s->err, sizeof s->err);
    return 0;
}

TEST(pool_free_from_its_own_thread_is_refused) {
    weft_pool_kind kinds[] = {WEFT_POOL_CPU, WEFT_POOL_IO};
    weft_where wheres[] = {WEFT_ON_CPU, WEFT_ON_IO};
    for (int k = 0; k < 2; k++) {
        weft_pool *p;
        weft_loop *lp;
        REQUIRE(pool_and_loop(kinds[k], 2, "selff", &p, &lp));
        weft_spawn_options so = spawn_opts(p, 0);
        self_free s = {p, ""};
        rec r;
        rec_init(&r);
        CHECK_ID(weft_spawn(lp, wheres[k], self_free_work, rec_done, &s, NULL, &so));
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
        CHECK_MSG(strstr(s.err, "weft_pool_free") != NULL && strstr(s.err, "own thread") != NULL,
                  "weft_pool_free from the pool's own thread: last error \"%s\"", s.err);
        /* Still works. */
        CHECK_ID(rec_spawn(lp, wheres[k], &r, &so));
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
        CHECK_EQ(atomic_load(&r.dones), 1);
        CHECK_EQ(r.status, 0);
        WAIT_FREED(r);
        /* From a thread of another pool (the default CPU pool): allowed. */
        self_free other = {p, ""};
        CHECK_ID(weft_spawn(lp, WEFT_ON_CPU, self_free_work, NULL, &other, NULL, NULL));
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
        CHECK_MSG(strstr(other.err, "weft_pool_free") == NULL, "freed from another pool: \"%s\"", other.err);
        CHECK_EQ(proc_threads_settled("selff-", 0), 0);
        weft_loop_free(lp);
    }
}

/* weft_pool_free waits for running work. */
TEST(pool_free_waits_for_running_work) {
    weft_pool *p;
    weft_loop *lp;
    REQUIRE(pool_and_loop(WEFT_POOL_CPU, 2, "pfw", &p, &lp));
    weft_spawn_options so = spawn_opts(p, 0);
    rec r;
    rec_init(&r);
    r.sleep_ms = 100;
    r.ret = 3;
    CHECK_ID(rec_spawn(lp, WEFT_ON_CPU, &r, &so));
    REQUIRE(WAIT_FOR(atomic_load(&r.work_active) == 1, h_slack_ms(2000)));
    uint64_t t0 = now_ms();
    weft_pool_free(p);
    CHECK(now_ms() - t0 >= 80);
    CHECK_EQ(atomic_load(&r.work_returned), 1);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    CHECK_EQ(r.status, 3);
    WAIT_FREED(r);
    weft_loop_free(lp);
}

/* Spawns to a pool from two threads while a third frees it: each spawn either fails
 * (the pool is gone) or gets exactly one done (its status, or CANCELLED) and one
 * free_fn; nothing is lost in the race. */
typedef struct {
    weft_loop *lp;
    weft_pool *pool;
    weft_where where;
    rec *recs;
    long max, made;
} racer;

static void *racer_main(void *arg) {
    racer *ra = (racer *)arg;
    weft_spawn_options so = spawn_opts(ra->pool, 0);
    while (ra->made < ra->max) {
        if (rec_spawn(ra->lp, ra->where, &ra->recs[ra->made], &so) == 0) break;
        ra->made++;
    }
    return NULL;
}

TEST(spawns_racing_pool_free_complete_exactly_once) {
    long rounds = h_scale(150, 8);
    long lost_done = 0, bad_free = 0, total = 0, cancelled = 0;
    for (long round = 0; round < rounds; round++) {
        weft_pool *p;
        weft_loop *lp;
        REQUIRE(pool_and_loop(round % 2 ? WEFT_POOL_IO : WEFT_POOL_CPU, 2, "race", &p, &lp));
        enum { MAX = 2000 };
        racer ra[2];
        pthread_t th[2];
        for (int i = 0; i < 2; i++) {
            ra[i] = (racer){lp, p, round % 2 ? WEFT_ON_IO : WEFT_ON_CPU, calloc(MAX, sizeof(rec)), MAX, 0};
            pthread_create(&th[i], NULL, racer_main, &ra[i]);
        }
        sleep_ms(1 + (unsigned)(round % 3));
        weft_pool_free(p);
        for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
        /* Every spawn that succeeded completes. */
        uint64_t end = now_ms() + h_slack_ms(3000);
        long want = ra[0].made + ra[1].made, got = 0;
        while (now_ms() < end) {
            CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
            got = 0;
            for (int i = 0; i < 2; i++)
                for (long j = 0; j < ra[i].made; j++) got += atomic_load(&ra[i].recs[j].dones);
            if (got >= want) break;
            sleep_ms(1);
        }
        lost_done += want - got;
        total += want;
        weft_loop_free(lp); /* ends whatever is left */
        for (int i = 0; i < 2; i++) {
            for (long j = 0; j < ra[i].made; j++) {
                rec *r = &ra[i].recs[j];
                if (!WAIT_FOR(atomic_load(&r->frees) == 1, h_slack_ms(2000))) bad_free++;
                if (atomic_load(&r->dones) > 1) lost_done--, bad_free++;
                if (r->status == WEFT_ERR_CANCELLED) cancelled++;
            }
            free(ra[i].recs);
        }
        if (lost_done || bad_free) {
            h_fail(__FILE__, __LINE__, "round %ld (%s pool): %ld of %ld tasks never got done, %ld bad frees", round,
                   round % 2 ? "IO" : "CPU", lost_done, want, bad_free);
            break;
        }
    }
    CHECK_EQ(lost_done, 0);
    CHECK_EQ(bad_free, 0);
    printf("    %ld tasks spawned while their pool was freed; %ld got CANCELLED\n", total, cancelled);
}

/* Several loops, each run on its own thread, feed one CPU pool at once: half of
 * their tasks spawned from a loop callback (each loop's feeder, wake-ups deferred),
 * half from the thread before it runs the loop, some cancelled; the pool's workers
 * steal from every loop's feeder. Every task gets exactly one done and one free_fn,
 * with the work's status unless cancelled. */
enum { FEED_LOOPS = 4 };

typedef struct {
    weft_pool *pool;
    rec *recs;
    long n;
    long refused, wrong;
} feed;

static void feed_spawn_half(weft_loop *lp, weft_id id, void *ud) {
    (void)id;
    feed *f = (feed *)ud;
    weft_spawn_options so = spawn_opts(f->pool, 0);
    for (long i = f->n / 2; i < f->n; i++) {
        if (rec_spawn(lp, WEFT_ON_CPU, &f->recs[i], &so) == 0) f->refused++;
        if (i % 7 == 0) weft_cancel(lp, atomic_load(&f->recs[i].id));
    }
}

static void *feed_main(void *arg) {
    feed *f = (feed *)arg;
    weft_loop *lp = weft_loop_new();
    if (lp == NULL) {
        f->refused = f->n;
        return NULL;
    }
    weft_spawn_options so = spawn_opts(f->pool, 0);
    for (long i = 0; i < f->n / 2; i++) {
        f->recs[i].ret = (int)(i % 100);
        if (rec_spawn(lp, WEFT_ON_CPU, &f->recs[i], &so) == 0) f->refused++;
        if (i % 7 == 0) weft_cancel(lp, atomic_load(&f->recs[i].id));
    }
    for (long i = f->n / 2; i < f->n; i++) f->recs[i].ret = (int)(i % 100);
    if (weft_post(lp, feed_spawn_half, f, NULL) == 0) f->refused++;
    if (weft_loop_run(lp, WEFT_RUN_DEFAULT) != WEFT_OK) f->refused++;
    for (long i = 0; i < f->n; i++) {
        rec *r = &f->recs[i];
        if (atomic_load(&r->dones) != 1) f->wrong++;
        else if (r->status != WEFT_ERR_CANCELLED && r->status != (int)(i % 100)) f->wrong++;
    }
    weft_loop_free(lp);
    return NULL;
}

TEST(many_loops_feed_one_cpu_pool) {
    weft_pool_options po = pool_opts(WEFT_POOL_CPU, 2, "feed");
    weft_pool *p = weft_pool_new(&po);
    REQUIRE(p != NULL);
    long n = h_scale(20000, 2000);
    feed f[FEED_LOOPS];
    pthread_t th[FEED_LOOPS];
    for (int i = 0; i < FEED_LOOPS; i++) {
        f[i] = (feed){p, calloc((size_t)n, sizeof(rec)), n, 0, 0};
        REQUIRE(f[i].recs != NULL);
        REQUIRE(pthread_create(&th[i], NULL, feed_main, &f[i]) == 0);
    }
    long bad_free = 0, cancelled = 0;
    for (int i = 0; i < FEED_LOOPS; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ(f[i].refused, 0);
        CHECK_MSG(f[i].wrong == 0, "loop %d: %ld tasks without exactly one done with their status", i, f[i].wrong);
        for (long j = 0; j < n; j++) {
            if (!WAIT_FOR(atomic_load(&f[i].recs[j].frees) == 1, h_slack_ms(2000))) bad_free++;
            cancelled += f[i].recs[j].status == WEFT_ERR_CANCELLED;
        }
        free(f[i].recs);
    }
    CHECK_EQ(bad_free, 0);
    CHECK(cancelled > 0);
    weft_pool_free(p);
    printf("    %d loops x %ld tasks on one pool; %ld cancelled\n", FEED_LOOPS, n, cancelled);
}

/* Pools made, used and freed in a row leave no thread behind. */
TEST(pools_made_and_freed_leave_no_threads) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    long rounds = h_scale(40, 5);
    for (long i = 0; i < rounds; i++) {
        weft_pool_options o = pool_opts(i % 2 ? WEFT_POOL_IO : WEFT_POOL_CPU, 3, "churn");
        weft_pool *p = weft_pool_new(&o);
        REQUIRE(p != NULL);
        weft_spawn_options so = spawn_opts(p, 0);
        rec r[6];
        for (int j = 0; j < 6; j++) {
            rec_init(&r[j]);
            CHECK_ID(rec_spawn(lp, i % 2 ? WEFT_ON_IO : WEFT_ON_CPU, &r[j], &so));
        }
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
        for (int j = 0; j < 6; j++) WAIT_FREED(r[j]);
        weft_pool_free(p);
        CHECK_EQ(proc_threads_settled("churn-", 0), 0);
    }
    weft_loop_free(lp);
}

/* ---- the default pools and weft_shutdown --------------------------------------------- */

static int cpus_allowed(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) return (int)sysconf(_SC_NPROCESSORS_ONLN);
    int n = CPU_COUNT(&set);
    FILE *f = fopen("/sys/fs/cgroup/cpu.max", "r");
    if (f != NULL) {
        char quota[32] = {0};
        long period = 0;
        if (fscanf(f, "%31s %ld", quota, &period) == 2 && strcmp(quota, "max") != 0 && period > 0) {
            long q = atol(quota);
            int limit = (int)((q + period - 1) / period);
            if (limit >= 1 && limit < n) n = limit;
        }
        fclose(f);
    }
    return n;
}

/* The default CPU pool has one thread per CPU this process may use, all started with
 * the first task; the default pools' threads are named weft-cpu-N and weft-io-N. */
TEST(default_cpu_pool_has_one_thread_per_core) {
    weft_shutdown(); /* start from no default pool */
    CHECK_EQ(proc_threads_settled("weft-", 0), 0);
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    rec r;
    rec_init(&r);
    CHECK_ID(rec_spawn(lp, WEFT_ON_CPU, &r, NULL));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    WAIT_FREED(r);
    /* All start at once; each names itself as it starts. */
    CHECK_MSG(WAIT_FOR(proc_threads("weft-cpu-") == cpus_allowed(), h_slack_ms(1000)), "%d weft-cpu-* threads, %d CPUs",
              proc_threads("weft-cpu-"), cpus_allowed());
    sleep_ms(10);
    CHECK_EQ(proc_threads("weft-cpu-"), cpus_allowed());
    CHECK_EQ(proc_threads("weft-io-"), 0); /* not started: no IO task yet */
    weft_loop_free(lp);
    weft_shutdown();
    CHECK_EQ(proc_threads_settled("weft-", 0), 0);
}

/* weft_shutdown: tasks queued on the default pools complete with CANCELLED, running
 * ones finish (it waits for them), every default pool thread is joined: the thread
 * count is back to what it was, and no fd is left once the loop is freed too. Later
 * spawns start the pools again. */
typedef struct {
    _Atomic int finished;
} shutter;

static void *shutdown_main(void *arg) {
    weft_shutdown();
    atomic_store(&((shutter *)arg)->finished, 1);
    return NULL;
}

TEST(weft_shutdown_joins_the_default_pools) {
    weft_shutdown();
    int threads0 = proc_threads(NULL), fds0 = proc_fds();
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    int cpus = cpus_allowed();
    /* Busy every default CPU thread and some IO threads; queue more behind them. */
    _Atomic int gate = 0;
    enum { MAXC = 64, QUEUED = 10, IO = 6 };
    int nc = cpus < MAXC ? cpus : MAXC;
    rec busy[MAXC], queued[QUEUED], io[IO];
    for (int i = 0; i < nc; i++) {
        rec_init(&busy[i]);
        busy[i].gate = &gate;
        busy[i].ret = 1;
        CHECK_ID(rec_spawn(lp, WEFT_ON_CPU, &busy[i], NULL));
    }
    for (int i = 0; i < nc; i++) REQUIRE(WAIT_FOR(atomic_load(&busy[i].work_active) == 1, h_slack_ms(3000)));
    for (int i = 0; i < QUEUED; i++) {
        rec_init(&queued[i]);
        CHECK_ID(rec_spawn(lp, WEFT_ON_CPU, &queued[i], NULL));
    }
    for (int i = 0; i < IO; i++) {
        rec_init(&io[i]);
        io[i].sleep_ms = 5;
        CHECK_ID(rec_spawn(lp, WEFT_ON_IO, &io[i], NULL));
    }
    for (int i = 0; i < IO; i++) CHECK(WAIT_FOR(atomic_load(&io[i].work_returned), h_slack_ms(3000)));
    CHECK(proc_threads("weft-io-") >= 1);
    CHECK(WAIT_FOR(proc_threads("weft-cpu-") == cpus, h_slack_ms(1000)));
    shutter s = {0};
    pthread_t th;
    pthread_create(&th, NULL, shutdown_main, &s);
    int dones = 0;
    uint64_t end = now_ms() + h_slack_ms(3000);
    while (dones < QUEUED && now_ms() < end) {
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
        dones = 0;
        for (int i = 0; i < QUEUED; i++) dones += atomic_load(&queued[i].dones);
        sleep_ms(1);
    }
    CHECK_MSG(dones == QUEUED, "%d of %d queued tasks got done during weft_shutdown", dones, QUEUED);
    for (int i = 0; i < QUEUED; i++) {
        CHECK_EQ(queued[i].status, WEFT_ERR_CANCELLED);
        CHECK_EQ(atomic_load(&queued[i].work_runs), 0);
    }
    CHECK_EQ(atomic_load(&s.finished), 0); /* it waits for the running work */
    atomic_store(&gate, 1);
    pthread_join(th, NULL);
    CHECK_EQ(proc_threads("weft-"), 0);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    for (int i = 0; i < nc; i++) {
        CHECK_EQ(busy[i].status, 1);
        WAIT_FREED(busy[i]);
    }
    for (int i = 0; i < QUEUED; i++) WAIT_FREED(queued[i]);
    for (int i = 0; i < IO; i++) {
        CHECK_EQ(io[i].status, 0);
        WAIT_FREED(io[i]);
    }
    /* Later spawns start the pools again; a second shutdown joins them again. */
    rec again[2];
    rec_init(&again[0]), rec_init(&again[1]);
    CHECK_ID(rec_spawn(lp, WEFT_ON_CPU, &again[0], NULL));
    CHECK_ID(rec_spawn(lp, WEFT_ON_IO, &again[1], NULL));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    CHECK_EQ(atomic_load(&again[0].dones) + atomic_load(&again[1].dones), 2);
    WAIT_FREED(again[0]);
    WAIT_FREED(again[1]);
    CHECK(proc_threads("weft-") > 0);
    weft_loop_free(lp);
    weft_shutdown();
    weft_shutdown(); /* twice is fine */
    CHECK_EQ(proc_threads(NULL), threads0);
    CHECK_EQ(proc_fds(), fds0);
    CHECK_EQ(proc_threads("weft-"), 0);
}

/* weft_shutdown from a default pool's own thread ("not from a pool thread") is refused
 * without harm: the default pools go on working, and a later weft_shutdown from another
 * thread joins every default pool thread. */
static int shutdown_in_work(weft_task *t, void *ud) {
    (void)t;
    reset_last_error();
    weft_shutdown();
    weft_last_error((char *)ud, 256);
    return 0;
}

TEST(weft_shutdown_from_a_pool_thread_is_refused_without_harm) {
    weft_shutdown();
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    char err[256] = "";
    CHECK_ID(weft_spawn(lp, WEFT_ON_CPU, shutdown_in_work, NULL, err, NULL, NULL));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    CHECK_MSG(strstr(err, "weft_shutdown") != NULL, "weft_shutdown from a pool thread: last error \"%s\"", err);
    rec r;
    rec_init(&r);
    CHECK_ID(rec_spawn(lp, WEFT_ON_CPU, &r, NULL));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    CHECK_EQ(atomic_load(&r.dones), 1);
    WAIT_FREED(r);
    weft_loop_free(lp);
    weft_shutdown();
    CHECK_MSG(WAIT_FOR(proc_threads("weft-cpu-") == 0, h_slack_ms(500)), "%d weft-cpu-* threads left after weft_shutdown",
              proc_threads("weft-cpu-"));
}

/* A host may end a thread from inside a callback with pthread_exit (CPython does to a
 * thread that wants the GIL while the interpreter finalizes). On a pool thread that must
 * end the thread, not the process: nothing on a pool thread's stack may catch the forced
 * unwind. The task never returns, so done comes from its timeout; freeing the pool joins
 * the ended thread. */
typedef struct {
    _Atomic int started;
    int status;
} exiting;

static int exits_its_thread(weft_task *task, void *ud) {
    (void)task;
    atomic_fetch_add(&((exiting *)ud)->started, 1);
    pthread_exit(NULL);
}

static void exiting_done(weft_loop *lp, weft_id id, int status, const uint8_t *r, size_t n, void *ud) {
    (void)lp, (void)id, (void)r, (void)n;
    ((exiting *)ud)->status = status;
}

TEST(pthread_exit_in_work_ends_only_its_pool_thread) {
    if (h_valgrind() || h_asan()) {
        /* The work never returns, so its task cell is never released: by design (see
         * weft_spawn), but memcheck and LeakSanitizer would count it as a leak. */
        printf("    not under a leak checker: checked by the native run\n");
        return;
    }
    for (int kind = 0; kind < 2; kind++) {
        weft_pool *p;
        weft_loop *lp;
        REQUIRE(pool_and_loop(kind == 0 ? WEFT_POOL_CPU : WEFT_POOL_IO, 2, "pexit", &p, &lp));
        exiting e = {0, 1};
        weft_spawn_options so = spawn_opts(p, 50);
        CHECK_ID(weft_spawn(lp, kind == 0 ? WEFT_ON_CPU : WEFT_ON_IO, exits_its_thread, exiting_done, &e, NULL, &so));
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
        CHECK_EQ(atomic_load(&e.started), 1);
        CHECK_EQ(e.status, WEFT_ERR_TIMEOUT);
        /* The pool's other thread still runs work. */
        rec r;
        rec_init(&r);
        so = spawn_opts(p, 0);
        CHECK_ID(rec_spawn(lp, kind == 0 ? WEFT_ON_CPU : WEFT_ON_IO, &r, &so));
        CHECK(run_until(lp, &r.dones, 1, h_slack_ms(5000)));
        WAIT_FREED(r);
        weft_pool_free(p);
        CHECK_EQ(proc_threads("pexit-"), 0);
        weft_loop_free(lp);
    }
}
