/* Shared helpers for the weft benchmark programs: workload sizes, clocks,
 * deterministic RNG, RSS, result reporting, fork-per-run and main; with
 * bench_records.h (cross-thread records and, for the baselines, a mutex-protected
 * record queue) and bench_tasks.h (the task-pool drivers: batches, the spawn shapes,
 * one-at-a-time latency, the blocked-pool memory probe, the calibrated busy loop).
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

#include "bench_records.h"
#include "bench_tasks.h"

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
