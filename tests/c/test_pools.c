/* Pools: options and their checks, thread names in /proc, start/stop hooks, the IO
 * pool's bound and keep-alive, stack sizes. test_pools_free.c: weft_pool_free and
 * weft_shutdown. */
#include "harness.h"
#include "tasks_util.h"

#include <sched.h>

/* ---- options ------------------------------------------------------------------------ */

TEST(pool_options_are_checked) {
    weft_pool_options o = pool_opts(WEFT_POOL_CPU, 1, "chk");
    CHECK(weft_pool_new(NULL) == NULL);
    CHECK_ERR_HAS("weft_pool_new: options is NULL");
    size_t bad_sizes[] = {0, 1, sizeof o - 1, offsetof(weft_pool_options, hook_data), (size_t)1 << 20,
                          SIZE_MAX};
    for (size_t i = 0; i < sizeof bad_sizes / sizeof bad_sizes[0]; i++) {
        o.size = bad_sizes[i];
        CHECK_MSG(weft_pool_new(&o) == NULL, "size %zu accepted", bad_sizes[i]);
        CHECK_ERR_HAS("size");
    }
    o = pool_opts(2, 1, "chk");
    CHECK(weft_pool_new(&o) == NULL);
    CHECK_ERR_HAS("kind 2");
    o = pool_opts(-1, 1, "chk");
    CHECK(weft_pool_new(&o) == NULL);
    CHECK_ERR_HAS("kind -1");
    o = pool_opts(WEFT_POOL_IO, 4097, "chk");
    CHECK(weft_pool_new(&o) == NULL);
    CHECK_ERR_HAS("4097");
    o = pool_opts(WEFT_POOL_CPU, 4097, "chk");
    CHECK(weft_pool_new(&o) == NULL);
    o = pool_opts(WEFT_POOL_CPU, 1, "");
    CHECK(weft_pool_new(&o) == NULL);
    CHECK_ERR_HAS("name");
    o = pool_opts(WEFT_POOL_CPU, 1, "bad\xff");
    CHECK(weft_pool_new(&o) == NULL);
    CHECK_ERR_HAS("UTF-8");
    /* Good ones: the limits, NULL name, a newer header's larger struct (zero tail).
     * Threads start lazily, so a 4096-thread pool that runs nothing costs nothing. */
    int before = proc_threads(NULL);
    o = pool_opts(WEFT_POOL_CPU, 4096, "big");
    weft_pool *p1 = weft_pool_new(&o);
    CHECK(p1 != NULL);
    o = pool_opts(WEFT_POOL_IO, 0, NULL);
    weft_pool *p2 = weft_pool_new(&o);
    CHECK(p2 != NULL);
    struct {
        weft_pool_options o;
        uint64_t future[8];
    } newer;
    memset(&newer, 0, sizeof newer);
    newer.o = pool_opts(WEFT_POOL_CPU, 1, "newer");
    newer.o.size = sizeof newer;
    weft_pool *p3 = weft_pool_new(&newer.o);
    CHECK(p3 != NULL);
    CHECK_EQ(proc_threads_settled(NULL, before), before);
    weft_pool_free(p1);
    weft_pool_free(p2);
    weft_pool_free(p3);
    weft_pool_free(NULL); /* a no-op */
}

/* A pool freed already: weft_pool_free refuses it (an error, not a crash), and so does
 * weft_spawn (tested in test_tasks too); a pointer that never was a pool likewise. */
TEST(a_pool_freed_already_is_refused) {
    weft_pool *p;
    weft_loop *lp;
    REQUIRE(pool_and_loop(WEFT_POOL_CPU, 2, "twice", &p, &lp));
    rec r;
    rec_init(&r);
    weft_spawn_options so = spawn_opts(p, 0);
    CHECK_ID(rec_spawn(lp, WEFT_ON_CPU, &r, &so));
    CHECK(run_until(lp, &r.dones, 1, h_slack_ms(5000)));
    WAIT_FREED(r);
    reset_last_error();
    weft_pool_free(p);
    CHECK_ERR_HAS("weft_cancel"); /* the first free succeeds: no new message */
    weft_pool_free(p);
    CHECK_ERR_HAS("weft_pool_free");
    CHECK_ERR_HAS("not a live pool");
    CHECK_ID_FAILS(weft_spawn(lp, WEFT_ON_CPU, rec_work, rec_done, &r, never_free, &so), "not a live pool");
    int junk[8] = {0};
    reset_last_error();
    weft_pool_free((weft_pool *)junk);
    CHECK_ERR_HAS("weft_pool_free");
    CHECK_EQ(proc_threads_settled("twice-", 0), 0);
    weft_loop_free(lp);
}

