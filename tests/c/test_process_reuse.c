/*
 * test_process_reuse.c: process tasks whose children are reused (weft_spawn_options'
 * reuse_child) and host forks (fork_fn): which tasks share a child (only tasks spawned
 * before its fork), side effects that stay in the child, failures, cancels and timeouts
 * with a shared child, max_children, the host's fork called once per child, bad options,
 * and no zombie, fd or free_fn lost or doubled.
 */
#include "harness.h"
#include "tasks_util.h"
#include "process_util.h"


/* Changed by the parent between spawns: a child sees the value at its fork. */
static int g_marker;
/* Changed by the works, in the child: side effects of earlier tasks in the same child. */
static int g_runs_in_this_process;

/* Writes (pid, marker, runs so far in this process) and returns arg. */
static int pid_work(weft_task *t, void *ud) {
    ptask *p = (ptask *)ud;
    shm_enter(p->shm);
    if (p->ms) sleep_ms(p->ms);
    int v[3] = {(int)getpid(), g_marker, ++g_runs_in_this_process};
    shm_leave(p->shm);
    CCHECK(p->shm, weft_task_write(t, v, sizeof v) == WEFT_OK);
    return p->arg;
}

static int pid_of(const ptask *p) { return ((const int *)p->head)[0]; }
static int marker_of(const ptask *p) { return ((const int *)p->head)[1]; }
static int runs_of(const ptask *p) { return ((const int *)p->head)[2]; }

static weft_spawn_options reuse_opts(uint64_t timeout_ms, uint32_t max_children) {
    weft_spawn_options o = proc_opts(timeout_ms, max_children);
    o.reuse_child = true;
    return o;
}

/* Runs the loop until every one of p[0..n) has had its done, or `ms` pass. */
static int run_until_done(weft_loop *lp, ptask *p, int n, uint64_t ms) {
    uint64_t end = now_ms() + h_slack_ms(ms);
    int count = 0;
    while (now_ms() < end) {
        count = 0;
        for (int i = 0; i < n; i++) count += atomic_load(&p[i].dones);
        if (count == n) break;
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_ONCE));
    }
    return count;
}

/* Runs the loop (without blocking in it: the children's progress wakes no one) until
 * `n` works have started in children, or `ms` pass. */
static void run_until_started(weft_loop *lp, pshm *s, int n, uint64_t ms) {
    uint64_t end = now_ms() + h_slack_ms(ms);
    while (atomic_load(&s->started) < n && now_ms() < end) {
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
        sleep_ms(1);
    }
    CHECK_MSG(atomic_load(&s->started) >= n, "%d works started, not %d", atomic_load(&s->started), n);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_NOWAIT));
}

static int distinct_pids(const ptask *p, int n) {
    int count = 0;
    for (int i = 0; i < n; i++) {
        bool seen = false;
        for (int j = 0; j < i && !seen; j++) seen = pid_of(&p[j]) == pid_of(&p[i]);
        count += !seen;
    }
    return count;
}

/* n tasks of `ms` each, spawned at once with `o`: all done with their results, each
 * done and free_fn once; returns how many children ran them. */
static int spawn_batch(weft_spawn_options *o, int n, unsigned ms, int *max_active) {
    hyg h = HYG_BEGIN();
    weft_loop *lp = weft_loop_new();
    pshm *s = shm_new();
    ptask *p = calloc((size_t)n, sizeof *p);
    if (lp == NULL || s == NULL || p == NULL) {
        h_fail(__FILE__, __LINE__, "setup failed");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        pt_init(&p[i], s);
        p[i].arg = i;
        p[i].ms = ms;
        CHECK_ID(pt_spawn(lp, pid_work, &p[i], o));
    }
    CHECK_EQ(run_until_done(lp, p, n, 20000), n);
    for (int i = 0; i < n; i++) {
        CHECK_EQ(atomic_load(&p[i].dones), 1);
        CHECK_MSG(p[i].status == i && p[i].len == 3 * sizeof(int), "task %d: status %d, %zu bytes", i,
                  p[i].status, p[i].len);
        WAIT_FREED(p[i]);
        CHECK_EQ(atomic_load(&p[i].frees), 1);
    }
    int pids = distinct_pids(p, n);
    *max_active = atomic_load(&s->max_active);
    SHM_CLEAN(s);
    weft_loop_free(lp);
    free(p);
    shm_free(s);
    HYG_END(h);
    return pids;
}

