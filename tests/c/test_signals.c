/* Signal watches: delivery on the loop thread, several watchers and loops, the previous
 * disposition restored, bad signal numbers. */
#include "harness.h"

#include <dirent.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>

static _Atomic int my_handler_calls;
static void my_handler(int signum) {
    (void)signum;
    atomic_fetch_add(&my_handler_calls, 1);
}
static void my_siginfo_handler(int signum, siginfo_t *info, void *ctx) {
    (void)signum, (void)info, (void)ctx;
    atomic_fetch_add(&my_handler_calls, 1);
}

static void install(int signum, void (*handler)(int)) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    sigaction(signum, &sa, NULL);
}

static struct sigaction current(int signum) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigaction(signum, NULL, &sa);
    return sa;
}

/* Waits (running the loop) until the watch has been called `n` times. */
static bool run_until_calls(weft_loop *lp, track *t, int n) {
    return run_until(lp, &t->calls, n, h_slack_ms(3000));
}

TEST(raise_is_delivered_on_the_loop_thread) {
    install(SIGUSR1, my_handler);
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    track t;
    track_init(&t);
    weft_id id = CHECK_ID(weft_watch_signal(lp, SIGUSR1, track_signal_cb, &t, track_free));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(atomic_load(&t.calls), 0);
    raise(SIGUSR1);
    CHECK_EQ(atomic_load(&t.calls), 0); /* never in the handler itself */
    CHECK(run_until_calls(lp, &t, 1));
    CHECK_EQ(atomic_load(&t.events), SIGUSR1);
    CHECK_EQ(t.last_id, id);
    CHECK(pthread_equal(t.thread, pthread_self()));
    CHECK_EQ(atomic_load(&my_handler_calls), 0); /* weft's handler replaced mine */
    CHECK_OK(weft_cancel(lp, id));
    CHECK_EQ(atomic_load(&t.frees), 1);
    weft_loop_free(lp);
    install(SIGUSR1, SIG_DFL);
}

/* kill(getpid()) from another thread, while the loop waits on its own thread. */
typedef struct {
    weft_loop *lp;
    track t;
    int rc;
    pthread_t thread;
} sig_loop;

static void cancel_on_signal(weft_loop *lp, weft_id id, int signum, void *ud) {
    sig_loop *s = (sig_loop *)ud;
    track_signal_cb(lp, id, signum, &s->t);
    CHECK_OK(weft_cancel(lp, id));
}

static void *sig_loop_thread(void *arg) {
    sig_loop *s = (sig_loop *)arg;
    s->thread = pthread_self();
    s->rc = weft_loop_run(s->lp, WEFT_RUN_DEFAULT);
    return NULL;
}

TEST(kill_wakes_a_loop_waiting_on_another_thread) {
    sig_loop s;
    memset(&s, 0, sizeof s);
    s.lp = weft_loop_new();
    REQUIRE(s.lp != NULL);
    CHECK_ID(weft_watch_signal(s.lp, SIGUSR2, cancel_on_signal, &s, NULL));
    pthread_t th;
    pthread_create(&th, NULL, sig_loop_thread, &s);
    sleep_ms(30);
    CHECK(kill(getpid(), SIGUSR2) == 0);
    pthread_join(th, NULL); /* the loop returns once the watch cancelled itself */
    CHECK_EQ(s.rc, WEFT_OK);
    CHECK_EQ(atomic_load(&s.t.calls), 1);
    CHECK_EQ(atomic_load(&s.t.events), SIGUSR2);
    CHECK(pthread_equal(s.t.thread, th));
    weft_loop_free(s.lp);
}

