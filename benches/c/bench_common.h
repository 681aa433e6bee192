/* Shared helpers for the weft benchmark programs: workload sizes, clocks,
 * deterministic RNG, RSS, result reporting, (for the baselines) a
 * mutex-protected record queue, and the task-pool drivers (batches, one-at-a-time
 * latency, the blocked-pool memory probe, the calibrated busy loop, fork-per-run).
 * Header-only; every program includes it once. */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- workload parameters (identical for every system) ------------------ */
#define N_FIRE       1000000u   /* timers_fire: timers                      */
#define FIRE_MAX_MS  1000u      /*   delays uniform in [0, FIRE_MAX_MS]      */
#define N_CANCEL     1000000u   /* timers_cancel: timers                    */
#define CANCEL_LO_MS 10000u     /*   delays uniform in [LO, HI] ms           */
#define CANCEL_HI_MS 60000u
#define N_POST       1000000u   /* cross_thread_post: records               */
#define N_PINGPONG   200000u    /* fd_pingpong: round trips                 */
#define N_LATENCY    10000u     /* wakeup_latency: samples                  */
#define LATENCY_GAP_NS 100000L  /*   producer sleeps this long between them  */
#define N_MEMORY     1000000u   /* memory: pending timers                   */
#define MEMORY_DELAY_MS 3600000u /*  1 h                                     */
#define N_ROUNDTRIP  200000u    /* pool_roundtrip: tiny tasks per batch     */
#define REPS_ROUNDTRIP 3        /*   batches per process (median reported)  */
/* batches of a sized pool_roundtrip: 3, or 1 above 10^6 tasks */
#define reps_roundtrip(n) ((n) > 1000000u ? 1 : REPS_ROUNDTRIP)
#define N_FORKJOIN   100000u    /* fork_join: CPU tasks ...                 */
#define FORKJOIN_TASK_NS 10000u /*   ... of a busy loop calibrated to 10 us  */
#define N_TASK_SEQ   10000u     /* task_overhead: one-at-a-time samples     */
#define N_TASK_AMORT 200000u    /*   and tasks in flight at once            */
#define N_QUEUED     1000000u   /* task_memory: tasks queued on a blocked pool */
#define N_WARMUP     1000u      /* warm-up batch: starts the pool threads   */
#define N_PROC_SEQ   200u       /* process_overhead: samples per row ...    */
#define PROC_BUDGET_S 3.0       /*   ... or fewer, once a row took this long */
#define N_REUSE      200u       /* process_reuse: process tasks per batch ... */
#define REUSE_TASK_NS 2000000u  /*   ... of a busy loop of ~2 ms each        */
#define REPS_REUSE   5          /*   batches per row (median reported) ...   */
#define REPS_REUSE_BIG 3        /*   ... and with the big parent (forks: slow) */
#define N_LATE       10000u     /* timer_lateness: timers (bench_lateness.h) ... */
#define LATE_LO_MS   1u         /*   delays uniform in [LO, HI] ms           */
#define LATE_HI_MS   50u
#define N_FANOUT     100000u    /* topic_fanout (weft only): subscribers     */
#define SEED_DELAYS  0x5eedf00dULL
#define SEED_SHUFFLE 0xc0ffee11ULL

static const char *bench_system = "?";
static const char *bench_variant;   /* optional second argument, e.g. "io" */
/* Optional size argument (a number, after the workload or its variant): the work of a
 * workload that takes one (timers_cancel, pool_roundtrip, timer_lateness, topic_fanout),
 * for the report's cost-per-operation curves; 0: the workload's default. */
static uint32_t bench_size;
static inline uint32_t bench_n(uint32_t dflt) { return bench_size ? bench_size : dflt; }

/* for helpers that only some of the programs use */
#define maybe_unused __attribute__((unused))

#define die(...) do { fprintf(stderr, "%s: ", bench_system); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); exit(1); } while (0)
#define check(cond) do { if (!(cond)) die("%s:%d: check failed: %s (errno %d)", \
    __FILE__, __LINE__, #cond, errno); } while (0)

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    check(p != NULL);
    return p;
}

