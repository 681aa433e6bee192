/* The loop: run modes, stop, re-entrance, freeing, and free_fn accounting. */
#include "harness.h"

#include <signal.h>

/* ---- run modes -------------------------------------------------------------------- */

TEST(run_default_on_an_empty_loop_returns_at_once) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    uint64_t t0 = now_ns();
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK((now_ns() - t0) / 1000000 < h_slack_ms(200));
    weft_loop_free(lp);
}

TEST(run_with_a_bad_mode_is_invalid) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    track t;
    track_init(&t);
    CHECK_ID(weft_post(lp, track_cb, &t, track_free));
    CHECK_RC(weft_loop_run(lp, 3), WEFT_ERR_INVALID);
    CHECK_ERR_HAS("weft_loop_run: mode 3");
    CHECK_RC(weft_loop_run(lp, -1), WEFT_ERR_INVALID);
    CHECK_RC(weft_loop_run(lp, 1 << 30), WEFT_ERR_INVALID);
    CHECK_EQ(atomic_load(&t.calls), 0); /* nothing ran */
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    CHECK_EQ(atomic_load(&t.calls), 1);
    weft_loop_free(lp);
}

/* DEFAULT runs until nothing is registered: posts, timers; then returns. */
static void chain_post(weft_loop *lp, weft_id id, void *ud) {
    track *t = (track *)ud;
    track_note_call(t, lp, id);
    if (atomic_load(&t->calls) < 5) CHECK_ID(weft_post(lp, chain_post, t, NULL));
}

TEST(run_default_returns_when_everything_is_done) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    track posts, timer;
    track_init(&posts);
    track_init(&timer);
    CHECK_ID(weft_post(lp, chain_post, &posts, NULL));
    uint64_t t0 = now_ns();
    CHECK_ID(weft_timer_after(lp, 30, track_cb, &timer, track_free));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    CHECK_EQ(atomic_load(&posts.calls), 5);
    CHECK_EQ(atomic_load(&timer.calls), 1);
    CHECK_EQ(atomic_load(&timer.frees), 1);
    CHECK(now_ns() - t0 >= 30 * 1000000ull);
    weft_loop_free(lp);
}

/* NOWAIT makes one pass: a post queued during the pass runs in the next one. */
static void post_again(weft_loop *lp, weft_id id, void *ud) {
    track *t = (track *)ud;
    track_note_call(t, lp, id);
    if (atomic_load(&t->calls) == 1) CHECK_ID(weft_post(lp, post_again, t, NULL));
}

TEST(run_nowait_makes_one_pass) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    track t;
    track_init(&t);
    CHECK_ID(weft_post(lp, post_again, &t, NULL));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(atomic_load(&t.calls), 1);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(atomic_load(&t.calls), 2);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(atomic_load(&t.calls), 2);
    /* NOWAIT does not wait for a timer. */
    track timer;
    track_init(&timer);
    CHECK_ID(weft_timer_after(lp, 10000, track_cb, &timer, track_free));
    uint64_t t0 = now_ns();
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK((now_ns() - t0) / 1000000 < h_slack_ms(100));
    CHECK_EQ(atomic_load(&timer.calls), 0);
    weft_loop_free(lp);
    CHECK_EQ(atomic_load(&timer.frees), 1);
}

TEST(run_once_runs_what_is_ready) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    track t;
    track_init(&t);
    CHECK_ID(weft_post(lp, post_again, &t, NULL));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_ONCE));
    CHECK_EQ(atomic_load(&t.calls), 1); /* one pass: the second post waits */
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_ONCE));
    CHECK_EQ(atomic_load(&t.calls), 2);
    weft_loop_free(lp);
}

/* "WEFT_RUN_ONCE waits for something to be ready and makes one pass": with one timer
 * pending, one ONCE run returns after the timer's callback, never before its deadline.
 * Several delays, so that the result does not hang on where the clock happens to be. */