/* A thread remembers the pools it spawned on (no lock per spawn): freeing one must make
 * it forget. Pools are freed and made in a row, so malloc hands a new pool the address
 * of the one just freed; every spawn must run on the pool named now, never on a freed
 * one, and the freed address is refused in between. */
TEST(a_new_pool_at_a_freed_pools_address_gets_the_work) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    int reused = 0;
    weft_pool *previous = NULL;
    for (int round = 0; round < 6; round++) {
        char name[32];
        snprintf(name, sizeof name, "again%d", round);
        weft_pool_options po = pool_opts(WEFT_POOL_CPU, 1, name);
        weft_pool *p = weft_pool_new(&po);
        REQUIRE(p != NULL);
        reused += p == previous;
        rec r;
        rec_init(&r);
        weft_spawn_options so = spawn_opts(p, 0);
        CHECK_ID(rec_spawn(lp, WEFT_ON_CPU, &r, &so));
        CHECK(run_until(lp, &r.dones, 1, h_slack_ms(5000)));
        WAIT_FREED(r);
        CHECK_EQ(r.status, 0);
        CHECK_MSG(strcmp(r.work_name, name) == 0 || starts_with(r.work_name, name),
                  "round %d: work ran on \"%s\", not on pool \"%s\"", round, r.work_name, name);
        weft_pool_free(p);
        rec gone;
        rec_init(&gone);
        CHECK_ID_FAILS(weft_spawn(lp, WEFT_ON_CPU, rec_work, rec_done, &gone, never_free, &so), "not a live pool");
        previous = p;
    }
    printf("    %d of 5 new pools had the address of the pool freed before them (malloc decides)\n", reused);
    weft_loop_free(lp);
}

/* ---- thread names ---------------------------------------------------------------------- */

/* Threads are named "<name>-<index>" in /proc/self/task/<tid>/comm: "tpool-0".. for a
 * CPU pool, "iopool-0" for an IO pool; a long name is cut to Linux's 15 bytes. The
 * names go when the pool is freed. */
TEST(thread_names_are_visible_in_proc) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    weft_pool_options o = pool_opts(WEFT_POOL_CPU, 3, "tpool");
    weft_pool *cpu = weft_pool_new(&o);
    o = pool_opts(WEFT_POOL_IO, 2, "iopool");
    weft_pool *io = weft_pool_new(&o);
    o = pool_opts(WEFT_POOL_CPU, 1, "averyveryverylongname");
    weft_pool *lng = weft_pool_new(&o);
    REQUIRE(cpu != NULL && io != NULL && lng != NULL);
    CHECK_EQ(proc_threads("tpool-"), 0); /* lazily started */
    _Atomic int gate = 0;
    rec r[5];
    weft_spawn_options on_cpu = spawn_opts(cpu, 0), on_io = spawn_opts(io, 0), on_long = spawn_opts(lng, 0);
    for (int i = 0; i < 5; i++) rec_init(&r[i]), r[i].gate = &gate;
    for (int i = 0; i < 3; i++) CHECK_ID(rec_spawn(lp, WEFT_ON_CPU, &r[i], &on_cpu));
    CHECK_ID(rec_spawn(lp, WEFT_ON_IO, &r[3], &on_io));
    CHECK_ID(rec_spawn(lp, WEFT_ON_CPU, &r[4], &on_long));
    for (int i = 0; i < 5; i++) CHECK(WAIT_FOR(atomic_load(&r[i].work_active) == 1, h_slack_ms(3000)));
    CHECK_EQ(proc_threads("tpool-"), 3);
    CHECK(proc_thread_named("tpool-0"));
    CHECK(proc_thread_named("tpool-1"));
    CHECK(proc_thread_named("tpool-2"));
    CHECK(proc_thread_named("iopool-0"));
    CHECK_EQ(proc_threads("iopool-"), 1);
    CHECK_MSG(proc_thread_named("averyveryverylo"), "no thread named \"averyveryverylo\" (15 bytes)");
    for (int i = 0; i < 3; i++) CHECK_MSG(starts_with(r[i].work_name, "tpool-"), "work ran on \"%s\"", r[i].work_name);
    CHECK_MSG(strcmp(r[3].work_name, "iopool-0") == 0, "work ran on \"%s\"", r[3].work_name);
    atomic_store(&gate, 1);
    int all = 0;
    uint64_t end = now_ms() + h_slack_ms(5000);
    while (all < 5 && now_ms() < end) {
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
        all = 0;
        for (int i = 0; i < 5; i++) all += atomic_load(&r[i].dones);
        sleep_ms(1);
    }
    for (int i = 0; i < 5; i++) WAIT_FREED(r[i]);
    weft_pool_free(cpu);
    weft_pool_free(io);
    weft_pool_free(lng);
    CHECK_EQ(proc_threads_settled("tpool-", 0), 0);
    CHECK_EQ(proc_threads_settled("iopool-", 0), 0);
    CHECK_EQ(proc_threads_settled("averyveryverylo", 0), 0);
    weft_loop_free(lp);
}

