/* Threads at once: registrations of every kind made and cancelled from several threads
 * while the loop runs; signals raised while watches come and go; loops made and freed
 * on many threads. Every registration is freed exactly once, no callback runs after its
 * free_fn, nothing hangs. */
#include "harness.h"

#include <sched.h>
#include <signal.h>

typedef struct reg {
    _Atomic int calls;
    _Atomic int frees;
    _Atomic int after_free;
} reg;

static _Atomic long total_frees, total_calls_after_free;

static void reg_free(void *ud) {
    reg *r = (reg *)ud;
    if (atomic_fetch_add(&r->frees, 1) != 0) h_fail(__FILE__, __LINE__, "a free_fn ran twice");
    atomic_fetch_add(&total_frees, 1);
}

static void reg_touch(reg *r) {
    if (atomic_load(&r->frees)) {
        atomic_fetch_add(&r->after_free, 1);
        atomic_fetch_add(&total_calls_after_free, 1);
    }
    atomic_fetch_add(&r->calls, 1);
}

static void reg_cb(weft_loop *lp, weft_id id, void *ud) {
    (void)lp, (void)id;
    reg_touch((reg *)ud);
}
static void reg_fd_cb(weft_loop *lp, weft_id id, int fd, uint32_t ev, void *ud) {
    (void)lp, (void)id, (void)fd, (void)ev;
    reg_touch((reg *)ud);
}
static void reg_event_cb(weft_loop *lp, weft_id id, const char *t, const void *p, size_t n,
                         void *ud) {
    (void)lp, (void)id, (void)t, (void)p, (void)n;
    reg_touch((reg *)ud);
}
static void reg_self_cancel_cb(weft_loop *lp, weft_id id, void *ud) {
    reg_touch((reg *)ud);
    weft_cancel(lp, id); /* OK or NOT_FOUND if another thread won */
}

enum { WORKERS = 4 };

typedef struct {
    weft_loop *lp;
    int index;
    long ops;
    reg *regs; /* one per operation */
    long made;
    int pipe_w;
    uint64_t seed;
} worker;

static uint64_t next_rand(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void *worker_main(void *arg) {
    worker *w = (worker *)arg;
    weft_id live[64];
    int nlive = 0;
    char topic[32];
    snprintf(topic, sizeof topic, "w.%d", w->index);
    for (long i = 0; i < w->ops; i++) {
        reg *r = &w->regs[i];
        weft_id id = 0;
        bool cancellable = true;
        switch (next_rand(&w->seed) % 7) {
        case 0:
            id = weft_post(w->lp, reg_cb, r, reg_free);
            cancellable = next_rand(&w->seed) % 2;
            break;
        case 1:
            id = weft_timer_after(w->lp, next_rand(&w->seed) % 5, reg_cb, r, reg_free);
            cancellable = next_rand(&w->seed) % 2;
            break;
        case 2:
            id = weft_timer_every(w->lp, 1 + next_rand(&w->seed) % 3, reg_self_cancel_cb, r,
                                  reg_free);
            break;
        case 3:
            id = weft_subscribe(w->lp, topic, reg_event_cb, r, reg_free);
            break;
        case 4:
            id = weft_watch_fd(w->lp, w->pipe_w, WEFT_WRITABLE, reg_fd_cb, r, reg_free);
            break;
        case 5:
            id = weft_timer_every(w->lp, 1, reg_cb, r, reg_free);
            break;
        default:
            if (weft_emit(w->lp, topic, &i, sizeof i) != WEFT_OK)
                h_fail(__FILE__, __LINE__, "weft_emit failed");
            atomic_store(&r->frees, 1); /* no registration: counts as freed */
            atomic_fetch_add(&total_frees, 1);
            continue;
        }
        if (id == 0) {
            h_fail_e(__FILE__, __LINE__, "registration failed");
            continue;
        }
        if (cancellable) {
            if (nlive == 64 || (nlive > 0 && next_rand(&w->seed) % 2)) {
                int k = (int)(next_rand(&w->seed) % (uint64_t)nlive);
                int rc = weft_cancel(w->lp, live[k]);
                if (rc != WEFT_OK && rc != WEFT_ERR_NOT_FOUND)
                    h_fail(__FILE__, __LINE__, "weft_cancel returned %d", rc);
                live[k] = live[--nlive];
            }
            live[nlive++] = id;
        }
        if (i % 64 == 0) sched_yield();
    }
    for (int k = 0; k < nlive; k++) {
        int rc = weft_cancel(w->lp, live[k]);
        if (rc != WEFT_OK && rc != WEFT_ERR_NOT_FOUND)
            h_fail(__FILE__, __LINE__, "weft_cancel returned %d", rc);
    }
    return NULL;
}

static void stop_cb(weft_loop *lp, weft_id id, void *ud) {
    (void)id, (void)ud;
    weft_loop_stop(lp);
}

TEST(registrations_of_every_kind_from_many_threads_while_the_loop_runs) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    atomic_store(&total_frees, 0);
    atomic_store(&total_calls_after_free, 0);
    long ops = h_scale(20000, 1500);
    worker w[WORKERS];
    pthread_t th[WORKERS];
    int pipes[WORKERS][2];
    bg_loop b;
    CHECK_ID(weft_subscribe(lp, "keepalive", never_event_cb, NULL, NULL));
    bg_start(&b, lp, WEFT_RUN_DEFAULT);
    for (int i = 0; i < WORKERS; i++) {
        REQUIRE(pipe(pipes[i]) == 0);
        w[i] = (worker){lp, i, ops, calloc((size_t)ops, sizeof(reg)), 0, pipes[i][1],
                        0x9E3779B97F4A7C15ull * (uint64_t)(i + 1)};
        pthread_create(&th[i], NULL, worker_main, &w[i]);
    }
    for (int i = 0; i < WORKERS; i++) pthread_join(th[i], NULL);
    /* what is left: posts and one-shot timers still to run, nothing else */
    uint64_t end = now_ms() + h_slack_ms(5000);
    while (atomic_load(&total_frees) < ops * WORKERS && now_ms() < end) sleep_ms(1);
    CHECK_ID(weft_post(lp, stop_cb, NULL, NULL));
    bg_join(&b, h_slack_ms(5000), "run the post that stops it");
    CHECK_EQ(b.rc, WEFT_OK);
    CHECK_EQ(atomic_load(&total_frees), ops * WORKERS);
    CHECK_EQ(atomic_load(&total_calls_after_free), 0);
    long bad = 0;
    for (int i = 0; i < WORKERS; i++)
        for (long k = 0; k < ops; k++)
            if (atomic_load(&w[i].regs[k].frees) != 1) bad++;
    CHECK_EQ(bad, 0);
    weft_loop_free(lp);
    for (int i = 0; i < WORKERS; i++) {
        free(w[i].regs);
        close(pipes[i][0]);
        close(pipes[i][1]);
    }
}

