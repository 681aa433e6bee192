/* Memory given back: after a burst (a million posts from four threads, a million timers
 * scheduled then cancelled), an idle loop that is still alive returns to about the
 * memory it had before, instead of keeping its queues and timer wheel at their peak
 * until weft_loop_free. RSS is read from /proc/self/statm (Linux); under valgrind the
 * bursts are small and the RSS checks are skipped (the paths still run), and under
 * AddressSanitizer, whose allocator keeps what is freed, the checks are skipped too. */
#include "harness.h"

#define POSTERS 4
#define SLACK_MB 10

/* Resident memory of this process, in MB (0 when /proc is not there). */
static double rss_mb(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL) return 0;
    long size = 0, resident = 0;
    int n = fscanf(f, "%ld %ld", &size, &resident);
    fclose(f);
    if (n != 2) return 0;
    return (double)resident * (double)sysconf(_SC_PAGESIZE) / (1024.0 * 1024.0);
}

/* RSS now. No malloc_trim: glibc serves the big buffers (queues, slab, wheel) with mmap
 * and unmaps them when weft frees or shrinks them, so RSS shows what weft holds. */
static double rss_now(void) { return rss_mb(); }

static bool rss_checked(void) { return !h_valgrind() && !h_asan() && rss_mb() > 0; }

/* ---- posts ------------------------------------------------------------------------ */

typedef struct flood {
    weft_loop *lp;
    long per_thread;
    _Atomic long delivered;
    _Atomic long failures;
} flood;

static void count_post(weft_loop *lp, weft_id id, void *ud) {
    (void)lp, (void)id;
    atomic_fetch_add(&((flood *)ud)->delivered, 1);
}

static void *poster(void *arg) {
    flood *f = (flood *)arg;
    for (long i = 0; i < f->per_thread; i++)
        if (weft_post(f->lp, count_post, f, NULL) == 0) atomic_fetch_add(&f->failures, 1);
    return NULL;
}

/* A periodic timer: the idle loop's own passes (a loop with a timer makes them). */
static void tick(weft_loop *lp, weft_id id, void *ud) {
    (void)lp, (void)id;
    atomic_fetch_add((_Atomic int *)ud, 1);
}

/* Waits until the loop has made `n` more passes of its periodic timer. */
static void idle_passes(_Atomic int *ticks, int n) {
    int start = atomic_load(ticks);
    uint64_t end = now_ms() + h_slack_ms(5000);
    while (atomic_load(ticks) < start + n && now_ms() < end) sleep_ms(1);
    CHECK_MSG(atomic_load(ticks) >= start + n, "the loop made no idle passes");
}

/* A living loop run on a thread of its own, kept alive (and making idle passes) by a
 * periodic timer. */
typedef struct idle_loop {
    weft_loop *lp;
    weft_id timer;
    _Atomic int ticks;
    bg_loop bg;
} idle_loop;

static bool idle_loop_start(idle_loop *il) {
    il->lp = weft_loop_new();
    if (il->lp == NULL) return false;
    atomic_store(&il->ticks, 0);
    il->timer = CHECK_ID(weft_timer_every(il->lp, 2, tick, &il->ticks, NULL));
    bg_start(&il->bg, il->lp, WEFT_RUN_DEFAULT);
    idle_passes(&il->ticks, 3);
    return true;
}

static void idle_loop_end(idle_loop *il) {
    CHECK_OK(weft_cancel(il->lp, il->timer));
    bg_join(&il->bg, h_slack_ms(5000), "nothing registered after the timer's cancel");
    CHECK_OK(il->bg.rc);
    weft_loop_free(il->lp);
}

TEST(a_flood_of_posts_is_given_back_once_the_loop_is_idle) {
    idle_loop il;
    REQUIRE(idle_loop_start(&il));
    weft_loop *lp = il.lp;
    double before = rss_now();

    flood f = {.lp = lp, .per_thread = h_scale(1000000, 20000) / POSTERS};
    pthread_t th[POSTERS];
    for (int i = 0; i < POSTERS; i++) pthread_create(&th[i], NULL, poster, &f);
    for (int i = 0; i < POSTERS; i++) pthread_join(th[i], NULL);
    CHECK_EQ(atomic_load(&f.failures), 0);
    long total = f.per_thread * POSTERS;
    uint64_t end = now_ms() + h_slack_ms(30000);
    while (atomic_load(&f.delivered) < total && now_ms() < end) sleep_ms(1);
    CHECK_EQ(atomic_load(&f.delivered), total);
    idle_passes(&il.ticks, 3);
    double after = rss_now();
    fprintf(stderr, "    posts: RSS %.1f MB before, %.1f MB after %ld posts (idle, alive)\n", before,
            after, total);
    if (rss_checked())
        CHECK_MSG(after < before + SLACK_MB, "RSS %.1f MB after the flood, %.1f MB before", after, before);
    CHECK(weft_loop_alive(lp));
    idle_loop_end(&il);
}

/* ---- timers ----------------------------------------------------------------------- */

TEST(a_million_cancelled_timers_are_given_back_once_the_loop_is_idle) {
    idle_loop il;
    REQUIRE(idle_loop_start(&il));
    weft_loop *lp = il.lp;
    double before = rss_now();

    long n = h_scale(1000000, 20000);
    weft_id *ids = malloc((size_t)n * sizeof *ids);
    REQUIRE(ids != NULL);
    /* Delays spread over an hour: the timers land in many slots of several levels. */
    for (long i = 0; i < n; i++) ids[i] = CHECK_ID(weft_timer_after(lp, 1000 + (uint64_t)i % 3600000, never_cb, NULL, NULL));
    for (long i = 0; i < n; i++) CHECK_OK(weft_cancel(lp, ids[i]));
    free(ids);
    idle_passes(&il.ticks, 3);
    double after = rss_now();
    fprintf(stderr, "    timers: RSS %.1f MB before, %.1f MB after %ld timers (idle, alive)\n", before,
            after, n);
    if (rss_checked())
        CHECK_MSG(after < before + SLACK_MB, "RSS %.1f MB after the timers, %.1f MB before", after, before);
    CHECK(weft_loop_alive(lp));
    idle_loop_end(&il);
}
