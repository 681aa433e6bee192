/* Tasks (weft_spawn): work on the loop, the IO pool or the CPU pool; done on the loop
 * thread exactly once with the work's status and result, or CANCELLED / TIMEOUT;
 * free_fn exactly once, after both; events emitted by work before done; cancel before,
 * during and after the work; timeouts; nested spawns; a loop freed with tasks in
 * flight; bad inputs; and a million tasks with cancels from three threads. */
#include "harness.h"
#include "tasks_util.h"

#include <poll.h>
#include <sched.h>

static const char *where_name(weft_where w) {
    return w == WEFT_ON_LOOP ? "loop" : w == WEFT_ON_IO ? "io" : w == WEFT_ON_CPU ? "cpu" : "?";
}

/* ---- the basics ------------------------------------------------------------------ */

/* On each of LOOP, IO and CPU: work runs once on the right thread; done runs once on
 * the loop thread with the loop, the task's id, the status work returned and the bytes
 * it wrote; free_fn runs once, after done. (Its thread: see
 * free_fn_of_a_completed_task_runs_on_the_loop_thread.) */
TEST(work_and_done_run_once_in_the_right_places) {
    weft_where wheres[] = {WEFT_ON_LOOP, WEFT_ON_IO, WEFT_ON_CPU};
    for (int w = 0; w < 3; w++) {
        weft_loop *lp = weft_loop_new();
        REQUIRE(lp != NULL);
        rec r;
        rec_init(&r);
        r.ret = 42;
        r.out = (const unsigned char *)"hello";
        r.out_len = 5;
        weft_id id = CHECK_ID(rec_spawn(lp, wheres[w], &r, NULL));
        CHECK_MSG(run_until(lp, &r.dones, 1, h_slack_ms(5000)), "%s: done never ran", where_name(wheres[w]));
        CHECK_MSG(WAIT_FOR(atomic_load(&r.frees) == 1, h_slack_ms(2000)), "%s: free_fn never ran",
                  where_name(wheres[w]));
        CHECK_EQ(atomic_load(&r.work_runs), 1);
        CHECK_EQ(atomic_load(&r.dones), 1);
        CHECK_EQ(atomic_load(&r.frees), 1);
        CHECK_EQ(r.status, 42);
        CHECK_EQ(r.len, 5);
        CHECK(memcmp(r.head, "hello", 5) == 0);
        CHECK(r.done_lp == lp);
        CHECK(r.done_id == id);
        CHECK(pthread_equal(r.done_thread, pthread_self()));
        CHECK_EQ(atomic_load(&r.dones_at_free), 1); /* free_fn after done */
        CHECK_EQ(atomic_load(&r.done_after_free), 0);
        if (wheres[w] == WEFT_ON_LOOP) {
            CHECK_MSG(pthread_equal(r.work_thread, pthread_self()), "loop work ran on \"%s\"", r.work_name);
        } else {
            CHECK(!pthread_equal(r.work_thread, pthread_self()));
            const char *prefix = wheres[w] == WEFT_ON_IO ? "weft-io-" : "weft-cpu-";
            CHECK_MSG(starts_with(r.work_name, prefix), "%s work ran on thread \"%s\", expected %s*",
                      where_name(wheres[w]), r.work_name, prefix);
        }
        /* The task is over: its id is stale, and the loop has nothing left. */
        CHECK_RC(weft_cancel(lp, id), WEFT_ERR_NOT_FOUND);
        CHECK_EQ(weft_loop_alive(lp), 0);
        weft_loop_free(lp);
    }
}

static _Atomic int plain_runs;
static int plain_work(weft_task *t, void *ud) {
    (void)t, (void)ud;
    atomic_fetch_add(&plain_runs, 1);
    return 3;
}

/* done may be NULL, and so may free_fn. */
TEST(done_and_free_fn_may_be_null) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    atomic_store(&plain_runs, 0);
    rec r[3];
    for (int i = 0; i < 3; i++) rec_init(&r[i]);
    weft_where wheres[] = {WEFT_ON_LOOP, WEFT_ON_IO, WEFT_ON_CPU};
    for (int i = 0; i < 3; i++) {
        CHECK_ID(weft_spawn(lp, wheres[i], rec_work, NULL, &r[i], rec_free, NULL));
        CHECK_ID(weft_spawn(lp, wheres[i], plain_work, NULL, NULL, NULL, NULL));
    }
    /* RUN_DEFAULT keeps running while tasks are in flight, done or not. */
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(atomic_load(&r[i].work_runs), 1);
        WAIT_FREED(r[i]);
        CHECK_EQ(atomic_load(&r[i].frees), 1);
    }
    CHECK_EQ(atomic_load(&plain_runs), 3);
    weft_loop_free(lp);
}

/* Status values go through as work returned them. */
TEST(status_values_pass_through) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    int values[] = {0, 1, 7, 255, 65536, INT_MAX};
    enum { N = sizeof values / sizeof values[0] };
    rec r[N];
    for (int i = 0; i < N; i++) {
        rec_init(&r[i]);
        r[i].ret = values[i];
        CHECK_ID(rec_spawn(lp, i % 2 ? WEFT_ON_CPU : WEFT_ON_IO, &r[i], NULL));
    }
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    for (int i = 0; i < N; i++) {
        CHECK_EQ(atomic_load(&r[i].dones), 1);
        CHECK_EQ(r[i].status, values[i]);
        CHECK_EQ(r[i].len, 0);
        WAIT_FREED(r[i]);
    }
    weft_loop_free(lp);
}

/* RUN_DEFAULT waits for a task in flight (nothing else registered), then returns. */
TEST(run_default_waits_for_tasks_in_flight) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    rec r;
    rec_init(&r);
    r.sleep_ms = 50;
    r.ret = 9;
    CHECK_ID(rec_spawn(lp, WEFT_ON_IO, &r, NULL));
    CHECK_EQ(weft_loop_alive(lp), 1);
    uint64_t t0 = now_ms();
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    CHECK(now_ms() - t0 >= 45);
    CHECK_EQ(atomic_load(&r.dones), 1);
    CHECK_EQ(r.status, 9);
    CHECK_EQ(weft_loop_alive(lp), 0);
    WAIT_FREED(r);
    weft_loop_free(lp);
}

/* ---- results ----------------------------------------------------------------------- */

/* Results of 0 bytes, 1 byte, many small writes, 1 MB in one write and 1 MB in 1 KB
 * writes arrive whole, on every kind of task. */
