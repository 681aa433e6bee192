/* bench_tasks.h: the task-pool drivers every system shares: the calibrated busy loop,
 * batches, the spawn shapes, one task at a time, the blocked-pool memory probe,
 * fork_join's fresh child per pool size. Included by bench_common.h. */
#ifndef BENCH_TASKS_H
#define BENCH_TASKS_H

/* ---- the busy loop of fork_join: a dependent multiply-add chain ------------- */
static __attribute__((noinline)) uint64_t spin(uint64_t iters)
{
    uint64_t x = iters;
    for (uint64_t i = 0; i < iters; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        __asm__ volatile("" : "+r"(x));   /* keeps every iteration */
    }
    return x;
}

/* the fastest of `reps` timed calls of spin(iters), in ns */
static uint64_t spin_ns(uint64_t iters, int reps)
{
    uint64_t best = UINT64_MAX;
    for (int r = 0; r < reps; r++) {
        uint64_t t = now_ns();
        spin(iters);
        t = now_ns() - t;
        if (t < best)
            best = t;
    }
    return best;
}

/* Iterations for one FORKJOIN_TASK_NS task.  run.py calibrates once and passes
 * BENCH_SPIN_ITERS to every process, so all runs of all systems do the same work;
 * a program run by hand calibrates itself. */
static uint64_t spin_iters(void)
{
    const char *e = getenv("BENCH_SPIN_ITERS");
    if (e && *e)
        return strtoull(e, NULL, 10);
    const uint64_t probe = 1000000;
    spin_ns(probe, 3);                       /* warm up (clock frequency) */
    uint64_t iters = probe * FORKJOIN_TASK_NS / spin_ns(probe, 10);
    return iters ? iters : 1;
}

static void calibrate(void)
{
    uint64_t iters = spin_iters();
    result("calibrate", "spin_iters=%llu task_us=%.2f",
           (unsigned long long)iters, spin_ns(iters, 200) / 1e3);
}

/* ---- a batch: n tasks submitted at once from the loop thread ------------------
 * The system-specific part calls batch_begin() in the loop's first callback, submits
 * the n tasks (each task's work calls batch_work()), calls batch_submitted(), and
 * calls batch_done() on the loop thread for every completion. */
struct batch {
    uint32_t n;
    uint64_t spin;             /* busy-loop iterations per task (0: none) */
    /* On cache lines of their own: the workers' counter, and what the loop thread
     * writes for each completion (sharing a line, each completion would take the line
     * away from the workers, who read `spin` for every task). */
    _Alignas(64) _Atomic uint64_t ran;  /* incremented by every task's work */
    _Alignas(64) uint64_t done;        /* completions, counted on the loop thread */
    uint32_t bad_status;
    uint64_t t0, t_submitted, t_end, cpu0, cpu_end;
};

static maybe_unused void batch_init(struct batch *b, uint32_t n, uint64_t spin_iters)
{
    memset(b, 0, sizeof *b);
    b->n = n;
    b->spin = spin_iters;
}

static maybe_unused void batch_begin(struct batch *b)
{
    watchdog("tasks completed", &b->done, b->n);
    b->cpu0 = cpu_ns();
    b->t0 = now_ns();
}

static inline void batch_submitted(struct batch *b) { b->t_submitted = now_ns(); }

static inline void batch_work(struct batch *b)
{
    if (b->spin)
        spin(b->spin);
    atomic_fetch_add_explicit(&b->ran, 1, memory_order_relaxed);
}

/* on the loop thread; returns 1 after the last completion */
static inline int batch_done(struct batch *b, int ok)
{
    if (!ok)
        b->bad_status++;
    if (++b->done < b->n)
        return 0;
    b->t_end = now_ns();
    b->cpu_end = cpu_ns();
    return 1;
}

/* call after the loop returned */
static maybe_unused void batch_check(const struct batch *b, const char *what)
{
    if (b->done != b->n || atomic_load(&b->ran) != b->n || b->bad_status)
        die("%s: %llu of %u tasks completed, %llu ran, %u with an error status", what,
            (unsigned long long)b->done, b->n, (unsigned long long)atomic_load(&b->ran),
            b->bad_status);
}

static inline double batch_wall_s(const struct batch *b) { return (b->t_end - b->t0) / 1e9; }

static int cmp_batch_wall(const void *a, const void *b)
{
    double x = batch_wall_s(a), y = batch_wall_s(b);
    return (x > y) - (x < y);
}

/* b: `reps` batches of one process; the median one is reported.
 * threads: the pool threads that exist at the end (other_threads()). */
