/* Process tasks (weft_spawn with WEFT_ON_PROCESS), through the C ABI only: the work runs
 * in a forked child against a snapshot of the parent (nothing pickled), its result and
 * events stream back through a pipe, done runs on the loop thread once the child is
 * reaped; crashes, timeouts, cancels (running and waiting), max_children, a 100 MB
 * result, 10,000 events, forking while pool threads hold weft's locks, freeing a loop
 * with children; children forked by the host (weft_adopt_child, weft_child_task,
 * weft_child_exit); bad inputs; what a child may and may not call, and its signal
 * state; a grandchild holding the pipe, a child reaped by the host or with SIGCHLD
 * ignored, cancels racing with forks, spawns from done and from any thread, running
 * out of fds.
 *
 * Children never use the harness's CHECK: they report through shared memory (CCHECK in
 * process_util.h), their result bytes or their status. Every test ends with HYG_END:
 * the fd count back to its baseline, and no child of this process left at all. */
#include "harness.h"
#include "tasks_util.h"
#include "process_util.h"

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
    hyg h = HYG_BEGIN();
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    pshm *s = shm_new();
    REQUIRE(s != NULL);
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

static int small_work(weft_task *t, void *ud) {
    ptask *p = (ptask *)ud;
    char msg[32];
    int n = snprintf(msg, sizeof msg, "small %d", p->arg);
    CCHECK(p->shm, weft_task_write(t, msg, (size_t)n) == WEFT_OK);
    return p->arg;
}

static _Atomic int null_done_frees;
static void count_free(void *ud) {
    (void)ud;
    atomic_fetch_add(&null_done_frees, 1);
}

/* WEFT_RUN_DEFAULT keeps running while process tasks are in flight; done may be NULL
 * (free_fn still runs once); statuses pass through. */
