/* What a program reads to see its loop at work: weft_loop_get_stats (counts that move
 * with what the loop does, time and timer lateness once read), weft_pool_get_stats,
 * task timings (WEFT_SPAWN_TIMING, weft_task_get_timing) and labels in the watchdog's
 * reports; free_fn exactly once through the timing wrapper; bad input. */
#define _GNU_SOURCE
#include "harness.h"

#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static weft_loop_stats read_stats(weft_loop *lp) {
    weft_loop_stats s;
    memset(&s, 0, sizeof s);
    s.size = sizeof s;
    CHECK_OK(weft_loop_get_stats(lp, &s));
    CHECK_EQ(s.size, sizeof s);
    return s;
}

static void noop_cb(weft_loop *lp, weft_id id, void *ud) { (void)lp, (void)id, (void)ud; }
static void noop_fd_cb(weft_loop *lp, weft_id id, int fd, uint32_t ev, void *ud) {
    (void)lp, (void)id, (void)fd, (void)ev, (void)ud;
}
static void noop_signal_cb(weft_loop *lp, weft_id id, int signum, void *ud) {
    (void)lp, (void)id, (void)signum, (void)ud;
}
static void noop_event_cb(weft_loop *lp, weft_id id, const char *t, const void *p, size_t n, void *ud) {
    (void)lp, (void)id, (void)t, (void)p, (void)n, (void)ud;
}
static void block_cb(weft_loop *lp, weft_id id, void *ud) {
    (void)lp, (void)id;
    sleep_ms((unsigned)(uintptr_t)ud);
}

TEST(loop_stats_count_registrations_callbacks_and_queues) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    weft_loop_stats s = read_stats(lp);
    CHECK_EQ(s.passes, 0);
    CHECK_EQ(s.timers + s.fd_watches + s.signal_watches + s.subscriptions + s.tasks, 0);

    int sv[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    weft_id t1 = CHECK_ID(weft_timer_after(lp, 3600000, noop_cb, NULL, NULL));
    CHECK_ID(weft_timer_every(lp, 3600000, noop_cb, NULL, NULL));
    weft_id f1 = CHECK_ID(weft_watch_fd(lp, sv[0], WEFT_READABLE, noop_fd_cb, NULL, NULL));
    CHECK_ID(weft_watch_fd(lp, sv[1], WEFT_READABLE, noop_fd_cb, NULL, NULL));
    CHECK_ID(weft_watch_signal(lp, SIGUSR2, noop_signal_cb, NULL, NULL));
    weft_id s1 = CHECK_ID(weft_subscribe(lp, "a.*", noop_event_cb, NULL, NULL));
    CHECK_ID(weft_subscribe(lp, "b", noop_event_cb, NULL, NULL));
    CHECK_ID(weft_subscribe(lp, "c", noop_event_cb, NULL, NULL));
    for (int i = 0; i < 5; i++) CHECK_ID(weft_post(lp, noop_cb, NULL, NULL));
    CHECK_OK(weft_emit(lp, "a.x", "p", 1));
    s = read_stats(lp);
    CHECK_EQ(s.timers, 2);
    CHECK_EQ(s.fd_watches, 2);
    CHECK_EQ(s.signal_watches, 1);
    CHECK_EQ(s.subscriptions, 3);
    CHECK_EQ(s.queued_records, 6);

    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    s = read_stats(lp);
    CHECK_EQ(s.post_callbacks, 5);
    CHECK_EQ(s.event_callbacks, 1);
    CHECK_EQ(s.queued_records, 0);
    CHECK(s.passes >= 1);

    CHECK_OK(weft_cancel(lp, t1));
    CHECK_OK(weft_cancel(lp, f1));
    CHECK_OK(weft_cancel(lp, s1));
    s = read_stats(lp);
    CHECK_EQ(s.timers, 1);
    CHECK_EQ(s.fd_watches, 1);
    CHECK_EQ(s.subscriptions, 2);
    weft_loop_free(lp);
    close(sv[0]), close(sv[1]);
}

/* Timers registered from another thread while the loop runs live in the loop's locked
 * table, not the owner's: counted all the same. */
