/* libev implementation of the benchmark workloads (see ../README.md). */
#include "bench_common.h"
#include "bench_lateness.h"
#include <ev.h>

static struct ev_loop *new_loop(void)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    check(loop != NULL);
    return loop;
}

/* Timer watchers are preallocated outside the measured region (ev_timer is
 * application-owned, as with libuv and libevent). */

/* ---- timers_fire ------------------------------------------------------------ */
static uint64_t fired;

static void on_fire(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop; (void)w; (void)revents;
    fired++;
}

static void timers_fire(void)
{
    uint32_t *delay = gen_delays(N_FIRE, 0, FIRE_MAX_MS);
    ev_timer *t = xcalloc(N_FIRE, sizeof *t);
    struct ev_loop *loop = new_loop();
    struct span s = span_start();
    watchdog("timers fired", &fired, N_FIRE);
    ev_now_update(loop);
    for (uint32_t i = 0; i < N_FIRE; i++) {
        ev_timer_init(&t[i], on_fire, delay[i] / 1e3, 0.);
        ev_timer_start(loop, &t[i]);
    }
    ev_run(loop, 0);
    report_timers_fire(s, fired);
}

/* ---- timers_cancel ---------------------------------------------------------- */
static void timers_cancel(void)
{
    uint32_t n = bench_n(N_CANCEL);
    uint32_t *delay = gen_delays(n, CANCEL_LO_MS, CANCEL_HI_MS);
    uint32_t *order = gen_perm(n);
    ev_timer *t = xcalloc(n, sizeof *t);
    struct ev_loop *loop = new_loop();
    struct span s = span_start();
    for (uint32_t i = 0; i < n; i++) {
        ev_timer_init(&t[i], on_fire, delay[i] / 1e3, 0.);
        ev_timer_start(loop, &t[i]);
    }
    uint64_t scheduled = now_ns();
    for (uint32_t i = 0; i < n; i++)
        ev_timer_stop(loop, &t[order[i]]);
    report_timers_cancel(s, scheduled);
    ev_loop_destroy(loop);
}

/* ---- cross_thread_post / wakeup_latency: queue + ev_async --------------------- */
static struct xpost xp;
static struct mq queue = MQ_INIT;
static struct ev_loop *xp_loop;
static ev_async async;

static void on_async(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)revents;
    for (struct rec *r = mq_take(&queue), *next; r; r = next) {
        next = r->next;
        if (xpost_deliver(&xp, r))
            ev_async_stop(loop, w);
    }
}

static void post_record(struct rec *r)
{
    if (mq_push(&queue, r))
        ev_async_send(xp_loop, &async);
}

static void run_xpost(int mode)
{
    xp_loop = new_loop();
    xpost_init(&xp, mode, post_record);
    ev_async_init(&async, on_async);
    ev_async_start(xp_loop, &async);
    xpost_start(&xp);
    ev_run(xp_loop, 0);
    xpost_report(&xp);
    ev_loop_destroy(xp_loop);
}

static void cross_thread_post(void) { run_xpost(XPOST_1); }
static void cross_thread_post_4(void) { run_xpost(XPOST_4); }
static void wakeup_latency(void) { run_xpost(XPOST_LATENCY); }

/* ---- fd_pingpong -------------------------------------------------------------- */
static ev_io watch[2];
static uint64_t trips;

static void on_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    char c;
    check(read(w->fd, &c, 1) == 1);
    if (w == &watch[0] && ++trips == N_PINGPONG) {
        ev_io_stop(loop, &watch[0]);
        ev_io_stop(loop, &watch[1]);
        return;
    }
    check(write(w->fd, &c, 1) == 1);
}

static void fd_pingpong(void)
{
    struct ev_loop *loop = new_loop();
    int sv[2];
    nonblocking_socketpair(sv);
    for (int i = 0; i < 2; i++) {
        ev_io_init(&watch[i], on_readable, sv[i], EV_READ);
        ev_io_start(loop, &watch[i]);
    }
    struct span s = span_start();
    watchdog("round trips", &trips, N_PINGPONG);
    check(write(sv[0], "x", 1) == 1);
    ev_run(loop, 0);
    report_pingpong(s, trips);
    ev_loop_destroy(loop);
}

/* ---- memory: the application-owned ev_timer is counted ------------------------ */
static void memory(void)
{
    struct ev_loop *loop = new_loop();
    long before = rss_bytes();
    ev_timer *t = xcalloc(N_MEMORY, sizeof *t);
    for (uint32_t i = 0; i < N_MEMORY; i++) {
        ev_timer_init(&t[i], on_fire, MEMORY_DELAY_MS / 1e3, 0.);
        ev_timer_start(loop, &t[i]);
    }
    report_memory(before, rss_bytes());
}

/* ---- timer_lateness (bench_lateness.h) ---------------------------------------- */
static void on_late(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop; (void)revents;
    late_fired((uint32_t)(uintptr_t)w->data);
}

static void timer_lateness(void)
{
    late_init();
    ev_timer *t = xcalloc(late.n, sizeof *t);
    struct ev_loop *loop = new_loop();
    for (uint32_t i = 0; i < late.n; i++) {
        ev_timer_init(&t[i], on_late, late.delay[i] / 1e3, 0.);
        t[i].data = (void *)(uintptr_t)i;
        ev_now_update(loop);
        late_arm(i);
        ev_timer_start(loop, &t[i]);
    }
    ev_run(loop, 0);
    late_report();
    ev_loop_destroy(loop);
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
    return bench_main(argc, argv, "libev", w);
}