/* Two watchers in one loop and watchers in two loops: all are called. */
TEST(every_watcher_in_every_loop_is_called) {
    install(SIGUSR1, my_handler);
    weft_loop *a = weft_loop_new();
    weft_loop *b = weft_loop_new();
    REQUIRE(a != NULL && b != NULL);
    track a1, a2, b1;
    track_init(&a1);
    track_init(&a2);
    track_init(&b1);
    weft_id ia1 = CHECK_ID(weft_watch_signal(a, SIGUSR1, track_signal_cb, &a1, track_free));
    weft_id ia2 = CHECK_ID(weft_watch_signal(a, SIGUSR1, track_signal_cb, &a2, track_free));
    weft_id ib1 = CHECK_ID(weft_watch_signal(b, SIGUSR1, track_signal_cb, &b1, track_free));
    raise(SIGUSR1);
    CHECK(run_until_calls(a, &a2, 1));
    CHECK(run_until_calls(b, &b1, 1));
    CHECK_EQ(atomic_load(&a1.calls), 1);
    CHECK_EQ(atomic_load(&a2.calls), 1);
    CHECK_EQ(atomic_load(&b1.calls), 1);
    /* a second signal after the first was handled is reported again */
    raise(SIGUSR1);
    CHECK(run_until_calls(a, &a1, 2));
    CHECK(run_until_calls(b, &b1, 2));
    /* cancelling one watcher leaves the others */
    CHECK_OK(weft_cancel(a, ia1));
    raise(SIGUSR1);
    CHECK(run_until_calls(a, &a2, 3));
    CHECK(run_until_calls(b, &b1, 3));
    CHECK_EQ(atomic_load(&a1.calls), 2);
    CHECK_EQ(atomic_load(&my_handler_calls), 0);
    CHECK_OK(weft_cancel(a, ia2));
    CHECK_OK(weft_cancel(b, ib1));
    weft_loop_free(a);
    weft_loop_free(b);
    CHECK_EQ(atomic_load(&a1.frees) + atomic_load(&a2.frees) + atomic_load(&b1.frees), 3);
    install(SIGUSR1, SIG_DFL);
}

/* A signal caught while the loop is not running is reported by its next run. */
TEST(signal_before_run_is_reported_later) {
    install(SIGUSR1, my_handler);
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    track t;
    track_init(&t);
    weft_id id = CHECK_ID(weft_watch_signal(lp, SIGUSR1, track_signal_cb, &t, track_free));
    raise(SIGUSR1);
    raise(SIGUSR1); /* may be reported once */
    CHECK_EQ(weft_loop_timeout_ms(lp), 0); /* work ready */
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_ONCE));
    CHECK(atomic_load(&t.calls) >= 1 && atomic_load(&t.calls) <= 2);
    CHECK_OK(weft_cancel(lp, id));
    weft_loop_free(lp);
    install(SIGUSR1, SIG_DFL);
}

/* The disposition in place before the first watch is back after the last one goes:
 * across two loops, after cancel and after weft_loop_free. */