/* 40 tasks spawned at once, max_children 2: the two forked inside weft_spawn run one
 * task each (nothing waited at their fork); the next two forks run the rest. */
TEST(tasks_spawned_together_share_children) {
    int n = (int)h_scale(40, 10), max_active = 0;
    weft_spawn_options o = reuse_opts(0, 2);
    int pids = spawn_batch(&o, n, 1, &max_active);
    printf("    (%d tasks ran in %d children, at most %d at once)\n", n, pids, max_active);
    CHECK_MSG(pids >= 2 && pids <= 4, "%d children for %d tasks", pids, n);
    CHECK_MSG(max_active <= 2, "%d children in their work at once", max_active);
}

TEST(without_reuse_each_task_gets_a_child) {
    int n = (int)h_scale(20, 6), max_active = 0;
    weft_spawn_options o = proc_opts(0, 2);
    CHECK_EQ(spawn_batch(&o, n, 1, &max_active), n);
    CHECK_MSG(max_active <= 2, "%d children in their work at once", max_active);
}

/* max_children 1. A forks inside its spawn; B and C are spawned after that fork, so A's
 * child cannot run them (it exits); B gets a fresh child, which then runs C (spawned
 * before B's fork). Each child saw the parent's state at its fork, and its own earlier
 * tasks' side effects; the parent's state is its own. */
TEST(a_child_runs_only_tasks_spawned_before_its_fork) {
    ENV_BEGIN();
    weft_spawn_options o = reuse_opts(0, 1);
    ptask p[4];
    for (int i = 0; i < 4; i++) {
        pt_init(&p[i], s);
        p[i].arg = i;
        p[i].ms = i == 0 ? 30 : 1;
    }
    g_marker = 1;
    CHECK_ID(pt_spawn(lp, pid_work, &p[0], &o));
    g_marker = 2;
    CHECK_ID(pt_spawn(lp, pid_work, &p[1], &o));
    CHECK_ID(pt_spawn(lp, pid_work, &p[2], &o));
    CHECK_EQ(run_until_done(lp, p, 3, 10000), 3);
    g_marker = 3;
    CHECK_ID(pt_spawn(lp, pid_work, &p[3], &o)); /* after every fork: a fresh child */
    CHECK_EQ(run_until_done(lp, p, 4, 10000), 4);
    CHECK_MSG(pid_of(&p[1]) != pid_of(&p[0]), "B ran in A's child, forked before B was spawned");
    CHECK_MSG(pid_of(&p[2]) == pid_of(&p[1]), "C did not run in B's child (spawned before its fork)");
    CHECK_MSG(pid_of(&p[3]) != pid_of(&p[1]), "D ran in a child forked before D was spawned");
    CHECK_EQ(marker_of(&p[0]), 1);
    CHECK_EQ(marker_of(&p[1]), 2);
    CHECK_EQ(marker_of(&p[2]), 2);
    CHECK_EQ(marker_of(&p[3]), 3);
    /* The trade-off: C saw B's side effect in their shared child; the parent saw none. */
    CHECK_EQ(runs_of(&p[0]), 1);
    CHECK_EQ(runs_of(&p[1]), 1);
    CHECK_EQ(runs_of(&p[2]), 2);
    CHECK_EQ(runs_of(&p[3]), 1);
    CHECK_EQ(g_runs_in_this_process, 0);
    for (int i = 0; i < 4; i++) WAIT_FREED(p[i]);
    ENV_END();
}

