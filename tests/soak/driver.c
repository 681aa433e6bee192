/* driver.c: the soak's driver threads. Each makes a random mix of calls, on random
 * loops, until told to stop: posts, timers, subscriptions and emits, writes to its socket
 * pairs and watches of them, tasks of every kind, cancels (from itself and, through a
 * post, from a loop thread), and now and then a bad call. It keeps at most DRIVER_CAP
 * registrations in flight; past that it cancels or waits (back-pressure). */
#include "soak.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Knobs (soak.c reads them from the environment). */
extern unsigned g_pace_us;    /* the driver sleeps this long every 8 calls */
extern unsigned g_proc_rate;  /* process tasks per second, over all drivers */

static int any_loop(driver *d) { return (int)(rnd(&d->rng) % LOOPS); }

static int live_of(driver *d, kind k) {
    pthread_mutex_lock(&d->lock);
    int n = d->live_by_kind[k];
    pthread_mutex_unlock(&d->lock);
    return n;
}

/* ---- posts and timers -------------------------------------------------------------- */

static void op_post(driver *d) {
    int loop = any_loop(d);
    item *it = item_new(d, K_POST, loop);
    if (!it) return;
    item_registered(it, weft_post(g_loops[loop], post_cb, it, item_free_fn), "weft_post");
    item_put(it);
}

/* A post cancelled at once: before it runs, or (NOT_FOUND) once the loop took it. */
static void op_post_cancel(driver *d) {
    int loop = any_loop(d);
    item *it = item_new(d, K_POST, loop);
    if (!it) return;
    atomic_store(&it->cancel_tried, 1);
    if (item_registered(it, weft_post(g_loops[loop], post_cb, it, item_free_fn), "weft_post"))
        cancel_item(it, 0, "the posting thread");
    item_put(it);
}

static void op_after(driver *d) {
    int loop = any_loop(d);
    item *it = item_new(d, K_AFTER, loop);
    if (!it) return;
    uint64_t r = rnd(&d->rng) % 100;
    uint64_t delay = r < 70 ? rnd(&d->rng) % 20 : r < 95 ? 20 + rnd(&d->rng) % 280 : 1000 + rnd(&d->rng) % 2000;
    bool cancel = rnd(&d->rng) % 5 == 0;
    if (cancel) atomic_store(&it->cancel_tried, 1);
    if (item_registered(it, weft_timer_after(g_loops[loop], delay, timer_cb, it, item_free_fn), "weft_timer_after") &&
        cancel)
        cancel_item(it, 0, "a driver thread");
    item_put(it);
}

static void op_every(driver *d) {
    if (live_of(d, K_EVERY) >= 6) return;
    int loop = any_loop(d);
    item *it = item_new(d, K_EVERY, loop);
    if (!it) return;
    it->fire_limit = rnd(&d->rng) % 2 ? 1 + (int)(rnd(&d->rng) % 20) : 0;
    item_registered(it, weft_timer_every(g_loops[loop], 5 + rnd(&d->rng) % 95, timer_cb, it, item_free_fn),
                    "weft_timer_every");
    item_put(it);
}

/* ---- cancels --------------------------------------------------------------------- */

static void op_cancel(driver *d) {
    item *it = driver_pick(d, NKINDS);
    if (!it) return;
    cancel_item(it, 0, "a driver thread");
    item_put(it);
}

/* Cancels `target` (held by the caller) from a loop thread, maybe another loop's: a post
 * that holds a reference of its own until its callback has made the cancel. */
static void cancel_from_a_loop(driver *d, item *target) {
    int loop = any_loop(d);
    item *it = item_new(d, K_CANCEL_POST, loop);
    if (!it) return;
    atomic_fetch_add(&target->refs, 1);
    atomic_store(&it->target, target);
    if (!item_registered(it, weft_post(g_loops[loop], cancel_post_cb, it, item_free_fn), "weft_post")) {
        item *t = atomic_exchange(&it->target, NULL);
        if (t) item_put(t);
    }
    item_put(it);
}

