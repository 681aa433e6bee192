/* weft_post: FIFO per posting thread, exactly once, cancellable until it starts. */
#include "harness.h"

#include <poll.h>
#include <sched.h>

enum { POSTERS = 8 };

typedef struct {
    _Atomic long delivered;
    long expected_total;
    long next[POSTERS]; /* next sequence number expected from each poster */
    _Atomic long out_of_order;
    _Atomic long frees;
    weft_id keepalive;
    pthread_t loop_thread;
    _Atomic long wrong_thread;
} post_state;

typedef struct {
    post_state *st;
    int poster;
    long seq;
} post_msg;

static void post_msg_free(void *ud) {
    post_msg *m = (post_msg *)ud;
    atomic_fetch_add(&m->st->frees, 1);
    free(m);
}

static void post_msg_cb(weft_loop *lp, weft_id id, void *ud) {
    (void)id;
    post_msg *m = (post_msg *)ud;
    post_state *st = m->st;
    if (!pthread_equal(pthread_self(), st->loop_thread)) atomic_fetch_add(&st->wrong_thread, 1);
    if (st->next[m->poster] != m->seq) atomic_fetch_add(&st->out_of_order, 1);
    st->next[m->poster] = m->seq + 1;
    if (atomic_fetch_add(&st->delivered, 1) + 1 == st->expected_total)
        CHECK_OK(weft_cancel(lp, st->keepalive));
}

typedef struct {
    weft_loop *lp;
    post_state *st;
    int poster;
    long count;
    long failures;
} poster_arg;

static void *poster_thread(void *arg) {
    poster_arg *p = (poster_arg *)arg;
    for (long i = 0; i < p->count; i++) {
        post_msg *m = malloc(sizeof *m);
        *m = (post_msg){p->st, p->poster, i};
        if (weft_post(p->lp, post_msg_cb, m, post_msg_free) == 0) {
            p->failures++;
            free(m);
        }
    }
    return NULL;
}

/* 8 threads x 100k posts while the loop runs: each thread's posts arrive in FIFO order,
 * every post runs exactly once and is freed exactly once, on the loop thread. */
TEST(posts_from_many_threads_are_fifo_per_thread_and_exactly_once) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    long per_thread = h_scale(100000, 3000);
    post_state *st = calloc(1, sizeof *st);
    st->expected_total = per_thread * POSTERS;
    st->loop_thread = pthread_self();
    st->keepalive = CHECK_ID(weft_subscribe(lp, "keepalive", never_event_cb, NULL, NULL));
    poster_arg args[POSTERS];
    pthread_t th[POSTERS];
    for (int i = 0; i < POSTERS; i++) {
        args[i] = (poster_arg){lp, st, i, per_thread, 0};
        pthread_create(&th[i], NULL, poster_thread, &args[i]);
    }
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT)); /* until the last post cancels keepalive */
    for (int i = 0; i < POSTERS; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ(args[i].failures, 0);
        CHECK_EQ(st->next[i], per_thread);
    }
    CHECK_EQ(atomic_load(&st->delivered), st->expected_total);
    CHECK_EQ(atomic_load(&st->frees), st->expected_total);
    CHECK_EQ(atomic_load(&st->out_of_order), 0);
    CHECK_EQ(atomic_load(&st->wrong_thread), 0);
    weft_loop_free(lp);
    free(st);
}

/* Posts made while the loop is not running wait for it; loop_free frees those left. */
TEST(posts_queued_before_run_and_left_at_free) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    long n = h_scale(10000, 1000);
    post_state *st = calloc(1, sizeof *st);
    st->expected_total = -1; /* never cancels */
    st->loop_thread = pthread_self();
    for (long i = 0; i < n; i++) {
        post_msg *m = malloc(sizeof *m);
        *m = (post_msg){st, 0, i};
        CHECK_ID(weft_post(lp, post_msg_cb, m, post_msg_free));
    }
    CHECK_EQ(weft_loop_timeout_ms(lp), 0); /* work is ready */
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(atomic_load(&st->delivered), n);
    CHECK_EQ(atomic_load(&st->frees), n);
    CHECK_EQ(atomic_load(&st->out_of_order), 0);
    /* more, never run: freed by weft_loop_free */
    for (long i = 0; i < n; i++) {
        post_msg *m = malloc(sizeof *m);
        *m = (post_msg){st, 1, i};
        CHECK_ID(weft_post(lp, post_msg_cb, m, post_msg_free));
    }
    weft_loop_free(lp);
    CHECK_EQ(atomic_load(&st->delivered), n);
    CHECK_EQ(atomic_load(&st->frees), 2 * n);
    free(st);
}

/* A post cancelled before it starts never runs; its free_fn runs once, and (as
 * weft_cancel promises) before weft_cancel returns. */
