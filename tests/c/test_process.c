/* Process tasks (weft_spawn with WEFT_ON_PROCESS), through the C ABI only: the work runs
 * in a forked child against a snapshot of the parent (nothing pickled), its result and
 * events stream back through a pipe, done runs on the loop thread once the child is
 * reaped. This file: the basics, crashes, timeouts and cancels (running and waiting).
 * The other test_process_*.c files: load (max_children, a 100 MB result, 10,000
 * events, forking while pool threads hold weft's locks), host (freeing a loop with
 * children; children forked by the host), inputs (bad inputs; what a child may call),
 * edges (the pipe and the exit, races and chains, where spawns come from, running out
 * of fds, the child's signal state).
 *
 * Children never use the harness's CHECK: they report through shared memory (CCHECK in
 * process_util.h), their result bytes or their status. Every test ends with HYG_END:
 * the fd count back to its baseline, and no child of this process left at all. */
#include "harness.h"
#include "tasks_util.h"
#include "process_util.h"
#include "process_work.h"

#include <poll.h>
#include <sched.h>

/* ---- the basics --------------------------------------------------------------------- */

/* What the trivial task's work sees: a closure-like struct set up just before the spawn,
 * with a pointer to a heap buffer and one end of a socket pair. */
typedef struct closure {
    unsigned char *heap;
    size_t heap_len;
    int sock;
    pid_t parent;
} closure;

typedef struct basic_result {
    int pid, ppid;
    uint64_t heap_hash;
    int sent;
} basic_result;

static int closure_work(weft_task *t, void *ud) {
    ptask *p = (ptask *)ud;
    closure *c = (closure *)p->ctx;
    basic_result r;
    memset(&r, 0, sizeof r); /* no uninitialised padding on the wire */
    r.pid = (int)getpid();
    r.ppid = (int)getppid();
    r.heap_hash = fnv(c->heap, c->heap_len);
    r.sent = (int)write(c->sock, c->heap, c->heap_len);
    memset(c->heap, 0xEE, c->heap_len); /* the child's copy only */
    CCHECK(p->shm, weft_task_write(t, &r, sizeof r) == WEFT_OK);
    return 7;
}

/* A trivial process task: done runs once on the loop thread, in the parent, with the
 * status and the bytes; the work ran in another pid whose parent is this process; it
 * saw the memory set up just before the spawn and wrote to the inherited socket (kept
 * with keep_fds);
 * free_fn runs once, in the parent, after done; the task leaves nothing behind. */
