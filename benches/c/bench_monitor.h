/* monitor_overhead (weft only): what watching a loop costs it. The same two loads run
 * with nothing watching, with a thread reading weft_loop_get_stats every millisecond
 * (the first read, before the run, turns on busy/idle time and timer lateness, which
 * cost clock reads), and with the watchdog on (threshold 100 ms, never reached):
 *   post_ns:  1M posts, each callback posting the next (the loop thread alone);
 *   timer_ns: 200k one-shot timers of 0..100 ms, scheduled then run until all fired:
 *             the loop thread's CPU time (not wall: the delays) per timer.
 * Each mode also has a thread that wakes every ms (see mon_reader). The modes
 * alternate in one process, 3 rounds, and each row reports its median. Rows:
 * weft (off), weft-stats, weft-watchdog. Included by bench_weft.c (needs wcheck,
 * idcheck, new_loop). */
#ifndef BENCH_MONITOR_H
#define BENCH_MONITOR_H

#include <pthread.h>
#include <stdatomic.h>

#define N_MON_POSTS  1000000u
#define N_MON_TIMERS 200000u
#define MON_ROUNDS   3

struct mon_chain { uint32_t left; };

static uint64_t mon_thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void mon_next(weft_loop *loop, weft_id id, void *ud)
{
    (void)id;
    struct mon_chain *c = ud;
    if (--c->left)
        idcheck(weft_post(loop, mon_next, c, NULL));
}

static uint64_t mon_fired;
static void mon_fire(weft_loop *loop, weft_id id, void *ud)
{
    (void)loop; (void)id; (void)ud;
    mon_fired++;
}

/* Every mode has this thread, waking every ms; only weft-stats's reads the stats. (A
 * process with one thread gets glibc's single-thread fast paths, which a program with
 * any other thread, a pool's for one, does not: the rows must differ in the reads
 * alone.) */
struct mon_reader { weft_loop *loop; atomic_int stop; int read; uint64_t reads; };

static void *mon_read(void *arg)
{
    struct mon_reader *r = arg;
    while (!atomic_load(&r->stop)) {
        if (r->read) {
            weft_loop_stats s = { .size = sizeof s };
            wcheck(weft_loop_get_stats(r->loop, &s));
            r->reads++;
        }
        struct timespec ms = { 0, 1000000 };
        nanosleep(&ms, NULL);
    }
    return NULL;
}

/* Reports of a callback over 100 ms: none on a quiet machine (a loaded one may
 * deschedule the loop thread that long); counted, printed in the RESULT line. */
static atomic_int mon_reports;
static void mon_report(weft_loop *loop, const weft_watchdog_report *r, void *ud)
{
    (void)loop; (void)r; (void)ud;
    atomic_fetch_add(&mon_reports, 1);
}

/* One measurement in `mode` (0 off, 1 stats, 2 watchdog): ns per post, ns per timer. */
static void mon_measure(int mode, const uint32_t *delay, uint32_t n_timers, double out[2])
{
    weft_loop *loop = new_loop();
    struct mon_reader reader = { .loop = loop, .read = mode == 1 };
    pthread_t thread;
    check(pthread_create(&thread, NULL, mon_read, &reader) == 0);
    if (mode == 1) {
        weft_loop_stats s = { .size = sizeof s };
        wcheck(weft_loop_get_stats(loop, &s));
    } else if (mode == 2) {
        wcheck(weft_loop_set_watchdog(loop, 100, mon_report, NULL, NULL));
    }
    uint32_t n_posts = bench_n(N_MON_POSTS);
    struct mon_chain chain = { n_posts };
    idcheck(weft_post(loop, mon_next, &chain, NULL));
    uint64_t t0 = now_ns();
    wcheck(weft_loop_run(loop, WEFT_RUN_DEFAULT));
    out[0] = (double)(now_ns() - t0) / n_posts;
    mon_fired = 0;
    uint64_t t1 = mon_thread_cpu_ns();
    for (uint32_t i = 0; i < n_timers; i++)
        idcheck(weft_timer_after(loop, delay[i], mon_fire, NULL, NULL));
    wcheck(weft_loop_run(loop, WEFT_RUN_DEFAULT));
    if (mon_fired != n_timers)
        die("monitor_overhead: %llu of %u timers fired", (unsigned long long)mon_fired, n_timers);
    out[1] = (double)(mon_thread_cpu_ns() - t1) / n_timers;
    atomic_store(&reader.stop, 1);
    check(pthread_join(thread, NULL) == 0);
    weft_loop_free(loop);
}

static int mon_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void monitor_overhead(void)
{
    static const char *rows[] = { "weft", "weft-stats", "weft-watchdog" };
    uint32_t n_timers = N_MON_TIMERS;
    uint32_t *delay = gen_delays(n_timers, 0, 100);
    double got[3][2][MON_ROUNDS];
    for (int round = 0; round < MON_ROUNDS; round++)
        for (int mode = 0; mode < 3; mode++) {
            double out[2];
            mon_measure(mode, delay, n_timers, out);
            got[mode][0][round] = out[0];
            got[mode][1][round] = out[1];
        }
    for (int mode = 0; mode < 3; mode++) {
        qsort(got[mode][0], MON_ROUNDS, sizeof(double), mon_cmp);
        qsort(got[mode][1], MON_ROUNDS, sizeof(double), mon_cmp);
        printf("RESULT workload=monitor_overhead system=%s post_ns=%.2f timer_ns=%.2f reports=%d\n",
               rows[mode], got[mode][0][MON_ROUNDS / 2], got[mode][1][MON_ROUNDS / 2],
               mode == 2 ? atomic_load(&mon_reports) : 0);
    }
    free(delay);
}

#endif
