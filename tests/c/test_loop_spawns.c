/* Tasks spawned from the loop's own callbacks. Such a spawn (on a CPU pool, without a
 * timeout) takes weft's lock-free path: its task lives in the loop's task table rather
 * than among the loop's registrations, and its job is staged and published to the
 * pool in groups. Everything the API promises must hold there too: done and free_fn
 * exactly once, cancel from any thread with the same answers, stale and forged ids
 * refused, a loop or a pool freed with such tasks in flight, and workers that start
 * while a long callback is still spawning. */
#include "harness.h"
#include "tasks_util.h"

#include <sched.h>
#include <sys/mman.h>
#include <sys/wait.h>

/* ---- spawning from a callback ------------------------------------------------------- */

typedef struct spawner {
    weft_where where;
    const weft_spawn_options *opts; /* NULL: defaults */
    rec *recs;
    int n;
    weft_id *ids;
    /* After spawning, wait inside the callback until this many works have run (0: no). */
    int wait_for_runs;
    _Atomic int *runs;
    int runs_seen; /* how many had run when the wait ended */
    _Atomic int spawned;
} spawner;

static void spawn_cb(weft_loop *lp, weft_id id, void *ud) {
    (void)id;
    spawner *s = (spawner *)ud;
    for (int i = 0; i < s->n; i++) {
        weft_id tid = rec_spawn(lp, s->where, &s->recs[i], s->opts);
        if (tid == 0) h_fail(__FILE__, __LINE__, "spawn %d from a callback failed: %s", i, h_last_error());
        if (s->ids) s->ids[i] = tid;
    }
    if (s->wait_for_runs > 0) {
        uint64_t end = now_ms() + h_slack_ms(5000);
        while (atomic_load(s->runs) < s->wait_for_runs && now_ms() < end) sched_yield();
        s->runs_seen = atomic_load(s->runs);
    }
    atomic_store(&s->spawned, 1);
}

/* Posts spawn_cb and runs the loop until it has run. */
static bool spawn_from_callback(weft_loop *lp, spawner *s) {
    if (weft_post(lp, spawn_cb, s, NULL) == 0) return false;
    return run_until(lp, &s->spawned, 1, h_slack_ms(10000));
}


/* ---- the basics -------------------------------------------------------------------- */

/* 500 tasks spawned in one callback on the default CPU pool and on a pool of its own:
 * each work runs once on a pool thread, each done once on the loop thread with the
 * work's status and result, each free_fn once after it; the ids are distinct, and
 * stale once done. */
TEST(tasks_spawned_in_a_callback_run_once_each) {
    weft_pool_options po = pool_opts(WEFT_POOL_CPU, 2, "lsp");
    weft_pool *pool = weft_pool_new(&po);
    REQUIRE(pool != NULL);
    weft_spawn_options on_pool = spawn_opts(pool, 0);
    const weft_spawn_options *opts[] = {NULL, &on_pool};
    for (int o = 0; o < 2; o++) {
        weft_loop *lp = weft_loop_new();
        REQUIRE(lp != NULL);
        enum { N = 500 };
        static rec r[N];
        static weft_id ids[N];
        for (int i = 0; i < N; i++) {
            rec_init(&r[i]);
            r[i].ret = i % 7;
            r[i].out = (const unsigned char *)"result";
            r[i].out_len = (size_t)(i % 7);
        }
        spawner s = {.where = WEFT_ON_CPU, .opts = opts[o], .recs = r, .n = N, .ids = ids};
        REQUIRE(spawn_from_callback(lp, &s));
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
        for (int i = 0; i < N; i++) {
            CHECK_EQ(atomic_load(&r[i].work_runs), 1);
            CHECK_EQ(atomic_load(&r[i].dones), 1);
            CHECK_EQ(atomic_load(&r[i].frees), 1);
            CHECK_EQ(atomic_load(&r[i].dones_at_free), 1);
            CHECK_EQ(r[i].status, i % 7);
            CHECK_EQ(r[i].len, (size_t)(i % 7));
            CHECK(r[i].len == 0 || memcmp(r[i].head, "result", r[i].len) == 0);
            CHECK(r[i].done_id == ids[i]);
            CHECK(pthread_equal(r[i].done_thread, pthread_self()));
            CHECK(!pthread_equal(r[i].work_thread, pthread_self()));
        }
        for (int i = 1; i < N; i++) CHECK(ids[i] != ids[i - 1]);
        for (int i = 0; i < N; i++) CHECK_RC(weft_cancel(lp, ids[i]), WEFT_ERR_NOT_FOUND);
        CHECK_EQ(weft_loop_alive(lp), 0);
        weft_loop_free(lp);
    }
    weft_pool_free(pool);
}

