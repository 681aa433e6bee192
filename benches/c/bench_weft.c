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
    watchdog("timers fired", &fired, N_FIRE);
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
    uint64_t scheduled = now_ns();
    for (uint32_t i = 0; i < N_CANCEL; i++)
        wcheck(weft_cancel(loop, ids[order[i]]));
    report_timers_cancel(s, scheduled);
    /* nothing is registered any more: RUN_DEFAULT must return at once */
    struct span r = span_start();
    wcheck(weft_loop_run(loop, WEFT_RUN_DEFAULT));
    if (span_wall_s(r) > 0.1)
        fprintf(stderr, "weft: RUN_DEFAULT took %.3f s to return with nothing registered\n",
                span_wall_s(r));
    if (weft_loop_timeout_ms(loop) != -1)
        fprintf(stderr, "weft: weft_loop_timeout_ms is %lld with nothing scheduled\n",
                (long long)weft_loop_timeout_ms(loop));
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
    watchdog("round trips", &trips, N_PINGPONG);
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

/* ---- worker pools ------------------------------------------------------------- */
static weft_pool *new_pool(weft_pool_kind kind, unsigned threads)
{
    weft_pool_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.kind = kind;
    o.threads = threads;
    o.name = "bench-pool";
    weft_pool *pool = weft_pool_new(&o);
    if (!pool)
        weft_die("weft_pool_new", 0);
    return pool;
}

/* where tasks run: WEFT_ON_CPU or WEFT_ON_IO, on `pool` (NULL: the default pool) */
static weft_where t_where;
static weft_spawn_options t_opts;

static void use_pool(weft_where where, weft_pool *pool)
{
    t_where = where;
    memset(&t_opts, 0, sizeof t_opts);
    t_opts.size = sizeof t_opts;
    t_opts.pool = pool;
}

static int batch_work_fn(weft_task *task, void *b)
{
    (void)task;
    batch_work(b);
    return 0;
}

static void batch_done_fn(weft_loop *loop, weft_id id, int status, const uint8_t *result,
                          size_t len, void *b)
{
    (void)loop; (void)id; (void)result; (void)len;
    batch_done(b, status == 0);
}

/* the loop's first callback: submit the whole batch */
static void batch_submit(weft_loop *loop, weft_id id, void *ud)
{
    (void)id;
    struct batch *b = ud;
    batch_begin(b);
    for (uint32_t i = 0; i < b->n; i++)
        idcheck(weft_spawn(loop, t_where, batch_work_fn, batch_done_fn, b, NULL, &t_opts));
    batch_submitted(b);
}

/* runs the batch; the loop returns once every task has completed */
static void run_batch(weft_loop *loop, struct batch *b)
{
    idcheck(weft_post(loop, batch_submit, b, NULL));
    wcheck(weft_loop_run(loop, WEFT_RUN_DEFAULT));
}

static void warm_up(weft_loop *loop)
{
    static struct batch w;   /* static: the watchdog keeps a pointer into it */
    batch_init(&w, N_WARMUP, 0);
    run_batch(loop, &w);
    batch_check(&w, "warm-up");
}

/* pool_roundtrip: a CPU pool of N threads; variant "io": the default IO pool */
static void pool_roundtrip(void)
{
    unsigned n = bench_cores();
    int io = bench_variant && strcmp(bench_variant, "io") == 0;
    if (bench_variant && !io)
        die("pool_roundtrip: unknown variant '%s' (io)", bench_variant);
    weft_loop *loop = new_loop();
    weft_pool *pool = io ? NULL : new_pool(WEFT_POOL_CPU, n);
    if (io)
        bench_system = "weft-io";
    use_pool(io ? WEFT_ON_IO : WEFT_ON_CPU, pool);
    warm_up(loop);
    static struct batch b[REPS_ROUNDTRIP];
    for (int i = 0; i < REPS_ROUNDTRIP; i++) {
        batch_init(&b[i], N_ROUNDTRIP, 0);
        run_batch(loop, &b[i]);
    }
    report_pool_roundtrip(b, other_threads());
    weft_pool_free(pool);
    weft_loop_free(loop);
}

