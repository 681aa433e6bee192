/* Embedding: a host's own poll() loop watches weft_loop_fd() and calls
 * weft_loop_run(NOWAIT); weft_loop_timeout_ms and weft_loop_alive. */
#include "harness.h"

#include <poll.h>

static bool fd_readable(int fd, int timeout_ms) {
    struct pollfd p = {fd, POLLIN, 0};
    return poll(&p, 1, timeout_ms) > 0 && (p.revents & POLLIN);
}

/* ---- a full host loop ------------------------------------------------------------- */

typedef struct {
    weft_loop *lp;
    int pipe_w;
    long posts;
} feeder_arg;

typedef struct {
    _Atomic long posts_run;
    _Atomic int pipe_reads;
    char pipe_data[8];
    int ticks;
    weft_id every;
    _Atomic int timer_fired;
    uint64_t timer_registered_ns, timer_fired_ns;
    pthread_t host_thread;
    _Atomic int wrong_thread;
} host_state;

static host_state hs;

static void check_thread(void) {
    if (!pthread_equal(pthread_self(), hs.host_thread)) atomic_fetch_add(&hs.wrong_thread, 1);
}

static void host_post_cb(weft_loop *lp, weft_id id, void *ud) {
    (void)lp, (void)id, (void)ud;
    check_thread();
    atomic_fetch_add(&hs.posts_run, 1);
}

static void host_tick_cb(weft_loop *lp, weft_id id, void *ud) {
    (void)ud;
    check_thread();
    if (++hs.ticks == 5) CHECK_OK(weft_cancel(lp, id));
}

static void host_timer_cb(weft_loop *lp, weft_id id, void *ud) {
    (void)lp, (void)id, (void)ud;
    check_thread();
    hs.timer_fired_ns = now_ns();
    atomic_store(&hs.timer_fired, 1);
}

static void host_pipe_cb(weft_loop *lp, weft_id id, int fd, uint32_t events, void *ud) {
    (void)ud;
    check_thread();
    CHECK(events & WEFT_READABLE);
    ssize_t n = read(fd, hs.pipe_data, sizeof hs.pipe_data - 1);
    CHECK(n == 5);
    atomic_fetch_add(&hs.pipe_reads, 1);
    CHECK_OK(weft_cancel(lp, id));
}

static void *feeder(void *arg) {
    feeder_arg *f = (feeder_arg *)arg;
    for (long i = 0; i < f->posts; i++) {
        CHECK_ID(weft_post(f->lp, host_post_cb, NULL, NULL));
        if (i % 100 == 0) sleep_ms(1);
    }
    sleep_ms(20);
    CHECK(write(f->pipe_w, "hello", 5) == 5);
    return NULL;
}

TEST(a_poll_host_drives_timers_watches_and_posts) {
    memset(&hs, 0, sizeof hs);
    hs.host_thread = pthread_self();
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    int lfd = weft_loop_fd(lp);
    REQUIRE(lfd >= 0);
    int p[2];
    REQUIRE(pipe(p) == 0);
    CHECK_ID(weft_watch_fd(lp, p[0], WEFT_READABLE, host_pipe_cb, NULL, NULL));
    hs.every = CHECK_ID(weft_timer_every(lp, 10, host_tick_cb, NULL, NULL));
    hs.timer_registered_ns = now_ns();
    CHECK_ID(weft_timer_after(lp, 40, host_timer_cb, NULL, NULL));
    feeder_arg f = {lp, p[1], h_scale(2000, 300)};
    pthread_t th;
    pthread_create(&th, NULL, feeder, &f);

    /* The host: poll() on weft's fd only; NOWAIT when it is readable. */
    long iterations = 0, idle_wakeups = 0;
    uint64_t end = now_ms() + h_slack_ms(5000);
    while (now_ms() < end) {
        if (atomic_load(&hs.posts_run) == f.posts && atomic_load(&hs.pipe_reads) == 1 &&
            hs.ticks == 5 && atomic_load(&hs.timer_fired))
            break;
        struct pollfd pfd = {lfd, POLLIN, 0};
        int n = poll(&pfd, 1, 1000);
        iterations++;
        if (n == 0) {
            idle_wakeups++;
            continue;
        }
        CHECK(pfd.revents & POLLIN);
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    }
    pthread_join(th, NULL);
    CHECK_EQ(atomic_load(&hs.posts_run), f.posts);
    CHECK_EQ(atomic_load(&hs.pipe_reads), 1);
    CHECK(strcmp(hs.pipe_data, "hello") == 0);
    CHECK_EQ(hs.ticks, 5);
    CHECK(atomic_load(&hs.timer_fired));
    CHECK(hs.timer_fired_ns >= hs.timer_registered_ns + 40 * 1000000ull);
    CHECK_EQ(atomic_load(&hs.wrong_thread), 0);
    CHECK_EQ(idle_wakeups, 0); /* poll never had to time out: weft's fd woke it each time */
    /* Everything is done: nothing registered; after a pass the fd is quiet. */
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(weft_loop_alive(lp), 0);
    CHECK_MSG(!fd_readable(lfd, 50), "weft_loop_fd readable with nothing registered");
    CHECK_EQ(weft_loop_timeout_ms(lp), -1);
    free_loop_and_pair(lp, p);
    (void)iterations;
}