TEST(results_of_various_sizes_arrive_whole) {
    size_t mb = 1 << 20;
    unsigned char *big = malloc(mb);
    REQUIRE(big != NULL);
    for (size_t i = 0; i < mb; i++) big[i] = (unsigned char)(i * 131 + (i >> 11));
    struct {
        size_t len, chunk;
    } shapes[] = {{0, 0}, {1, 0}, {100, 7}, {4096, 16}, {1 << 20, 0}, {1 << 20, 1024}};
    enum { S = sizeof shapes / sizeof shapes[0] };
    weft_where wheres[] = {WEFT_ON_LOOP, WEFT_ON_IO, WEFT_ON_CPU};
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    rec r[3][S];
    for (int w = 0; w < 3; w++)
        for (int s = 0; s < S; s++) {
            rec_init(&r[w][s]);
            r[w][s].out = big;
            r[w][s].out_len = shapes[s].len;
            r[w][s].out_chunk = shapes[s].chunk;
            r[w][s].ret = s;
            CHECK_ID(rec_spawn(lp, wheres[w], &r[w][s], NULL));
        }
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    for (int w = 0; w < 3; w++)
        for (int s = 0; s < S; s++) {
            rec *x = &r[w][s];
            CHECK_EQ(atomic_load(&x->dones), 1);
            CHECK_EQ(x->status, s);
            CHECK_MSG(x->len == shapes[s].len, "%s task, %zu bytes in chunks of %zu: done got %zu bytes",
                      where_name(wheres[w]), shapes[s].len, shapes[s].chunk, x->len);
            CHECK_MSG(x->hash == fnv(big, shapes[s].len), "%s task, %zu bytes: result differs",
                      where_name(wheres[w]), shapes[s].len);
            WAIT_FREED(*x);
            CHECK_EQ(atomic_load(&x->frees), 1);
        }
    weft_loop_free(lp);
    free(big);
}

/* weft_task_write(task, NULL, 0) and (task, buf, 0) are fine and add nothing. */
static int empty_writes_work(weft_task *t, void *ud) {
    (void)ud;
    CHECK_OK(weft_task_write(t, NULL, 0));
    CHECK_OK(weft_task_write(t, "x", 0));
    CHECK_OK(weft_task_write(t, "ab", 2));
    CHECK_OK(weft_task_write(t, NULL, 0));
    return 0;
}

TEST(empty_writes_add_nothing) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    rec r;
    rec_init(&r);
    CHECK_ID(weft_spawn(lp, WEFT_ON_CPU, empty_writes_work, rec_done, &r, rec_free, NULL));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    CHECK_EQ(r.len, 2);
    CHECK(memcmp(r.head, "ab", 2) == 0);
    WAIT_FREED(r);
    CHECK_EQ(atomic_load(&r.frees), 1);
    weft_loop_free(lp);
}

/* ---- events emitted by work ------------------------------------------------------- */

typedef struct {
    _Atomic int seen;
    _Atomic int out_of_order;
    _Atomic int wrong_topic;
    _Atomic int after_done; /* events of a task whose done has run */
    rec *task;
} emit_sub;

static void emit_sub_cb(weft_loop *lp, weft_id id, const char *topic, const void *p, size_t n,
                        void *ud) {
    (void)lp, (void)id;
    emit_sub *s = (emit_sub *)ud;
    int i = -1;
    if (n == sizeof i) memcpy(&i, p, sizeof i);
    if (strcmp(topic, s->task->emit_topic) != 0) atomic_fetch_add(&s->wrong_topic, 1);
    if (i != atomic_load(&s->seen)) atomic_fetch_add(&s->out_of_order, 1);
    if (atomic_load(&s->task->dones) != 0) atomic_fetch_add(&s->after_done, 1);
    atomic_fetch_add(&s->seen, 1);
}

/* done of a task whose events must all have arrived. */
typedef struct {
    rec r;
    emit_sub sub;
    _Atomic int seen_at_done;
} emit_task;

static void emit_task_done(weft_loop *lp, weft_id id, int status, const uint8_t *res, size_t len,
                           void *ud) {
    emit_task *e = (emit_task *)ud;
    atomic_store(&e->seen_at_done, atomic_load(&e->sub.seen));
    rec_done(lp, id, status, res, len, &e->r);
}
static int emit_task_work(weft_task *t, void *ud) { return rec_work(t, &((emit_task *)ud)->r); }

/* Work on each kind of thread emits 200 events; its subscriber gets all of them, in
 * order, before done runs. */
TEST(events_emitted_by_work_arrive_in_order_before_done) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    weft_where wheres[] = {WEFT_ON_LOOP, WEFT_ON_IO, WEFT_ON_CPU};
    const char *topics[] = {"prog.loop", "prog.io", "prog.cpu"};
    emit_task e[3];
    for (int w = 0; w < 3; w++) {
        memset(&e[w], 0, sizeof e[w]);
        e[w].r.emits = 200;
        e[w].r.emit_topic = topics[w];
        e[w].sub.task = &e[w].r;
        CHECK_ID(weft_subscribe(lp, topics[w], emit_sub_cb, &e[w].sub, NULL));
    }
    for (int w = 0; w < 3; w++)
        CHECK_ID(weft_spawn(lp, wheres[w], emit_task_work, emit_task_done, &e[w], NULL, NULL));
    int all = 0;
    uint64_t end = now_ms() + h_slack_ms(5000);
    while (all < 3 && now_ms() < end) {
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
        all = 0;
        for (int w = 0; w < 3; w++) all += atomic_load(&e[w].r.dones);
        sleep_ms(1);
    }
    for (int w = 0; w < 3; w++) {
        CHECK_EQ(atomic_load(&e[w].r.dones), 1);
        CHECK_MSG(atomic_load(&e[w].seen_at_done) == 200, "%s task: %d of 200 events before done",
                  where_name(wheres[w]), atomic_load(&e[w].seen_at_done));
        CHECK_EQ(atomic_load(&e[w].sub.seen), 200);
        CHECK_EQ(atomic_load(&e[w].sub.out_of_order), 0);
        CHECK_EQ(atomic_load(&e[w].sub.wrong_topic), 0);
        CHECK_EQ(atomic_load(&e[w].sub.after_done), 0);
    }
    weft_loop_free(lp);
}

/* With a pass limit, completions too are spread over passes, and the limit bounds
 * events and completions together (a pass runs at most LIM_PASS callbacks of either
 * kind); the loop's fd stays readable while any wait, and each task's events still
 * arrive before its done, also when the limit splits the events' records from the
 * completions. */
enum { LIM_TASKS = 600, LIM_PASS = 40 };
typedef struct {
    _Atomic int events_of[LIM_TASKS];
    int events_at_done[LIM_TASKS];
    int dones, dones_this_pass, most_in_a_pass, frees;
    int ran_this_pass, most_ran_in_a_pass; /* events and dones */
} lim_state;

static lim_state lim;

static int lim_work(weft_task *t, void *ud) {
    int i = (int)(intptr_t)ud;
    for (int k = 0; k < 3; k++) CHECK_OK(weft_task_emit(t, "lim", &i, sizeof i));
    return i;
}

static void lim_event(weft_loop *lp, weft_id sub, const char *topic, const void *p, size_t len, void *ud) {
    (void)lp; (void)sub; (void)topic; (void)ud;
    int i;
    REQUIRE(len == sizeof i);
    memcpy(&i, p, sizeof i);
    atomic_fetch_add(&lim.events_of[i], 1);
    lim.ran_this_pass++;
}

static void lim_done(weft_loop *lp, weft_id id, int status, const uint8_t *r, size_t len, void *ud) {
    (void)lp; (void)id; (void)r; (void)len;
    int i = (int)(intptr_t)ud;
    CHECK_EQ(status, i);
    lim.events_at_done[i] = atomic_load(&lim.events_of[i]);
    lim.dones++;
    lim.dones_this_pass++;
    lim.ran_this_pass++;
}