static void op_cancel_from_loop(driver *d) {
    item *it = driver_pick(d, NKINDS);
    if (!it) return;
    cancel_from_a_loop(d, it);
    item_put(it);
}

/* ---- topics ------------------------------------------------------------------------ */

static void op_subscribe(driver *d) {
    if (live_of(d, K_SUB) >= 8) return;
    int loop = any_loop(d);
    char pattern[32];
    switch (rnd(&d->rng) % 6) {
    case 0: snprintf(pattern, sizeof pattern, "soak.%d.%d", (int)(rnd(&d->rng) % 4), (int)(rnd(&d->rng) % 4)); break;
    case 1: snprintf(pattern, sizeof pattern, "soak.%d.*", (int)(rnd(&d->rng) % 4)); break;
    case 2: snprintf(pattern, sizeof pattern, "soak.t.*"); break;
    case 3: snprintf(pattern, sizeof pattern, "soak.*"); break;
    case 4: snprintf(pattern, sizeof pattern, "proc.*"); break;
    default: snprintf(pattern, sizeof pattern, "*"); break;
    }
    item *it = item_new(d, K_SUB, loop);
    if (!it) return;
    item_registered(it, weft_subscribe(g_loops[loop], pattern, event_cb, it, item_free_fn), "weft_subscribe");
    item_put(it);
}

static void op_emit(driver *d) {
    char topic[32];
    snprintf(topic, sizeof topic, "soak.%d.%d", (int)(rnd(&d->rng) % 4), (int)(rnd(&d->rng) % 4));
    emit_payload(any_loop(d), NULL, topic, (size_t)(rnd(&d->rng) % 200), &d->rng);
}

/* ---- fds ---------------------------------------------------------------------------- */

static void op_write(driver *d) {
    pair *p = &d->pairs[rnd(&d->rng) % PAIRS_PER_DRIVER];
    char buf[64];
    size_t n = 1 + rnd(&d->rng) % sizeof buf;
    memset(buf, 'w', n);
    atomic_fetch_add(&g.fd_written, (long)n); /* before: a reader may be quicker than us */
    ssize_t w = write(p->wr, buf, n);
    if (w < 0) {
        atomic_fetch_sub(&g.fd_written, (long)n);
        if (errno == EAGAIN || errno == EWOULDBLOCK) atomic_fetch_add(&g.fd_full, 1);
        else soak_fail("write to a socket pair: %s", strerror(errno));
    } else if ((size_t)w < n) {
        atomic_fetch_sub(&g.fd_written, (long)(n - (size_t)w));
    }
}

static void op_watch(driver *d) {
    if (live_of(d, K_WATCH) >= 6) return;
    int loop = any_loop(d);
    item *it = item_new(d, K_WATCH, loop);
    if (!it) return;
    pair *p = &d->pairs[rnd(&d->rng) % PAIRS_PER_DRIVER];
    uint32_t interest = WEFT_READABLE;
    switch (rnd(&d->rng) % 3) {
    case 0: /* a second reader of one of the driver's pairs, on any loop */
        it->flavour = W_DRAIN;
        it->fd = p->rd;
        break;
    case 1: /* writable now: called once, then cancels itself */
        it->flavour = W_WRITABLE_ONCE;
        it->fd = p->wr;
        interest = WEFT_WRITABLE;
        break;
    default: { /* a pair of its own, closed by the free_fn */
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) {
            soak_fail("socketpair: %s", strerror(errno));
            item_registered(it, 0, "socketpair");
            item_put(it);
            return;
        }
        it->flavour = W_CHURN;
        it->fd = sv[0];
        it->fd2 = sv[1];
        if (write(sv[1], "c", 1) != 1) soak_fail("write to a new socket pair: %s", strerror(errno));
        break;
    }
    }
    weft_id id = weft_watch_fd(g_loops[loop], it->fd, interest, watch_cb, it, item_free_fn);
    if (id == 0 && it->flavour == W_CHURN) close(it->fd), close(it->fd2);
    item_registered(it, id, "weft_watch_fd");
    item_put(it);
}