TEST(previous_disposition_is_restored_after_the_last_watcher) {
    install(SIGUSR1, my_handler);
    atomic_store(&my_handler_calls, 0);
    weft_loop *a = weft_loop_new();
    weft_loop *b = weft_loop_new();
    REQUIRE(a != NULL && b != NULL);
    track t;
    track_init(&t);
    weft_id ia = CHECK_ID(weft_watch_signal(a, SIGUSR1, track_signal_cb, &t, track_free));
    struct sigaction during = current(SIGUSR1);
    CHECK(during.sa_handler != my_handler && during.sa_handler != SIG_DFL);
    CHECK_ID(weft_watch_signal(b, SIGUSR1, track_signal_cb, &t, track_free));
    weft_id ib2 = CHECK_ID(weft_watch_signal(b, SIGUSR1, track_signal_cb, &t, track_free));
    CHECK_OK(weft_cancel(a, ia));
    CHECK(current(SIGUSR1).sa_handler == during.sa_handler); /* b still watches */
    CHECK_OK(weft_cancel(b, ib2));
    CHECK(current(SIGUSR1).sa_handler == during.sa_handler);
    weft_loop_free(b); /* the last watcher goes with its loop */
    struct sigaction after = current(SIGUSR1);
    CHECK_MSG(after.sa_handler == my_handler, "the handler installed before was not restored");
    raise(SIGUSR1);
    CHECK_EQ(atomic_load(&my_handler_calls), 1);
    CHECK_EQ(atomic_load(&t.frees), 3);
    weft_loop_free(a);

    /* an SA_SIGINFO handler, with its flags and mask */
    struct sigaction si;
    memset(&si, 0, sizeof si);
    si.sa_sigaction = my_siginfo_handler;
    si.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&si.sa_mask);
    sigaddset(&si.sa_mask, SIGUSR2);
    sigaction(SIGUSR1, &si, NULL);
    weft_loop *c = weft_loop_new();
    REQUIRE(c != NULL);
    weft_id ic = CHECK_ID(weft_watch_signal(c, SIGUSR1, track_signal_cb, &t, track_free));
    CHECK_OK(weft_cancel(c, ic));
    after = current(SIGUSR1);
    CHECK(after.sa_sigaction == my_siginfo_handler);
    CHECK(after.sa_flags & SA_SIGINFO);
    CHECK(after.sa_flags & SA_RESTART);
    CHECK(sigismember(&after.sa_mask, SIGUSR2));
    weft_loop_free(c);

    /* SIG_IGN and SIG_DFL come back too */
    install(SIGWINCH, SIG_IGN);
    weft_loop *d = weft_loop_new();
    REQUIRE(d != NULL);
    weft_id id = CHECK_ID(weft_watch_signal(d, SIGWINCH, track_signal_cb, &t, track_free));
    CHECK(current(SIGWINCH).sa_handler != SIG_IGN);
    CHECK_OK(weft_cancel(d, id));
    CHECK(current(SIGWINCH).sa_handler == SIG_IGN);
    install(SIGWINCH, SIG_DFL);
    id = CHECK_ID(weft_watch_signal(d, SIGWINCH, track_signal_cb, &t, track_free));
    CHECK_OK(weft_cancel(d, id));
    CHECK(current(SIGWINCH).sa_handler == SIG_DFL);
    weft_loop_free(d);
    install(SIGUSR1, SIG_DFL);
}

TEST(bad_signal_numbers_are_invalid) {
    /* SIG_DFL normally; a sanitizer's handler in the AddressSanitizer build. */
    struct sigaction segv = current(SIGSEGV);
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    int bad[] = {0, -1, 65, 1000, INT_MAX, INT_MIN, SIGKILL, SIGSTOP, SIGSEGV, SIGBUS, SIGFPE, SIGILL};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        weft_id id = weft_watch_signal(lp, bad[i], never_signal_cb, NULL, never_free);
        CHECK_MSG(id == 0, "weft_watch_signal(%d) succeeded", bad[i]);
        char want[64];
        snprintf(want, sizeof want, "weft_watch_signal: signum %d", bad[i]);
        CHECK_ERR_HAS(want);
    }
    /* SIGKILL's and SIGSTOP's dispositions cannot change anyway; SIGSEGV's stays ours */
    CHECK(current(SIGSEGV).sa_handler == segv.sa_handler);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT)); /* nothing registered */
    weft_loop_free(lp);
}

/* Every signal number in 1..64 that the header does not exclude can be watched, or is
 * refused with WEFT_ERR_INVALID (the documented error). glibc reserves 32 and 33 for
 * itself (its sigaction refuses them). */
TEST(every_signal_number_in_range_is_accepted_or_invalid) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    for (int s = 1; s <= 64; s++) {
        if (s == SIGKILL || s == SIGSTOP || s == SIGSEGV || s == SIGBUS || s == SIGFPE ||
            s == SIGILL)
            continue;
        if (s == SIGRTMAX && h_valgrind()) continue; /* valgrind keeps SIGRTMAX for itself */
        struct sigaction before = current(s);
        weft_id id = weft_watch_signal(lp, s, never_signal_cb, NULL, NULL);
        if (id != 0) {
            CHECK_OK(weft_cancel(lp, id));
        } else {
            const char *e = h_last_error();
            char want[64];
            snprintf(want, sizeof want, "weft_watch_signal: signum %d", s);
            CHECK_MSG(strncmp(e, want, strlen(want)) == 0,
                      "weft_watch_signal(%d) failed with \"%s\": not the documented "
                      "WEFT_ERR_INVALID naming the signum",
                      s, e);
        }
        struct sigaction after = current(s);
        CHECK_MSG(after.sa_handler == before.sa_handler, "signal %d: disposition not restored", s);
    }
    weft_loop_free(lp);
}

