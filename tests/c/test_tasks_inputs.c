/* Tasks given bad inputs (NULLs, stale ids, huge values, the wrong thread), and a
 * million tasks with cancels from three threads. */
#include "harness.h"
#include "tasks_util.h"
#include "tasks_work.h"

#include <poll.h>
#include <sched.h>

/* ---- bad inputs ------------------------------------------------------------------ */

static _Atomic int never_runs;
static int never_work(weft_task *t, void *ud) {
    (void)t, (void)ud;
    atomic_fetch_add(&never_runs, 1);
    h_fail(__FILE__, __LINE__, "work of a failed spawn ran");
    return 0;
}
static void never_done(weft_loop *lp, weft_id id, int s, const uint8_t *r, size_t n, void *ud) {
    (void)lp, (void)id, (void)s, (void)r, (void)n, (void)ud;
    h_fail(__FILE__, __LINE__, "done of a failed spawn ran");
}

/* Every refused spawn returns 0 with a message naming weft_spawn and the argument, and
 * never calls work, done or free_fn. */
TEST(bad_spawns_are_refused_without_calling_free_fn) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    int ud = 0;
    atomic_store(&never_runs, 0);
    CHECK_ID_FAILS(weft_spawn(NULL, WEFT_ON_CPU, never_work, never_done, &ud, never_free, NULL), "loop");
    CHECK_RC(weft_spawn(NULL, WEFT_ON_CPU, never_work, never_done, &ud, never_free, NULL), 0);
    CHECK_ERR_HAS("weft_spawn");
    CHECK_ID_FAILS(weft_spawn(lp, WEFT_ON_CPU, NULL, never_done, &ud, never_free, NULL), "work");
    CHECK_ID_FAILS(weft_spawn(lp, WEFT_ON_LOOP, NULL, NULL, NULL, NULL, NULL), "work");
    CHECK_ID_FAILS(weft_spawn(lp, 4, never_work, never_done, &ud, never_free, NULL), "4");
    CHECK_ID_FAILS(weft_spawn(lp, -1, never_work, never_done, &ud, never_free, NULL), "-1");
    CHECK_ID_FAILS(weft_spawn(lp, 1000, never_work, never_done, &ud, never_free, NULL), "1000");
    /* The codes, through weft_strerror's view of the last failure's kind. */
    weft_spawn_options so = spawn_opts(NULL, 0);
    /* Smaller than the first version of the struct (size, timeout_ms, pool: 24 bytes on
     * LP64), or absurdly large. */
    size_t first_version = offsetof(weft_spawn_options, pool) + sizeof(void *);
    size_t sizes[] = {0, 1, first_version - 1, (size_t)1 << 20, SIZE_MAX};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        so.size = sizes[i];
        CHECK_ID_FAILS(weft_spawn(lp, WEFT_ON_CPU, never_work, never_done, &ud, never_free, &so), "size");
        CHECK_ID_FAILS(weft_spawn(lp, WEFT_ON_LOOP, never_work, never_done, &ud, never_free, &so), "size");
    }
    /* A pool with a loop task. */
    weft_pool_options po = pool_opts(WEFT_POOL_CPU, 1, "bad1");
    weft_pool *cpu = weft_pool_new(&po);
    po = pool_opts(WEFT_POOL_IO, 1, "bad2");
    weft_pool *io = weft_pool_new(&po);
    REQUIRE(cpu != NULL && io != NULL);
    so = spawn_opts(cpu, 0);
    CHECK_ID_FAILS(weft_spawn(lp, WEFT_ON_LOOP, never_work, never_done, &ud, never_free, &so), "pool");
    /* Pools of the wrong kind. */
    CHECK_ID_FAILS(weft_spawn(lp, WEFT_ON_IO, never_work, never_done, &ud, never_free, &so), "pool");
    so = spawn_opts(io, 0);
    CHECK_ID_FAILS(weft_spawn(lp, WEFT_ON_CPU, never_work, never_done, &ud, never_free, &so), "pool");
    CHECK_ID_FAILS(weft_spawn(lp, WEFT_ON_PROCESS, never_work, never_done, &ud, never_free, &so), "process tasks use no pool");
    weft_pool_free(cpu);
    weft_pool_free(io);
    /* Freed pools: an error, not a crash. */
    so = spawn_opts(cpu, 0);
    CHECK_ID_FAILS(weft_spawn(lp, WEFT_ON_CPU, never_work, never_done, &ud, never_free, &so), "pool");
    so = spawn_opts(io, 0);
    CHECK_ID_FAILS(weft_spawn(lp, WEFT_ON_IO, never_work, never_done, &ud, never_free, &so), "pool");
    /* Something that never was a pool. */
    so = spawn_opts((weft_pool *)&ud, 0);
    CHECK_ID_FAILS(weft_spawn(lp, WEFT_ON_IO, never_work, never_done, &ud, never_free, &so), "pool");
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(weft_loop_alive(lp), 0);
    sleep_ms(20);
    CHECK_EQ(atomic_load(&never_runs), 0);
    weft_loop_free(lp);
}