TEST(run_once_waits_for_a_timer_and_runs_it) {
    static const unsigned delays[] = {70, 100, 133, 170};
    for (size_t i = 0; i < sizeof delays / sizeof delays[0]; i++) {
        weft_loop *lp = weft_loop_new();
        REQUIRE(lp != NULL);
        track t;
        track_init(&t);
        uint64_t t0 = now_ns();
        CHECK_ID(weft_timer_after(lp, delays[i], track_cb, &t, track_free));
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_ONCE));
        uint64_t took_ms = (now_ns() - t0) / 1000000;
        CHECK_MSG(atomic_load(&t.calls) == 1,
                  "RUN_ONCE with a %u ms timer returned after %" PRIu64 " ms without running it",
                  delays[i], took_ms);
        weft_loop_free(lp);
    }
}

/* RUN_ONCE on an empty loop waits for something to be ready: a post from another
 * thread wakes it. */
typedef struct {
    weft_loop *lp;
    track t;
} late_post;

static void *post_after_30ms(void *arg) {
    late_post *l = (late_post *)arg;
    sleep_ms(30);
    CHECK_ID(weft_post(l->lp, track_cb, &l->t, track_free));
    return NULL;
}

TEST(run_once_on_an_empty_loop_waits_for_work_from_another_thread) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    late_post l;
    l.lp = lp;
    track_init(&l.t);
    pthread_t th;
    pthread_create(&th, NULL, post_after_30ms, &l);
    uint64_t t0 = now_ns();
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_ONCE));
    uint64_t took = (now_ns() - t0) / 1000000;
    pthread_join(th, NULL);
    CHECK_EQ(atomic_load(&l.t.calls), 1);
    CHECK(took >= 25);
    weft_loop_free(lp);
}

/* ---- stop ----------------------------------------------------------------------------- */

typedef struct {
    weft_loop *lp;
    unsigned delay_ms;
    int rc;
} stopper;

static void *stop_later(void *arg) {
    stopper *s = (stopper *)arg;
    sleep_ms(s->delay_ms);
    s->rc = weft_loop_stop(s->lp);
    return NULL;
}

TEST(stop_from_another_thread_ends_run_default) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    weft_id keep = CHECK_ID(weft_subscribe(lp, "never", never_event_cb, NULL, NULL));
    stopper s = {lp, 50, -99};
    pthread_t th;
    /* The clock starts before the stopper does: its 50 ms are then a true lower bound,
     * however late this thread runs again after pthread_create. */
    uint64_t t0 = now_ns();
    pthread_create(&th, NULL, stop_later, &s);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    uint64_t took = (now_ns() - t0) / 1000000;
    pthread_join(th, NULL);
    CHECK_EQ(s.rc, WEFT_OK);
    CHECK(took >= 45);
    CHECK(took < h_slack_ms(2000));
    /* The registration survives a stop; the loop runs again. */
    CHECK_OK(weft_cancel(lp, keep));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    weft_loop_free(lp);
}

TEST(stop_from_another_thread_ends_run_once) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    CHECK_ID(weft_subscribe(lp, "never", never_event_cb, NULL, NULL));
    stopper s = {lp, 30, -99};
    pthread_t th;
    pthread_create(&th, NULL, stop_later, &s);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_ONCE));
    pthread_join(th, NULL);
    weft_loop_free(lp);
}

/* stop inside a callback lets the pass finish (the other post queued with it runs),
 * then run returns although a timer is still pending. */
static void stop_cb(weft_loop *lp, weft_id id, void *ud) {
    track_note_call((track *)ud, lp, id);
    CHECK_OK(weft_loop_stop(lp));
}

TEST(stop_from_a_callback_finishes_the_pass) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    track a, b, timer;
    track_init(&a);
    track_init(&b);
    track_init(&timer);
    CHECK_ID(weft_post(lp, stop_cb, &a, track_free));
    CHECK_ID(weft_post(lp, track_cb, &b, track_free));
    weft_id far = CHECK_ID(weft_timer_after(lp, 60000, track_cb, &timer, track_free));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    CHECK_EQ(atomic_load(&a.calls), 1);
    CHECK_EQ(atomic_load(&b.calls), 1);
    CHECK_EQ(atomic_load(&timer.calls), 0);
    CHECK_OK(weft_cancel(lp, far));
    CHECK_EQ(atomic_load(&timer.frees), 1);
    weft_loop_free(lp);
}

