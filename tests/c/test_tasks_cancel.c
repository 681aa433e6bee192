/* Tasks cancelled before, during and after their work, and tasks that time out:
 * done once with CANCELLED or TIMEOUT, free_fn once. */
#include "harness.h"
#include "tasks_util.h"
#include "tasks_work.h"

#include <poll.h>
#include <sched.h>

static const char *where_name(weft_where w) {
    return w == WEFT_ON_LOOP ? "loop" : w == WEFT_ON_IO ? "io" : w == WEFT_ON_CPU ? "cpu" : "?";
}

/* ---- cancel ------------------------------------------------------------------------ */

/* A queued task (its 1-thread pool is busy) cancelled: done(CANCELLED) at once, with no
 * result, while the pool is still busy; its work never runs; a second cancel is
 * NOT_FOUND; free_fn runs once. On a CPU pool and on an IO pool. */
TEST(cancel_of_a_queued_task) {
    weft_pool_kind kinds[] = {WEFT_POOL_CPU, WEFT_POOL_IO};
    weft_where wheres[] = {WEFT_ON_CPU, WEFT_ON_IO};
    for (int k = 0; k < 2; k++) {
        weft_loop *lp = weft_loop_new();
        REQUIRE(lp != NULL);
        weft_pool_options po = pool_opts(kinds[k], 1, "one");
        weft_pool *pool = weft_pool_new(&po);
        REQUIRE(pool != NULL);
        weft_spawn_options so = spawn_opts(pool, 0);
        _Atomic int gate = 0;
        rec blocker, target;
        rec_init(&blocker), rec_init(&target);
        blocker.gate = &gate;
        blocker.ret = 1;
        target.ret = 2;
        CHECK_ID(rec_spawn(lp, wheres[k], &blocker, &so));
        REQUIRE(WAIT_FOR(atomic_load(&blocker.work_active) == 1, h_slack_ms(2000)));
        weft_id id = CHECK_ID(rec_spawn(lp, wheres[k], &target, &so));
        CHECK_OK(weft_cancel(lp, id));
        CHECK_RC(weft_cancel(lp, id), WEFT_ERR_NOT_FOUND);
        CHECK(run_until(lp, &target.dones, 1, h_slack_ms(2000)));
        CHECK_EQ(atomic_load(&blocker.work_active), 1); /* the pool is still busy */
        CHECK_EQ(target.status, WEFT_ERR_CANCELLED);
        CHECK_EQ(target.len, 0);
        CHECK_RC(weft_cancel(lp, id), WEFT_ERR_NOT_FOUND);
        atomic_store(&gate, 1);
        CHECK(run_until(lp, &blocker.dones, 1, h_slack_ms(5000)));
        CHECK_EQ(blocker.status, 1);
        CHECK(WAIT_FOR(atomic_load(&target.frees) == 1, h_slack_ms(2000)));
        weft_pool_free(pool); /* joins: whatever the pool still held is over */
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
        CHECK_EQ(atomic_load(&target.work_runs), 0);
        CHECK_EQ(atomic_load(&target.dones), 1);
        CHECK_EQ(atomic_load(&target.frees), 1);
        CHECK_EQ(atomic_load(&target.dones_at_free), 1);
        CHECK_EQ(atomic_load(&blocker.frees), 1);
        weft_loop_free(lp);
    }
}

/* A running task cancelled: weft_task_cancelled turns true; done gets CANCELLED when
 * the work returns, with its result discarded; free_fn runs once, after the work. */
TEST(cancel_of_a_running_task) {
    weft_where wheres[] = {WEFT_ON_IO, WEFT_ON_CPU};
    for (int w = 0; w < 2; w++) {
        weft_loop *lp = weft_loop_new();
        REQUIRE(lp != NULL);
        rec r;
        rec_init(&r);
        r.until_cancelled = true;
        r.sleep_ms = 30; /* keeps running a while after it saw the cancel */
        r.out = (const unsigned char *)"discarded";
        r.out_len = 9;
        r.ret = 77;
        weft_id id = CHECK_ID(rec_spawn(lp, wheres[w], &r, NULL));
        REQUIRE(WAIT_FOR(atomic_load(&r.work_active) == 1, h_slack_ms(2000)));
        CHECK_OK(weft_cancel(lp, id));
        CHECK_RC(weft_cancel(lp, id), WEFT_ERR_NOT_FOUND); /* cancelled already */
        /* done waits for the work. */
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
        CHECK_EQ(atomic_load(&r.dones), 0);
        CHECK(run_until(lp, &r.dones, 1, h_slack_ms(5000)));
        CHECK_EQ(r.status, WEFT_ERR_CANCELLED);
        CHECK_EQ(r.len, 0);
        CHECK_EQ(atomic_load(&r.saw_cancelled), 1);
        CHECK_EQ(atomic_load(&r.work_active_at_done), 0);
        CHECK_EQ(atomic_load(&r.work_returned), 1);
        CHECK(WAIT_FOR(atomic_load(&r.frees) == 1, h_slack_ms(2000)));
        CHECK_EQ(atomic_load(&r.work_active_at_free), 0);
        CHECK_EQ(atomic_load(&r.dones_at_free), 1);
        CHECK_RC(weft_cancel(lp, id), WEFT_ERR_NOT_FOUND);
        weft_loop_free(lp);
        CHECK_EQ(atomic_load(&r.frees), 1);
    }
}

