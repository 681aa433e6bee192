/* bench_weft_process.h: the process-task workloads of bench_weft.c (process_overhead,
 * process_reuse), included by it once: a trivial WEFT_ON_PROCESS task per fork, and
 * tasks sent to reused children, each measured in a fresh child of the bench. */
#ifndef BENCH_WEFT_PROCESS_H
#define BENCH_WEFT_PROCESS_H

/* process_overhead: a trivial WEFT_ON_PROCESS task one at a time (each spawned by the
 * previous one's done, on the loop thread), with the parent's RSS at ~10 MB and at
 * ~1 GB, each size in a fresh child of this program; and the same with WEFT_ON_IO in
 * the same child, for reference.  A fork copies the parent's page tables, so its cost
 * grows with the parent's resident memory. */
struct po_size { const char *name; unsigned mb; };
static const struct po_size po_sizes[] = { { "10m", 10 }, { "1g", 1024 } };

/* Whether MemAvailable leaves room for a parent of `size` (its ballast, plus a margin
 * for everything else); *avail_mb and *need_mb say how much there is and is needed. */
static int size_fits(const struct po_size *size, long *avail_mb, long *need_mb)
{
    long need = ((long)size->mb << 20) + (256L << 20), avail = mem_available_bytes();
    *avail_mb = avail >> 20;
    *need_mb = need >> 20;
    return avail < 0 || avail >= need;
}

/* Brings this process's RSS to about `size` with a ballast of *len bytes (NULL: none). */
static char *grow_to(const struct po_size *size, size_t *len)
{
    long want = (long)size->mb << 20, have = rss_bytes();
    *len = want > have ? (size_t)(want - have) : 0;
    return ballast_new(*len);
}

static uint64_t *po_spawn_ns;   /* time inside weft_spawn (the fork, for a process task) */
static uint64_t po_deadline;    /* no new sample after this (now_ns) */

static void po_done_fn(weft_loop *loop, weft_id id, int status, const uint8_t *result,
                       size_t len, void *ud);

static void po_spawn(weft_loop *loop)
{
    seq_next(&sq);
    idcheck(weft_spawn(loop, t_where, nop_work_fn, po_done_fn, NULL, NULL, &t_opts));
    po_spawn_ns[sq.i] = now_ns() - sq.t0;
}

static void po_done_fn(weft_loop *loop, weft_id id, int status, const uint8_t *result,
                       size_t len, void *ud)
{
    (void)id; (void)ud;
    if (status != 0 || len != 0)
        fprintf(stderr, "%s: task %llu: status %d (%s), %zu result bytes\n", bench_system,
                (unsigned long long)sq.i, status, weft_strerror(status), len);
    (void)result;
    if (!seq_done(&sq, status == 0 && len == 0) && now_ns() < po_deadline)
        po_spawn(loop);
}

static void po_first(weft_loop *loop, weft_id id, void *ud)
{
    (void)id; (void)ud;
    po_spawn(loop);
}

/* n tasks one at a time, or fewer once budget_s has passed; the samples are in sq */
static void po_seq(weft_loop *loop, weft_where where, uint32_t n, double budget_s)
{
    use_pool(where, NULL);
    free(sq.lat_ns);
    free(po_spawn_ns);
    seq_init(&sq, n);
    po_spawn_ns = xcalloc(n, sizeof *po_spawn_ns);
    po_deadline = now_ns() + (uint64_t)(budget_s * 1e9);
    idcheck(weft_post(loop, po_first, NULL, NULL));
    wcheck(weft_loop_run(loop, WEFT_RUN_DEFAULT));
    if (sq.i == 0 || sq.bad_status)
        die("%llu tasks completed, %u with an error status", (unsigned long long)sq.i,
            sq.bad_status);
}

static void po_report(const char *system, double wall_s)
{
    size_t n = sq.i;
    bench_system = system;
    qsort(sq.lat_ns, n, sizeof *sq.lat_ns, cmp_u64);
    qsort(po_spawn_ns, n, sizeof *po_spawn_ns, cmp_u64);
    result("process_overhead", "median_us=%.1f p99_us=%.1f max_us=%.1f spawn_median_us=%.1f "
           "rss_mb=%.1f n=%zu wall_s=%.3f", sq.lat_ns[n / 2] / 1e3,
           sq.lat_ns[(size_t)(n * 0.99)] / 1e3, sq.lat_ns[n - 1] / 1e3,
           po_spawn_ns[n / 2] / 1e3, rss_bytes() / 1048576.0, n, wall_s);
}