TEST(run_default_waits_for_process_tasks_and_done_may_be_null) {
    hyg h = HYG_BEGIN();
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    pshm *s = shm_new();
    REQUIRE(s != NULL);
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

static int sleepy_work(weft_task *t, void *ud) {
    (void)t;
    ptask *p = (ptask *)ud;
    if (p->arg == 1) {
        signal(SIGTERM, SIG_IGN);
        atomic_store(&p->shm->t_flag_ns, now_ns());
        atomic_store(&p->shm->flag, 1);
    }
    shm_enter(p->shm);
    sleep_ms(p->ms);
    shm_leave(p->shm);
    weft_task_write(t, "slept", 5);
    return 0;
}

/* A child that outlives its timeout: done gets WEFT_ERR_TIMEOUT shortly after the
 * deadline (not after the sleep), and the child is killed and reaped. */
TEST(timeout_kills_the_child_at_the_deadline) {
    hyg h = HYG_BEGIN();
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    pshm *s = shm_new();
    REQUIRE(s != NULL);
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
    SHM_CLEAN(s);
    weft_loop_free(lp);
    shm_free(s);
    HYG_END(h);
}

/* A child that ignores SIGTERM is SIGKILLed after the grace (~250 ms), and done still
 * comes, then. */
TEST(child_ignoring_sigterm_is_killed_after_the_grace) {
    hyg h = HYG_BEGIN();
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    pshm *s = shm_new();
    REQUIRE(s != NULL);
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
    hyg h = HYG_BEGIN();
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    pshm *s = shm_new();
    REQUIRE(s != NULL);
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

static int gated_work(weft_task *t, void *ud) {
    ptask *p = (ptask *)ud;
    shm_enter(p->shm);
    shm_wait_gate(p->shm, 10000);
    shm_leave(p->shm);
    char msg[16];
    int n = snprintf(msg, sizeof msg, "gated %d", p->arg);
    weft_task_write(t, msg, (size_t)n);
    return p->arg;
}

/* Work that must never run: it marks the shared memory and a pipe. */
static int marker_work(weft_task *t, void *ud) {
    (void)t;
    ptask *p = (ptask *)ud;
    atomic_fetch_add(&p->shm->forked_marker, 1);
    if (p->ctx != NULL) {
        int fd = *(int *)p->ctx;
        if (write(fd, "M", 1) != 1) {
        }
    }
    return 0;
}

/* With max_children = 1 and the slot taken: a task waiting for the slot, cancelled,
 * gets done(CANCELLED) at once (before the slot frees) and never forks; the task
 * queued behind it still runs when the slot frees. */
TEST(cancel_of_a_waiting_task_never_forks) {
    hyg h = HYG_BEGIN();
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    pshm *s = shm_new();
    REQUIRE(s != NULL);
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
    hyg h = HYG_BEGIN();
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    pshm *s = shm_new();
    REQUIRE(s != NULL);
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

/* ---- max_children ------------------------------------------------------------------------ */

typedef struct sampler {
    int max_kids, samples, max_zombies;
} sampler;

static void sample_children(weft_loop *lp, weft_id id, void *ud) {
    (void)lp, (void)id;
    sampler *sm = (sampler *)ud;
    kids k = proc_children();
    if (k.all > sm->max_kids) sm->max_kids = k.all;
    if (k.zombies > sm->max_zombies) sm->max_zombies = k.zombies;
    sm->samples++;
}

static int counted_work(weft_task *t, void *ud) {
    ptask *p = (ptask *)ud;
    shm_enter(p->shm);
    sleep_ms(p->ms);
    int v[2] = {p->arg, p->arg * 31 + 7};
    shm_leave(p->shm);
    CCHECK(p->shm, weft_task_write(t, v, sizeof v) == WEFT_OK);
    return p->arg % 200;
}

/* 200 small tasks with max_children = 2: all complete with their results, and never
 * more than 2 children exist at once (sampled from /proc by a repeating timer, and
 * counted by the children themselves in shared memory). */
TEST(max_children_bounds_the_children) {
    hyg h = HYG_BEGIN();
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    pshm *s = shm_new();
    REQUIRE(s != NULL);
    int n = (int)h_scale(200, 16);
    ptask *p = calloc((size_t)n, sizeof *p);
    REQUIRE(p != NULL);
    sampler sm = {0, 0, 0};
    weft_id timer = CHECK_ID(weft_timer_every(lp, (uint64_t)h_scale(1, 5), sample_children, &sm, NULL));
    weft_spawn_options o = proc_opts(0, 2);
    int done_count = 0;
    for (int i = 0; i < n; i++) {
        pt_init(&p[i], s);
        p[i].arg = i;
        p[i].ms = 1;
        CHECK_ID(pt_spawn(lp, counted_work, &p[i], &o));
    }
    /* Both the first slots were forked inside weft_spawn; the rest wait. */
    kids k = proc_children();
    CHECK_MSG(k.all <= 2, "%d children right after the spawns", k.all);
    uint64_t end = now_ms() + (uint64_t)h_slack_ms(20000);
    while (done_count < n && now_ms() < end) {
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_ONCE));
        done_count = 0;
        for (int i = 0; i < n; i++) done_count += atomic_load(&p[i].dones);
    }
    CHECK_EQ(done_count, n);
    CHECK_OK(weft_cancel(lp, timer));
    for (int i = 0; i < n; i++) {
        CHECK_EQ(atomic_load(&p[i].dones), 1);
        CHECK_MSG(p[i].status == i % 200, "task %d: status %d", i, p[i].status);
        int v[2] = {i, i * 31 + 7};
        CHECK_MSG(p[i].len == sizeof v && memcmp(p[i].head, v, sizeof v) == 0, "task %d: wrong result", i);
    }
    CHECK_EQ(atomic_load(&s->started), n);
    CHECK_MSG(atomic_load(&s->max_active) <= 2, "%d children were in their work at once",
              atomic_load(&s->max_active));
    CHECK_MSG(sm.max_kids <= 2, "%d children of this process existed at once", sm.max_kids);
    CHECK_MSG(sm.samples >= 5 && sm.max_kids >= 1, "the sampler saw no child (%d samples)", sm.samples);
    printf("    (%d tasks: at most %d in their work at once, %d children in %d samples)\n", n,
           atomic_load(&s->max_active), sm.max_kids, sm.samples);
    for (int i = 0; i < n; i++) WAIT_FREED(p[i]);
    SHM_CLEAN(s);
    weft_loop_free(lp);
    free(p);
    shm_free(s);
    HYG_END(h);
}

/* ---- a big result -------------------------------------------------------------------------- */

/* Writes the pattern in writes of 1 byte, then (17 MiB + 5): more than a frame body
 * holds, so weft must split it, then 1 MiB each. */
static int big_work(weft_task *t, void *ud) {
    ptask *p = (ptask *)ud;
    size_t total = (size_t)p->arg, big = (17u << 20) + 5;
    unsigned char *buf = malloc(big);
    CCHECK(p->shm, buf != NULL);
    if (buf == NULL) return 1;
    for (size_t off = 0, k = 0; off < total; k++) {
        size_t chunk = k == 0 ? 1 : k == 1 ? big : (size_t)1 << 20;
        size_t m = total - off < chunk ? total - off : chunk;
        pattern_fill(buf, off, m);
        off += m;
        if (weft_task_write(t, buf, m) != WEFT_OK) {
            CCHECK(p->shm, !"weft_task_write failed");
            break;
        }
    }
    free(buf);
    return 0;
}

typedef struct ticker {
    ptask *p;
    uint64_t last_ns, max_gap_ns;
    int ticks;
} ticker;

static void tick(weft_loop *lp, weft_id id, void *ud) {
    (void)lp, (void)id;
    ticker *tk = (ticker *)ud;
    /* done hashes 100 MB on the loop thread: not the loop's doing, so the gap across it
     * (from the last tick before done to the first after) does not count either */
    if (atomic_load(&tk->p->in_done) || atomic_load(&tk->p->dones)) return;
    uint64_t now = now_ns();
    if (tk->last_ns != 0 && now - tk->last_ns > tk->max_gap_ns) tk->max_gap_ns = now - tk->last_ns;
    tk->last_ns = now;
    tk->ticks++;
}

/* A 100 MB result (8 MB under valgrind), in writes of 1 byte, 17 MiB and 1 MiB, arrives
 * intact, while a 10 ms timer on the same
 * loop keeps firing: reading the pipe does not starve the loop. */
TEST(big_result_arrives_intact_while_timers_keep_time) {
    hyg h = HYG_BEGIN();
    size_t total = (size_t)h_scale(100 << 20, 8 << 20);
    /* the parent's own computation of the hash */
    unsigned char *buf = malloc(1 << 20);
    REQUIRE(buf != NULL);
    uint64_t want = 0xcbf29ce484222325ull;
    for (size_t off = 0; off < total; off += 1 << 20) {
        size_t m = total - off < (1u << 20) ? total - off : (1u << 20);
        pattern_fill(buf, off, m);
        want = fnv_more(want, buf, m);
    }
    free(buf);
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    pshm *s = shm_new();
    REQUIRE(s != NULL);
    ptask p;
    pt_init(&p, s);
    p.arg = (int)total;
    ticker tk = {&p, 0, 0, 0};
    weft_id timer = CHECK_ID(weft_timer_every(lp, 10, tick, &tk, NULL));
    uint64_t t0 = now_ns();
    CHECK_ID(pt_spawn(lp, big_work, &p, NULL));
    CHECK_MSG(run_until(lp, &p.dones, 1, h_slack_ms(20000)), "done never ran");
    double took = pt_done_after_ms(&p, t0);
    CHECK_OK(weft_cancel(lp, timer));
    CHECK_EQ(p.status, 0);
    CHECK_EQ(p.len, total);
    CHECK_MSG(p.hash == want, "the %zu-byte result differs from the pattern", total);
    double gap = (double)tk.max_gap_ns / 1e6;
    printf("    (%zu MB in %.0f ms; %d ticks, the longest gap %.1f ms)\n", total >> 20, took, tk.ticks, gap);
    /* Reading all 100 MB in one pass would keep the timer waiting for about a second;
     * a pass reads 4 MiB. 250 ms leaves room for a loaded machine's scheduler (138 ms
     * was seen there with other builds running). */
    CHECK_MSG(gap < (double)h_slack_ms(250), "the 10 ms timer went %.1f ms without a call", gap);
    CHECK_MSG(tk.ticks >= 2 || took < 30, "the timer ticked %d times in %.0f ms", tk.ticks, took);
    WAIT_FREED(p);
    SHM_CLEAN(s);
    weft_loop_free(lp);
    shm_free(s);
    HYG_END(h);
}

/* ---- events ---------------------------------------------------------------------------- */

typedef struct seq_sub {
    ptask *p;
    uint32_t next;
    int out_of_order, after_done, bad_len;
} seq_sub;

static void on_seq(weft_loop *lp, weft_id id, const char *topic, const void *payload, size_t len, void *ud) {
    (void)lp, (void)id, (void)topic;
    seq_sub *q = (seq_sub *)ud;
    if (atomic_load(&q->p->dones)) q->after_done++;
    if (len != sizeof(uint32_t)) {
        q->bad_len++;
        return;
    }
    uint32_t v;
    memcpy(&v, payload, sizeof v);
    if (v != q->next) q->out_of_order++;
    q->next = v + 1;
    atomic_fetch_add(&q->p->events, 1);
}

static int emitting_work(weft_task *t, void *ud) {
    ptask *p = (ptask *)ud;
    int bad = 0;
    for (uint32_t i = 0; i < (uint32_t)p->arg; i++)
        if (weft_task_emit(t, "proc.seq", &i, sizeof i) != WEFT_OK && bad++ == 0)
            CCHECK(p->shm, !"weft_task_emit failed");
    return bad;
}

/* 10,000 events (2,000 under valgrind) emitted by the child reach a subscriber in
 * order, all before done. */
TEST(child_events_arrive_in_order_before_done) {
    hyg h = HYG_BEGIN();
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    pshm *s = shm_new();
    REQUIRE(s != NULL);
    int n = (int)h_scale(10000, 2000);
    ptask p;
    pt_init(&p, s);
    p.arg = n;
    seq_sub q = {&p, 0, 0, 0, 0};
    weft_id sub = CHECK_ID(weft_subscribe(lp, "proc.*", on_seq, &q, NULL));
    CHECK_ID(pt_spawn(lp, emitting_work, &p, NULL));
    CHECK_MSG(run_until(lp, &p.dones, 1, h_slack_ms(10000)), "done never ran");
    CHECK_EQ(p.status, 0);
    CHECK_EQ(p.events_at_done, n);
    CHECK_EQ(q.out_of_order, 0);
    CHECK_EQ(q.bad_len, 0);
    CHECK_EQ(q.after_done, 0);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_EQ(atomic_load(&p.events), n);
    CHECK_OK(weft_cancel(lp, sub));
    WAIT_FREED(p);
    SHM_CLEAN(s);
    weft_loop_free(lp);
    shm_free(s);
    HYG_END(h);
}

/* ---- forking while pool threads are busy with weft ------------------------------------------- */

typedef struct busy {
    weft_loop *lp;
    weft_pool *cpu, *io;
    uint64_t until_ns;
    unsigned pause_us;
    _Atomic long emits, spawned, nested_dones, failures;
    _Atomic int running;
} busy;

static int nested_work(weft_task *t, void *ud) {
    (void)ud;
    weft_task_write(t, "n", 1);
    return 0;
}

static void nested_done(weft_loop *lp, weft_id id, int status, const uint8_t *r, size_t len, void *ud) {
    (void)lp, (void)id, (void)r;
    busy *b = (busy *)ud;
    if (status != 0 || len != 1) atomic_fetch_add(&b->failures, 1);
    atomic_fetch_add(&b->nested_dones, 1);
}

/* On a pool thread for ~1 s: emits through the task and to the loop, and spawns nested
 * tasks, so that weft's locks (the loop's, its inbox's, the pools') are taken all the
 * time while the main thread forks. */
static int busy_work(weft_task *t, void *ud) {
    busy *b = (busy *)ud;
    atomic_fetch_add(&b->running, 1);
    long i = 0;
    while (now_ns() < b->until_ns) {
        if (weft_task_emit(t, "busy.task", &i, sizeof i) != WEFT_OK) atomic_fetch_add(&b->failures, 1);
        if (weft_emit(b->lp, "busy.loop", &i, sizeof i) != WEFT_OK) atomic_fetch_add(&b->failures, 1);
        weft_spawn_options o = spawn_opts(i % 2 ? b->cpu : b->io, 0);
        if (weft_spawn(b->lp, i % 2 ? WEFT_ON_CPU : WEFT_ON_IO, nested_work, nested_done, b, NULL, &o) != 0)
            atomic_fetch_add(&b->spawned, 1);
        else
            atomic_fetch_add(&b->failures, 1);
        atomic_fetch_add(&b->emits, 2);
        i++;
        if (b->pause_us) {
            struct timespec ts = {0, (long)b->pause_us * 1000};
            nanosleep(&ts, NULL);
        }
    }
    return 0;
}

static _Atomic int busy_dones;
static void busy_done(weft_loop *lp, weft_id id, int status, const uint8_t *r, size_t len, void *ud) {
    (void)lp, (void)id, (void)r, (void)len, (void)ud;
    CHECK_EQ(status, 0);
    atomic_fetch_add(&busy_dones, 1);
}

static _Atomic long busy_events;
static void count_busy_event(weft_loop *lp, weft_id id, const char *topic, const void *p, size_t n, void *ud) {
    (void)lp, (void)id, (void)topic, (void)p, (void)n, (void)ud;
    atomic_fetch_add(&busy_events, 1);
}

static _Atomic int forked_dones;
static void forked_done(weft_loop *lp, weft_id id, int status, const uint8_t *result, size_t len, void *ud) {
    pt_done(lp, id, status, result, len, ud);
    atomic_fetch_add(&forked_dones, 1);
}

static int forked_under_load_work(weft_task *t, void *ud) {
    ptask *p = (ptask *)ud;
    /* malloc is fork-safe in glibc: the work may use it */
    char *mem = malloc(1000 + (size_t)p->arg);
    CCHECK(p->shm, mem != NULL);
    if (mem) memset(mem, p->arg, 1000);
    free(mem);
    CCHECK(p->shm, !weft_task_cancelled(t));
    CCHECK(p->shm, weft_emit((weft_loop *)p->ctx, "busy.child", "x", 1) == WEFT_ERR_FORKED);
    CCHECK(p->shm, weft_task_emit(t, "busy.fromchild", &p->arg, sizeof p->arg) == WEFT_OK);
    CCHECK(p->shm, weft_task_write(t, &p->arg, sizeof p->arg) == WEFT_OK);
    atomic_fetch_add(&p->shm->finished, 1);
    return p->arg;
}

/* CPU and IO pool threads loop for ~1 s emitting (through their task and to the loop)
 * and spawning nested tasks, while the loop runs on its own thread; the main thread
 * spawns 50 process tasks, in batches of 5 over that second (max_children 8: most fork
 * inside weft_spawn on the main thread, the rest on the loop thread as slots free). Every child finishes: none is
 * stuck on a lock some other thread held at the fork. */
TEST(forking_while_pool_threads_hold_weft_locks) {
    hyg h = HYG_BEGIN();
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    pshm *s = shm_new();
    REQUIRE(s != NULL);
    weft_pool_options po = pool_opts(WEFT_POOL_CPU, 2, "pbusy");
    weft_pool *cpu = weft_pool_new(&po);
    po = pool_opts(WEFT_POOL_IO, 4, "pbusyio");
    weft_pool *io = weft_pool_new(&po);
    REQUIRE(cpu != NULL && io != NULL);
    atomic_store(&busy_dones, 0);
    atomic_store(&busy_events, 0);
    atomic_store(&forked_dones, 0);
    busy *b = calloc(1, sizeof *b);
    REQUIRE(b != NULL);
    b->lp = lp;
    b->cpu = cpu;
    b->io = io;
    b->until_ns = now_ns() + 1000000000ull;
    b->pause_us = (unsigned)h_scale(50, 1000);
    CHECK_ID(weft_subscribe(lp, "busy.*", count_busy_event, NULL, NULL));
    bg_loop bg;
    bg_start(&bg, lp, WEFT_RUN_DEFAULT);
    enum { NBUSY = 6 };
    for (int i = 0; i < NBUSY; i++) {
        weft_spawn_options o = spawn_opts(i < 2 ? cpu : io, 0);
        CHECK_ID(weft_spawn(lp, i < 2 ? WEFT_ON_CPU : WEFT_ON_IO, busy_work, busy_done, b, NULL, &o));
    }
    CHECK(WAIT_FOR(atomic_load(&b->running) == NBUSY, h_slack_ms(2000)));
    sleep_ms(50);
    int n = (int)h_scale(50, 8);
    ptask *p = calloc((size_t)n, sizeof *p);
    REQUIRE(p != NULL);
    weft_spawn_options o = proc_opts(0, 8);
    uint64_t t0 = now_ms();
    /* in batches of 5 over most of the busy second */
    for (int i = 0; i < n; i++) {
        if (i > 0 && i % 5 == 0 && now_ns() + 100000000ull < b->until_ns) sleep_ms(60);
        pt_init(&p[i], s);
        p[i].arg = i + 1;
        p[i].ctx = lp;
        p[i].id = weft_spawn(lp, WEFT_ON_PROCESS, forked_under_load_work, forked_done, &p[i], pt_free, &o);
        if (p[i].id == 0) h_fail_e(__FILE__, __LINE__, "spawn of process task %d failed", i);
    }
    bool all = WAIT_FOR(atomic_load(&forked_dones) == n, h_slack_ms(15000));
    CHECK_MSG(all, "only %d of %d process tasks finished in %" PRIu64 " ms (%d children reached "
              "the end of their work): a child is stuck",
              atomic_load(&forked_dones), n, (uint64_t)h_slack_ms(15000), atomic_load(&s->finished));
    uint64_t forks_ms = now_ms() - t0;
    CHECK(WAIT_FOR(atomic_load(&busy_dones) == NBUSY, h_slack_ms(10000)));
    CHECK(WAIT_FOR(atomic_load(&b->nested_dones) == atomic_load(&b->spawned), h_slack_ms(20000)));
    for (int i = 0; i < n && all; i++) {
        CHECK_MSG(p[i].status == i + 1, "process task %d: status %d (%s)", i, p[i].status, p[i].err);
        CHECK_MSG(p[i].len == sizeof(int) && memcmp(p[i].head, &p[i].arg, sizeof(int)) == 0,
                  "process task %d: wrong result", i);
    }
    for (int i = 0; i < n; i++) WAIT_FREED(p[i]);
    CHECK_EQ(atomic_load(&b->failures), 0);
    CHECK_OK(weft_loop_stop(lp));
    bg_join(&bg, h_slack_ms(5000), "stop");
    printf("    (%d process tasks in %" PRIu64 " ms while %ld emits and %ld nested spawns ran)\n", n,
           forks_ms, atomic_load(&b->emits), atomic_load(&b->spawned));
    CHECK(atomic_load(&busy_events) >= n);
    SHM_CLEAN(s);
    weft_loop_free(lp); /* kills and reaps anything left, if the test failed */
    weft_pool_free(cpu);
    weft_pool_free(io);
    free(p);
    free(b);
    shm_free(s);
    HYG_END(h);
}

/* ---- children forked by the host: helpers --------------------------------------------------- */

typedef struct host_child {
    pid_t pid;
    int rfd; /* the parent's read end */
} host_child;

/* Forks; the child runs `body(write_fd, arg)` and _exits with what it returns. The
 * parent closes the write end. */
static host_child host_fork(int (*body)(int wfd, int arg), int arg) {
    host_child hc = {-1, -1};
    int p[2];
    if (pipe(p) != 0) return hc;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return hc;
    }
    if (pid == 0) {
        close(p[0]);
        _exit(body(p[1], arg));
    }
    close(p[1]);
    hc.pid = pid;
    hc.rfd = p[0];
    return hc;
}

