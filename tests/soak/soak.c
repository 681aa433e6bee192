/*
 * soak.c: weft's soak test (`make soak MINUTES=N`, or SECONDS=N for a short run).
 *
 * Four loops, each run by weft_loop_run on a thread of its own, and eight driver threads
 * (driver.c) that make a random mix of every kind of registration on them, cancel many,
 * and make bad calls now and then, against the public C ABI only, with the work in flight
 * bounded so that memory has a steady state. The mix is drawn from a seed, printed at the
 * start (SEED=... repeats it; the threads' interleaving is the machine's).
 *
 * At every interval (a minute; shorter for runs under five minutes) one line and one CSV
 * row: RSS, open fds, live children, registrations in flight, and calls per second of
 * each kind. Each interval also checks what can be checked while the loops run (no more
 * frees than registrations, no more deliveries than emits, no one-shot or task older than
 * a minute). At the end the drivers stop, what is in flight drains, the loops are stopped
 * and freed, the pools freed and weft_shutdown called; then every count must match
 * exactly (every registration freed once, every one-shot fired once unless a cancel of
 * it returned OK, every task done once with the status its mode asks, every event
 * counted, every byte written read), the fds must be those of the start and no child may
 * be left. Then RSS growth after the warm-up is judged (growth_check).
 *
 * usage: soak --seconds N [--seed S] [--csv FILE] [--interval S]
 * environment: SOAK_PACE_US (the drivers sleep this long every 8 calls, default 1000),
 *              SOAK_PROC_RATE (process tasks a second over all drivers, default 4),
 *              SOAK_LEAK (bytes the soak itself leaks per registration, default 0: shows
 *              that the growth check fails when something leaks)
 */
#include "soak.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

stats g;
weft_loop *g_loops[LOOPS];
weft_pool *g_cpu_pool, *g_io_pool;
driver g_drivers[DRIVERS];
_Atomic int g_stop, g_teardown;
uint64_t g_seed;
unsigned g_pace_us = 1000, g_proc_rate = 4, g_leak_bytes;

/* ---- what /proc says ---------------------------------------------------------------- */

static long rss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL) return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) break;
    fclose(f);
    return kb;
}

/* malloc's view (glibc): bytes in use now, and bytes it holds from the system. RSS also
 * counts what malloc keeps, free but fragmented; what is in use is what a leak grows. */
static void heap_kb(long *in_use, long *held) {
    struct mallinfo2 m = mallinfo2();
    *in_use = (long)((m.uordblks + m.hblkhd) / 1024);
    *held = (long)((m.arena + m.hblkhd) / 1024);
}

static int open_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n - 1; /* the directory's own fd */
}

/* Processes whose parent is this one (zombies included, counted in *zombies). */
static int children(int *zombies) {
    int n = 0;
    *zombies = 0;
    pid_t me = getpid();
    DIR *d = opendir("/proc");
    if (d == NULL) return -1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        ssize_t len = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (len <= 0) continue;
        buf[len] = '\0';
        char *rp = strrchr(buf, ')'), state;
        int ppid;
        if (rp == NULL || sscanf(rp + 1, " %c %d", &state, &ppid) != 2 || ppid != me) continue;
        n++;
        if (state == 'Z') ++*zombies;
    }
    closedir(d);
    return n;
}

/* ---- samples ------------------------------------------------------------------------- */

enum { MAX_SAMPLES = 4096 };

typedef struct sample {
    double t_s;
    long rss_kb, heap_kb, held_kb;
    int fds, children, live;
    long regs[NKINDS], cancels, emits, deliveries, fires;
} sample;

static sample samples[MAX_SAMPLES];
static int nsamples;

static long sum(_Atomic long *a, int n) {
    long s = 0;
    for (int i = 0; i < n; i++) s += atomic_load(&a[i]);
    return s;
}

static sample take_sample(double t_s) {
    sample s = {.t_s = t_s, .rss_kb = rss_kb(), .fds = open_fds()};
    heap_kb(&s.heap_kb, &s.held_kb);
    int z;
    s.children = children(&z);
    for (int i = 0; i < DRIVERS; i++) s.live += atomic_load(&g_drivers[i].count);
    for (int k = 0; k < NKINDS; k++) s.regs[k] = atomic_load(&g.regs[k]);
    s.cancels = sum(g.cancel_ok, NKINDS) + sum(g.cancel_not_found, NKINDS);
    s.emits = sum(g.emits, LOOPS);
    s.deliveries = atomic_load(&g.deliveries);
    s.fires = sum(g.fires, NKINDS);
    return s;
}

