/*
 * test_process_ahead.c: a reused child is sent its next task ahead while it runs one
 * (see weft.h, weft_spawn's reuse_child), so it goes on without waiting for the loop.
 * What that must not change: a task sent ahead and cancelled or timed out before its
 * child takes it never runs and ends at once, its child going on to the tasks after it;
 * a task sent ahead to a child that dies or is killed first runs exactly once, in a
 * fresh child; a task sent ahead to a child busy with a long task is run by another
 * child once that one is free; every done and free_fn runs once; no child or fd is left.
 *
 * The setup of each case, max_children 1: task 0 forks inside its spawn and runs alone
 * (nothing waited at its fork); task 1 then gets a fresh child that may run all the
 * others, and holds it at the gate while the case acts on task 2, which was sent ahead.
 */
#include "harness.h"
#include "tasks_util.h"
#include "process_util.h"


/* What each task does, by its arg. */
enum { QUICK, AT_GATE, CRASH_AT_GATE };

/* Writes its pid; AT_GATE first waits (at most 10 s) for the gate; CRASH_AT_GATE then
 * aborts. */
static int work(weft_task *t, void *ud) {
    ptask *p = (ptask *)ud;
    shm_enter(p->shm);
    if (p->arg != QUICK) shm_wait_gate(p->shm, 10000);
    shm_leave(p->shm);
    if (p->arg == CRASH_AT_GATE) abort();
    int pid = (int)getpid();
    CCHECK(p->shm, weft_task_write(t, &pid, sizeof pid) == WEFT_OK);
    return 0;
}

static int pid_of(const ptask *p) { return p->len == sizeof(int) ? *(const int *)p->head : 0; }

static int dones(ptask *p, int n) {
    int count = 0;
    for (int i = 0; i < n; i++) count += atomic_load(&p[i].dones);
    return count;
}

/* Runs the loop (RUN_ONCE) until `n` of p[0..n) are done, or `ms` pass. */
static void run_until_done(weft_loop *lp, ptask *p, int n, uint64_t ms) {
    uint64_t end = now_ms() + h_slack_ms(ms);
    while (dones(p, n) < n && now_ms() < end) CHECK_OK(weft_loop_run(lp, WEFT_RUN_ONCE));
    CHECK_MSG(dones(p, n) == n, "%d of %d tasks done", dones(p, n), n);
}

/* Runs the loop (without blocking) until `n` works have started, or 5 s pass. */
static void run_until_started(weft_loop *lp, pshm *s, int n) {
    uint64_t end = now_ms() + h_slack_ms(5000);
    while (atomic_load(&s->started) < n && now_ms() < end) {
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
        sleep_ms(1);
    }
    CHECK_MSG(atomic_load(&s->started) >= n, "%d works started, not %d", atomic_load(&s->started), n);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
}

/* Spawns n tasks (kinds[i], task 2 with timeout_ms) and runs until task 1 holds its
 * child at the gate (task 0 done). */
static void setup(weft_loop *lp, pshm *s, ptask *p, const int *kinds, int n, uint64_t timeout_ms) {
    for (int i = 0; i < n; i++) {
        pt_init(&p[i], s);
        p[i].arg = kinds[i];
        weft_spawn_options o = proc_opts(i == 2 ? timeout_ms : 0, 1);
        o.reuse_child = true;
        CHECK_ID(pt_spawn(lp, work, &p[i], &o));
    }
    run_until_started(lp, s, 2);
    CHECK_EQ(atomic_load(&p[0].dones), 1);
    CHECK_EQ(atomic_load(&p[1].dones), 0);
}

static void check_freed(ptask *p, int n) {
    for (int i = 0; i < n; i++) {
        CHECK_EQ(atomic_load(&p[i].dones), 1);
        WAIT_FREED(p[i]);
        CHECK_EQ(atomic_load(&p[i].frees), 1);
    }
}

/* Task 2, sent ahead to task 1's child, is cancelled while task 1 runs: its done comes
 * at once (task 1 still at the gate), its work never runs, and the child goes on to
 * task 3. */