/* No busy loop: with nothing due, the fd is not readable; with a timer pending, the
 * host wakes a handful of times at most before it fires, never early. */
TEST(the_fd_is_quiet_when_nothing_is_due) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    int lfd = weft_loop_fd(lp);
    int p[2];
    REQUIRE(pipe(p) == 0);
    CHECK(!fd_readable(lfd, 0)); /* new, empty */
    weft_id w = CHECK_ID(weft_watch_fd(lp, p[0], WEFT_READABLE, never_fd_cb, NULL, NULL));
    weft_id s = CHECK_ID(weft_subscribe(lp, "x", never_event_cb, NULL, NULL));
    weft_id far = CHECK_ID(weft_timer_after(lp, 3600 * 1000, never_cb, NULL, NULL));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_MSG(!fd_readable(lfd, 100), "readable with only an idle watch, a subscription and a "
                                      "timer an hour away");
    /* a timer 300 ms ahead: count the wake-ups until it fires */
    track t;
    track_init(&t);
    uint64_t t0 = now_ns();
    CHECK_ID(weft_timer_after(lp, 300, track_cb, &t, track_free));
    int wakeups = 0;
    uint64_t end = now_ms() + h_slack_ms(3000);
    while (atomic_load(&t.calls) == 0 && now_ms() < end) {
        if (!fd_readable(lfd, 1000)) continue;
        wakeups++;
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    }
    uint64_t fired = now_ns();
    CHECK_EQ(atomic_load(&t.calls), 1);
    CHECK(fired - t0 >= 300 * 1000000ull);
    CHECK_MSG(wakeups <= 8, "%d wake-ups of the host for one timer", wakeups);
    CHECK_OK(weft_cancel(lp, w));
    CHECK_OK(weft_cancel(lp, s));
    CHECK_OK(weft_cancel(lp, far));
    free_loop_and_pair(lp, p);
}

/* A host that only sleeps for weft_loop_timeout_ms (no fd) still runs a timer on time,
 * and does not spin. */
TEST(a_host_that_sleeps_for_timeout_ms) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    track t;
    track_init(&t);
    uint64_t t0 = now_ns();
    CHECK_ID(weft_timer_after(lp, 250, track_cb, &t, track_free));
    int iterations = 0;
    uint64_t end = now_ms() + h_slack_ms(3000);
    while (atomic_load(&t.calls) == 0 && now_ms() < end) {
        int64_t to = weft_loop_timeout_ms(lp);
        CHECK(to >= 0);
        if (to > 0) poll(NULL, 0, (int)to);
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
        iterations++;
    }
    CHECK_EQ(atomic_load(&t.calls), 1);
    CHECK(now_ns() - t0 >= 250 * 1000000ull);
    CHECK_MSG(iterations <= 10, "%d host iterations for one 250 ms timer", iterations);
    weft_loop_free(lp);
}

/* The inner set joins the host's fd only when a host first asks for it (a member costs
 * the kernel work on every readiness change): the fd asked for late reports at once
 * what was ready before, and keeps working after a polluted inner set was replaced,
 * whether the host asked before the replacement or after it. */
