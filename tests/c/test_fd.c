/* fd watches: readiness, level triggering, hang-ups and errors, several watches of one
 * fd, weft_watch_fd_modify, bad fds, and fds closed while watched. */
#include "harness.h"

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>

typedef struct {
    _Atomic int calls;
    _Atomic unsigned all_events; /* OR of every report */
    unsigned last_events;
    int last_fd;
    weft_id last_id;
    _Atomic int frees;
    pthread_t thread;
    int cancel_self_after; /* cancel own watch at this call (0: never) */
    int cancel_rc;
    int drain; /* read what is there */
} fdw;

static void fdw_cb(weft_loop *lp, weft_id id, int fd, uint32_t events, void *ud) {
    fdw *w = (fdw *)ud;
    int n = atomic_fetch_add(&w->calls, 1) + 1;
    atomic_fetch_or(&w->all_events, events);
    w->last_events = events;
    w->last_fd = fd;
    w->last_id = id;
    w->thread = pthread_self();
    if (w->drain) {
        char buf[256];
        while (read(fd, buf, sizeof buf) > 0) {
        }
    }
    if (w->cancel_self_after && n == w->cancel_self_after) w->cancel_rc = weft_cancel(lp, id);
}

static void fdw_free(void *ud) { atomic_fetch_add(&((fdw *)ud)->frees, 1); }

static void fdw_init(fdw *w) { memset((void *)w, 0, sizeof *w); }

static void set_nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

/* The setup of most cases: a new loop and a pipe (loop_and_pipe, in harness.h) or a
 * socket pair to watch. */
static bool loop_and_socketpair(weft_loop **lp, int sv[2]) {
    *lp = weft_loop_new();
    if (*lp == NULL) return false;
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0) return true;
    weft_loop_free(*lp);
    return false;
}

TEST(pipe_readable_and_writable) {
    weft_loop *lp;
    int p[2];
    REQUIRE(loop_and_pipe(&lp, p));
    fdw r, w;
    fdw_init(&r);
    fdw_init(&w);
    weft_id ir = CHECK_ID(weft_watch_fd(lp, p[0], WEFT_READABLE, fdw_cb, &r, fdw_free));
    weft_id iw = CHECK_ID(weft_watch_fd(lp, p[1], WEFT_WRITABLE, fdw_cb, &w, fdw_free));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(atomic_load(&r.calls), 0); /* nothing to read yet */
    CHECK_EQ(atomic_load(&w.calls), 1);
    CHECK_EQ(w.last_events, WEFT_WRITABLE);
    CHECK_EQ(w.last_fd, p[1]);
    CHECK_EQ(w.last_id, iw);
    CHECK(pthread_equal(w.thread, pthread_self()));
    CHECK_OK(weft_cancel(lp, iw));
    REQUIRE(write(p[1], "hello", 5) == 5);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_ONCE));
    CHECK_EQ(atomic_load(&r.calls), 1);
    CHECK_EQ(r.last_events, WEFT_READABLE);
    CHECK_EQ(r.last_fd, p[0]);
    CHECK_EQ(r.last_id, ir);
    CHECK_OK(weft_cancel(lp, ir));
    CHECK_EQ(atomic_load(&r.frees), 1);
    CHECK_EQ(atomic_load(&w.frees), 1);
    free_loop_and_pair(lp, p);
}

/* Level-triggered: the callback runs in every pass while data is unread. */
TEST(watches_are_level_triggered) {
    weft_loop *lp;
    int p[2];
    REQUIRE(loop_and_pipe(&lp, p));
    set_nonblock(p[0]);
    fdw r;
    fdw_init(&r);
    weft_id id = CHECK_ID(weft_watch_fd(lp, p[0], WEFT_READABLE, fdw_cb, &r, fdw_free));
    REQUIRE(write(p[1], "x", 1) == 1);
    for (int i = 0; i < 5; i++) CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(atomic_load(&r.calls), 5);
    r.drain = 1;
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(atomic_load(&r.calls), 6);
    for (int i = 0; i < 3; i++) CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(atomic_load(&r.calls), 6); /* drained: no more */
    CHECK_OK(weft_cancel(lp, id));
    free_loop_and_pair(lp, p);
}