/* The fds of this process, as a bitmap over 0..1023. */
static void open_fds(unsigned char *set) {
    memset(set, 0, 1024);
    DIR *d = opendir("/proc/self/fd");
    if (!d) return;
    int self = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] != '.' && fd != self && fd < 1024) set[fd] = 1;
    }
    closedir(d);
}

/* A loop whose signal watch was refused, then freed, must leave nothing behind that a
 * later signal reaches: in particular no write into a descriptor that now belongs to
 * someone else. */
TEST(a_refused_signal_watch_leaves_no_trace_after_loop_free) {
    install(SIGUSR1, my_handler);
    unsigned char before[1024], with_loop[1024];
    open_fds(before);
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    open_fds(with_loop);
    /* glibc's sigaction refuses 32 (SIGCANCEL) and 33 (SIGSETXID) */
    weft_id refused = weft_watch_signal(lp, 32, never_signal_cb, NULL, never_free);
    if (refused != 0) {
        CHECK_OK(weft_cancel(lp, refused));
        weft_loop_free(lp);
        install(SIGUSR1, SIG_DFL);
        return; /* accepted: nothing to check here */
    }
    weft_loop_free(lp);
    /* new eventfds take the numbers the loop's fds had */
    int efd[64];
    int nefd = 0;
    bool covered = false;
    while (!covered && nefd < 64) {
        efd[nefd++] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        covered = true;
        for (int fd = 0; fd < 1024; fd++) {
            if (with_loop[fd] && !before[fd]) {
                bool taken = false;
                for (int i = 0; i < nefd; i++) taken |= efd[i] == fd;
                covered &= taken;
            }
        }
    }
    CHECK(covered);
    /* another loop watches a signal, which makes weft's handler ring every loop's bell */
    weft_loop *other = weft_loop_new();
    REQUIRE(other != NULL);
    track t;
    track_init(&t);
    weft_id id = CHECK_ID(weft_watch_signal(other, SIGUSR1, track_signal_cb, &t, track_free));
    raise(SIGUSR1);
    CHECK(run_until(other, &t.calls, 1, h_slack_ms(3000)));
    for (int i = 0; i < nefd; i++) {
        struct pollfd p = {efd[i], POLLIN, 0};
        CHECK_MSG(poll(&p, 1, 0) == 0,
                  "the signal handler wrote to fd %d, an eventfd this test made after freeing "
                  "the loop whose signal watch was refused",
                  efd[i]);
    }
    CHECK_OK(weft_cancel(other, id));
    weft_loop_free(other);
    for (int i = 0; i < nefd; i++) close(efd[i]);
    install(SIGUSR1, SIG_DFL);
}

/* A watcher cancelling a later watcher of the same signal in the same pass: the later one
 * is not called. */
typedef struct {
    weft_id victim;
    int rc;
} sig_canceller;

static void cancel_other_watcher(weft_loop *lp, weft_id id, int signum, void *ud) {
    (void)id, (void)signum;
    sig_canceller *c = (sig_canceller *)ud;
    if (c->victim) c->rc = weft_cancel(lp, c->victim);
    c->victim = 0;
}

TEST(watcher_cancelled_by_an_earlier_one_is_not_called) {
    install(SIGUSR2, my_handler);
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    sig_canceller c = {0, -99};
    track victim;
    track_init(&victim);
    weft_id first = CHECK_ID(weft_watch_signal(lp, SIGUSR2, cancel_other_watcher, &c, NULL));
    c.victim = CHECK_ID(weft_watch_signal(lp, SIGUSR2, track_signal_cb, &victim, track_free));
    raise(SIGUSR2);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_ONCE));
    CHECK_EQ(c.rc, WEFT_OK);
    CHECK_EQ(atomic_load(&victim.calls), 0);
    CHECK_EQ(atomic_load(&victim.frees), 1);
    CHECK_OK(weft_cancel(lp, first));
    weft_loop_free(lp);
    install(SIGUSR2, SIG_DFL);
}