/* ---- watchdog: a stalled run reports its progress instead of hanging ----- */
#define WATCHDOG_S 20
static const volatile uint64_t *wd_count;
static uint64_t wd_total;
static const char *wd_what;

static void wd_fire(int sig)
{
    char msg[200];
    (void)sig;
    int n = snprintf(msg, sizeof msg, "%s: stalled: %llu of %llu %s after %d s\n",
                     bench_system, (unsigned long long)*wd_count,
                     (unsigned long long)wd_total, wd_what, WATCHDOG_S);
    if (write(2, msg, n) < 0) { /* nothing more to do */ }
    _exit(3);
}

static void watchdog(const char *what, const volatile uint64_t *count, uint64_t total)
{
    wd_what = what;
    wd_count = count;
    wd_total = total;
    signal(SIGALRM, wd_fire);
    alarm(WATCHDOG_S);
}

/* ---- clocks ------------------------------------------------------------- */
static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* user + system CPU time of the whole process (all threads) */
static inline uint64_t cpu_ns(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000u +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000u;
}

struct span { uint64_t wall0, cpu0; };
static inline struct span span_start(void) { return (struct span){ now_ns(), cpu_ns() }; }
static inline double span_wall_s(struct span s) { return (now_ns() - s.wall0) / 1e9; }
static inline double span_cpu_s(struct span s) { return (cpu_ns() - s.cpu0) / 1e9; }

/* ---- deterministic RNG (splitmix64) -------------------------------------- */
static inline uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint32_t rng_below(uint64_t *s, uint32_t n)   /* [0, n) */
{
    return (uint32_t)(((unsigned __int128)rng_next(s) * n) >> 64);
}

/* n delays uniform in [lo, hi] ms; the same sequence for every system */
static uint32_t *gen_delays(size_t n, uint32_t lo, uint32_t hi)
{
    uint64_t s = SEED_DELAYS;
    uint32_t *d = xcalloc(n, sizeof *d);
    for (size_t i = 0; i < n; i++)
        d[i] = lo + rng_below(&s, hi - lo + 1);
    return d;
}

/* a shuffled permutation of 0..n-1 (Fisher-Yates) */
static uint32_t *gen_perm(size_t n)
{
    uint64_t s = SEED_SHUFFLE;
    uint32_t *p = xcalloc(n, sizeof *p);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint32_t)i;
    for (size_t i = n - 1; i > 0; i--) {
        uint32_t j = rng_below(&s, (uint32_t)i + 1), t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
    return p;
}

/* ---- memory -------------------------------------------------------------- */
static long rss_bytes(void)
{
    long size, resident;
    FILE *f = fopen("/proc/self/statm", "r");
    check(f != NULL);
    check(fscanf(f, "%ld %ld", &size, &resident) == 2);
    fclose(f);
    return resident * sysconf(_SC_PAGESIZE);
}