/* ---- hooks ------------------------------------------------------------------------------ */

typedef struct hooks {
    const char *prefix;
    _Atomic int starts, stops;
    _Atomic int start_count[64], stop_count[64];
    _Atomic int wrong_name, wrong_order;
} hooks;

static _Thread_local hooks *hooked; /* set by on_thread_start on the thread itself */

static void hook_start(uint32_t index, void *ud) {
    hooks *h = (hooks *)ud;
    char want[32];
    snprintf(want, sizeof want, "%s-%u", h->prefix, index);
    if (strcmp(self_name(), want) != 0) atomic_fetch_add(&h->wrong_name, 1);
    if (hooked != NULL) atomic_fetch_add(&h->wrong_order, 1);
    hooked = h;
    if (index < 64) atomic_fetch_add(&h->start_count[index], 1);
    atomic_fetch_add(&h->starts, 1);
}

static void hook_stop(uint32_t index, void *ud) {
    hooks *h = (hooks *)ud;
    char want[32];
    snprintf(want, sizeof want, "%s-%u", h->prefix, index);
    if (strcmp(self_name(), want) != 0) atomic_fetch_add(&h->wrong_name, 1);
    if (hooked != h) atomic_fetch_add(&h->wrong_order, 1); /* stop without start, on this thread */
    hooked = NULL;
    if (index < 64) atomic_fetch_add(&h->stop_count[index], 1);
    atomic_fetch_add(&h->stops, 1);
}

/* Work that checks that its thread's start hook ran before it. */
static _Atomic int unhooked_work;
static int hooked_work(weft_task *t, void *ud) {
    if (hooked == NULL) atomic_fetch_add(&unhooked_work, 1);
    return rec_work(t, ud);
}

/* CPU pool: no hook before the first task; then on_thread_start once per thread, on the
 * thread itself (named after its index), before it runs work; on_thread_stop once per
 * thread, on it, by the time weft_pool_free returns. */