/* The peer hanging up is reported (as WEFT_HANGUP) whatever the interest, 0 included. */
TEST(hangup_when_the_write_end_closes) {
    weft_loop *lp;
    int p[2];
    REQUIRE(loop_and_pipe(&lp, p));
    fdw r, z;
    fdw_init(&r);
    fdw_init(&z);
    weft_id ir = CHECK_ID(weft_watch_fd(lp, p[0], WEFT_READABLE, fdw_cb, &r, fdw_free));
    weft_id iz = CHECK_ID(weft_watch_fd(lp, p[0], 0, fdw_cb, &z, fdw_free));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(atomic_load(&r.calls) + atomic_load(&z.calls), 0);
    close(p[1]);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_ONCE));
    CHECK_EQ(atomic_load(&r.calls), 1);
    CHECK_EQ(atomic_load(&z.calls), 1);
    CHECK_MSG(r.last_events & WEFT_HANGUP, "events %#x", r.last_events);
    CHECK_MSG(z.last_events == WEFT_HANGUP, "interest 0 got events %#x", z.last_events);
    CHECK_OK(weft_cancel(lp, ir));
    CHECK_OK(weft_cancel(lp, iz));
    weft_loop_free(lp);
    close(p[0]);
}

/* A pipe's write end whose reader is gone reports WEFT_ERROR, even with interest 0. */
TEST(error_when_the_read_end_closes) {
    weft_loop *lp;
    int p[2];
    REQUIRE(loop_and_pipe(&lp, p));
    fdw z;
    fdw_init(&z);
    weft_id iz = CHECK_ID(weft_watch_fd(lp, p[1], 0, fdw_cb, &z, fdw_free));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(atomic_load(&z.calls), 0);
    close(p[0]);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_ONCE));
    CHECK_EQ(atomic_load(&z.calls), 1);
    CHECK_MSG(z.last_events & WEFT_ERROR, "events %#x", z.last_events);
    CHECK_MSG(!(z.last_events & (WEFT_READABLE | WEFT_WRITABLE)), "events %#x", z.last_events);
    CHECK_OK(weft_cancel(lp, iz));
    weft_loop_free(lp);
    close(p[1]);
}

/* Several watches of one fd: each gets the part of the report it asked for. */
TEST(several_watches_of_one_fd_all_fire) {
    weft_loop *lp;
    int sv[2];
    REQUIRE(loop_and_socketpair(&lp, sv));
    REQUIRE(write(sv[1], "data", 4) == 4); /* sv[0] is readable and writable */
    fdw rd, wr, both, rd2;
    fdw_init(&rd);
    fdw_init(&wr);
    fdw_init(&both);
    fdw_init(&rd2);
    weft_id a = CHECK_ID(weft_watch_fd(lp, sv[0], WEFT_READABLE, fdw_cb, &rd, fdw_free));
    weft_id b = CHECK_ID(weft_watch_fd(lp, sv[0], WEFT_WRITABLE, fdw_cb, &wr, fdw_free));
    weft_id c = CHECK_ID(
        weft_watch_fd(lp, sv[0], WEFT_READABLE | WEFT_WRITABLE, fdw_cb, &both, fdw_free));
    weft_id d = CHECK_ID(weft_watch_fd(lp, sv[0], WEFT_READABLE, fdw_cb, &rd2, fdw_free));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(atomic_load(&rd.calls), 1);
    CHECK_EQ(atomic_load(&wr.calls), 1);
    CHECK_EQ(atomic_load(&both.calls), 1);
    CHECK_EQ(atomic_load(&rd2.calls), 1);
    CHECK_EQ(rd.last_events, WEFT_READABLE);
    CHECK_EQ(wr.last_events, WEFT_WRITABLE);
    CHECK_EQ(both.last_events, WEFT_READABLE | WEFT_WRITABLE);
    CHECK_EQ(rd2.last_events, WEFT_READABLE);
    /* cancelling some leaves the others working, with their interest */
    CHECK_OK(weft_cancel(lp, c));
    CHECK_OK(weft_cancel(lp, a));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(atomic_load(&rd.calls), 1);
    CHECK_EQ(atomic_load(&both.calls), 1);
    CHECK_EQ(atomic_load(&wr.calls), 2);
    CHECK_EQ(atomic_load(&rd2.calls), 2);
    CHECK_EQ(wr.last_events, WEFT_WRITABLE);
    CHECK_EQ(rd2.last_events, WEFT_READABLE);
    CHECK_OK(weft_cancel(lp, d));
    /* only a WRITABLE watch left: never told READABLE */
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(wr.last_events, WEFT_WRITABLE);
    CHECK_OK(weft_cancel(lp, b));
    free_loop_and_pair(lp, sv);
    CHECK_EQ(atomic_load(&rd.frees) + atomic_load(&wr.frees) + atomic_load(&both.frees) +
                 atomic_load(&rd2.frees),
             4);
}