TEST(process_task_runs_in_a_child_against_a_snapshot) {
    ENV_BEGIN();
    int sp[2], flog[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sp) == 0);
    REQUIRE(pipe(flog) == 0);
    closure *c = malloc(sizeof *c);
    REQUIRE(c != NULL);
    c->heap_len = 4000;
    c->heap = malloc(c->heap_len);
    REQUIRE(c->heap != NULL);
    for (size_t i = 0; i < c->heap_len; i++) c->heap[i] = (unsigned char)(i * 7 + 3);
    snprintf((char *)c->heap, 64, "set up by pid %d just before the spawn", (int)getpid());
    c->sock = sp[1];
    c->parent = getpid();
    uint64_t heap_hash = fnv(c->heap, c->heap_len);
    ptask p;
    pt_init(&p, s);
    p.ctx = c;
    p.free_log = flog[1];
    p.count_kids = true;
    /* The child writes to an inherited socket: it must be kept (the others are closed). */
    weft_spawn_options o = proc_opts(0, 0);
    o.keep_fds = &sp[1];
    o.keep_fds_len = 1;
    weft_id id = CHECK_ID(pt_spawn(lp, closure_work, &p, &o));
    CHECK_MSG(run_until(lp, &p.dones, 1, h_slack_ms(5000)), "done never ran");
    CHECK_EQ(atomic_load(&p.dones), 1);
    CHECK_EQ(p.status, 7);
    CHECK(p.done_lp == lp);
    CHECK(p.done_id == id);
    CHECK(pthread_equal(p.done_thread, pthread_self()));
    CHECK_EQ(p.done_pid, getpid());
    CHECK_EQ(p.len, sizeof(basic_result));
    basic_result r;
    memcpy(&r, p.head, sizeof r);
    CHECK_MSG(r.pid != getpid() && r.pid > 0, "the work ran in pid %d (this is %d)", r.pid, (int)getpid());
    CHECK_EQ(r.ppid, getpid());
    CHECK_MSG(r.heap_hash == heap_hash, "the child saw other bytes in the heap buffer");
    CHECK_EQ(r.sent, (int)c->heap_len);
    /* The child was reaped before done: no child (no zombie) was left at done. */
    CHECK_MSG(p.kids_at_done.all == 0, "%d children (%d zombies) at done", p.kids_at_done.all,
              p.kids_at_done.zombies);
    CHECK_MSG(pid_gone(r.pid), "the child %d still exists after done", r.pid);
    CHECK_RC(p.cancel_in_done, WEFT_ERR_NOT_FOUND);
    CHECK_RC(weft_cancel(lp, id), WEFT_ERR_NOT_FOUND);
    /* What the child wrote to the socket is there: nothing pickled. */
    unsigned char *got = malloc(c->heap_len + 1);
    REQUIRE(got != NULL);
    size_t have = 0;
    ssize_t n;
    while (have <= c->heap_len && (n = read_now(sp[0], got + have, c->heap_len + 1 - have)) > 0)
        have += (size_t)n;
    CHECK_EQ(have, c->heap_len);
    CHECK_MSG(have == c->heap_len && memcmp(got, c->heap, c->heap_len) == 0,
              "the socket holds other bytes than the parent's heap buffer");
    /* The child's writes to its copy did not reach the parent. */
    CHECK(fnv(c->heap, c->heap_len) == heap_hash);
    free(got);
    /* free_fn ran once, in the parent, after done. */
    CHECK_MSG(WAIT_FOR(atomic_load(&p.frees) == 1, h_slack_ms(2000)), "free_fn never ran");
    CHECK_EQ(p.free_pid, getpid());
    CHECK_EQ(atomic_load(&p.dones_at_free), 1);
    CHECK_EQ(atomic_load(&p.done_after_free), 0);
    pid_t logged[4];
    ssize_t ln = read_now(flog[0], logged, sizeof logged);
    CHECK_MSG(ln == (ssize_t)sizeof(pid_t), "free_fn logged %zd bytes (once: %zu)", ln, sizeof(pid_t));
    if (ln >= (ssize_t)sizeof(pid_t)) CHECK_EQ(logged[0], getpid());
    CHECK_EQ(weft_loop_alive(lp), 0);
    SHM_CLEAN(s);
    weft_loop_free(lp);
    CHECK_EQ(atomic_load(&p.frees), 1);
    close(sp[0]);
    close(sp[1]);
    close(flog[0]);
    close(flog[1]);
    free(c->heap);
    free(c);
    shm_free(s);
    HYG_END(h);
}

static _Atomic int null_done_frees;
static void count_free(void *ud) {
    (void)ud;
    atomic_fetch_add(&null_done_frees, 1);
}

/* WEFT_RUN_DEFAULT keeps running while process tasks are in flight; done may be NULL
 * (free_fn still runs once); statuses pass through. */
TEST(run_default_waits_for_process_tasks_and_done_may_be_null) {
    ENV_BEGIN();
    int values[] = {0, 1, 255, 256, 65536, INT_MAX};
    enum { N = sizeof values / sizeof values[0] };
    ptask p[N];
    for (int i = 0; i < N; i++) {
        pt_init(&p[i], s);
        p[i].arg = values[i];
        CHECK_ID(pt_spawn(lp, small_work, &p[i], NULL));
    }
    atomic_store(&null_done_frees, 0);
    ptask q;
    pt_init(&q, s);
    CHECK_ID(weft_spawn(lp, WEFT_ON_PROCESS, small_work, NULL, &q, count_free, NULL));
    CHECK_EQ(weft_loop_alive(lp), 1);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    for (int i = 0; i < N; i++) {
        CHECK_EQ(atomic_load(&p[i].dones), 1);
        CHECK_EQ(p[i].status, values[i]);
        char want[32];
        snprintf(want, sizeof want, "small %d", values[i]);
        CHECK_MSG(p[i].len == strlen(want) && memcmp(p[i].head, want, p[i].len) == 0,
                  "task %d: result \"%.*s\", expected \"%s\"", i, (int)p[i].len, p[i].head, want);
        WAIT_FREED(p[i]);
    }
    CHECK(WAIT_FOR(atomic_load(&null_done_frees) == 1, h_slack_ms(2000)));
    CHECK_EQ(weft_loop_alive(lp), 0);
    SHM_CLEAN(s);
    weft_loop_free(lp);
    CHECK_EQ(atomic_load(&null_done_frees), 1);
    shm_free(s);
    HYG_END(h);
}

