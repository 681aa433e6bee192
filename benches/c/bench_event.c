/* libevent implementation of the benchmark workloads (see ../README.md). */
#include "bench_common.h"
#include "bench_lateness.h"
#include <event2/event.h>
#include <event2/event_struct.h>
#include <sys/eventfd.h>

static struct event_base *new_base(void)
{
    struct event_base *base = event_base_new();
    check(base != NULL);
    return base;
}

static struct timeval ms_tv(uint32_t ms)
{
    return (struct timeval){ ms / 1000, (ms % 1000) * 1000 };
}

/* Timer events are preallocated outside the measured region (struct event is
 * application-owned, as with libuv and libev). */

/* ---- timers_fire ------------------------------------------------------------ */
static uint64_t fired;

static void on_fire(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what; (void)arg;
    fired++;
}

static void timers_fire(void)
{
    uint32_t *delay = gen_delays(N_FIRE, 0, FIRE_MAX_MS);
    struct event *ev = xcalloc(N_FIRE, sizeof *ev);
    struct event_base *base = new_base();
    struct span s = span_start();
    watchdog("timers fired", &fired, N_FIRE);
    for (uint32_t i = 0; i < N_FIRE; i++) {
        struct timeval tv = ms_tv(delay[i]);
        check(event_assign(&ev[i], base, -1, 0, on_fire, NULL) == 0);
        check(event_add(&ev[i], &tv) == 0);
    }
    check(event_base_dispatch(base) == 1);   /* 1: returned because no events left */
    report_timers_fire(s, fired);
}

/* ---- timers_cancel ---------------------------------------------------------- */
static void timers_cancel(void)
{
    uint32_t n = bench_n(N_CANCEL);
    uint32_t *delay = gen_delays(n, CANCEL_LO_MS, CANCEL_HI_MS);
    uint32_t *order = gen_perm(n);
    struct event *ev = xcalloc(n, sizeof *ev);
    struct event_base *base = new_base();
    struct span s = span_start();
    for (uint32_t i = 0; i < n; i++) {
        struct timeval tv = ms_tv(delay[i]);
        check(event_assign(&ev[i], base, -1, 0, on_fire, NULL) == 0);
        check(event_add(&ev[i], &tv) == 0);
    }
    uint64_t scheduled = now_ns();
    for (uint32_t i = 0; i < n; i++)
        check(event_del(&ev[order[i]]) == 0);
    report_timers_cancel(s, scheduled);
}

/* ---- cross_thread_post / wakeup_latency: queue + eventfd ---------------------- */
static struct xpost xp;
static struct mq queue = MQ_INIT;
static int wake_fd;

static void on_wake(evutil_socket_t fd, short what, void *ev)
{
    (void)what;
    uint64_t n;
    check(read(fd, &n, sizeof n) == sizeof n);
    for (struct rec *r = mq_take(&queue), *next; r; r = next) {
        next = r->next;
        if (xpost_deliver(&xp, r))
            event_del(ev);
    }
}

static void post_record(struct rec *r)
{
    static const uint64_t one = 1;
    if (mq_push(&queue, r))
        check(write(wake_fd, &one, sizeof one) == sizeof one);
}

static void run_xpost(int mode)
{
    struct event_base *base = new_base();
    xpost_init(&xp, mode, post_record);
    check((wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) >= 0);
    struct event *ev = event_new(base, wake_fd, EV_READ | EV_PERSIST, on_wake, event_self_cbarg());
    check(ev && event_add(ev, NULL) == 0);
    xpost_start(&xp);
    check(event_base_dispatch(base) == 1);
    xpost_report(&xp);
    event_free(ev);
    event_base_free(base);
}

static void cross_thread_post(void) { run_xpost(XPOST_1); }
static void cross_thread_post_4(void) { run_xpost(XPOST_4); }
static void wakeup_latency(void) { run_xpost(XPOST_LATENCY); }

/* ---- fd_pingpong -------------------------------------------------------------- */
static int sv[2];
static struct event *watch[2];
static uint64_t trips;

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    (void)what; (void)arg;
    char c;
    check(read(fd, &c, 1) == 1);
    if (fd == sv[0] && ++trips == N_PINGPONG) {
        event_del(watch[0]);
        event_del(watch[1]);
        return;
    }
    check(write(fd, &c, 1) == 1);
}

static void fd_pingpong(void)
{
    struct event_base *base = new_base();
    nonblocking_socketpair(sv);
    for (int i = 0; i < 2; i++) {
        watch[i] = event_new(base, sv[i], EV_READ | EV_PERSIST, on_readable, NULL);
        check(watch[i] && event_add(watch[i], NULL) == 0);
    }
    struct span s = span_start();
    watchdog("round trips", &trips, N_PINGPONG);
    check(write(sv[0], "x", 1) == 1);
    check(event_base_dispatch(base) == 1);
    report_pingpong(s, trips);
    event_free(watch[0]);
    event_free(watch[1]);
    event_base_free(base);
}

/* ---- memory: the application-owned struct event is counted -------------------- */
static void memory(void)
{
    struct event_base *base = new_base();
    long before = rss_bytes();
    struct event *ev = xcalloc(N_MEMORY, sizeof *ev);
    struct timeval tv = ms_tv(MEMORY_DELAY_MS);
    for (uint32_t i = 0; i < N_MEMORY; i++) {
        check(event_assign(&ev[i], base, -1, 0, on_fire, NULL) == 0);
        check(event_add(&ev[i], &tv) == 0);
    }
    report_memory(before, rss_bytes());
}

/* ---- timer_lateness (bench_lateness.h) ---------------------------------------- */
static void on_late(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what;
    late_fired((uint32_t)(uintptr_t)arg);
}

static void timer_lateness(void)
{
    late_init();
    struct event *ev = xcalloc(late.n, sizeof *ev);
    /* libevent's default clock is CLOCK_MONOTONIC_COARSE (a tick of 1-4 ms); a program
     * that wants precise timers asks for the precise one */
    struct event_config *cfg = event_config_new();
    check(cfg != NULL);
    check(event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER) == 0);
    struct event_base *base = event_base_new_with_config(cfg);
    check(base != NULL);
    event_config_free(cfg);
    for (uint32_t i = 0; i < late.n; i++) {
        struct timeval tv = ms_tv(late.delay[i]);
        check(event_assign(&ev[i], base, -1, 0, on_late, (void *)(uintptr_t)i) == 0);
        late_arm(i);
        check(event_add(&ev[i], &tv) == 0);
    }
    check(event_base_dispatch(base) == 1);   /* 1: returned because no events left */
    late_report();
}

int main(int argc, char **argv)
{
    static const struct workload w[] = {
        { "timers_fire", timers_fire }, { "timers_cancel", timers_cancel },
        { "cross_thread_post", cross_thread_post },
        { "cross_thread_post_4", cross_thread_post_4 }, { "fd_pingpong", fd_pingpong },
        { "wakeup_latency", wakeup_latency }, { "memory", memory },
        { "timer_lateness", timer_lateness }, { NULL, NULL },
    };
    return bench_main(argc, argv, "libevent", w);
}