TEST(a_task_sent_ahead_and_cancelled_never_runs) {
    ENV_BEGIN();
    enum { N = 4 };
    int kinds[N] = {QUICK, AT_GATE, QUICK, QUICK};
    ptask p[N];
    setup(lp, s, p, kinds, N, 0);
    CHECK_OK(weft_cancel(lp, p[2].id));
    run_until_done(lp, p + 2, 1, 2000);
    CHECK_EQ(p[2].status, WEFT_ERR_CANCELLED);
    CHECK_EQ(atomic_load(&p[1].dones), 0);
    atomic_store(&s->gate, 1);
    run_until_done(lp, p, N, 10000);
    CHECK_MSG(p[1].status == 0 && p[3].status == 0, "status %d, %d", p[1].status, p[3].status);
    CHECK_EQ(atomic_load(&s->started), 3); /* 0, 1 and 3: never 2 */
    CHECK_MSG(pid_of(&p[3]) != 0 && pid_of(&p[3]) == pid_of(&p[1]), "3 did not run in 1's child");
    check_freed(p, N);
    ENV_END();
}

/* Task 2, sent ahead, times out (50 ms from its spawn) while task 1 runs: its done
 * comes at the deadline, not when task 1 ends, and it never runs. */
TEST(a_task_sent_ahead_times_out_at_its_deadline) {
    ENV_BEGIN();
    enum { N = 4 };
    int kinds[N] = {QUICK, AT_GATE, QUICK, QUICK};
    ptask p[N];
    uint64_t t0 = now_ns();
    setup(lp, s, p, kinds, N, 50);
    run_until_done(lp, p + 2, 1, 3000);
    CHECK_EQ(p[2].status, WEFT_ERR_TIMEOUT);
    CHECK_EQ(atomic_load(&p[1].dones), 0);
    double after = pt_done_after_ms(&p[2], t0);
    CHECK_MSG(after >= 50 && after < h_slack_ms(1000), "timed out after %.1f ms", after);
    atomic_store(&s->gate, 1);
    run_until_done(lp, p, N, 10000);
    CHECK_EQ(atomic_load(&s->started), 3);
    CHECK_MSG(pid_of(&p[3]) != 0 && pid_of(&p[3]) == pid_of(&p[1]), "3 did not run in 1's child");
    check_freed(p, N);
    ENV_END();
}

/* Task 1 is cancelled (its child killed) while task 2 is sent ahead to that child:
 * task 2 and 3 run once each, in a fresh child. */
TEST(a_task_sent_ahead_to_a_killed_child_runs_in_a_fresh_one) {
    ENV_BEGIN();
    enum { N = 4 };
    int kinds[N] = {QUICK, AT_GATE, QUICK, QUICK};
    ptask p[N];
    setup(lp, s, p, kinds, N, 0);
    int killed = atomic_load(&s->pid);
    CHECK_OK(weft_cancel(lp, p[1].id));
    run_until_done(lp, p, N, 10000);
    CHECK_EQ(p[1].status, WEFT_ERR_CANCELLED);
    CHECK_MSG(p[2].status == 0 && p[3].status == 0, "status %d, %d", p[2].status, p[3].status);
    CHECK_EQ(atomic_load(&s->started), 4);
    CHECK_MSG(pid_of(&p[2]) != killed && pid_of(&p[2]) == pid_of(&p[3]), "2 and 3: pids %d, %d (killed %d)",
              pid_of(&p[2]), pid_of(&p[3]), killed);
    check_freed(p, N);
    ENV_END();
}

/* Task 1's child crashes while task 2 is sent ahead to it: task 1 ends crashed, and
 * task 2 runs once, in a fresh child. */
TEST(a_task_sent_ahead_to_a_child_that_crashes_runs_once) {
    ENV_BEGIN();
    enum { N = 4 };
    int kinds[N] = {QUICK, CRASH_AT_GATE, QUICK, QUICK};
    ptask p[N];
    setup(lp, s, p, kinds, N, 0);
    atomic_store(&s->gate, 1);
    run_until_done(lp, p, N, 10000);
    CHECK_EQ(p[1].status, WEFT_ERR_CRASHED);
    CHECK_MSG(p[2].status == 0 && p[3].status == 0, "status %d, %d", p[2].status, p[3].status);
    CHECK_EQ(atomic_load(&s->started), 4);
    check_freed(p, N);
    ENV_END();
}

