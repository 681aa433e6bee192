/*
 * tasks_util.h: helpers shared by the task, pool and process tests (include after
 * harness.h).
 *
 *   rec          user data of one task: what its work should do (return a status,
 *                write bytes, emit events, wait on a gate, until cancelled, sleep) and
 *                what happened (work runs, its thread and name, done's status, result
 *                and thread, free_fn calls, their order and thread). rec_work, rec_done
 *                and rec_free are the task's work, done and free_fn.
 *   WAIT_FOR     polls a condition for up to some milliseconds.
 *   proc_threads counts this process's threads (all, or those whose name in
 *                /proc/self/task/<tid>/comm starts with a prefix).
 *   proc_threads_settled waits for that count to reach a value (after a free).
 *   fnv          a hash of result bytes.
 */
#ifndef WEFT_TEST_TASKS_UTIL_H
#define WEFT_TEST_TASKS_UTIL_H

#include "harness.h"

#include <dirent.h>
#include <limits.h>

/* Polls `cond` every millisecond for up to `ms`; evaluates to its final value. */
#define WAIT_FOR(cond, ms)                                                   \
    __extension__({                                                          \
        uint64_t wf_end_ = now_ms() + (uint64_t)(ms);                        \
        while (!(cond) && now_ms() < wf_end_) sleep_ms(1);                   \
        (bool)(cond);                                                        \
    })

/* Threads of this process whose name starts with `prefix` (NULL: every thread). */
H_UNUSED static int proc_threads(const char *prefix) {
    DIR *d = opendir("/proc/self/task");
    if (d == NULL) {
        h_fail(__FILE__, __LINE__, "opendir /proc/self/task: %s", strerror(errno));
        return -1;
    }
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        if (prefix == NULL) {
            n++;
            continue;
        }
        char path[300], name[64] = {0};
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL) continue; /* the thread exited meanwhile */
        if (fgets(name, sizeof name, f) != NULL) name[strcspn(name, "\n")] = '\0';
        fclose(f);
        if (strncmp(name, prefix, strlen(prefix)) == 0) n++;
    }
    closedir(d);
    return n;
}

/* proc_threads once it reaches `want`, or after about a second (slack included) if it
 * does not. For counts taken right after a pool is freed: pthread_join returns when the
 * thread has cleared its tid, and the kernel lists it in /proc/self/task a moment
 * longer, until it reaps it, which a loaded machine can delay by milliseconds. */
H_UNUSED static int proc_threads_settled(const char *prefix, int want) {
    int n = proc_threads(prefix);
    for (uint64_t end = now_ms() + h_slack_ms(1000); n != want && now_ms() < end; n = proc_threads(prefix)) sleep_ms(1);
    return n;
}

/* True if some thread of this process is named exactly `name`. */
H_UNUSED static bool proc_thread_named(const char *name) {
    DIR *d = opendir("/proc/self/task");
    if (d == NULL) return false;
    bool found = false;
    struct dirent *e;
    while (!found && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char path[300], comm[64] = {0};
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL) continue;
        if (fgets(comm, sizeof comm, f) != NULL) comm[strcspn(comm, "\n")] = '\0';
        fclose(f);
        found = strcmp(comm, name) == 0;
    }
    closedir(d);
    return found;
}

/* Open fds of this process. */
H_UNUSED static int proc_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n - 1; /* the DIR's own fd */
}

