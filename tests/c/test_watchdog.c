/* The slow-callback watchdog: a callback that blocks the loop is reported while it
 * still runs, from the watchdog's thread, and again when it returns with its total
 * time; fast callbacks are not; the callback's free_fn runs exactly once; bad input. */
#define _GNU_SOURCE
#include "harness.h"

#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    _Atomic int reports, frees;
    weft_watchdog_report got[8];
    uint64_t at_ns[8];
    _Atomic int loop_tid;
    weft_loop *lp;
    int free_rc, set_rc; /* what weft_loop_free / set_watchdog said from the callback */
    int try_from_callback;
} dog_log;

static uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void on_report(weft_loop *lp, const weft_watchdog_report *r, void *ud) {
    dog_log *d = ud;
    int n = atomic_load(&d->reports);
    if (n < 8) {
        d->got[n] = *r;
        d->at_ns[n] = mono_ns();
    }
    if (d->try_from_callback && n == 0) {
        weft_loop_free(lp); /* refused: it would wait for this thread */
        d->free_rc = weft_last_error_code();
        d->set_rc = weft_loop_set_watchdog(lp, 0, NULL, NULL, NULL);
    }
    atomic_fetch_add(&d->reports, 1);
}
static void dog_free(void *ud) { atomic_fetch_add(&((dog_log *)ud)->frees, 1); }

typedef struct {
    dog_log *d;
    int sleep_ms;
    int reports_before_return;
    uint64_t returned_at_ns;
} sleeper;

static void sleepy_cb(weft_loop *lp, weft_id id, void *ud) {
    (void)lp, (void)id;
    sleeper *s = ud;
    atomic_store(&s->d->loop_tid, (int)syscall(SYS_gettid));
    usleep((useconds_t)s->sleep_ms * 1000);
    s->reports_before_return = atomic_load(&s->d->reports);
    s->returned_at_ns = mono_ns();
}

static bool wait_reports(dog_log *d, int n, int ms) {
    for (uint64_t i = 0; i < h_slack_ms(ms); i++) {
        if (atomic_load(&d->reports) >= n) return true;
        usleep(1000);
    }
    return false;
}

TEST(a_blocking_callback_is_reported_while_it_runs_and_when_it_returns) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    dog_log d = {0};
    CHECK_OK(weft_loop_set_watchdog(lp, 50, on_report, &d, dog_free));
    sleeper fast = {&d, 0, 0, 0}, slow = {&d, 200, 0, 0};
    CHECK_ID(weft_post(lp, sleepy_cb, &fast, NULL));
    weft_id id = CHECK_ID(weft_post(lp, sleepy_cb, &slow, NULL));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_MSG(slow.reports_before_return == 1, "%d reports before the callback returned",
              slow.reports_before_return);
    CHECK(wait_reports(&d, 2, 2000));
    usleep(50000);
    CHECK_EQ(atomic_load(&d.reports), 2); /* the fast post was not reported */
    weft_watchdog_report *run = &d.got[0], *ret = &d.got[1];
    CHECK_EQ(run->size, sizeof(weft_watchdog_report));
    CHECK_EQ(run->returned, 0);
    CHECK_EQ(run->id, id);
    CHECK_EQ(run->kind, WEFT_CALLBACK_POST);
    CHECK(run->elapsed_ns >= 50000000u && run->elapsed_ns < 200000000u);
    CHECK(d.at_ns[0] < slow.returned_at_ns);
    CHECK_EQ(run->thread_id, atomic_load(&d.loop_tid));
    CHECK(run->label == NULL);
    CHECK_EQ(ret->returned, 1);
    CHECK_EQ(ret->seq, run->seq);
    CHECK_EQ(ret->id, id);
    CHECK(ret->elapsed_ns >= 200000000u);
    CHECK(d.at_ns[1] >= slow.returned_at_ns);
    /* a timer's callback is named as a timer */
    sleeper tslow = {&d, 120, 0, 0};
    weft_id tid = CHECK_ID(weft_timer_after(lp, 0, sleepy_cb, &tslow, NULL));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    CHECK(wait_reports(&d, 4, 2000));
    CHECK_EQ(d.got[2].kind, WEFT_CALLBACK_TIMER);
    CHECK_EQ(d.got[2].id, tid);
    CHECK_EQ(d.got[3].returned, 1);
    CHECK_EQ(atomic_load(&d.frees), 0);
    weft_loop_free(lp);
    CHECK_EQ(atomic_load(&d.frees), 1); /* freeing the loop ends the watchdog */
}