/* What each task of fail_work does, by its arg. */
enum { OK_TASK, CRASH_TASK, EXIT_TASK };

static int fail_work(weft_task *t, void *ud) {
    ptask *p = (ptask *)ud;
    int v[3] = {(int)getpid(), g_marker, ++g_runs_in_this_process};
    switch (p->arg) {
    case CRASH_TASK:
        abort();
    case EXIT_TASK:
        weft_task_write(t, v, sizeof v);
        weft_child_exit(t, 5);
        return 99; /* not reached */
    default:
        weft_task_write(t, v, sizeof v);
        return 0;
    }
}

/* max_children 1, tasks in a row: a crash fails only its task (the rest get a fresh
 * child), and weft_child_exit ends its child after its task's status (the next task is
 * not lost: it gets a fresh child). */
TEST(a_failure_in_a_shared_child_fails_only_its_task) {
    ENV_BEGIN();
    weft_spawn_options o = reuse_opts(0, 1);
    int kinds[] = {OK_TASK, OK_TASK, OK_TASK, CRASH_TASK, OK_TASK, EXIT_TASK, OK_TASK, OK_TASK};
    enum { N = sizeof kinds / sizeof kinds[0] };
    ptask p[N];
    for (int i = 0; i < N; i++) {
        pt_init(&p[i], s);
        p[i].arg = kinds[i];
        CHECK_ID(pt_spawn(lp, fail_work, &p[i], &o));
    }
    CHECK_EQ(run_until_done(lp, p, N, 10000), N);
    for (int i = 0; i < N; i++) {
        int want = kinds[i] == CRASH_TASK ? WEFT_ERR_CRASHED : kinds[i] == EXIT_TASK ? 5 : 0;
        CHECK_MSG(p[i].status == want, "task %d: status %d, expected %d (%s)", i, p[i].status, want, p[i].err);
        if (kinds[i] == CRASH_TASK) CHECK_MSG(strstr(p[i].err, "SIGABRT") != NULL, "task %d: %s", i, p[i].err);
        else CHECK_EQ(p[i].len, 3 * sizeof(int));
    }
    /* Task 0 forked alone; 1 and 2 share a child; 3 crashes in it; 4 and 5 share a fresh
     * one, which 5 ends; 6 and 7 share the last. */
    CHECK(pid_of(&p[1]) == pid_of(&p[2]));
    CHECK(pid_of(&p[4]) == pid_of(&p[5]) && pid_of(&p[4]) != pid_of(&p[2]));
    CHECK(pid_of(&p[6]) == pid_of(&p[7]) && pid_of(&p[6]) != pid_of(&p[5]));
    for (int i = 0; i < N; i++) WAIT_FREED(p[i]);
    ENV_END();
}

static void count_event(weft_loop *lp, weft_id id, const char *topic, const void *payload, size_t len,
                        void *ud) {
    (void)lp, (void)id, (void)topic;
    ptask *p = (ptask *)ud;
    int which;
    CHECK(len == sizeof which);
    memcpy(&which, payload, sizeof which);
    atomic_fetch_add(&p[which].events, 1);
    CHECK_MSG(atomic_load(&p[which].dones) == 0, "an event of task %d after its done", which);
}

static int emit_work(weft_task *t, void *ud) {
    ptask *p = (ptask *)ud;
    for (int k = 0; k < 10; k++) CCHECK(p->shm, weft_task_emit(t, "reuse.ev", &p->arg, sizeof p->arg) == WEFT_OK);
    int v[3] = {(int)getpid(), 0, 0};
    weft_task_write(t, v, sizeof v);
    return 0;
}