TEST(one_fd_watched_by_two_loops) {
    weft_loop *a = weft_loop_new();
    weft_loop *b = weft_loop_new();
    REQUIRE(a != NULL && b != NULL);
    int p[2];
    REQUIRE(pipe(p) == 0);
    REQUIRE(write(p[1], "x", 1) == 1);
    fdw wa, wb;
    fdw_init(&wa);
    fdw_init(&wb);
    weft_id ia = CHECK_ID(weft_watch_fd(a, p[0], WEFT_READABLE, fdw_cb, &wa, fdw_free));
    CHECK_ID(weft_watch_fd(b, p[0], WEFT_READABLE, fdw_cb, &wb, fdw_free));
    CHECK_OK(weft_loop_run(a, WEFT_RUN_NOWAIT));
    CHECK_OK(weft_loop_run(b, WEFT_RUN_NOWAIT));
    CHECK_EQ(atomic_load(&wa.calls), 1);
    CHECK_EQ(atomic_load(&wb.calls), 1);
    CHECK_OK(weft_cancel(a, ia));
    CHECK_OK(weft_loop_run(b, WEFT_RUN_NOWAIT));
    CHECK_EQ(atomic_load(&wb.calls), 2);
    weft_loop_free(a);
    weft_loop_free(b);
    CHECK_EQ(atomic_load(&wa.frees), 1);
    CHECK_EQ(atomic_load(&wb.frees), 1);
    close(p[0]);
    close(p[1]);
}

TEST(watch_fd_modify_changes_interest) {
    weft_loop *lp;
    int sv[2];
    REQUIRE(loop_and_socketpair(&lp, sv));
    fdw w;
    fdw_init(&w);
    weft_id id = CHECK_ID(weft_watch_fd(lp, sv[0], WEFT_READABLE, fdw_cb, &w, fdw_free));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(atomic_load(&w.calls), 0); /* writable, but not asked for */
    CHECK_OK(weft_watch_fd_modify(lp, id, WEFT_WRITABLE));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(atomic_load(&w.calls), 1);
    CHECK_EQ(w.last_events, WEFT_WRITABLE);
    REQUIRE(write(sv[1], "x", 1) == 1);
    CHECK_OK(weft_watch_fd_modify(lp, id, 0)); /* paused */
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(atomic_load(&w.calls), 1);
    CHECK_OK(weft_watch_fd_modify(lp, id, WEFT_READABLE | WEFT_WRITABLE));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(atomic_load(&w.calls), 2);
    CHECK_EQ(w.last_events, WEFT_READABLE | WEFT_WRITABLE);
    CHECK_OK(weft_watch_fd_modify(lp, id, WEFT_READABLE));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(w.last_events, WEFT_READABLE);
    /* bad input */
    CHECK_RC(weft_watch_fd_modify(lp, id, 4), WEFT_ERR_INVALID);
    CHECK_ERR_HAS("weft_watch_fd_modify: interest 0x4");
    CHECK_RC(weft_watch_fd_modify(lp, id, WEFT_READABLE | 0x100), WEFT_ERR_INVALID);
    CHECK_RC(weft_watch_fd_modify(lp, id, UINT32_MAX), WEFT_ERR_INVALID);
    CHECK_RC(weft_watch_fd_modify(lp, id ^ 0x5, WEFT_READABLE), WEFT_ERR_NOT_FOUND);
    CHECK_RC(weft_watch_fd_modify(lp, 12345, WEFT_READABLE), WEFT_ERR_NOT_FOUND);
    CHECK_RC(weft_watch_fd_modify(NULL, id, WEFT_READABLE), WEFT_ERR_NULL);
    /* the interest survived the bad calls */
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(w.last_events, WEFT_READABLE);
    CHECK_OK(weft_cancel(lp, id));
    CHECK_RC(weft_watch_fd_modify(lp, id, WEFT_READABLE), WEFT_ERR_NOT_FOUND);
    free_loop_and_pair(lp, sv);
    CHECK_EQ(atomic_load(&w.frees), 1);
}