static FILE *csv;

static void csv_header(void) {
    fprintf(csv, "t_s,minute,rss_kb,heap_kb,held_kb,fds,children,live,ops_s");
    for (int k = 0; k < NKINDS; k++) fprintf(csv, ",%s_s", kind_names[k]);
    fprintf(csv, ",cancels_s,emits_s,deliveries_s,fires_s\n");
    fflush(csv);
}

/* Writes sample s as a CSV row, with rates since the previous one (0 for the first). */
static void report_csv(const sample *s, const sample *prev) {
    double dt = s->t_s - prev->t_s;
    if (dt <= 0) dt = 1;
    long ops = 0;
    for (int k = 0; k < NKINDS; k++) ops += s->regs[k] - prev->regs[k];
    ops += (s->cancels - prev->cancels) + (s->emits - prev->emits);
    fprintf(csv, "%.1f,%.3f,%ld,%ld,%ld,%d,%d,%d,%.1f", s->t_s, s->t_s / 60, s->rss_kb, s->heap_kb, s->held_kb,
            s->fds, s->children, s->live, (double)ops / dt);
    for (int k = 0; k < NKINDS; k++) fprintf(csv, ",%.1f", (double)(s->regs[k] - prev->regs[k]) / dt);
    fprintf(csv, ",%.1f,%.1f,%.1f,%.1f\n", (double)(s->cancels - prev->cancels) / dt,
            (double)(s->emits - prev->emits) / dt, (double)(s->deliveries - prev->deliveries) / dt,
            (double)(s->fires - prev->fires) / dt);
    fflush(csv);
}

/* Prints and records sample s, with rates since the previous one. */
static void report(const sample *s, const sample *prev, double total_s) {
    double dt = s->t_s - prev->t_s;
    if (dt <= 0) dt = 1;
    long ops = 0;
    for (int k = 0; k < NKINDS; k++) ops += s->regs[k] - prev->regs[k];
    ops += (s->cancels - prev->cancels) + (s->emits - prev->emits);
    if (total_s >= 300) printf("soak: min %4.1f/%.0f", s->t_s / 60, total_s / 60);
    else printf("soak: %5.1f/%.0f s", s->t_s, total_s);
    printf("  rss %5.1f MB (heap %4.1f in use, %4.1f held)  fds %3d  children %d  live %4d  ops/s %6.0f  [",
           (double)s->rss_kb / 1024, (double)s->heap_kb / 1024, (double)s->held_kb / 1024, s->fds, s->children,
           s->live, (double)ops / dt);
    for (int k = 0; k < NKINDS; k++)
        printf("%s%s %.0f", k ? " " : "", kind_names[k], (double)(s->regs[k] - prev->regs[k]) / dt);
    printf(" cancel %.0f emit %.0f]  deliveries/s %.0f\n", (double)(s->cancels - prev->cancels) / dt,
           (double)(s->emits - prev->emits) / dt, (double)(s->deliveries - prev->deliveries) / dt);
    if (csv) report_csv(s, prev);
}

/* ---- checks while the loops run ------------------------------------------------------- */

enum { AGE_LIMIT_MS = 60000 }; /* a one-shot or task in flight this long was lost */