/* Each task's events reach the subscribers before its own done, in a shared child too. */
TEST(events_of_tasks_sharing_a_child_arrive_before_their_done) {
    ENV_BEGIN();
    enum { N = 12 };
    ptask p[N];
    weft_id sub = CHECK_ID(weft_subscribe(lp, "reuse.*", count_event, p, NULL));
    weft_spawn_options o = reuse_opts(0, 1);
    for (int i = 0; i < N; i++) {
        pt_init(&p[i], s);
        p[i].arg = i;
        CHECK_ID(pt_spawn(lp, emit_work, &p[i], &o));
    }
    CHECK_EQ(run_until_done(lp, p, N, 10000), N);
    for (int i = 0; i < N; i++) {
        CHECK_EQ(p[i].status, 0);
        CHECK_MSG(p[i].events_at_done == 10, "task %d: %d events before its done", i, p[i].events_at_done);
    }
    CHECK_MSG(distinct_pids(p, N) <= 2, "%d children for %d tasks", distinct_pids(p, N), N);
    CHECK_OK(weft_cancel(lp, sub));
    for (int i = 0; i < N; i++) WAIT_FREED(p[i]);
    ENV_END();
}

/* max_children 1: a waiting task cancelled never runs; a waiting task's timeout counts
 * from its spawn; a task running in a shared child, cancelled, kills only that child
 * (the tasks after it get a fresh one). */
TEST(cancels_and_timeouts_with_a_shared_child) {
    ENV_BEGIN();
    enum { N = 7 };
    unsigned ms[N] = {40, 1, 1, 1, 5000, 1, 1};
    ptask p[N];
    for (int i = 0; i < N; i++) {
        pt_init(&p[i], s);
        p[i].arg = i;
        p[i].ms = ms[i];
        weft_spawn_options o = reuse_opts(i == 3 ? 10 : 0, 1);
        CHECK_ID(pt_spawn(lp, pid_work, &p[i], &o));
    }
    CHECK_OK(weft_cancel(lp, p[2].id));      /* waiting: never runs */
    CHECK_EQ(run_until_done(lp, p, 2, 5000), 2); /* 0, and 1 in a fresh child */
    run_until_started(lp, s, 3, 5000);
    /* 4 runs now, in 1's child (3 timed out while it waited behind 0): cancel it. */
    CHECK_EQ(atomic_load(&p[3].dones), 1);
    CHECK_EQ(atomic_load(&p[4].dones), 0);
    CHECK_OK(weft_cancel(lp, p[4].id));
    CHECK_EQ(run_until_done(lp, p, N, 10000), N);
    int want[N] = {0, 1, WEFT_ERR_CANCELLED, WEFT_ERR_TIMEOUT, WEFT_ERR_CANCELLED, 5, 6};
    for (int i = 0; i < N; i++) CHECK_MSG(p[i].status == want[i], "task %d: status %d, expected %d", i, p[i].status, want[i]);
    CHECK_EQ(atomic_load(&s->started), 5); /* not 2, nor 3 */
    CHECK_MSG(pid_of(&p[5]) != 0 && pid_of(&p[5]) == pid_of(&p[6]), "5 and 6 did not share a fresh child");
    CHECK_MSG(pid_of(&p[5]) != pid_of(&p[1]), "5 ran in the killed child");
    for (int i = 0; i < N; i++) WAIT_FREED(p[i]);
    ENV_END();
}

/* ---- host forks ------------------------------------------------------------------------- */

typedef struct host {
    _Atomic int calls;
    int mode; /* 0: fork; 1: fail with EAGAIN; 2: return 0 in the parent; 3: a pid not ours */
} host;

static int host_fork(void *data) {
    host *hf = (host *)data;
    atomic_fetch_add(&hf->calls, 1);
    switch (hf->mode) {
    case 1:
        errno = EAGAIN;
        return -1;
    case 2:
        return 0;
    case 3:
        return 1; /* init */
    default:
        return fork();
    }
}

/* A host fork is called once per child, with its data; tasks of another fork (or of
 * weft's) never share its children. In blocks of 8 tasks per fork: group 0 uses `one`,
 * group 1 `two`, group 2 weft's fork. */