/* Pauses a watch and resumes it (as a reader). */
static void op_modify(driver *d) {
    item *it = driver_pick(d, K_WATCH);
    if (!it) return;
    weft_id id = atomic_load(&it->id);
    int loop = it->loop;
    item_put(it);
    for (int i = 0; i < 2; i++) {
        int rc = weft_watch_fd_modify(g_loops[loop], id, i == 0 ? 0 : WEFT_READABLE);
        atomic_fetch_add(&g.modifies, 1);
        if (rc != WEFT_OK && rc != WEFT_ERR_NOT_FOUND)
            soak_fail("weft_watch_fd_modify returned %d (%s)", rc, weft_strerror(rc));
    }
}

/* ---- tasks ------------------------------------------------------------------------- */

/* A task of kind k; one in five is cancelled soon, from this thread or a loop's. */
static void task_op(driver *d, kind k, int cap) {
    if (live_of(d, k) >= cap) return;
    item *it = spawn_task(d, k, any_loop(d));
    if (!it) return;
    if (rnd(&d->rng) % 5 == 0) {
        atomic_store(&it->cancel_tried, 1);
        if (rnd(&d->rng) % 2) cancel_item(it, 0, "a driver thread");
        else cancel_from_a_loop(d, it);
    }
    item_put(it);
}

static void op_loop_task(driver *d) { task_op(d, K_LOOP_TASK, 16); }
static void op_cpu_task(driver *d) { task_op(d, K_CPU, 32); }
static void op_io_task(driver *d) { task_op(d, K_IO, 32); }

/* Process tasks: forks are dear, so at most g_proc_rate a second over all drivers. */
static _Atomic uint64_t proc_next_ms;
static void op_proc_task(driver *d) {
    uint64_t now = now_ms(), t = atomic_load(&proc_next_ms);
    if (now < t) return;
    uint64_t next = (t + 1000 < now ? now - 1000 : t) + 1000 / (g_proc_rate ? g_proc_rate : 1);
    if (!atomic_compare_exchange_strong(&proc_next_ms, &t, next)) return;
    task_op(d, K_PROC, 2);
}

/* ---- bad calls ------------------------------------------------------------------------ */

static void expect_rc(int rc, int want, const char *what) {
    if (rc != want)
        soak_fail("bad call %s returned %d (%s), expected %d (%s)", what, rc, weft_strerror(rc), want,
                  weft_strerror(want));
}

static void expect_no_id(weft_id id, int want, const char *what) {
    if (id != 0) soak_fail("bad call %s returned id %#" PRIx64 ", expected 0", what, id);
    else expect_rc(weft_last_error_code(), want, what);
}

static int never_work(weft_task *task, void *ud) {
    (void)task, (void)ud;
    soak_fail("the work of a spawn that failed ran");
    return 0;
}