/* A loop task cancelled before its pass: done(CANCELLED), the work never runs. */
TEST(cancel_of_a_loop_task_before_its_pass) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    rec r;
    rec_init(&r);
    weft_id id = CHECK_ID(rec_spawn(lp, WEFT_ON_LOOP, &r, NULL));
    CHECK_OK(weft_cancel(lp, id));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    CHECK_EQ(atomic_load(&r.dones), 1);
    CHECK_EQ(r.status, WEFT_ERR_CANCELLED);
    CHECK_EQ(atomic_load(&r.work_runs), 0);
    CHECK_EQ(atomic_load(&r.frees), 1);
    weft_loop_free(lp);
}

/* Work that cancels its own task: it sees weft_task_cancelled, done gets CANCELLED. */
static int self_cancel_work(weft_task *t, void *ud) {
    rec *r = (rec *)ud;
    weft_id id;
    uint64_t end = now_ms() + 5000;
    while ((id = atomic_load(&r->id)) == 0 && now_ms() < end) sleep_ms(1);
    CHECK_OK(weft_cancel(r->done_lp, id));
    CHECK(weft_task_cancelled(t));
    CHECK_OK(weft_task_write(t, "zz", 2));
    atomic_store(&r->work_returned, 1);
    return 4;
}

TEST(work_may_cancel_its_own_task) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    rec r[2];
    weft_where wheres[] = {WEFT_ON_CPU, WEFT_ON_LOOP};
    for (int i = 0; i < 2; i++) {
        rec_init(&r[i]);
        r[i].done_lp = lp; /* the loop, for the work */
        atomic_store(&r[i].id,
                     CHECK_ID(weft_spawn(lp, wheres[i], self_cancel_work, rec_done, &r[i], rec_free, NULL)));
    }
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(atomic_load(&r[i].work_returned), 1);
        CHECK_EQ(atomic_load(&r[i].dones), 1);
        CHECK_EQ(r[i].status, WEFT_ERR_CANCELLED);
        CHECK_EQ(r[i].len, 0);
        WAIT_FREED(r[i]);
        CHECK_EQ(atomic_load(&r[i].frees), 1);
    }
    weft_loop_free(lp);
}

/* Cancel racing completion: a cancel at a random moment around the end of the work
 * either wins (OK, done gets CANCELLED) or loses (NOT_FOUND, done gets what the work
 * returned); done and free_fn run exactly once either way. */
typedef struct {
    rec r;
    _Atomic int dones_before_cancel;
} race_rec;