static int host_sleeper_body(int wfd, int arg) {
    weft_task *t = weft_child_task(wfd);
    if (t == NULL) return 101;
    weft_task_write(t, "zzz", 3);
    sleep_ms((unsigned)arg);
    weft_child_exit(t, 0);
    return 102;
}

/* ---- freeing the loop ------------------------------------------------------------------------ */

static void never_done_fn(weft_loop *lp, weft_id id, int status, const uint8_t *r, size_t len, void *ud) {
    (void)lp, (void)id, (void)r, (void)len, (void)ud;
    h_fail(__FILE__, __LINE__, "a done that must not run ran (status %d)", status);
}

/* weft_loop_free with a child sleeping 30 s kills and reaps it: it returns quickly, no
 * zombie is left, free_fn ran once and done did not. The same for an adopted child
 * (whose read end the loop closes). A task waiting for a slot is dropped too: its
 * free_fn runs, and it never forks; so is one cancelled whose done is still queued. */
TEST(freeing_the_loop_kills_and_reaps_its_children) {
    hyg h = HYG_BEGIN();
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    pshm *s = shm_new();
    REQUIRE(s != NULL);
    int marker[2];
    REQUIRE(pipe(marker) == 0);
    ptask a, b, c, d;
    pt_init(&a, s);
    pt_init(&b, s);
    pt_init(&c, s);
    pt_init(&d, NULL);
    a.ms = 30000;
    b.ctx = &marker[1];
    c.ctx = &marker[1];
    weft_spawn_options o = proc_opts(0, 1);
    CHECK_ID(weft_spawn(lp, WEFT_ON_PROCESS, sleepy_work, never_done_fn, &a, pt_free, &o));
    CHECK_ID(weft_spawn(lp, WEFT_ON_PROCESS, marker_work, never_done_fn, &b, pt_free, &o));
    /* c: cancelled while waiting, its done(CANCELLED) still queued when the loop goes */
    weft_id cid = CHECK_ID(weft_spawn(lp, WEFT_ON_PROCESS, marker_work, never_done_fn, &c, pt_free, &o));
    CHECK_MSG(WAIT_FOR(atomic_load(&s->started) == 1, h_slack_ms(3000)), "the child never started");
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    CHECK_OK(weft_cancel(lp, cid));
    /* d: an adopted child, sleeping */
    host_child hc = host_fork(host_sleeper_body, 30000);
    REQUIRE(hc.pid > 0);
    CHECK_ID(weft_adopt_child(lp, hc.pid, hc.rfd, never_done_fn, &d, pt_free, NULL));
    int pid = atomic_load(&s->pid);
    CHECK_EQ(proc_children().all, 2);
    uint64_t t0 = now_ns();
    weft_loop_free(lp);
    double took = (double)(now_ns() - t0) / 1e6;
    CHECK_MSG(took < (double)h_slack_ms(500), "weft_loop_free took %.1f ms", took);
    CHECK_MSG(pid_gone(pid), "the child %d was not reaped by weft_loop_free", pid);
    CHECK_MSG(pid_gone(hc.pid), "the adopted child %d was not reaped by weft_loop_free", (int)hc.pid);
    kids k = proc_children();
    CHECK_MSG(k.all == 0, "%d children (%d zombies) after weft_loop_free", k.all, k.zombies);
    CHECK_EQ(atomic_load(&a.frees), 1);
    CHECK_EQ(atomic_load(&b.frees), 1);
    CHECK_EQ(atomic_load(&c.frees), 1);
    CHECK_EQ(atomic_load(&d.frees), 1);
    CHECK_EQ(a.free_pid, getpid());
    CHECK_EQ(atomic_load(&a.dones) + atomic_load(&b.dones) + atomic_load(&c.dones) + atomic_load(&d.dones), 0);
    CHECK_EQ(atomic_load(&s->finished), 0);
    CHECK_EQ(atomic_load(&s->forked_marker), 0);
    char buf[4];
    CHECK(read_now(marker[0], buf, sizeof buf) < 0 && errno == EAGAIN);
    close(marker[0]);
    close(marker[1]);
    shm_free(s);
    HYG_END(h);
}

/* ---- children forked by the host ------------------------------------------------------------- */

/* A host-forked child speaking through weft_child_task: 3 events, a result, status 9. */
static int host_body(int wfd, int arg) {
    (void)arg;
    weft_task *t = weft_child_task(wfd);
    if (t == NULL) return 101;
    if (weft_task_cancelled(t)) return 102;
    for (uint32_t i = 0; i < 3; i++)
        if (weft_task_emit(t, "host.ev", &i, sizeof i) != WEFT_OK) return 103;
    if (weft_task_write(t, "from the ", 9) != WEFT_OK) return 104;
    if (weft_task_write(t, "host", 4) != WEFT_OK) return 104;
    weft_child_exit(t, 9);
    return 105; /* not reached */
}

static void on_host_ev(weft_loop *lp, weft_id id, const char *topic, const void *payload, size_t len, void *ud) {
    (void)lp, (void)id, (void)topic;
    ptask *p = (ptask *)ud;
    uint32_t v = 99;
    if (len == sizeof v) memcpy(&v, payload, sizeof v);
    CHECK_MSG(v == (uint32_t)atomic_load(&p->events), "event %u arrived as number %d", v, atomic_load(&p->events));
    CHECK_EQ(atomic_load(&p->dones), 0);
    atomic_fetch_add(&p->events, 1);
}

/* A child forked by the test itself reports through weft_child_task: done gets status 9
 * and the result, the events arrive before done, and the loop closes the read end. */
TEST(host_forked_child_is_adopted) {
    hyg h = HYG_BEGIN();
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    ptask p;
    pt_init(&p, NULL);
    p.count_kids = true;
    weft_id sub = CHECK_ID(weft_subscribe(lp, "host.ev", on_host_ev, &p, NULL));
    host_child hc = host_fork(host_body, 0);
    REQUIRE(hc.pid > 0);
    weft_id id = CHECK_ID(weft_adopt_child(lp, hc.pid, hc.rfd, pt_done, &p, pt_free, NULL));
    if (id == 0) {
        kill(hc.pid, SIGKILL);
        waitpid(hc.pid, NULL, 0);
        close(hc.rfd);
    }
    CHECK_MSG(run_until(lp, &p.dones, 1, h_slack_ms(5000)), "done never ran");
    CHECK_MSG(p.status == 9, "status %d (%s)", p.status, p.err);
    CHECK_MSG(p.len == 13 && memcmp(p.head, "from the host", 13) == 0, "result \"%.*s\"", (int)p.len, p.head);
    CHECK_EQ(p.events_at_done, 3);
    CHECK(p.done_id == id);
    CHECK(pthread_equal(p.done_thread, pthread_self()));
    CHECK_EQ(p.kids_at_done.all, 0);
    CHECK(pid_gone(hc.pid));
    WAIT_FREED(p);
    CHECK_EQ(p.free_pid, getpid());
    CHECK_OK(weft_cancel(lp, sub));
    weft_loop_free(lp);
    HYG_END(h); /* the read end was closed by weft */
}

/* A child that finished (a zombie) before the parent adopted it: its output, waiting in
 * the pipe, still arrives. */
TEST(host_forked_child_that_exited_before_adoption) {
    hyg h = HYG_BEGIN();
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    ptask p;
    pt_init(&p, NULL);
    host_child hc = host_fork(host_body, 0);
    REQUIRE(hc.pid > 0);
    siginfo_t si;
    memset(&si, 0, sizeof si);
    CHECK(waitid(P_PID, (id_t)hc.pid, &si, WEXITED | WNOWAIT) == 0); /* exited, not reaped */
    CHECK_ID(weft_adopt_child(lp, hc.pid, hc.rfd, pt_done, &p, pt_free, NULL));
    CHECK_MSG(run_until(lp, &p.dones, 1, h_slack_ms(5000)), "done never ran");
    CHECK_MSG(p.status == 9, "status %d (%s)", p.status, p.err);
    CHECK_MSG(p.len == 13 && memcmp(p.head, "from the host", 13) == 0, "result \"%.*s\"", (int)p.len, p.head);
    CHECK(pid_gone(hc.pid));
    WAIT_FREED(p);
    weft_loop_free(lp);
    HYG_END(h);
}