TEST(cancel_a_post_before_it_runs) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    track a, b, c;
    track_init(&a);
    track_init(&b);
    track_init(&c);
    weft_id ia = CHECK_ID(weft_post(lp, track_cb, &a, track_free));
    weft_id ib = CHECK_ID(weft_post(lp, track_cb, &b, track_free));
    weft_id ic = CHECK_ID(weft_post(lp, track_cb, &c, track_free));
    CHECK(ia != ib && ib != ic);
    CHECK_OK(weft_cancel(lp, ib));
    CHECK_MSG(atomic_load(&b.frees) == 1,
              "weft_cancel of a queued post returned OK but its free_fn has run %d times "
              "(\"its free_fn runs now (on this thread)\")",
              atomic_load(&b.frees));
    CHECK_RC(weft_cancel(lp, ib), WEFT_ERR_NOT_FOUND);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    CHECK_EQ(atomic_load(&a.calls), 1);
    CHECK_EQ(atomic_load(&b.calls), 0);
    CHECK_EQ(atomic_load(&c.calls), 1);
    CHECK_EQ(atomic_load(&a.frees), 1);
    CHECK_EQ(atomic_load(&b.frees), 1);
    CHECK_EQ(atomic_load(&c.frees), 1);
    CHECK_RC(weft_cancel(lp, ia), WEFT_ERR_NOT_FOUND); /* after it ran */
    CHECK_RC(weft_cancel(lp, ib), WEFT_ERR_NOT_FOUND);
    weft_loop_free(lp);
    CHECK_EQ(atomic_load(&b.frees), 1);
}

/* A post cancelled by an earlier post of the same pass does not run. */
typedef struct {
    weft_id victim;
    int rc;
} post_canceller;

static void cancel_victim_cb(weft_loop *lp, weft_id id, void *ud) {
    (void)id;
    post_canceller *c = (post_canceller *)ud;
    c->rc = weft_cancel(lp, c->victim);
}

TEST(cancel_a_later_post_from_an_earlier_one) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    post_canceller c = {0, -99};
    track victim;
    track_init(&victim);
    CHECK_ID(weft_post(lp, cancel_victim_cb, &c, NULL));
    c.victim = CHECK_ID(weft_post(lp, track_cb, &victim, track_free));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(c.rc, WEFT_OK);
    CHECK_EQ(atomic_load(&victim.calls), 0);
    CHECK_EQ(atomic_load(&victim.frees), 1);
    weft_loop_free(lp);
    CHECK_EQ(atomic_load(&victim.frees), 1);
}

/* A cancelled post that is never run (the loop is freed first) is freed exactly once. */
TEST(cancelled_post_then_loop_free_frees_once) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    track t;
    track_init(&t);
    weft_id id = CHECK_ID(weft_post(lp, track_cb, &t, track_free));
    CHECK_OK(weft_cancel(lp, id));
    weft_loop_free(lp);
    CHECK_EQ(atomic_load(&t.frees), 1);
    CHECK_EQ(atomic_load(&t.calls), 0);
}

/* Cancel races: another thread cancels posts while the loop runs them. Every post
 * either ran (cancel gave NOT_FOUND) or did not (cancel gave OK), never both; each is
 * freed once. */
typedef struct {
    weft_loop *lp;
    weft_id *ids;
    track *tracks;
    int *rcs;
    long n;
} race_arg;

static track *race_tracks;

/* Every 500th post takes a millisecond, so the loop is still busy with the batch
 * while the other thread cancels. */
static void slow_track_cb(weft_loop *lp, weft_id id, void *ud) {
    track_note_call((track *)ud, lp, id);
    if (((track *)ud - race_tracks) % 500 == 0) sleep_ms(1);
}

static void *cancel_racer(void *arg) {
    race_arg *r = (race_arg *)arg;
    while (atomic_load(&r->tracks[0].calls) == 0) sched_yield(); /* the loop has started */
    for (long i = r->n - 1; i >= 0; i--) r->rcs[i] = weft_cancel(r->lp, r->ids[i]);
    return NULL;
}

TEST(cancel_races_with_the_loop_running_posts) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    long n = h_scale(20000, 2000);
    weft_id *ids = calloc((size_t)n, sizeof *ids);
    track *tracks = calloc((size_t)n, sizeof *tracks);
    int *rcs = calloc((size_t)n, sizeof *rcs);
    race_tracks = tracks;
    for (long i = 0; i < n; i++)
        ids[i] = CHECK_ID(weft_post(lp, slow_track_cb, &tracks[i], track_free));
    race_arg r = {lp, ids, tracks, rcs, n};
    pthread_t th;
    pthread_create(&th, NULL, cancel_racer, &r);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    pthread_join(th, NULL);
    long ran = 0, bad = 0;
    for (long i = 0; i < n; i++) {
        int calls = atomic_load(&tracks[i].calls);
        ran += calls;
        bool ok = (rcs[i] == WEFT_OK && calls == 0) || (rcs[i] == WEFT_ERR_NOT_FOUND && calls == 1);
        if (!ok || atomic_load(&tracks[i].frees) != 1) {
            if (bad++ < 5)
                h_fail(__FILE__, __LINE__, "post %ld: cancel rc %d, calls %d, frees %d", i,
                       rcs[i], calls, atomic_load(&tracks[i].frees));
        }
    }
    CHECK_EQ(bad, 0);
    CHECK(ran > 0);
    weft_loop_free(lp);
    free(ids);
    free(tracks);
    free(rcs);
}