TEST(cpu_pool_hooks_run_once_per_thread_start_and_stop) {
    hooks h;
    memset(&h, 0, sizeof h);
    h.prefix = "hcpu";
    weft_pool_options o = pool_opts(WEFT_POOL_CPU, 3, "hcpu");
    o.on_thread_start = hook_start;
    o.on_thread_stop = hook_stop;
    o.hook_data = &h;
    weft_pool *p = weft_pool_new(&o);
    REQUIRE(p != NULL);
    sleep_ms(10);
    CHECK_EQ(atomic_load(&h.starts), 0);
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    atomic_store(&unhooked_work, 0);
    enum { N = 30 };
    rec r[N];
    weft_spawn_options so = spawn_opts(p, 0);
    for (int i = 0; i < N; i++) {
        rec_init(&r[i]);
        r[i].sleep_ms = 1;
        CHECK_ID(weft_spawn(lp, WEFT_ON_CPU, hooked_work, rec_done, &r[i], rec_free, &so));
    }
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    for (int i = 0; i < N; i++) WAIT_FREED(r[i]);
    /* Every thread starts at the first task, but two may run all 30 before the third
     * has begun (a loaded machine, valgrind): its hook runs when it does. */
    for (uint64_t ms = 0; ms < h_slack_ms(2000) && atomic_load(&h.starts) < 3; ms++) sleep_ms(1);
    CHECK_EQ(atomic_load(&h.starts), 3);
    CHECK_EQ(atomic_load(&h.stops), 0);
    CHECK_EQ(atomic_load(&unhooked_work), 0);
    weft_pool_free(p);
    CHECK_EQ(atomic_load(&h.starts), 3);
    CHECK_EQ(atomic_load(&h.stops), 3);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(atomic_load(&h.start_count[i]), 1);
        CHECK_EQ(atomic_load(&h.stop_count[i]), 1);
    }
    CHECK_EQ(atomic_load(&h.wrong_name), 0);
    CHECK_EQ(atomic_load(&h.wrong_order), 0);
    weft_loop_free(lp);
}

/* IO pool: threads come and go (keep-alive); each start has its stop, on the same
 * thread; after weft_pool_free the counts balance. */
TEST(io_pool_hooks_balance_across_retirements) {
    hooks h;
    memset(&h, 0, sizeof h);
    h.prefix = "hio";
    weft_pool_options o = pool_opts(WEFT_POOL_IO, 4, "hio");
    o.keep_alive_ms = 30;
    o.on_thread_start = hook_start;
    o.on_thread_stop = hook_stop;
    o.hook_data = &h;
    weft_pool *p = weft_pool_new(&o);
    REQUIRE(p != NULL);
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    atomic_store(&unhooked_work, 0);
    weft_spawn_options so = spawn_opts(p, 0);
    for (int round = 0; round < 3; round++) {
        enum { N = 12 };
        rec r[N];
        for (int i = 0; i < N; i++) {
            rec_init(&r[i]);
            r[i].sleep_ms = 5;
            CHECK_ID(weft_spawn(lp, WEFT_ON_IO, hooked_work, rec_done, &r[i], rec_free, &so));
        }
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
        for (int i = 0; i < N; i++) WAIT_FREED(r[i]);
        /* Idle threads retire after 30 ms. */
        CHECK_MSG(WAIT_FOR(atomic_load(&h.stops) == atomic_load(&h.starts), h_slack_ms(2000)),
                  "round %d: %d starts, %d stops", round, atomic_load(&h.starts), atomic_load(&h.stops));
        CHECK(WAIT_FOR(proc_threads("hio-") == 0, h_slack_ms(1000)));
    }
    int starts = atomic_load(&h.starts);
    CHECK(starts >= 3); /* at least one thread per round */
    weft_pool_free(p);
    CHECK_EQ(atomic_load(&h.stops), atomic_load(&h.starts));
    CHECK_EQ(atomic_load(&h.wrong_name), 0);
    CHECK_EQ(atomic_load(&h.wrong_order), 0);
    CHECK_EQ(atomic_load(&unhooked_work), 0);
    /* Indices are not reused: each thread's index had one start and one stop. */
    for (int i = 0; i < 64; i++) CHECK_EQ(atomic_load(&h.start_count[i]), atomic_load(&h.stop_count[i]));
    weft_loop_free(lp);
}

/* ---- the IO pool's bound and keep-alive ---------------------------------------------- */

static bool contains_thread(pthread_t *set, int n, pthread_t t) {
    for (int i = 0; i < n; i++)
        if (pthread_equal(set[i], t)) return true;
    return false;
}

