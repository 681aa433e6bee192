/* Process tasks at the edges: a grandchild holding the pipe, a child reaped by the host
 * or with SIGCHLD ignored, cancels racing with forks, chains of spawns from done and
 * from any thread, running out of fds, and the child's signal state.
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
    ENV_BEGIN();
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
    ENV_END();
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
    ENV_BEGIN();
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
    ENV_BEGIN();
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
    ENV_BEGIN();
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
    ENV_BEGIN();
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