static void po_child(void *arg)
{
    const struct po_size *size = arg;
    char process[32], io[32];
    snprintf(process, sizeof process, "weft-process-%s", size->name);
    snprintf(io, sizeof io, "weft-io-%s", size->name);
    size_t ballast_len;
    char *ballast = grow_to(size, &ballast_len);
    weft_loop *loop = new_loop();
    po_seq(loop, WEFT_ON_IO, 20, 1.0);          /* warm-up: starts an IO pool thread */
    po_seq(loop, WEFT_ON_PROCESS, 3, 1.0);      /*   and the process task machinery */
    bench_system = process;
    uint64_t t = now_ns();
    po_seq(loop, WEFT_ON_PROCESS, N_PROC_SEQ, PROC_BUDGET_S);
    po_report(process, (now_ns() - t) / 1e9);
    bench_system = io;
    t = now_ns();
    po_seq(loop, WEFT_ON_IO, N_TASK_SEQ, PROC_BUDGET_S);
    po_report(io, (now_ns() - t) / 1e9);
    weft_loop_free(loop);
    if (ballast)
        munmap(ballast, ballast_len);
}

static void process_overhead(void)
{
    if (bench_variant && strcmp(bench_variant, "10m") != 0 && strcmp(bench_variant, "1g") != 0)
        die("process_overhead: unknown variant '%s' (10m, 1g)", bench_variant);
    for (size_t i = 0; i < sizeof po_sizes / sizeof *po_sizes; i++) {
        const struct po_size *size = &po_sizes[i];
        if (bench_variant && strcmp(bench_variant, size->name) != 0)
            continue;
        long avail, need;
        if (!size_fits(size, &avail, &need)) {
            for (int io = 0; io < 2; io++)
                printf("SKIP workload=process_overhead system=weft-%s-%s reason=MemAvailable "
                       "is %ld MB, %ld MB needed\n", io ? "io" : "process", size->name,
                       avail, need);
            continue;
        }
        run_in_child(po_child, (void *)size, "process_overhead");
    }
}

/* process_reuse: N_REUSE process tasks of a ~2 ms busy loop (each writes its child's pid
 * and its index), all spawned from the loop thread before weft_loop_run, max_children =
 * N (the CPUs), run until all are done; wall time from the first spawn to the last done.
 * Rows: weft-process-reuse (reuse_child: one child runs many tasks), weft-process-fork
 * (a fork per task), and fork-per-task, a hand-written baseline without weft: a fork per
 * task, N at a time, the result through a pipe, waitpid.  REPS_REUSE batches per row
 * (REPS_REUSE_BIG with the big parent), interleaved; the median is reported.  With the
 * parent's RSS at ~10 MB and ~256 MB, each size in a fresh child of this program (a
 * fork's cost grows with the parent's RSS). */
static const struct po_size pr_sizes[] = { { "10m", 10 }, { "256m", 256 } };
static const int pr_reps[] = { REPS_REUSE, REPS_REUSE_BIG };   /* batches per row, by size */
_Static_assert(REPS_REUSE_BIG <= REPS_REUSE, "pr_row holds REPS_REUSE batches");

enum { PR_REUSE, PR_FORK, PR_BASELINE, PR_ROWS };
static const char *const pr_rows[PR_ROWS] = {
    "weft-process-reuse", "weft-process-fork", "fork-per-task",
};

struct pr_out { int32_t pid; uint32_t index; };   /* what a task writes */

struct pr_run {
    uint32_t n;
    uint64_t done;          /* completions so far (the watchdog reads it) */
    uint32_t bad;           /* bad status or result */
    uint64_t t0, t_end;     /* first spawn (fork), last done (reaped child) */
    int32_t pid[N_REUSE];   /* the child that ran each task */
};

static uint64_t pr_iters;       /* the busy loop of one task (~2 ms) */
static struct pr_run pr_run;

static int pr_work_fn(weft_task *task, void *ud)
{
    spin(pr_iters);
    struct pr_out out = { (int32_t)getpid(), (uint32_t)(uintptr_t)ud };
    return weft_task_write(task, &out, sizeof out) == WEFT_OK ? 0 : 1;
}