/* MemAvailable of /proc/meminfo in bytes (-1 if unknown) */
static maybe_unused long mem_available_bytes(void)
{
    long kb = -1;
    char line[256];
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

/* `bytes` of anonymous memory with every page written, so it is resident: the parent's
 * RSS of process_overhead and process_reuse.  Small pages (MADV_NOHUGEPAGE), so the page
 * tables a fork copies do not depend on the machine's transparent huge page setting. */
static maybe_unused char *ballast_new(size_t bytes)
{
    if (bytes == 0)
        return NULL;
    char *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    check(p != MAP_FAILED);
    madvise(p, bytes, MADV_NOHUGEPAGE);   /* advisory: fine if it fails */
    long page = sysconf(_SC_PAGESIZE);
    for (size_t i = 0; i < bytes; i += (size_t)page)
        p[i] = (char)(i / (size_t)page) | 1;
    return p;
}

static long maxrss_bytes(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss * 1024L;
}

/* ---- fds ------------------------------------------------------------------ */
static void nonblocking_socketpair(int sv[2])
{
    check(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
}

/* ---- reporting: one "RESULT k=v ..." line per run, parsed by run.py ------- */
#define result(workload, fmt, ...) \
    printf("RESULT workload=%s system=%s " fmt "\n", workload, bench_system, __VA_ARGS__)

static void report_timers_fire(struct span s, uint64_t fired)
{
    double cpu = span_cpu_s(s), wall = span_wall_s(s);
    if (fired != N_FIRE)
        die("timers_fire: %llu of %u timers fired", (unsigned long long)fired, N_FIRE);
    result("timers_fire", "cpu_s=%.4f cpu_ns_per_timer=%.1f wall_s=%.4f",
           cpu, cpu * 1e9 / N_FIRE, wall);
}

/* scheduled_ns: now_ns() when every timer was scheduled, before the cancels */
static void report_timers_cancel(struct span s, uint64_t scheduled_ns)
{
    uint32_t n = bench_n(N_CANCEL);
    double cpu = span_cpu_s(s), wall = span_wall_s(s);
    double sched = (double)(scheduled_ns - s.wall0) / n;
    result("timers_cancel", "ops_per_s=%.0f ns_per_timer=%.1f schedule_ns=%.1f cancel_ns=%.1f "
           "wall_s=%.4f cpu_s=%.4f", 2.0 * n / wall, wall * 1e9 / n, sched,
           wall * 1e9 / n - sched, wall, cpu);
}

static void report_pingpong(struct span s, uint64_t trips)
{
    double wall = span_wall_s(s), cpu = span_cpu_s(s);
    if (trips != N_PINGPONG)
        die("fd_pingpong: %llu of %u round trips", (unsigned long long)trips, N_PINGPONG);
    result("fd_pingpong", "trips_per_s=%.0f us_per_trip=%.3f wall_s=%.4f cpu_s=%.4f",
           trips / wall, wall * 1e6 / trips, wall, cpu);
}

static void report_memory(long rss_before, long rss_after)
{
    result("memory", "bytes_per_timer=%.1f rss_delta_mb=%.1f peak_rss_mb=%.1f",
           (double)(rss_after - rss_before) / N_MEMORY,
           (rss_after - rss_before) / 1048576.0, maxrss_bytes() / 1048576.0);
}

/* ---- cross-thread records: shared producer and consumer logic ------------- */
struct rec {
    struct rec *next;   /* intrusive link, used by the baselines' queue */
    uint32_t seq;       /* rank among its producer's records */
    uint32_t producer;
    uint64_t t0;        /* post time (wakeup_latency) */
};

/* run_xpost's modes: cross_thread_post (one producer thread), wakeup_latency,
 * cross_thread_post_4 (four producer threads, N_POST records in all) */
enum { XPOST_1 = 0, XPOST_LATENCY = 1, XPOST_4 = 2 };
#define XPOST_MAX_PRODUCERS 4

/* One cross-thread run.  The system-specific part supplies post(), called on
 * the producer thread, and calls xpost_deliver() on the loop thread for every
 * record; xpost_deliver() returns 1 after the last one. */
struct xpost {
    void (*post)(struct rec *);
    int latency;            /* 0: cross_thread_post(_4), 1: wakeup_latency */
    uint32_t n;
    uint32_t producers;     /* each posts n / producers records, in order */
    uint32_t next[XPOST_MAX_PRODUCERS];  /* the rank each producer's next record must have */
    struct rec *recs;
    uint64_t *lat_ns;
    uint64_t got;
    uint32_t out_of_order;
    _Atomic uint32_t done;  /* records delivered, visible to the producer */
    pthread_t thread[XPOST_MAX_PRODUCERS];
    struct span span;
};

/* one producer thread: its share of the records, recs[first, first + n / producers) */
struct xpost_share {
    struct xpost *x;
    uint32_t first;
};
static struct xpost_share xpost_shares[XPOST_MAX_PRODUCERS];

static void *xpost_producer(void *arg)
{
    struct xpost_share *share = arg;
    struct xpost *x = share->x;
    const struct timespec gap = { 0, LATENCY_GAP_NS };
    uint32_t end = share->first + x->n / x->producers;
    for (uint32_t i = share->first; i < end; i++) {
        if (x->latency) {
            /* wait until the loop has handled the previous sample and gone
             * back to sleep, then post one record */
            while (atomic_load_explicit(&x->done, memory_order_acquire) < i)
                sched_yield();
            nanosleep(&gap, NULL);
            x->recs[i].t0 = now_ns();
        }
        x->post(&x->recs[i]);
    }
    return NULL;
}

static void xpost_init(struct xpost *x, int mode, void (*post)(struct rec *))
{
    memset(x, 0, sizeof *x);
    x->post = post;
    x->latency = mode == XPOST_LATENCY;
    x->producers = mode == XPOST_4 ? 4 : 1;
    x->n = x->latency ? N_LATENCY : N_POST;
    x->recs = xcalloc(x->n, sizeof *x->recs);
    uint32_t share = x->n / x->producers;
    for (uint32_t i = 0; i < x->n; i++) {
        x->recs[i].producer = i / share;
        x->recs[i].seq = i % share;
    }
    if (x->latency)
        x->lat_ns = xcalloc(x->n, sizeof *x->lat_ns);
}

static void xpost_start(struct xpost *x)
{
    watchdog("records delivered", &x->got, x->n);
    x->span = span_start();
    for (uint32_t k = 0; k < x->producers; k++) {
        xpost_shares[k] = (struct xpost_share){ x, k * (x->n / x->producers) };
        check(pthread_create(&x->thread[k], NULL, xpost_producer, &xpost_shares[k]) == 0);
    }
}

static int xpost_deliver(struct xpost *x, struct rec *r)
{
    if (x->latency)
        x->lat_ns[r->seq] = now_ns() - r->t0;
    /* FIFO per producer */
    if (r->seq != x->next[r->producer])
        x->out_of_order++;
    x->next[r->producer] = r->seq + 1;
    x->got++;
    atomic_store_explicit(&x->done, (uint32_t)x->got, memory_order_release);
    return x->got == x->n;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* call after the loop returned */
static void xpost_report(struct xpost *x)
{
    double wall = span_wall_s(x->span);
    for (uint32_t k = 0; k < x->producers; k++)
        check(pthread_join(x->thread[k], NULL) == 0);
    if (x->got != x->n)
        die("%llu of %u records delivered", (unsigned long long)x->got, x->n);
    if (x->out_of_order)
        fprintf(stderr, "%s: %u records delivered out of FIFO order\n",
                bench_system, x->out_of_order);
    if (!x->latency) {
        result(x->producers == 1 ? "cross_thread_post" : "cross_thread_post_4",
               "recs_per_s=%.0f wall_s=%.4f out_of_order=%u", x->n / wall, wall, x->out_of_order);
        return;
    }
    qsort(x->lat_ns, x->n, sizeof *x->lat_ns, cmp_u64);
    result("wakeup_latency", "median_us=%.2f p99_us=%.2f max_us=%.2f",
           x->lat_ns[x->n / 2] / 1e3, x->lat_ns[(size_t)(x->n * 0.99)] / 1e3,
           x->lat_ns[x->n - 1] / 1e3);
}

/* Baselines' transport: a mutex-protected intrusive FIFO.  push() reports
 * whether the queue was empty, so the producer wakes the loop only on the
 * empty -> non-empty transition; the loop takes the whole list at once. */
struct mq {
    pthread_mutex_t mu;
    struct rec *head, *tail;
};
#define MQ_INIT { PTHREAD_MUTEX_INITIALIZER, NULL, NULL }

static inline int mq_push(struct mq *q, struct rec *r)
{
    r->next = NULL;
    pthread_mutex_lock(&q->mu);
    int was_empty = q->head == NULL;
    if (was_empty)
        q->head = r;
    else
        q->tail->next = r;
    q->tail = r;
    pthread_mutex_unlock(&q->mu);
    return was_empty;
}

static inline struct rec *mq_take(struct mq *q)
{
    pthread_mutex_lock(&q->mu);
    struct rec *list = q->head;
    q->head = q->tail = NULL;
    pthread_mutex_unlock(&q->mu);
    return list;
}

/* ==== worker pools (pool_roundtrip, fork_join, task_overhead, task_memory) ==== */

/* The pool size N: the CPUs this process may run on (as run.py computes it). */
static maybe_unused unsigned bench_cores(void)
{
    cpu_set_t set;
    check(sched_getaffinity(0, sizeof set, &set) == 0);
    return (unsigned)CPU_COUNT(&set);
}

/* the threads of this process besides the main thread (pool threads, here) */
static maybe_unused unsigned other_threads(void)
{
    unsigned n = 0;
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    check(f != NULL);
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Threads: %u", &n) == 1)
            break;
    fclose(f);
    return n - 1;
}

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

/* ---- run fn(arg) in a fresh child process and wait for it ---------------------
 * (process_overhead: one child per parent size, so the 1 GB one leaves the others
 * alone.)  The child prints its own RESULT lines; it fails the parent unless it
 * exits with 0.  As with run_forked, the parent must not have used the system under
 * test before. */
static maybe_unused void run_in_child(void (*fn)(void *), void *arg, const char *what)
{
    fflush(NULL);
    pid_t pid = fork();
    check(pid >= 0);
    if (pid == 0) {
        fn(arg);
        fflush(NULL);
        _exit(0);
    }
    int status;
    check(waitpid(pid, &status, 0) == pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        die("%s: the child failed (%s %d)", what, WIFEXITED(status) ? "exit" : "signal",
            WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
}

/* ---- the library under test: one "LIBRARY system=S path=P" line -------------
 * bench_library (e.g. "libweft"): the file of that name /proc/self/maps shows, i.e.
 * the one the dynamic loader really chose (run.py checks that each weft build loads
 * its own library). */
static const char *bench_library;

static void print_library(const char *name)
{
    FILE *f = fopen("/proc/self/maps", "r");
    check(f != NULL);
    size_t n = strlen(name);
    char line[4096];
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        char *path = strchr(line, '/');   /* the address fields have none */
        if (!path)
            continue;
        path[strcspn(path, "\n")] = '\0';
        const char *base = strrchr(path, '/') + 1;
        if (strncmp(base, name, n) == 0 && base[n] == '.') {
            printf("LIBRARY system=%s path=%s\n", bench_system, path);
            found = 1;
        }
    }
    fclose(f);
    if (!found)
        die("%s is not in /proc/self/maps", name);
}

/* ---- main: run one workload, named on the command line --------------------- */
struct workload { const char *name; void (*run)(void); };

static int bench_main(int argc, char **argv, const char *system, const struct workload *w)
{
    bench_system = system;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2 || argc > 4)
        die("usage: %s WORKLOAD [VARIANT] [SIZE] (or: calibrate)", argv[0]);
    for (int i = 2; i < argc; i++) {
        char *end;
        double size = strtod(argv[i], &end);   /* 100000 or 1e5 */
        if (*end == '\0' && end != argv[i] && size >= 1 && size <= 4e9)
            bench_size = (uint32_t)size;
        else if (!bench_variant)
            bench_variant = argv[i];
        else
            die("usage: %s WORKLOAD [VARIANT] [SIZE]: '%s'", argv[0], argv[i]);
    }
    if (bench_library)
        print_library(bench_library);
    if (strcmp(argv[1], "calibrate") == 0) {
        calibrate();
        return 0;
    }
    for (; w->name; w++)
        if (strcmp(w->name, argv[1]) == 0) {
            w->run();
            return 0;
        }
    die("unknown workload '%s'", argv[1]);
}

#endif