/* Spawns r[0..n) on `where` with `so`, each waiting on `gate` once running. */
static void spawn_gated(weft_loop *lp, weft_where where, rec *r, int n, _Atomic int *gate,
                        const weft_spawn_options *so) {
    for (int i = 0; i < n; i++) {
        rec_init(&r[i]);
        r[i].gate = gate;
        CHECK_ID(rec_spawn(lp, where, &r[i], so));
    }
}

/* How many of r[0..n) are in their work now. */
static int active_count(rec *r, int n) {
    int active = 0;
    for (int i = 0; i < n; i++) active += atomic_load(&r[i].work_active);
    return active;
}

/* Polls for up to `ms` until at least `want` of r[0..n) are in their work; returns how
 * many were at the last look. */
static int wait_active(rec *r, int n, int want, uint64_t ms) {
    int active = 0;
    uint64_t end = now_ms() + ms;
    while (now_ms() < end) {
        active = active_count(r, n);
        if (active >= want) break;
        sleep_ms(1);
    }
    return active;
}

/* With N + k tasks blocked, an IO pool of bound N runs N of them at once on N threads,
 * and no more; the other k wait, then run on the same threads. */
TEST(io_pool_grows_to_its_bound_and_no_further) {
    enum { BOUND = 4, EXTRA = 3, N = BOUND + EXTRA };
    weft_pool *p;
    weft_loop *lp;
    REQUIRE(pool_and_loop(WEFT_POOL_IO, BOUND, "grow", &p, &lp));
    weft_spawn_options so = spawn_opts(p, 0);
    _Atomic int gate = 0;
    rec r[N];
    spawn_gated(lp, WEFT_ON_IO, r, N, &gate, &so);
    int active = wait_active(r, N, BOUND, h_slack_ms(2000));
    CHECK_MSG(active == BOUND, "%d tasks running at once, the bound is %d", active, BOUND);
    sleep_ms(30); /* and no more start */
    CHECK_EQ(active_count(r, N), BOUND);
    CHECK_EQ(proc_threads("grow-"), BOUND);
    atomic_store(&gate, 1);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    pthread_t threads[N];
    int distinct = 0;
    for (int i = 0; i < N; i++) {
        CHECK_EQ(atomic_load(&r[i].dones), 1);
        CHECK_EQ(atomic_load(&r[i].work_runs), 1);
        if (!contains_thread(threads, distinct, r[i].work_thread)) threads[distinct++] = r[i].work_thread;
        WAIT_FREED(r[i]);
    }
    CHECK_MSG(distinct == BOUND, "%d distinct threads ran the tasks, the bound is %d", distinct, BOUND);
    CHECK_EQ(proc_threads("grow-"), BOUND);
    weft_pool_free(p);
    CHECK_EQ(proc_threads_settled("grow-", 0), 0);
    weft_loop_free(lp);
}

/* Tasks that wait for one another (a barrier of `n` parties), as blocking IO work may:
 * an IO pool whose bound is at least n must run all n at once. */
typedef struct {
    _Atomic int arrived;
    int parties;
    _Atomic int timed_out;
} barrier;

static int barrier_work(weft_task *t, void *ud) {
    (void)t;
    barrier *b = (barrier *)ud;
    atomic_fetch_add(&b->arrived, 1);
    uint64_t end = now_ms() + h_slack_ms(1000);
    while (atomic_load(&b->arrived) < b->parties && now_ms() < end) sleep_ms(1);
    if (atomic_load(&b->arrived) < b->parties) {
        atomic_fetch_add(&b->timed_out, 1);
        return 1;
    }
    return 0;
}

/* Spawns `parties` barrier tasks, each once the previous one is running (blocked): an
 * IO pool whose bound allows it must start a thread for each. */
static void spawn_barrier_one_by_one(weft_loop *lp, barrier *b, const weft_spawn_options *so) {
    for (int i = 0; i < b->parties; i++) {
        CHECK_ID(weft_spawn(lp, WEFT_ON_IO, barrier_work, NULL, b, NULL, so));
        WAIT_FOR(atomic_load(&b->arrived) > i, h_slack_ms(200));
    }
}