static void lim_free(void *ud) {
    (void)ud;
    lim.frees++;
}

TEST(a_pass_limit_spreads_completions_and_keeps_events_first) {
    memset(&lim, 0, sizeof lim);
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    weft_id sub = CHECK_ID(weft_subscribe(lp, "lim", lim_event, NULL, NULL));
    CHECK_OK(weft_loop_set_pass_limit(lp, LIM_PASS));
    for (int i = 0; i < LIM_TASKS; i++)
        CHECK_ID(weft_spawn(lp, i % 2 ? WEFT_ON_CPU : WEFT_ON_IO, lim_work, lim_done, (void *)(intptr_t)i,
                            lim_free, NULL));
    /* Driven as a host drives it: wait for the fd, then one non-blocking pass. */
    struct pollfd pfd = {.fd = weft_loop_fd(lp), .events = POLLIN};
    int passes = 0;
    while (lim.dones < LIM_TASKS) {
        int ready = poll(&pfd, 1, (int)h_slack_ms(5000));
        CHECK_MSG(ready == 1, "the loop's fd stayed quiet with %d of %d tasks done", lim.dones, LIM_TASKS);
        if (ready != 1) break;
        lim.dones_this_pass = lim.ran_this_pass = 0;
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
        if (lim.dones_this_pass > lim.most_in_a_pass) lim.most_in_a_pass = lim.dones_this_pass;
        if (lim.ran_this_pass > lim.most_ran_in_a_pass) lim.most_ran_in_a_pass = lim.ran_this_pass;
        passes++;
    }
    CHECK_EQ(lim.dones, LIM_TASKS);
    CHECK_EQ(lim.frees, LIM_TASKS);
    CHECK_MSG(lim.most_in_a_pass <= LIM_PASS, "a pass ran %d done callbacks (limit %d)", lim.most_in_a_pass, LIM_PASS);
    CHECK_MSG(lim.most_ran_in_a_pass <= LIM_PASS, "a pass ran %d events and dones (limit %d)", lim.most_ran_in_a_pass,
              LIM_PASS);
    CHECK_MSG(passes >= LIM_TASKS / LIM_PASS, "%d passes for %d tasks", passes, LIM_TASKS);
    int early = 0;
    for (int i = 0; i < LIM_TASKS; i++) early += lim.events_at_done[i] != 3;
    CHECK_MSG(early == 0, "%d tasks' done ran before their 3 events", early);
    CHECK_OK(weft_cancel(lp, sub));
    weft_loop_free(lp);
}

/* An event emitted by work reaches subscribers of matching patterns ("*", "a.*"). */
static int emit_ab_work(weft_task *t, void *ud) {
    (void)ud;
    CHECK_OK(weft_task_emit(t, "a.b", "xyz", 3));
    CHECK_OK(weft_task_emit(t, "a.c", NULL, 0));
    return 0;
}

TEST(work_events_reach_pattern_subscribers) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    track all, prefix, exact, other;
    track_init(&all), track_init(&prefix), track_init(&exact), track_init(&other);
    CHECK_ID(weft_subscribe(lp, "*", track_event_cb, &all, NULL));
    CHECK_ID(weft_subscribe(lp, "a.*", track_event_cb, &prefix, NULL));
    CHECK_ID(weft_subscribe(lp, "a.b", track_event_cb, &exact, NULL));
    CHECK_ID(weft_subscribe(lp, "b.*", track_event_cb, &other, NULL));
    rec r;
    rec_init(&r);
    CHECK_ID(weft_spawn(lp, WEFT_ON_IO, emit_ab_work, rec_done, &r, NULL, NULL));
    CHECK(run_until(lp, &r.dones, 1, h_slack_ms(5000)));
    CHECK_EQ(atomic_load(&all.calls), 2);
    CHECK_EQ(atomic_load(&prefix.calls), 2);
    CHECK_EQ(atomic_load(&exact.calls), 1);
    CHECK_EQ(atomic_load(&other.calls), 0);
    weft_loop_free(lp);
}

/* ---- tasks on the loop ----------------------------------------------------------- */

/* A WEFT_ON_LOOP task runs in a pass of the loop, on the thread running it: nothing
 * happens until the loop runs; with the loop on another thread, work runs there. */
TEST(loop_tasks_run_on_the_loop_thread_in_a_pass) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    rec r;
    rec_init(&r);
    r.ret = 5;
    CHECK_ID(rec_spawn(lp, WEFT_ON_LOOP, &r, NULL));
    sleep_ms(20);
    CHECK_EQ(atomic_load(&r.work_runs), 0);
    CHECK_EQ(weft_loop_timeout_ms(lp), 0); /* work is ready now */
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(atomic_load(&r.work_runs), 1);
    CHECK(pthread_equal(r.work_thread, pthread_self()));
    CHECK(run_until(lp, &r.dones, 1, h_slack_ms(2000)));
    CHECK_EQ(r.status, 5);

    /* The loop on a thread of its own. */
    rec s;
    rec_init(&s);
    bg_loop b;
    CHECK_ID(rec_spawn(lp, WEFT_ON_LOOP, &s, NULL));
    bg_start(&b, lp, WEFT_RUN_DEFAULT);
    bg_join(&b, h_slack_ms(5000), "run the loop task and return");
    CHECK_EQ(atomic_load(&s.dones), 1);
    CHECK(pthread_equal(s.work_thread, b.thread));
    CHECK(pthread_equal(s.done_thread, b.thread));
    CHECK(pthread_equal(s.free_thread, b.thread));
    weft_loop_free(lp);
}

/* ---- cancel ------------------------------------------------------------------------ */

/* A queued task (its 1-thread pool is busy) cancelled: done(CANCELLED) at once, with no
 * result, while the pool is still busy; its work never runs; a second cancel is
 * NOT_FOUND; free_fn runs once. On a CPU pool and on an IO pool. */
TEST(cancel_of_a_queued_task) {
    weft_pool_kind kinds[] = {WEFT_POOL_CPU, WEFT_POOL_IO};
    weft_where wheres[] = {WEFT_ON_CPU, WEFT_ON_IO};
    for (int k = 0; k < 2; k++) {
        weft_loop *lp = weft_loop_new();
        REQUIRE(lp != NULL);
        weft_pool_options po = pool_opts(kinds[k], 1, "one");
        weft_pool *pool = weft_pool_new(&po);
        REQUIRE(pool != NULL);
        weft_spawn_options so = spawn_opts(pool, 0);
        _Atomic int gate = 0;
        rec blocker, target;
        rec_init(&blocker), rec_init(&target);
        blocker.gate = &gate;
        blocker.ret = 1;
        target.ret = 2;
        CHECK_ID(rec_spawn(lp, wheres[k], &blocker, &so));
        REQUIRE(WAIT_FOR(atomic_load(&blocker.work_active) == 1, h_slack_ms(2000)));
        weft_id id = CHECK_ID(rec_spawn(lp, wheres[k], &target, &so));
        CHECK_OK(weft_cancel(lp, id));
        CHECK_RC(weft_cancel(lp, id), WEFT_ERR_NOT_FOUND);
        CHECK(run_until(lp, &target.dones, 1, h_slack_ms(2000)));
        CHECK_EQ(atomic_load(&blocker.work_active), 1); /* the pool is still busy */
        CHECK_EQ(target.status, WEFT_ERR_CANCELLED);
        CHECK_EQ(target.len, 0);
        CHECK_RC(weft_cancel(lp, id), WEFT_ERR_NOT_FOUND);
        atomic_store(&gate, 1);
        CHECK(run_until(lp, &blocker.dones, 1, h_slack_ms(5000)));
        CHECK_EQ(blocker.status, 1);
        CHECK(WAIT_FOR(atomic_load(&target.frees) == 1, h_slack_ms(2000)));
        weft_pool_free(pool); /* joins: whatever the pool still held is over */
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
        CHECK_EQ(atomic_load(&target.work_runs), 0);
        CHECK_EQ(atomic_load(&target.dones), 1);
        CHECK_EQ(atomic_load(&target.frees), 1);
        CHECK_EQ(atomic_load(&target.dones_at_free), 1);
        CHECK_EQ(atomic_load(&blocker.frees), 1);
        weft_loop_free(lp);
    }
}