TEST(the_fd_asked_for_late_reports_what_is_ready) {
    /* when the host first asks: 0 before anything, 1 once a watched fd is ready, 2 once
     * the inner set has been replaced */
    for (int ask = 0; ask < 3; ask++) {
        weft_loop *lp;
        int p[2];
        REQUIRE(loop_and_pipe(&lp, p));
        int lfd = ask == 0 ? weft_loop_fd(lp) : -1;
        track t;
        track_init(&t);
        weft_id w = CHECK_ID(weft_watch_fd(lp, p[0], WEFT_READABLE, track_fd_cb, &t, NULL));
        REQUIRE(write(p[1], "x", 1) == 1);
        CHECK_EQ(weft_loop_timeout_ms(lp), 0); /* looks at the inner set itself */
        if (ask == 1) lfd = weft_loop_fd(lp);
        if (lfd >= 0) CHECK_MSG(fd_readable(lfd, 0), "a watched fd is ready (asked %d)", ask);
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
        CHECK_EQ(atomic_load(&t.calls), 1);
        char c;
        CHECK(read(p[0], &c, 1) == 1);
        if (lfd >= 0) CHECK(!fd_readable(lfd, 0));
        /* pollute the inner set: a watched fd closed while a duplicate stays open */
        int q[2];
        REQUIRE(pipe(q) == 0);
        REQUIRE(write(q[1], "y", 1) == 1);
        int dup_fd = dup(q[0]);
        weft_id v = CHECK_ID(weft_watch_fd(lp, q[0], WEFT_READABLE, never_fd_cb, NULL, NULL));
        close(q[0]);
        CHECK_OK(weft_cancel(lp, v));
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT)); /* sees the stray report */
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT)); /* replaces the set */
        CHECK_EQ(weft_loop_timeout_ms(lp), -1);
        if (ask == 2) lfd = weft_loop_fd(lp);
        CHECK_MSG(!fd_readable(lfd, 50), "the host's fd is readable with nothing ready "
                                         "(asked %d)", ask);
        REQUIRE(write(p[1], "z", 1) == 1);
        CHECK_MSG(fd_readable(lfd, 1000), "the host's fd missed a watched fd after the "
                                          "inner set was replaced (asked %d)", ask);
        CHECK_EQ(weft_loop_timeout_ms(lp), 0);
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
        CHECK_EQ(atomic_load(&t.calls), 2);
        CHECK_OK(weft_cancel(lp, w));
        free_loop_and_pair(lp, p);
        close(dup_fd);
        close(q[1]);
    }
}

/* ---- weft_loop_timeout_ms ---------------------------------------------------------------- */

TEST(timeout_ms_reports_what_is_pending) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    CHECK_EQ(weft_loop_timeout_ms(lp), -1); /* nothing */
    int p[2];
    REQUIRE(pipe(p) == 0);
    weft_id w = CHECK_ID(weft_watch_fd(lp, p[0], WEFT_READABLE, track_fd_cb, NULL, NULL));
    weft_id s = CHECK_ID(weft_subscribe(lp, "x", never_event_cb, NULL, NULL));
    CHECK_EQ(weft_loop_timeout_ms(lp), -1); /* registered, but no timer */
    /* a post queued: 0 */
    track t;
    track_init(&t);
    CHECK_ID(weft_post(lp, track_cb, &t, NULL));
    CHECK_EQ(weft_loop_timeout_ms(lp), 0);
    CHECK(fd_readable(weft_loop_fd(lp), 0));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(weft_loop_timeout_ms(lp), -1);
    /* an event queued: 0 */
    CHECK_OK(weft_emit(lp, "nobody.listens", NULL, 0));
    CHECK_EQ(weft_loop_timeout_ms(lp), 0);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(weft_loop_timeout_ms(lp), -1);
    /* a watched fd ready: 0 */
    REQUIRE(write(p[1], "x", 1) == 1);
    CHECK_EQ(weft_loop_timeout_ms(lp), 0);
    char c;
    CHECK(read(p[0], &c, 1) == 1);
    CHECK_EQ(weft_loop_timeout_ms(lp), -1);
    /* a timer N ms ahead: within [0, N + 1] (the timer fires on the 1 ms grid); the
     * exact value is checked below */
    weft_id timer = CHECK_ID(weft_timer_after(lp, 50, never_cb, NULL, NULL));
    int64_t to = weft_loop_timeout_ms(lp);
    CHECK_MSG(to >= 0 && to <= 51, "timeout_ms for a 50 ms timer = %" PRId64, to);
    CHECK_OK(weft_cancel(lp, timer));
    CHECK_OK(weft_cancel(lp, w));
    CHECK_OK(weft_cancel(lp, s));
    CHECK_EQ(weft_loop_timeout_ms(NULL), -1);
    free_loop_and_pair(lp, p);
}

/* "Milliseconds until the loop's next timer is due (rounded up to whole ms)": for a
 * timer N ms ahead, N (N + 1 on the 1 ms grid; less only by the time spent since the
 * call), not a fraction of it. Several N, each in a fresh loop. */
TEST(timeout_ms_is_the_time_until_the_timer) {
    static const uint64_t delays[] = {5, 20, 63, 100, 1000, 5000, 10000, 12345, 60000, 600000};
    for (size_t i = 0; i < sizeof delays / sizeof delays[0]; i++) {
        weft_loop *lp = weft_loop_new();
        REQUIRE(lp != NULL);
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT)); /* a fresh pass: the wheel is current */
        uint64_t t0 = now_ns();
        weft_id id = CHECK_ID(weft_timer_after(lp, delays[i], never_cb, NULL, NULL));
        int64_t to = weft_loop_timeout_ms(lp);
        uint64_t spent_ms = (now_ns() - t0) / 1000000 + 1;
        CHECK_MSG(to <= (int64_t)delays[i] + 1 && to + (int64_t)spent_ms >= (int64_t)delays[i],
                  "timer %" PRIu64 " ms ahead: weft_loop_timeout_ms = %" PRId64, delays[i], to);
        CHECK_OK(weft_cancel(lp, id));
        weft_loop_free(lp);
    }
}