/* The messages of refused spawns name the function and what is wrong. (weft_spawn
 * returns an id, so the message is all a caller learns of the error.) */
TEST(bad_spawn_messages_name_the_problem) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    weft_pool_options po = pool_opts(WEFT_POOL_CPU, 1, "msg");
    weft_pool *pool = weft_pool_new(&po);
    REQUIRE(pool != NULL);
    weft_spawn_options with_pool = spawn_opts(pool, 0);
    CHECK_ID_FAILS(weft_spawn(lp, WEFT_ON_PROCESS, never_work, never_done, NULL, never_free, &with_pool),
                   "weft_spawn: ");
    CHECK_ERR_HAS("process tasks use no pool");
    weft_pool_free(pool);
    CHECK_ID_FAILS(weft_spawn(lp, 7, never_work, never_done, NULL, never_free, NULL), "where 7");
    CHECK_ID_FAILS(weft_spawn(lp, WEFT_ON_CPU, NULL, never_done, NULL, never_free, NULL), "work is NULL");
    CHECK_ID_FAILS(weft_spawn(NULL, WEFT_ON_CPU, never_work, never_done, NULL, never_free, NULL),
                   "loop is NULL");
    weft_spawn_options so = spawn_opts(NULL, 0);
    so.size = 3;
    CHECK_ID_FAILS(weft_spawn(lp, WEFT_ON_CPU, never_work, never_done, NULL, never_free, &so), "size 3");
    weft_loop_free(lp);
}

/* Options larger than this library's (a newer header's, with fields it does not know,
 * zero) are accepted; NULL options are the defaults. */
TEST(spawn_options_from_a_newer_header_are_accepted) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    struct {
        weft_spawn_options o;
        uint64_t future[4];
    } big;
    memset(&big, 0, sizeof big);
    big.o.size = sizeof big;
    rec r;
    rec_init(&r);
    r.ret = 6;
    CHECK_ID(rec_spawn(lp, WEFT_ON_CPU, &r, &big.o));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    CHECK_EQ(r.status, 6);
    WAIT_FREED(r);
    CHECK_EQ(atomic_load(&r.frees), 1);
    weft_loop_free(lp);
}

/* weft_task_* with bad arguments, from inside work: errors, never crashes. */
static int bad_task_calls_work(weft_task *t, void *ud) {
    (void)ud;
    CHECK(!weft_task_cancelled(NULL));
    CHECK(!weft_task_cancelled(t));
    CHECK_RC(weft_task_write(NULL, "a", 1), WEFT_ERR_NULL);
    CHECK_ERR_HAS("weft_task_write");
    CHECK_RC(weft_task_write(NULL, NULL, 0), WEFT_ERR_NULL);
    CHECK_RC(weft_task_write(t, NULL, 5), WEFT_ERR_NULL);
    CHECK_ERR_HAS("buf");
    CHECK_RC(weft_task_write(t, "a", (size_t)PTRDIFF_MAX + 1), WEFT_ERR_INVALID);
    CHECK_RC(weft_task_emit(NULL, "x", "a", 1), WEFT_ERR_NULL);
    CHECK_ERR_HAS("weft_task_emit");
    CHECK_RC(weft_task_emit(t, NULL, "a", 1), WEFT_ERR_NULL);
    CHECK_ERR_HAS("topic");
    CHECK_RC(weft_task_emit(t, "x", NULL, 1), WEFT_ERR_NULL);
    CHECK_RC(weft_task_emit(t, "", NULL, 0), WEFT_ERR_INVALID);
    CHECK_RC(weft_task_emit(t, "a.*", NULL, 0), WEFT_ERR_INVALID);
    CHECK_RC(weft_task_emit(t, "*", NULL, 0), WEFT_ERR_INVALID);
    CHECK_RC(weft_task_emit(t, "\xff\xfe", NULL, 0), WEFT_ERR_INVALID);
    CHECK_RC(weft_task_emit(t, "x", "a", (size_t)PTRDIFF_MAX + 1), WEFT_ERR_INVALID);
    CHECK_OK(weft_task_emit(t, "ok", NULL, 0));
    CHECK_OK(weft_task_write(t, "ok", 2));
    return 0;
}