static maybe_unused void report_pool_roundtrip(struct batch *b, int reps, unsigned threads)
{
    for (int i = 0; i < reps; i++)
        batch_check(&b[i], "pool_roundtrip");
    qsort(b, reps, sizeof *b, cmp_batch_wall);
    const struct batch *m = &b[reps / 2];
    double wall = batch_wall_s(m);
    result("pool_roundtrip", "tasks_per_s=%.0f ns_per_task=%.1f submit_ns=%.1f wall_s=%.4f "
           "cpu_s=%.4f min_tasks_per_s=%.0f max_tasks_per_s=%.0f threads=%u", m->n / wall,
           wall * 1e9 / m->n, (double)(m->t_submitted - m->t0) / m->n, wall,
           (m->cpu_end - m->cpu0) / 1e9, b[reps - 1].n / batch_wall_s(&b[reps - 1]),
           b[0].n / batch_wall_s(&b[0]), threads);
}

/* ---- spawn shapes: the pool_roundtrip batch, submitted outside a loop callback ----
 * The shapes a C host or a binding uses (pool_roundtrip submits from the loop's first
 * callback). Each system runs the same shape; tasks go to its default pool (weft: the
 * default CPU pool, one thread per core; libuv: UV_THREADPOOL_SIZE = cores).
 *   spawn_before     N_SHAPE tasks submitted on the loop's thread before the loop runs,
 *                    then the loop runs until all have completed;
 *   spawn_before_2m  the same with N_SHAPE_BIG tasks;
 *   spawn_nowait     submitted in chunks of SHAPE_CHUNK, one non-blocking pass of the
 *                    loop after each chunk (an embedding host's or a binding's shape),
 *                    then the loop runs until all have completed;
 *   spawn_thread     submitted by another thread while the loop runs (libuv, whose
 *                    uv_queue_work is not thread-safe: the thread hands the requests
 *                    to the loop with uv_async_send, the way a libuv host must).
 * Tasks/s from the first submission to the last completion; median of REPS_ROUNDTRIP
 * batches after a warm-up batch of N_WARMUP in the same shape. */
#define N_SHAPE     200000u
#define N_SHAPE_BIG 2000000u
#define SHAPE_CHUNK 1000u

enum shape { SHAPE_BEFORE, SHAPE_NOWAIT, SHAPE_THREAD };

static maybe_unused const char *shape_workload;   /* the workload being run */

static maybe_unused void report_shape(struct batch *b)
{
    for (int i = 0; i < REPS_ROUNDTRIP; i++)
        batch_check(&b[i], shape_workload);
    qsort(b, REPS_ROUNDTRIP, sizeof *b, cmp_batch_wall);
    const struct batch *m = &b[REPS_ROUNDTRIP / 2];
    double wall = batch_wall_s(m);
    result(shape_workload, "tasks_per_s=%.0f ns_per_task=%.1f submit_ns=%.1f wall_s=%.4f cpu_s=%.4f "
           "min_tasks_per_s=%.0f max_tasks_per_s=%.0f tasks=%u", m->n / wall, wall * 1e9 / m->n,
           (double)(m->t_submitted - m->t0) / m->n, wall, (m->cpu_end - m->cpu0) / 1e9,
           b[REPS_ROUNDTRIP - 1].n / batch_wall_s(&b[REPS_ROUNDTRIP - 1]), b[0].n / batch_wall_s(&b[0]),
           m->n);
}

/* Runs `one(batch, shape)` for the warm-up and the measured batches of a shape. */
static maybe_unused void run_shape(const char *workload, enum shape shape, uint32_t n,
                                   void (*one)(struct batch *, enum shape))
{
    shape_workload = workload;
    static struct batch w, b[REPS_ROUNDTRIP];   /* static: the watchdog points into them */
    batch_init(&w, N_WARMUP, 0);
    one(&w, shape);
    batch_check(&w, "warm-up");
    for (int i = 0; i < REPS_ROUNDTRIP; i++) {
        batch_init(&b[i], n, 0);
        one(&b[i], shape);
    }
    report_shape(b);
}

/* ---- one task at a time: spawn, wait for its completion, repeat ---------------
 * seq_next() right before each submission, seq_done() in each completion; it
 * returns 1 after the last one. */
struct seq {
    uint32_t n;
    uint64_t i;                /* completions so far */
    uint64_t t0;
    uint64_t *lat_ns;
    uint32_t bad_status;
};

static maybe_unused void seq_init(struct seq *s, uint32_t n)
{
    memset(s, 0, sizeof *s);
    s->n = n;
    s->lat_ns = xcalloc(n, sizeof *s->lat_ns);
    watchdog("one-at-a-time tasks completed", &s->i, n);
}

static inline void seq_next(struct seq *s) { s->t0 = now_ns(); }

static inline int seq_done(struct seq *s, int ok)
{
    s->lat_ns[s->i++] = now_ns() - s->t0;
    if (!ok)
        s->bad_status++;
    return s->i == s->n;
}

