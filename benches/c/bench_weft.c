/* weft implementation of the benchmark workloads (see ../README.md). */
#include "bench_common.h"
#include <weft.h>

#define wcheck(expr) do { int rc_ = (expr); if (rc_ != WEFT_OK) weft_die(#expr, rc_); } while (0)
#define idcheck(id) do { if ((id) == 0) weft_die(#id " == 0", 0); } while (0)

static void weft_die(const char *what, int rc)
{
    char msg[256] = "";
    weft_last_error(msg, sizeof msg);
    die("%s: rc %d (%s), last_error: %s", what, rc, weft_strerror(rc), msg);
}

static weft_loop *new_loop(void)
{
    weft_loop *loop = weft_loop_new();
    if (!loop)
        weft_die("weft_loop_new", 0);
    return loop;
}

/* ---- timers_fire ------------------------------------------------------------ */
static uint64_t fired;

static void on_fire(weft_loop *loop, weft_id id, void *ud)
{
    (void)loop; (void)id; (void)ud;
    fired++;
}

static void timers_fire(void)
{
    uint32_t *delay = gen_delays(N_FIRE, 0, FIRE_MAX_MS);
    weft_loop *loop = new_loop();
    struct span s = span_start();
    for (uint32_t i = 0; i < N_FIRE; i++)
        idcheck(weft_timer_after(loop, delay[i], on_fire, NULL, NULL));
    wcheck(weft_loop_run(loop, WEFT_RUN_DEFAULT));
    report_timers_fire(s, fired);
    weft_loop_free(loop);
}

/* ---- timers_cancel ---------------------------------------------------------- */
static void timers_cancel(void)
{
    uint32_t *delay = gen_delays(N_CANCEL, CANCEL_LO_MS, CANCEL_HI_MS);
    uint32_t *order = gen_perm(N_CANCEL);
    weft_id *ids = xcalloc(N_CANCEL, sizeof *ids);
    weft_loop *loop = new_loop();
    struct span s = span_start();
    for (uint32_t i = 0; i < N_CANCEL; i++)
        idcheck(ids[i] = weft_timer_after(loop, delay[i], on_fire, NULL, NULL));
    for (uint32_t i = 0; i < N_CANCEL; i++)
        wcheck(weft_cancel(loop, ids[order[i]]));
    report_timers_cancel(s);
    check(weft_loop_timeout_ms(loop) == -1);   /* nothing left scheduled */
    weft_loop_free(loop);
}

/* ---- cross_thread_post / wakeup_latency ------------------------------------- */
static struct xpost xp;
static weft_loop *xp_loop;
static weft_id xp_keepalive;   /* keeps RUN_DEFAULT blocked between posts */

static void on_record(weft_loop *loop, weft_id id, void *rec)
{
    (void)id;
    if (xpost_deliver(&xp, rec))
        wcheck(weft_cancel(loop, xp_keepalive));
}

static void post_record(struct rec *r)
{
    idcheck(weft_post(xp_loop, on_record, r, NULL));
}

static void run_xpost(int latency)
{
    xp_loop = new_loop();
    xpost_init(&xp, latency, post_record);
    idcheck(xp_keepalive = weft_timer_after(xp_loop, 3600000, on_fire, NULL, NULL));
    xpost_start(&xp);
    wcheck(weft_loop_run(xp_loop, WEFT_RUN_DEFAULT));
    xpost_report(&xp);
    weft_loop_free(xp_loop);
}

static void cross_thread_post(void) { run_xpost(0); }
static void wakeup_latency(void) { run_xpost(1); }

/* ---- fd_pingpong -------------------------------------------------------------- */
static int sv[2];
static weft_id watch[2];
static uint64_t trips;

static void on_readable(weft_loop *loop, weft_id id, int fd, uint32_t events, void *ud)
{
    (void)id; (void)events; (void)ud;
    char c;
    if (read(fd, &c, 1) != 1)
        die("read: %s (events 0x%x)", strerror(errno), events);
    if (fd == sv[0] && ++trips == N_PINGPONG) {
        wcheck(weft_cancel(loop, watch[0]));
        wcheck(weft_cancel(loop, watch[1]));
        return;
    }
    check(write(fd, &c, 1) == 1);
}

static void fd_pingpong(void)
{
    weft_loop *loop = new_loop();
    nonblocking_socketpair(sv);
    for (int i = 0; i < 2; i++)
        idcheck(watch[i] = weft_watch_fd(loop, sv[i], WEFT_READABLE, on_readable, NULL, NULL));
    struct span s = span_start();
    check(write(sv[0], "x", 1) == 1);
    wcheck(weft_loop_run(loop, WEFT_RUN_DEFAULT));
    report_pingpong(s, trips);
    weft_loop_free(loop);
}

/* ---- memory -------------------------------------------------------------------- */
static void memory(void)
{
    weft_loop *loop = new_loop();
    long before = rss_bytes();
    for (uint32_t i = 0; i < N_MEMORY; i++)
        idcheck(weft_timer_after(loop, MEMORY_DELAY_MS, on_fire, NULL, NULL));
    report_memory(before, rss_bytes());
    weft_loop_free(loop);
}

int main(int argc, char **argv)
{
    static const struct workload w[] = {
        { "timers_fire", timers_fire }, { "timers_cancel", timers_cancel },
        { "cross_thread_post", cross_thread_post }, { "fd_pingpong", fd_pingpong },
        { "wakeup_latency", wakeup_latency }, { "memory", memory }, { NULL, NULL },
    };
    return bench_main(argc, argv, "weft", w);
}
