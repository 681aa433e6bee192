/* libuv implementation of the benchmark workloads (see ../README.md). */
#include "bench_common.h"
#include "bench_lateness.h"
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
    watchdog("timers fired", &fired, N_FIRE);
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
    uint32_t n = bench_n(N_CANCEL);
    uint32_t *delay = gen_delays(n, CANCEL_LO_MS, CANCEL_HI_MS);
    uint32_t *order = gen_perm(n);
    uv_timer_t *t = xcalloc(n, sizeof *t);
    uv_loop_t *loop = new_loop();
    struct span s = span_start();
    for (uint32_t i = 0; i < n; i++) {
        uvcheck(uv_timer_init(loop, &t[i]));
        uvcheck(uv_timer_start(&t[i], on_fire, delay[i], 0));
    }
    uint64_t scheduled = now_ns();
    for (uint32_t i = 0; i < n; i++)
        uvcheck(uv_timer_stop(&t[order[i]]));
    report_timers_cancel(s, scheduled);
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

static void run_xpost(int mode)
{
    uv_loop_t *loop = new_loop();
    xpost_init(&xp, mode, post_record);
    uvcheck(uv_async_init(loop, &async, on_async));
    xpost_start(&xp);
    uv_run(loop, UV_RUN_DEFAULT);
    xpost_report(&xp);
    uvcheck(uv_loop_close(loop));
}

static void cross_thread_post(void) { run_xpost(XPOST_1); }
static void cross_thread_post_4(void) { run_xpost(XPOST_4); }
static void wakeup_latency(void) { run_xpost(XPOST_LATENCY); }

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
    watchdog("round trips", &trips, N_PINGPONG);
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

/* ---- worker pools: uv_queue_work on libuv's one process-wide pool --------------
 * Its size is UV_THREADPOOL_SIZE, read when the pool is first used; run.py sets it
 * (N = the number of cores); a program run by hand sets N itself. */
static unsigned pool_threads(unsigned want)
{
    const char *e = getenv("UV_THREADPOOL_SIZE");
    if (!e || !*e) {
        char buf[16];
        snprintf(buf, sizeof buf, "%u", want);
        check(setenv("UV_THREADPOOL_SIZE", buf, 1) == 0);
        return want;
    }
    if ((unsigned)atoi(e) != want)
        fprintf(stderr, "libuv: UV_THREADPOOL_SIZE is %s, not %u\n", e, want);
    return (unsigned)atoi(e);
}

static void batch_work_cb(uv_work_t *req) { batch_work(req->data); }

static void batch_after_cb(uv_work_t *req, int status) { batch_done(req->data, status == 0); }

/* the uv_work_t of a batch are allocated before it, outside the measured region */
struct uv_batch { struct batch *b; uv_work_t *reqs; uv_timer_t first; };

/* the loop's first callback: submit the whole batch */
static void batch_submit(uv_timer_t *t)
{
    struct uv_batch *ub = t->data;
    struct batch *b = ub->b;
    batch_begin(b);
    for (uint32_t i = 0; i < b->n; i++) {
        ub->reqs[i].data = b;
        uvcheck(uv_queue_work(t->loop, &ub->reqs[i], batch_work_cb, batch_after_cb));
    }
    batch_submitted(b);
    uv_close((uv_handle_t *)t, NULL);
}

/* runs the batch; the loop returns once every task has completed */
static void run_batch(uv_loop_t *loop, struct batch *b)
{
    struct uv_batch ub = { b, xcalloc(b->n, sizeof(uv_work_t)), { 0 } };
    ub.first.data = &ub;
    uvcheck(uv_timer_init(loop, &ub.first));
    uvcheck(uv_timer_start(&ub.first, batch_submit, 0, 0));
    uv_run(loop, UV_RUN_DEFAULT);
    free(ub.reqs);
}

static void warm_up(uv_loop_t *loop)
{
    static struct batch w;   /* static: the watchdog keeps a pointer into it */
    batch_init(&w, N_WARMUP, 0);
    run_batch(loop, &w);
    batch_check(&w, "warm-up");
}