/* Posts and emits of one thread keep their relative order. */
typedef struct {
    int order[8];
    int n;
} order_log;

static void log_post(weft_loop *lp, weft_id id, void *ud) {
    (void)lp, (void)id;
    order_log *o = (order_log *)ud;
    o->order[o->n++] = 'p';
}
static void log_event(weft_loop *lp, weft_id id, const char *t, const void *p, size_t n,
                      void *ud) {
    (void)lp, (void)id, (void)t, (void)p, (void)n;
    order_log *o = (order_log *)ud;
    o->order[o->n++] = 'e';
}

TEST(posts_and_emits_of_one_thread_keep_their_order) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    order_log o = {{0}, 0};
    weft_id sub = CHECK_ID(weft_subscribe(lp, "x", log_event, &o, NULL));
    CHECK_ID(weft_post(lp, log_post, &o, NULL));
    CHECK_OK(weft_emit(lp, "x", NULL, 0));
    CHECK_OK(weft_emit(lp, "x", NULL, 0));
    CHECK_ID(weft_post(lp, log_post, &o, NULL));
    CHECK_OK(weft_emit(lp, "x", NULL, 0));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(o.n, 5);
    CHECK(memcmp(o.order, (int[]){'p', 'e', 'e', 'p', 'e'}, 5 * sizeof(int)) == 0);
    CHECK_OK(weft_cancel(lp, sub));
    weft_loop_free(lp);
}

/* A post from another thread wakes a loop blocked in run DEFAULT. */
typedef struct {
    weft_loop *lp;
    weft_id keep;
} waker;

static void cancel_keep(weft_loop *lp, weft_id id, void *ud) {
    (void)id;
    CHECK_OK(weft_cancel(lp, ((waker *)ud)->keep));
}

static void *post_later(void *arg) {
    waker *w = (waker *)arg;
    sleep_ms(50);
    CHECK_ID(weft_post(w->lp, cancel_keep, w, NULL));
    return NULL;
}

TEST(post_from_another_thread_wakes_a_blocked_loop) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    waker w = {lp, 0};
    w.keep = CHECK_ID(weft_subscribe(lp, "never", never_event_cb, NULL, NULL));
    pthread_t th;
    pthread_create(&th, NULL, post_later, &w);
    uint64_t t0 = now_ns();
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    uint64_t took = (now_ns() - t0) / 1000000;
    pthread_join(th, NULL);
    CHECK(took >= 45 && took < h_slack_ms(2000));
    weft_loop_free(lp);
}

/* ---- weft_loop_set_pass_limit --------------------------------------------------------- */

typedef struct {
    int order[64]; /* what ran, in order: posts 0..N-1, events 100.. */
    int n;
    _Atomic int frees;
} limited;

typedef struct {
    limited *l;
    int tag;
} limited_msg;

static void limited_msg_cb(weft_loop *lp, weft_id id, void *ud) {
    (void)lp, (void)id;
    limited_msg *m = (limited_msg *)ud;
    if (m->l->n < 64) m->l->order[m->l->n++] = m->tag;
}
static void limited_msg_free(void *ud) { atomic_fetch_add(&((limited_msg *)ud)->l->frees, 1); }

static void limited_event(weft_loop *lp, weft_id id, const char *topic, const void *p, size_t len, void *ud) {
    (void)lp, (void)id, (void)topic;
    limited *l = (limited *)ud;
    int tag;
    memcpy(&tag, p, len < sizeof tag ? len : sizeof tag);
    if (l->n < 64) l->order[l->n++] = tag;
}

static bool loop_fd_readable(weft_loop *lp) {
    struct pollfd pfd = {.fd = weft_loop_fd(lp), .events = POLLIN};
    return poll(&pfd, 1, 0) == 1;
}

/* With a limit of 10, a pass runs the first 10 queued posts and events, in order; the
 * rest wait for the next passes, and the loop's fd stays readable until they ran. 0
 * lifts the limit. Timers do not count. */