TEST(a_host_fork_makes_each_child) {
    ENV_BEGIN();
    host one = {0, 0}, two = {0, 0};
    enum { N = 24 };
    ptask p[N];
    for (int i = 0; i < N; i++) {
        pt_init(&p[i], s);
        p[i].arg = i;
        p[i].ms = 1;
        weft_spawn_options o = reuse_opts(0, 2);
        if (i / 8 != 2) {
            o.fork_fn = host_fork;
            o.fork_data = i / 8 == 0 ? &one : &two;
        }
        CHECK_ID(pt_spawn(lp, pid_work, &p[i], &o));
    }
    CHECK_EQ(run_until_done(lp, p, N, 10000), N);
    for (int i = 0; i < N; i++) CHECK_EQ(p[i].status, i);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < i; j++)
            CHECK_MSG(i / 8 == j / 8 || pid_of(&p[i]) != pid_of(&p[j]), "tasks %d and %d of other forks shared a child", i, j);
    int forks_one = 0, forks_two = 0;
    for (int i = 0; i < N; i++) {
        bool first = true;
        for (int j = 0; j < i; j++) first = first && pid_of(&p[j]) != pid_of(&p[i]);
        if (first && i / 8 == 0) forks_one++;
        if (first && i / 8 == 1) forks_two++;
    }
    CHECK_EQ(atomic_load(&one.calls), forks_one);
    CHECK_EQ(atomic_load(&two.calls), forks_two);
    CHECK_MSG(distinct_pids(p, N) < N, "no child was reused");
    printf("    (%d tasks: %d + %d host forks, %d children in all)\n", N, forks_one, forks_two, distinct_pids(p, N));
    for (int i = 0; i < N; i++) WAIT_FREED(p[i]);
    ENV_END();
}

/* A host fork that fails, returns 0 in the parent or a pid that is not a child: refused
 * in weft_spawn (free_fn not run), or, for a task that waited, done gets the error. */
TEST(a_bad_host_fork_is_an_error) {
    ENV_BEGIN();
    int codes[] = {0, WEFT_ERR_IO, WEFT_ERR_INVALID, WEFT_ERR_INVALID};
    const char *says[] = {"", "fork_fn", "returned 0 in the parent", "not a child"};
    for (int mode = 1; mode <= 3; mode++) {
        host hf = {0, mode};
        ptask p;
        pt_init(&p, s);
        weft_spawn_options o = reuse_opts(0, 1);
        o.fork_fn = host_fork;
        o.fork_data = &hf;
        CHECK_ID_FAILS(pt_spawn(lp, pid_work, &p, &o), says[mode]);
        CHECK_EQ(weft_last_error_code(), codes[mode]);
        CHECK_EQ(atomic_load(&hf.calls), 1);
        CHECK_EQ(atomic_load(&p.frees), 0);
    }
    /* Waiting for the slot, then refused on the loop thread: done gets it. */
    host good = {0, 0}, bad = {0, 1};
    ptask a, b;
    pt_init(&a, s);
    pt_init(&b, s);
    a.ms = 20;
    weft_spawn_options oa = proc_opts(0, 1), ob = proc_opts(0, 1);
    oa.fork_fn = host_fork;
    oa.fork_data = &good;
    ob.fork_fn = host_fork;
    ob.fork_data = &bad;
    CHECK_ID(pt_spawn(lp, pid_work, &a, &oa));
    CHECK_ID(pt_spawn(lp, pid_work, &b, &ob));
    uint64_t end = now_ms() + h_slack_ms(5000);
    while ((atomic_load(&a.dones) == 0 || atomic_load(&b.dones) == 0) && now_ms() < end)
        CHECK_OK(weft_loop_run(lp, WEFT_RUN_ONCE));
    CHECK_EQ(a.status, 0);
    CHECK_EQ(b.status, WEFT_ERR_IO);
    CHECK_MSG(strstr(b.err, "fork_fn") != NULL, "done's error: %s", b.err);
    WAIT_FREED(a);
    WAIT_FREED(b);
    CHECK_EQ(atomic_load(&b.frees), 1);
    ENV_END();
}

