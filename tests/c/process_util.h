/*
 * process_util.h: helpers of the test_process*.c files (include after harness.h and
 * tasks_util.h).
 *
 *   proc_children  counts the live children of this process, and the zombies among
 *                  them, by scanning /proc/<pid>/stat for PPid == getpid().
 *   hyg            a test's hygiene: the fd count and the children at its start, checked
 *                  again at its end (HYG_END): the same fds, no child, no zombie.
 *   pshm           memory shared with the children (MAP_SHARED | MAP_ANONYMOUS): flags
 *                  and counters they set, and CCHECK, the children's own check, which
 *                  appends to a report the parent prints (SHM_CLEAN) instead of running
 *                  the harness's failure reporting in the child.
 *   ptask          user data of one process task: done and free_fn record what they saw
 *                  (status, result hash and head, weft_last_error read inside done, the
 *                  thread and pid, the children alive at done, the events seen before).
 */
#ifndef WEFT_TEST_PROCESS_UTIL_H
#define WEFT_TEST_PROCESS_UTIL_H

#include "harness.h"
#include "tasks_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

/* ---- children of this process ------------------------------------------------------ */

typedef struct kids {
    int all;     /* processes whose parent is this process (zombies included) */
    int zombies; /* of which in state Z */
    pid_t first; /* one of them, for messages */
} kids;

H_UNUSED static kids proc_children(void) {
    kids k = {0, 0, 0};
    pid_t me = getpid();
    DIR *d = opendir("/proc");
    if (d == NULL) return k;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue; /* gone meanwhile */
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0) continue;
        buf[n] = '\0';
        /* "pid (comm) S ppid ...": comm may hold spaces and parentheses */
        char *rp = strrchr(buf, ')');
        char state;
        int ppid;
        if (rp == NULL || sscanf(rp + 1, " %c %d", &state, &ppid) != 2) continue;
        if (ppid != me) continue;
        k.all++;
        if (state == 'Z') k.zombies++;
        if (k.first == 0) k.first = atoi(e->d_name);
    }
    closedir(d);
    return k;
}

/* True if `pid` no longer exists (it was reaped: kill says ESRCH). */
H_UNUSED static bool pid_gone(pid_t pid) { return pid > 0 && kill(pid, 0) == -1 && errno == ESRCH; }

/* ---- hygiene ------------------------------------------------------------------------- */

typedef struct hyg {
    int fds;
} hyg;

#define HYG_BEGIN() hyg_begin(__FILE__, __LINE__)
#define HYG_END(h) hyg_end(&(h), __FILE__, __LINE__)

H_UNUSED static hyg hyg_begin(const char *file, int line) {
    hyg h = {proc_fds()};
    kids k = proc_children();
    if (k.all != 0)
        h_fail(file, line, "%d children (%d zombies, e.g. pid %d) exist before the test", k.all,
               k.zombies, (int)k.first);
    return h;
}

/* The fds are back to the baseline, and this process has no child at all (so no
 * zombie). Children must be gone already: nothing here waits for them. */