static void *register_timers(void *arg) {
    weft_loop *lp = arg;
    for (int i = 0; i < 3; i++) weft_timer_after(lp, 3600000, noop_cb, NULL, NULL);
    return NULL;
}

TEST(timers_from_another_thread_are_counted) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    weft_id keep = CHECK_ID(weft_timer_after(lp, 3600000, noop_cb, NULL, NULL));
    bg_loop b;
    bg_start(&b, lp, WEFT_RUN_DEFAULT);
    sleep_ms(20);
    pthread_t t;
    pthread_create(&t, NULL, register_timers, lp);
    pthread_join(t, NULL);
    weft_loop_stats s = read_stats(lp);
    CHECK_EQ(s.timers, 4);
    CHECK_OK(weft_loop_stop(lp));
    CHECK(bg_join(&b, 2000, "the loop stops"));
    (void)keep;
    weft_loop_free(lp);
}

TEST(busy_idle_and_timer_lateness_are_measured_once_read) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    weft_loop_stats s = read_stats(lp); /* turns measuring on */
    CHECK_EQ(s.busy_ns + s.idle_ns, 0);
    CHECK_EQ(s.timer_late_samples, 0);
    /* a 30 ms idle wait, then a 60 ms callback that makes the next timer late */
    CHECK_ID(weft_timer_after(lp, 30, block_cb, (void *)(uintptr_t)60, NULL));
    CHECK_ID(weft_timer_after(lp, 35, noop_cb, NULL, NULL));
    uint64_t t0 = now_ns();
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    uint64_t took = now_ns() - t0;
    s = read_stats(lp);
    CHECK_EQ(s.timer_callbacks, 2);
    CHECK_EQ(s.timer_late_samples, 2);
    CHECK_MSG(s.timer_late_max_ns >= 50000000, "max lateness %llu ns behind a 60 ms callback",
              (unsigned long long)s.timer_late_max_ns);
    CHECK(s.timer_late_p50_ns <= s.timer_late_p99_ns && s.timer_late_p99_ns <= s.timer_late_max_ns);
    /* busy and idle are read on the coarse clock (steps of a scheduler tick, 1-4 ms):
     * each end of the run may be off by a step */
    CHECK_MSG(s.busy_ns >= 50000000, "busy %llu ns with a 60 ms callback", (unsigned long long)s.busy_ns);
    CHECK_MSG(s.idle_ns >= 15000000, "idle %llu ns waiting for a 30 ms timer", (unsigned long long)s.idle_ns);
    CHECK_MSG(s.busy_ns + s.idle_ns <= took + 10000000, "busy+idle %llu > run %llu + 10 ms",
              (unsigned long long)(s.busy_ns + s.idle_ns), (unsigned long long)took);
    weft_loop_free(lp);
}

/* Behind a callback shorter than a millisecond, a timer's lateness may be read on the
 * CPU's counter, scaled against the clock (src/metrics/clock.rs): still no less than
 * that callback took. Two timers due together (20 ms on: the scale is known by then),
 * each spinning 800 us: the second to run is at least 800 us late, less the time
 * between scheduling the two (a lower bound: load only makes lateness larger), to the
 * counter's error (a few ns, 10 us allowed; a wrong scale is off by far more). */
static void spin_cb(weft_loop *lp, weft_id id, void *ud) {
    (void)lp; (void)id; (void)ud;
    uint64_t until = now_ns() + 800000;
    while (now_ns() < until) {
    }
}

TEST(lateness_behind_a_sub_millisecond_callback_counts_it) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    read_stats(lp); /* turns measuring on */
    uint64_t t0 = now_ns();
    CHECK_ID(weft_timer_after(lp, 20, spin_cb, NULL, NULL));
    CHECK_ID(weft_timer_after(lp, 20, spin_cb, NULL, NULL));
    uint64_t gap = now_ns() - t0;
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    weft_loop_stats s = read_stats(lp);
    CHECK_EQ(s.timer_late_samples, 2);
    /* 10 us: what a reading on the counter may be behind (src/metrics/clock.rs) */
    CHECK_MSG(s.timer_late_max_ns + gap + 10000 >= 800000, "max lateness %llu ns (+ %llu) behind an 800 us callback",
              (unsigned long long)s.timer_late_max_ns, (unsigned long long)gap);
    CHECK_MSG(s.timer_late_max_ns < 10000000000ull, "max lateness %llu ns", (unsigned long long)s.timer_late_max_ns);
    weft_loop_free(lp);
}