static void never_done(weft_loop *lp, weft_id id, int status, const uint8_t *r, size_t len, void *ud) {
    (void)lp, (void)id, (void)status, (void)r, (void)len, (void)ud;
    h_fail(__FILE__, __LINE__, "done ran");
}

/* reuse_child and fork_fn on tasks that do not fork, and on adopted children: refused,
 * free_fn not run. */
TEST(reuse_and_fork_fn_only_for_process_tasks) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    track t;
    memset((void *)&t, 0, sizeof t);
    host hf = {0, 0};
    weft_where places[] = {WEFT_ON_LOOP, WEFT_ON_IO, WEFT_ON_CPU};
    for (int i = 0; i < 3; i++) {
        weft_spawn_options o = reuse_opts(0, 0);
        CHECK_ID_FAILS(weft_spawn(lp, places[i], pid_work, never_done, &t, track_free, &o), "reuse_child");
        CHECK_EQ(weft_last_error_code(), WEFT_ERR_INVALID);
        o = proc_opts(0, 0);
        o.fork_fn = host_fork;
        CHECK_ID_FAILS(weft_spawn(lp, places[i], pid_work, never_done, &t, track_free, &o), "fork_fn");
    }
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    pid_t pid = fork();
    if (pid == 0) _exit(0);
    weft_spawn_options o = reuse_opts(0, 0);
    CHECK_ID_FAILS(weft_adopt_child(lp, pid, fds[0], never_done, &t, track_free, &o), "reuse_child");
    o = proc_opts(0, 0);
    o.fork_fn = host_fork;
    o.fork_data = &hf;
    CHECK_ID_FAILS(weft_adopt_child(lp, pid, fds[0], never_done, &t, track_free, &o), "fork_fn");
    CHECK_EQ(atomic_load(&hf.calls), 0);
    CHECK_EQ(atomic_load(&t.frees), 0);
    waitpid(pid, NULL, 0);
    close(fds[0]);
    close(fds[1]);
    weft_loop_free(lp);
}

/* A caller built against the first header passes a 32-byte struct: what lies after it
 * (garbage here) is never read as reuse_child or fork_fn. */
TEST(older_options_never_reuse) {
    int n = 6, max_active = 0;
    struct {
        weft_spawn_options o;
        unsigned char garbage[64];
    } old;
    memset(&old, 0xff, sizeof old);
    weft_spawn_options o = proc_opts(0, 1);
    memcpy(&old.o, &o, 32);
    old.o.size = 32;
    CHECK_EQ(spawn_batch(&old.o, n, 1, &max_active), n);
}

/* Freeing the loop with a shared child running and tasks waiting: the child is killed
 * and reaped, no done runs, every free_fn runs once. */
TEST(free_with_a_shared_child_running_and_tasks_waiting) {
    ENV_BEGIN();
    enum { N = 6 };
    ptask p[N];
    weft_spawn_options o = reuse_opts(0, 1);
    for (int i = 0; i < N; i++) {
        pt_init(&p[i], s);
        p[i].arg = i;
        p[i].ms = i == 2 ? 10000 : 1;
        CHECK_ID(pt_spawn(lp, pid_work, &p[i], &o));
    }
    run_until_started(lp, s, 3, 5000);
    CHECK_EQ(atomic_load(&p[1].dones), 1);
    CHECK_EQ(atomic_load(&p[2].dones), 0);
    weft_loop_free(lp);
    for (int i = 0; i < N; i++) {
        CHECK_EQ(atomic_load(&p[i].frees), 1);
        CHECK_EQ(atomic_load(&p[i].dones), i < 2 ? 1 : 0);
    }
    shm_free(s);
    HYG_END(h);
}

/* ---- from many threads ------------------------------------------------------------------ */