static void checkpoint(void) {
    for (int k = 0; k < NKINDS; k++) {
        /* read what comes after first: a later read of what comes before can only be larger */
        long frees = atomic_load(&g.frees[k]), dones = atomic_load(&g.dones[k]);
        long fired = atomic_load(&g.fires[k]);
        long regs = atomic_load(&g.regs[k]);
        if (frees > regs) soak_fail("%s: %ld frees, %ld registrations", kind_names[k], frees, regs);
        if (kind_task(k) && dones > regs) soak_fail("%s: %ld dones, %ld tasks", kind_names[k], dones, regs);
        if (kind_one_shot(k) && fired > regs) soak_fail("%s: %ld calls, %ld registrations", kind_names[k], fired, regs);
    }
    for (int l = 0; l < LOOPS; l++) {
        long counted = atomic_load(&g.counted[l]), emits = atomic_load(&g.emits[l]);
        if (counted > emits) soak_fail("loop %d: %ld events delivered, %ld emitted", l, counted, emits);
    }
    long rd = atomic_load(&g.fd_read), wr = atomic_load(&g.fd_written);
    if (rd > wr) soak_fail("%ld bytes read from the socket pairs, %ld written", rd, wr);
    uint64_t now = now_ms();
    for (int i = 0; i < DRIVERS; i++) {
        driver *d = &g_drivers[i];
        pthread_mutex_lock(&d->lock);
        for (int j = 0; j < atomic_load(&d->count); j++) {
            item *it = d->items[j];
            if ((kind_one_shot(it->kind) || kind_task(it->kind)) && it->born_ms + AGE_LIMIT_MS < now)
                soak_fail("%s item %" PRIu64 " is still in flight after %" PRIu64 " s (fires %d, dones %d, "
                          "cancel tried %d): lost", kind_names[it->kind], it->serial, (now - it->born_ms) / 1000,
                          atomic_load(&it->fires), atomic_load(&it->dones), atomic_load(&it->cancel_tried));
        }
        pthread_mutex_unlock(&d->lock);
    }
}

/* ---- growth ---------------------------------------------------------------------------- */

/*
 * RSS may grow during the warm-up (the allocator's arenas, the pools' threads, the
 * loops' queues and slabs reach their working size), then must stay flat. The warm-up
 * is the first 20% of the run, and at least two minutes (half of a run shorter than four
 * minutes). Two limits:
 *
 *  - GROWTH: the last sample may exceed the first sample after the warm-up by at most
 *    max(16 MB, 25% of it). glibc's malloc keeps per-thread arenas (up to 8 per core:
 *    the soak's 30-odd threads share 16), and freed memory stays in them, fragmented,
 *    until a whole run of pages is free: the resident size of a steady workload can move
 *    by a few MB as the peaks of in-flight work land in different arenas, more on a
 *    loaded machine where the loops fall behind and their queues grow for a while. 16 MB
 *    is well above that noise, and far below what a leak of a few hundred bytes per
 *    operation gives: at the soak's ~30,000 registrations a second (2 million a minute)
 *    that is hundreds of MB a minute; SOAK_LEAK=300 fails a 20 s run.
 *  - SLOPE: over runs with at least 10 minutes after the warm-up, the least-squares slope
 *    of RSS may not exceed 256 KB a minute, about 0.1 byte per registration: a slow leak
 *    (one byte per registration is ~2 MB a minute) that the growth limit would catch
 *    late. A flat line with a step of a few MB in it has a far smaller slope over that
 *    many points; 256 KB a minute is still 6 MB over 24 minutes, twice what the soak's
 *    whole heap is.
 *
 * fds: during the run, every sample after the warm-up stays within FD_SLACK of the most
 * seen during the warm-up (children's pipes and pidfds and the churned socket pairs come
 * and go: at most 8 children with 3 fds each and 16 drivers' pairs); at the end, after
 * the loops, pools and weft_shutdown, the count is exactly that of the start.
 */
#define GROWTH_MIN_KB (16 * 1024)
#define GROWTH_FRACTION 0.25
#define SLOPE_KB_PER_MIN 256.0
#define SLOPE_MIN_SPAN_S 600.0
#define FD_SLACK 64

static double warm_up_s(double total_s) {
    double w = total_s * 0.2, floor = total_s >= 240 ? 120 : total_s / 2;
    return w > floor ? w : floor;
}

/* The least-squares slope of RSS (or of malloc's bytes in use) over the samples from
 * `first` on, in KB per minute. */
static double slope_after(int first, bool heap) {
    double n = nsamples - first, sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (int i = first; i < nsamples; i++) {
        double x = samples[i].t_s / 60, y = (double)(heap ? samples[i].heap_kb : samples[i].rss_kb);
        sx += x, sy += y, sxx += x * x, sxy += x * y;
    }
    double den = n * sxx - sx * sx;
    return den > 0 ? (n * sxy - sx * sy) / den : 0;
}