static void pool_roundtrip(void)
{
    pool_threads(bench_cores());
    uv_loop_t *loop = new_loop();
    warm_up(loop);
    static struct batch b[REPS_ROUNDTRIP];
    uint32_t n_tasks = bench_n(N_ROUNDTRIP);
    int reps = reps_roundtrip(n_tasks);
    for (int i = 0; i < reps; i++) {
        batch_init(&b[i], n_tasks, 0);
        run_batch(loop, &b[i]);
    }
    report_pool_roundtrip(b, reps, other_threads());
    uvcheck(uv_loop_close(loop));
}

/* spawn shapes (bench_common.h): requests queued outside a loop callback */
static uv_loop_t *sh_loop;
static uv_work_t *sh_reqs;
static struct batch *sh_batch;
static uv_async_t sh_async;          /* spawn_thread: the producer's hand-over */
static _Atomic uint32_t sh_made;     /* spawn_thread: requests filled by the producer */
static uint32_t sh_queued;           /* spawn_thread: requests queued by the loop */

static void sh_after_cb(uv_work_t *req, int status)
{
    if (batch_done(req->data, status == 0) && sh_async.loop)
        uv_close((uv_handle_t *)&sh_async, NULL);
}

/* spawn_thread: the loop queues what the producer made (a lock-free hand-over, so the
 * baseline pays no more than uv_queue_work and an async wake-up for a batch) */
static void sh_on_async(uv_async_t *a)
{
    uint32_t made = atomic_load_explicit(&sh_made, memory_order_acquire);
    for (; sh_queued < made; sh_queued++)
        uvcheck(uv_queue_work(a->loop, &sh_reqs[sh_queued], batch_work_cb, sh_after_cb));
}

static void *sh_producer(void *arg)
{
    struct batch *b = arg;
    batch_begin(b);
    for (uint32_t i = 0; i < b->n; i++) {
        sh_reqs[i].data = b;
        atomic_store_explicit(&sh_made, i + 1, memory_order_release);
        uvcheck(uv_async_send(&sh_async));
    }
    batch_submitted(b);
    return NULL;
}

static void sh_one(struct batch *b, enum shape shape)
{
    sh_batch = b;
    sh_reqs = xcalloc(b->n, sizeof(uv_work_t));   /* outside the measured region */
    if (shape != SHAPE_THREAD) {
        memset(&sh_async, 0, sizeof sh_async);
        batch_begin(b);
        for (uint32_t i = 0; i < b->n; i++) {
            sh_reqs[i].data = b;
            uvcheck(uv_queue_work(sh_loop, &sh_reqs[i], batch_work_cb, sh_after_cb));
            if (shape == SHAPE_NOWAIT && i % SHAPE_CHUNK == SHAPE_CHUNK - 1)
                uv_run(sh_loop, UV_RUN_NOWAIT);
        }
        batch_submitted(b);
        uv_run(sh_loop, UV_RUN_DEFAULT);
    } else {
        atomic_store(&sh_made, 0);
        sh_queued = 0;
        uvcheck(uv_async_init(sh_loop, &sh_async, sh_on_async));
        pthread_t producer;
        check(pthread_create(&producer, NULL, sh_producer, b) == 0);
        uv_run(sh_loop, UV_RUN_DEFAULT);
        check(pthread_join(producer, NULL) == 0);
        memset(&sh_async, 0, sizeof sh_async);
    }
    free(sh_reqs);
}

static void run_shape_uv(const char *workload, enum shape shape, uint32_t n)
{
    pool_threads(bench_cores());
    sh_loop = new_loop();
    run_shape(workload, shape, n, sh_one);
    uvcheck(uv_loop_close(sh_loop));
}

static void spawn_before(void) { run_shape_uv("spawn_before", SHAPE_BEFORE, N_SHAPE); }
static void spawn_before_2m(void) { run_shape_uv("spawn_before_2m", SHAPE_BEFORE, N_SHAPE_BIG); }
static void spawn_nowait(void) { run_shape_uv("spawn_nowait", SHAPE_NOWAIT, N_SHAPE); }
static void spawn_thread(void) { run_shape_uv("spawn_thread", SHAPE_THREAD, N_SHAPE); }