/* A running task cancelled: weft_task_cancelled turns true; done gets CANCELLED when
 * the work returns, with its result discarded; free_fn runs once, after the work. */
TEST(cancel_of_a_running_task) {
    weft_where wheres[] = {WEFT_ON_IO, WEFT_ON_CPU};
    for (int w = 0; w < 2; w++) {
        weft_loop *lp = weft_loop_new();
        REQUIRE(lp != NULL);
        rec r;
        rec_init(&r);
        r.until_cancelled = true;
        r.sleep_ms = 30; /* keeps running a while after it saw the cancel */
        r.out = (const unsigned char *)"discarded";
        r.out_len = 9;
        r.ret = 77;
        weft_id id = CHECK_ID(rec_spawn(lp, wheres[w], &r, NULL));
        REQUIRE(WAIT_FOR(atomic_load(&r.work_active) == 1, h_slack_ms(2000)));
        CHECK_OK(weft_cancel(lp, id));
        CHECK_RC(weft_cancel(lp, id), WEFT_ERR_NOT_FOUND); /* cancelled already */
        /* done waits for the work. */
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
        CHECK_EQ(atomic_load(&r.dones), 0);
        CHECK(run_until(lp, &r.dones, 1, h_slack_ms(5000)));
        CHECK_EQ(r.status, WEFT_ERR_CANCELLED);
        CHECK_EQ(r.len, 0);
        CHECK_EQ(atomic_load(&r.saw_cancelled), 1);
        CHECK_EQ(atomic_load(&r.work_active_at_done), 0);
        CHECK_EQ(atomic_load(&r.work_returned), 1);
        CHECK(WAIT_FOR(atomic_load(&r.frees) == 1, h_slack_ms(2000)));
        CHECK_EQ(atomic_load(&r.work_active_at_free), 0);
        CHECK_EQ(atomic_load(&r.dones_at_free), 1);
        CHECK_RC(weft_cancel(lp, id), WEFT_ERR_NOT_FOUND);
        weft_loop_free(lp);
        CHECK_EQ(atomic_load(&r.frees), 1);
    }
}

/* A loop task cancelled before its pass: done(CANCELLED), the work never runs. */
TEST(cancel_of_a_loop_task_before_its_pass) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    rec r;
    rec_init(&r);
    weft_id id = CHECK_ID(rec_spawn(lp, WEFT_ON_LOOP, &r, NULL));
    CHECK_OK(weft_cancel(lp, id));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    CHECK_EQ(atomic_load(&r.dones), 1);
    CHECK_EQ(r.status, WEFT_ERR_CANCELLED);
    CHECK_EQ(atomic_load(&r.work_runs), 0);
    CHECK_EQ(atomic_load(&r.frees), 1);
    weft_loop_free(lp);
}

/* Work that cancels its own task: it sees weft_task_cancelled, done gets CANCELLED. */
static int self_cancel_work(weft_task *t, void *ud) {
    rec *r = (rec *)ud;
    weft_id id;
    uint64_t end = now_ms() + 5000;
    while ((id = atomic_load(&r->id)) == 0 && now_ms() < end) sleep_ms(1);
    CHECK_OK(weft_cancel(r->done_lp, id));
    CHECK(weft_task_cancelled(t));
    CHECK_OK(weft_task_write(t, "zz", 2));
    atomic_store(&r->work_returned, 1);
    return 4;
}

TEST(work_may_cancel_its_own_task) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    rec r[2];
    weft_where wheres[] = {WEFT_ON_CPU, WEFT_ON_LOOP};
    for (int i = 0; i < 2; i++) {
        rec_init(&r[i]);
        r[i].done_lp = lp; /* the loop, for the work */
        atomic_store(&r[i].id,
                     CHECK_ID(weft_spawn(lp, wheres[i], self_cancel_work, rec_done, &r[i], rec_free, NULL)));
    }
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(atomic_load(&r[i].work_returned), 1);
        CHECK_EQ(atomic_load(&r[i].dones), 1);
        CHECK_EQ(r[i].status, WEFT_ERR_CANCELLED);
        CHECK_EQ(r[i].len, 0);
        WAIT_FREED(r[i]);
        CHECK_EQ(atomic_load(&r[i].frees), 1);
    }
    weft_loop_free(lp);
}

/* Cancel racing completion: a cancel at a random moment around the end of the work
 * either wins (OK, done gets CANCELLED) or loses (NOT_FOUND, done gets what the work
 * returned); done and free_fn run exactly once either way. */
typedef struct {
    rec r;
    _Atomic int dones_before_cancel;
} race_rec;