typedef struct spawner {
    weft_loop *lp;
    ptask *p;
    int n, seed;
} spawner;

static void *spawn_many(void *arg) {
    spawner *sp = (spawner *)arg;
    unsigned seed = (unsigned)sp->seed;
    for (int i = 0; i < sp->n; i++) {
        weft_spawn_options o = reuse_opts(rand_r(&seed) % 4 == 0 ? 1 + rand_r(&seed) % 30 : 0, 2);
        if (!CHECK_ID(pt_spawn(sp->lp, pid_work, &sp->p[i], &o))) continue;
        if (rand_r(&seed) % 4 == 0) {
            if (rand_r(&seed) % 2) sleep_ms(rand_r(&seed) % 5);
            int rc = weft_cancel(sp->lp, sp->p[i].id);
            CHECK_MSG(rc == WEFT_OK || rc == WEFT_ERR_NOT_FOUND, "cancel: %d", rc);
        }
    }
    return NULL;
}

static void sample_kids(weft_loop *lp, weft_id id, void *ud) {
    (void)lp, (void)id;
    int *max = (int *)ud;
    kids k = proc_children();
    if (k.all > *max) *max = k.all;
}

/* 4 threads spawn process tasks with reuse into a running loop (some with timeouts,
 * some cancelled at once or a little later): every task ends exactly once (done and
 * free_fn), with its result or the status of its cancel or timeout; at most 2 works run
 * at once; no child, zombie or fd is left. */
TEST(spawns_and_cancels_from_many_threads) {
    ENV_BEGIN();
    enum { THREADS = 4 };
    int per = (int)h_scale(40, 8), n = THREADS * per;
    ptask *p = calloc((size_t)n, sizeof *p);
    REQUIRE(p != NULL);
    for (int i = 0; i < n; i++) {
        pt_init(&p[i], s);
        p[i].arg = i % per;
        p[i].ms = (unsigned)(i % 3);
    }
    /* A timer keeps the loop alive until every spawner has finished, and counts this
     * process's children (a killed child never leaves its work in the shared counts). */
    int max_kids = 0;
    weft_id keep = CHECK_ID(weft_timer_every(lp, 1, sample_kids, &max_kids, NULL));
    bg_loop bg;
    bg_start(&bg, lp, WEFT_RUN_DEFAULT);
    pthread_t th[THREADS];
    spawner sp[THREADS];
    for (int t = 0; t < THREADS; t++) {
        sp[t] = (spawner){lp, p + t * per, per, 17 + t};
        pthread_create(&th[t], NULL, spawn_many, &sp[t]);
    }
    for (int t = 0; t < THREADS; t++) pthread_join(th[t], NULL);
    CHECK_OK(weft_cancel(lp, keep));
    bg_join(&bg, h_slack_ms(30000), "process tasks from 4 threads");
    CHECK_EQ(bg.rc, WEFT_OK);
    int ok = 0, cancelled = 0, timed_out = 0;
    for (int i = 0; i < n; i++) {
        CHECK_EQ(atomic_load(&p[i].dones), 1);
        WAIT_FREED(p[i]);
        CHECK_EQ(atomic_load(&p[i].frees), 1);
        if (p[i].status == p[i].arg && p[i].len == 3 * sizeof(int)) ok++;
        else if (p[i].status == WEFT_ERR_CANCELLED) cancelled++;
        else if (p[i].status == WEFT_ERR_TIMEOUT) timed_out++;
        else h_fail(__FILE__, __LINE__, "task %d: status %d (%s)", i, p[i].status, p[i].err);
    }
    CHECK_MSG(max_kids <= 2, "%d children at once", max_kids);
    printf("    (%d tasks: %d ok, %d cancelled, %d timed out, %d children, at most %d at once)\n", n, ok, cancelled,
           timed_out, distinct_pids(p, n), max_kids);
    CHECK(ok > n / 3);
    free(p);
    ENV_END();
}