static bool growth_check(double total_s) {
    double warm = warm_up_s(total_s);
    int first = -1, fd_warm = 0;
    for (int i = 0; i < nsamples; i++) {
        if (samples[i].t_s + 0.5 < warm) {
            if (samples[i].fds > fd_warm) fd_warm = samples[i].fds;
        } else if (first < 0) {
            first = i;
        }
    }
    if (first < 0 || nsamples - first < 2) {
        printf("soak: growth: too few samples after the %.0f s warm-up to judge growth\n", warm);
        return true;
    }
    if (fd_warm == 0) fd_warm = samples[first].fds;
    bool ok = true;
    for (int i = first; i < nsamples; i++)
        if (samples[i].fds > fd_warm + FD_SLACK) {
            soak_fail("fds: %d open at %.0f s, at most %d during the warm-up", samples[i].fds, samples[i].t_s, fd_warm);
            ok = false;
            break;
        }
    const sample *b = &samples[first], *e = &samples[nsamples - 1];
    long limit = (long)(GROWTH_FRACTION * (double)b->rss_kb);
    if (limit < GROWTH_MIN_KB) limit = GROWTH_MIN_KB;
    long grown = e->rss_kb - b->rss_kb;
    double slope = slope_after(first, false), heap_slope = slope_after(first, true);
    long ops = 0;
    for (int k = 0; k < NKINDS; k++) ops += e->regs[k] - b->regs[k];
    double span = e->t_s - b->t_s, ops_per_min = span > 0 ? (double)ops / (span / 60) : 0;
    printf("soak: growth: RSS %.1f MB after the %.0f s warm-up, %.1f MB at the end (%+.1f MB, limit %.1f MB); "
           "slope %+.0f KB/min over %.0f s (%s %.0f KB/min; %.3f bytes per registration)\n",
           (double)b->rss_kb / 1024, warm, (double)e->rss_kb / 1024, (double)grown / 1024, (double)limit / 1024,
           slope, span, span >= SLOPE_MIN_SPAN_S ? "limit" : "not judged under 10 min; limit", SLOPE_KB_PER_MIN,
           ops_per_min > 0 ? slope * 1024 / ops_per_min : 0.0);
    printf("soak: growth: malloc's bytes in use %.1f MB after the warm-up, %.1f MB at the end, slope %+.0f KB/min "
           "(held from the system: %.1f MB, then %.1f MB)\n",
           (double)b->heap_kb / 1024, (double)e->heap_kb / 1024, heap_slope, (double)b->held_kb / 1024,
           (double)e->held_kb / 1024);
    if (grown > limit) {
        soak_fail("RSS grew by %.1f MB after the warm-up (limit %.1f MB)", (double)grown / 1024, (double)limit / 1024);
        ok = false;
    }
    if (span >= SLOPE_MIN_SPAN_S && slope > SLOPE_KB_PER_MIN) {
        soak_fail("RSS grows by %.0f KB a minute after the warm-up (limit %.0f)", slope, SLOPE_KB_PER_MIN);
        ok = false;
    }
    return ok;
}

/* ---- the end: every count exact ------------------------------------------------------- */

static bool equal(long a, long b, const char *what, const char *k) {
    if (a == b) return true;
    soak_fail("%s%s%s: %ld != %ld", k ? k : "", k ? ": " : "", what, a, b);
    return false;
}