/* A callback that spawns many tasks and then keeps the loop thread busy does not keep
 * them from the pool's workers until it returns: they are published in groups while
 * it is still spawning. */
static _Atomic int bg_runs;
static int count_work(weft_task *t, void *ud) {
    (void)t;
    (void)ud;
    atomic_fetch_add(&bg_runs, 1);
    return 0;
}
static _Atomic int bg_dones;
static void count_done(weft_loop *lp, weft_id id, int status, const uint8_t *res, size_t len, void *ud) {
    (void)lp, (void)id, (void)res, (void)len, (void)ud;
    if (status != 0) h_fail(__FILE__, __LINE__, "status %d", status);
    atomic_fetch_add(&bg_dones, 1);
}
typedef struct burst {
    int n;
    int seen; /* works that had run when the callback stopped waiting */
    _Atomic int over;
} burst;
static void burst_cb(weft_loop *lp, weft_id id, void *ud) {
    (void)id;
    burst *b = (burst *)ud;
    for (int i = 0; i < b->n; i++)
        if (weft_spawn(lp, WEFT_ON_CPU, count_work, count_done, NULL, NULL, NULL) == 0)
            h_fail(__FILE__, __LINE__, "spawn failed: %s", h_last_error());
    uint64_t end = now_ms() + h_slack_ms(5000);
    while (atomic_load(&bg_runs) < b->n / 2 && now_ms() < end) sched_yield();
    b->seen = atomic_load(&bg_runs);
    atomic_store(&b->over, 1);
}
TEST(workers_start_while_a_long_callback_still_runs) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    atomic_store(&bg_runs, 0);
    atomic_store(&bg_dones, 0);
    burst b = {.n = 1000};
    CHECK_ID(weft_post(lp, burst_cb, &b, NULL));
    REQUIRE(run_until(lp, &b.over, 1, h_slack_ms(10000)));
    CHECK_MSG(b.seen >= b.n / 2, "only %d of %d tasks ran while the callback that spawned them waited", b.seen,
              b.n);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    CHECK_EQ(atomic_load(&bg_runs), b.n);
    CHECK_EQ(atomic_load(&bg_dones), b.n);
    weft_loop_free(lp);
}

/* A callback that spawns a few tasks and returns: they start (published at its end). */
TEST(a_few_tasks_spawned_in_a_callback_start_when_it_returns) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    enum { N = 3 };
    rec r[N];
    for (int i = 0; i < N; i++) rec_init(&r[i]);
    spawner s = {.where = WEFT_ON_CPU, .recs = r, .n = N};
    REQUIRE(spawn_from_callback(lp, &s));
    /* Without running the loop again: the works run on the pool. */
    for (int i = 0; i < N; i++)
        CHECK_MSG(WAIT_FOR(atomic_load(&r[i].work_runs) == 1, h_slack_ms(2000)), "task %d never started", i);
    CHECK(run_until(lp, &r[N - 1].dones, 1, h_slack_ms(5000)));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    for (int i = 0; i < N; i++) CHECK_EQ(atomic_load(&r[i].frees), 1);
    weft_loop_free(lp);
}

/* In a callback, the other kinds of spawn (IO pool, on the loop, with a timeout) keep
 * working beside the lock-free ones, and each kind's ids stay valid for cancel. */
TEST(other_spawns_in_a_callback_mix_with_table_tasks) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    weft_spawn_options timed = spawn_opts(NULL, 10000);
    enum { K = 4, PER = 20 };
    static rec r[K][PER];
    static weft_id ids[K][PER];
    spawner s[K] = {
        {.where = WEFT_ON_CPU},
        {.where = WEFT_ON_IO},
        {.where = WEFT_ON_LOOP},
        {.where = WEFT_ON_CPU, .opts = &timed},
    };
    for (int k = 0; k < K; k++) {
        for (int i = 0; i < PER; i++) rec_init(&r[k][i]), r[k][i].ret = k;
        s[k].recs = r[k];
        s[k].n = PER;
        s[k].ids = ids[k];
        REQUIRE(spawn_from_callback(lp, &s[k]));
    }
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    for (int k = 0; k < K; k++)
        for (int i = 0; i < PER; i++) {
            CHECK_EQ(atomic_load(&r[k][i].dones), 1);
            CHECK_EQ(atomic_load(&r[k][i].frees), 1);
            CHECK_EQ(r[k][i].status, k);
            CHECK_RC(weft_cancel(lp, ids[k][i]), WEFT_ERR_NOT_FOUND);
        }
    weft_loop_free(lp);
}