TEST(io_pool_runs_as_many_blocking_tasks_as_its_bound) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    weft_pool_options o2 = pool_opts(WEFT_POOL_IO, 2, "bar2"), o4 = pool_opts(WEFT_POOL_IO, 4, "bar4");
    weft_pool *p2 = weft_pool_new(&o2), *p4 = weft_pool_new(&o4);
    REQUIRE(p2 != NULL && p4 != NULL);
    weft_spawn_options so2 = spawn_opts(p2, 0), so4 = spawn_opts(p4, 0);
    barrier b2 = {0, 2, 0}, b4 = {0, 4, 0}, b8 = {0, 8, 0};
    spawn_barrier_one_by_one(lp, &b2, &so2);
    spawn_barrier_one_by_one(lp, &b4, &so4);
    spawn_barrier_one_by_one(lp, &b8, NULL);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    CHECK_MSG(atomic_load(&b2.timed_out) == 0, "pool of bound 2: %d of 2 tasks gave up waiting for the other",
              atomic_load(&b2.timed_out));
    CHECK_MSG(atomic_load(&b4.timed_out) == 0, "pool of bound 4: %d of 4 tasks gave up waiting for the others",
              atomic_load(&b4.timed_out));
    CHECK_MSG(atomic_load(&b8.timed_out) == 0, "default IO pool: %d of 8 tasks gave up waiting for the others",
              atomic_load(&b8.timed_out));
    weft_pool_free(p2);
    weft_pool_free(p4);
    weft_loop_free(lp);
}

/* A CPU pool of T threads runs T blocking tasks at once: none waits in a busy worker's
 * deque while another worker sleeps. Fresh pools, tasks submitted in a burst while two
 * other threads keep the CPUs busy (the stall is intermittent). */
static _Atomic int spin_stop;
static void *spinner(void *a) {
    (void)a;
    while (!atomic_load(&spin_stop)) {
    }
    return NULL;
}

TEST(cpu_pool_runs_as_many_blocking_tasks_as_it_has_threads) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    atomic_store(&spin_stop, 0);
    /* Under valgrind, which runs one thread at a time, spinners would starve the pool
     * for seconds per round: a few rounds without them. */
    int spinners = h_valgrind() ? 0 : 2;
    pthread_t sp[2];
    for (int i = 0; i < spinners; i++) pthread_create(&sp[i], NULL, spinner, NULL);
    enum { T = 8 };
    long rounds = h_scale(1000, 1), stuck = 0;
    for (long round = 0; round < rounds && stuck < 3; round++) {
        weft_pool_options o = pool_opts(WEFT_POOL_CPU, T, "stall");
        weft_pool *p = weft_pool_new(&o);
        REQUIRE(p != NULL);
        weft_spawn_options so = spawn_opts(p, 0);
        _Atomic int gate = 0;
        rec r[T];
        spawn_gated(lp, WEFT_ON_CPU, r, T, &gate, &so);
        int active = wait_active(r, T, T, h_slack_ms(1000));
        if (active != T) {
            stuck++;
            h_fail(__FILE__, __LINE__, "round %ld: %d of %d tasks running after 1 s on an idle %d-thread pool", round,
                   active, T, T);
        }
        atomic_store(&gate, 1);
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
        for (int i = 0; i < T; i++) WAIT_FREED(r[i]);
        weft_pool_free(p);
    }
    atomic_store(&spin_stop, 1);
    for (int i = 0; i < spinners; i++) pthread_join(sp[i], NULL);
    weft_loop_free(lp);
}

/* An idle IO thread exits after keep_alive_ms; a busy one does not, however long its
 * work; the pool starts threads again for later work (with new indices). */
