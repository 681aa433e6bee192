/* tasks.c: the soak's tasks, on the loop, on the CPU and IO pools (the soak's own and the
 * default ones) and in forked children. A task's mode says what its done must get; done
 * checks the status, the result bytes, and for process tasks the events before it. */
#include "soak.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Writes the task's result: result_len bytes of its pattern, in chunks. */
static int write_result(weft_task *task, const item *it) {
    unsigned char buf[1024];
    for (size_t off = 0; off < it->result_len; off += sizeof buf) {
        size_t n = it->result_len - off < sizeof buf ? it->result_len - off : sizeof buf;
        pattern_fill(buf, n, it->serial, off);
        int rc = weft_task_write(task, buf, n);
        if (rc != WEFT_OK) return rc;
    }
    return WEFT_OK;
}

/* The hash of what write_result writes. */
static uint64_t result_hash(const item *it) {
    unsigned char buf[1024];
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t off = 0; off < it->result_len; off += sizeof buf) {
        size_t n = it->result_len - off < sizeof buf ? it->result_len - off : sizeof buf;
        pattern_fill(buf, n, it->serial, off);
        for (size_t i = 0; i < n; i++) h = (h ^ buf[i]) * 0x100000001b3ull;
    }
    return h;
}

/* Busy for `us` microseconds: computation for the CPU pool. */
static void spin_us(uint32_t us) {
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    volatile uint64_t h = 1;
    for (;;) {
        for (int i = 0; i < 256; i++) h = h * 0x100000001b3ull + (uint64_t)i;
        clock_gettime(CLOCK_MONOTONIC, &t);
        long el = (t.tv_sec - t0.tv_sec) * 1000000L + (t.tv_nsec - t0.tv_nsec) / 1000L;
        if (el >= (long)us) break;
    }
}

/* Work on the loop or a pool thread. */
static int thread_work(weft_task *task, void *ud) {
    item *it = (item *)ud;
    if (!item_alive(it, "a task's work")) return 0;
    if (it->mode == M_TIMEOUT) {
        /* Outlives its timeout: waits to be told, at most 3 s. */
        uint64_t end = now_ms() + 3000;
        while (!weft_task_cancelled(task) && now_ms() < end) sleep_us(500);
        return it->expect_status;
    }
    if (it->kind == K_CPU) spin_us(it->work_us);
    else if (it->kind == K_IO) sleep_us(it->work_us);
    int rc = write_result(task, it);
    if (rc != WEFT_OK) soak_fail("weft_task_write in a %s task returned %d", kind_names[it->kind], rc);
    uint64_t rng = it->serial * 0x9E3779B97F4A7C15ull | 1;
    for (int i = 0; i < it->nevents; i++) {
        char topic[32];
        snprintf(topic, sizeof topic, "soak.t.%d", (int)(rnd(&rng) % 4));
        emit_payload(it->loop, task, topic, (size_t)(rnd(&rng) % 128), &rng);
    }
    return it->expect_status;
}

/* Work in a forked child: what it sees of `it` is its copy-on-write snapshot. Nothing
 * here touches the soak's counters (they are the child's copy); a failed call shows in
 * the status done gets. */
static int proc_work(weft_task *task, void *ud) {
    item *it = (item *)ud;
    if (it->mode == M_CRASH) _exit(3); /* no status sent: WEFT_ERR_CRASHED */
    if (it->mode == M_TIMEOUT) {
        sleep_us(10u * 1000000u); /* killed at its timeout long before */
        return it->expect_status;
    }
    sleep_us(it->work_us);
    if (write_result(task, it) != WEFT_OK) return 201;
    for (int seq = 0; seq < it->nevents; seq++) {
        proc_event e = {PROC_MAGIC, (uint32_t)seq, it->serial, it};
        if (weft_task_emit(task, "proc.ev", &e, sizeof e) != WEFT_OK) return 202;
    }
    return it->expect_status;
}