/* ---- cancel ------------------------------------------------------------------------ */

/* From the callback that spawned them: a task queued behind a busy 1-thread pool is
 * cancelled (OK): its done(CANCELLED) comes without waiting for the pool, its work
 * never runs, its free_fn runs once; a second cancel is NOT_FOUND. */
typedef struct cancel_ctx {
    rec *blocker, *victim;
    weft_spawn_options *opts;
    int rc1, rc2;
    _Atomic int over;
} cancel_ctx;
static void cancel_cb(weft_loop *lp, weft_id id, void *ud) {
    (void)id;
    cancel_ctx *c = (cancel_ctx *)ud;
    rec_spawn(lp, WEFT_ON_CPU, c->blocker, c->opts);
    weft_id v = rec_spawn(lp, WEFT_ON_CPU, c->victim, c->opts);
    c->rc1 = weft_cancel(lp, v);
    c->rc2 = weft_cancel(lp, v);
    atomic_store(&c->over, 1);
}
TEST(cancel_of_a_queued_task_from_its_callback) {
    weft_pool_options po = pool_opts(WEFT_POOL_CPU, 1, "lsc");
    weft_pool *one = weft_pool_new(&po);
    REQUIRE(one != NULL);
    weft_spawn_options on1 = spawn_opts(one, 0);
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    _Atomic int gate = 0;
    rec blocker, victim;
    rec_init(&blocker);
    rec_init(&victim);
    blocker.gate = &gate;
    cancel_ctx c = {.blocker = &blocker, .victim = &victim, .opts = &on1};
    CHECK_ID(weft_post(lp, cancel_cb, &c, NULL));
    CHECK(run_until(lp, &victim.dones, 1, h_slack_ms(5000)));
    CHECK_EQ(c.rc1, WEFT_OK);
    CHECK_EQ(c.rc2, WEFT_ERR_NOT_FOUND);
    CHECK_EQ(victim.status, WEFT_ERR_CANCELLED);
    CHECK(victim.result_null);
    CHECK_EQ(atomic_load(&blocker.dones), 0); /* still blocked: done did not wait */
    atomic_store(&gate, 1);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    CHECK_EQ(atomic_load(&victim.work_runs), 0);
    CHECK_EQ(atomic_load(&victim.dones), 1);
    CHECK_EQ(atomic_load(&victim.frees), 1);
    CHECK_EQ(atomic_load(&victim.dones_at_free), 1); /* free_fn after done */
    CHECK_EQ(atomic_load(&victim.done_after_free), 0);
    CHECK_EQ(atomic_load(&blocker.dones), 1);
    CHECK_EQ(blocker.status, 0);
    CHECK_RC(weft_cancel(lp, atomic_load(&victim.id)), WEFT_ERR_NOT_FOUND);
    weft_loop_free(lp);
    weft_pool_free(one);
}

/* Three threads cancel tasks at random while the loop thread spawns them (in callbacks)
 * and serves their completions. For every task: done once, free_fn once, and a cancel
 * answered OK exactly when done got CANCELLED (a cancel that finds the task not yet
 * done wins, one that finds it done is NOT_FOUND, a second one is NOT_FOUND). */
