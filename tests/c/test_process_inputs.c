/* Process tasks given bad inputs (NULLs, stale ids, bad fds, huge values, the wrong
 * thread), and what a child may and may not call.
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

/* ---- bad inputs ----------------------------------------------------------------------------- */

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
    ENV_BEGIN();
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