/* A reader sees a blocking callback as busy time while it still blocks. */
TEST(a_callback_that_blocks_shows_as_busy_while_it_runs) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    weft_loop_stats s = read_stats(lp);
    CHECK_ID(weft_post(lp, block_cb, (void *)(uintptr_t)300, NULL));
    bg_loop b;
    bg_start(&b, lp, WEFT_RUN_DEFAULT);
    sleep_ms(200);
    s = read_stats(lp);
    CHECK_MSG(s.busy_ns >= 150000000, "busy %llu ns 200 ms into a 300 ms callback",
              (unsigned long long)s.busy_ns);
    CHECK(bg_join(&b, 2000, "the loop returns"));
    s = read_stats(lp);
    CHECK_EQ(s.post_callbacks, 1);
    CHECK(s.busy_ns >= 290000000);
    weft_loop_free(lp);
}

TEST(an_older_shorter_struct_gets_the_fields_it_knows) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    CHECK_ID(weft_post(lp, noop_cb, NULL, NULL));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    unsigned char buf[sizeof(weft_loop_stats) + 16];
    memset(buf, 0xab, sizeof buf);
    weft_loop_stats *s = (weft_loop_stats *)buf;
    s->size = offsetof(weft_loop_stats, timer_callbacks); /* size and passes */
    CHECK_OK(weft_loop_get_stats(lp, s));
    CHECK_EQ(s->size, offsetof(weft_loop_stats, timer_callbacks));
    CHECK_EQ(s->passes, 1);
    CHECK_EQ(buf[offsetof(weft_loop_stats, timer_callbacks)], 0xab); /* untouched */
    /* a newer, longer struct: ours is filled, the rest left alone, size says ours */
    memset(buf, 0xcd, sizeof buf);
    s->size = sizeof buf;
    CHECK_OK(weft_loop_get_stats(lp, s));
    CHECK_EQ(s->size, sizeof(weft_loop_stats));
    CHECK_EQ(buf[sizeof(weft_loop_stats)], 0xcd);
    weft_loop_free(lp);
}

TEST(stats_refuse_bad_input) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    weft_loop_stats s;
    memset(&s, 0, sizeof s);
    s.size = sizeof s;
    CHECK_RC(weft_loop_get_stats(NULL, &s), WEFT_ERR_NULL);
    CHECK_RC(weft_loop_get_stats(lp, NULL), WEFT_ERR_NULL);
    s.size = 0;
    CHECK_RC(weft_loop_get_stats(lp, &s), WEFT_ERR_INVALID);
    CHECK_ERR_HAS("size");
    s.size = 1u << 20;
    CHECK_RC(weft_loop_get_stats(lp, &s), WEFT_ERR_INVALID);
    weft_pool_stats p;
    memset(&p, 0, sizeof p);
    p.size = sizeof p;
    CHECK_RC(weft_pool_get_stats(NULL, 7, &p), WEFT_ERR_INVALID);
    CHECK_ERR_HAS("kind 7");
    CHECK_RC(weft_pool_get_stats(NULL, WEFT_POOL_CPU, NULL), WEFT_ERR_NULL);
    CHECK_RC(weft_pool_get_stats((weft_pool *)&p, WEFT_POOL_CPU, &p), WEFT_ERR_INVALID);
    CHECK_ERR_HAS("not a live pool");
    weft_loop_free(lp);
}

/* ---- pools ----------------------------------------------------------------------- */

typedef struct {
    _Atomic int done, frees;
    int sleep_ms;
} job_log;

static int sleepy_work(weft_task *t, void *ud) {
    (void)t;
    job_log *j = ud;
    if (j->sleep_ms) sleep_ms((unsigned)j->sleep_ms);
    return 0;
}
static void count_done(weft_loop *lp, weft_id id, int status, const uint8_t *r, size_t n, void *ud) {
    (void)lp, (void)id, (void)status, (void)r, (void)n;
    atomic_fetch_add(&((job_log *)ud)->done, 1);
}
static void count_free(void *ud) { atomic_fetch_add(&((job_log *)ud)->frees, 1); }