/* fork_join: one child process per pool size */
static void fork_join_child(unsigned threads, struct fj_out *out)
{
    weft_loop *loop = new_loop();
    weft_pool *pool = new_pool(WEFT_POOL_CPU, threads);
    use_pool(WEFT_ON_CPU, pool);
    warm_up(loop);
    static struct batch b;
    batch_init(&b, N_FORKJOIN, spin_iters());
    run_batch(loop, &b);
    fj_fill(&b, out);
    weft_pool_free(pool);
    weft_loop_free(loop);
}

static void fork_join(void) { fork_join_main(fork_join_child); }

/* task_overhead: one task at a time (each spawned by the previous one's done),
 * then N_TASK_AMORT in flight */
static struct seq sq;

static void seq_done_fn(weft_loop *loop, weft_id id, int status, const uint8_t *result,
                        size_t len, void *ud);

static int nop_work_fn(weft_task *task, void *ud)
{
    (void)task; (void)ud;
    return 0;
}

static void seq_spawn(weft_loop *loop)
{
    seq_next(&sq);
    idcheck(weft_spawn(loop, t_where, nop_work_fn, seq_done_fn, NULL, NULL, &t_opts));
}

static void seq_done_fn(weft_loop *loop, weft_id id, int status, const uint8_t *result,
                        size_t len, void *ud)
{
    (void)id; (void)result; (void)len; (void)ud;
    if (!seq_done(&sq, status == 0))
        seq_spawn(loop);
}

static void seq_first(weft_loop *loop, weft_id id, void *ud)
{
    (void)id; (void)ud;
    seq_spawn(loop);
}

static void task_overhead(void)
{
    unsigned n = bench_cores();
    weft_loop *loop = new_loop();
    weft_pool *pool = new_pool(WEFT_POOL_CPU, n);
    use_pool(WEFT_ON_CPU, pool);
    warm_up(loop);
    seq_init(&sq, N_TASK_SEQ);
    idcheck(weft_post(loop, seq_first, NULL, NULL));
    wcheck(weft_loop_run(loop, WEFT_RUN_DEFAULT));
    static struct batch b;
    batch_init(&b, N_TASK_AMORT, 0);
    run_batch(loop, &b);
    report_task_overhead(&sq, &b, other_threads());
    weft_pool_free(pool);
    weft_loop_free(loop);
}

/* task_memory: N_QUEUED tasks queued behind a task that holds the only thread */
static int blocker_work_fn(weft_task *task, void *b)
{
    (void)task;
    blocker_work();
    atomic_fetch_add_explicit(&((struct batch *)b)->ran, 1, memory_order_relaxed);
    return 0;
}

static void task_memory(void)
{
    weft_loop *loop = new_loop();
    weft_pool *pool = new_pool(WEFT_POOL_CPU, 1);
    use_pool(WEFT_ON_CPU, pool);
    static struct batch b;
    batch_init(&b, N_QUEUED + 1, 0);
    static uint64_t queued;
    watchdog("tasks queued", &queued, N_QUEUED);
    blocker_init();
    idcheck(weft_spawn(loop, WEFT_ON_CPU, blocker_work_fn, batch_done_fn, &b, NULL, &t_opts));
    blocker_wait_running();
    long before = rss_bytes();
    for (; queued < N_QUEUED; queued++)
        idcheck(weft_spawn(loop, WEFT_ON_CPU, batch_work_fn, batch_done_fn, &b, NULL, &t_opts));
    long after = rss_bytes();
    batch_begin(&b);
    blocker_release();
    wcheck(weft_loop_run(loop, WEFT_RUN_DEFAULT));
    report_task_memory(before, after, &b);
    weft_pool_free(pool);
    weft_loop_free(loop);
}

int main(int argc, char **argv)
{
    static const struct workload w[] = {
        { "timers_fire", timers_fire }, { "timers_cancel", timers_cancel },
        { "cross_thread_post", cross_thread_post }, { "fd_pingpong", fd_pingpong },
        { "wakeup_latency", wakeup_latency }, { "memory", memory },
        { "pool_roundtrip", pool_roundtrip }, { "fork_join", fork_join },
        { "task_overhead", task_overhead }, { "task_memory", task_memory }, { NULL, NULL },
    };
    return bench_main(argc, argv, "weft", w);
}