/* seq: the one-at-a-time phase; b: the N_TASK_AMORT batch */
static maybe_unused void report_task_overhead(struct seq *s, const struct batch *b, unsigned threads)
{
    if (s->i != s->n || s->bad_status)
        die("task_overhead: %llu of %u tasks completed, %u with an error status",
            (unsigned long long)s->i, s->n, s->bad_status);
    batch_check(b, "task_overhead");
    qsort(s->lat_ns, s->n, sizeof *s->lat_ns, cmp_u64);
    result("task_overhead", "seq_median_ns=%llu seq_p99_ns=%llu amortised_ns=%.1f "
           "submit_ns=%.1f threads=%u", (unsigned long long)s->lat_ns[s->n / 2],
           (unsigned long long)s->lat_ns[(size_t)(s->n * 0.99)], batch_wall_s(b) * 1e9 / b->n,
           (double)(b->t_submitted - b->t0) / b->n, threads);
}

/* ---- task_memory: a 1-thread pool held by its first task ----------------------
 * The first task's work calls blocker_work(): it meets the main thread at the
 * barrier (so the pool thread is known to be busy), then waits at it again until
 * the main thread has queued the others and measured. */
static pthread_barrier_t qm_barrier;

static maybe_unused void blocker_init(void) { check(pthread_barrier_init(&qm_barrier, NULL, 2) == 0); }

static maybe_unused void blocker_work(void)
{
    pthread_barrier_wait(&qm_barrier);   /* running */
    pthread_barrier_wait(&qm_barrier);   /* released */
}

/* main thread: returns once the pool thread is inside blocker_work() */
static maybe_unused void blocker_wait_running(void) { pthread_barrier_wait(&qm_barrier); }
static maybe_unused void blocker_release(void) { pthread_barrier_wait(&qm_barrier); }

/* rss before/after queueing N_QUEUED tasks; b: the drain (all N_QUEUED + blocker) */
static maybe_unused void report_task_memory(long before, long after, const struct batch *b)
{
    batch_check(b, "task_memory");
    result("task_memory", "bytes_per_task=%.1f rss_delta_mb=%.1f peak_rss_mb=%.1f drain_s=%.4f",
           (double)(after - before) / N_QUEUED, (after - before) / 1048576.0,
           maxrss_bytes() / 1048576.0, batch_wall_s(b));
}

/* ---- fork_join: each pool size is measured in a fresh child process -----------
 * (libuv has one process-wide pool sized by UV_THREADPOOL_SIZE when first used, so
 * a size can only be chosen once per process; weft is measured the same way.)
 * The parent must not use the system under test before it forks: weft refuses
 * every call in a child forked after weft was first used. */
struct fj_out { double wall_s, cpu_s; };

static maybe_unused struct fj_out run_forked(void (*fn)(unsigned threads, struct fj_out *),
                                             unsigned threads)
{
    struct fj_out out = { 0, 0 };
    int fds[2];
    check(pipe(fds) == 0);
    fflush(NULL);
    pid_t pid = fork();
    check(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        fn(threads, &out);
        _exit(write(fds[1], &out, sizeof out) == sizeof out ? 0 : 1);
    }
    close(fds[1]);
    ssize_t got = read(fds[0], &out, sizeof out);
    close(fds[0]);
    int status;
    check(waitpid(pid, &status, 0) == pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || got != (ssize_t)sizeof out)
        die("fork_join: the %u-thread child failed (%s %d)", threads,
            WIFEXITED(status) ? "exit" : "signal",
            WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    return out;
}

/* in the child: the batch's figures */
static maybe_unused void fj_fill(const struct batch *b, struct fj_out *out)
{
    batch_check(b, "fork_join");
    out->wall_s = batch_wall_s(b);
    out->cpu_s = (b->cpu_end - b->cpu0) / 1e9;
}

static maybe_unused void fork_join_main(void (*child)(unsigned threads, struct fj_out *))
{
    unsigned n = bench_cores();
    uint64_t iters = spin_iters();
    char buf[32];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)iters);
    setenv("BENCH_SPIN_ITERS", buf, 1);      /* the children use the same work */
    double task_us = spin_ns(iters, 50) / 1e3;
    struct fj_out one = run_forked(child, 1), all = run_forked(child, n);
    result("fork_join", "speedup=%.3f wall_1_s=%.4f wall_n_s=%.4f cpu_1_s=%.4f cpu_n_s=%.4f "
           "task_us=%.2f ideal_1_s=%.4f threads=%u", one.wall_s / all.wall_s, one.wall_s,
           all.wall_s, one.cpu_s, all.cpu_s, task_us, task_us * N_FORKJOIN / 1e6, n);
}

#endif /* BENCH_TASKS_H */