TEST(cancel_racing_completion) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    weft_id keep = CHECK_ID(weft_subscribe(lp, "keepalive", never_event_cb, NULL, NULL));
    bg_loop b;
    bg_start(&b, lp, WEFT_RUN_DEFAULT);
    long rounds = h_scale(3000, 200);
    race_rec *rr = calloc((size_t)rounds, sizeof *rr);
    REQUIRE(rr != NULL);
    long won = 0, lost = 0, won_while_done_ran = 0, bad = 0;
    uint64_t seed = 0x243F6A8885A308D3ull;
    for (long i = 0; i < rounds; i++) {
        rec *r = &rr[i].r;
        r->ret = 5;
        r->out = (const unsigned char *)"x";
        r->out_len = 1;
        weft_id id = CHECK_ID(rec_spawn(lp, i % 2 ? WEFT_ON_CPU : WEFT_ON_IO, r, NULL));
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        uint64_t spin_until = now_ns() + seed % 200000; /* 0..200 us */
        while (now_ns() < spin_until) {
        }
        int before = atomic_load(&r->dones);
        int rc = weft_cancel(lp, id);
        if (!WAIT_FOR(atomic_load(&r->dones) == 1, h_slack_ms(5000))) {
            h_fail(__FILE__, __LINE__, "round %ld: done never ran", i);
            bad++;
            continue;
        }
        if (rc == WEFT_OK && r->status == WEFT_ERR_CANCELLED) {
            won++;
            if (r->len != 0) bad++;
        } else if (rc == WEFT_ERR_NOT_FOUND && r->status == 5) {
            lost++;
            if (r->len != 1 || atomic_load(&r->work_runs) != 1) bad++;
        } else if (rc == WEFT_OK && r->status == 5) {
            /* The cancel landed while done was being called, or had just returned (its
             * entry not yet removed): see the known-bug case
             * cancel_during_done_is_not_found. Counted, not failed here. */
            (void)before;
            won_while_done_ran++;
        } else {
            h_fail(__FILE__, __LINE__, "round %ld: weft_cancel returned %d (done had run: %d), done got %d",
                   i, rc, before, r->status);
            bad++;
        }
    }
    for (long i = 0; i < rounds; i++)
        if (!WAIT_FOR(atomic_load(&rr[i].r.frees) == 1, h_slack_ms(2000))) {
            h_fail(__FILE__, __LINE__, "round %ld: free_fn ran %d times", i, atomic_load(&rr[i].r.frees));
            break;
        }
    CHECK_OK(weft_cancel(lp, keep));
    bg_join(&b, h_slack_ms(5000), "return once nothing is registered");
    for (long i = 0; i < rounds; i++) {
        if (atomic_load(&rr[i].r.dones) != 1 || atomic_load(&rr[i].r.frees) != 1) bad++;
        if (atomic_load(&rr[i].r.done_after_free) != 0) bad++;
    }
    CHECK_EQ(bad, 0);
    CHECK_EQ(won + lost + won_while_done_ran, rounds);
    if (!h_valgrind()) {
        CHECK_MSG(won > 0 && lost > 0, "the race was not exercised: %ld won, %ld lost", won, lost);
    }
    printf("    cancel racing completion: %ld won, %ld lost, %ld OK while done ran\n", won, lost,
           won_while_done_ran);
    weft_loop_free(lp);
    free(rr);
}

/* weft_cancel of a task whose done is running (from inside that done): done has run,
 * so the id no longer names a task in flight: NOT_FOUND, as after done. */
typedef struct {
    _Atomic int dones;
    int rc_inside;
} cancel_in_done;

static void cancel_in_done_cb(weft_loop *lp, weft_id id, int status, const uint8_t *res, size_t len,
                              void *ud) {
    (void)status, (void)res, (void)len;
    cancel_in_done *c = (cancel_in_done *)ud;
    c->rc_inside = weft_cancel(lp, id);
    atomic_fetch_add(&c->dones, 1);
}

TEST(cancel_during_done_is_not_found) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    cancel_in_done c = {0, 99};
    CHECK_ID(weft_spawn(lp, WEFT_ON_CPU, plain_work, cancel_in_done_cb, &c, NULL, NULL));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    CHECK_EQ(atomic_load(&c.dones), 1);
    CHECK_RC(c.rc_inside, WEFT_ERR_NOT_FOUND);
    weft_loop_free(lp);
}

/* done of a cancelled or timed-out task gets result NULL and len 0, as documented. */
TEST(cancelled_and_timed_out_results_are_null) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    rec c, t;
    rec_init(&c), rec_init(&t);
    c.until_cancelled = true;
    t.until_cancelled = true;
    weft_spawn_options so = spawn_opts(NULL, 10);
    weft_id id = CHECK_ID(rec_spawn(lp, WEFT_ON_IO, &c, NULL));
    CHECK_ID(rec_spawn(lp, WEFT_ON_IO, &t, &so));
    CHECK_OK(weft_cancel(lp, id));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    CHECK_EQ(c.status, WEFT_ERR_CANCELLED);
    CHECK_EQ(t.status, WEFT_ERR_TIMEOUT);
    CHECK_EQ(c.len, 0);
    CHECK_EQ(t.len, 0);
    CHECK_MSG(c.result_null, "cancelled: result is not NULL");
    CHECK_MSG(t.result_null, "timed out: result is not NULL");
    WAIT_FREED(c);
    WAIT_FREED(t);
    weft_loop_free(lp);
}

/* A task cancelled (or timed out) while queued is over at its done: its work never
 * runs, nothing outlives done, so its free_fn runs then, on the loop thread, not
 * whenever its pool gets round to the dropped job (maybe never, if the pool stays busy). */
TEST(free_fn_of_a_task_ended_while_queued_runs_at_its_done) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    weft_pool_options po = pool_opts(WEFT_POOL_CPU, 1, "fq1");
    weft_pool *pool = weft_pool_new(&po);
    REQUIRE(pool != NULL);
    weft_spawn_options so = spawn_opts(pool, 0), timed = spawn_opts(pool, 10);
    _Atomic int gate = 0;
    rec blocker, cancelled, timedout;
    rec_init(&blocker), rec_init(&cancelled), rec_init(&timedout);
    blocker.gate = &gate;
    CHECK_ID(rec_spawn(lp, WEFT_ON_CPU, &blocker, &so));
    REQUIRE(WAIT_FOR(atomic_load(&blocker.work_active) == 1, h_slack_ms(2000)));
    weft_id id = CHECK_ID(rec_spawn(lp, WEFT_ON_CPU, &cancelled, &so));
    CHECK_ID(rec_spawn(lp, WEFT_ON_CPU, &timedout, &timed));
    CHECK_OK(weft_cancel(lp, id));
    CHECK(run_until(lp, &cancelled.dones, 1, h_slack_ms(2000)));
    CHECK(run_until(lp, &timedout.dones, 1, h_slack_ms(2000)));
    CHECK_EQ(cancelled.status, WEFT_ERR_CANCELLED);
    CHECK_EQ(timedout.status, WEFT_ERR_TIMEOUT);
    sleep_ms(20);
    CHECK_MSG(atomic_load(&cancelled.frees) == 1, "cancelled while queued: free_fn not run after done");
    CHECK_MSG(atomic_load(&timedout.frees) == 1, "timed out while queued: free_fn not run after done");
    atomic_store(&gate, 1);
    CHECK(run_until(lp, &blocker.dones, 1, h_slack_ms(5000)));
    WAIT_FREED(cancelled);
    WAIT_FREED(timedout);
    WAIT_FREED(blocker);
    CHECK(pthread_equal(cancelled.free_thread, pthread_self()));
    CHECK(pthread_equal(timedout.free_thread, pthread_self()));
    weft_pool_free(pool);
    weft_loop_free(lp);
}

/* ---- timeouts ---------------------------------------------------------------------- */

/* Work sleeping past its timeout: done gets TIMEOUT at the deadline, promptly, without
 * waiting for the work; the work then sees weft_task_cancelled; free_fn runs once,
 * after the work returns, on the pool thread. The id is stale after done. */