static void print_totals(void) {
    printf("soak: %-10s %10s %10s %9s %9s %9s %9s %9s  %s\n", "kind", "regs", "calls", "dones", "cancel ok",
           "cancel nf", "frees", "at free", "(one-shots: called and cancelled OK; tasks: ok/cancelled/timeout/crashed)");
    for (int k = 0; k < NKINDS; k++) {
        printf("soak: %-10s %10ld %10ld %9ld %9ld %9ld %9ld %9ld", kind_names[k], atomic_load(&g.regs[k]),
               atomic_load(&g.fires[k]), atomic_load(&g.dones[k]), atomic_load(&g.cancel_ok[k]),
               atomic_load(&g.cancel_not_found[k]), atomic_load(&g.frees[k]), atomic_load(&g.teardown_frees[k]));
        if (kind_one_shot(k)) printf("  %ld", atomic_load(&g.ran_and_cancelled[k]));
        if (kind_task(k))
            printf("  %ld/%ld/%ld/%ld", atomic_load(&g.done_ok[k]), atomic_load(&g.done_cancelled[k]),
                   atomic_load(&g.done_timeout[k]), atomic_load(&g.done_crashed[k]));
        printf("\n");
    }
    printf("soak: events: %ld emitted to soak.*, %ld counted, %ld process-task events, %ld deliveries in all\n",
           sum(g.emits, LOOPS), sum(g.counted, LOOPS), atomic_load(&g.proc_events), atomic_load(&g.deliveries));
    printf("soak: fds: %ld bytes written, %ld read, %ld writes refused (full), %ld watch modifies; %ld bad calls; "
           "%ld calls were in flight when a cancel said OK\n",
           atomic_load(&g.fd_written), atomic_load(&g.fd_read), atomic_load(&g.fd_full), atomic_load(&g.modifies),
           atomic_load(&g.bad_inputs), atomic_load(&g.late_calls));
}

static void final_accounting(void) {
    for (int k = 0; k < NKINDS; k++) {
        const char *n = kind_names[k];
        long regs = atomic_load(&g.regs[k]);
        equal(atomic_load(&g.frees[k]), regs, "frees == registrations", n);
        if (kind_one_shot(k)) {
            equal(atomic_load(&g.fires[k]) + atomic_load(&g.cancel_ok[k]) - atomic_load(&g.ran_and_cancelled[k]), regs,
                  "calls + OK cancels - both == registrations", n);
            equal(atomic_load(&g.teardown_frees[k]), 0, "freed by weft_loop_free (not drained)", n);
        } else if (kind_task(k)) {
            equal(atomic_load(&g.dones[k]), regs, "dones == tasks", n);
            equal(atomic_load(&g.done_cancelled[k]), atomic_load(&g.cancel_ok[k]),
                  "dones with WEFT_ERR_CANCELLED == OK cancels", n);
            equal(atomic_load(&g.done_ok[k]) + atomic_load(&g.done_cancelled[k]) + atomic_load(&g.done_timeout[k]) +
                      atomic_load(&g.done_crashed[k]),
                  atomic_load(&g.dones[k]), "dones by status == dones", n);
            equal(atomic_load(&g.teardown_frees[k]), 0, "freed by weft_loop_free (not drained)", n);
        } else {
            equal(atomic_load(&g.cancel_ok[k]) + atomic_load(&g.teardown_frees[k]), regs,
                  "OK cancels + frees by weft_loop_free == registrations", n);
        }
    }
    for (int l = 0; l < LOOPS; l++) {
        char what[64];
        snprintf(what, sizeof what, "loop %d: events counted == emitted", l);
        equal(atomic_load(&g.counted[l]), atomic_load(&g.emits[l]), what, NULL);
    }
    equal(atomic_load(&g.fd_read), atomic_load(&g.fd_written), "bytes read == bytes written", NULL);
    for (int i = 0; i < DRIVERS; i++) equal(atomic_load(&g_drivers[i].count), 0, "items left in a driver's list", NULL);
}

/* Waits (at most `ms`) until no one-shot or task is in flight, every event emitted was
 * counted and every byte written read. */
static bool drain(uint64_t ms) {
    uint64_t end = now_ms() + ms;
    for (;;) {
        long pending = 0;
        for (int k = 0; k < NKINDS; k++)
            if (kind_one_shot(k) || kind_task(k)) pending += atomic_load(&g.regs[k]) - atomic_load(&g.frees[k]);
        long events = sum(g.emits, LOOPS) - sum(g.counted, LOOPS);
        long bytes = atomic_load(&g.fd_written) - atomic_load(&g.fd_read);
        if (pending == 0 && events == 0 && bytes == 0) return true;
        if (now_ms() > end) {
            soak_fail("not drained %" PRIu64 " ms after the drivers stopped: %ld one-shots and tasks in flight, %ld "
                      "events and %ld bytes not delivered", ms, pending, events, bytes);
            return false;
        }
        sleep_us(5000);
    }
}

/* ---- set-up ------------------------------------------------------------------------------ */

typedef struct runner {
    pthread_t thread;
    int index, rc;
} runner;
static runner runners[LOOPS];

