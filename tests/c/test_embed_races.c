/*
 * test_embed_races.c: the embedding fd under races found by a review of the portable
 * backend (whose host fd, on poll(2), is the inbox bell rung by a helper thread): it
 * stays readable for completions a pass limit held back, `weft_loop_timeout_ms` racing a
 * run never leaves two waiters on one poller (an idle loop spinning), and freeing an
 * embedded loop never touches an fd number another thread has reused. They hold on
 * both backends.
 */
#include "harness.h"
#include "tasks_util.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>

static bool readable_within(int fd, int ms) {
    struct pollfd p = {fd, POLLIN, 0};
    return poll(&p, 1, ms) > 0 && (p.revents & POLLIN);
}

static int quick_work(weft_task *t, void *ud) {
    (void)t, (void)ud;
    return 0;
}

static _Atomic int dones;

static void count_done(weft_loop *lp, weft_id id, int st, const uint8_t *r, size_t n, void *ud) {
    (void)lp, (void)id, (void)st, (void)r, (void)n, (void)ud;
    atomic_fetch_add(&dones, 1);
}

/* Pass limit 1, three completions: after one NOWAIT pass two are held back; timeout_ms
 * says 0 and the host's fd stays readable (a look at the poller must not swallow it). */
TEST(completions_held_back_by_a_pass_limit_keep_the_fd_readable) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    int fd = weft_loop_fd(lp);
    CHECK_OK(weft_loop_set_pass_limit(lp, 1));
    atomic_store(&dones, 0);
    for (int i = 0; i < 3; i++) CHECK_ID(weft_spawn(lp, WEFT_ON_IO, quick_work, count_done, NULL, NULL, NULL));
    CHECK(readable_within(fd, (int)h_slack_ms(2000)));
    sleep_ms((unsigned)h_slack_ms(50)); /* all three back */
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK(atomic_load(&dones) < 3);
    CHECK_EQ(weft_loop_timeout_ms(lp), 0);
    CHECK(readable_within(fd, (int)h_slack_ms(500)));
    for (int i = 0; i < 10 && atomic_load(&dones) < 3; i++) CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(atomic_load(&dones), 3);
    weft_loop_free(lp);
}

static double cpu_seconds(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

static _Atomic int stop_asking;

static void *ask_timeout(void *arg) {
    while (!atomic_load(&stop_asking)) (void)weft_loop_timeout_ms((weft_loop *)arg);
    return NULL;
}

static _Atomic int posted;

static void count_post(weft_loop *lp, weft_id id, void *ud) {
    (void)lp, (void)id, (void)ud;
    atomic_fetch_add(&posted, 1);
}

/* One thread asks timeout_ms in a loop while another starts run(DEFAULT): once it has
 * stopped asking, the idle loop uses (almost) no CPU, and a post still wakes it. */
TEST(timeout_ms_racing_a_run_leaves_the_loop_idle) {
    if (h_valgrind()) return; /* a CPU-time measure */
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    (void)weft_loop_fd(lp);
    CHECK_ID(weft_timer_after(lp, 100000, never_cb, NULL, NULL));
    double worst = 0;
    for (int round = 0; round < 5; round++) {
        atomic_store(&stop_asking, 0);
        pthread_t asker;
        pthread_create(&asker, NULL, ask_timeout, lp);
        sleep_ms(2);
        bg_loop bg;
        bg_start(&bg, lp, WEFT_RUN_DEFAULT);
        sleep_ms(20);
        atomic_store(&stop_asking, 1);
        pthread_join(asker, NULL);
        sleep_ms(20);
        double c0 = cpu_seconds();
        uint64_t w0 = now_ns();
        sleep_ms(200);
        double used = (cpu_seconds() - c0) / ((double)(now_ns() - w0) / 1e9);
        if (used > worst) worst = used;
        int before = atomic_load(&posted);
        CHECK_ID(weft_post(lp, count_post, NULL, NULL));
        CHECK(WAIT_FOR(atomic_load(&posted) > before, 2000));
        CHECK_OK(weft_loop_stop(lp));
        bg_join(&bg, 2000, "stopped");
    }
    printf("    (an idle loop used at most %.0f%% of a CPU after the race)\n", worst * 100);
    CHECK_MSG(worst < 0.2, "an idle loop used %.0f%% of a CPU", worst * 100);
    weft_loop_free(lp);
}

static _Atomic int stop_piping;
static _Atomic long stolen, injected;

/* Makes pipes and passes a byte through each: a freed loop's leftovers must not read
 * it (a drain) or add to it (a ring). */
static void *pipe_bytes(void *arg) {
    (void)arg;
    while (!atomic_load(&stop_piping)) {
        int p[2];
        if (pipe(p) != 0) continue;
        fcntl(p[0], F_SETFL, O_NONBLOCK);
        (void)!write(p[1], "x", 1);
        for (volatile int i = 0; i < 20000; i++) {
        }
        char buf[16];
        ssize_t n = read(p[0], buf, sizeof buf);
        if (n <= 0) atomic_fetch_add(&stolen, 1);
        else if (n > 1) atomic_fetch_add(&injected, 1);
        close(p[0]);
        close(p[1]);
    }
    return NULL;
}

TEST(freeing_an_embedded_loop_leaves_reused_fds_alone) {
    pthread_t other;
    pthread_create(&other, NULL, pipe_bytes, NULL);
    long n = h_scale(1000, 100);
    for (long i = 0; i < n; i++) {
        weft_loop *lp = weft_loop_new();
        REQUIRE(lp != NULL);
        (void)weft_loop_fd(lp);
        sleep_ms(1);
        weft_loop_free(lp);
    }
    atomic_store(&stop_piping, 1);
    pthread_join(other, NULL);
    CHECK_EQ(atomic_load(&stolen), 0);
    CHECK_EQ(atomic_load(&injected), 0);
}