/* After the last registration is cancelled, no timer is pending: -1 ("-1 when no timer
 * is pending"), not 0 ("work is ready now"); and one pass at most quiets the fd. */
TEST(timeout_ms_after_the_last_cancel) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    weft_id id = CHECK_ID(weft_timer_after(lp, 1000, never_cb, NULL, NULL));
    CHECK_OK(weft_cancel(lp, id));
    CHECK_EQ(weft_loop_alive(lp), 0);
    int64_t to = weft_loop_timeout_ms(lp);
    CHECK_MSG(to == -1,
              "weft_loop_timeout_ms = %" PRId64 " right after the last registration was "
              "cancelled (nothing registered, nothing queued)",
              to);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_MSG(!fd_readable(weft_loop_fd(lp), 0), "weft_loop_fd still readable after a pass");
    CHECK_EQ(weft_loop_timeout_ms(lp), -1);
    weft_loop_free(lp);
}

/* ---- weft_loop_alive -------------------------------------------------------------------- */

TEST(loop_alive_follows_registrations_and_queues) {
    CHECK_EQ(weft_loop_alive(NULL), WEFT_ERR_NULL);
    CHECK_ERR_HAS("weft_loop_alive: loop is NULL");
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    CHECK_EQ(weft_loop_alive(lp), 0);
    /* a post, until it ran */
    CHECK_ID(weft_post(lp, track_cb, &(track){0}, NULL));
    CHECK_EQ(weft_loop_alive(lp), 1);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(weft_loop_alive(lp), 0);
    /* an event nobody subscribed to, until delivered */
    CHECK_OK(weft_emit(lp, "x", "y", 1));
    CHECK_EQ(weft_loop_alive(lp), 1);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(weft_loop_alive(lp), 0);
    /* each registration kind */
    int p[2];
    REQUIRE(pipe(p) == 0);
    weft_id ids[4] = {
        CHECK_ID(weft_timer_after(lp, 100000, never_cb, NULL, NULL)),
        CHECK_ID(weft_watch_fd(lp, p[0], WEFT_READABLE, never_fd_cb, NULL, NULL)),
        CHECK_ID(weft_subscribe(lp, "z", never_event_cb, NULL, NULL)),
        CHECK_ID(weft_timer_every(lp, 100000, never_cb, NULL, NULL)),
    };
    for (int i = 0; i < 4; i++) {
        CHECK_EQ(weft_loop_alive(lp), 1);
        CHECK_OK(weft_cancel(lp, ids[i]));
    }
    CHECK_EQ(weft_loop_alive(lp), 0);
    /* a one-shot timer is alive until it fired */
    CHECK_ID(weft_timer_after(lp, 0, track_cb, &(track){0}, NULL));
    CHECK_EQ(weft_loop_alive(lp), 1);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    CHECK_EQ(weft_loop_alive(lp), 0);
    /* a cancelled post: not alive (nothing will run) or alive until the next pass */
    weft_id post = CHECK_ID(weft_post(lp, never_cb, NULL, NULL));
    CHECK_OK(weft_cancel(lp, post));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(weft_loop_alive(lp), 0);
    free_loop_and_pair(lp, p);
}

/* Several loops embedded in one host poll() set, each served on the host thread. */
TEST(one_host_serves_several_loops) {
    enum { L = 4 };
    weft_loop *lps[L];
    track t[L];
    struct pollfd pfd[L];
    for (int i = 0; i < L; i++) {
        lps[i] = weft_loop_new();
        REQUIRE(lps[i] != NULL);
        track_init(&t[i]);
        CHECK_ID(weft_timer_after(lps[i], (uint64_t)(10 + 10 * i), track_cb, &t[i], track_free));
        pfd[i] = (struct pollfd){weft_loop_fd(lps[i]), POLLIN, 0};
    }
    int done = 0;
    uint64_t end = now_ms() + h_slack_ms(3000);
    while (done < L && now_ms() < end) {
        if (poll(pfd, L, 1000) <= 0) continue;
        for (int i = 0; i < L; i++)
            if (pfd[i].revents & POLLIN) CHECK_OK(weft_loop_run(lps[i], WEFT_RUN_NOWAIT));
        done = 0;
        for (int i = 0; i < L; i++) done += atomic_load(&t[i].calls);
    }
    for (int i = 0; i < L; i++) {
        CHECK_EQ(atomic_load(&t[i].calls), 1);
        CHECK(pthread_equal(t[i].thread, pthread_self()));
        weft_loop_free(lps[i]);
        CHECK_EQ(atomic_load(&t[i].frees), 1);
    }
}