TEST(io_keep_alive_retires_idle_threads) {
    unsigned keep = (unsigned)h_slack_ms(100);
    weft_pool_options o = pool_opts(WEFT_POOL_IO, 3, "kal");
    o.keep_alive_ms = keep;
    weft_pool *p = weft_pool_new(&o);
    REQUIRE(p != NULL);
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    weft_spawn_options so = spawn_opts(p, 0);
    rec quick, slow, again;
    rec_init(&quick), rec_init(&slow), rec_init(&again);
    /* One quick task: its thread stays a while, then retires. */
    uint64_t t0 = now_ms();
    CHECK_ID(rec_spawn(lp, WEFT_ON_IO, &quick, &so));
    CHECK(run_until(lp, &quick.dones, 1, h_slack_ms(2000)));
    CHECK_MSG(strcmp(quick.work_name, "kal-0") == 0, "work ran on \"%s\"", quick.work_name);
    if (now_ms() - t0 < keep / 2) CHECK_EQ(proc_threads("kal-"), 1);
    CHECK_MSG(WAIT_FOR(proc_threads("kal-") == 0, keep + h_slack_ms(500)), "%d threads after the keep-alive",
              proc_threads("kal-"));
    CHECK(now_ms() - t0 >= keep - 5);
    /* A task busy for twice the keep-alive keeps its thread. */
    slow.sleep_ms = keep * 2;
    CHECK_ID(rec_spawn(lp, WEFT_ON_IO, &slow, &so));
    REQUIRE(WAIT_FOR(atomic_load(&slow.work_active) == 1, h_slack_ms(2000)));
    sleep_ms(keep + keep / 2);
    CHECK_EQ(atomic_load(&slow.work_active), 1);
    CHECK_EQ(proc_threads("kal-"), 1);
    CHECK(run_until(lp, &slow.dones, 1, h_slack_ms(5000)));
    CHECK_MSG(strcmp(slow.work_name, "kal-1") == 0, "work ran on \"%s\"", slow.work_name);
    CHECK_MSG(WAIT_FOR(proc_threads("kal-") == 0, keep + h_slack_ms(500)), "%d threads after the keep-alive",
              proc_threads("kal-"));
    /* Work again: a new thread, with a new index. */
    CHECK_ID(rec_spawn(lp, WEFT_ON_IO, &again, &so));
    CHECK(run_until(lp, &again.dones, 1, h_slack_ms(2000)));
    CHECK_MSG(strcmp(again.work_name, "kal-2") == 0, "work ran on \"%s\"", again.work_name);
    WAIT_FREED(quick);
    WAIT_FREED(slow);
    WAIT_FREED(again);
    weft_pool_free(p);
    CHECK_EQ(proc_threads_settled("kal-", 0), 0);
    weft_loop_free(lp);
}

/* ---- stack size ------------------------------------------------------------------------- */

static int stack_work(weft_task *t, void *ud) {
    (void)ud;
    pthread_attr_t a;
    size_t size = 0;
    if (pthread_getattr_np(pthread_self(), &a) == 0) {
        pthread_attr_getstacksize(&a, &size);
        pthread_attr_destroy(&a);
    }
    weft_task_write(t, &size, sizeof size);
    /* Use some of it. */
    volatile char buf[64 * 1024];
    for (size_t i = 0; i < sizeof buf; i += 4096) buf[i] = (char)i;
    return buf[4096] == 0 ? 1 : 0;
}

TEST(stack_size_is_applied) {
    size_t sizes[] = {256 * 1024, 16 * 1024 * 1024};
    weft_pool_kind kinds[] = {WEFT_POOL_CPU, WEFT_POOL_IO};
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    for (int k = 0; k < 2; k++)
        for (int s = 0; s < 2; s++) {
            weft_pool_options o = pool_opts(kinds[k], 1, "stk");
            o.stack_size = sizes[s];
            weft_pool *p = weft_pool_new(&o);
            REQUIRE(p != NULL);
            weft_spawn_options so = spawn_opts(p, 0);
            rec r;
            rec_init(&r);
            CHECK_ID(weft_spawn(lp, kinds[k] == WEFT_POOL_CPU ? WEFT_ON_CPU : WEFT_ON_IO, stack_work, rec_done, &r,
                                rec_free, &so));
            CHECK(run_until(lp, &r.dones, 1, h_slack_ms(5000)));
            size_t got = 0;
            memcpy(&got, r.head, sizeof got);
            CHECK_MSG(got >= sizes[s] && got < sizes[s] + (1u << 20),
                      "stack_size %zu: the thread's stack is %zu bytes", sizes[s], got);
            WAIT_FREED(r);
            weft_pool_free(p);
        }
    weft_loop_free(lp);
}