TEST(bad_task_calls_are_errors) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    track sub;
    track_init(&sub);
    CHECK_ID(weft_subscribe(lp, "*", track_event_cb, &sub, NULL));
    weft_where wheres[] = {WEFT_ON_LOOP, WEFT_ON_IO, WEFT_ON_CPU};
    rec r[3];
    for (int w = 0; w < 3; w++) {
        rec_init(&r[w]);
        CHECK_ID(weft_spawn(lp, wheres[w], bad_task_calls_work, rec_done, &r[w], rec_free, NULL));
    }
    int all = 0;
    uint64_t end = now_ms() + h_slack_ms(5000);
    while (all < 3 && now_ms() < end) {
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
        all = atomic_load(&r[0].dones) + atomic_load(&r[1].dones) + atomic_load(&r[2].dones);
        sleep_ms(1);
    }
    for (int w = 0; w < 3; w++) {
        CHECK_EQ(atomic_load(&r[w].dones), 1);
        CHECK_EQ(r[w].status, 0);
        CHECK_EQ(r[w].len, 2);
        WAIT_FREED(r[w]);
    }
    CHECK_EQ(atomic_load(&sub.calls), 3); /* only the good emits */
    CHECK_EQ(weft_task_cancelled(NULL), false);
    CHECK_RC(weft_task_write(NULL, NULL, 0), WEFT_ERR_NULL);
    CHECK_RC(weft_task_emit(NULL, NULL, NULL, 0), WEFT_ERR_NULL);
    weft_loop_free(lp);
}

/* Task ids are checked: another loop's task id, a stale one (done has run), a freed
 * loop's, a forged one and 0 are NOT_FOUND, and leave the tasks alone. */
TEST(foreign_stale_and_forged_task_ids) {
    weft_loop *a = weft_loop_new(), *b = weft_loop_new();
    REQUIRE(a != NULL && b != NULL);
    _Atomic int gate = 0;
    rec ra, rb;
    rec_init(&ra), rec_init(&rb);
    ra.gate = &gate, ra.ret = 11;
    rb.gate = &gate, rb.ret = 12;
    weft_id ia = CHECK_ID(rec_spawn(a, WEFT_ON_IO, &ra, NULL));
    weft_id ib = CHECK_ID(rec_spawn(b, WEFT_ON_CPU, &rb, NULL));
    CHECK(ia != ib);
    CHECK_RC(weft_cancel(b, ia), WEFT_ERR_NOT_FOUND);
    CHECK_RC(weft_cancel(a, ib), WEFT_ERR_NOT_FOUND);
    CHECK_RC(weft_cancel(a, 0), WEFT_ERR_NOT_FOUND);
    CHECK_RC(weft_cancel(NULL, ia), WEFT_ERR_NULL);
    for (int bit = 0; bit < 64; bit++) CHECK_RC(weft_cancel(a, ia ^ (1ull << bit)), WEFT_ERR_NOT_FOUND);
    atomic_store(&gate, 1);
    CHECK(run_until(a, &ra.dones, 1, h_slack_ms(5000)));
    CHECK(run_until(b, &rb.dones, 1, h_slack_ms(5000)));
    CHECK_EQ(ra.status, 11); /* neither was cancelled */
    CHECK_EQ(rb.status, 12);
    CHECK_RC(weft_cancel(a, ia), WEFT_ERR_NOT_FOUND); /* stale */
    CHECK_RC(weft_cancel(b, ib), WEFT_ERR_NOT_FOUND);
    /* A new task in a's slot: the old id stays stale. */
    rec rc;
    rec_init(&rc);
    rc.gate = &gate;
    weft_id ic = CHECK_ID(rec_spawn(a, WEFT_ON_IO, &rc, NULL));
    CHECK(ic != ia);
    CHECK_RC(weft_cancel(a, ia), WEFT_ERR_NOT_FOUND);
    CHECK(run_until(a, &rc.dones, 1, h_slack_ms(5000)));
    CHECK_EQ(rc.status, 0);
    WAIT_FREED(ra);
    WAIT_FREED(rb);
    WAIT_FREED(rc);
    /* A freed loop's task id, given to a new loop. */
    weft_loop_free(b);
    weft_loop *c = weft_loop_new();
    REQUIRE(c != NULL);
    CHECK_RC(weft_cancel(c, ib), WEFT_ERR_NOT_FOUND);
    weft_loop_free(c);
    weft_loop_free(a);
}