TEST(a_pass_limit_spreads_a_flood_over_passes) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    limited l = {{0}, 0, 0};
    weft_id sub = CHECK_ID(weft_subscribe(lp, "flood", limited_event, &l, NULL));
    static limited_msg msgs[25];
    for (int i = 0; i < 25; i++) {
        msgs[i] = (limited_msg){&l, i};
        CHECK_ID(weft_post(lp, limited_msg_cb, &msgs[i], limited_msg_free));
        if (i % 5 == 4) {
            int tag = 100 + i / 5;
            CHECK_OK(weft_emit(lp, "flood", &tag, sizeof tag));
        }
    }
    CHECK_OK(weft_loop_set_pass_limit(lp, 10));
    int expect[30], k = 0;
    for (int i = 0; i < 25; i++) {
        expect[k++] = i;
        if (i % 5 == 4) expect[k++] = 100 + i / 5;
    }
    for (int pass = 1; pass <= 3; pass++) {
        CHECK_MSG(loop_fd_readable(lp), "pass %d: the loop's fd is not readable with work queued", pass);
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
        CHECK_EQ(l.n, pass * 10);
    }
    CHECK_EQ(l.n, 30);
    for (int i = 0; i < 30; i++) CHECK_MSG(l.order[i] == expect[i], "record %d ran as %d, expected %d", i, l.order[i], expect[i]);
    CHECK_EQ(atomic_load(&l.frees), 25);
    CHECK(!loop_fd_readable(lp));
    /* 0: one pass runs everything queued. */
    CHECK_OK(weft_loop_set_pass_limit(lp, 0));
    l.n = 0;
    for (int i = 0; i < 25; i++) CHECK_ID(weft_post(lp, limited_msg_cb, &msgs[i], limited_msg_free));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(l.n, 25);
    /* With a limit, WEFT_RUN_DEFAULT still runs everything, pass after pass. */
    CHECK_OK(weft_loop_set_pass_limit(lp, 3));
    l.n = 0;
    for (int i = 0; i < 20; i++) CHECK_ID(weft_post(lp, limited_msg_cb, &msgs[i], limited_msg_free));
    CHECK_OK(weft_cancel(lp, sub));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    CHECK_EQ(l.n, 20);
    CHECK_EQ(atomic_load(&l.frees), 70);
    CHECK_RC(weft_loop_set_pass_limit(NULL, 1), WEFT_ERR_NULL);
    CHECK_ERR_HAS("weft_loop_set_pass_limit");
    weft_loop_free(lp);
}

/* A post that spawns a CPU task wakes the pool's sleeping worker when its callback
 * returns, not when the pass's slice of posts ends (the slice runs inside one deferring
 * level, and each callback's wake-ups go out after it): a later post of the same slice,
 * which waits (bounded) for the task's work, sees it run. */
typedef struct {
    weft_pool *pool;
    _Atomic int worked;
    int seen;
    _Atomic int dones;
} spawn_then_wait;

static int stw_work(weft_task *task, void *ud) {
    (void)task;
    atomic_store(&((spawn_then_wait *)ud)->worked, 1);
    return 0;
}

static void stw_done(weft_loop *lp, weft_id id, int status, const uint8_t *result, size_t len, void *ud) {
    (void)lp; (void)id; (void)result; (void)len;
    CHECK_EQ(status, 0);
    atomic_fetch_add(&((spawn_then_wait *)ud)->dones, 1);
}

static void stw_spawn(weft_loop *lp, weft_id id, void *ud) {
    (void)id;
    spawn_then_wait *s = (spawn_then_wait *)ud;
    weft_spawn_options so;
    memset(&so, 0, sizeof so);
    so.size = sizeof so;
    so.pool = s->pool;
    CHECK_ID(weft_spawn(lp, WEFT_ON_CPU, stw_work, stw_done, s, NULL, &so));
}

static void stw_wait(weft_loop *lp, weft_id id, void *ud) {
    (void)lp; (void)id;
    spawn_then_wait *s = (spawn_then_wait *)ud;
    uint64_t end = now_ms() + h_slack_ms(10000);
    while (!atomic_load(&s->worked) && now_ms() < end) sleep_ms(1);
    s->seen = atomic_load(&s->worked);
}

TEST(a_post_that_spawns_wakes_the_worker_before_the_next_post_of_its_slice) {
    weft_pool_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.kind = WEFT_POOL_CPU;
    o.threads = 1;
    spawn_then_wait s = {.pool = weft_pool_new(&o)};
    REQUIRE(s.pool != NULL);
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    sleep_ms(50); /* the worker has gone to sleep: only a wake-up gets it going */
    CHECK_ID(weft_post(lp, stw_spawn, &s, NULL));
    CHECK_ID(weft_post(lp, stw_wait, &s, NULL));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT)); /* both posts (one slice), then done */
    CHECK_MSG(s.seen, "the task's work did not run while a later post of the slice waited");
    CHECK_EQ(atomic_load(&s.dones), 1);
    weft_loop_free(lp);
    weft_pool_free(s.pool);
}
