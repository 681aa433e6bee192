/* libuv implementation of the benchmark workloads (see ../README.md). */
#include "bench_common.h"
#include <uv.h>

#define uvcheck(expr) do { int rc_ = (expr); if (rc_ != 0) \
    die("%s: %s", #expr, uv_strerror(rc_)); } while (0)

static uv_loop_t *new_loop(void)
{
    uv_loop_t *loop = xcalloc(1, sizeof *loop);
    uvcheck(uv_loop_init(loop));
    return loop;
}

/* Timer handles are preallocated outside the measured region; the process
 * exits without closing them (closing 1M handles is not part of any workload). */

/* ---- timers_fire ------------------------------------------------------------ */
static uint64_t fired;

static void on_fire(uv_timer_t *t)
{
    (void)t;
    fired++;
}

static void timers_fire(void)
{
    uint32_t *delay = gen_delays(N_FIRE, 0, FIRE_MAX_MS);
    uv_timer_t *t = xcalloc(N_FIRE, sizeof *t);
    uv_loop_t *loop = new_loop();
    struct span s = span_start();
    uv_update_time(loop);
    for (uint32_t i = 0; i < N_FIRE; i++) {
        uvcheck(uv_timer_init(loop, &t[i]));
        uvcheck(uv_timer_start(&t[i], on_fire, delay[i], 0));
    }
    uv_run(loop, UV_RUN_DEFAULT);
    report_timers_fire(s, fired);
}

/* ---- timers_cancel ---------------------------------------------------------- */
static void timers_cancel(void)
{
    uint32_t *delay = gen_delays(N_CANCEL, CANCEL_LO_MS, CANCEL_HI_MS);
    uint32_t *order = gen_perm(N_CANCEL);
    uv_timer_t *t = xcalloc(N_CANCEL, sizeof *t);
    uv_loop_t *loop = new_loop();
    struct span s = span_start();
    for (uint32_t i = 0; i < N_CANCEL; i++) {
        uvcheck(uv_timer_init(loop, &t[i]));
        uvcheck(uv_timer_start(&t[i], on_fire, delay[i], 0));
    }
    for (uint32_t i = 0; i < N_CANCEL; i++)
        uvcheck(uv_timer_stop(&t[order[i]]));
    report_timers_cancel(s);
}

/* ---- cross_thread_post / wakeup_latency ------------------------------------- */
static struct xpost xp;
static struct mq queue = MQ_INIT;
static uv_async_t async;

static void on_async(uv_async_t *a)
{
    for (struct rec *r = mq_take(&queue), *next; r; r = next) {
        next = r->next;
        if (xpost_deliver(&xp, r))
            uv_close((uv_handle_t *)a, NULL);
    }
}

static void post_record(struct rec *r)
{
    if (mq_push(&queue, r))
        uvcheck(uv_async_send(&async));
}

static void run_xpost(int latency)
{
    uv_loop_t *loop = new_loop();
    xpost_init(&xp, latency, post_record);
    uvcheck(uv_async_init(loop, &async, on_async));
    xpost_start(&xp);
    uv_run(loop, UV_RUN_DEFAULT);
    xpost_report(&xp);
    uvcheck(uv_loop_close(loop));
}

static void cross_thread_post(void) { run_xpost(0); }
static void wakeup_latency(void) { run_xpost(1); }

/* ---- fd_pingpong (uv_poll: raw readiness, like weft_watch_fd) ----------------- */
static int sv[2];
static uv_poll_t pw[2];
static uint64_t trips;

static void on_readable(uv_poll_t *p, int status, int events)
{
    (void)events;
    int fd = p == &pw[0] ? sv[0] : sv[1];
    char c;
    uvcheck(status);
    check(read(fd, &c, 1) == 1);
    if (p == &pw[0] && ++trips == N_PINGPONG) {
        uv_close((uv_handle_t *)&pw[0], NULL);
        uv_close((uv_handle_t *)&pw[1], NULL);
        return;
    }
    check(write(fd, &c, 1) == 1);
}

static void fd_pingpong(void)
{
    uv_loop_t *loop = new_loop();
    nonblocking_socketpair(sv);
    for (int i = 0; i < 2; i++) {
        uvcheck(uv_poll_init(loop, &pw[i], sv[i]));
        uvcheck(uv_poll_start(&pw[i], UV_READABLE, on_readable));
    }
    struct span s = span_start();
    check(write(sv[0], "x", 1) == 1);
    uv_run(loop, UV_RUN_DEFAULT);
    report_pingpong(s, trips);
    uvcheck(uv_loop_close(loop));
}

/* ---- memory: the application-owned uv_timer_t is counted --------------------- */
static void memory(void)
{
    uv_loop_t *loop = new_loop();
    long before = rss_bytes();
    uv_timer_t *t = xcalloc(N_MEMORY, sizeof *t);
    for (uint32_t i = 0; i < N_MEMORY; i++) {
        uvcheck(uv_timer_init(loop, &t[i]));
        uvcheck(uv_timer_start(&t[i], on_fire, MEMORY_DELAY_MS, 0));
    }
    report_memory(before, rss_bytes());
}

int main(int argc, char **argv)
{
    static const struct workload w[] = {
        { "timers_fire", timers_fire }, { "timers_cancel", timers_cancel },
        { "cross_thread_post", cross_thread_post }, { "fd_pingpong", fd_pingpong },
        { "wakeup_latency", wakeup_latency }, { "memory", memory }, { NULL, NULL },
    };
    return bench_main(argc, argv, "libuv", w);
}
