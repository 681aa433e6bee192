/* weft implementation of the benchmark workloads (see ../README.md). */
#include "bench_common.h"
#include "bench_lateness.h"
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

#include "bench_monitor.h"

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
    uint32_t n = bench_n(N_CANCEL);
    uint32_t *delay = gen_delays(n, CANCEL_LO_MS, CANCEL_HI_MS);
    uint32_t *order = gen_perm(n);
    weft_id *ids = xcalloc(n, sizeof *ids);
    weft_loop *loop = new_loop();
    struct span s = span_start();
    for (uint32_t i = 0; i < n; i++)
        idcheck(ids[i] = weft_timer_after(loop, delay[i], on_fire, NULL, NULL));
    uint64_t scheduled = now_ns();
    for (uint32_t i = 0; i < n; i++)
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

static void run_xpost(int mode)
{
    xp_loop = new_loop();
    xpost_init(&xp, mode, post_record);
    idcheck(xp_keepalive = weft_timer_after(xp_loop, 3600000, on_fire, NULL, NULL));
    xpost_start(&xp);
    wcheck(weft_loop_run(xp_loop, WEFT_RUN_DEFAULT));
    xpost_report(&xp);
    weft_loop_free(xp_loop);
}

static void cross_thread_post(void) { run_xpost(XPOST_1); }
static void cross_thread_post_4(void) { run_xpost(XPOST_4); }
static void wakeup_latency(void) { run_xpost(XPOST_LATENCY); }

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
    uint32_t n_tasks = bench_n(N_ROUNDTRIP);
    int reps = reps_roundtrip(n_tasks);
    for (int i = 0; i < reps; i++) {
        batch_init(&b[i], n_tasks, 0);
        run_batch(loop, &b[i]);
    }
    report_pool_roundtrip(b, reps, other_threads());
    weft_pool_free(pool);
    weft_loop_free(loop);
}

/* spawn shapes (bench_common.h): tasks spawned outside a loop callback, on the
 * default CPU pool, with NULL options, as a host calls weft_spawn */
static weft_loop *sh_loop;
static weft_id sh_keep;        /* spawn_thread: keeps the loop running until the last done */

static void sh_done_fn(weft_loop *loop, weft_id id, int status, const uint8_t *result, size_t len,
                       void *b)
{
    (void)id; (void)result; (void)len;
    if (batch_done(b, status == 0) && sh_keep)
        wcheck(weft_cancel(loop, sh_keep));
}

static void sh_spawn_all(struct batch *b, enum shape shape)
{
    batch_begin(b);
    for (uint32_t i = 0; i < b->n; i++) {
        idcheck(weft_spawn(sh_loop, WEFT_ON_CPU, batch_work_fn, sh_done_fn, b, NULL, NULL));
        if (shape == SHAPE_NOWAIT && i % SHAPE_CHUNK == SHAPE_CHUNK - 1)
            wcheck(weft_loop_run(sh_loop, WEFT_RUN_NOWAIT));
    }
    batch_submitted(b);
}

static void *sh_producer(void *b)
{
    sh_spawn_all(b, SHAPE_THREAD);
    return NULL;
}

static void sh_keep_cb(weft_loop *loop, weft_id id, void *ud) { (void)loop; (void)id; (void)ud; }

static void sh_one(struct batch *b, enum shape shape)
{
    if (shape != SHAPE_THREAD) {
        sh_keep = 0;
        sh_spawn_all(b, shape);
        wcheck(weft_loop_run(sh_loop, WEFT_RUN_DEFAULT));
        return;
    }
    sh_keep = weft_timer_after(sh_loop, 3600 * 1000, sh_keep_cb, NULL, NULL);
    idcheck(sh_keep);
    pthread_t producer;
    check(pthread_create(&producer, NULL, sh_producer, b) == 0);
    wcheck(weft_loop_run(sh_loop, WEFT_RUN_DEFAULT));
    check(pthread_join(producer, NULL) == 0);
}

static void run_shape_weft(const char *workload, enum shape shape, uint32_t n)
{
    sh_loop = new_loop();
    run_shape(workload, shape, n, sh_one);
    weft_loop_free(sh_loop);
}

static void spawn_before(void) { run_shape_weft("spawn_before", SHAPE_BEFORE, N_SHAPE); }
static void spawn_before_2m(void) { run_shape_weft("spawn_before_2m", SHAPE_BEFORE, N_SHAPE_BIG); }
static void spawn_nowait(void) { run_shape_weft("spawn_nowait", SHAPE_NOWAIT, N_SHAPE); }
static void spawn_thread(void) { run_shape_weft("spawn_thread", SHAPE_THREAD, N_SHAPE); }

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

/* Queues the tasks (on the calling thread, or from a loop callback: variant
 * "callback"), measuring RSS around it, then lets the blocker go. */
struct tm_fill { weft_loop *loop; struct batch *b; uint64_t *queued; long before, after; };

static void tm_fill(struct tm_fill *f)
{
    f->before = rss_bytes();
    for (; *f->queued < N_QUEUED; (*f->queued)++)
        idcheck(weft_spawn(f->loop, WEFT_ON_CPU, batch_work_fn, batch_done_fn, f->b, NULL, &t_opts));
    f->after = rss_bytes();
    batch_begin(f->b);
    blocker_release();
}