/* Called while the loop is not running, stop makes the next run return after one pass. */
TEST(stop_before_run_makes_the_next_run_one_pass) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    track p, timer;
    track_init(&p);
    track_init(&timer);
    CHECK_ID(weft_subscribe(lp, "never", never_event_cb, NULL, NULL));
    CHECK_ID(weft_timer_after(lp, 60000, track_cb, &timer, track_free));
    CHECK_ID(weft_post(lp, track_cb, &p, track_free));
    CHECK_OK(weft_loop_stop(lp));
    uint64_t t0 = now_ns();
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    CHECK((now_ns() - t0) / 1000000 < h_slack_ms(500));
    CHECK_EQ(atomic_load(&p.calls), 1);
    /* The stop was used up: the run after that runs until stopped again. */
    stopper s = {lp, 50, -99};
    pthread_t th;
    t0 = now_ns(); /* before the stopper starts, as above */
    pthread_create(&th, NULL, stop_later, &s);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    CHECK((now_ns() - t0) / 1000000 >= 45);
    pthread_join(th, NULL);
    weft_loop_free(lp);
    CHECK_EQ(atomic_load(&timer.frees), 1);
}

/* A stop that arrives while the loop is idle (run DEFAULT returned because nothing was
 * registered) must not linger and cut short a later run that has work to do. */
TEST(stop_on_an_idle_loop_does_not_cut_short_a_later_run) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    CHECK_OK(weft_loop_stop(lp));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT)); /* empty: returns at once */
    /* later, with work */
    track t;
    track_init(&t);
    CHECK_ID(weft_timer_after(lp, 20, track_cb, &t, track_free));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    CHECK_MSG(atomic_load(&t.calls) == 1,
              "run DEFAULT returned with its timer pending: the stop made while the loop "
              "was idle was still in force");
    weft_loop_free(lp);
}

/* ---- re-entrance and concurrency -------------------------------------------------------- */

typedef struct {
    int rc_default, rc_once, rc_nowait;
    char msg[256];
} reenter;

static void reenter_cb(weft_loop *lp, weft_id id, void *ud) {
    (void)id;
    reenter *r = (reenter *)ud;
    r->rc_default = weft_loop_run(lp, WEFT_RUN_DEFAULT);
    weft_last_error(r->msg, sizeof r->msg);
    r->rc_once = weft_loop_run(lp, WEFT_RUN_ONCE);
    r->rc_nowait = weft_loop_run(lp, WEFT_RUN_NOWAIT);
}

TEST(run_from_a_callback_is_busy) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    reenter r = {0, 0, 0, ""};
    CHECK_ID(weft_post(lp, reenter_cb, &r, NULL));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    CHECK_EQ(r.rc_default, WEFT_ERR_BUSY);
    CHECK_EQ(r.rc_once, WEFT_ERR_BUSY);
    CHECK_EQ(r.rc_nowait, WEFT_ERR_BUSY);
    CHECK_MSG(strncmp(r.msg, "weft_loop_run: ", 15) == 0, "message \"%s\"", r.msg);
    weft_loop_free(lp);
}

typedef struct {
    weft_loop *lp;
    _Atomic int running;
    int rc;
} runner_arg;

static void *run_default_thread(void *arg) {
    runner_arg *r = (runner_arg *)arg;
    r->rc = weft_loop_run(r->lp, WEFT_RUN_DEFAULT);
    return NULL;
}

static void mark_running(weft_loop *lp, weft_id id, void *ud) {
    (void)lp, (void)id;
    atomic_store(&((runner_arg *)ud)->running, 1);
}