static void pr_done_fn(weft_loop *loop, weft_id id, int status, const uint8_t *result,
                       size_t len, void *ud)
{
    (void)loop; (void)id;
    struct pr_run *r = &pr_run;
    uint32_t i = (uint32_t)(uintptr_t)ud;
    struct pr_out out;
    if (status != 0 || len != sizeof out) {
        fprintf(stderr, "%s: task %u: status %d (%s), %zu result bytes\n", bench_system, i,
                status, weft_strerror(status), len);
        r->bad++;
    } else {
        memcpy(&out, result, sizeof out);
        r->bad += out.index != i;
        r->pid[i] = out.pid;
    }
    if (++r->done == r->n)
        r->t_end = now_ns();
}

static void pr_begin(uint32_t n)
{
    memset(&pr_run, 0, sizeof pr_run);
    pr_run.n = n;
    watchdog("process tasks completed", &pr_run.done, n);
    pr_run.t0 = now_ns();
}

/* n tasks spawned at once on the loop thread before it runs, at most `slots` at a time */
static void pr_weft(weft_loop *loop, uint32_t n, int reuse, unsigned slots)
{
    weft_spawn_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.max_children = slots;
    o.reuse_child = reuse;
    pr_begin(n);
    for (uint32_t i = 0; i < n; i++)
        idcheck(weft_spawn(loop, WEFT_ON_PROCESS, pr_work_fn, pr_done_fn,
                           (void *)(uintptr_t)i, NULL, &o));
    wcheck(weft_loop_run(loop, WEFT_RUN_DEFAULT));
}

/* the baseline: a fork per task, `slots` children at a time; waitpid(-1) (weft reaps
 * its children by pid, and all of them are reaped once weft_loop_run has returned),
 * then the child's result from its pipe */