static inline uint64_t fnv(const void *p, size_t n) {
    const unsigned char *b = (const unsigned char *)p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* ---- rec: one task's behaviour and observations ---------------------------------- */

typedef struct rec {
    /* What work does, in this order: emit `emits` events "<emit_topic>" with payload
     * int i; wait until *gate != 0; wait until weft_task_cancelled (at most 10 s);
     * sleep sleep_ms; write out_len bytes of `out` in chunks of out_chunk (0: one
     * write); return ret. */
    int ret;
    const unsigned char *out;
    size_t out_len, out_chunk;
    _Atomic int *gate;
    bool until_cancelled;
    unsigned sleep_ms;
    int emits;
    const char *emit_topic;
    /* Set by the test after weft_spawn (for work or done that need their own id). */
    _Atomic weft_id id;
    /* Observations. */
    _Atomic int work_runs, work_active, work_returned;
    _Atomic int saw_cancelled; /* weft_task_cancelled was true when work returned */
    _Atomic int dones, frees;
    _Atomic int done_after_free, dones_at_free, work_active_at_free, work_active_at_done;
    int status;
    size_t len;
    bool result_null;
    uint64_t hash;
    unsigned char head[16];
    pthread_t work_thread, done_thread, free_thread;
    char work_name[32];
    weft_loop *done_lp;
    weft_id done_id;
    uint64_t t_work_end_ns, t_done_ns, t_free_ns;
} rec;

static inline void rec_init(rec *r) { memset((void *)r, 0, sizeof *r); }

H_UNUSED static int rec_work(weft_task *task, void *ud) {
    rec *r = (rec *)ud;
    r->work_thread = pthread_self();
    pthread_getname_np(pthread_self(), r->work_name, sizeof r->work_name);
    atomic_fetch_add(&r->work_active, 1);
    atomic_fetch_add(&r->work_runs, 1);
    for (int i = 0; i < r->emits; i++)
        if (weft_task_emit(task, r->emit_topic, &i, sizeof i) != WEFT_OK)
            h_fail_e(__FILE__, __LINE__, "weft_task_emit failed");
    if (r->gate != NULL) {
        uint64_t end = now_ms() + 60000;
        while (!atomic_load(r->gate) && now_ms() < end) sleep_ms(1);
    }
    if (r->until_cancelled) {
        uint64_t end = now_ms() + 10000;
        while (!weft_task_cancelled(task) && now_ms() < end) sleep_ms(1);
    }
    if (r->sleep_ms) sleep_ms(r->sleep_ms);
    if (weft_task_cancelled(task)) atomic_store(&r->saw_cancelled, 1);
    size_t chunk = r->out_chunk ? r->out_chunk : r->out_len;
    for (size_t at = 0; at < r->out_len; at += chunk) {
        size_t n = r->out_len - at < chunk ? r->out_len - at : chunk;
        if (weft_task_write(task, r->out + at, n) != WEFT_OK)
            h_fail_e(__FILE__, __LINE__, "weft_task_write failed");
    }
    r->t_work_end_ns = now_ns();
    atomic_fetch_sub(&r->work_active, 1);
    atomic_store(&r->work_returned, 1);
    return r->ret;
}

H_UNUSED static void rec_done(weft_loop *lp, weft_id id, int status, const uint8_t *result,
                              size_t len, void *ud) {
    rec *r = (rec *)ud;
    if (atomic_load(&r->frees) != 0) atomic_fetch_add(&r->done_after_free, 1);
    r->status = status;
    r->len = len;
    r->result_null = result == NULL;
    r->hash = len ? fnv(result, len) : fnv("", 0);
    memset(r->head, 0, sizeof r->head);
    if (len) memcpy(r->head, result, len < sizeof r->head ? len : sizeof r->head);
    r->done_thread = pthread_self();
    r->done_lp = lp;
    r->done_id = id;
    r->t_done_ns = now_ns();
    atomic_store(&r->work_active_at_done, atomic_load(&r->work_active));
    atomic_fetch_add(&r->dones, 1);
}

H_UNUSED static void rec_free(void *ud) {
    rec *r = (rec *)ud;
    r->free_thread = pthread_self();
    r->t_free_ns = now_ns();
    atomic_store(&r->dones_at_free, atomic_load(&r->dones));
    atomic_store(&r->work_active_at_free, atomic_load(&r->work_active));
    if (atomic_fetch_add(&r->frees, 1) != 0) h_fail(__FILE__, __LINE__, "a task's free_fn ran twice");
}

/* Waits (up to 5 s, 50 s under valgrind) until r's free_fn has run: a test must not
 * leave its scope (where its recs live) before. */
#define WAIT_FREED(r)                                                                     \
    CHECK_MSG(WAIT_FOR(atomic_load(&(r).frees) >= 1, h_slack_ms(5000)), "%s: free_fn never ran", #r)

/* How many `done` calls the n recs have seen in all. */
H_UNUSED static int rec_dones(rec *r, int n) {
    int d = 0;
    for (int i = 0; i < n; i++) d += atomic_load(&r[i].dones);
    return d;
}

/* Spawns `r` (rec_work, rec_done, rec_free) and stores its id in r->id. */
static inline weft_id rec_spawn(weft_loop *lp, weft_where where, rec *r,
                                const weft_spawn_options *o) {
    weft_id id = weft_spawn(lp, where, rec_work, rec_done, r, rec_free, o);
    atomic_store(&r->id, id);
    return id;
}

/* Spawn options naming `pool` (and a timeout). */
static inline weft_spawn_options spawn_opts(weft_pool *pool, uint64_t timeout_ms) {
    weft_spawn_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.pool = pool;
    o.timeout_ms = timeout_ms;
    return o;
}

/* Pool options of `kind` with `threads` and `name` (the rest zero). */
static inline weft_pool_options pool_opts(weft_pool_kind kind, uint32_t threads, const char *name) {
    weft_pool_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.kind = kind;
    o.threads = threads;
    o.name = name;
    return o;
}

/* The setup of most pool tests: a new pool (pool_opts(kind, threads, name)) in *p and
 * a new loop in *lp. False (nothing left) if either fails. */
static inline bool pool_and_loop(weft_pool_kind kind, uint32_t threads, const char *name,
                                 weft_pool **p, weft_loop **lp) {
    weft_pool_options o = pool_opts(kind, threads, name);
    *p = weft_pool_new(&o);
    if (*p == NULL) return false;
    *lp = weft_loop_new();
    if (*lp != NULL) return true;
    weft_pool_free(*p);
    return false;
}

/* The name of the calling thread. */
static inline const char *self_name(void) {
    static _Thread_local char name[32];
    pthread_getname_np(pthread_self(), name, sizeof name);
    return name;
}

static inline bool starts_with(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Sets this thread's last error to a known message (weft_pool_free returns nothing:
 * a refusal is seen only as a new message). */
static inline void reset_last_error(void) { (void)weft_cancel(NULL, 0); }

#endif /* WEFT_TEST_TASKS_UTIL_H */