/* ---- crashes ------------------------------------------------------------------------ */

static void no_core_dump(void) {
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none);
}

static int segv_work(weft_task *t, void *ud) {
    (void)ud;
    weft_task_write(t, "before the crash", 16);
    no_core_dump();
    if (h_valgrind() || h_asan()) {
        /* The same death without the tool's report: memcheck's "invalid write";
         * AddressSanitizer's SIGSEGV handler (put back to the default here), which would
         * report and exit(1), and UBSan's null store check. */
        if (h_asan()) signal(SIGSEGV, SIG_DFL);
        raise(SIGSEGV);
    } else {
        volatile int *volatile nowhere = NULL;
        *nowhere = 1;
    }
    return 0;
}

static int exit3_work(weft_task *t, void *ud) {
    (void)ud;
    weft_task_write(t, "part of a result", 16);
    exit(3);
}

static int exit0_work(weft_task *t, void *ud) {
    (void)ud;
    weft_task_write(t, "x", 1);
    _exit(0);
}

/* A child killed by SIGSEGV: done gets WEFT_ERR_CRASHED and no result; weft_last_error
 * inside done names the signal. */
TEST(child_segfault_is_crashed_and_names_the_signal) {
    hyg h = HYG_BEGIN();
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    ptask p;
    pt_init(&p, NULL);
    CHECK_ID(pt_spawn(lp, segv_work, &p, NULL));
    CHECK_MSG(run_until(lp, &p.dones, 1, h_slack_ms(5000)), "done never ran");
    CHECK_RC(p.status, WEFT_ERR_CRASHED);
    CHECK_EQ(p.len, 0);
    CHECK(p.result_null);
    CHECK_MSG(strstr(p.err, "SIGSEGV") && strstr(p.err, "signal 11"),
              "weft_last_error inside done: \"%s\"", p.err);
    CHECK_EQ(p.err_code, WEFT_ERR_CRASHED);
    WAIT_FREED(p);
    weft_loop_free(lp);
    HYG_END(h);
}

/* exit(3) after part of the result: CRASHED, the message gives the code; _exit(0)
 * without a status frame: CRASHED too (a clean exit is not a result). */
TEST(child_exiting_before_its_status_is_crashed) {
    hyg h = HYG_BEGIN();
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    ptask p3, p0;
    pt_init(&p3, NULL);
    pt_init(&p0, NULL);
    CHECK_ID(pt_spawn(lp, exit3_work, &p3, NULL));
    CHECK_ID(pt_spawn(lp, exit0_work, &p0, NULL));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    CHECK_RC(p3.status, WEFT_ERR_CRASHED);
    CHECK_EQ(p3.len, 0);
    CHECK_MSG(strstr(p3.err, "code 3") != NULL, "weft_last_error inside done: \"%s\"", p3.err);
    CHECK_RC(p0.status, WEFT_ERR_CRASHED);
    CHECK_EQ(p0.len, 0);
    CHECK_MSG(strstr(p0.err, "code 0") != NULL, "weft_last_error inside done: \"%s\"", p0.err);
    WAIT_FREED(p3);
    WAIT_FREED(p0);
    weft_loop_free(lp);
    HYG_END(h);
}

static int child_exit_early_work(weft_task *t, void *ud) {
    (void)ud;
    weft_task_write(t, "abc", 3);
    weft_child_exit(t, 4);
    weft_task_write(t, "NOT REACHED", 11);
    return 99;
}