/* ---- a million tasks ------------------------------------------------------------- */

/* Per task: 8 bytes. status_seen: 0 none, 1 work's status with its result, 2
 * CANCELLED, 3 anything else. */
typedef struct stask {
    _Atomic uint8_t work_runs, dones, frees, cancel_ok;
    _Atomic uint8_t status_seen, free_early;
    uint8_t where;
    uint8_t pad;
} stask;

static stask *st_base;
static _Atomic long st_done_total, st_free_total, st_work_total;
static _Atomic long st_wrong_thread, st_bad_result;
static pthread_t st_loop_thread;

static int st_work(weft_task *t, void *ud) {
    stask *s = (stask *)ud;
    uint32_t index = (uint32_t)(s - st_base);
    atomic_fetch_add(&s->work_runs, 1);
    atomic_fetch_add(&st_work_total, 1);
    weft_task_write(t, &index, sizeof index);
    return (int)(index % 7);
}

static void st_done(weft_loop *lp, weft_id id, int status, const uint8_t *res, size_t len, void *ud) {
    (void)lp, (void)id;
    stask *s = (stask *)ud;
    uint32_t index = (uint32_t)(s - st_base), got = 0;
    if (!pthread_equal(pthread_self(), st_loop_thread)) atomic_fetch_add(&st_wrong_thread, 1);
    if (status >= 0) {
        if (len == sizeof got) memcpy(&got, res, sizeof got);
        if (status != (int)(index % 7) || len != sizeof got || got != index) {
            atomic_fetch_add(&st_bad_result, 1);
            atomic_store(&s->status_seen, 3);
        } else {
            atomic_store(&s->status_seen, 1);
        }
    } else {
        atomic_store(&s->status_seen, status == WEFT_ERR_CANCELLED ? 2 : 3);
    }
    atomic_fetch_add(&s->dones, 1);
    atomic_fetch_add(&st_done_total, 1);
}

static void st_free(void *ud) {
    stask *s = (stask *)ud;
    if (atomic_load(&s->dones) == 0) atomic_store(&s->free_early, 1);
    atomic_fetch_add(&s->frees, 1);
    atomic_fetch_add(&st_free_total, 1);
}

/* Spawners 0 and 1 call weft_spawn on threads of their own; spawner 2 posts callbacks
 * that spawn from the loop thread (CPU tasks there live in the loop's task table). */
enum { ST_SPAWNERS = 3, ST_FROM_LOOP = 2, ST_CANCELLERS = 3 };

typedef struct {
    weft_loop *lp;
    long first, count;
    _Atomic weft_id *ids;
    _Atomic long progress; /* tasks spawned (or refused) so far */
    long window;
    long refused;
    _Atomic long *spawned_total;
    void *self_base; /* the array of spawners */
} st_spawner;

static void st_spawn_one(st_spawner *sp, long i) {
    long index = sp->first + i;
    stask *s = &st_base[index];
    unsigned r = (unsigned)(index * 2654435761u) >> 8;
    weft_where where = r % 16 == 0 ? WEFT_ON_LOOP : (r % 2 ? WEFT_ON_CPU : WEFT_ON_IO);
    s->where = (uint8_t)where;
    weft_id id = weft_spawn(sp->lp, where, st_work, st_done, s, st_free, NULL);
    if (id == 0) {
        if (sp->refused++ < 5) h_fail_e(__FILE__, __LINE__, "weft_spawn of task %ld refused", index);
    } else {
        atomic_fetch_add(sp->spawned_total, 1);
    }
    atomic_store(&sp->ids[index], id);
    atomic_store(&sp->progress, i + 1);
}

typedef struct {
    st_spawner *sp;
    long from, to;
} st_batch;

static void st_batch_cb(weft_loop *lp, weft_id id, void *ud) {
    (void)lp, (void)id;
    st_batch b = *(st_batch *)ud; /* the poster reuses it once the last task is spawned */
    for (long i = b.from; i < b.to; i++) st_spawn_one(b.sp, i);
}