/* fork_join: one child process per pool size */
static void fork_join_child(unsigned threads, struct fj_out *out)
{
    char buf[16];
    snprintf(buf, sizeof buf, "%u", threads);
    check(setenv("UV_THREADPOOL_SIZE", buf, 1) == 0);
    uv_loop_t *loop = new_loop();
    warm_up(loop);
    static struct batch b;
    batch_init(&b, N_FORKJOIN, spin_iters());
    run_batch(loop, &b);
    fj_fill(&b, out);
    uvcheck(uv_loop_close(loop));
}

static void fork_join(void) { fork_join_main(fork_join_child); }

/* task_overhead: one task at a time (each queued by the previous one's
 * after_work_cb), then N_TASK_AMORT in flight */
static struct seq sq;
static uv_work_t seq_req;

static void nop_work_cb(uv_work_t *req) { (void)req; }

static void seq_after_cb(uv_work_t *req, int status);

static void seq_queue(uv_loop_t *loop)
{
    seq_next(&sq);
    uvcheck(uv_queue_work(loop, &seq_req, nop_work_cb, seq_after_cb));
}

static void seq_after_cb(uv_work_t *req, int status)
{
    if (!seq_done(&sq, status == 0))
        seq_queue(req->loop);
}

static void seq_first(uv_timer_t *t)
{
    seq_queue(t->loop);
    uv_close((uv_handle_t *)t, NULL);
}

static void task_overhead(void)
{
    pool_threads(bench_cores());
    uv_loop_t *loop = new_loop();
    warm_up(loop);
    seq_init(&sq, N_TASK_SEQ);
    uv_timer_t first;
    uvcheck(uv_timer_init(loop, &first));
    uvcheck(uv_timer_start(&first, seq_first, 0, 0));
    uv_run(loop, UV_RUN_DEFAULT);
    static struct batch b;
    batch_init(&b, N_TASK_AMORT, 0);
    run_batch(loop, &b);
    report_task_overhead(&sq, &b, other_threads());
    uvcheck(uv_loop_close(loop));
}

/* task_memory: N_QUEUED uv_work_t queued behind one that holds the only thread
 * (UV_THREADPOOL_SIZE=1); the uv_work_t array is allocated inside the measured
 * region, as weft allocates its equivalent internally */
static void blocker_work_cb(uv_work_t *req)
{
    blocker_work();
    atomic_fetch_add_explicit(&((struct batch *)req->data)->ran, 1, memory_order_relaxed);
}

static void task_memory(void)
{
    pool_threads(1);
    uv_loop_t *loop = new_loop();
    static struct batch b;
    static uv_work_t blocker;
    static uint64_t queued;
    batch_init(&b, N_QUEUED + 1, 0);
    watchdog("tasks queued", &queued, N_QUEUED);
    blocker_init();
    blocker.data = &b;
    uvcheck(uv_queue_work(loop, &blocker, blocker_work_cb, batch_after_cb));
    blocker_wait_running();
    long before = rss_bytes();
    uv_work_t *reqs = xcalloc(N_QUEUED, sizeof *reqs);
    for (; queued < N_QUEUED; queued++) {
        reqs[queued].data = &b;
        uvcheck(uv_queue_work(loop, &reqs[queued], batch_work_cb, batch_after_cb));
    }
    long after = rss_bytes();
    batch_begin(&b);
    blocker_release();
    uv_run(loop, UV_RUN_DEFAULT);
    report_task_memory(before, after, &b);
    uvcheck(uv_loop_close(loop));
}

/* ---- timer_lateness (bench_lateness.h) ---------------------------------------- */
static void on_late(uv_timer_t *t)
{
    late_fired((uint32_t)(uintptr_t)t->data);
}

static void timer_lateness(void)
{
    late_init();
    uv_timer_t *t = xcalloc(late.n, sizeof *t);
    uv_loop_t *loop = new_loop();
    for (uint32_t i = 0; i < late.n; i++) {
        uvcheck(uv_timer_init(loop, &t[i]));
        t[i].data = (void *)(uintptr_t)i;
        uv_update_time(loop);
        late_arm(i);
        uvcheck(uv_timer_start(&t[i], on_late, late.delay[i], 0));
    }
    uv_run(loop, UV_RUN_DEFAULT);
    late_report();
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
        { "timer_lateness", timer_lateness }, { NULL, NULL },
    };
    return bench_main(argc, argv, "libuv", w);
}