TEST(run_from_a_second_thread_is_busy) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    weft_id keep = CHECK_ID(weft_subscribe(lp, "never", never_event_cb, NULL, NULL));
    runner_arg r = {lp, 0, -99};
    CHECK_ID(weft_post(lp, mark_running, &r, NULL));
    pthread_t th;
    pthread_create(&th, NULL, run_default_thread, &r);
    uint64_t end = now_ms() + h_slack_ms(5000);
    while (!atomic_load(&r.running) && now_ms() < end) sleep_ms(1);
    REQUIRE(atomic_load(&r.running));
    CHECK_RC(weft_loop_run(lp, WEFT_RUN_DEFAULT), WEFT_ERR_BUSY);
    CHECK_ERR_HAS("weft_loop_run");
    CHECK_RC(weft_loop_run(lp, WEFT_RUN_NOWAIT), WEFT_ERR_BUSY);
    CHECK_RC(weft_loop_run(lp, WEFT_RUN_ONCE), WEFT_ERR_BUSY);
    /* freeing it from here while it runs is refused too */
    long frees = atomic_load(&h_frees);
    weft_loop_free(lp);
    CHECK_ERR_HAS("weft_loop_free");
    CHECK_EQ(atomic_load(&h_frees), frees);
    /* ending the last registration from this thread lets run DEFAULT return */
    CHECK_OK(weft_cancel(lp, keep));
    pthread_join(th, NULL);
    CHECK_EQ(r.rc, WEFT_OK);
    weft_loop_free(lp);
}

/* weft_loop_free from inside a callback is refused; the loop stays usable. */
typedef struct {
    track t;
    char msg[256];
} free_inside;

static void free_inside_cb(weft_loop *lp, weft_id id, void *ud) {
    free_inside *f = (free_inside *)ud;
    track_note_call(&f->t, lp, id);
    weft_loop_free(lp);
    weft_last_error(f->msg, sizeof f->msg);
    /* still usable */
    CHECK_ID(weft_post(lp, track_cb, &f->t, NULL));
}

TEST(loop_free_from_a_callback_is_refused) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    free_inside f;
    memset(&f, 0, sizeof f);
    track other;
    track_init(&other);
    weft_id sub = CHECK_ID(weft_subscribe(lp, "x", track_event_cb, &other, track_free));
    CHECK_ID(weft_post(lp, free_inside_cb, &f, NULL));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_MSG(strncmp(f.msg, "weft_loop_free: ", 16) == 0 && strlen(f.msg) > 20,
              "message \"%s\"", f.msg);
    CHECK_EQ(atomic_load(&other.frees), 0); /* nothing was freed */
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(atomic_load(&f.t.calls), 2);
    CHECK_OK(weft_emit(lp, "x", "1", 1));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(atomic_load(&other.calls), 1);
    CHECK_OK(weft_cancel(lp, sub));
    weft_loop_free(lp);
    CHECK_EQ(atomic_load(&other.frees), 1);
}

/* ---- free_fn accounting ------------------------------------------------------------------ */

TEST(loop_free_frees_every_pending_registration_once) {
    weft_loop *lp;
    int fds[2];
    REQUIRE(loop_and_pipe(&lp, fds));
    enum { N = 8 };
    track t[N];
    for (int i = 0; i < N; i++) track_init(&t[i]);
    CHECK_ID(weft_timer_after(lp, 60000, track_cb, &t[0], track_free));
    CHECK_ID(weft_timer_every(lp, 60000, track_cb, &t[1], track_free));
    CHECK_ID(weft_watch_fd(lp, fds[0], WEFT_READABLE, track_fd_cb, &t[2], track_free));
    CHECK_ID(weft_watch_signal(lp, SIGUSR2, track_signal_cb, &t[3], track_free));
    CHECK_ID(weft_subscribe(lp, "*", track_event_cb, &t[4], track_free));
    CHECK_ID(weft_post(lp, track_cb, &t[5], track_free));        /* not yet run */
    CHECK_ID(weft_timer_after(lp, 0, track_cb, &t[6], track_free)); /* due, not run */
    weft_id cancelled = CHECK_ID(weft_post(lp, track_cb, &t[7], track_free));
    CHECK_OK(weft_cancel(lp, cancelled));
    /* events not yet delivered, with payloads of several sizes (valgrind checks they
     * are released) */
    char big[4096];
    memset(big, 'z', sizeof big);
    CHECK_OK(weft_emit(lp, "a", big, sizeof big));
    CHECK_OK(weft_emit(lp, "b", NULL, 0));
    CHECK_OK(weft_emit(lp, "c", "xyz", 3));
    weft_loop_free(lp);
    for (int i = 0; i < N; i++) {
        CHECK_MSG(atomic_load(&t[i].frees) == 1, "registration %d freed %d times", i,
                  atomic_load(&t[i].frees));
        CHECK_EQ(atomic_load(&t[i].calls), 0);
    }
    close(fds[0]);
    close(fds[1]);
}