/* Signals raised from one thread while other threads add and remove watches of that
 * signal in their own loops. The previous disposition (a handler of ours) is in place
 * whenever no watch exists, so no signal is lost to SIG_DFL. */
static _Atomic int mine_calls;
static void mine(int s) {
    (void)s;
    atomic_fetch_add(&mine_calls, 1);
}

static _Atomic int signals_stop;

static void *raiser(void *arg) {
    (void)arg;
    while (!atomic_load(&signals_stop)) {
        kill(getpid(), SIGUSR1);
        sleep_ms(1);
    }
    return NULL;
}

typedef struct {
    _Atomic long calls;
    long rounds;
} sig_worker;

static void sig_count(weft_loop *lp, weft_id id, int signum, void *ud) {
    (void)lp, (void)id;
    if (signum != SIGUSR1) h_fail(__FILE__, __LINE__, "signum %d", signum);
    atomic_fetch_add(&((sig_worker *)ud)->calls, 1);
}

static void *watcher_churn(void *arg) {
    sig_worker *s = (sig_worker *)arg;
    uint64_t end = now_ms() + 300;
    while (now_ms() < end) {
        weft_loop *lp = weft_loop_new();
        if (!lp) {
            h_fail_e(__FILE__, __LINE__, "weft_loop_new");
            break;
        }
        weft_id a = weft_watch_signal(lp, SIGUSR1, sig_count, s, NULL);
        weft_id b = weft_watch_signal(lp, SIGUSR1, sig_count, s, NULL);
        if (!a || !b) h_fail_e(__FILE__, __LINE__, "weft_watch_signal");
        for (int i = 0; i < 3; i++) {
            weft_loop_run(lp, WEFT_RUN_NOWAIT);
            sleep_ms(1);
        }
        if (a) weft_cancel(lp, a);
        weft_loop_free(lp); /* b goes with its loop */
        s->rounds++;
    }
    return NULL;
}

TEST(signals_while_watches_come_and_go) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = mine;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    atomic_store(&signals_stop, 0);
    sig_worker s[3];
    memset(s, 0, sizeof s);
    pthread_t r, t[3];
    pthread_create(&r, NULL, raiser, NULL);
    for (int i = 0; i < 3; i++) pthread_create(&t[i], NULL, watcher_churn, &s[i]);
    for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
    atomic_store(&signals_stop, 1);
    pthread_join(r, NULL);
    long calls = 0, rounds = 0;
    for (int i = 0; i < 3; i++) calls += atomic_load(&s[i].calls), rounds += s[i].rounds;
    CHECK(rounds > 3);
    CHECK(calls > 0);
    struct sigaction now;
    sigaction(SIGUSR1, NULL, &now);
    CHECK_MSG(now.sa_handler == mine, "the disposition is not ours again after the churn");
    sa.sa_handler = SIG_DFL;
    sigaction(SIGUSR1, &sa, NULL);
}

/* Loops made, used and freed on many threads at once. */
static void *loop_churn(void *arg) {
    long *made = (long *)arg;
    uint64_t end = now_ms() + 200;
    while (now_ms() < end) {
        weft_loop *lp = weft_loop_new();
        if (!lp) {
            h_fail_e(__FILE__, __LINE__, "weft_loop_new");
            break;
        }
        reg r[3];
        memset(r, 0, sizeof r);
        CHECK_ID(weft_timer_after(lp, 0, reg_cb, &r[0], reg_free));
        CHECK_ID(weft_post(lp, reg_cb, &r[1], reg_free));
        CHECK_ID(weft_subscribe(lp, "x", reg_event_cb, &r[2], reg_free));
        CHECK_OK(weft_emit(lp, "x", NULL, 0));
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
        weft_loop_free(lp);
        for (int i = 0; i < 3; i++)
            if (atomic_load(&r[i].frees) != 1)
                h_fail(__FILE__, __LINE__, "registration %d freed %d times", i, r[i].frees);
        if (atomic_load(&r[1].calls) != 1 || atomic_load(&r[2].calls) != 1)
            h_fail(__FILE__, __LINE__, "post or event not delivered by the NOWAIT pass");
        (*made)++;
    }
    return NULL;
}

TEST(loops_made_and_freed_on_many_threads) {
    pthread_t t[4];
    long made[4] = {0, 0, 0, 0};
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, loop_churn, &made[i]);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < 4; i++) CHECK(made[i] > 0);
}