TEST(bad_fds_are_invalid) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    char path[] = "/tmp/weft-test-XXXXXX";
    int file = mkstemp(path);
    REQUIRE(file >= 0);
    unlink(path);
    int dir = open("/tmp", O_RDONLY | O_DIRECTORY);
    REQUIRE(dir >= 0);
    int p[2];
    REQUIRE(pipe(p) == 0);
    int closed = dup(p[0]);
    close(closed);
    CHECK_ID_FAILS(weft_watch_fd(lp, -1, WEFT_READABLE, never_fd_cb, NULL, never_free),
                   "weft_watch_fd: fd -1");
    CHECK_ID_FAILS(weft_watch_fd(lp, INT_MIN, WEFT_READABLE, never_fd_cb, NULL, never_free),
                   "fd -2147483648");
    char want[64];
    snprintf(want, sizeof want, "fd %d", closed);
    CHECK_ID_FAILS(weft_watch_fd(lp, closed, WEFT_READABLE, never_fd_cb, NULL, never_free), want);
    CHECK_ID_FAILS(weft_watch_fd(lp, 1000000, WEFT_READABLE, never_fd_cb, NULL, never_free),
                   "fd 1000000");
    snprintf(want, sizeof want, "fd %d", file);
    CHECK_ID_FAILS(weft_watch_fd(lp, file, WEFT_READABLE, never_fd_cb, NULL, never_free), want);
    CHECK_ID_FAILS(weft_watch_fd(lp, dir, WEFT_READABLE, never_fd_cb, NULL, never_free), "fd");
    CHECK_ID_FAILS(weft_watch_fd(lp, p[0], 4, never_fd_cb, NULL, never_free), "interest 0x4");
    CHECK_ID_FAILS(weft_watch_fd(lp, p[0], 0x80000000u, never_fd_cb, NULL, never_free),
                   "interest");
    /* the loop's own fd cannot watch itself */
    CHECK_ID_FAILS(weft_watch_fd(lp, weft_loop_fd(lp), WEFT_READABLE, never_fd_cb, NULL, never_free),
                   "weft_watch_fd");
    /* none of them left anything registered */
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    /* the file and the pipe are untouched and still usable */
    CHECK(write(file, "ok", 2) == 2);
    CHECK(write(p[1], "ok", 2) == 2);
    close(file);
    close(dir);
    free_loop_and_pair(lp, p);
}

/* "a watched fd that gets closed is dropped from the kernel's set, and never crashes
 * the loop": the loop goes on working, the watch can be cancelled (and freed once),
 * and modify reports WEFT_ERR_IO. */
TEST(fd_closed_while_watched) {
    weft_loop *lp;
    int p[2];
    REQUIRE(loop_and_pipe(&lp, p));
    fdw w;
    fdw_init(&w);
    weft_id id = CHECK_ID(weft_watch_fd(lp, p[0], WEFT_READABLE, fdw_cb, &w, fdw_free));
    REQUIRE(write(p[1], "x", 1) == 1);
    close(p[0]);
    close(p[1]);
    track post;
    track_init(&post);
    CHECK_ID(weft_post(lp, track_cb, &post, track_free));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(atomic_load(&post.calls), 1);
    CHECK_EQ(atomic_load(&w.calls), 0);
    CHECK_RC(weft_watch_fd_modify(lp, id, WEFT_WRITABLE), WEFT_ERR_IO);
    CHECK_ERR_HAS("weft_watch_fd_modify");
    CHECK_OK(weft_cancel(lp, id));
    CHECK_EQ(atomic_load(&w.frees), 1);
    CHECK_RC(weft_cancel(lp, id), WEFT_ERR_NOT_FOUND);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    weft_loop_free(lp);
    CHECK_EQ(atomic_load(&w.frees), 1);
}