TEST(timeout_reports_at_the_deadline_and_frees_after_the_work) {
    weft_where wheres[] = {WEFT_ON_IO, WEFT_ON_CPU};
    for (int w = 0; w < 2; w++) {
        weft_loop *lp = weft_loop_new();
        REQUIRE(lp != NULL);
        rec r;
        rec_init(&r);
        unsigned work_ms = (unsigned)h_slack_ms(300);
        r.sleep_ms = work_ms;
        r.out = (const unsigned char *)"late";
        r.out_len = 4;
        r.ret = 8;
        weft_spawn_options so = spawn_opts(NULL, 40);
        uint64_t t0 = now_ns();
        weft_id id = CHECK_ID(rec_spawn(lp, wheres[w], &r, &so));
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT)); /* returns after done(TIMEOUT) */
        CHECK_EQ(atomic_load(&r.dones), 1);
        CHECK_EQ(r.status, WEFT_ERR_TIMEOUT);
        CHECK_EQ(r.len, 0);
        uint64_t took_ms = (r.t_done_ns - t0) / 1000000u;
        CHECK_MSG(took_ms >= 40, "%s: done(TIMEOUT) after %" PRIu64 " ms, before the 40 ms deadline",
                  where_name(wheres[w]), took_ms);
        CHECK_MSG(took_ms < 40 + h_slack_ms(100), "%s: done(TIMEOUT) after %" PRIu64 " ms",
                  where_name(wheres[w]), took_ms);
        CHECK_EQ(atomic_load(&r.work_active_at_done), 1); /* did not wait for the work */
        CHECK_EQ(atomic_load(&r.frees), 0);
        CHECK_RC(weft_cancel(lp, id), WEFT_ERR_NOT_FOUND);
        CHECK(WAIT_FOR(atomic_load(&r.frees) == 1, h_slack_ms(5000)));
        CHECK_EQ(atomic_load(&r.saw_cancelled), 1);
        CHECK_EQ(atomic_load(&r.work_active_at_free), 0);
        CHECK(r.t_free_ns >= r.t_work_end_ns);
        CHECK_MSG(pthread_equal(r.free_thread, r.work_thread), "%s: free_fn did not run on the work's thread",
                  where_name(wheres[w]));
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
        CHECK_EQ(atomic_load(&r.dones), 1);
        weft_loop_free(lp);
        CHECK_EQ(atomic_load(&r.frees), 1);
    }
}

/* A task still queued at its deadline: done(TIMEOUT), its work never runs. */
TEST(timeout_of_a_queued_task) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    weft_pool_options po = pool_opts(WEFT_POOL_CPU, 1, "q1");
    weft_pool *pool = weft_pool_new(&po);
    REQUIRE(pool != NULL);
    _Atomic int gate = 0;
    rec blocker, target;
    rec_init(&blocker), rec_init(&target);
    blocker.gate = &gate;
    weft_spawn_options plain = spawn_opts(pool, 0), timed = spawn_opts(pool, 20);
    CHECK_ID(rec_spawn(lp, WEFT_ON_CPU, &blocker, &plain));
    REQUIRE(WAIT_FOR(atomic_load(&blocker.work_active) == 1, h_slack_ms(2000)));
    CHECK_ID(rec_spawn(lp, WEFT_ON_CPU, &target, &timed));
    CHECK(run_until(lp, &target.dones, 1, h_slack_ms(2000)));
    CHECK_EQ(target.status, WEFT_ERR_TIMEOUT);
    atomic_store(&gate, 1);
    CHECK(run_until(lp, &blocker.dones, 1, h_slack_ms(5000)));
    weft_pool_free(pool);
    CHECK_EQ(atomic_load(&target.work_runs), 0);
    CHECK_EQ(atomic_load(&target.dones), 1);
    CHECK_EQ(atomic_load(&target.frees), 1);
    weft_loop_free(lp);
}

/* Work that finishes before its timeout: done gets its status, and nothing fires at
 * the deadline. */
TEST(timeout_not_reached) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    rec r;
    rec_init(&r);
    r.ret = 3;
    /* generous under valgrind, where starting the pool alone can take 60 ms */
    weft_spawn_options so = spawn_opts(NULL, h_slack_ms(60));
    CHECK_ID(rec_spawn(lp, WEFT_ON_CPU, &r, &so));
    CHECK(run_until(lp, &r.dones, 1, h_slack_ms(2000)));
    CHECK_EQ(r.status, 3);
    CHECK_EQ(weft_loop_alive(lp), 0);
    CHECK_EQ(weft_loop_timeout_ms(lp), -1); /* the deadline left the timer set */
    sleep_ms(h_slack_ms(80));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(atomic_load(&r.dones), 1);
    WAIT_FREED(r);
    CHECK_EQ(atomic_load(&r.frees), 1);
    weft_loop_free(lp);
}

/* Cancelled while running, then its deadline passes before the work returns: one done,
 * CANCELLED (at the deadline at the latest); free_fn after the work. */
TEST(cancel_then_timeout_gives_one_done) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    rec r;
    rec_init(&r);
    r.sleep_ms = (unsigned)h_slack_ms(200); /* ignores the cancel for a while */
    weft_spawn_options so = spawn_opts(NULL, 40);
    weft_id id = CHECK_ID(rec_spawn(lp, WEFT_ON_IO, &r, &so));
    REQUIRE(WAIT_FOR(atomic_load(&r.work_active) == 1, h_slack_ms(2000)));
    CHECK_OK(weft_cancel(lp, id));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    CHECK_EQ(atomic_load(&r.dones), 1);
    CHECK_EQ(r.status, WEFT_ERR_CANCELLED);
    CHECK(WAIT_FOR(atomic_load(&r.frees) == 1, h_slack_ms(5000)));
    CHECK_EQ(atomic_load(&r.work_active_at_free), 0);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(atomic_load(&r.dones), 1);
    weft_loop_free(lp);
}

/* The largest timeout (2^35 - 1 ms) is accepted; one more is INVALID. */
TEST(timeout_limits) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    weft_spawn_options so = spawn_opts(NULL, (1ull << 35));
    CHECK_ID_FAILS(weft_spawn(lp, WEFT_ON_CPU, plain_work, NULL, NULL, never_free, &so), "timeout_ms");
    so.timeout_ms = (1ull << 35) - 1;
    rec r;
    rec_init(&r);
    CHECK_ID(rec_spawn(lp, WEFT_ON_CPU, &r, &so));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    CHECK_EQ(r.status, 0);
    WAIT_FREED(r);
    CHECK_EQ(atomic_load(&r.frees), 1);
    weft_loop_free(lp);
}

/* ---- nested spawns ------------------------------------------------------------------ */

typedef struct nest {
    weft_loop *lp;
    weft_pool *pool; /* NULL: the default CPU pool */
    int depth;
    _Atomic long runs, dones, frees, spawn_failures, wrong_status, wrong_thread;
    pthread_t loop_thread;
} nest;

typedef struct nest_task {
    nest *n;
    int level;
} nest_task;

static void nest_free(void *ud) {
    nest_task *t = (nest_task *)ud;
    atomic_fetch_add(&t->n->frees, 1);
    free(t);
}

static void nest_done(weft_loop *lp, weft_id id, int status, const uint8_t *res, size_t len, void *ud) {
    (void)lp, (void)id, (void)res, (void)len;
    nest_task *t = (nest_task *)ud;
    if (status != t->level) atomic_fetch_add(&t->n->wrong_status, 1);
    if (!pthread_equal(pthread_self(), t->n->loop_thread)) atomic_fetch_add(&t->n->wrong_thread, 1);
    atomic_fetch_add(&t->n->dones, 1);
}

static weft_id nest_spawn(nest *n, int level);