H_UNUSED static void hyg_end(hyg *h, const char *file, int line) {
    kids k = proc_children();
    if (k.all != 0)
        h_fail(file, line, "%d children (%d zombies, e.g. pid %d) are left after the test", k.all,
               k.zombies, (int)k.first);
    int fds = proc_fds();
    if (fds != h->fds) {
        h_fail(file, line, "%d fds open after the test, %d before", fds, h->fds);
        /* Which ones: a hint at who opened (or closed) the odd one. */
        DIR *d = opendir("/proc/self/fd");
        struct dirent *e;
        while (d != NULL && (e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.') continue;
            char path[300], target[256];
            snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
            ssize_t n = readlink(path, target, sizeof target - 1);
            target[n > 0 ? n : 0] = 0;
            fprintf(stderr, "      fd %s -> %s\n", e->d_name, target);
        }
        if (d != NULL) closedir(d);
    }
}

/* ---- memory shared with the children ---------------------------------------------------- */

typedef struct pshm {
    _Atomic int started;  /* children that began their work */
    _Atomic int finished; /* children that got to the end of their work */
    _Atomic int pid;      /* the last child's pid */
    _Atomic int flag;
    _Atomic int gate;     /* children that wait for it hold until it is non-zero */
    _Atomic int active, max_active; /* children inside their work now, and at most */
    _Atomic int forked_marker;      /* work that must never run increments this */
    _Atomic uint64_t t_flag_ns;
    /* the children's failed checks */
    _Atomic int fails;
    _Atomic size_t text_len;
    char text[8192];
} pshm;

H_UNUSED static pshm *shm_new(void) {
    void *p = mmap(NULL, sizeof(pshm), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        h_fail(__FILE__, __LINE__, "mmap: %s", strerror(errno));
        return NULL;
    }
    memset(p, 0, sizeof(pshm));
    return (pshm *)p;
}

H_UNUSED static void shm_free(pshm *s) {
    if (s != NULL) munmap(s, sizeof *s);
}

/* A failed check in a child: appended to the shared report (no harness call). */
H_UNUSED static void shm_note(pshm *s, int line, const char *what) {
    atomic_fetch_add(&s->fails, 1);
    char err[256];
    weft_last_error(err, sizeof err);
    char msg[600];
    int n = snprintf(msg, sizeof msg, "      [child %d] line %d: %s (weft_last_error: \"%s\")\n",
                     (int)getpid(), line, what, err);
    if (n <= 0) return;
    size_t at = atomic_fetch_add(&s->text_len, (size_t)n);
    if (at + (size_t)n < sizeof s->text) memcpy(s->text + at, msg, (size_t)n);
}

#define CCHECK(s, cond)                                     \
    do {                                                    \
        if (!(cond)) shm_note((s), __LINE__, #cond);        \
    } while (0)

/* The children's checks all passed. */
#define SHM_CLEAN(s)                                                                      \
    do {                                                                                  \
        int h_f_ = atomic_load(&(s)->fails);                                              \
        if (h_f_ != 0) {                                                                  \
            size_t h_n_ = atomic_load(&(s)->text_len);                                    \
            if (h_n_ >= sizeof(s)->text) h_n_ = sizeof(s)->text - 1;                      \
            h_fail(__FILE__, __LINE__, "%d failed checks in children:\n%.*s", h_f_, (int)h_n_, \
                   (s)->text);                                                            \
        }                                                                                 \
    } while (0)

/* In a child: entering and leaving the work, keeping the most children inside at once. */
H_UNUSED static void shm_enter(pshm *s) {
    int now = atomic_fetch_add(&s->active, 1) + 1;
    int max = atomic_load(&s->max_active);
    while (now > max && !atomic_compare_exchange_weak(&s->max_active, &max, now)) {
    }
    atomic_fetch_add(&s->started, 1);
    atomic_store(&s->pid, (int)getpid());
}

H_UNUSED static void shm_leave(pshm *s) {
    atomic_fetch_add(&s->finished, 1);
    atomic_fetch_sub(&s->active, 1);
}

/* In a child: waits (at most `ms`) for the gate. */
H_UNUSED static void shm_wait_gate(pshm *s, unsigned ms) {
    uint64_t end = now_ms() + ms;
    while (!atomic_load(&s->gate) && now_ms() < end) sleep_ms(1);
}

/* ---- one process task's observations --------------------------------------------------- */

typedef struct ptask {
    /* inputs of the work (read in the child, from its copy) */
    pshm *shm;
    int arg;
    unsigned ms;
    void *ctx;
    int free_log; /* free_fn writes its pid here (> 0), so a run in a child would show */
    bool count_kids; /* done scans /proc for children */
    /* set by the test after the spawn */
    weft_id id;
    /* observations in the parent */
    _Atomic int in_done, dones, frees, events, done_after_free, dones_at_free;
    int status;
    size_t len;
    bool result_null;
    uint64_t hash;
    unsigned char head[256];
    char err[512]; /* weft_last_error, read inside done */
    int err_code;
    pthread_t done_thread;
    pid_t done_pid, free_pid;
    weft_loop *done_lp;
    weft_id done_id;
    uint64_t t_done_ns;
    int events_at_done;
    kids kids_at_done;
    int cancel_in_done; /* weft_cancel(lp, id) from inside done */
} ptask;

static inline void pt_init(ptask *p, pshm *s) {
    memset((void *)p, 0, sizeof *p);
    p->shm = s;
    p->free_log = -1;
}

H_UNUSED static void pt_done(weft_loop *lp, weft_id id, int status, const uint8_t *result,
                             size_t len, void *ud) {
    ptask *p = (ptask *)ud;
    weft_last_error(p->err, sizeof p->err);
    p->err_code = weft_last_error_code();
    atomic_store(&p->in_done, 1);
    if (atomic_load(&p->frees) != 0) atomic_fetch_add(&p->done_after_free, 1);
    p->status = status;
    p->len = len;
    p->result_null = result == NULL;
    p->hash = len ? fnv(result, len) : fnv("", 0);
    memset(p->head, 0, sizeof p->head);
    if (len) memcpy(p->head, result, len < sizeof p->head ? len : sizeof p->head);
    p->done_thread = pthread_self();
    p->done_pid = getpid();
    p->done_lp = lp;
    p->done_id = id;
    p->t_done_ns = now_ns();
    p->events_at_done = atomic_load(&p->events);
    if (p->count_kids) p->kids_at_done = proc_children();
    p->cancel_in_done = weft_cancel(lp, id);
    atomic_fetch_add(&p->dones, 1);
}

H_UNUSED static void pt_free(void *ud) {
    ptask *p = (ptask *)ud;
    p->free_pid = getpid();
    atomic_store(&p->dones_at_free, atomic_load(&p->dones));
    if (p->free_log >= 0) {
        pid_t me = getpid();
        if (write(p->free_log, &me, sizeof me) != (ssize_t)sizeof me)
            h_fail(__FILE__, __LINE__, "free_fn: write to the log failed");
    }
    if (atomic_fetch_add(&p->frees, 1) != 0) h_fail(__FILE__, __LINE__, "a task's free_fn ran twice");
}

/* weft_spawn(WEFT_ON_PROCESS) of `work` with pt_done and pt_free; the id goes to p->id. */
static inline weft_id pt_spawn(weft_loop *lp, weft_work_fn work, ptask *p,
                               const weft_spawn_options *o) {
    weft_id id = weft_spawn(lp, WEFT_ON_PROCESS, work, pt_done, p, pt_free, o);
    p->id = id;
    return id;
}

/* Spawn options with a timeout and a bound on children. */
static inline weft_spawn_options proc_opts(uint64_t timeout_ms, uint32_t max_children) {
    weft_spawn_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.timeout_ms = timeout_ms;
    o.max_children = max_children;
    return o;
}

/* Milliseconds from t0_ns to p's done. */
static inline double pt_done_after_ms(const ptask *p, uint64_t t0_ns) {
    return (double)(p->t_done_ns - t0_ns) / 1e6;
}

/* FNV-1a continued over more bytes (fnv() is the whole-buffer form). */
static inline uint64_t fnv_more(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = (const unsigned char *)p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* A deterministic byte pattern: the bytes at offsets [off, off + n). */
static inline void pattern_fill(unsigned char *buf, size_t off, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint64_t x = off + i;
        buf[i] = (unsigned char)(((x * 2654435761u) >> 13) ^ (x >> 20));
    }
}

/* Reads what is in `fd` now (non-blocking), at most cap bytes; -1 with EAGAIN if
 * nothing. */
H_UNUSED static ssize_t read_now(int fd, void *buf, size_t cap) {
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    ssize_t n = read(fd, buf, cap);
    int saved = errno;
    fcntl(fd, F_SETFL, fl);
    errno = saved;
    return n;
}

/* A case's setup: its hygiene baseline, a loop and memory shared with the children;
 * and its end: the children's checks, the loop freed, no child or fd left. */
#define ENV_BEGIN()                           \
    hyg h = HYG_BEGIN();                      \
    weft_loop *lp = weft_loop_new();          \
    pshm *s = shm_new();                      \
    REQUIRE(lp != NULL && s != NULL)
#define ENV_END()           \
    do {                    \
        SHM_CLEAN(s);       \
        weft_loop_free(lp); \
        shm_free(s);        \
        HYG_END(h);         \
    } while (0)

#endif /* WEFT_TEST_PROCESS_UTIL_H */