/* free_fn runs exactly once after the callback, for each one-shot kind; watches and
 * subscriptions free on cancel, never before. */
TEST(free_fn_runs_once_after_the_last_callback) {
    weft_loop *lp;
    int fds[2];
    REQUIRE(loop_and_pipe(&lp, fds));
    track post, timer, every, watch, sub;
    track_init(&post);
    track_init(&timer);
    track_init(&every);
    track_init(&watch);
    track_init(&sub);
    CHECK_ID(weft_post(lp, track_cb, &post, track_free));
    CHECK_ID(weft_timer_after(lp, 1, track_cb, &timer, track_free));
    weft_id e = CHECK_ID(weft_timer_every(lp, 1, track_cb, &every, track_free));
    weft_id w = CHECK_ID(weft_watch_fd(lp, fds[1], WEFT_WRITABLE, track_fd_cb, &watch, track_free));
    weft_id s = CHECK_ID(weft_subscribe(lp, "t", track_event_cb, &sub, track_free));
    CHECK_OK(weft_emit(lp, "t", "p", 1));
    CHECK(run_until(lp, &every.calls, 3, h_slack_ms(5000)));
    CHECK(run_until(lp, &timer.calls, 1, h_slack_ms(5000)));
    CHECK_EQ(atomic_load(&post.calls), 1);
    CHECK_EQ(atomic_load(&post.frees), 1);
    CHECK_EQ(atomic_load(&timer.calls), 1);
    CHECK_EQ(atomic_load(&timer.frees), 1);
    CHECK(atomic_load(&watch.calls) >= 1);
    CHECK_EQ(atomic_load(&sub.calls), 1);
    CHECK_EQ(atomic_load(&every.frees) + atomic_load(&watch.frees) + atomic_load(&sub.frees), 0);
    CHECK_OK(weft_cancel(lp, e));
    CHECK_OK(weft_cancel(lp, w));
    CHECK_OK(weft_cancel(lp, s));
    CHECK_EQ(atomic_load(&every.frees), 1);
    CHECK_EQ(atomic_load(&watch.frees), 1);
    CHECK_EQ(atomic_load(&sub.frees), 1);
    int every_calls = atomic_load(&every.calls);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT)); /* nothing left: returns */
    CHECK_EQ(atomic_load(&every.calls), every_calls);
    weft_loop_free(lp);
    track *all[] = {&post, &timer, &every, &watch, &sub};
    for (size_t i = 0; i < 5; i++) {
        CHECK_EQ(atomic_load(&all[i]->frees), 1);
        CHECK_EQ(atomic_load(&all[i]->after_free), 0);
    }
    close(fds[0]);
    close(fds[1]);
}

/* Any registration may be cancelled from any callback: one pass, several kinds, each
 * cancelled by the one before; none runs after its cancel, each freed once. */
typedef struct {
    weft_loop *lp;
    weft_id victims[4];
    track victim_track[4];
    int cancel_rc[4];
} canceller;

static void cancel_all_cb(weft_loop *lp, weft_id id, void *ud) {
    (void)id;
    canceller *c = (canceller *)ud;
    for (int i = 0; i < 4; i++) {
        c->cancel_rc[i] = weft_cancel(lp, c->victims[i]);
        /* "its free_fn runs now (on this thread)"; posts: see test_posts.c */
        if (i != 2)
            CHECK_MSG(atomic_load(&c->victim_track[i].frees) == 1,
                  "victim %d: free_fn had not run when weft_cancel returned", i);
    }
}