static void *run_loop(void *arg) {
    runner *r = (runner *)arg;
    r->rc = weft_loop_run(g_loops[r->index], WEFT_RUN_DEFAULT);
    return NULL;
}

/* A registration made at the start and ended by weft_loop_free. */
static void permanent(weft_id id, item *it, const char *what) {
    if (!item_registered(it, id, what)) exit(2);
    item_put(it);
}

static void set_up(void) {
    for (int l = 0; l < LOOPS; l++) {
        g_loops[l] = weft_loop_new();
        if (g_loops[l] == NULL) {
            fprintf(stderr, "soak: weft_loop_new failed\n");
            exit(2);
        }
        item *it = item_new(NULL, K_SUB, l);
        permanent(weft_subscribe(g_loops[l], "soak.*", counting_event_cb, it, item_free_fn), it, "subscribe soak.*");
        it = item_new(NULL, K_SUB, l);
        permanent(weft_subscribe(g_loops[l], "proc.*", proc_event_cb, it, item_free_fn), it, "subscribe proc.*");
    }
    weft_pool_options o = {.size = sizeof o, .kind = WEFT_POOL_CPU, .threads = 2, .name = "soak-cpu"};
    g_cpu_pool = weft_pool_new(&o);
    /* a short keep-alive: the IO pool's threads come and go all the time */
    o = (weft_pool_options){.size = sizeof o, .kind = WEFT_POOL_IO, .threads = 8, .name = "soak-io",
                            .keep_alive_ms = 300};
    g_io_pool = weft_pool_new(&o);
    if (g_cpu_pool == NULL || g_io_pool == NULL) {
        fprintf(stderr, "soak: weft_pool_new failed\n");
        exit(2);
    }
    for (int i = 0; i < DRIVERS; i++) {
        driver *d = &g_drivers[i];
        d->index = i;
        d->rng = (g_seed ^ (0x9E3779B97F4A7C15ull * (uint64_t)(i + 1))) | 1;
        pthread_mutex_init(&d->lock, NULL);
        for (int p = 0; p < PAIRS_PER_DRIVER; p++) {
            int sv[2];
            if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) {
                perror("soak: socketpair");
                exit(2);
            }
            d->pairs[p] = (pair){sv[0], sv[1]};
            int l = (i * PAIRS_PER_DRIVER + p) % LOOPS;
            item *it = item_new(NULL, K_WATCH, l);
            it->flavour = W_DRAIN;
            it->fd = sv[0];
            permanent(weft_watch_fd(g_loops[l], sv[0], WEFT_READABLE, watch_cb, it, item_free_fn), it, "watch a pair");
        }
    }
    for (int l = 0; l < LOOPS; l++) {
        runners[l].index = l;
        pthread_create(&runners[l].thread, NULL, run_loop, &runners[l]);
    }
    for (int i = 0; i < DRIVERS; i++) pthread_create(&g_drivers[i].thread, NULL, driver_main, &g_drivers[i]);
}

static void tear_down(void) {
    for (int l = 0; l < LOOPS; l++) weft_loop_stop(g_loops[l]);
    for (int l = 0; l < LOOPS; l++) {
        pthread_join(runners[l].thread, NULL);
        if (runners[l].rc != WEFT_OK) soak_fail("weft_loop_run of loop %d returned %d", l, runners[l].rc);
    }
    atomic_store(&g_teardown, 1);
    for (int l = 0; l < LOOPS; l++) weft_loop_free(g_loops[l]);
    weft_pool_free(g_cpu_pool);
    weft_pool_free(g_io_pool);
    weft_shutdown();
    for (int i = 0; i < DRIVERS; i++)
        for (int p = 0; p < PAIRS_PER_DRIVER; p++) close(g_drivers[i].pairs[p].rd), close(g_drivers[i].pairs[p].wr);
}

/* ---- main ------------------------------------------------------------------------------- */

static unsigned env_uint(const char *name, unsigned fallback) {
    const char *v = getenv(name);
    return v && *v ? (unsigned)strtoul(v, NULL, 10) : fallback;
}