TEST(cancel_racing_completion) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    weft_id keep = CHECK_ID(weft_subscribe(lp, "keepalive", never_event_cb, NULL, NULL));
    bg_loop b;
    bg_start(&b, lp, WEFT_RUN_DEFAULT);
    long rounds = h_scale(3000, 200);
    race_rec *rr = calloc((size_t)rounds, sizeof *rr);
    REQUIRE(rr != NULL);
    long won = 0, lost = 0, won_while_done_ran = 0, bad = 0;
    uint64_t seed = 0x243F6A8885A308D3ull;
    for (long i = 0; i < rounds; i++) {
        rec *r = &rr[i].r;
        r->ret = 5;
        r->out = (const unsigned char *)"x";
        r->out_len = 1;
        weft_id id = CHECK_ID(rec_spawn(lp, i % 2 ? WEFT_ON_CPU : WEFT_ON_IO, r, NULL));
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        uint64_t spin_until = now_ns() + seed % 200000; /* 0..200 us */
        while (now_ns() < spin_until) {
        }
        int before = atomic_load(&r->dones);
        int rc = weft_cancel(lp, id);
        if (!WAIT_FOR(atomic_load(&r->dones) == 1, h_slack_ms(5000))) {
            h_fail(__FILE__, __LINE__, "round %ld: done never ran", i);
            bad++;
            continue;
        }
        if (rc == WEFT_OK && r->status == WEFT_ERR_CANCELLED) {
            won++;
            if (r->len != 0) bad++;
        } else if (rc == WEFT_ERR_NOT_FOUND && r->status == 5) {
            lost++;
            if (r->len != 1 || atomic_load(&r->work_runs) != 1) bad++;
        } else if (rc == WEFT_OK && r->status == 5) {
            /* The cancel landed while done was being called, or had just returned (its
             * entry not yet removed): see the known-bug case
             * cancel_during_done_is_not_found. Counted, not failed here. */
            (void)before;
            won_while_done_ran++;
        } else {
            h_fail(__FILE__, __LINE__, "round %ld: weft_cancel returned %d (done had run: %d), done got %d",
                   i, rc, before, r->status);
            bad++;
        }
    }
    for (long i = 0; i < rounds; i++)
        if (!WAIT_FOR(atomic_load(&rr[i].r.frees) == 1, h_slack_ms(2000))) {
            h_fail(__FILE__, __LINE__, "round %ld: free_fn ran %d times", i, atomic_load(&rr[i].r.frees));
            break;
        }
    CHECK_OK(weft_cancel(lp, keep));
    bg_join(&b, h_slack_ms(5000), "return once nothing is registered");
    for (long i = 0; i < rounds; i++) {
        if (atomic_load(&rr[i].r.dones) != 1 || atomic_load(&rr[i].r.frees) != 1) bad++;
        if (atomic_load(&rr[i].r.done_after_free) != 0) bad++;
    }
    CHECK_EQ(bad, 0);
    CHECK_EQ(won + lost + won_while_done_ran, rounds);
    if (!h_valgrind()) {
        CHECK_MSG(won > 0 && lost > 0, "the race was not exercised: %ld won, %ld lost", won, lost);
    }
    printf("    cancel racing completion: %ld won, %ld lost, %ld OK while done ran\n", won, lost,
           won_while_done_ran);
    weft_loop_free(lp);
    free(rr);
}

/* weft_cancel of a task whose done is running (from inside that done): done has run,
 * so the id no longer names a task in flight: NOT_FOUND, as after done. */
typedef struct {
    _Atomic int dones;
    int rc_inside;
} cancel_in_done;

static void cancel_in_done_cb(weft_loop *lp, weft_id id, int status, const uint8_t *res, size_t len,
                              void *ud) {
    (void)status, (void)res, (void)len;
    cancel_in_done *c = (cancel_in_done *)ud;
    c->rc_inside = weft_cancel(lp, id);
    atomic_fetch_add(&c->dones, 1);
}

TEST(cancel_during_done_is_not_found) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    cancel_in_done c = {0, 99};
    CHECK_ID(weft_spawn(lp, WEFT_ON_CPU, plain_work, cancel_in_done_cb, &c, NULL, NULL));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    CHECK_EQ(atomic_load(&c.dones), 1);
    CHECK_RC(c.rc_inside, WEFT_ERR_NOT_FOUND);
    weft_loop_free(lp);
}

/* done of a cancelled or timed-out task gets result NULL and len 0, as documented. */
TEST(cancelled_and_timed_out_results_are_null) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    rec c, t;
    rec_init(&c), rec_init(&t);
    c.until_cancelled = true;
    t.until_cancelled = true;
    weft_spawn_options so = spawn_opts(NULL, 10);
    weft_id id = CHECK_ID(rec_spawn(lp, WEFT_ON_IO, &c, NULL));
    CHECK_ID(rec_spawn(lp, WEFT_ON_IO, &t, &so));
    CHECK_OK(weft_cancel(lp, id));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    CHECK_EQ(c.status, WEFT_ERR_CANCELLED);
    CHECK_EQ(t.status, WEFT_ERR_TIMEOUT);
    CHECK_EQ(c.len, 0);
    CHECK_EQ(t.len, 0);
    CHECK_MSG(c.result_null, "cancelled: result is not NULL");
    CHECK_MSG(t.result_null, "timed out: result is not NULL");
    WAIT_FREED(c);
    WAIT_FREED(t);
    weft_loop_free(lp);
}

/* A task cancelled (or timed out) while queued is over at its done: its work never
 * runs, nothing outlives done, so its free_fn runs then, on the loop thread, not
 * whenever its pool gets round to the dropped job (maybe never, if the pool stays busy). */