static int nest_work(weft_task *task, void *ud) {
    (void)task;
    nest_task *t = (nest_task *)ud;
    atomic_fetch_add(&t->n->runs, 1);
    if (t->level < t->n->depth)
        for (int i = 0; i < 2; i++)
            if (nest_spawn(t->n, t->level + 1) == 0) atomic_fetch_add(&t->n->spawn_failures, 1);
    return t->level;
}

static weft_id nest_spawn(nest *n, int level) {
    nest_task *t = malloc(sizeof *t);
    *t = (nest_task){n, level};
    weft_spawn_options o = spawn_opts(n->pool, 0);
    /* With the default pools, the tree spreads over CPU, IO and the loop. */
    static _Atomic unsigned turn;
    weft_where wheres[] = {WEFT_ON_CPU, WEFT_ON_IO, WEFT_ON_CPU, WEFT_ON_LOOP};
    weft_where where = n->pool ? WEFT_ON_CPU : wheres[atomic_fetch_add(&turn, 1) % 4];
    weft_id id = weft_spawn(n->lp, where, nest_work, nest_done, t, nest_free, n->pool ? &o : NULL);
    if (id == 0) free(t);
    return id;
}

/* Work on the CPU pool spawns two more tasks on the same loop, down to a depth: every
 * task of the tree runs, and gets done and free once; the loop (RUN_DEFAULT) returns
 * when the last one is over. On the default pools (the tree spread over CPU, IO and
 * loop tasks), a 1-thread CPU pool (the nested tasks go to the worker's own deque) and
 * a 3-thread one (stealing). */
TEST(nested_spawns_from_work) {
    int depth = (int)h_scale(11, 6);
    long total = (1L << (depth + 1)) - 1;
    const char *names[] = {NULL, "nest1", "nest3"};
    uint32_t threads[] = {0, 1, 3};
    for (int p = 0; p < 3; p++) {
        weft_pool *pool = NULL;
        if (names[p]) {
            weft_pool_options po = pool_opts(WEFT_POOL_CPU, threads[p], names[p]);
            pool = weft_pool_new(&po);
            REQUIRE(pool != NULL);
        }
        nest n;
        memset(&n, 0, sizeof n);
        n.lp = weft_loop_new();
        REQUIRE(n.lp != NULL);
        n.pool = pool;
        n.depth = depth;
        n.loop_thread = pthread_self();
        CHECK_ID(nest_spawn(&n, 0));
        CHECK_OK(weft_loop_run(n.lp, WEFT_RUN_DEFAULT));
        CHECK_MSG(atomic_load(&n.runs) == total && atomic_load(&n.dones) == total,
                  "pool %s: %ld runs, %ld dones, of %ld", names[p] ? names[p] : "default",
                  atomic_load(&n.runs), atomic_load(&n.dones), total);
        CHECK(WAIT_FOR(atomic_load(&n.frees) == total, h_slack_ms(2000)));
        CHECK_EQ(atomic_load(&n.frees), total);
        CHECK_EQ(atomic_load(&n.spawn_failures), 0);
        CHECK_EQ(atomic_load(&n.wrong_status), 0);
        CHECK_EQ(atomic_load(&n.wrong_thread), 0);
        weft_loop_free(n.lp);
        if (pool) weft_pool_free(pool);
    }
}

/* done spawns the next task (a chain), and loop work spawns pool work. */
typedef struct {
    _Atomic int links;
    int length;
    _Atomic int frees;
} chain;

static void chain_free(void *ud) { atomic_fetch_add(&((chain *)ud)->frees, 1); }

static int chain_work(weft_task *t, void *ud) {
    (void)t;
    return atomic_load(&((chain *)ud)->links);
}

static void chain_done(weft_loop *lp, weft_id id, int status, const uint8_t *res, size_t len, void *ud) {
    (void)id, (void)res, (void)len;
    chain *c = (chain *)ud;
    if (status != atomic_load(&c->links)) h_fail(__FILE__, __LINE__, "chain status %d", status);
    int n = atomic_fetch_add(&c->links, 1) + 1;
    if (n < c->length) {
        weft_where where = n % 3 == 0 ? WEFT_ON_LOOP : n % 3 == 1 ? WEFT_ON_IO : WEFT_ON_CPU;
        if (weft_spawn(lp, where, chain_work, chain_done, c, chain_free, NULL) == 0)
            h_fail_e(__FILE__, __LINE__, "weft_spawn from done failed");
    }
}

TEST(done_may_spawn_the_next_task) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    chain c = {0, (int)h_scale(300, 30), 0};
    CHECK_ID(weft_spawn(lp, WEFT_ON_LOOP, chain_work, chain_done, &c, chain_free, NULL));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    CHECK_EQ(atomic_load(&c.links), c.length);
    CHECK(WAIT_FOR(atomic_load(&c.frees) == c.length, h_slack_ms(2000)));
    weft_loop_free(lp);
}

/* ---- batches ------------------------------------------------------------------------ */

/* Completions queue up while the loop does not run; its fd turns readable (an
 * embedding host is woken), and one NOWAIT pass delivers all of them. */
TEST(completions_reach_the_loop_in_a_batch) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    long n = h_scale(2000, 200);
    rec *r = calloc((size_t)n, sizeof *r);
    REQUIRE(r != NULL);
    for (long i = 0; i < n; i++) {
        r[i].ret = (int)i;
        CHECK_ID(rec_spawn(lp, i % 2 ? WEFT_ON_CPU : WEFT_ON_IO, &r[i], NULL));
    }
    for (long i = 0; i < n; i++) CHECK(WAIT_FOR(atomic_load(&r[i].work_returned), h_slack_ms(5000)));
    sleep_ms((unsigned)h_slack_ms(50)); /* each work's completion is queued right after it returns */
    struct pollfd pfd = {weft_loop_fd(lp), POLLIN, 0};
    CHECK_EQ(poll(&pfd, 1, 0), 1);
    CHECK_EQ(weft_loop_timeout_ms(lp), 0);
    long before = 0;
    for (long i = 0; i < n; i++) before += atomic_load(&r[i].dones);
    CHECK_EQ(before, 0);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    long after = 0, wrong = 0;
    for (long i = 0; i < n; i++) {
        after += atomic_load(&r[i].dones);
        if (r[i].status != (int)i) wrong++;
    }
    CHECK_MSG(after == n, "one pass delivered %ld of %ld completions", after, n);
    CHECK_EQ(wrong, 0);
    CHECK_EQ(weft_loop_alive(lp), 0);
    for (long i = 0; i < n; i++) WAIT_FREED(r[i]);
    weft_loop_free(lp);
    free(r);
}

/* ---- a loop freed with tasks in flight ---------------------------------------------- */

/* A loop freed right after the completion of its last task: the pool thread that
 * handed the completion over may still be finishing its hand-over (it rings the loop's
 * bell) while the loop goes away. Nothing it touches may be freed under it (valgrind
 * sees it when it is; a review found it with a delay injected after the hand-over). */
static int quick_work(weft_task *t, void *ud) {
    (void)t; (void)ud;
    return 7;
}

static void quick_done(weft_loop *lp, weft_id id, int st, const uint8_t *r, size_t n, void *ud) {
    (void)lp; (void)id; (void)r; (void)n;
    CHECK_EQ(st, 7);
    *(int *)ud = 1;
}

