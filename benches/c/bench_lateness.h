/* timer_lateness: how late a timer's callback runs after its deadline, on an idle loop.
 *
 * N_LATE one-shot timers (or bench_size) with delays uniform in [LATE_LO_MS, LATE_HI_MS]
 * ms (the seeded sequence of gen_delays: the same for every system) are scheduled one
 * after the other, then the loop runs until all fired; nothing else runs on it. A timer's
 * deadline is CLOCK_MONOTONIC just before its scheduling call plus its delay (late_arm);
 * its callback records now - deadline (late_fired). The baselines refresh their cached
 * loop time before each call (uv_update_time, ev_now_update), as a program that wants
 * its delays measured from the call does; otherwise a timer scheduled late in the batch
 * would be due early by the time the batch took to schedule. libevent's base asks for
 * its precise clock (EVENT_BASE_FLAG_PRECISE_TIMER; the default, CLOCK_MONOTONIC_COARSE,
 * ticks every 1-4 ms and fires timers up to a tick early or late).
 *
 * RESULT: the median distance from the deadline either way (|lateness|: what "within
 * 0.3 ms of its deadline" means), then median, p90, p99, max and min lateness in us (a
 * negative min: a callback ran before its deadline) and `early`, the number of such
 * callbacks. libuv counts time in whole milliseconds: it fires some timers up to 1 ms
 * early. With BENCH_SAMPLES=path
 * in the environment every lateness is also written there, in us, one a line: the
 * report's histogram. Included by each bench_X.c after bench_common.h. */
#ifndef BENCH_LATENESS_H
#define BENCH_LATENESS_H

struct late {
    uint32_t n;
    uint64_t fired;
    uint32_t *delay;       /* ms */
    uint64_t *deadline;    /* now_ns() at the call + delay */
    int64_t *late_ns;      /* recorded by the callback */
};
static struct late late;

static maybe_unused void late_init(void)
{
    late.n = bench_n(N_LATE);
    late.delay = gen_delays(late.n, LATE_LO_MS, LATE_HI_MS);
    late.deadline = xcalloc(late.n, sizeof *late.deadline);
    late.late_ns = xcalloc(late.n, sizeof *late.late_ns);
    watchdog("timers fired", &late.fired, late.n);
}

/* right before timer i's scheduling call */
static inline void late_arm(uint32_t i)
{
    late.deadline[i] = now_ns() + (uint64_t)late.delay[i] * 1000000u;
}

/* first thing in timer i's callback */
static inline void late_fired(uint32_t i)
{
    late.late_ns[i] = (int64_t)(now_ns() - late.deadline[i]);
    late.fired++;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static maybe_unused void late_report(void)
{
    uint32_t n = late.n, early = 0;
    if (late.fired != n)
        die("timer_lateness: %llu of %u timers fired", (unsigned long long)late.fired, n);
    const char *path = getenv("BENCH_SAMPLES");
    if (path && *path) {
        FILE *f = fopen(path, "w");
        check(f != NULL);
        for (uint32_t i = 0; i < n; i++)
            fprintf(f, "%.3f\n", late.late_ns[i] / 1e3);
        check(fclose(f) == 0);
    }
    int64_t *dist = xcalloc(n, sizeof *dist);
    for (uint32_t i = 0; i < n; i++) {
        early += late.late_ns[i] < 0;
        dist[i] = late.late_ns[i] < 0 ? -late.late_ns[i] : late.late_ns[i];
    }
    qsort(late.late_ns, n, sizeof *late.late_ns, cmp_i64);
    qsort(dist, n, sizeof *dist, cmp_i64);
    result("timer_lateness", "within_us=%.2f median_us=%.2f p90_us=%.2f p99_us=%.2f max_us=%.2f "
           "min_us=%.2f early=%u timers=%u", dist[n / 2] / 1e3, late.late_ns[n / 2] / 1e3,
           late.late_ns[(size_t)(n * 0.9)] / 1e3, late.late_ns[(size_t)(n * 0.99)] / 1e3,
           late.late_ns[n - 1] / 1e3, late.late_ns[0] / 1e3, early, n);
}

#endif