/* weft_child_exit on a process task's own task ends the child early with a status. */
TEST(child_exit_ends_a_process_task_early) {
    hyg h = HYG_BEGIN();
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    ptask p;
    pt_init(&p, NULL);
    CHECK_ID(pt_spawn(lp, child_exit_early_work, &p, NULL));
    CHECK_MSG(run_until(lp, &p.dones, 1, h_slack_ms(5000)), "done never ran");
    CHECK_EQ(p.status, 4);
    CHECK_MSG(p.len == 3 && memcmp(p.head, "abc", 3) == 0, "result \"%.*s\"", (int)p.len, p.head);
    WAIT_FREED(p);
    weft_loop_free(lp);
    HYG_END(h);
}

/* ---- timeouts --------------------------------------------------------------------------- */

/* A child that outlives its timeout: done gets WEFT_ERR_TIMEOUT shortly after the
 * deadline (not after the sleep), and the child is killed and reaped. */
TEST(timeout_kills_the_child_at_the_deadline) {
    ENV_BEGIN();
    uint64_t timeout = (uint64_t)h_scale(100, 500);
    ptask p;
    pt_init(&p, s);
    p.ms = 5000;
    p.count_kids = true;
    weft_spawn_options o = proc_opts(timeout, 0);
    uint64_t t0 = now_ns();
    CHECK_ID(pt_spawn(lp, sleepy_work, &p, &o));
    CHECK_MSG(run_until(lp, &p.dones, 1, h_slack_ms(3000)), "done never ran");
    double after = pt_done_after_ms(&p, t0);
    CHECK_RC(p.status, WEFT_ERR_TIMEOUT);
    CHECK(p.result_null);
    CHECK_MSG(after >= (double)timeout - 1 && after < (double)timeout + (double)h_slack_ms(200),
              "done came %.1f ms after the spawn; the timeout was %" PRIu64 " ms", after, timeout);
    CHECK_EQ(atomic_load(&s->finished), 0);
    CHECK_EQ(p.kids_at_done.all, 0);
    int pid = atomic_load(&s->pid);
    CHECK_MSG(pid == 0 || pid_gone(pid), "the child %d was not reaped", pid);
    WAIT_FREED(p);
    ENV_END();
}

/* A child that ignores SIGTERM is SIGKILLed after the grace (~250 ms), and done still
 * comes, then. */
TEST(child_ignoring_sigterm_is_killed_after_the_grace) {
    ENV_BEGIN();
    uint64_t timeout = (uint64_t)h_scale(150, 1000);
    ptask p;
    pt_init(&p, s);
    p.ms = 5000;
    p.arg = 1; /* ignore SIGTERM */
    p.count_kids = true;
    weft_spawn_options o = proc_opts(timeout, 0);
    uint64_t t0 = now_ns();
    CHECK_ID(pt_spawn(lp, sleepy_work, &p, &o));
    CHECK_MSG(run_until(lp, &p.dones, 1, h_slack_ms(3000)), "done never ran");
    double after = pt_done_after_ms(&p, t0);
    REQUIRE(atomic_load(&s->flag) == 1);
    CHECK_MSG(atomic_load(&s->t_flag_ns) < t0 + timeout * 1000000u,
              "the child ignored SIGTERM only %.1f ms after the spawn (timeout %" PRIu64 " ms): "
              "the test proves nothing",
              (double)(atomic_load(&s->t_flag_ns) - t0) / 1e6, timeout);
    CHECK_RC(p.status, WEFT_ERR_TIMEOUT);
    CHECK_MSG(after >= (double)timeout + 240 && after < (double)timeout + 250 + (double)h_slack_ms(300),
              "done came %.1f ms after the spawn; expected the timeout (%" PRIu64 " ms) + the "
              "250 ms grace", after, timeout);
    CHECK_EQ(atomic_load(&s->finished), 0);
    CHECK_EQ(p.kids_at_done.all, 0);
    CHECK_MSG(pid_gone(atomic_load(&s->pid)), "the child %d was not reaped", atomic_load(&s->pid));
    WAIT_FREED(p);
    weft_loop_free(lp);
    shm_free(s);
    HYG_END(h);
}