static void task_done(weft_loop *lp, weft_id id, int status, const uint8_t *result, size_t len, void *ud) {
    (void)id;
    item *it = (item *)ud;
    if (!item_alive(it, "a task's done")) return;
    const char *k = kind_names[it->kind];
    if (lp != g_loops[it->loop]) soak_fail("the done of %s task %" PRIu64 " ran on another loop", k, it->serial);
    if (atomic_fetch_add(&it->dones, 1) != 0) soak_fail("the done of %s task %" PRIu64 " ran twice", k, it->serial);
    atomic_fetch_add(&g.dones[it->kind], 1);
    it->done_status = status;
    bool tried = atomic_load(&it->cancel_tried);
    if (status == WEFT_ERR_CANCELLED) {
        atomic_fetch_add(&g.done_cancelled[it->kind], 1);
        if (!tried) soak_fail("%s task %" PRIu64 ": done got WEFT_ERR_CANCELLED, and no cancel was tried", k, it->serial);
        if (result != NULL || len != 0) soak_fail("%s task %" PRIu64 ": a cancelled done got %zu result bytes", k, it->serial, len);
    } else if (status == WEFT_ERR_TIMEOUT) {
        atomic_fetch_add(&g.done_timeout[it->kind], 1);
        if (it->mode != M_TIMEOUT) soak_fail("%s task %" PRIu64 " (mode %d) timed out", k, it->serial, it->mode);
        if (result != NULL || len != 0) soak_fail("%s task %" PRIu64 ": a timed-out done got %zu result bytes", k, it->serial, len);
    } else if (status == WEFT_ERR_CRASHED) {
        atomic_fetch_add(&g.done_crashed[it->kind], 1);
        if (it->mode != M_CRASH) {
            char err[256];
            weft_last_error(err, sizeof err);
            soak_fail("%s task %" PRIu64 " crashed: %s", k, it->serial, err);
        }
    } else if (status >= 0) {
        atomic_fetch_add(&g.done_ok[it->kind], 1);
        if (it->mode != M_NORMAL)
            soak_fail("%s task %" PRIu64 " of mode %d got status %d", k, it->serial, it->mode, status);
        else if (status != it->expect_status)
            soak_fail("%s task %" PRIu64 ": status %d, its work returned %d", k, it->serial, status, it->expect_status);
        else if (len != it->result_len || (len > 0 && (result == NULL || fnv(result, len) != result_hash(it))))
            soak_fail("%s task %" PRIu64 ": %zu result bytes, %u written, or not the bytes written", k, it->serial,
                      len, it->result_len);
        if (it->kind == K_PROC && atomic_load(&it->events_seen) != it->nevents)
            soak_fail("process task %" PRIu64 ": done after %d of its %d events", it->serial,
                      atomic_load(&it->events_seen), it->nevents);
    } else {
        soak_fail("%s task %" PRIu64 ": done got %d (%s)", k, it->serial, status, weft_strerror(status));
    }
    if (it->depth == 0 && it->kind != K_PROC && !atomic_load(&g_stop) && rnd_here(8) == 0)
        spawn_follow_up(lp, it->loop, it);
}

/* Chooses a task's mode and parameters, and its spawn options. */
static void plan_task(item *it, uint64_t *rng, weft_spawn_options *o) {
    memset(o, 0, sizeof *o);
    o->size = sizeof *o;
    it->expect_status = (int)(rnd(rng) % 100);
    uint64_t r = rnd(rng) % 100;
    switch (it->kind) {
    case K_LOOP_TASK:
        it->mode = M_NORMAL; /* a loop task that waited would hold its loop */
        it->result_len = (uint32_t)(rnd(rng) % 512);
        it->nevents = (int)(rnd(rng) % 2);
        break;
    case K_CPU:
    case K_IO:
        o->pool = rnd(rng) % 2 ? (it->kind == K_CPU ? g_cpu_pool : g_io_pool) : NULL;
        if (r < 3) {
            /* holds a pool thread until its deadline: few, or the pools back up */
            it->mode = M_TIMEOUT;
            o->timeout_ms = 2 + rnd(rng) % 10;
        } else {
            it->mode = M_NORMAL;
            it->work_us = (uint32_t)(it->kind == K_CPU ? 5 + rnd(rng) % 60 : rnd(rng) % 1000);
            it->result_len = (uint32_t)(rnd(rng) % 1024);
            it->nevents = (int)(rnd(rng) % 3);
            if (rnd(rng) % 4 == 0) o->timeout_ms = 60000; /* armed, never due */
        }
        break;
    case K_PROC:
        if (rnd(rng) % 2) o->max_children = 2;
        if (r < 15) {
            it->mode = M_TIMEOUT;
            o->timeout_ms = 20 + rnd(rng) % 130;
        } else if (r < 25) {
            it->mode = M_CRASH;
        } else {
            it->mode = M_NORMAL;
            it->work_us = (uint32_t)(rnd(rng) % 20000);
            it->result_len = (uint32_t)(rnd(rng) % 16384);
            it->nevents = (int)(rnd(rng) % 4);
            o->reuse_child = rnd(rng) % 4 == 0;
            if (rnd(rng) % 4 == 0) o->timeout_ms = 60000;
        }
        break;
    default:
        break;
    }
}

static const weft_where places[NKINDS] = {[K_LOOP_TASK] = WEFT_ON_LOOP, [K_CPU] = WEFT_ON_CPU,
                                          [K_IO] = WEFT_ON_IO, [K_PROC] = WEFT_ON_PROCESS};

item *spawn_task(driver *d, kind k, int loop) {
    item *it = item_new(d, k, loop);
    if (it == NULL) return NULL;
    weft_spawn_options o;
    plan_task(it, &d->rng, &o);
    weft_id id = weft_spawn(g_loops[loop], places[k], k == K_PROC ? proc_work : thread_work, task_done, it,
                            item_free_fn, &o);
    if (item_registered(it, id, "weft_spawn")) return it;
    item_put(it);
    return NULL;
}

void spawn_follow_up(weft_loop *lp, int loop, item *parent) {
    item *it = item_new(&g_drivers[parent->driver], K_CPU, loop);
    if (it == NULL) return;
    uint64_t rng = rnd_here(UINT64_MAX) | 1;
    weft_spawn_options o;
    it->kind = K_CPU;
    plan_task(it, &rng, &o);
    it->depth = 1;
    bool cancel = rnd(&rng) % 4 == 0;
    if (cancel) atomic_store(&it->cancel_tried, 1);
    weft_id id = weft_spawn(lp, WEFT_ON_CPU, thread_work, task_done, it, item_free_fn, &o);
    if (item_registered(it, id, "weft_spawn from a done") && cancel)
        cancel_item(it, 0, "a loop thread, right after spawning it");
    item_put(it);
}