/* Same, but the fd is closed while the loop is blocked on another thread, and freed
 * with the loop rather than cancelled. */
typedef struct {
    weft_loop *lp;
    int rc;
} loop_runner;

static void *run_loop(void *arg) {
    loop_runner *r = (loop_runner *)arg;
    r->rc = weft_loop_run(r->lp, WEFT_RUN_DEFAULT);
    return NULL;
}

TEST(fd_closed_while_the_loop_waits_on_it) {
    weft_loop *lp;
    int p[2];
    REQUIRE(loop_and_pipe(&lp, p));
    fdw w;
    fdw_init(&w);
    CHECK_ID(weft_watch_fd(lp, p[0], WEFT_READABLE, fdw_cb, &w, fdw_free));
    loop_runner r = {lp, -99};
    pthread_t th;
    pthread_create(&th, NULL, run_loop, &r);
    sleep_ms(20);
    close(p[0]);
    close(p[1]);
    sleep_ms(20);
    CHECK_OK(weft_loop_stop(lp));
    pthread_join(th, NULL);
    CHECK_EQ(r.rc, WEFT_OK);
    weft_loop_free(lp);
    CHECK_EQ(atomic_load(&w.frees), 1);
}

/* A watch that cancels itself from its callback: no more calls, freed once, after. */
TEST(watch_cancels_itself_from_its_callback) {
    weft_loop *lp;
    int p[2];
    REQUIRE(loop_and_pipe(&lp, p));
    REQUIRE(write(p[1], "x", 1) == 1);
    fdw w;
    fdw_init(&w);
    w.cancel_self_after = 2;
    CHECK_ID(weft_watch_fd(lp, p[0], WEFT_READABLE, fdw_cb, &w, fdw_free));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT)); /* returns when the watch is gone */
    CHECK_EQ(atomic_load(&w.calls), 2);
    CHECK_EQ(w.cancel_rc, WEFT_OK);
    CHECK_EQ(atomic_load(&w.frees), 1);
    free_loop_and_pair(lp, p);
}

/* A watch added from another thread wakes a loop blocked in run DEFAULT. */
typedef struct {
    weft_loop *lp;
    int fd;
    fdw w;
    weft_id keep;
} late_watch;

static void late_watch_cb(weft_loop *lp, weft_id id, int fd, uint32_t events, void *ud) {
    late_watch *l = (late_watch *)ud;
    fdw_cb(lp, id, fd, events, &l->w);
    CHECK_OK(weft_cancel(lp, id));
    CHECK_OK(weft_cancel(lp, l->keep));
}

static void *watch_later(void *arg) {
    late_watch *l = (late_watch *)arg;
    sleep_ms(50);
    CHECK_ID(weft_watch_fd(l->lp, l->fd, WEFT_READABLE, late_watch_cb, l, NULL));
    return NULL;
}

TEST(watch_from_another_thread_wakes_a_blocked_loop) {
    weft_loop *lp;
    int p[2];
    REQUIRE(loop_and_pipe(&lp, p));
    REQUIRE(write(p[1], "x", 1) == 1); /* already readable */
    late_watch l;
    memset(&l, 0, sizeof l);
    l.lp = lp;
    l.fd = p[0];
    l.keep = CHECK_ID(weft_subscribe(lp, "never", never_event_cb, NULL, NULL));
    pthread_t th;
    pthread_create(&th, NULL, watch_later, &l);
    uint64_t t0 = now_ns();
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    uint64_t took = (now_ns() - t0) / 1000000;
    pthread_join(th, NULL);
    CHECK_EQ(atomic_load(&l.w.calls), 1);
    CHECK(took >= 45 && took < h_slack_ms(2000));
    free_loop_and_pair(lp, p);
}

/* Data written from another thread to a watched pipe wakes the loop (on its thread). */
static void *write_later(void *arg) {
    sleep_ms(30);
    CHECK(write(*(int *)arg, "y", 1) == 1);
    return NULL;
}

static void stop_on_read(weft_loop *lp, weft_id id, int fd, uint32_t events, void *ud) {
    fdw_cb(lp, id, fd, events, ud);
    CHECK_OK(weft_cancel(lp, id));
}

