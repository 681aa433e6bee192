/* Tasks (weft_spawn): work on the loop, the IO pool or the CPU pool; done on the loop
 * thread exactly once with the work's status and result, or CANCELLED / TIMEOUT;
 * free_fn exactly once, after both. This file: the basics, results, events emitted by
 * work before done, tasks on the loop. The other test_tasks_*.c files: cancel (before,
 * during and after the work; timeouts), nested (nested spawns, batches, a loop freed
 * with tasks in flight), inputs (bad inputs, and a million tasks with cancels from
 * three threads). */
#include "harness.h"
#include "tasks_util.h"
#include "tasks_work.h"

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