/* Raw bytes that break the protocol (an unknown frame kind), then a long sleep. */
static int malformed_body(int wfd, int arg) {
    static const unsigned char junk[] = {1, 0, 0, 0, 'X', 'z'};
    if (arg == 1) {
        /* a good 'W' frame first */
        static const unsigned char good[] = {2, 0, 0, 0, 'W', 'o', 'k'};
        if (write(wfd, good, sizeof good) != (ssize_t)sizeof good) return 2;
    }
    if (write(wfd, junk, sizeof junk) != (ssize_t)sizeof junk) return 1;
    sleep_ms(5000);
    return 0;
}

/* A host-forked child that writes a malformed frame: it is killed, and done gets
 * CRASHED with "protocol" in weft_last_error, at once (not after the child's sleep). */
TEST(host_forked_child_breaking_the_protocol_is_crashed) {
    hyg h = HYG_BEGIN();
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    for (int variant = 0; variant < 2; variant++) {
        ptask p;
        pt_init(&p, NULL);
        host_child hc = host_fork(malformed_body, variant);
        REQUIRE(hc.pid > 0);
        uint64_t t0 = now_ns();
        CHECK_ID(weft_adopt_child(lp, hc.pid, hc.rfd, pt_done, &p, pt_free, NULL));
        CHECK_MSG(run_until(lp, &p.dones, 1, h_slack_ms(3000)), "done never ran");
        double after = pt_done_after_ms(&p, t0);
        CHECK_RC(p.status, WEFT_ERR_CRASHED);
        CHECK(p.result_null);
        CHECK_MSG(strstr(p.err, "protocol") != NULL, "weft_last_error inside done: \"%s\"", p.err);
        CHECK_MSG(after < (double)h_slack_ms(1000), "done came %.1f ms after the adoption", after);
        CHECK_MSG(pid_gone(hc.pid), "the child %d was not killed and reaped", (int)hc.pid);
        WAIT_FREED(p);
    }
    weft_loop_free(lp);
    HYG_END(h);
}


/* options.timeout_ms applies to an adopted child: done(TIMEOUT) at the deadline, and
 * the child is killed and reaped; so does weft_cancel (done(CANCELLED)). */
TEST(adopted_child_timeout_and_cancel_kill_it) {
    hyg h = HYG_BEGIN();
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    ptask p;
    pt_init(&p, NULL);
    host_child hc = host_fork(host_sleeper_body, 5000);
    REQUIRE(hc.pid > 0);
    uint64_t timeout = (uint64_t)h_scale(100, 500);
    weft_spawn_options o = proc_opts(timeout, 0);
    uint64_t t0 = now_ns();
    CHECK_ID(weft_adopt_child(lp, hc.pid, hc.rfd, pt_done, &p, pt_free, &o));
    CHECK_MSG(run_until(lp, &p.dones, 1, h_slack_ms(3000)), "done never ran");
    double after = pt_done_after_ms(&p, t0);
    CHECK_RC(p.status, WEFT_ERR_TIMEOUT);
    CHECK(p.result_null);
    CHECK_MSG(after >= (double)timeout - 1 && after < (double)timeout + (double)h_slack_ms(200),
              "done came %.1f ms after the adoption (timeout %" PRIu64 " ms)", after, timeout);
    CHECK_MSG(pid_gone(hc.pid), "the child %d was not killed and reaped", (int)hc.pid);
    WAIT_FREED(p);
    /* and weft_cancel: CANCELLED, the child killed and reaped */
    ptask q;
    pt_init(&q, NULL);
    hc = host_fork(host_sleeper_body, 5000);
    REQUIRE(hc.pid > 0);
    weft_id id = CHECK_ID(weft_adopt_child(lp, hc.pid, hc.rfd, pt_done, &q, pt_free, NULL));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    t0 = now_ns();
    CHECK_OK(weft_cancel(lp, id));
    CHECK_RC(weft_cancel(lp, id), WEFT_ERR_NOT_FOUND);
    CHECK_MSG(run_until(lp, &q.dones, 1, h_slack_ms(3000)), "done never ran");
    after = pt_done_after_ms(&q, t0);
    CHECK_RC(q.status, WEFT_ERR_CANCELLED);
    CHECK_MSG(after < (double)h_slack_ms(200), "done came %.1f ms after the cancel", after);
    CHECK_MSG(pid_gone(hc.pid), "the child %d was not killed and reaped", (int)hc.pid);
    WAIT_FREED(q);
    weft_loop_free(lp);
    HYG_END(h);
}

/* ---- bad inputs ----------------------------------------------------------------------------- */

/* A child that waits for a byte on `arg` (the gate's read end), then reports "ok" with
 * status 5. */
static int gated_host_body(int wfd, int gate_fd) {
    char c;
    while (read(gate_fd, &c, 1) < 0 && errno == EINTR) {
    }
    weft_task *t = weft_child_task(wfd);
    if (t == NULL) return 101;
    weft_task_write(t, "ok", 2);
    weft_child_exit(t, 5);
    return 102;
}

/* `fd` is still open and its flags unchanged. */
#define CHECK_FD_UNTOUCHED(fd, flags)                                                    \
    CHECK_MSG(fcntl((fd), F_GETFL) == (flags), "fd %d was closed or changed (flags %#x, were %#x)", \
              (fd), fcntl((fd), F_GETFL), (flags))

/* Each refused adoption returns 0 with a message naming weft_adopt_child and the
 * problem, runs no free_fn (never_free), and leaves the caller's fd open and unchanged;
 * the child can still be adopted afterwards. */