TEST(readiness_from_another_thread_is_reported_on_the_loop_thread) {
    weft_loop *lp;
    int p[2];
    REQUIRE(loop_and_pipe(&lp, p));
    fdw w;
    fdw_init(&w);
    CHECK_ID(weft_watch_fd(lp, p[0], WEFT_READABLE, stop_on_read, &w, fdw_free));
    pthread_t th;
    pthread_create(&th, NULL, write_later, &p[1]);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    pthread_join(th, NULL);
    CHECK_EQ(atomic_load(&w.calls), 1);
    CHECK(pthread_equal(w.thread, pthread_self()));
    CHECK_EQ(atomic_load(&w.frees), 1);
    free_loop_and_pair(lp, p);
}

/* A loop can watch another loop's embedding fd (a loop inside a loop). */
typedef struct {
    weft_loop *inner;
    int passes;
} nested;

static void run_inner(weft_loop *lp, weft_id id, int fd, uint32_t events, void *ud) {
    (void)lp, (void)id, (void)fd;
    nested *n = (nested *)ud;
    CHECK(events & WEFT_READABLE);
    n->passes++;
    CHECK_OK(weft_loop_run(n->inner, WEFT_RUN_NOWAIT));
}

/* The post's callback arms the timer, so the two come due in different passes of the
 * inner loop even when a slow machine (valgrind, load) starts the first pass late. */
static void track_then_arm(weft_loop *lp, weft_id id, void *ud) {
    track_cb(lp, id, ud);
    CHECK_ID(weft_timer_after(lp, 20, track_cb, ud, track_free));
}

TEST(a_loop_watches_another_loops_fd) {
    weft_loop *outer = weft_loop_new();
    weft_loop *inner = weft_loop_new();
    REQUIRE(outer != NULL && inner != NULL);
    nested n = {inner, 0};
    weft_id w =
        CHECK_ID(weft_watch_fd(outer, weft_loop_fd(inner), WEFT_READABLE, run_inner, &n, NULL));
    track t;
    track_init(&t);
    CHECK_ID(weft_post(inner, track_then_arm, &t, track_free));
    uint64_t end = now_ms() + h_slack_ms(3000);
    while (atomic_load(&t.frees) < 2 && now_ms() < end) CHECK_OK(weft_loop_run(outer, WEFT_RUN_ONCE));
    CHECK_EQ(atomic_load(&t.calls), 2);
    CHECK(n.passes >= 2);
    CHECK_OK(weft_cancel(outer, w));
    weft_loop_free(inner);
    weft_loop_free(outer);
}

/* The watched fd is closed (not cancelled first) while another descriptor of the same
 * file stays open, as it does after dup() or in a forked child. Once the watch is
 * cancelled, nothing is registered for that file: the loop must not keep waking up. */
TEST(closed_fd_with_a_duplicate_open_does_not_keep_the_loop_awake) {
    weft_loop *lp;
    int p[2];
    REQUIRE(loop_and_pipe(&lp, p));
    REQUIRE(write(p[1], "x", 1) == 1); /* readable, and stays so */
    int dup_fd = dup(p[0]);
    fdw w;
    fdw_init(&w);
    weft_id id = CHECK_ID(weft_watch_fd(lp, p[0], WEFT_READABLE, fdw_cb, &w, fdw_free));
    close(p[0]); /* the file stays open through dup_fd */
    CHECK_OK(weft_cancel(lp, id));
    CHECK_EQ(atomic_load(&w.frees), 1);
    weft_id keep = CHECK_ID(weft_subscribe(lp, "never", never_event_cb, NULL, NULL));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    struct pollfd pfd = {weft_loop_fd(lp), POLLIN, 0};
    int ready = poll(&pfd, 1, 50);
    CHECK_MSG(ready == 0,
              "weft_loop_fd stays readable with no watch left (the closed fd's file is still in "
              "weft's epoll set): a host or RUN_ONCE loop would spin");
    CHECK_EQ(atomic_load(&w.calls), 0);
    CHECK_OK(weft_cancel(lp, keep));
    weft_loop_free(lp);
    close(dup_fd);
    close(p[1]);
}