TEST(free_fn_of_a_task_ended_while_queued_runs_at_its_done) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    weft_pool_options po = pool_opts(WEFT_POOL_CPU, 1, "fq1");
    weft_pool *pool = weft_pool_new(&po);
    REQUIRE(pool != NULL);
    weft_spawn_options so = spawn_opts(pool, 0), timed = spawn_opts(pool, 10);
    _Atomic int gate = 0;
    rec blocker, cancelled, timedout;
    rec_init(&blocker), rec_init(&cancelled), rec_init(&timedout);
    blocker.gate = &gate;
    CHECK_ID(rec_spawn(lp, WEFT_ON_CPU, &blocker, &so));
    REQUIRE(WAIT_FOR(atomic_load(&blocker.work_active) == 1, h_slack_ms(2000)));
    weft_id id = CHECK_ID(rec_spawn(lp, WEFT_ON_CPU, &cancelled, &so));
    CHECK_ID(rec_spawn(lp, WEFT_ON_CPU, &timedout, &timed));
    CHECK_OK(weft_cancel(lp, id));
    CHECK(run_until(lp, &cancelled.dones, 1, h_slack_ms(2000)));
    CHECK(run_until(lp, &timedout.dones, 1, h_slack_ms(2000)));
    CHECK_EQ(cancelled.status, WEFT_ERR_CANCELLED);
    CHECK_EQ(timedout.status, WEFT_ERR_TIMEOUT);
    sleep_ms(20);
    CHECK_MSG(atomic_load(&cancelled.frees) == 1, "cancelled while queued: free_fn not run after done");
    CHECK_MSG(atomic_load(&timedout.frees) == 1, "timed out while queued: free_fn not run after done");
    atomic_store(&gate, 1);
    CHECK(run_until(lp, &blocker.dones, 1, h_slack_ms(5000)));
    WAIT_FREED(cancelled);
    WAIT_FREED(timedout);
    WAIT_FREED(blocker);
    CHECK(pthread_equal(cancelled.free_thread, pthread_self()));
    CHECK(pthread_equal(timedout.free_thread, pthread_self()));
    weft_pool_free(pool);
    weft_loop_free(lp);
}

/* ---- timeouts ---------------------------------------------------------------------- */

/* Work sleeping past its timeout: done gets TIMEOUT at the deadline, promptly, without
 * waiting for the work; the work then sees weft_task_cancelled; free_fn runs once,
 * after the work returns, on the pool thread. The id is stale after done. */
TEST(timeout_reports_at_the_deadline_and_frees_after_the_work) {
    weft_where wheres[] = {WEFT_ON_IO, WEFT_ON_CPU};
    for (int w = 0; w < 2; w++) {
        weft_loop *lp = weft_loop_new();
        REQUIRE(lp != NULL);
        rec r;
        rec_init(&r);
        unsigned work_ms = (unsigned)h_slack_ms(300);
        r.sleep_ms = work_ms;
        r.out = (const unsigned char *)"late";
        r.out_len = 4;
        r.ret = 8;
        weft_spawn_options so = spawn_opts(NULL, 40);
        uint64_t t0 = now_ns();
        weft_id id = CHECK_ID(rec_spawn(lp, wheres[w], &r, &so));
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT)); /* returns after done(TIMEOUT) */
        CHECK_EQ(atomic_load(&r.dones), 1);
        CHECK_EQ(r.status, WEFT_ERR_TIMEOUT);
        CHECK_EQ(r.len, 0);
        uint64_t took_ms = (r.t_done_ns - t0) / 1000000u;
        CHECK_MSG(took_ms >= 40, "%s: done(TIMEOUT) after %" PRIu64 " ms, before the 40 ms deadline",
                  where_name(wheres[w]), took_ms);
        CHECK_MSG(took_ms < 40 + h_slack_ms(100), "%s: done(TIMEOUT) after %" PRIu64 " ms",
                  where_name(wheres[w]), took_ms);
        CHECK_EQ(atomic_load(&r.work_active_at_done), 1); /* did not wait for the work */
        CHECK_EQ(atomic_load(&r.frees), 0);
        CHECK_RC(weft_cancel(lp, id), WEFT_ERR_NOT_FOUND);
        CHECK(WAIT_FOR(atomic_load(&r.frees) == 1, h_slack_ms(5000)));
        CHECK_EQ(atomic_load(&r.saw_cancelled), 1);
        CHECK_EQ(atomic_load(&r.work_active_at_free), 0);
        CHECK(r.t_free_ns >= r.t_work_end_ns);
        CHECK_MSG(pthread_equal(r.free_thread, r.work_thread), "%s: free_fn did not run on the work's thread",
                  where_name(wheres[w]));
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
        CHECK_EQ(atomic_load(&r.dones), 1);
        weft_loop_free(lp);
        CHECK_EQ(atomic_load(&r.frees), 1);
    }
}