static void *st_spawn_main(void *arg) {
    st_spawner *sp = (st_spawner *)arg;
    bool from_loop = sp == (st_spawner *)sp->self_base + ST_FROM_LOOP;
    static st_batch batches[ST_SPAWNERS];
    for (long i = 0; i < sp->count;) {
        /* Keep at most `window` tasks of this spawner in flight. */
        while (atomic_load(sp->spawned_total) - atomic_load(&st_done_total) > sp->window) sched_yield();
        if (!from_loop) {
            st_spawn_one(sp, i++);
            continue;
        }
        /* A batch of 1..200 spawned by a loop callback. */
        long k = 1 + (long)(((unsigned)(i * 2654435761u) >> 8) % 200);
        st_batch *b = &batches[ST_FROM_LOOP];
        long to = i + k < sp->count ? i + k : sp->count;
        *b = (st_batch){sp, i, to};
        if (weft_post(sp->lp, st_batch_cb, b, NULL) == 0) {
            h_fail_e(__FILE__, __LINE__, "weft_post refused");
            break;
        }
        while (atomic_load(&sp->progress) < to) sched_yield();
        i = to;
    }
    return NULL;
}

typedef struct {
    weft_loop *lp;
    st_spawner *spawners;
    _Atomic weft_id *ids;
    _Atomic int *stop;
    uint64_t seed;
    long ok, not_found, other;
} st_canceller;

static void *st_cancel_main(void *arg) {
    st_canceller *c = (st_canceller *)arg;
    while (!atomic_load(c->stop)) {
        c->seed ^= c->seed << 13, c->seed ^= c->seed >> 7, c->seed ^= c->seed << 17;
        st_spawner *sp = &c->spawners[c->seed % ST_SPAWNERS];
        long p = atomic_load(&sp->progress);
        if (p == 0) {
            sched_yield();
            continue;
        }
        /* Mostly recent tasks (queued or running), sometimes any (mostly done). */
        long back = (long)((c->seed >> 8) % (uint64_t)((c->seed >> 40) % 8 ? (p < 512 ? p : 512) : p));
        long index = sp->first + p - 1 - back;
        weft_id id = atomic_load(&c->ids[index]);
        if (id == 0) continue;
        int rc = weft_cancel(c->lp, id);
        if (rc == WEFT_OK) {
            c->ok++;
            atomic_fetch_add(&st_base[index].cancel_ok, 1);
        } else if (rc == WEFT_ERR_NOT_FOUND) {
            c->not_found++;
        } else {
            if (c->other++ < 5) h_fail(__FILE__, __LINE__, "weft_cancel returned %d", rc);
        }
        if ((c->seed >> 20) % 4 == 0) sched_yield();
    }
    return NULL;
}

/* 1,000,000 tasks (20,000 under valgrind) over the default IO and CPU pools (and
 * some on the loop), spawned from two threads and from the loop's own callbacks while
 * the loop runs on a third thread, with cancels at random from three more. Every task spawned gets done exactly once, on the
 * loop thread; every free_fn runs exactly once, after done; work runs at most once, and
 * exactly once when done got its status; done got CANCELLED only for a task some
 * weft_cancel returned OK for, and at most one did per task. */