/* ---- cancel ----------------------------------------------------------------------------- */

typedef struct canceller {
    ptask *p;
    pshm *s;
    int rc1, rc2;
    uint64_t t_cancel_ns;
    _Atomic int fired;
} canceller;

/* A repeating timer: once the child has started, cancels its task twice and itself. */
static void cancel_when_started(weft_loop *lp, weft_id timer, void *ud) {
    canceller *c = (canceller *)ud;
    if (atomic_load(&c->s->started) == 0 || atomic_load(&c->fired)) return;
    c->t_cancel_ns = now_ns();
    c->rc1 = weft_cancel(lp, c->p->id);
    c->rc2 = weft_cancel(lp, c->p->id);
    CHECK_OK(weft_cancel(lp, timer));
    atomic_store(&c->fired, 1);
}

/* weft_cancel while the child runs (from a timer callback): WEFT_OK, then NOT_FOUND;
 * done gets WEFT_ERR_CANCELLED soon (SIGTERM ends the child) and the child is reaped;
 * after done, cancel is NOT_FOUND. */
TEST(cancel_mid_run_kills_the_child) {
    ENV_BEGIN();
    ptask p;
    pt_init(&p, s);
    p.ms = 5000;
    p.count_kids = true;
    CHECK_ID(pt_spawn(lp, sleepy_work, &p, NULL));
    canceller c = {&p, s, 99, 99, 0, 0};
    CHECK_ID(weft_timer_every(lp, 2, cancel_when_started, &c, NULL));
    CHECK_MSG(run_until(lp, &p.dones, 1, h_slack_ms(3000)), "done never ran");
    CHECK(atomic_load(&c.fired));
    CHECK_RC(c.rc1, WEFT_OK);
    CHECK_RC(c.rc2, WEFT_ERR_NOT_FOUND);
    CHECK_RC(p.status, WEFT_ERR_CANCELLED);
    CHECK(p.result_null);
    double after = pt_done_after_ms(&p, c.t_cancel_ns);
    CHECK_MSG(after < (double)h_slack_ms(200), "done came %.1f ms after the cancel", after);
    CHECK_EQ(atomic_load(&s->finished), 0);
    CHECK_EQ(p.kids_at_done.all, 0);
    CHECK_MSG(pid_gone(atomic_load(&s->pid)), "the child %d was not reaped", atomic_load(&s->pid));
    CHECK_RC(p.cancel_in_done, WEFT_ERR_NOT_FOUND);
    CHECK_RC(weft_cancel(lp, p.id), WEFT_ERR_NOT_FOUND);
    WAIT_FREED(p);
    CHECK_EQ(weft_loop_alive(lp), 0);
    weft_loop_free(lp);
    shm_free(s);
    HYG_END(h);
}

/* A cancel after done: NOT_FOUND (and free_fn did not run twice). */
TEST(cancel_after_done_is_not_found) {
    hyg h = HYG_BEGIN();
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    ptask p;
    pt_init(&p, NULL);
    p.arg = 5;
    CHECK_ID(pt_spawn(lp, small_work, &p, NULL));
    CHECK_MSG(run_until(lp, &p.dones, 1, h_slack_ms(5000)), "done never ran");
    CHECK_EQ(p.status, 5);
    CHECK_RC(weft_cancel(lp, p.id), WEFT_ERR_NOT_FOUND);
    CHECK_RC(weft_cancel(lp, p.id), WEFT_ERR_NOT_FOUND);
    WAIT_FREED(p);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    weft_loop_free(lp);
    CHECK_EQ(atomic_load(&p.frees), 1);
    HYG_END(h);
}

/* With max_children = 1 and the slot taken: a task waiting for the slot, cancelled,
 * gets done(CANCELLED) at once (before the slot frees) and never forks; the task
 * queued behind it still runs when the slot frees. */
