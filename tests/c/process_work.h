/*
 * process_work.h: the work functions, host-forked children and callbacks that several
 * test_process*.c files share (include after process_util.h).
 *
 *   small_work, sleepy_work, gated_work, counted_work, quick_work  work that writes a
 *                  small result; sleeps p->ms; waits for the shared gate; sleeps and
 *                  returns two ints; writes one byte and exits (arg 1: with no status)
 *   marker_work, never_work  work that must never run (marks shared memory / fails)
 *   never_done_fn  a done that must never run
 *   sampler, sample_children  a repeating timer's sampling of this process's children
 *   host_child, host_fork, host_sleeper_body, gated_host_body  children forked by the
 *                  host, as weft_adopt_child takes them
 *   on_host_ev     an event callback checking that events arrive in order, before done
 */
#ifndef PROCESS_WORK_H
#define PROCESS_WORK_H

static inline int small_work(weft_task *t, void *ud) {
    ptask *p = (ptask *)ud;
    char msg[32];
    int n = snprintf(msg, sizeof msg, "small %d", p->arg);
    CCHECK(p->shm, weft_task_write(t, msg, (size_t)n) == WEFT_OK);
    return p->arg;
}

static inline int sleepy_work(weft_task *t, void *ud) {
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

static inline int gated_work(weft_task *t, void *ud) {
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
static inline int marker_work(weft_task *t, void *ud) {
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

typedef struct sampler {
    int max_kids, samples, max_zombies;
} sampler;

static inline void sample_children(weft_loop *lp, weft_id id, void *ud) {
    (void)lp, (void)id;
    sampler *sm = (sampler *)ud;
    kids k = proc_children();
    if (k.all > sm->max_kids) sm->max_kids = k.all;
    if (k.zombies > sm->max_zombies) sm->max_zombies = k.zombies;
    sm->samples++;
}

static inline int counted_work(weft_task *t, void *ud) {
    ptask *p = (ptask *)ud;
    shm_enter(p->shm);
    sleep_ms(p->ms);
    int v[2] = {p->arg, p->arg * 31 + 7};
    shm_leave(p->shm);
    CCHECK(p->shm, weft_task_write(t, v, sizeof v) == WEFT_OK);
    return p->arg % 200;
}

typedef struct host_child {
    pid_t pid;
    int rfd; /* the parent's read end */
} host_child;

/* Forks; the child runs `body(write_fd, arg)` and _exits with what it returns. The
 * parent closes the write end. */
static inline host_child host_fork(int (*body)(int wfd, int arg), int arg) {
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

static inline int host_sleeper_body(int wfd, int arg) {
    weft_task *t = weft_child_task(wfd);
    if (t == NULL) return 101;
    weft_task_write(t, "zzz", 3);
    sleep_ms((unsigned)arg);
    weft_child_exit(t, 0);
    return 102;
}

static inline void never_done_fn(weft_loop *lp, weft_id id, int status, const uint8_t *r, size_t len, void *ud) {
    (void)lp, (void)id, (void)r, (void)len, (void)ud;
    h_fail(__FILE__, __LINE__, "a done that must not run ran (status %d)", status);
}

static inline void on_host_ev(weft_loop *lp, weft_id id, const char *topic, const void *payload, size_t len, void *ud) {
    (void)lp, (void)id, (void)topic;
    ptask *p = (ptask *)ud;
    uint32_t v = 99;
    if (len == sizeof v) memcpy(&v, payload, sizeof v);
    CHECK_MSG(v == (uint32_t)atomic_load(&p->events), "event %u arrived as number %d", v, atomic_load(&p->events));
    CHECK_EQ(atomic_load(&p->dones), 0);
    atomic_fetch_add(&p->events, 1);
}

/* A child that waits for a byte on `arg` (the gate's read end), then reports "ok" with
 * status 5. */
static inline int gated_host_body(int wfd, int gate_fd) {
    char c;
    while (read(gate_fd, &c, 1) < 0 && errno == EINTR) {
    }
    weft_task *t = weft_child_task(wfd);
    if (t == NULL) return 101;
    weft_task_write(t, "ok", 2);
    weft_child_exit(t, 5);
    return 102;
}

static inline int never_work(weft_task *t, void *ud) {
    (void)t, (void)ud;
    h_fail(__FILE__, __LINE__, "never_work ran");
    return 0;
}

static inline int quick_work(weft_task *t, void *ud) {
    ptask *p = (ptask *)ud;
    shm_enter(p->shm);
    weft_task_write(t, "r", 1);
    shm_leave(p->shm);
    if (p->arg == 1) _exit(0); /* no status frame */
    return 6;
}

#endif /* PROCESS_WORK_H */