TEST(adopt_child_refuses_bad_inputs) {
    hyg h = HYG_BEGIN();
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    int gate[2];
    REQUIRE(pipe(gate) == 0);
    host_child hc = host_fork(gated_host_body, gate[0]);
    REQUIRE(hc.pid > 0);
    close(gate[0]);
    int fl = fcntl(hc.rfd, F_GETFL);
    int ud = 0;
    /* a reaped child's pid */
    pid_t reaped = fork();
    REQUIRE(reaped >= 0);
    if (reaped == 0) _exit(0);
    waitpid(reaped, NULL, 0);

    CHECK_ID_FAILS(weft_adopt_child(NULL, hc.pid, hc.rfd, never_done_fn, &ud, never_free, NULL), "weft_adopt_child");
    CHECK_ERR_HAS("NULL");
    CHECK_FD_UNTOUCHED(hc.rfd, fl);
    pid_t bad_pids[] = {0, -1, getpid(), reaped, 1};
    for (size_t i = 0; i < sizeof bad_pids / sizeof bad_pids[0]; i++) {
        CHECK_ID_FAILS(weft_adopt_child(lp, bad_pids[i], hc.rfd, never_done_fn, &ud, never_free, NULL),
                       "weft_adopt_child");
        char want[32];
        snprintf(want, sizeof want, "pid %d", (int)bad_pids[i]);
        CHECK_ERR_HAS(want);
        CHECK_EQ(weft_last_error_code(), WEFT_ERR_INVALID);
        CHECK_FD_UNTOUCHED(hc.rfd, fl);
    }
    /* the write end of a pipe */
    int q[2];
    REQUIRE(pipe(q) == 0);
    int qfl = fcntl(q[1], F_GETFL);
    CHECK_ID_FAILS(weft_adopt_child(lp, hc.pid, q[1], never_done_fn, &ud, never_free, NULL), "weft_adopt_child");
    CHECK_ERR_HAS("reading");
    CHECK_FD_UNTOUCHED(q[1], qfl);
    /* a regular file, open for reading */
    FILE *f = tmpfile();
    REQUIRE(f != NULL);
    int ffd = fileno(f);
    int ffl = fcntl(ffd, F_GETFL);
    CHECK_ID_FAILS(weft_adopt_child(lp, hc.pid, ffd, never_done_fn, &ud, never_free, NULL), "weft_adopt_child");
    CHECK_ERR_HAS("not a pipe or a socket");
    CHECK_FD_UNTOUCHED(ffd, ffl);
    /* a closed fd, and -1 */
    int closed = dup(hc.rfd);
    REQUIRE(closed >= 0);
    close(closed);
    CHECK_ID_FAILS(weft_adopt_child(lp, hc.pid, closed, never_done_fn, &ud, never_free, NULL), "weft_adopt_child");
    CHECK_ERR_HAS("not an open file descriptor");
    CHECK_ID_FAILS(weft_adopt_child(lp, hc.pid, -1, never_done_fn, &ud, never_free, NULL), "weft_adopt_child");
    /* a timeout above 2^35 - 1 ms, and a bad options size */
    weft_spawn_options o = proc_opts((1ull << 35), 0);
    CHECK_ID_FAILS(weft_adopt_child(lp, hc.pid, hc.rfd, never_done_fn, &ud, never_free, &o), "weft_adopt_child");
    CHECK_ERR_HAS("timeout");
    CHECK_FD_UNTOUCHED(hc.rfd, fl);
    o = proc_opts(0, 0);
    o.size = 3;
    CHECK_ID_FAILS(weft_adopt_child(lp, hc.pid, hc.rfd, never_done_fn, &ud, never_free, &o), "weft_adopt_child");
    CHECK_ERR_HAS("size");
    CHECK_FD_UNTOUCHED(hc.rfd, fl);
    /* nothing was registered */
    CHECK_EQ(weft_loop_alive(lp), 0);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
    /* the child is still there, unharmed, and can be adopted now */
    siginfo_t si;
    memset(&si, 0, sizeof si);
    CHECK(waitid(P_PID, (id_t)hc.pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == 0);
    ptask p;
    pt_init(&p, NULL);
    weft_id id = CHECK_ID(weft_adopt_child(lp, hc.pid, hc.rfd, pt_done, &p, pt_free, NULL));
    CHECK(write(gate[1], "g", 1) == 1);
    if (id != 0) {
        CHECK_MSG(run_until(lp, &p.dones, 1, h_slack_ms(5000)), "done never ran");
        CHECK_MSG(p.status == 5, "status %d (%s)", p.status, p.err);
        CHECK_MSG(p.len == 2 && memcmp(p.head, "ok", 2) == 0, "result \"%.*s\"", (int)p.len, p.head);
        WAIT_FREED(p);
    } else {
        waitpid(hc.pid, NULL, 0);
        close(hc.rfd);
    }
    weft_loop_free(lp);
    close(gate[1]);
    close(q[0]);
    close(q[1]);
    fclose(f);
    HYG_END(h);
}

/* weft_child_task refuses -1, a read-only fd and a regular file. */
TEST(child_task_refuses_bad_fds) {
    hyg h = HYG_BEGIN();
    int q[2];
    REQUIRE(pipe(q) == 0);
    FILE *f = tmpfile();
    REQUIRE(f != NULL);
    int ro = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    REQUIRE(ro >= 0);
    struct {
        int fd;
        const char *needle;
    } cases[] = {{-1, "fd -1"}, {q[0], "not open for writing"}, {ro, "not open for writing"},
                 {fileno(f), "not a pipe or a socket"}, {4000, "not an open file descriptor"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        weft_task *t = weft_child_task(cases[i].fd);
        CHECK_MSG(t == NULL, "weft_child_task(%d) returned a task", cases[i].fd);
        CHECK_ERR_HAS("weft_child_task");
        CHECK_ERR_HAS(cases[i].needle);
        CHECK_EQ(weft_last_error_code(), WEFT_ERR_INVALID);
    }
    CHECK(fcntl(q[0], F_GETFD) >= 0 && fcntl(fileno(f), F_GETFD) >= 0);
    close(q[0]);
    close(q[1]);
    close(ro);
    fclose(f);
    HYG_END(h);
}

typedef struct exit_probe {
    _Atomic int returned;
    int code;
    char err[256];
} exit_probe;

static int child_exit_on_thread_work(weft_task *t, void *ud) {
    exit_probe *e = (exit_probe *)ud;
    weft_child_exit(t, 3); /* must return: this task runs on a thread */
    e->code = weft_last_error_code();
    weft_last_error(e->err, sizeof e->err);
    atomic_store(&e->returned, 1);
    return 0;
}

/* weft_child_exit(NULL, 0) and weft_child_exit on a thread task (inside a WEFT_ON_CPU
 * work) return, with weft_last_error set: the process goes on. */
TEST(child_exit_returns_on_bad_input) {
    hyg h = HYG_BEGIN();
    reset_last_error();
    weft_child_exit(NULL, 0);
    CHECK_ERR_HAS("weft_child_exit");
    CHECK_ERR_HAS("NULL");
    CHECK_EQ(weft_last_error_code(), WEFT_ERR_NULL);
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    exit_probe e;
    memset(&e, 0, sizeof e);
    CHECK_ID(weft_spawn(lp, WEFT_ON_CPU, child_exit_on_thread_work, NULL, &e, NULL, NULL));
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    CHECK(atomic_load(&e.returned));
    CHECK_EQ(proc_children().all, 0);
    CHECK_MSG(strstr(e.err, "weft_child_exit") != NULL, "weft_last_error on the pool thread: \"%s\"", e.err);
    CHECK_EQ(e.code, WEFT_ERR_INVALID);
    weft_loop_free(lp);
    HYG_END(h);
}

static int never_work(weft_task *t, void *ud) {
    (void)t, (void)ud;
    h_fail(__FILE__, __LINE__, "never_work ran");
    return 0;
}

/* weft_spawn(WEFT_ON_PROCESS) refuses options.pool, a timeout above 2^35 - 1 ms and a
 * NULL work; nothing forks and no free_fn runs. */
TEST(spawn_process_refuses_bad_options) {
    hyg h = HYG_BEGIN();
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    weft_pool_options po = pool_opts(WEFT_POOL_CPU, 1, "pbad");
    weft_pool *pool = weft_pool_new(&po);
    REQUIRE(pool != NULL);
    weft_spawn_options o = spawn_opts(pool, 0);
    CHECK_ID_FAILS(weft_spawn(lp, WEFT_ON_PROCESS, never_work, never_done_fn, NULL, never_free, &o), "weft_spawn");
    CHECK_ERR_HAS("pool");
    CHECK_EQ(weft_last_error_code(), WEFT_ERR_INVALID);
    o = proc_opts(1ull << 35, 0);
    CHECK_ID_FAILS(weft_spawn(lp, WEFT_ON_PROCESS, never_work, never_done_fn, NULL, never_free, &o), "timeout");
    o = proc_opts((1ull << 35) - 1, 0); /* the largest allowed: fine */
    ptask p;
    pt_init(&p, NULL);
    p.arg = 1;
    CHECK_ID(pt_spawn(lp, small_work, &p, &o));
    CHECK_ID_FAILS(weft_spawn(lp, WEFT_ON_PROCESS, NULL, never_done_fn, NULL, never_free, NULL), "work is NULL");
    CHECK_MSG(run_until(lp, &p.dones, 1, h_slack_ms(5000)), "done never ran");
    CHECK_EQ(p.status, 1);
    WAIT_FREED(p);
    CHECK_EQ(proc_children().all, 0);
    weft_pool_free(pool);
    weft_loop_free(lp);
    HYG_END(h);
}

/* How many of `n` gated tasks, spawned with `o`, run at once (the others wait for a
 * slot and never fork meanwhile): the count of started children once it has not
 * changed for a while (and is at least `expect`). */
static int concurrency_with(const weft_spawn_options *o, int n, int expect) {
    weft_loop *lp = weft_loop_new();
    if (lp == NULL) return -1;
    pshm *s = shm_new();
    ptask *p = calloc((size_t)n, sizeof *p);
    for (int i = 0; i < n; i++) {
        pt_init(&p[i], s);
        p[i].arg = i;
        if (pt_spawn(lp, gated_work, &p[i], o) == 0) h_fail_e(__FILE__, __LINE__, "spawn %d failed", i);
    }
    /* let every slot fill */
    uint64_t settle = (uint64_t)h_scale(100, 500), end = now_ms() + (uint64_t)h_slack_ms(3000);
    uint64_t since = now_ms();
    int seen = -1;
    while (now_ms() < end) {
        weft_loop_run(lp, WEFT_RUN_NOWAIT);
        int now = atomic_load(&s->started);
        if (now != seen) seen = now, since = now_ms();
        if (now >= expect && now_ms() - since >= settle) break;
        sleep_ms(2);
    }
    int at_once = atomic_load(&s->started);
    atomic_store(&s->gate, 1);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    for (int i = 0; i < n; i++) {
        CHECK_EQ(p[i].status, i);
        WAIT_FREED(p[i]);
    }
    CHECK_EQ(atomic_load(&s->max_active), at_once);
    weft_loop_free(lp);
    free(p);
    shm_free(s);
    return at_once;
}

/* A weft_spawn_options of the first version (size 24: size, timeout_ms, pool; before
 * max_children existed) is accepted, and the garbage after it is not read: the bound is
 * the default (one per core), as with NULL options. */
TEST(first_version_spawn_options_do_not_read_max_children) {
    hyg h = HYG_BEGIN();
    long onln = sysconf(_SC_NPROCESSORS_ONLN);
    int n = (int)(onln > 7 ? 8 : onln + 1);
    int by_default = concurrency_with(NULL, n, 1);
    CHECK_MSG(by_default >= 1 && by_default < n, "%d of %d tasks ran at once by default", by_default, n);
    size_t first_version = offsetof(weft_spawn_options, pool) + sizeof(void *);
    CHECK_EQ(first_version, 24);
    uint32_t garbage[] = {1, 0xFFFFFFFFu, 0xDEADBEEFu};
    for (size_t g = 0; g < sizeof garbage / sizeof garbage[0]; g++) {
        weft_spawn_options o;
        memset(&o, 0, sizeof o);
        o.size = first_version;
        o.max_children = garbage[g];
        int got = concurrency_with(&o, n, by_default);
        CHECK_MSG(got == by_default, "with size 24 and %#x after it, %d tasks ran at once (%d by default)",
                  garbage[g], got, by_default);
    }
    if (by_default < 2)
        printf("    (one slot by default here: the garbage value 1 is not told apart)\n");
    HYG_END(h);
}

/* ---- what a child may call --------------------------------------------------------------- */

static pshm *g_child_shm;
static weft_id g_parent_timer;
static void child_never_cb(weft_loop *lp, weft_id id, void *ud) {
    (void)lp, (void)id, (void)ud;
    shm_note(g_child_shm, __LINE__, "a callback of a refused registration ran");
}
static void child_never_free(void *ud) {
    (void)ud;
    shm_note(g_child_shm, __LINE__, "the free_fn of a refused registration ran");
}
static int child_never_work(weft_task *t, void *ud) {
    (void)t, (void)ud;
    shm_note(g_child_shm, __LINE__, "the work of a refused spawn ran");
    return 0;
}

#define CODE_IS(c) (weft_last_error_code() == (c))

static int forked_calls_work(weft_task *t, void *ud) {
    ptask *p = (ptask *)ud;
    pshm *s = p->shm;
    weft_loop *lp = (weft_loop *)p->ctx;
    CCHECK(s, !weft_task_cancelled(t));
    CCHECK(s, weft_emit(lp, "forked.emit", "x", 1) == WEFT_ERR_FORKED);
    CCHECK(s, strstr(h_last_error(), "weft_emit") != NULL);
    CCHECK(s, weft_post(lp, child_never_cb, NULL, child_never_free) == 0 && CODE_IS(WEFT_ERR_FORKED));
    CCHECK(s, weft_timer_after(lp, 0, child_never_cb, NULL, child_never_free) == 0 && CODE_IS(WEFT_ERR_FORKED));
    CCHECK(s, weft_spawn(lp, WEFT_ON_PROCESS, child_never_work, NULL, NULL, child_never_free, NULL) == 0 &&
                  CODE_IS(WEFT_ERR_FORKED));
    CCHECK(s, weft_spawn(lp, WEFT_ON_CPU, child_never_work, NULL, NULL, child_never_free, NULL) == 0 &&
                  CODE_IS(WEFT_ERR_FORKED));
    CCHECK(s, weft_cancel(lp, g_parent_timer) == WEFT_ERR_FORKED);
    CCHECK(s, weft_loop_alive(lp) == WEFT_ERR_FORKED);
    CCHECK(s, weft_loop_run(lp, WEFT_RUN_NOWAIT) == WEFT_ERR_FORKED);
    CCHECK(s, weft_loop_new() == NULL && CODE_IS(WEFT_ERR_FORKED));
    int fds[2];
    if (pipe(fds) == 0) {
        CCHECK(s, weft_adopt_child(lp, getpid(), fds[0], NULL, NULL, child_never_free, NULL) == 0 &&
                      CODE_IS(WEFT_ERR_FORKED));
        close(fds[0]);
        close(fds[1]);
    }
    sleep_ms(20);
    CCHECK(s, !weft_task_cancelled(t));
    /* the task's own channel checks its arguments as on a thread */
    CCHECK(s, weft_task_emit(t, "bad*topic", "z", 1) == WEFT_ERR_INVALID);
    CCHECK(s, weft_task_emit(t, "", "z", 1) == WEFT_ERR_INVALID);
    CCHECK(s, weft_task_emit(t, NULL, "z", 1) == WEFT_ERR_NULL);
    CCHECK(s, weft_task_emit(t, "forked.task", NULL, 1) == WEFT_ERR_NULL);
    CCHECK(s, weft_task_write(t, NULL, 1) == WEFT_ERR_NULL);
    CCHECK(s, weft_task_write(t, NULL, 0) == WEFT_OK);
    /* the task's own channel still works */
    CCHECK(s, weft_task_emit(t, "forked.task", "y", 1) == WEFT_OK);
    CCHECK(s, weft_task_write(t, "still mine", 10) == WEFT_OK);
    atomic_store(&s->finished, 1);
    return 0;
}

static void count_event(weft_loop *lp, weft_id id, const char *topic, const void *p, size_t n, void *ud) {
    (void)lp, (void)id, (void)p, (void)n;
    ptask *pt = (ptask *)ud;
    if (strcmp(topic, "forked.task") == 0)
        atomic_fetch_add(&pt->events, 1);
    else
        h_fail(__FILE__, __LINE__, "the child's weft_emit on the parent's loop delivered \"%s\"", topic);
}

/* In the child, weft_task_cancelled is false while the parent lives, and every call on
 * the parent's loop (weft_emit, weft_post, weft_timer_after, weft_spawn, weft_cancel,
 * weft_loop_run, ...) returns WEFT_ERR_FORKED, running no callback and no free_fn; the
 * task's own write and emit still work. */
TEST(child_is_not_cancelled_and_may_not_touch_the_parents_loop) {
    hyg h = HYG_BEGIN();
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    pshm *s = shm_new();
    REQUIRE(s != NULL);
    g_child_shm = s;
    ptask p;
    pt_init(&p, s);
    p.ctx = lp;
    weft_id timer = CHECK_ID(weft_timer_after(lp, 100000, never_cb, NULL, NULL));
    g_parent_timer = timer; /* the child tries to cancel it */
    CHECK_ID(weft_subscribe(lp, "forked.*", count_event, &p, NULL));
    CHECK_ID(pt_spawn(lp, forked_calls_work, &p, NULL));
    CHECK_MSG(run_until(lp, &p.dones, 1, h_slack_ms(5000)), "done never ran");
    CHECK_MSG(p.status == 0, "status %d (%s)", p.status, p.err);
    CHECK_EQ(atomic_load(&s->finished), 1);
    CHECK_MSG(p.len == 10 && memcmp(p.head, "still mine", 10) == 0, "result \"%.*s\"", (int)p.len, p.head);
    CHECK_EQ(p.events_at_done, 1);
    CHECK_OK(weft_cancel(lp, timer)); /* the child's weft_cancel did not reach it */
    SHM_CLEAN(s);
    WAIT_FREED(p);
    weft_loop_free(lp);
    shm_free(s);
    g_child_shm = NULL;
    HYG_END(h);
}

/* weft_task_cancelled in a host-forked child (a grandchild here) turns true once its
 * parent is gone: the grandchild makes its task, kills its parent, and reports three
 * bytes on a pipe: task made, not cancelled while the parent lived, cancelled after. */
TEST(child_task_is_cancelled_once_its_parent_is_gone) {
    hyg h = HYG_BEGIN();
    int rep[2];
    REQUIRE(pipe(rep) == 0);
    fflush(stdout);
    fflush(stderr);
    pid_t a = fork();
    REQUIRE(a >= 0);
    if (a == 0) {
        close(rep[0]);
        int w[2];
        if (pipe(w) != 0) _exit(1);
        pid_t b = fork();
        if (b < 0) _exit(2);
        if (b == 0) {
            close(w[0]);
            pid_t parent = getppid();
            weft_task *t = weft_child_task(w[1]);
            char out[3] = {t != NULL, t != NULL && !weft_task_cancelled(t), 0};
            kill(parent, SIGKILL);
            uint64_t end = now_ms() + 5000;
            while (getppid() == parent && now_ms() < end) sleep_ms(1);
            out[2] = t != NULL && weft_task_cancelled(t);
            if (write(rep[1], out, sizeof out) != (ssize_t)sizeof out) _exit(3);
            _exit(0);
        }
        close(w[1]);
        for (;;) pause(); /* until b kills it */
    }
    close(rep[1]);
    int status = 0;
    waitpid(a, &status, 0);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    struct pollfd pfd = {rep[0], POLLIN, 0};
    char out[3] = {0, 0, 0};
    size_t have = 0;
    uint64_t end = now_ms() + (uint64_t)h_slack_ms(5000);
    while (have < sizeof out && now_ms() < end) {
        if (poll(&pfd, 1, 100) <= 0) continue;
        ssize_t n = read(rep[0], out + have, sizeof out - have);
        if (n <= 0) break;
        have += (size_t)n;
    }
    CHECK_EQ(have, 3);
    CHECK_MSG(out[0] == 1, "weft_child_task failed in the grandchild");
    CHECK_MSG(out[1] == 1, "weft_task_cancelled was true while the parent lived");
    CHECK_MSG(out[2] == 1, "weft_task_cancelled stayed false after the parent died");
    close(rep[0]);
    HYG_END(h);
}

/* ---- the pipe and the exit, from the edges -------------------------------------------------- */

/* Work that forks a grandchild which keeps a copy of the pipe's write end (as a work
 * that starts a daemon or calls system() would), then returns at once. */
static int daemon_forking_work(weft_task *t, void *ud) {
    ptask *p = (ptask *)ud;
    pid_t g = fork();
    if (g == 0) {
        sleep_ms(p->ms);
        _exit(0);
    }
    CCHECK(p->shm, g > 0);
    atomic_store(&p->shm->flag, (int)g);
    weft_task_write(t, "left a daemon", 13);
    return 8;
}

/* The child exits while a grandchild still holds the pipe (no end of file): done comes
 * when the child exits, not when the grandchild does. */
TEST(a_grandchild_holding_the_pipe_does_not_delay_done) {
    hyg h = HYG_BEGIN();
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    pshm *s = shm_new();
    REQUIRE(s != NULL);
    ptask p;
    pt_init(&p, s);
    p.ms = 3000;
    uint64_t t0 = now_ns();
    CHECK_ID(pt_spawn(lp, daemon_forking_work, &p, NULL));
    CHECK_MSG(run_until(lp, &p.dones, 1, h_slack_ms(5000)), "done never ran");
    double after = pt_done_after_ms(&p, t0);
    CHECK_EQ(p.status, 8);
    CHECK_MSG(p.len == 13 && memcmp(p.head, "left a daemon", 13) == 0, "result \"%.*s\"", (int)p.len, p.head);
    CHECK_MSG(after < (double)h_slack_ms(1000), "done came %.1f ms after the spawn: it waited for the "
              "grandchild holding the pipe", after);
    int g = atomic_load(&s->flag);
    if (g > 0) kill(g, SIGKILL); /* not our child: init reaps it */
    WAIT_FREED(p);
    SHM_CLEAN(s);
    weft_loop_free(lp);
    shm_free(s);
    HYG_END(h);
}

static int quick_work(weft_task *t, void *ud) {
    ptask *p = (ptask *)ud;
    shm_enter(p->shm);
    weft_task_write(t, "r", 1);
    shm_leave(p->shm);
    if (p->arg == 1) _exit(0); /* no status frame */
    return 6;
}

/* A host that reaps weft's children itself (waitpid on the pid, as a SIGCHLD handler
 * calling waitpid(-1) would): a child that sent its status still reports it; one that
 * did not is CRASHED, "reaped by someone else". With SIGCHLD ignored (children reaped
 * by the kernel) statuses still arrive. */
TEST(a_child_reaped_by_the_host_still_ends_its_task) {
    hyg h = HYG_BEGIN();
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    for (int variant = 0; variant < 2; variant++) {
        pshm *s = shm_new();
        REQUIRE(s != NULL);
        ptask p;
        pt_init(&p, s);
        p.arg = variant;
        CHECK_ID(pt_spawn(lp, quick_work, &p, NULL));
        CHECK(WAIT_FOR(atomic_load(&s->finished) == 1, h_slack_ms(3000)));
        int pid = atomic_load(&s->pid);
        int st = 0;
        CHECK_EQ(waitpid(pid, &st, 0), pid); /* the loop has not run: weft has not reaped it */
        CHECK_MSG(run_until(lp, &p.dones, 1, h_slack_ms(3000)), "done never ran (variant %d)", variant);
        if (variant == 0) {
            CHECK_MSG(p.status == 6, "status %d (%s)", p.status, p.err);
            CHECK(p.len == 1 && p.head[0] == 'r');
        } else {
            CHECK_RC(p.status, WEFT_ERR_CRASHED);
            CHECK_MSG(strstr(p.err, "reaped by someone else") != NULL, "weft_last_error in done: \"%s\"", p.err);
        }
        WAIT_FREED(p);
        shm_free(s);
    }
    /* SIGCHLD ignored: the kernel reaps the children at once */
    struct sigaction old, ign;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    REQUIRE(sigaction(SIGCHLD, &ign, &old) == 0);
    pshm *s = shm_new();
    REQUIRE(s != NULL);
    enum { N = 4 };
    ptask q[N];
    for (int i = 0; i < N; i++) {
        pt_init(&q[i], s);
        CHECK_ID(pt_spawn(lp, quick_work, &q[i], NULL));
    }
    for (int i = 0; i < N; i++) {
        CHECK_MSG(run_until(lp, &q[i].dones, 1, h_slack_ms(3000)), "done %d never ran with SIGCHLD ignored", i);
        CHECK_MSG(q[i].status == 6, "with SIGCHLD ignored: status %d (%s)", q[i].status, q[i].err);
        WAIT_FREED(q[i]);
    }
    sigaction(SIGCHLD, &old, NULL);
    shm_free(s);
    weft_loop_free(lp);
    HYG_END(h);
}

/* A host-forked child may report through a socket pair instead of a pipe. */
static int socket_body(int wfd, int arg) {
    (void)arg;
    weft_task *t = weft_child_task(wfd);
    if (t == NULL) return 101;
    uint32_t i = 0;
    if (weft_task_emit(t, "host.ev", &i, sizeof i) != WEFT_OK) return 103;
    if (weft_task_write(t, "over a socket", 13) != WEFT_OK) return 104;
    weft_child_exit(t, 12);
    return 105;
}

TEST(host_forked_child_may_use_a_socket_pair) {
    hyg h = HYG_BEGIN();
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    ptask p;
    pt_init(&p, NULL);
    CHECK_ID(weft_subscribe(lp, "host.ev", on_host_ev, &p, NULL));
    int sp[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sp) == 0);
    fflush(stdout);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        close(sp[0]);
        _exit(socket_body(sp[1], 0));
    }
    close(sp[1]);
    weft_id id = CHECK_ID(weft_adopt_child(lp, pid, sp[0], pt_done, &p, pt_free, NULL));
    if (id == 0) {
        waitpid(pid, NULL, 0);
        close(sp[0]);
    } else {
        CHECK_MSG(run_until(lp, &p.dones, 1, h_slack_ms(5000)), "done never ran");
        CHECK_MSG(p.status == 12, "status %d (%s)", p.status, p.err);
        CHECK_MSG(p.len == 13 && memcmp(p.head, "over a socket", 13) == 0, "result \"%.*s\"", (int)p.len, p.head);
        CHECK_EQ(p.events_at_done, 1);
        WAIT_FREED(p);
    }
    weft_loop_free(lp);
    HYG_END(h);
}