/* Many short tasks in two reused children, a third of them cancelled at random moments
 * (waiting, sent ahead, running, done): each ends once, with its result or
 * WEFT_ERR_CANCELLED, and a cancelled task that got its result was already done. */
TEST(cancels_at_any_moment_end_each_task_once) {
    ENV_BEGIN();
    int n = (int)h_scale(120, 30);
    ptask *p = calloc((size_t)n, sizeof *p);
    REQUIRE(p != NULL);
    unsigned seed = 7;
    for (int i = 0; i < n; i++) {
        pt_init(&p[i], s);
        p[i].arg = QUICK;
        weft_spawn_options o = proc_opts(0, 2);
        o.reuse_child = true;
        CHECK_ID(pt_spawn(lp, work, &p[i], &o));
    }
    for (int i = 0; i < n; i++) {
        if (rand_r(&seed) % 3 != 0) continue;
        /* (NOWAIT: RUN_ONCE would wait for ever once every task is done.) */
        for (int k = (int)(rand_r(&seed) % 3); k > 0; k--) {
            CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
            sleep_ms(rand_r(&seed) % 2);
        }
        int rc = weft_cancel(lp, p[i].id);
        CHECK_MSG(rc == WEFT_OK || (rc == WEFT_ERR_NOT_FOUND && atomic_load(&p[i].dones) == 1), "cancel %d: %d", i,
                  rc);
    }
    run_until_done(lp, p, n, 20000);
    int cancelled = 0;
    for (int i = 0; i < n; i++) {
        if (p[i].status == WEFT_ERR_CANCELLED) cancelled++;
        else CHECK_MSG(p[i].status == 0 && pid_of(&p[i]) != 0, "task %d: status %d (%s)", i, p[i].status, p[i].err);
    }
    printf("    (%d tasks, %d cancelled, %d works started)\n", n, cancelled, atomic_load(&s->started));
    CHECK(atomic_load(&s->started) <= n);
    check_freed(p, n);
    free(p);
    ENV_END();
}

/* max_children 2: task 2 holds its child at the gate; a task sent ahead to that child
 * is taken back by the other child when it is free, so tasks 3 to 5 all run (in that
 * order) while task 2 still runs. */
TEST(a_free_child_takes_a_task_sent_ahead_to_a_busy_one) {
    ENV_BEGIN();
    enum { N = 6 };
    int kinds[N] = {QUICK, QUICK, AT_GATE, QUICK, QUICK, QUICK};
    ptask p[N];
    for (int i = 0; i < N; i++) {
        pt_init(&p[i], s);
        p[i].arg = kinds[i];
        weft_spawn_options o = proc_opts(0, 2);
        o.reuse_child = true;
        CHECK_ID(pt_spawn(lp, work, &p[i], &o));
    }
    run_until_done(lp, p + 3, 3, 5000);
    CHECK_EQ(atomic_load(&p[2].dones), 0);
    CHECK_MSG(pid_of(&p[3]) != 0 && pid_of(&p[3]) == pid_of(&p[4]) && pid_of(&p[4]) == pid_of(&p[5]),
              "3, 4, 5: pids %d, %d, %d", pid_of(&p[3]), pid_of(&p[4]), pid_of(&p[5]));
    CHECK(p[3].t_done_ns < p[4].t_done_ns && p[4].t_done_ns < p[5].t_done_ns);
    atomic_store(&s->gate, 1);
    run_until_done(lp, p, N, 10000);
    for (int i = 0; i < N; i++) CHECK_MSG(p[i].status == 0, "task %d: status %d", i, p[i].status);
    CHECK_EQ(atomic_load(&s->started), N);
    check_freed(p, N);
    ENV_END();
}