TEST(cancel_of_a_waiting_task_never_forks) {
    ENV_BEGIN();
    int marker[2];
    REQUIRE(pipe(marker) == 0);
    weft_spawn_options o = proc_opts(0, 1);
    ptask a, b, c;
    pt_init(&a, s);
    pt_init(&b, s);
    pt_init(&c, s);
    a.arg = 1;
    c.arg = 3;
    b.ctx = &marker[1];
    CHECK_ID(pt_spawn(lp, gated_work, &a, &o));
    CHECK_ID(pt_spawn(lp, marker_work, &b, &o));
    CHECK_ID(pt_spawn(lp, gated_work, &c, &o));
    CHECK(WAIT_FOR(atomic_load(&s->started) == 1, h_slack_ms(2000)));
    CHECK_RC(weft_cancel(lp, b.id), WEFT_OK);
    CHECK_RC(weft_cancel(lp, b.id), WEFT_ERR_NOT_FOUND);
    CHECK_MSG(run_until(lp, &b.dones, 1, h_slack_ms(1000)), "the cancelled waiting task's done never ran");
    CHECK_RC(b.status, WEFT_ERR_CANCELLED);
    CHECK(b.result_null);
    CHECK_EQ(atomic_load(&a.dones), 0); /* it did not wait for the slot */
    CHECK(WAIT_FOR(atomic_load(&b.frees) == 1, h_slack_ms(1000)));
    /* Only a has started: c waits behind the slot. */
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(atomic_load(&s->started), 1);
    atomic_store(&s->gate, 1);
    CHECK_MSG(run_until(lp, &c.dones, 1, h_slack_ms(5000)), "the task behind the cancelled one never ran");
    CHECK_EQ(atomic_load(&a.dones), 1);
    CHECK_EQ(a.status, 1);
    CHECK_EQ(c.status, 3);
    CHECK_MSG(c.len == 7 && memcmp(c.head, "gated 3", 7) == 0, "c's result \"%.*s\"", (int)c.len, c.head);
    /* give a fork that should not happen every chance to show */
    for (int i = 0; i < 20; i++) {
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
        sleep_ms(2);
    }
    CHECK_EQ(atomic_load(&s->forked_marker), 0);
    char buf[4];
    CHECK_MSG(read_now(marker[0], buf, sizeof buf) < 0 && errno == EAGAIN,
              "the cancelled task's work wrote to the marker pipe: it forked");
    CHECK_EQ(atomic_load(&s->started), 2);
    WAIT_FREED(a);
    WAIT_FREED(c);
    CHECK_EQ(atomic_load(&b.frees), 1);
    weft_loop_free(lp);
    close(marker[0]);
    close(marker[1]);
    shm_free(s);
    HYG_END(h);
}

/* A task that times out while it waits for a slot gets done(TIMEOUT) at its deadline
 * and never forks. */
TEST(timeout_of_a_waiting_task_never_forks) {
    ENV_BEGIN();
    weft_spawn_options one = proc_opts(0, 1);
    uint64_t timeout = (uint64_t)h_scale(80, 400);
    weft_spawn_options timed = proc_opts(timeout, 1);
    ptask a, b;
    pt_init(&a, s);
    pt_init(&b, s);
    CHECK_ID(pt_spawn(lp, gated_work, &a, &one));
    uint64_t t0 = now_ns();
    CHECK_ID(pt_spawn(lp, marker_work, &b, &timed));
    CHECK_MSG(run_until(lp, &b.dones, 1, h_slack_ms(2000)), "the waiting task's done never ran");
    double after = pt_done_after_ms(&b, t0);
    CHECK_RC(b.status, WEFT_ERR_TIMEOUT);
    CHECK_MSG(after >= (double)timeout - 1 && after < (double)timeout + (double)h_slack_ms(100),
              "done came %.1f ms after the spawn (timeout %" PRIu64 " ms)", after, timeout);
    CHECK_EQ(atomic_load(&a.dones), 0);
    atomic_store(&s->gate, 1);
    CHECK_MSG(run_until(lp, &a.dones, 1, h_slack_ms(5000)), "a never finished");
    for (int i = 0; i < 10; i++) {
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
        sleep_ms(2);
    }
    CHECK_EQ(atomic_load(&s->forked_marker), 0);
    CHECK_EQ(atomic_load(&s->started), 1);
    WAIT_FREED(a);
    WAIT_FREED(b);
    weft_loop_free(lp);
    shm_free(s);
    HYG_END(h);
}