/* 1 MB through weft_child_task's pipe in one write and in 4 KB writes. */
static int big_host_body(int wfd, int arg) {
    (void)arg;
    weft_task *t = weft_child_task(wfd);
    if (t == NULL) return 101;
    size_t n = 1 << 20;
    unsigned char *buf = malloc(n);
    if (buf == NULL) return 102;
    pattern_fill(buf, 0, n);
    if (weft_task_write(t, buf, n) != WEFT_OK) return 103;
    for (size_t off = 0; off < n; off += 4096)
        if (weft_task_write(t, buf + off, 4096) != WEFT_OK) return 104;
    weft_child_exit(t, 0);
    return 105;
}

static void adopt_big(bool nonblocking) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    int pp[2];
    REQUIRE(pipe2(pp, nonblocking ? O_NONBLOCK : 0) == 0);
    fflush(stdout);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        close(pp[0]);
        _exit(big_host_body(pp[1], 0));
    }
    close(pp[1]);
    ptask p;
    pt_init(&p, NULL);
    weft_id id = CHECK_ID(weft_adopt_child(lp, pid, pp[0], pt_done, &p, pt_free, NULL));
    if (id == 0) {
        waitpid(pid, NULL, 0);
        close(pp[0]);
        weft_loop_free(lp);
        return;
    }
    CHECK_MSG(run_until(lp, &p.dones, 1, h_slack_ms(5000)), "done never ran");
    size_t n = 1 << 20;
    unsigned char *want = malloc(2 * n);
    REQUIRE(want != NULL);
    pattern_fill(want, 0, n);
    memcpy(want + n, want, n);
    CHECK_MSG(p.status == 0, "%s write end: status %d (%s)", nonblocking ? "a non-blocking" : "a blocking",
              p.status, p.err);
    CHECK_MSG(p.len == 2 * n && p.hash == fnv(want, 2 * n), "%s write end: %zu bytes of %zu arrived",
              nonblocking ? "a non-blocking" : "a blocking", p.len, 2 * n);
    free(want);
    WAIT_FREED(p);
    weft_loop_free(lp);
}