TEST(million_tasks_exactly_once_with_cancels_from_three_threads) {
    long n = h_scale(1000000, 20000);
    st_base = calloc((size_t)n, sizeof *st_base);
    _Atomic weft_id *ids = calloc((size_t)n, sizeof *ids);
    REQUIRE(st_base != NULL && ids != NULL);
    atomic_store(&st_done_total, 0), atomic_store(&st_free_total, 0), atomic_store(&st_work_total, 0);
    atomic_store(&st_wrong_thread, 0), atomic_store(&st_bad_result, 0);
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    weft_id keep = CHECK_ID(weft_subscribe(lp, "keepalive", never_event_cb, NULL, NULL));
    bg_loop b;
    bg_start(&b, lp, WEFT_RUN_DEFAULT);
    st_loop_thread = b.thread;
    uint64_t t0 = now_ms();
    _Atomic long spawned_total = 0;
    _Atomic int stop = 0;
    st_spawner sp[ST_SPAWNERS];
    st_canceller cc[ST_CANCELLERS];
    pthread_t spt[ST_SPAWNERS], cct[ST_CANCELLERS];
    for (int i = 0; i < ST_SPAWNERS; i++) {
        sp[i] = (st_spawner){lp, n / ST_SPAWNERS * i, n / ST_SPAWNERS, ids, 0, h_scale(20000, 2000), 0,
                             &spawned_total, sp};
        if (i == ST_SPAWNERS - 1) sp[i].count = n - sp[i].first;
    }
    for (int i = 0; i < ST_CANCELLERS; i++)
        cc[i] = (st_canceller){lp, sp, ids, &stop, 0x9E3779B97F4A7C15ull * (uint64_t)(i + 3), 0, 0, 0};
    for (int i = 0; i < ST_SPAWNERS; i++) pthread_create(&spt[i], NULL, st_spawn_main, &sp[i]);
    for (int i = 0; i < ST_CANCELLERS; i++) pthread_create(&cct[i], NULL, st_cancel_main, &cc[i]);
    for (int i = 0; i < ST_SPAWNERS; i++) pthread_join(spt[i], NULL);
    uint64_t t_spawned = now_ms();
    long spawned = atomic_load(&spawned_total);
    CHECK(WAIT_FOR(atomic_load(&st_done_total) >= spawned, h_slack_ms(20000)));
    atomic_store(&stop, 1);
    for (int i = 0; i < ST_CANCELLERS; i++) pthread_join(cct[i], NULL);
    CHECK(WAIT_FOR(atomic_load(&st_free_total) >= spawned, h_slack_ms(10000)));
    uint64_t t_over = now_ms();
    CHECK_OK(weft_cancel(lp, keep));
    bg_join(&b, h_slack_ms(5000), "return once the last task is over");
    CHECK_EQ(b.rc, WEFT_OK);
    CHECK_EQ(spawned, n);
    CHECK_EQ(atomic_load(&st_done_total), spawned);
    CHECK_EQ(atomic_load(&st_free_total), spawned);
    CHECK_EQ(atomic_load(&st_wrong_thread), 0);
    CHECK_EQ(atomic_load(&st_bad_result), 0);
    long cancels_ok = 0, cancels_nf = 0, cancelled = 0, completed = 0, ran_cancelled = 0;
    long bad_done = 0, bad_free = 0, bad_work = 0, bad_cancel = 0, early_free = 0, ok_but_completed = 0;
    for (int i = 0; i < ST_CANCELLERS; i++) {
        cancels_ok += cc[i].ok;
        cancels_nf += cc[i].not_found;
        CHECK_EQ(cc[i].other, 0);
    }
    for (long i = 0; i < n; i++) {
        stask *s = &st_base[i];
        if (atomic_load(&ids[i]) == 0) continue;
        int works = atomic_load(&s->work_runs), seen = atomic_load(&s->status_seen);
        int cancel_ok = atomic_load(&s->cancel_ok);
        if (atomic_load(&s->dones) != 1) bad_done++;
        if (atomic_load(&s->frees) != 1) bad_free++;
        if (atomic_load(&s->free_early)) early_free++;
        if (works > 1 || (seen == 1 && works != 1)) bad_work++;
        if (cancel_ok > 1 || (seen == 2 && cancel_ok != 1)) bad_cancel++;
        if (seen == 1 && cancel_ok == 1) ok_but_completed++; /* cancel during done */
        if (seen == 2) cancelled++, ran_cancelled += works;
        if (seen == 1) completed++;
        if (seen == 3) bad_done++;
    }
    CHECK_EQ(bad_done, 0);
    CHECK_EQ(bad_free, 0);
    CHECK_EQ(early_free, 0);
    CHECK_EQ(bad_work, 0);
    CHECK_EQ(bad_cancel, 0);
    CHECK_EQ(cancelled + completed, spawned);
    CHECK_EQ(cancels_ok, cancelled + ok_but_completed);
    CHECK_MSG(cancelled > 0, "no task was cancelled: the cancellers did nothing");
    printf("    %ld tasks: spawned in %" PRIu64 " ms, all over in %" PRIu64 " ms; %ld completed, %ld cancelled "
           "(%ld of them while running), %ld cancels NOT_FOUND, %ld cancels OK while done ran\n",
           spawned, t_spawned - t0, t_over - t0, completed, cancelled, ran_cancelled, cancels_nf,
           ok_but_completed);
    weft_loop_free(lp);
    free(ids);
    free(st_base);
    st_base = NULL;
}

/* Last: weft_shutdown joins the default pools every case above used, leaving no weft
 * thread behind (and valgrind no pool thread to report). */
TEST(weft_shutdown_at_the_end_leaves_no_weft_thread) {
    weft_shutdown();
    CHECK_EQ(proc_threads_settled("weft-", 0), 0);
}