int main(int argc, char **argv) {
    double total_s = 60, interval_s = 0;
    const char *csv_path = NULL;
    bool seeded = false;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--seconds") == 0) total_s = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--seed") == 0) g_seed = strtoull(argv[i + 1], NULL, 0), seeded = true;
        else if (strcmp(argv[i], "--csv") == 0) csv_path = argv[i + 1];
        else if (strcmp(argv[i], "--interval") == 0) interval_s = atof(argv[i + 1]);
        else {
            fprintf(stderr, "usage: %s --seconds N [--seed S] [--csv FILE] [--interval S]\n", argv[0]);
            return 2;
        }
    }
    if (total_s < 1) total_s = 1;
    /* a minute; a tenth of a run under five minutes (at least 1 s) */
    if (interval_s <= 0) interval_s = total_s >= 300 ? 60 : total_s / 10 < 1 ? 1 : total_s / 10;
    if (!seeded) g_seed = (uint64_t)time(NULL) * 2654435761u ^ (uint64_t)getpid();
    g_pace_us = env_uint("SOAK_PACE_US", g_pace_us);
    g_proc_rate = env_uint("SOAK_PROC_RATE", g_proc_rate);
    g_leak_bytes = env_uint("SOAK_LEAK", 0);
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    if (csv_path && (csv = fopen(csv_path, "w")) == NULL) {
        fprintf(stderr, "soak: %s: %s\n", csv_path, strerror(errno));
        return 2;
    }
    if (csv) csv_header();
    int fds_at_start = open_fds(), zombies;
    printf("soak: weft %s; %d loops, %d drivers, %.0f s, a sample every %.0f s; seed %" PRIu64
           " (SEED=%" PRIu64 " repeats the mix); pace %u us, %u process tasks/s%s\n",
           weft_version(), LOOPS, DRIVERS, total_s, interval_s, g_seed, g_seed, g_pace_us, g_proc_rate,
           g_leak_bytes ? "; SOAK_LEAK set: the soak leaks on purpose" : "");

    uint64_t t0 = now_ms();
    samples[nsamples++] = take_sample(0);
    printf("soak: before: rss %.1f MB, heap in use %.2f MB, fds %d\n", (double)samples[0].rss_kb / 1024,
           (double)samples[0].heap_kb / 1024, samples[0].fds);
    if (csv) report_csv(&samples[0], &samples[0]);
    set_up();
    for (int i = 1; i < MAX_SAMPLES && atomic_load(&g.failures) == 0; i++) {
        double at = interval_s * i;
        if (at > total_s + 0.001) break;
        uint64_t due = t0 + (uint64_t)(at * 1000);
        while (now_ms() < due && atomic_load(&g.failures) == 0) sleep_us(20000);
        if (atomic_load(&g.failures)) break;
        sample s = take_sample((double)(now_ms() - t0) / 1000);
        report(&s, &samples[nsamples - 1], total_s);
        samples[nsamples++] = s;
        checkpoint();
    }
    if (atomic_load(&g.failures)) printf("soak: stopping early: a check failed\n");
    atomic_store(&g_stop, 1);
    for (int i = 0; i < DRIVERS; i++) pthread_join(g_drivers[i].thread, NULL);
    uint64_t t_drain = now_ms();
    bool drained = drain(60000);
    printf("soak: drivers stopped; in-flight work %s in %" PRIu64 " ms\n", drained ? "drained" : "NOT drained",
           now_ms() - t_drain);
    tear_down();
    quarantine_drain();
    print_totals();
    final_accounting();
    int fds_at_end = open_fds(), kids = children(&zombies);
    long heap_end, held_end;
    heap_kb(&heap_end, &held_end);
    printf("soak: after teardown: fds %d (at the start %d), children %d (zombies %d), rss %.1f MB, heap in use "
           "%.2f MB (at the start %.2f)\n",
           fds_at_end, fds_at_start, kids, zombies, (double)rss_kb() / 1024, (double)heap_end / 1024,
           (double)samples[0].heap_kb / 1024);
    equal(fds_at_end, fds_at_start, "fds after teardown == fds at the start", NULL);
    equal(kids, 0, "children left", NULL);
    growth_check(total_s);
    if (csv) fclose(csv);
    long failures = atomic_load(&g.failures);
    printf("soak: %s (%ld failures; seed %" PRIu64 ")\n", failures ? "FAILED" : "passed", failures, g_seed);
    return failures ? 1 : 0;
}