static void tm_fill_cb(weft_loop *loop, weft_id id, void *f)
{
    (void)loop; (void)id;
    tm_fill(f);
}

static void task_memory(void)
{
    int cb = bench_variant && strcmp(bench_variant, "callback") == 0;
    if (bench_variant && !cb)
        die("task_memory: unknown variant '%s' (callback)", bench_variant);
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
    struct tm_fill f = { loop, &b, &queued, 0, 0 };
    if (cb) {
        bench_system = "weft-cb";
        idcheck(weft_post(loop, tm_fill_cb, &f, NULL));
    } else {
        tm_fill(&f);
    }
    wcheck(weft_loop_run(loop, WEFT_RUN_DEFAULT));
    report_task_memory(f.before, f.after, &b);
    weft_pool_free(pool);
    weft_loop_free(loop);
}

/* ---- process tasks: process_overhead, process_reuse ------------------------------ */
#include "bench_weft_process.h"

/* ---- timer_lateness (bench_lateness.h) ---------------------------------------- */
static void on_late(weft_loop *loop, weft_id id, void *ud)
{
    (void)loop; (void)id;
    late_fired((uint32_t)(uintptr_t)ud);
}

static void timer_lateness(void)
{
    late_init();
    weft_loop *loop = new_loop();
    for (uint32_t i = 0; i < late.n; i++) {
        late_arm(i);
        idcheck(weft_timer_after(loop, late.delay[i], on_late, (void *)(uintptr_t)i, NULL));
    }
    wcheck(weft_loop_run(loop, WEFT_RUN_DEFAULT));
    late_report();
    weft_loop_free(loop);
}

/* ---- topic_fanout (weft only): N subscribers of one topic, one emit -------------
 * N_FANOUT (or bench_size) subscriptions to one exact topic are made from the main
 * thread before the loop runs; one weft_emit; the loop runs until every subscriber was
 * called (the last one stops it); then every subscription is cancelled (in subscription
 * order). ns per subscribe, per delivery (emit to the last callback) and per cancel.
 * The peers have no topics: no baseline. */
static uint64_t fan_got;
static uint32_t fan_n;
static uint64_t fan_t_end;

static void on_fan(weft_loop *loop, weft_id sub, const char *topic, const void *payload,
                   size_t len, void *ud)
{
    (void)sub; (void)topic; (void)payload; (void)len; (void)ud;
    if (++fan_got == fan_n) {
        fan_t_end = now_ns();
        wcheck(weft_loop_stop(loop));
    }
}

static void topic_fanout(void)
{
    fan_n = bench_n(N_FANOUT);
    weft_id *ids = xcalloc(fan_n, sizeof *ids);
    weft_loop *loop = new_loop();
    watchdog("subscribers called", &fan_got, fan_n);
    uint64_t t0 = now_ns();
    for (uint32_t i = 0; i < fan_n; i++)
        idcheck(ids[i] = weft_subscribe(loop, "bench.fanout", on_fan, NULL, NULL));
    uint64_t t1 = now_ns();
    wcheck(weft_emit(loop, "bench.fanout", "x", 1));
    wcheck(weft_loop_run(loop, WEFT_RUN_DEFAULT));
    if (fan_got != fan_n)
        die("topic_fanout: %llu of %u subscribers called", (unsigned long long)fan_got, fan_n);
    uint64_t t2 = now_ns();
    for (uint32_t i = 0; i < fan_n; i++)
        wcheck(weft_cancel(loop, ids[i]));
    uint64_t t3 = now_ns();
    result("topic_fanout", "deliver_ns=%.1f subscribe_ns=%.1f deliveries_per_s=%.0f "
           "subscribers=%u cancel_ns=%.1f", (double)(fan_t_end - t1) / fan_n,
           (double)(t1 - t0) / fan_n, fan_n / ((fan_t_end - t1) / 1e9), fan_n,
           (double)(t3 - t2) / fan_n);
    weft_loop_free(loop);
    free(ids);
}

int main(int argc, char **argv)
{
    static const struct workload w[] = {
        { "timers_fire", timers_fire }, { "timers_cancel", timers_cancel },
        { "cross_thread_post", cross_thread_post },
        { "cross_thread_post_4", cross_thread_post_4 }, { "fd_pingpong", fd_pingpong },
        { "wakeup_latency", wakeup_latency }, { "memory", memory },
        { "pool_roundtrip", pool_roundtrip }, { "fork_join", fork_join },
        { "spawn_before", spawn_before }, { "spawn_before_2m", spawn_before_2m },
        { "spawn_nowait", spawn_nowait }, { "spawn_thread", spawn_thread },
        { "task_overhead", task_overhead }, { "task_memory", task_memory },
        { "process_overhead", process_overhead }, { "process_reuse", process_reuse },
        { "timer_lateness", timer_lateness }, { "topic_fanout", topic_fanout },
        { "monitor_overhead", monitor_overhead },
        { NULL, NULL },
    };
    bench_library = "libweft";   /* which libweft.so: a LIBRARY line for run.py */
    return bench_main(argc, argv, "weft", w);
}
