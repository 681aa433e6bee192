/* Tasks spawned from the loop's own callbacks. Such a spawn (on a CPU pool, without a
 * timeout) takes weft's lock-free path: its task lives in the loop's task table rather
 * than among the loop's registrations, and its job is staged and published to the
 * pool in groups. Everything the API promises must hold there too: done and free_fn
 * exactly once, cancel from any thread with the same answers, stale and forged ids
 * refused. test_loop_spawns_free.c: a loop or a pool freed with such tasks in flight,
 * and workers that start while a long callback is still spawning. */
#include "harness.h"
#include "tasks_util.h"
#include "loop_spawns_work.h"

#include <sched.h>
#include <sys/mman.h>
#include <sys/wait.h>

/* ---- spawning from a callback ------------------------------------------------------- */

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