TEST(host_forked_child_sends_a_big_result) {
    hyg h = HYG_BEGIN();
    adopt_big(false);
    HYG_END(h);
}

/* The host's pipe may be non-blocking (pipe2(O_NONBLOCK), or a runtime that makes every
 * fd non-blocking): weft_task_write in the child must still deliver every byte rather
 * than fail on EAGAIN when the pipe is full. */
TEST(child_task_on_a_non_blocking_pipe_sends_a_big_result) {
    hyg h = HYG_BEGIN();
    adopt_big(true);
    HYG_END(h);
}

/* ---- races and chains ----------------------------------------------------------------------- */

typedef struct race {
    int n;
    ptask *p;
    _Atomic weft_id *ids;
    int *rc;
    weft_loop *lp;
} race;

static void *race_canceller(void *arg) {
    race *r = (race *)arg;
    unsigned seed = 12345;
    for (int k = 0; k < r->n; k++) {
        int i = (int)((unsigned)(k * 7919) % (unsigned)r->n); /* a fixed shuffle (n prime) */
        while (atomic_load(&r->ids[i]) == 0) sched_yield();
        if (rand_r(&seed) % 3 == 0) sleep_ms(1);
        r->rc[i] = weft_cancel(r->lp, atomic_load(&r->ids[i]));
    }
    return NULL;
}

/* Cancels racing with forks (on the spawning thread and on the loop thread), with work
 * finishing and with done: each cancel is OK (then done gets CANCELLED) or NOT_FOUND
 * (then the task had ended with its own status); every task gets one done and one
 * free_fn; no child is left. */
TEST(cancels_race_with_forks_and_completions) {
    hyg h = HYG_BEGIN();
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    pshm *s = shm_new();
    REQUIRE(s != NULL);
    int n = (int)h_scale(61, 11); /* primes, for the shuffle */
    race r = {n, calloc((size_t)n, sizeof(ptask)), calloc((size_t)n, sizeof(_Atomic weft_id)),
              calloc((size_t)n, sizeof(int)), lp};
    REQUIRE(r.p != NULL && r.ids != NULL && r.rc != NULL);
    /* keeps the loop alive until the end, and counts the children (killed ones leave
     * shm's count of active children too high: they never get to decrement it) */
    sampler sm = {0, 0, 0};
    weft_id keeper = CHECK_ID(weft_timer_every(lp, 1, sample_children, &sm, NULL));
    bg_loop bg;
    bg_start(&bg, lp, WEFT_RUN_DEFAULT);
    pthread_t th;
    pthread_create(&th, NULL, race_canceller, &r);
    weft_spawn_options o = proc_opts(0, 2);
    for (int i = 0; i < n; i++) {
        pt_init(&r.p[i], s);
        r.p[i].arg = i + 1;
        r.p[i].ms = (unsigned)(i % 3);
        weft_id id = weft_spawn(lp, WEFT_ON_PROCESS, counted_work, pt_done, &r.p[i], pt_free, &o);
        if (id == 0) {
            h_fail_e(__FILE__, __LINE__, "spawn %d failed", i);
            id = 1; /* a stale id: the canceller gets NOT_FOUND */
        }
        atomic_store(&r.ids[i], id);
        if (i % 4 == 0) sleep_ms(1);
    }
    pthread_join(th, NULL);
    for (int i = 0; i < n; i++) WAIT_FREED(r.p[i]);
    CHECK_OK(weft_cancel(lp, keeper));
    bg_join(&bg, h_slack_ms(5000), "end once every task is done");
    int cancelled = 0;
    for (int i = 0; i < n; i++) {
        ptask *p = &r.p[i];
        CHECK_EQ(atomic_load(&p->dones), 1);
        CHECK_EQ(atomic_load(&p->frees), 1);
        if (r.rc[i] == WEFT_OK) {
            cancelled++;
            CHECK_MSG(p->status == WEFT_ERR_CANCELLED, "task %d: cancel OK, but done got %d", i, p->status);
        } else {
            CHECK_MSG(r.rc[i] == WEFT_ERR_NOT_FOUND, "task %d: cancel returned %d", i, r.rc[i]);
            CHECK_MSG(p->status == (i + 1) % 200, "task %d: cancel NOT_FOUND, but done got %d (%s)", i,
                      p->status, p->err);
        }
    }
    printf("    (%d of %d cancels came in time; %d children forked)\n", cancelled, n, atomic_load(&s->started));
    CHECK_MSG(sm.max_kids <= 2, "%d children of this process existed at once", sm.max_kids);
    SHM_CLEAN(s);
    weft_loop_free(lp);
    free(r.p);
    free((void *)r.ids);
    free(r.rc);
    shm_free(s);
    HYG_END(h);
}

typedef struct chain {
    int left, dones, bad;
    ptask p[20];
    pshm *s;
} chain;

static void chain_done(weft_loop *lp, weft_id id, int status, const uint8_t *r, size_t len, void *ud);

static void chain_next(weft_loop *lp, chain *c) {
    int i = 20 - c->left--;
    pt_init(&c->p[i], c->s);
    c->p[i].arg = i;
    c->p[i].ctx = c;
    if (weft_spawn(lp, WEFT_ON_PROCESS, small_work, chain_done, &c->p[i], NULL, NULL) == 0) {
        h_fail_e(__FILE__, __LINE__, "spawn from done failed");
        c->left = 0;
    }
}

static void chain_done(weft_loop *lp, weft_id id, int status, const uint8_t *r, size_t len, void *ud) {
    (void)id, (void)r, (void)len;
    ptask *p = (ptask *)ud;
    chain *c = (chain *)p->ctx;
    if (status != p->arg) c->bad++;
    c->dones++;
    if (c->left > 0) chain_next(lp, c);
}

/* done may spawn the next process task (the fork happens inside a loop callback): a
 * chain of 20, under WEFT_RUN_DEFAULT, which returns after the last. */
TEST(done_may_spawn_the_next_process_task) {
    hyg h = HYG_BEGIN();
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    chain *c = calloc(1, sizeof *c);
    REQUIRE(c != NULL);
    c->s = shm_new();
    c->left = (int)h_scale(20, 6);
    int total = c->left;
    chain_next(lp, c);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    CHECK_EQ(c->dones, total);
    CHECK_EQ(c->bad, 0);
    SHM_CLEAN(c->s);
    weft_loop_free(lp);
    shm_free(c->s);
    free(c);
    HYG_END(h);
}

/* Adopted children do not count against max_children: with an adopted child running,
 * a task with max_children = 1 forks at once. */