void bad_input(driver *d) {
    weft_loop *lp = g_loops[any_loop(d)];
    atomic_fetch_add(&g.bad_inputs, 1);
    stale_id s;
    item *it;
    switch (rnd(&d->rng) % 12) {
    case 0:
        expect_rc(weft_cancel(lp, 0), WEFT_ERR_NOT_FOUND, "weft_cancel(id 0)");
        break;
    case 1:
        if (driver_stale(d, &s)) expect_rc(weft_cancel(g_loops[s.loop], s.id), WEFT_ERR_NOT_FOUND, "weft_cancel(stale id)");
        break;
    case 2: /* a live id, on another loop */
        if ((it = driver_pick(d, NKINDS)) != NULL) {
            weft_id id = atomic_load(&it->id);
            if (id != 0)
                expect_rc(weft_cancel(g_loops[(it->loop + 1 + (int)(rnd(&d->rng) % 3)) % LOOPS], id),
                          WEFT_ERR_NOT_FOUND, "weft_cancel(another loop's id)");
            item_put(it);
        }
        break;
    case 3:
        expect_no_id(weft_watch_fd(lp, -1, WEFT_READABLE, watch_cb, NULL, never_free_fn), WEFT_ERR_INVALID,
                     "weft_watch_fd(fd -1)");
        break;
    case 4:
        expect_no_id(weft_subscribe(lp, rnd(&d->rng) % 2 ? "soak.*.x" : "", event_cb, NULL, never_free_fn),
                     WEFT_ERR_INVALID, "weft_subscribe(bad pattern)");
        break;
    case 5:
        expect_rc(weft_emit(lp, "soak.*", "x", 1), WEFT_ERR_INVALID, "weft_emit(topic with '*')");
        break;
    case 6:
        expect_no_id(weft_timer_every(lp, 0, timer_cb, NULL, never_free_fn), WEFT_ERR_INVALID,
                     "weft_timer_every(interval 0)");
        expect_no_id(weft_timer_after(lp, (uint64_t)1 << 40, timer_cb, NULL, never_free_fn), WEFT_ERR_INVALID,
                     "weft_timer_after(2^40 ms)");
        break;
    case 7:
        expect_no_id(weft_spawn(lp, 42, never_work, NULL, NULL, never_free_fn, NULL), WEFT_ERR_INVALID,
                     "weft_spawn(where 42)");
        expect_no_id(weft_spawn(lp, WEFT_ON_CPU, NULL, NULL, NULL, never_free_fn, NULL), WEFT_ERR_NULL,
                     "weft_spawn(work NULL)");
        break;
    case 8: /* the loop runs on its own thread */
        expect_rc(weft_loop_run(lp, WEFT_RUN_DEFAULT), WEFT_ERR_BUSY, "weft_loop_run(a running loop)");
        break;
    case 9:
        if (driver_stale(d, &s))
            expect_rc(weft_watch_fd_modify(g_loops[s.loop], s.id, WEFT_READABLE), WEFT_ERR_NOT_FOUND,
                      "weft_watch_fd_modify(stale id)");
        break;
    case 10:
        expect_no_id(weft_post(lp, NULL, NULL, never_free_fn), WEFT_ERR_NULL, "weft_post(cb NULL)");
        break;
    default: /* refused while the loop runs: the loop must live on */
        if (rnd(&d->rng) % 8 == 0) {
            weft_loop_free(lp);
            expect_rc(weft_last_error_code(), WEFT_ERR_BUSY, "weft_loop_free(a running loop)");
        }
        break;
    }
}

/* ---- the mix ---------------------------------------------------------------------- */

typedef struct op {
    void (*fn)(driver *);
    int weight;
} op;

static const op mix[] = {
    {op_post, 16},       {op_post_cancel, 4}, {op_after, 14},          {op_every, 3},
    {op_cancel, 8},      {op_cancel_from_loop, 4}, {op_subscribe, 3},  {op_emit, 16},
    {op_write, 8},       {op_watch, 3},       {op_modify, 2},          {op_loop_task, 3},
    {op_cpu_task, 6},    {op_io_task, 5},     {op_proc_task, 3},       {bad_input, 1},
};

void *driver_main(void *arg) {
    driver *d = (driver *)arg;
    int total = 0;
    for (size_t i = 0; i < sizeof mix / sizeof mix[0]; i++) total += mix[i].weight;
    while (!atomic_load(&g_stop)) {
        if (atomic_load(&d->count) >= DRIVER_CAP) {
            /* back-pressure: end something, or let the loops catch up */
            if (rnd(&d->rng) % 2) op_cancel(d);
            else sleep_us(500);
            continue;
        }
        int r = (int)(rnd(&d->rng) % (uint64_t)total);
        size_t i = 0;
        while (r >= mix[i].weight) r -= mix[i++].weight;
        mix[i].fn(d);
        if (++d->ops % 8 == 0 && g_pace_us) sleep_us(g_pace_us);
    }
    return NULL;
}