static void pr_fork_per_task(uint32_t n, unsigned slots)
{
    struct { pid_t pid; int fd; uint32_t index; } slot[slots];
    unsigned running = 0;
    uint32_t next = 0;
    struct pr_run *r = &pr_run;
    pr_begin(n);
    while (r->done < n) {
        for (; running < slots && next < n; next++) {
            int fds[2];
            check(pipe2(fds, O_CLOEXEC) == 0);
            pid_t pid = fork();
            check(pid >= 0);
            if (pid == 0) {
                spin(pr_iters);
                struct pr_out out = { (int32_t)getpid(), next };
                _exit(write(fds[1], &out, sizeof out) == sizeof out ? 0 : 1);
            }
            close(fds[1]);
            slot[running].pid = pid;
            slot[running].fd = fds[0];
            slot[running++].index = next;
        }
        int status;
        pid_t pid = waitpid(-1, &status, 0);
        check(pid > 0);
        unsigned k = 0;
        while (k < running && slot[k].pid != pid)
            k++;
        if (k == running)
            die("process_reuse: waitpid returned %d, not one of the baseline's children", (int)pid);
        struct pr_out out;
        ssize_t got = read(slot[k].fd, &out, sizeof out);
        close(slot[k].fd);
        if (got != (ssize_t)sizeof out || !WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
            out.index != slot[k].index)
            r->bad++;
        else
            r->pid[out.index] = out.pid;
        slot[k] = slot[--running];
        r->done++;
    }
    r->t_end = now_ns();
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* checks the run; returns how many distinct children ran its tasks */
static unsigned pr_check(const char *what)
{
    const struct pr_run *r = &pr_run;
    if (r->done != r->n || r->bad)
        die("process_reuse: %s: %llu of %u tasks completed, %u with a bad status or result",
            what, (unsigned long long)r->done, r->n, r->bad);
    static int32_t pids[N_REUSE];
    memcpy(pids, r->pid, r->n * sizeof *pids);
    qsort(pids, r->n, sizeof *pids, cmp_i32);
    unsigned distinct = 0;
    for (uint32_t i = 0; i < r->n; i++)
        distinct += i == 0 || pids[i] != pids[i - 1];
    return distinct;
}

struct pr_row { double wall_ms[REPS_REUSE]; double children[REPS_REUSE]; };

static double median_of(double *v, int n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return v[n / 2];
}

/* one row's RESULT line, over `reps` batches; fork_tps: weft-process-fork's median
 * tasks/s (0: this is that row) */
static void pr_report(const char *row, const char *size, struct pr_row *m, int reps,
                      double ideal_ms, double task_ms, unsigned slots, double fork_tps)
{
    char name[48], vs[48] = "";
    snprintf(name, sizeof name, "%s-%s", row, size);
    bench_system = name;
    double wall = median_of(m->wall_ms, reps), children = median_of(m->children, reps);
    double tps = N_REUSE / (wall / 1e3);
    if (fork_tps > 0)
        snprintf(vs, sizeof vs, " vs_fork=%.3f", tps / fork_tps);
    result("process_reuse", "tasks_per_s=%.0f wall_ms=%.1f over_ms=%.3f ideal_ms=%.1f "
           "task_ms=%.3f children=%.0f children_max=%.0f min_tasks_per_s=%.0f "
           "max_tasks_per_s=%.0f reps=%d slots=%u rss_mb=%.1f%s", tps, wall,
           (wall - ideal_ms) / N_REUSE, ideal_ms, task_ms, children, m->children[reps - 1],
           N_REUSE / (m->wall_ms[reps - 1] / 1e3), N_REUSE / (m->wall_ms[0] / 1e3), reps, slots,
           rss_bytes() / 1048576.0, vs);
}

static void pr_child(void *arg)
{
    const struct po_size *size = arg;
    int reps = pr_reps[size - pr_sizes];
    size_t ballast_len;
    char *ballast = grow_to(size, &ballast_len);
    unsigned slots = bench_cores();
    /* the calibrated 10 us busy loop of fork_join (BENCH_SPIN_ITERS from run.py), x 200 */
    pr_iters = spin_iters() * (REUSE_TASK_NS / FORKJOIN_TASK_NS);
    double task_ms = spin_ns(pr_iters, 5) / 1e6, ideal_ms = task_ms * N_REUSE / slots;
    weft_loop *loop = new_loop();
    for (int reuse = 1; reuse >= 0; reuse--) {   /* warm-up: the process task machinery */
        pr_weft(loop, 2 * slots, reuse, slots);
        pr_check("warm-up");
    }
    static struct pr_row rows[PR_ROWS];
    for (int rep = 0; rep < reps; rep++)
        for (int row = 0; row < PR_ROWS; row++) {
            bench_system = pr_rows[row];
            if (row == PR_BASELINE)
                pr_fork_per_task(N_REUSE, slots);
            else
                pr_weft(loop, N_REUSE, row == PR_REUSE, slots);
            rows[row].children[rep] = pr_check(pr_rows[row]);
            rows[row].wall_ms[rep] = (pr_run.t_end - pr_run.t0) / 1e6;
        }
    double fork_wall[REPS_REUSE];
    memcpy(fork_wall, rows[PR_FORK].wall_ms, sizeof fork_wall);
    double fork_tps = N_REUSE / (median_of(fork_wall, reps) / 1e3);
    for (int row = 0; row < PR_ROWS; row++)
        pr_report(pr_rows[row], size->name, &rows[row], reps, ideal_ms, task_ms, slots,
                  row == PR_FORK ? 0 : fork_tps);
    weft_loop_free(loop);
    if (ballast)
        munmap(ballast, ballast_len);
}

static void process_reuse(void)
{
    size_t n_sizes = sizeof pr_sizes / sizeof *pr_sizes, i;
    for (i = 0; bench_variant && i < n_sizes && strcmp(bench_variant, pr_sizes[i].name); i++)
        ;
    if (i == n_sizes)
        die("process_reuse: unknown variant '%s' (10m, 256m)", bench_variant);
    for (i = 0; i < n_sizes; i++) {
        const struct po_size *size = &pr_sizes[i];
        if (bench_variant && strcmp(bench_variant, size->name) != 0)
            continue;
        long avail, need;
        if (!size_fits(size, &avail, &need)) {
            for (int row = 0; row < PR_ROWS; row++)
                printf("SKIP workload=process_reuse system=%s-%s reason=MemAvailable is %ld MB, "
                       "%ld MB needed\n", pr_rows[row], size->name, avail, need);
            continue;
        }
        run_in_child(pr_child, (void *)size, "process_reuse");
    }
}

#endif /* BENCH_WEFT_PROCESS_H */