TEST(adopted_children_take_no_slot) {
    hyg h = HYG_BEGIN();
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    pshm *s = shm_new();
    REQUIRE(s != NULL);
    int gate[2];
    REQUIRE(pipe(gate) == 0);
    host_child hc = host_fork(gated_host_body, gate[0]);
    REQUIRE(hc.pid > 0);
    close(gate[0]);
    ptask a, b;
    pt_init(&a, NULL);
    pt_init(&b, s);
    weft_id id = CHECK_ID(weft_adopt_child(lp, hc.pid, hc.rfd, pt_done, &a, pt_free, NULL));
    weft_spawn_options o = proc_opts(0, 1);
    CHECK_ID(pt_spawn(lp, quick_work, &b, &o));
    CHECK_MSG(run_until(lp, &b.dones, 1, h_slack_ms(3000)), "the spawned task waited for the adopted child's slot");
    CHECK_EQ(b.status, 6);
    CHECK_EQ(atomic_load(&a.dones), 0);
    CHECK(write(gate[1], "g", 1) == 1);
    if (id != 0) {
        CHECK_MSG(run_until(lp, &a.dones, 1, h_slack_ms(3000)), "the adopted child's done never ran");
        CHECK_EQ(a.status, 5);
    }
    WAIT_FREED(a);
    WAIT_FREED(b);
    weft_loop_free(lp);
    close(gate[1]);
    shm_free(s);
    HYG_END(h);
}

/* ---- where spawns come from, and running out of fds ------------------------------------------ */

typedef struct from_thread {
    weft_loop *lp;
    ptask *p;
    _Atomic weft_id id; /* stored by the spawning thread, maybe after done ran */
} from_thread;

static int spawn_process_work(weft_task *t, void *ud) {
    (void)t;
    from_thread *f = (from_thread *)ud;
    weft_id id = pt_spawn(f->lp, small_work, f->p, NULL);
    atomic_store(&f->id, id);
    if (id == 0) h_fail_e(__FILE__, __LINE__, "weft_spawn(WEFT_ON_PROCESS) from a pool thread failed");
    return 0;
}

static void *spawn_process_thread(void *arg) {
    spawn_process_work(NULL, arg);
    return NULL;
}

/* A process task may be spawned from a CPU or an IO pool thread, and from a thread of the
 * host's own: the fork happens there, and the task ends on the loop thread. */
TEST(process_tasks_may_be_spawned_from_any_thread) {
    hyg h = HYG_BEGIN();
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    weft_pool_options po = pool_opts(WEFT_POOL_CPU, 1, "pfcpu");
    weft_pool *cpu = weft_pool_new(&po);
    po = pool_opts(WEFT_POOL_IO, 1, "pfio");
    weft_pool *io = weft_pool_new(&po);
    REQUIRE(cpu != NULL && io != NULL);
    ptask p[3];
    from_thread f[3];
    for (int i = 0; i < 3; i++) {
        pt_init(&p[i], NULL);
        p[i].arg = 10 + i;
        f[i].lp = lp;
        f[i].p = &p[i];
        atomic_store(&f[i].id, 0);
    }
    weft_spawn_options oc = spawn_opts(cpu, 0), oi = spawn_opts(io, 0);
    CHECK_ID(weft_spawn(lp, WEFT_ON_CPU, spawn_process_work, NULL, &f[0], NULL, &oc));
    CHECK_ID(weft_spawn(lp, WEFT_ON_IO, spawn_process_work, NULL, &f[1], NULL, &oi));
    pthread_t th;
    pthread_create(&th, NULL, spawn_process_thread, &f[2]);
    pthread_join(th, NULL);
    for (int i = 0; i < 3; i++) {
        CHECK_MSG(run_until(lp, &p[i].dones, 1, h_slack_ms(5000)), "done %d never ran", i);
        CHECK_EQ(p[i].status, 10 + i);
        CHECK(pthread_equal(p[i].done_thread, pthread_self()));
        /* The spawning thread stores the id after weft_spawn returns, maybe after done. */
        CHECK(WAIT_FOR(atomic_load(&f[i].id) != 0, h_slack_ms(5000)));
        CHECK(p[i].done_id == atomic_load(&f[i].id));
        WAIT_FREED(p[i]);
    }
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    weft_pool_free(cpu);
    weft_pool_free(io);
    weft_loop_free(lp);
    HYG_END(h);
}

/* Takes every free fd number below the soft limit (dups of stdin); returns how many. */
static int fill_fds(int *held, int cap) {
    int n = 0;
    while (n < cap) {
        int fd = dup(0);
        if (fd < 0) break;
        held[n++] = fd;
    }
    return n;
}

static void release_fds(int *held, int *n) {
    while (*n > 0) close(held[--*n]);
}

typedef struct fd_famine {
    int held[256];
    int n;
    ptask a, b;
} fd_famine;

/* a's done: every fd number is taken again before the loop forks the waiting b */
static void famine_done_a(weft_loop *lp, weft_id id, int status, const uint8_t *r, size_t len, void *ud) {
    fd_famine *f = (fd_famine *)((char *)ud - offsetof(fd_famine, a));
    pt_done(lp, id, status, r, len, ud);
    f->n += fill_fds(f->held + f->n, 256 - f->n);
}

static void famine_done_b(weft_loop *lp, weft_id id, int status, const uint8_t *r, size_t len, void *ud) {
    fd_famine *f = (fd_famine *)((char *)ud - offsetof(fd_famine, b));
    pt_done(lp, id, status, r, len, ud);
    release_fds(f->held, &f->n);
}

/* Out of fds: weft_spawn, forking at once, fails with WEFT_ERR_IO (no free_fn, nothing
 * registered); a task waiting for a slot, whose fork on the loop thread fails, gets
 * done(WEFT_ERR_IO) with the reason in weft_last_error. */
TEST(out_of_fds_a_process_task_fails_with_io) {
    hyg h = HYG_BEGIN();
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    pshm *s = shm_new();
    REQUIRE(s != NULL);
    struct rlimit old;
    REQUIRE(getrlimit(RLIMIT_NOFILE, &old) == 0);
    struct rlimit low = old;
    low.rlim_cur = 64;
    REQUIRE(setrlimit(RLIMIT_NOFILE, &low) == 0);
    fd_famine *f = calloc(1, sizeof *f);
    REQUIRE(f != NULL);
    /* 1. at the spawn */
    f->n = fill_fds(f->held, 256);
    int ud = 0;
    weft_id id = weft_spawn(lp, WEFT_ON_PROCESS, never_work, never_done_fn, &ud, never_free, NULL);
    int code = weft_last_error_code();
    char err[300];
    weft_last_error(err, sizeof err);
    release_fds(f->held, &f->n);
    CHECK_MSG(id == 0 && code == WEFT_ERR_IO, "out of fds: weft_spawn returned %#" PRIx64 ", code %d (%s)",
              id, code, err);
    CHECK_MSG(strstr(err, "weft_spawn") != NULL, "weft_last_error: \"%s\"", err);
    CHECK_EQ(weft_loop_alive(lp), 0);
    CHECK_EQ(proc_children().all, 0);
    /* 2. on the loop thread, when a slot frees */
    pt_init(&f->a, s);
    pt_init(&f->b, s);
    weft_spawn_options o = proc_opts(0, 1);
    CHECK_ID(weft_spawn(lp, WEFT_ON_PROCESS, gated_work, famine_done_a, &f->a, pt_free, &o));
    CHECK_ID(weft_spawn(lp, WEFT_ON_PROCESS, marker_work, famine_done_b, &f->b, pt_free, &o));
    atomic_store(&s->gate, 1);
    CHECK_MSG(run_until(lp, &f->b.dones, 1, h_slack_ms(5000)), "the waiting task's done never ran");
    release_fds(f->held, &f->n);
    setrlimit(RLIMIT_NOFILE, &old);
    CHECK_EQ(f->a.status, 0);
    CHECK_RC(f->b.status, WEFT_ERR_IO);
    CHECK_MSG(strstr(f->b.err, "pipe") != NULL || strstr(f->b.err, "fork") != NULL,
              "weft_last_error in done: \"%s\"", f->b.err);
    CHECK_EQ(atomic_load(&s->forked_marker), 0);
    if (getenv("WEFT_TEST_VERBOSE")) printf("    (at the spawn: \"%s\"; in done: \"%s\")\n", err, f->b.err);
    WAIT_FREED(f->a);
    WAIT_FREED(f->b);
    weft_loop_free(lp);
    free(f);
    shm_free(s);
    HYG_END(h);
}

/* ---- the child's signal state ------------------------------------------------------------------ */

static void on_usr2(weft_loop *lp, weft_id id, int signum, void *ud) {
    (void)lp, (void)id, (void)signum, (void)ud;
}

static int signal_state_work(weft_task *t, void *ud) {
    (void)t;
    ptask *p = (ptask *)ud;
    sigset_t mask;
    sigemptyset(&mask);
    CCHECK(p->shm, pthread_sigmask(SIG_BLOCK, NULL, &mask) == 0);
    int blocked = 0;
    for (int sig = 1; sig < 32; sig++) blocked += sigismember(&mask, sig) == 1;
    CCHECK(p->shm, blocked == 0);
    struct sigaction sa;
    CCHECK(p->shm, sigaction(SIGTERM, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL);
    /* weft's handler of the parent's watched signal is gone: back to what it replaced */
    CCHECK(p->shm, sigaction(SIGUSR2, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL);
    shm_enter(p->shm);
    sleep_ms(p->ms);
    return 0;
}

/* The child starts with no signal blocked (though the spawning thread blocks some),
 * SIGTERM at its default (though the parent ignores it), and without weft's signal
 * handlers; so a cancel still ends it with SIGTERM, before any SIGKILL. */
TEST(child_starts_with_no_signal_blocked_and_sigterm_at_default) {
    hyg h = HYG_BEGIN();
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    pshm *s = shm_new();
    REQUIRE(s != NULL);
    CHECK_ID(weft_watch_signal(lp, SIGUSR2, on_usr2, NULL, NULL));
    sigset_t block, old_mask;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    REQUIRE(pthread_sigmask(SIG_BLOCK, &block, &old_mask) == 0);
    struct sigaction ign, old_term;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    REQUIRE(sigaction(SIGTERM, &ign, &old_term) == 0);
    ptask p;
    pt_init(&p, s);
    p.ms = 5000;
    CHECK_ID(pt_spawn(lp, signal_state_work, &p, NULL));
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    CHECK(WAIT_FOR(atomic_load(&s->started) == 1, h_slack_ms(3000)));
    uint64_t t0 = now_ns();
    CHECK_OK(weft_cancel(lp, p.id));
    CHECK_MSG(run_until(lp, &p.dones, 1, h_slack_ms(3000)), "done never ran");
    double after = pt_done_after_ms(&p, t0);
    CHECK_RC(p.status, WEFT_ERR_CANCELLED);
    CHECK_MSG(after < (double)h_slack_ms(200), "done came %.1f ms after the cancel: SIGTERM did not end "
              "the child", after);
    CHECK(pid_gone(atomic_load(&s->pid)));
    SHM_CLEAN(s);
    WAIT_FREED(p);
    weft_loop_free(lp);
    shm_free(s);
    HYG_END(h);
}
