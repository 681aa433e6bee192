/* Shared helpers for the weft benchmark programs: workload sizes, clocks,
 * deterministic RNG, RSS, result reporting and (for the baselines) a
 * mutex-protected record queue.  Header-only; every program includes it once. */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
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
#define SEED_DELAYS  0x5eedf00dULL
#define SEED_SHUFFLE 0xc0ffee11ULL

static const char *bench_system = "?";

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

static void report_timers_cancel(struct span s)
{
    double cpu = span_cpu_s(s), wall = span_wall_s(s);
    result("timers_cancel", "ops_per_s=%.0f ns_per_timer=%.1f wall_s=%.4f cpu_s=%.4f",
           2.0 * N_CANCEL / wall, wall * 1e9 / N_CANCEL, wall, cpu);
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
    uint32_t seq;
    uint64_t t0;        /* post time (wakeup_latency) */
};

/* One cross-thread run.  The system-specific part supplies post(), called on
 * the producer thread, and calls xpost_deliver() on the loop thread for every
 * record; xpost_deliver() returns 1 after the last one. */
struct xpost {
    void (*post)(struct rec *);
    int latency;            /* 0: cross_thread_post, 1: wakeup_latency */
    uint32_t n;
    struct rec *recs;
    uint64_t *lat_ns;
    uint32_t got, out_of_order;
    _Atomic uint32_t done;  /* records delivered, visible to the producer */
    pthread_t thread;
    struct span span;
};

static void *xpost_producer(void *arg)
{
    struct xpost *x = arg;
    const struct timespec gap = { 0, LATENCY_GAP_NS };
    for (uint32_t i = 0; i < x->n; i++) {
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

static void xpost_init(struct xpost *x, int latency, void (*post)(struct rec *))
{
    memset(x, 0, sizeof *x);
    x->post = post;
    x->latency = latency;
    x->n = latency ? N_LATENCY : N_POST;
    x->recs = xcalloc(x->n, sizeof *x->recs);
    for (uint32_t i = 0; i < x->n; i++)
        x->recs[i].seq = i;
    if (latency)
        x->lat_ns = xcalloc(x->n, sizeof *x->lat_ns);
}

static void xpost_start(struct xpost *x)
{
    x->span = span_start();
    check(pthread_create(&x->thread, NULL, xpost_producer, x) == 0);
}

static int xpost_deliver(struct xpost *x, struct rec *r)
{
    if (x->latency)
        x->lat_ns[r->seq] = now_ns() - r->t0;
    if (r->seq != x->got)
        x->out_of_order++;
    x->got++;
    atomic_store_explicit(&x->done, x->got, memory_order_release);
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
    check(pthread_join(x->thread, NULL) == 0);
    if (x->got != x->n)
        die("%u of %u records delivered", x->got, x->n);
    if (x->out_of_order)
        fprintf(stderr, "%s: %u records delivered out of FIFO order\n",
                bench_system, x->out_of_order);
    if (!x->latency) {
        result("cross_thread_post", "recs_per_s=%.0f wall_s=%.4f out_of_order=%u",
               x->n / wall, wall, x->out_of_order);
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

/* ---- main: run one workload, named on the command line --------------------- */
struct workload { const char *name; void (*run)(void); };

static int bench_main(int argc, char **argv, const char *system, const struct workload *w)
{
    bench_system = system;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc != 2)
        die("usage: %s WORKLOAD", argv[0]);
    for (; w->name; w++)
        if (strcmp(w->name, argv[1]) == 0) {
            w->run();
            return 0;
        }
    die("unknown workload '%s'", argv[1]);
}

#endif