TEST(set_replace_and_off_free_each_callback_once) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    dog_log a = {0}, b = {0}, c = {0};
    CHECK_OK(weft_loop_set_watchdog(lp, 1000, on_report, &a, dog_free));
    CHECK_OK(weft_loop_set_watchdog(lp, 30, on_report, &b, dog_free)); /* replaces a */
    CHECK_EQ(atomic_load(&a.frees), 1);
    sleeper s = {&b, 80, 0, 0};
    CHECK_ID(weft_post(lp, sleepy_cb, &s, NULL));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK(wait_reports(&b, 2, 2000));
    CHECK_EQ(atomic_load(&a.reports), 0);
    CHECK_OK(weft_loop_set_watchdog(lp, 0, NULL, &c, dog_free)); /* off: b ends, c at once */
    CHECK_EQ(atomic_load(&b.frees), 1);
    CHECK_EQ(atomic_load(&c.frees), 1);
    sleeper s2 = {&b, 80, 0, 0};
    CHECK_ID(weft_post(lp, sleepy_cb, &s2, NULL));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    usleep(50000);
    CHECK_EQ(atomic_load(&b.reports), 2); /* off: nothing more */
    CHECK_OK(weft_loop_set_watchdog(lp, 0, NULL, NULL, NULL)); /* off again: fine */
    weft_loop_free(lp);
    CHECK_EQ(atomic_load(&a.frees) + atomic_load(&b.frees) + atomic_load(&c.frees), 3);
}

TEST(bad_input_and_calls_from_the_watchdog_thread) {
    dog_log d = {0};
    CHECK_RC(weft_loop_set_watchdog(NULL, 10, on_report, &d, dog_free), WEFT_ERR_NULL);
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    CHECK_RC(weft_loop_set_watchdog(lp, UINT64_MAX, on_report, &d, dog_free), WEFT_ERR_INVALID);
    CHECK_ERR_HAS("threshold_ms");
    CHECK_RC(weft_loop_set_watchdog(lp, 1ull << 35, on_report, &d, dog_free), WEFT_ERR_INVALID);
    CHECK_EQ(atomic_load(&d.frees), 0); /* refused calls never free */
    d.try_from_callback = 1;
    CHECK_OK(weft_loop_set_watchdog(lp, 20, on_report, &d, dog_free));
    sleeper s = {&d, 60, 0, 0};
    CHECK_ID(weft_post(lp, sleepy_cb, &s, NULL));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK(wait_reports(&d, 2, 2000));
    CHECK_EQ(d.free_rc, WEFT_ERR_BUSY);
    CHECK_EQ(d.set_rc, WEFT_ERR_BUSY);
    CHECK_EQ(atomic_load(&d.frees), 0);
    weft_loop_free(lp);
    CHECK_EQ(atomic_load(&d.frees), 1);
}

typedef struct {
    int n;
    weft_watchdog_report got[4];
    size_t len[4];
    int callbacks_done_before; /* slow callbacks finished when the first report came */
} topic_log;
static int slow_done;

static void on_topic_report(weft_loop *lp, weft_id sub, const char *topic, const void *p,
                            size_t len, void *ud) {
    (void)lp, (void)sub;
    topic_log *t = ud;
    CHECK(strcmp(topic, "weft.watchdog") == 0);
    if (t->n == 0) t->callbacks_done_before = slow_done;
    if (t->n < 4) {
        memcpy(&t->got[t->n], p, len < sizeof t->got[0] ? len : sizeof t->got[0]);
        t->len[t->n] = len;
    }
    t->n++;
}

static void slow_then_mark(weft_loop *lp, weft_id id, void *ud) {
    (void)lp, (void)id, (void)ud;
    usleep(150000);
    slow_done = 1;
}

/* cb NULL: the reports are events on "weft.watchdog", delivered on the loop thread
 * after the slow callback returned (the form for hosts such as Node). */
TEST(without_a_callback_reports_are_events_on_the_loop) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    topic_log t = {0};
    slow_done = 0;
    weft_id sub = CHECK_ID(weft_subscribe(lp, "weft.watchdog", on_topic_report, &t, NULL));
    dog_log d = {0};
    CHECK_OK(weft_loop_set_watchdog(lp, 40, NULL, &d, dog_free));
    weft_id id = CHECK_ID(weft_post(lp, slow_then_mark, NULL, NULL));
    for (int i = 0; i < 200 && t.n < 2; i++) {
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
        usleep(5000);
    }
    CHECK_EQ(t.n, 2);
    CHECK_EQ(t.callbacks_done_before, 1);
    CHECK_EQ(t.len[0], sizeof(weft_watchdog_report));
    CHECK_EQ(t.got[0].returned, 0);
    CHECK_EQ(t.got[0].id, id);
    CHECK_EQ(t.got[1].returned, 1);
    CHECK(t.got[1].elapsed_ns >= 150000000u);
    CHECK(t.got[0].label == NULL);
    CHECK_OK(weft_cancel(lp, sub));
    weft_loop_free(lp);
    CHECK_EQ(atomic_load(&d.frees), 1);
}