TEST(cancel_from_a_callback_stops_work_already_due_in_this_pass) {
    weft_loop *lp;
    int fds[2];
    REQUIRE(loop_and_pipe(&lp, fds));
    REQUIRE(write(fds[1], "x", 1) == 1);
    canceller c;
    memset(&c, 0, sizeof c);
    c.lp = lp;
    /* a due timer runs first in the pass and cancels the rest, all ready in this pass */
    CHECK_ID(weft_timer_after(lp, 0, cancel_all_cb, &c, NULL));
    c.victims[0] = CHECK_ID(weft_timer_after(lp, 0, track_cb, &c.victim_track[0], track_free));
    c.victims[1] = CHECK_ID(
        weft_watch_fd(lp, fds[0], WEFT_READABLE, track_fd_cb, &c.victim_track[1], track_free));
    c.victims[2] = CHECK_ID(weft_post(lp, track_cb, &c.victim_track[2], track_free));
    c.victims[3] =
        CHECK_ID(weft_subscribe(lp, "e", track_event_cb, &c.victim_track[3], track_free));
    CHECK_OK(weft_emit(lp, "e", NULL, 0));
    sleep_ms(3); /* both timers due */
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    for (int i = 0; i < 4; i++) {
        CHECK_EQ(c.cancel_rc[i], WEFT_OK);
        CHECK_MSG(atomic_load(&c.victim_track[i].calls) == 0, "victim %d ran after its cancel", i);
        CHECK_EQ(atomic_load(&c.victim_track[i].frees), 1);
    }
    free_loop_and_pair(lp, fds);
}

/* Many loops at once, each with its own thread; all independent. */
typedef struct {
    weft_loop *lp;
    track t;
    int rc;
} loop_thread;

static void *run_loop_thread(void *arg) {
    loop_thread *l = (loop_thread *)arg;
    l->rc = weft_loop_run(l->lp, WEFT_RUN_DEFAULT);
    return NULL;
}

TEST(many_loops_on_many_threads) {
    enum { L = 16 };
    loop_thread loops[L];
    pthread_t th[L];
    for (int i = 0; i < L; i++) {
        loops[i].lp = weft_loop_new();
        REQUIRE(loops[i].lp != NULL);
        track_init(&loops[i].t);
        for (int k = 0; k < 10; k++)
            CHECK_ID(weft_timer_after(loops[i].lp, (uint64_t)(k * 3), track_cb, &loops[i].t,
                                      track_free));
    }
    for (int i = 0; i < L; i++) pthread_create(&th[i], NULL, run_loop_thread, &loops[i]);
    for (int i = 0; i < L; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ(loops[i].rc, WEFT_OK);
        CHECK_EQ(atomic_load(&loops[i].t.calls), 10);
        CHECK_EQ(atomic_load(&loops[i].t.frees), 10);
        CHECK(pthread_equal(loops[i].t.thread, th[i]));
        weft_loop_free(loops[i].lp);
    }
}

/* free_fn may call back into weft (register, cancel, post) in every context where it
 * runs: after the last callback, on cancel from another registration's callback, and on
 * cancel from outside the loop. */
typedef struct {
    weft_loop *lp;
    _Atomic int frees;
    _Atomic int reposts_run;
    weft_id extra; /* registration the free_fn cancels */
    int extra_rc;
} reentrant_free;

static void repost_cb(weft_loop *lp, weft_id id, void *ud) {
    (void)lp, (void)id;
    atomic_fetch_add(&((reentrant_free *)ud)->reposts_run, 1);
}

static void reentrant_free_fn(void *ud) {
    reentrant_free *r = (reentrant_free *)ud;
    atomic_fetch_add(&r->frees, 1);
    CHECK_ID(weft_post(r->lp, repost_cb, r, NULL));
    weft_id t = CHECK_ID(weft_timer_after(r->lp, 100000, never_cb, NULL, NULL));
    CHECK_OK(weft_cancel(r->lp, t));
    if (r->extra) {
        r->extra_rc = weft_cancel(r->lp, r->extra);
        r->extra = 0;
    }
}

static void noop_cb(weft_loop *lp, weft_id id, void *ud) { (void)lp, (void)id, (void)ud; }

static void cancel_by_id(weft_loop *lp, weft_id id, void *ud) {
    (void)id;
    CHECK_OK(weft_cancel(lp, *(weft_id *)ud));
}