enum { RACE_N = 20000, RACE_CANCELLERS = 3 };
static _Atomic weft_id race_ids[RACE_N];
static _Atomic int race_ok[RACE_N];
static _Atomic int race_dones[RACE_N], race_frees[RACE_N], race_status[RACE_N];
static _Atomic int race_spawned, race_stop;
typedef struct race_slot {
    int index;
} race_slot;
static race_slot race_slots[RACE_N];
static int race_work(weft_task *t, void *ud) {
    (void)t;
    int i = ((race_slot *)ud)->index;
    if (i % 3 == 0) sched_yield(); /* some work takes a while */
    return 1;
}
static void race_done(weft_loop *lp, weft_id id, int status, const uint8_t *res, size_t len, void *ud) {
    (void)lp, (void)res, (void)len;
    int i = ((race_slot *)ud)->index;
    if (id != atomic_load(&race_ids[i])) h_fail(__FILE__, __LINE__, "done of task %d got another id", i);
    atomic_store(&race_status[i], status);
    atomic_fetch_add(&race_dones[i], 1);
}
static void race_free(void *ud) { atomic_fetch_add(&race_frees[((race_slot *)ud)->index], 1); }
typedef struct race_batch {
    int from, to;
} race_batch;
static void race_spawn_cb(weft_loop *lp, weft_id id, void *ud) {
    (void)id;
    race_batch *b = (race_batch *)ud;
    for (int i = b->from; i < b->to; i++) {
        weft_id tid = weft_spawn(lp, WEFT_ON_CPU, race_work, race_done, &race_slots[i], race_free, NULL);
        if (tid == 0) h_fail(__FILE__, __LINE__, "spawn failed: %s", h_last_error());
        atomic_store(&race_ids[i], tid);
        atomic_fetch_add(&race_spawned, 1);
    }
    free(b);
}
static void *race_canceller(void *arg) {
    weft_loop *lp = (weft_loop *)arg;
    unsigned seed = (unsigned)(uintptr_t)pthread_self();
    while (!atomic_load(&race_stop)) {
        int spawned = atomic_load(&race_spawned);
        if (spawned == 0) {
            sched_yield();
            continue;
        }
        int i = (int)(rand_r(&seed) % (unsigned)spawned);
        /* Mostly recent tasks (queued or running), some old ones (done). */
        if (rand_r(&seed) % 4 != 0) i = spawned - 1 - (int)(rand_r(&seed) % 64u);
        if (i < 0) i = 0;
        weft_id id = atomic_load(&race_ids[i]);
        if (id == 0) continue;
        int rc = weft_cancel(lp, id);
        if (h_valgrind()) sched_yield(); /* threads take turns there: let the loop run */
        if (rc == WEFT_OK)
            atomic_fetch_add(&race_ok[i], 1);
        else if (rc != WEFT_ERR_NOT_FOUND)
            h_fail(__FILE__, __LINE__, "weft_cancel returned %d", rc);
    }
    return NULL;
}
TEST(cancels_from_three_threads_race_loop_spawned_tasks) {
    int n = (int)h_scale(RACE_N, 1000);
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    for (int i = 0; i < n; i++) {
        race_slots[i].index = i;
        atomic_store(&race_ids[i], 0);
        atomic_store(&race_ok[i], 0);
        atomic_store(&race_dones[i], 0);
        atomic_store(&race_frees[i], 0);
    }
    atomic_store(&race_spawned, 0);
    atomic_store(&race_stop, 0);
    pthread_t th[RACE_CANCELLERS];
    for (int t = 0; t < RACE_CANCELLERS; t++) pthread_create(&th[t], NULL, race_canceller, lp);
    /* Batches of 100 spawned by callbacks, while earlier ones complete. */
    for (int from = 0; from < n; from += 100) {
        race_batch *b = (race_batch *)malloc(sizeof *b);
        b->from = from;
        b->to = from + 100 < n ? from + 100 : n;
        CHECK_ID(weft_post(lp, race_spawn_cb, b, NULL));
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    }
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    atomic_store(&race_stop, 1);
    for (int t = 0; t < RACE_CANCELLERS; t++) pthread_join(th[t], NULL);
    int cancelled = 0, bad = 0;
    for (int i = 0; i < n; i++) {
        int ok = atomic_load(&race_ok[i]), status = atomic_load(&race_status[i]);
        if (atomic_load(&race_dones[i]) != 1 || atomic_load(&race_frees[i]) != 1 || ok > 1 ||
            (ok == 1) != (status == WEFT_ERR_CANCELLED) || (ok == 0 && status != 1)) {
            if (bad++ < 5)
                h_fail(__FILE__, __LINE__, "task %d: %d dones, %d frees, %d cancels OK, status %d", i,
                       atomic_load(&race_dones[i]), atomic_load(&race_frees[i]), ok, status);
        }
        cancelled += ok;
        CHECK_RC(weft_cancel(lp, atomic_load(&race_ids[i])), WEFT_ERR_NOT_FOUND);
    }
    CHECK_EQ(bad, 0);
    printf("    (%d of %d tasks cancelled)\n", cancelled, n);
    CHECK(cancelled > 0);
    weft_loop_free(lp);
}

/* ---- ids --------------------------------------------------------------------------- */

/* One task at a time, each spawned by the previous one's done, reuses the same cell
 * of the task table: every id is new, and every earlier one is NOT_FOUND while a later
 * task in the same cell is live. Forged ids (the next generation, another index, an
 * index past the table, another loop's task) are NOT_FOUND too. */