TEST(loop_freed_right_after_its_last_completion) {
    for (int i = 0; i < 300; i++) {
        weft_loop *lp = weft_loop_new();
        REQUIRE(lp != NULL);
        int done = 0;
        CHECK_ID(weft_spawn(lp, i % 2 ? WEFT_ON_IO : WEFT_ON_CPU, quick_work, quick_done, &done, NULL, NULL));
        uint64_t end = now_ms() + h_slack_ms(5000);
        while (!done && now_ms() < end) CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
        CHECK(done);
        weft_loop_free(lp);
    }
}

/* Tasks running (they emit and write after the loop is gone), queued on a busy 1-thread
 * pool, queued on the loop, past their timeout, cancelled while running, and on the
 * default IO pool: the loop is freed without running. No done runs then or later (none
 * touches the freed loop); every free_fn runs exactly once (those of running work when
 * it returns, on its thread); work that had not started by then never does. */
TEST(loop_freed_with_tasks_in_flight) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    weft_pool_options po = pool_opts(WEFT_POOL_CPU, 8, "lfrun");
    weft_pool *run8 = weft_pool_new(&po);
    po = pool_opts(WEFT_POOL_CPU, 1, "lf1");
    weft_pool *one = weft_pool_new(&po);
    REQUIRE(run8 != NULL && one != NULL);
    weft_spawn_options on8 = spawn_opts(run8, 0), on1 = spawn_opts(one, 0), timed = spawn_opts(run8, 5);
    _Atomic int gate = 0;
    enum { RUNNING = 4, TIMED = 2, CANCELLED = 2, ONE = 4, ON_LOOP = 3, IO = 3 };
    enum { N = RUNNING + TIMED + CANCELLED + ONE + ON_LOOP + IO };
    rec r[N];
    int kind[N]; /* 0 running, 1 timed, 2 cancelled, 3 on the 1-thread pool, 4 loop, 5 IO */
    for (int i = 0; i < N; i++) {
        rec_init(&r[i]);
        r[i].emits = 3;
        r[i].emit_topic = "late.event";
        r[i].out = (const unsigned char *)"0123456789";
        r[i].out_len = 10;
        r[i].gate = &gate;
    }
    int k = 0;
    for (int i = 0; i < RUNNING; i++, k++) kind[k] = 0, CHECK_ID(rec_spawn(lp, WEFT_ON_CPU, &r[k], &on8));
    for (int i = 0; i < TIMED; i++, k++) kind[k] = 1, CHECK_ID(rec_spawn(lp, WEFT_ON_CPU, &r[k], &timed));
    for (int i = 0; i < CANCELLED; i++, k++) kind[k] = 2, CHECK_ID(rec_spawn(lp, WEFT_ON_CPU, &r[k], &on8));
    for (int i = 0; i < ONE; i++, k++) kind[k] = 3, CHECK_ID(rec_spawn(lp, WEFT_ON_CPU, &r[k], &on1));
    for (int i = 0; i < ON_LOOP; i++, k++) kind[k] = 4, CHECK_ID(rec_spawn(lp, WEFT_ON_LOOP, &r[k], NULL));
    for (int i = 0; i < IO; i++, k++) kind[k] = 5, CHECK_ID(rec_spawn(lp, WEFT_ON_IO, &r[k], NULL));
    CHECK_ID(weft_subscribe(lp, "late.*", never_event_cb, NULL, NULL));
    /* The tasks of the 8-thread pool, and the first of the 1-thread pool, start. (Not
     * required: see the known bug cpu_pool_runs_as_many_blocking_tasks_as_it_has_threads;
     * a task that had not started when the loop was freed must never start.) */
    int late = 0;
    for (int i = 0; i < N; i++) {
        bool starts = kind[i] <= 2 || (kind[i] == 3 && i == RUNNING + TIMED + CANCELLED);
        if (starts && !WAIT_FOR(atomic_load(&r[i].work_active) == 1, h_slack_ms(1000))) late++;
    }
    if (late) printf("    (%d tasks of an idle 8-thread pool had not started after 1 s)\n", late);
    for (int i = 0; i < N; i++)
        if (kind[i] == 2) CHECK_OK(weft_cancel(lp, atomic_load(&r[i].id)));
    sleep_ms(10); /* past the 5 ms timeouts: their done is due, but the loop never runs */
    weft_loop_free(lp);
    int started[N];
    for (int i = 0; i < N; i++) started[i] = atomic_load(&r[i].work_runs);
    /* Tasks whose work never started are over now; running ones are not. */
    for (int i = 0; i < N; i++) {
        if (kind[i] == 4) CHECK_EQ(started[i], 0);
        if (kind[i] == 4) CHECK_MSG(atomic_load(&r[i].frees) == 1, "loop task %d not freed with its loop", i);
        if (atomic_load(&r[i].work_active)) CHECK_EQ(atomic_load(&r[i].frees), 0);
    }
    atomic_store(&gate, 1);
    for (int i = 0; i < N; i++)
        CHECK_MSG(WAIT_FOR(atomic_load(&r[i].frees) == 1, h_slack_ms(5000)), "task %d: free_fn ran %d times", i,
                  atomic_load(&r[i].frees));
    weft_pool_free(run8);
    weft_pool_free(one);
    for (int i = 0; i < N; i++) {
        CHECK_EQ(atomic_load(&r[i].dones), 0);
        CHECK_EQ(atomic_load(&r[i].frees), 1);
        CHECK_EQ(atomic_load(&r[i].work_active_at_free), 0);
        CHECK_MSG(atomic_load(&r[i].work_runs) == started[i], "task %d (kind %d) started after its loop was freed", i, kind[i]);
        if (started[i]) CHECK(pthread_equal(r[i].free_thread, r[i].work_thread));
    }
}

/* A task that completes normally does not outlive its done: its free_fn runs on the loop
 * thread, right after done, so by the time weft_loop_run(DEFAULT) returns (the loop is
 * idle) every free_fn has run, and the caller may release what user_data points to. */
TEST(free_fn_of_a_completed_task_runs_on_the_loop_thread) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    long n = h_scale(100, 20);
    rec *r = calloc((size_t)n, sizeof *r);
    REQUIRE(r != NULL);
    long not_yet = 0, elsewhere = 0;
    for (long i = 0; i < n; i++) {
        CHECK_ID(rec_spawn(lp, i % 2 ? WEFT_ON_CPU : WEFT_ON_IO, &r[i], NULL));
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT)); /* until done has run */
        sleep_ms(2); /* the pool's threads go idle between tasks */
        if (atomic_load(&r[i].frees) != 1) not_yet++;
        else if (!pthread_equal(r[i].free_thread, pthread_self())) elsewhere++;
    }
    CHECK_MSG(not_yet == 0, "%ld of %ld free_fns had not run when weft_loop_run(DEFAULT) returned", not_yet, n);
    CHECK_MSG(elsewhere == 0, "%ld of %ld free_fns ran on a pool thread", elsewhere, n);
    weft_loop_free(lp);
    for (long i = 0; i < n; i++) WAIT_FREED(r[i]);
    free(r);
}

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