TEST(free_fn_may_call_back_into_weft) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    reentrant_free r;
    memset(&r, 0, sizeof r);
    r.lp = lp;
    /* after the last callback: a post and a one-shot timer */
    CHECK_ID(weft_post(lp, noop_cb, NULL, NULL));
    CHECK_ID(weft_post(lp, noop_cb, &r, reentrant_free_fn));
    CHECK_ID(weft_timer_after(lp, 0, noop_cb, &r, reentrant_free_fn));
    /* on cancel from outside the loop */
    weft_id post = CHECK_ID(weft_post(lp, never_cb, &r, reentrant_free_fn));
    CHECK_OK(weft_cancel(lp, post));
    /* on cancel from another registration's callback; this free_fn also cancels a
     * third registration */
    weft_id sub = CHECK_ID(weft_subscribe(lp, "s", never_event_cb, &r, reentrant_free_fn));
    r.extra = CHECK_ID(weft_subscribe(lp, "other", never_event_cb, NULL, NULL));
    CHECK_ID(weft_post(lp, cancel_by_id, &sub, NULL));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT)); /* must not deadlock; ends when all is done */
    CHECK_EQ(atomic_load(&r.frees), 4);
    CHECK_EQ(atomic_load(&r.reposts_run), 4);
    CHECK_EQ(r.extra_rc, WEFT_OK);
    CHECK_EQ(weft_loop_alive(lp), 0);
    weft_loop_free(lp);
}

/* Out of fds, weft_loop_new returns NULL with an error naming it, and leaks nothing. */
#include <dirent.h>
#include <sys/resource.h>

/* The open fds as a bitmap over 0..1023; false if the directory cannot be read. */
static bool fd_set_now(unsigned char *set) {
    memset(set, 0, 1024);
    DIR *d = opendir("/proc/self/fd");
    if (!d) return false;
    int self = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] != '.' && fd != self && fd < 1024) set[fd] = 1;
    }
    closedir(d);
    return true;
}

TEST(loop_new_out_of_fds_fails_cleanly) {
    if (h_valgrind()) return; /* valgrind virtualises the fd limit */
    static unsigned char before_all[1024], before_last[1024], after_last[1024], after_free[1024];
    REQUIRE(fd_set_now(before_all));
    /* a limit that leaves 17 free fds: room for a few loops (5 fds each), then the
     * limit is hit part way through one, with a spare fd left for listing /proc */
    int limit = 0;
    for (int free_fds = 0; free_fds < 17; limit++)
        if (!before_all[limit]) free_fds++;
    struct rlimit old;
    REQUIRE(getrlimit(RLIMIT_NOFILE, &old) == 0);
    struct rlimit low = {(rlim_t)limit, old.rlim_max};
    REQUIRE(setrlimit(RLIMIT_NOFILE, &low) == 0);
    weft_loop *lps[16];
    int n = 0;
    bool listed = true;
    for (; n < 16; n++) {
        listed &= fd_set_now(before_last);
        lps[n] = weft_loop_new();
        if (lps[n] == NULL) break;
    }
    char err[256];
    weft_last_error(err, sizeof err);
    bool listed_after = fd_set_now(after_last);
    for (int i = 0; i < n; i++) weft_loop_free(lps[i]);
    REQUIRE(setrlimit(RLIMIT_NOFILE, &old) == 0);
    CHECK(listed);
    CHECK(n >= 1 && n < 16);
    CHECK_MSG(strncmp(err, "weft_loop_new: ", 15) == 0, "message \"%s\"", err);
    CHECK_MSG(listed_after, "no fd left after the failed weft_loop_new: it leaked fds");
    for (int fd = 0; fd < 1024 && listed_after; fd++)
        CHECK_MSG(after_last[fd] == before_last[fd],
                  "the failed weft_loop_new left fd %d %s", fd, after_last[fd] ? "open" : "closed");
    CHECK(fd_set_now(after_free));
    for (int fd = 0; fd < 1024; fd++)
        CHECK_MSG(after_free[fd] == before_all[fd], "fd %d differs after freeing the loops", fd);
}