enum { CHAIN = 200 };
typedef struct chain {
    weft_id ids[CHAIN];
    int n;
    int stale_found; /* earlier ids that a cancel found, checked from done */
    _Atomic int over;
} chain;
static int nop_work(weft_task *t, void *ud) {
    (void)t, (void)ud;
    return 0;
}
static void chain_done(weft_loop *lp, weft_id id, int status, const uint8_t *res, size_t len, void *ud) {
    (void)id, (void)status, (void)res, (void)len;
    chain *c = (chain *)ud;
    if (c->n == CHAIN) {
        atomic_store(&c->over, 1);
        return;
    }
    c->ids[c->n++] = weft_spawn(lp, WEFT_ON_CPU, nop_work, chain_done, c, NULL, NULL);
    /* The one just spawned is live; every earlier one is over. */
    for (int i = 0; i + 1 < c->n; i++)
        if (weft_cancel(lp, c->ids[i]) != WEFT_ERR_NOT_FOUND) c->stale_found++;
}
static void chain_start(weft_loop *lp, weft_id id, void *ud) {
    chain_done(lp, id, 0, NULL, 0, ud);
}
static _Atomic int held_gate;
static int held_work(weft_task *t, void *ud) {
    (void)t, (void)ud;
    uint64_t end = now_ms() + 10000;
    while (!atomic_load(&held_gate) && now_ms() < end) sleep_ms(1);
    return 0;
}
typedef struct one_id {
    weft_id id;
    _Atomic int dones, over;
} one_id;
static void one_done(weft_loop *lp, weft_id id, int status, const uint8_t *res, size_t len, void *ud) {
    (void)lp, (void)id, (void)status, (void)res, (void)len;
    atomic_fetch_add(&((one_id *)ud)->dones, 1);
}
static void spawn_held(weft_loop *lp, weft_id id, void *ud) {
    (void)id;
    one_id *o = (one_id *)ud;
    o->id = weft_spawn(lp, WEFT_ON_CPU, held_work, one_done, o, NULL, NULL);
    atomic_store(&o->over, 1);
}
TEST(stale_forged_and_foreign_ids_of_loop_spawned_tasks) {
    weft_loop *lp = weft_loop_new(), *other = weft_loop_new();
    REQUIRE(lp != NULL && other != NULL);
    static chain c;
    memset(&c, 0, sizeof c);
    CHECK_ID(weft_post(lp, chain_start, &c, NULL));
    CHECK(run_until(lp, &c.over, 1, h_slack_ms(10000)));
    CHECK_EQ(c.n, CHAIN);
    CHECK_EQ(c.stale_found, 0);
    for (int i = 0; i < CHAIN; i++)
        for (int j = i + 1; j < CHAIN; j++)
            if (c.ids[i] == c.ids[j]) h_fail(__FILE__, __LINE__, "ids %d and %d are equal", i, j);

    /* A live task, and forgeries around its id. */
    atomic_store(&held_gate, 0);
    one_id o, p;
    memset(&o, 0, sizeof o);
    memset(&p, 0, sizeof p);
    CHECK_ID(weft_post(lp, spawn_held, &o, NULL));
    CHECK(run_until(lp, &o.over, 1, h_slack_ms(5000)));
    CHECK_ID(weft_post(other, spawn_held, &p, NULL));
    CHECK(run_until(other, &p.over, 1, h_slack_ms(5000)));
    REQUIRE(o.id != 0 && p.id != 0);
    weft_id forged[] = {
        o.id + (1ull << 24),                 /* the next generation of its cell */
        o.id - (1ull << 24),                 /* the previous one */
        (o.id & ~0xffffffull) | 0xffffffull, /* an index past the table */
        o.id ^ 1,                            /* a neighbour cell */
        o.id & ((1ull << 52) - 1),           /* no loop tag */
        p.id,                                /* another loop's task */
    };
    for (size_t i = 0; i < sizeof forged / sizeof forged[0]; i++)
        CHECK_MSG(weft_cancel(lp, forged[i]) == WEFT_ERR_NOT_FOUND, "forged id %zu (%#llx) was found", i,
                  (unsigned long long)forged[i]);
    CHECK_RC(weft_cancel(other, o.id), WEFT_ERR_NOT_FOUND);
    CHECK_OK(weft_cancel(lp, o.id));
    CHECK_RC(weft_cancel(lp, o.id), WEFT_ERR_NOT_FOUND);
    atomic_store(&held_gate, 1);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    CHECK_OK(weft_loop_run(other, WEFT_RUN_DEFAULT));
    CHECK_EQ(atomic_load(&o.dones), 1);
    CHECK_EQ(atomic_load(&p.dones), 1);
    CHECK_RC(weft_cancel(other, p.id), WEFT_ERR_NOT_FOUND);
    weft_loop_free(lp);
    weft_loop_free(other);
}

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