static weft_pool_stats pool_stats(weft_pool *pool, weft_pool_kind kind) {
    weft_pool_stats p;
    memset(&p, 0, sizeof p);
    p.size = sizeof p;
    CHECK_OK(weft_pool_get_stats(pool, kind, &p));
    return p;
}

TEST(pool_stats_count_threads_tasks_and_queue) {
    weft_pool_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.kind = WEFT_POOL_CPU;
    o.threads = 2;
    weft_pool *pool = weft_pool_new(&o);
    REQUIRE(pool != NULL);
    weft_pool_stats p = pool_stats(pool, WEFT_POOL_CPU);
    CHECK_EQ(p.threads + p.tasks_run + p.queued, 0);
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    weft_spawn_options so;
    memset(&so, 0, sizeof so);
    so.size = sizeof so;
    so.pool = pool;
    job_log slow = {.sleep_ms = 150}, quick = {0};
    CHECK_ID(weft_spawn(lp, WEFT_ON_CPU, sleepy_work, count_done, &slow, count_free, &so));
    CHECK_ID(weft_spawn(lp, WEFT_ON_CPU, sleepy_work, count_done, &slow, count_free, &so));
    for (int i = 0; i < 2000 && pool_stats(pool, WEFT_POOL_CPU).busy_threads < 2; i++) sleep_ms(1);
    for (int i = 0; i < 50; i++) CHECK_ID(weft_spawn(lp, WEFT_ON_CPU, sleepy_work, count_done, &quick, count_free, &so));
    p = pool_stats(pool, WEFT_POOL_CPU);
    CHECK_EQ(p.threads, 2);
    CHECK_EQ(p.threads_started, 2);
    CHECK_EQ(p.busy_threads, 2); /* both asleep in the slow tasks */
    CHECK_EQ(p.tasks_run, 0);
    /* staged by the loop's owner: counted 32 at a time (the workers' hint) */
    CHECK_MSG(p.queued >= 32 && p.queued <= 50, "%llu queued behind two busy threads",
              (unsigned long long)p.queued);
    weft_loop_stats s = read_stats(lp);
    CHECK_EQ(s.tasks, 52);
    CHECK(run_until(lp, &quick.done, 50, 5000));
    CHECK(run_until(lp, &slow.done, 2, 5000));
    /* a job is counted when it returns, just after it handed its completion over:
     * the last count may follow the last done by a moment */
    for (uint64_t ms = 0; ms < h_slack_ms(1000) && pool_stats(pool, WEFT_POOL_CPU).tasks_run < 52; ms++)
        sleep_ms(1);
    p = pool_stats(pool, WEFT_POOL_CPU);
    CHECK_EQ(p.tasks_run, 52);
    CHECK_EQ(p.queued, 0);
    CHECK_EQ(read_stats(lp).tasks, 0);
    CHECK_EQ(read_stats(lp).done_callbacks, 52);
    weft_loop_free(lp);
    CHECK_EQ(slow.frees + quick.frees, 52);
    weft_pool_free(pool);

    /* the default IO pool: a task counted as run once done */
    lp = weft_loop_new();
    REQUIRE(lp != NULL);
    weft_pool_stats before = pool_stats(NULL, WEFT_POOL_IO);
    job_log io = {0};
    CHECK_ID(weft_spawn(lp, WEFT_ON_IO, sleepy_work, count_done, &io, count_free, NULL));
    CHECK(run_until(lp, &io.done, 1, 5000));
    for (uint64_t ms = 0; ms < h_slack_ms(1000) && pool_stats(NULL, WEFT_POOL_IO).tasks_run < before.tasks_run + 1;
         ms++)
        sleep_ms(1);
    weft_pool_stats after = pool_stats(NULL, WEFT_POOL_IO);
    CHECK_EQ(after.tasks_run, before.tasks_run + 1);
    CHECK(after.threads >= 1 && after.threads_started >= after.threads);
    weft_loop_free(lp);
}