/* A task still queued at its deadline: done(TIMEOUT), its work never runs. */
TEST(timeout_of_a_queued_task) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    weft_pool_options po = pool_opts(WEFT_POOL_CPU, 1, "q1");
    weft_pool *pool = weft_pool_new(&po);
    REQUIRE(pool != NULL);
    _Atomic int gate = 0;
    rec blocker, target;
    rec_init(&blocker), rec_init(&target);
    blocker.gate = &gate;
    weft_spawn_options plain = spawn_opts(pool, 0), timed = spawn_opts(pool, 20);
    CHECK_ID(rec_spawn(lp, WEFT_ON_CPU, &blocker, &plain));
    REQUIRE(WAIT_FOR(atomic_load(&blocker.work_active) == 1, h_slack_ms(2000)));
    CHECK_ID(rec_spawn(lp, WEFT_ON_CPU, &target, &timed));
    CHECK(run_until(lp, &target.dones, 1, h_slack_ms(2000)));
    CHECK_EQ(target.status, WEFT_ERR_TIMEOUT);
    atomic_store(&gate, 1);
    CHECK(run_until(lp, &blocker.dones, 1, h_slack_ms(5000)));
    weft_pool_free(pool);
    CHECK_EQ(atomic_load(&target.work_runs), 0);
    CHECK_EQ(atomic_load(&target.dones), 1);
    CHECK_EQ(atomic_load(&target.frees), 1);
    weft_loop_free(lp);
}

/* Work that finishes before its timeout: done gets its status, and nothing fires at
 * the deadline. */
TEST(timeout_not_reached) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    rec r;
    rec_init(&r);
    r.ret = 3;
    /* generous under valgrind, where starting the pool alone can take 60 ms */
    weft_spawn_options so = spawn_opts(NULL, h_slack_ms(60));
    CHECK_ID(rec_spawn(lp, WEFT_ON_CPU, &r, &so));
    CHECK(run_until(lp, &r.dones, 1, h_slack_ms(2000)));
    CHECK_EQ(r.status, 3);
    CHECK_EQ(weft_loop_alive(lp), 0);
    CHECK_EQ(weft_loop_timeout_ms(lp), -1); /* the deadline left the timer set */
    sleep_ms(h_slack_ms(80));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(atomic_load(&r.dones), 1);
    WAIT_FREED(r);
    CHECK_EQ(atomic_load(&r.frees), 1);
    weft_loop_free(lp);
}

/* Cancelled while running, then its deadline passes before the work returns: one done,
 * CANCELLED (at the deadline at the latest); free_fn after the work. */
TEST(cancel_then_timeout_gives_one_done) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    rec r;
    rec_init(&r);
    r.sleep_ms = (unsigned)h_slack_ms(200); /* ignores the cancel for a while */
    weft_spawn_options so = spawn_opts(NULL, 40);
    weft_id id = CHECK_ID(rec_spawn(lp, WEFT_ON_IO, &r, &so));
    REQUIRE(WAIT_FOR(atomic_load(&r.work_active) == 1, h_slack_ms(2000)));
    CHECK_OK(weft_cancel(lp, id));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    CHECK_EQ(atomic_load(&r.dones), 1);
    CHECK_EQ(r.status, WEFT_ERR_CANCELLED);
    CHECK(WAIT_FOR(atomic_load(&r.frees) == 1, h_slack_ms(5000)));
    CHECK_EQ(atomic_load(&r.work_active_at_free), 0);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(atomic_load(&r.dones), 1);
    weft_loop_free(lp);
}

/* The largest timeout (2^35 - 1 ms) is accepted; one more is INVALID. */
TEST(timeout_limits) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    weft_spawn_options so = spawn_opts(NULL, (1ull << 35));
    CHECK_ID_FAILS(weft_spawn(lp, WEFT_ON_CPU, plain_work, NULL, NULL, never_free, &so), "timeout_ms");
    so.timeout_ms = (1ull << 35) - 1;
    rec r;
    rec_init(&r);
    CHECK_ID(rec_spawn(lp, WEFT_ON_CPU, &r, &so));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    CHECK_EQ(r.status, 0);
    WAIT_FREED(r);
    CHECK_EQ(atomic_load(&r.frees), 1);
    weft_loop_free(lp);
}