/* ---- task timings ----------------------------------------------------------------- */

typedef struct {
    _Atomic int done, frees;
    int sleep_ms;
    int timing_rc, other_rc;
    weft_task_timing t;
} timed_log;

static int timed_work(weft_task *task, void *ud) {
    (void)task;
    timed_log *j = ud;
    if (j->sleep_ms) sleep_ms((unsigned)j->sleep_ms);
    return 7;
}
static void timed_done(weft_loop *lp, weft_id id, int status, const uint8_t *r, size_t n, void *ud) {
    (void)status, (void)r, (void)n;
    timed_log *j = ud;
    memset(&j->t, 0, sizeof j->t);
    j->t.size = sizeof j->t;
    j->timing_rc = weft_task_get_timing(lp, id, &j->t);
    weft_task_timing other = {.size = sizeof other};
    j->other_rc = weft_task_get_timing(lp, id + 1, &other); /* not this done's task */
    atomic_fetch_add(&j->done, 1);
}
static void timed_free(void *ud) { atomic_fetch_add(&((timed_log *)ud)->frees, 1); }

static weft_spawn_options timing_options(void) {
    weft_spawn_options so;
    memset(&so, 0, sizeof so);
    so.size = sizeof so;
    so.flags = WEFT_SPAWN_TIMING;
    return so;
}

TEST(a_timed_task_reads_when_it_was_queued_started_and_finished) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    weft_spawn_options so = timing_options();
    static const weft_where places[] = {WEFT_ON_LOOP, WEFT_ON_IO, WEFT_ON_CPU, WEFT_ON_PROCESS};
    for (size_t i = 0; i < sizeof places / sizeof places[0]; i++) {
        timed_log j = {.sleep_ms = 30};
        uint64_t before = now_ns();
        CHECK_ID(weft_spawn(lp, places[i], timed_work, timed_done, &j, timed_free, &so));
        CHECK(run_until(lp, &j.done, 1, 5000));
        CHECK_MSG(j.timing_rc == WEFT_OK, "where %d: weft_task_get_timing gave %d", places[i], j.timing_rc);
        CHECK_EQ(j.other_rc, WEFT_ERR_INVALID);
        CHECK_EQ(j.t.size, sizeof j.t);
        CHECK(j.t.queued_ns >= before);
        CHECK(j.t.started_ns >= j.t.queued_ns);
        CHECK_MSG(j.t.finished_ns >= j.t.started_ns + 29000000, "where %d: ran %lld ns for a 30 ms work",
                  places[i], (long long)(j.t.finished_ns - j.t.started_ns));
        CHECK(j.t.done_ns >= j.t.finished_ns);
        CHECK(j.t.done_ns <= now_ns());
        CHECK_EQ(j.frees, 1);
    }
    weft_loop_free(lp);
}

TEST(timing_of_a_task_cancelled_before_it_started_and_of_an_untimed_one) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    weft_spawn_options so = timing_options();
    timed_log j = {0};
    weft_id id = CHECK_ID(weft_spawn(lp, WEFT_ON_LOOP, timed_work, timed_done, &j, timed_free, &so));
    CHECK_OK(weft_cancel(lp, id));
    CHECK(run_until(lp, &j.done, 1, 5000));
    CHECK_EQ(j.timing_rc, WEFT_OK);
    CHECK(j.t.queued_ns > 0 && j.t.done_ns >= j.t.queued_ns);
    CHECK_EQ(j.t.started_ns, 0);
    CHECK_EQ(j.t.finished_ns, 0);
    CHECK_EQ(j.frees, 1);
    /* spawned without the flag: refused, and outside any done too */
    timed_log u = {0};
    CHECK_ID(weft_spawn(lp, WEFT_ON_CPU, timed_work, timed_done, &u, timed_free, NULL));
    CHECK(run_until(lp, &u.done, 1, 5000));
    CHECK_EQ(u.timing_rc, WEFT_ERR_INVALID);
    weft_task_timing t = {.size = sizeof t};
    CHECK_RC(weft_task_get_timing(lp, id, &t), WEFT_ERR_INVALID);
    CHECK_ERR_HAS("WEFT_SPAWN_TIMING");
    CHECK_RC(weft_task_get_timing(NULL, id, &t), WEFT_ERR_NULL);
    /* unknown flags are refused, and nothing is freed */
    so.flags = 1u << 7;
    CHECK_ID_FAILS(weft_spawn(lp, WEFT_ON_CPU, timed_work, timed_done, &j, never_free, &so), "flags");
    weft_loop_free(lp);
    CHECK_EQ(u.frees, 1);
}

TEST(timed_tasks_left_to_loop_free_are_freed_once) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    weft_spawn_options so = timing_options();
    timed_log j = {0};
    for (int i = 0; i < 20; i++)
        CHECK_ID(weft_spawn(lp, i % 2 ? WEFT_ON_LOOP : WEFT_ON_PROCESS, timed_work, timed_done, &j, timed_free, &so));
    weft_loop_free(lp);
    CHECK_EQ(j.frees, 20);
}

/* ---- labels ----------------------------------------------------------------------- */

typedef struct {
    _Atomic int reports;
    char label[64];
    weft_id id;
} label_log;

static void on_report(weft_loop *lp, const weft_watchdog_report *r, void *ud) {
    (void)lp;
    label_log *l = ud;
    if (atomic_load(&l->reports) == 0) {
        snprintf(l->label, sizeof l->label, "%s", r->label ? r->label : "(null)");
        l->id = r->id;
    }
    atomic_fetch_add(&l->reports, 1);
}

TEST(a_label_names_the_registration_in_the_watchdogs_report) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    label_log l = {0};
    CHECK_OK(weft_loop_set_watchdog(lp, 40, on_report, &l, NULL));
    weft_id id = CHECK_ID(weft_timer_after(lp, 1, block_cb, (void *)(uintptr_t)150, NULL));
    CHECK_OK(weft_set_label(lp, id, "render playback #7"));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    for (int i = 0; i < 2000 && atomic_load(&l.reports) < 2; i++) sleep_ms(1);
    CHECK(atomic_load(&l.reports) >= 1);
    CHECK_EQ(l.id, id);
    CHECK_MSG(strcmp(l.label, "render playback #7") == 0, "label %s", l.label);
    /* the timer has fired: its id is gone */
    CHECK_RC(weft_set_label(lp, id, "late"), WEFT_ERR_NOT_FOUND);
    weft_loop_free(lp);
}

TEST(labels_refuse_bad_input_and_can_be_removed) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    weft_id id = CHECK_ID(weft_timer_after(lp, 3600000, noop_cb, NULL, NULL));
    weft_id post = CHECK_ID(weft_post(lp, noop_cb, NULL, NULL));
    CHECK_OK(weft_set_label(lp, id, "a"));
    CHECK_OK(weft_set_label(lp, id, "b"));
    CHECK_OK(weft_set_label(lp, id, NULL));
    CHECK_OK(weft_set_label(lp, post, "a post"));
    CHECK_RC(weft_set_label(NULL, id, "a"), WEFT_ERR_NULL);
    CHECK_RC(weft_set_label(lp, 0, "a"), WEFT_ERR_NOT_FOUND);
    CHECK_RC(weft_set_label(lp, id ^ (1ull << 40), "a"), WEFT_ERR_NOT_FOUND);
    char big[5000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    CHECK_RC(weft_set_label(lp, id, big), WEFT_ERR_INVALID);
    CHECK_RC(weft_set_label(lp, id, "\xff\xfe"), WEFT_ERR_INVALID);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_RC(weft_set_label(lp, post, "ran"), WEFT_ERR_NOT_FOUND);
    /* many labelled registrations that end: the labels go with them (swept) */
    for (int i = 0; i < 5000; i++) {
        weft_id t = CHECK_ID(weft_timer_after(lp, 3600000, noop_cb, NULL, NULL));
        CHECK_OK(weft_set_label(lp, t, "short-lived"));
        CHECK_OK(weft_cancel(lp, t));
    }
    CHECK_OK(weft_cancel(lp, id));
    weft_loop_free(lp);
}

