/* items.c: the soak's items (the user_data of every registration), the drivers' lists
 * of them, their free_fn, and the callbacks of posts, timers, subscriptions and watches,
 * each of which checks that its item is alive and counts its call. */
#include "soak.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *const kind_names[NKINDS] = {"post", "after", "every", "sub", "watch",
                                        "looptask", "cpu", "io", "proc", "cancelpost"};

/* ---- small things --------------------------------------------------------------------- */

void soak_fail(const char *fmt, ...) {
    long nth = atomic_fetch_add(&g.failures, 1) + 1;
    if (nth > 40) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "soak: FAIL: %s\n", msg);
    if (nth == 40) fprintf(stderr, "soak: (further failures are counted, not shown)\n");
    fflush(stderr);
}

uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void sleep_us(unsigned us) {
    struct timespec ts = {(time_t)(us / 1000000u), (long)(us % 1000000u) * 1000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* xorshift64*: small, fast, and good enough to pick operations. */
uint64_t rnd(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

uint64_t rnd_here(uint64_t n) {
    static _Atomic uint64_t streams;
    static _Thread_local uint64_t state;
    if (state == 0) state = (g_seed ^ (0x9E3779B97F4A7C15ull * (atomic_fetch_add(&streams, 1) + 101))) | 1;
    return n ? rnd(&state) % n : 0;
}

uint64_t fnv(const void *p, size_t n) {
    const unsigned char *b = (const unsigned char *)p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

void pattern_fill(unsigned char *buf, size_t n, uint64_t serial, size_t off) {
    for (size_t i = 0; i < n; i++) buf[i] = (unsigned char)((serial * 31u + (off + i) * 2654435761u) >> 7);
}

/* ---- the quarantine: ended items wait here before free() ------------------------------- */

enum { QUARANTINE = 8192 };
static item *quarantine[QUARANTINE];
static size_t q_next, q_len;
static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;

/* Judges an item once nothing more can happen to it: its last reference is gone, so its
 * calls, its done and the results of the cancels of it are all known. */
static void judge(item *it) {
    if (!it->registered_ok || it->freed_in_teardown) return;
    const char *k = kind_names[it->kind];
    int fires = atomic_load(&it->fires), cancelled = atomic_load(&it->cancel_ok);
    if (kind_one_shot(it->kind)) {
        if (fires == 0 && !cancelled)
            soak_fail("%s item %" PRIu64 " was freed without being called, and no cancel of it returned OK", k,
                      it->serial);
        if (fires == 1 && cancelled) {
            /* A one-shot whose call has begun is over: a cancel of it says NOT_FOUND
             * (a post the loop has taken, an after-timer whose callback has begun). */
            atomic_fetch_add(&g.ran_and_cancelled[it->kind], 1);
            soak_fail("%s item %" PRIu64 " ran, and a weft_cancel of it returned OK", k, it->serial);
        }
    }
    if (kind_task(it->kind)) {
        if (atomic_load(&it->dones) != 1)
            soak_fail("%s task %" PRIu64 " ended after %d dones", k, it->serial, atomic_load(&it->dones));
        else if (cancelled != (it->done_status == WEFT_ERR_CANCELLED))
            soak_fail("%s task %" PRIu64 ": a cancel of it returned %s, and its done got %d (%s)", k, it->serial,
                      cancelled ? "OK" : "only NOT_FOUND", it->done_status, weft_strerror(it->done_status));
    }
}

static void item_release(item *it) {
    int before = atomic_fetch_sub(&it->refs, 1);
    if (before != 1) {
        if (before < 1) soak_fail("item %" PRIu64 " (%s) released more often than held", it->serial,
                                  kind_names[it->kind]);
        return;
    }
    judge(it);
    item *old = NULL;
    pthread_mutex_lock(&q_lock);
    if (q_len == QUARANTINE) old = quarantine[q_next];
    else q_len++;
    quarantine[q_next] = it;
    q_next = (q_next + 1) % QUARANTINE;
    pthread_mutex_unlock(&q_lock);
    free(old);
}

void item_put(item *it) { item_release(it); }

void quarantine_drain(void) {
    pthread_mutex_lock(&q_lock);
    for (size_t i = 0; i < q_len; i++) free(quarantine[i]), quarantine[i] = NULL;
    q_len = q_next = 0;
    pthread_mutex_unlock(&q_lock);
}

/* ---- items and lists ------------------------------------------------------------------- */

static _Atomic uint64_t serials;

item *item_new(driver *d, kind k, int loop) {
    item *it = (item *)calloc(1, sizeof *it);
    if (it == NULL) {
        soak_fail("out of memory");
        return NULL;
    }
    atomic_store(&it->magic, ITEM_LIVE);
    it->kind = k;
    it->loop = loop;
    it->driver = d ? d->index : -1;
    it->permanent = d == NULL;
    it->serial = atomic_fetch_add(&serials, 1) + 1;
    it->born_ms = now_ms();
    it->fd = it->fd2 = -1;
    atomic_store(&it->refs, 2);
    if (d != NULL) {
        pthread_mutex_lock(&d->lock);
        if (atomic_load(&d->count) >= LIST_CAP) {
            pthread_mutex_unlock(&d->lock);
            free(it);
            return NULL;
        }
        int n = atomic_load(&d->count);
        d->items[n] = it;
        it->slot = n;
        atomic_store(&d->count, n + 1);
        d->live_by_kind[k]++;
        pthread_mutex_unlock(&d->lock);
    }
    atomic_fetch_add(&g.regs[k], 1);
    if (g_leak_bytes) {
        /* SOAK_LEAK: memory lost on purpose, touched so that it is resident */
        static void *volatile lost;
        lost = malloc(g_leak_bytes);
        if (lost) memset(lost, 1, g_leak_bytes);
    }
    return it;
}

static void list_remove(item *it) {
    if (it->driver < 0) return;
    driver *d = &g_drivers[it->driver];
    pthread_mutex_lock(&d->lock);
    int n = atomic_load(&d->count);
    if (it->slot < 0 || it->slot >= n || d->items[it->slot] != it) {
        pthread_mutex_unlock(&d->lock);
        soak_fail("item %" PRIu64 " (%s) is not in its driver's list", it->serial, kind_names[it->kind]);
        return;
    }
    item *last = d->items[n - 1];
    d->items[it->slot] = last;
    last->slot = it->slot;
    d->items[n - 1] = NULL;
    atomic_store(&d->count, n - 1);
    d->live_by_kind[it->kind]--;
    weft_id id = atomic_load(&it->id);
    if (id != 0) {
        d->stale[d->stale_next % STALE_RING] = (stale_id){id, it->loop};
        d->stale_next++;
    }
    it->slot = -1;
    pthread_mutex_unlock(&d->lock);
}

weft_id item_registered(item *it, weft_id id, const char *call) {
    if (id != 0) {
        atomic_store(&it->id, id);
        it->registered_ok = true;
        return id;
    }
    char err[256];
    weft_last_error(err, sizeof err);
    soak_fail("%s failed: %s", call, err);
    atomic_fetch_sub(&g.regs[it->kind], 1);
    list_remove(it);
    atomic_store(&it->magic, ITEM_FREED);
    item_release(it); /* weft's reference: no free_fn will run */
    return 0;
}

bool item_alive(item *it, const char *where) {
    uint32_t m = atomic_load(&it->magic);
    if (m == ITEM_LIVE) return true;
    soak_fail("%s ran for an item whose free_fn already ran (magic %#x)", where, m);
    return false;
}

void item_free_fn(void *ud) {
    item *it = (item *)ud;
    uint32_t m = atomic_load(&it->magic);
    if (m != ITEM_LIVE) {
        soak_fail("a free_fn ran for an item already freed (magic %#x): twice, or for a failed call", m);
        return;
    }
    if (atomic_exchange(&it->freed, 1) != 0) {
        soak_fail("the free_fn of %s item %" PRIu64 " ran twice", kind_names[it->kind], it->serial);
        return;
    }
    it->freed_in_teardown = atomic_load(&g_teardown);
    if (it->kind == K_WATCH && it->flavour == W_CHURN) {
        close(it->fd);
        close(it->fd2);
    }
    item *target = atomic_exchange(&it->target, NULL); /* a cancelling post that did not run */
    if (target) item_put(target);
    atomic_fetch_add(&g.frees[it->kind], 1);
    if (it->freed_in_teardown) atomic_fetch_add(&g.teardown_frees[it->kind], 1);
    list_remove(it);
    atomic_store(&it->magic, ITEM_FREED);
    item_release(it);
}

void never_free_fn(void *ud) {
    (void)ud;
    soak_fail("the free_fn of a call that failed ran");
}

item *driver_pick(driver *d, kind want) {
    item *found = NULL;
    pthread_mutex_lock(&d->lock);
    int n = atomic_load(&d->count);
    for (int tries = 0; n > 0 && tries < 8 && !found; tries++) {
        item *it = d->items[rnd(&d->rng) % (uint64_t)n];
        if (it->permanent || (want != NKINDS && it->kind != want)) continue;
        /* process tasks live long, so a pick finds them often: spare most of them */
        if (it->kind == K_PROC && want == NKINDS && rnd(&d->rng) % 4 != 0) continue;
        atomic_fetch_add(&it->refs, 1); /* in the list, so weft's reference is still held */
        atomic_store(&it->cancel_tried, 1);
        found = it;
    }
    pthread_mutex_unlock(&d->lock);
    return found;
}

bool driver_stale(driver *d, stale_id *out) {
    pthread_mutex_lock(&d->lock);
    unsigned have = d->stale_next < STALE_RING ? d->stale_next : STALE_RING;
    if (have > 0) *out = d->stale[rnd(&d->rng) % have];
    pthread_mutex_unlock(&d->lock);
    return have > 0;
}

int cancel_item(item *it, weft_id id, const char *who) {
    kind k = it->kind;
    int rc = weft_cancel(g_loops[it->loop], id ? id : atomic_load(&it->id));
    if (rc == WEFT_OK) {
        atomic_fetch_add(&g.cancel_ok[k], 1);
        if (atomic_exchange(&it->cancel_ok, 1) != 0)
            soak_fail("a second weft_cancel of %s item %" PRIu64 " returned OK (from %s)", kind_names[k], it->serial,
                      who);
    } else if (rc == WEFT_ERR_NOT_FOUND) {
        atomic_fetch_add(&g.cancel_not_found[k], 1);
    } else {
        soak_fail("weft_cancel of a %s from %s returned %d (%s)", kind_names[k], who, rc, weft_strerror(rc));
    }
    return rc;
}

/* ---- callbacks ----------------------------------------------------------------------- */

/* The loop the callback ran on is the item's. */
static bool on_its_loop(item *it, weft_loop *lp, const char *where) {
    if (lp == g_loops[it->loop]) return true;
    soak_fail("%s of a %s item ran on another loop", where, kind_names[it->kind]);
    return false;
}

/* Once a weft_cancel of the registration has returned OK, no call starts: only the one
 * the loop had already begun (taken out to call, on its way) may still run, once. */
static bool not_after_cancel(item *it, const char *where) {
    if (!atomic_load(&it->cancel_ok)) return true;
    atomic_fetch_add(&g.late_calls, 1);
    if (atomic_fetch_add(&it->calls_after_cancel, 1) == 0) return true;
    soak_fail("%s started again after a weft_cancel of it returned OK (%s item %" PRIu64 ")", where,
              kind_names[it->kind], it->serial);
    return false;
}

static void one_shot_call(item *it, weft_loop *lp, const char *where) {
    if (!item_alive(it, where) || !on_its_loop(it, lp, where) || !not_after_cancel(it, where)) return;
    if (atomic_fetch_add(&it->fires, 1) != 0)
        soak_fail("%s ran twice for %s item %" PRIu64, where, kind_names[it->kind], it->serial);
    atomic_fetch_add(&g.fires[it->kind], 1);
}

void post_cb(weft_loop *lp, weft_id id, void *ud) {
    (void)id;
    one_shot_call((item *)ud, lp, "a post");
}

void timer_cb(weft_loop *lp, weft_id id, void *ud) {
    item *it = (item *)ud;
    if (it->kind == K_AFTER) {
        one_shot_call(it, lp, "an after-timer");
        return;
    }
    if (!item_alive(it, "an every-timer") || !on_its_loop(it, lp, "an every-timer") ||
        !not_after_cancel(it, "an every-timer"))
        return;
    int n = atomic_fetch_add(&it->fires, 1) + 1;
    atomic_fetch_add(&g.fires[K_EVERY], 1);
    if (rnd_here(8) == 0) {
        char topic[32];
        snprintf(topic, sizeof topic, "soak.e.%d", (int)rnd_here(4));
        uint64_t rng = rnd_here(UINT64_MAX) | 1;
        emit_payload(it->loop, NULL, topic, (size_t)rnd_here(64), &rng);
    }
    if (it->fire_limit > 0 && n == it->fire_limit) cancel_item(it, id, "its own callback");
}

void cancel_post_cb(weft_loop *lp, weft_id id, void *ud) {
    (void)id;
    item *it = (item *)ud;
    one_shot_call(it, lp, "a cancelling post");
    item *target = atomic_exchange(&it->target, NULL);
    if (target) {
        cancel_item(target, 0, "a loop thread");
        item_put(target);
    }
}

/* Checks an event's payload; true if it is well formed. */
static bool payload_ok(const char *topic, const void *payload, size_t len) {
    if (strncmp(topic, "soak.", 5) == 0) {
        emit_head h;
        if (len < sizeof h) goto bad;
        memcpy(&h, payload, sizeof h);
        if (h.magic != EMIT_MAGIC || h.len != len - sizeof h ||
            h.hash != fnv((const char *)payload + sizeof h, h.len))
            goto bad;
        return true;
    }
    if (strncmp(topic, "proc.", 5) == 0) {
        proc_event e;
        if (len != sizeof e) goto bad;
        memcpy(&e, payload, sizeof e);
        if (e.magic != PROC_MAGIC) goto bad;
        return true;
    }
bad:
    soak_fail("an event on \"%s\" came with a bad payload of %zu bytes", topic, len);
    return false;
}

void event_cb(weft_loop *lp, weft_id id, const char *topic, const void *payload, size_t len, void *ud) {
    item *it = (item *)ud;
    if (!item_alive(it, "a subscriber") || !on_its_loop(it, lp, "a subscriber") ||
        !not_after_cancel(it, "a subscriber"))
        return;
    atomic_fetch_add(&it->fires, 1);
    atomic_fetch_add(&g.fires[K_SUB], 1);
    atomic_fetch_add(&g.deliveries, 1);
    payload_ok(topic, payload, len);
    if (rnd_here(64) == 0) cancel_item(it, id, "its own callback");
}

/* The permanent "soak.*" subscriber of each loop: sees every event emitted there. */
void counting_event_cb(weft_loop *lp, weft_id id, const char *topic, const void *payload, size_t len,
                       void *ud) {
    (void)id;
    item *it = (item *)ud;
    if (!item_alive(it, "the counting subscriber") || !on_its_loop(it, lp, "the counting subscriber")) return;
    atomic_fetch_add(&g.deliveries, 1);
    if (payload_ok(topic, payload, len)) atomic_fetch_add(&g.counted[it->loop], 1);
}

/* The permanent "proc.*" subscriber of each loop: the events of its process tasks, which
 * must come in emit order and before the task's done. */
void proc_event_cb(weft_loop *lp, weft_id id, const char *topic, const void *payload, size_t len,
                   void *ud) {
    (void)id;
    item *sub = (item *)ud;
    if (!item_alive(sub, "the process-event subscriber") || !payload_ok(topic, payload, len)) return;
    atomic_fetch_add(&g.deliveries, 1);
    proc_event e;
    memcpy(&e, payload, sizeof e);
    item *t = e.task;
    if (atomic_load(&t->magic) != ITEM_LIVE || t->serial != e.serial || t->kind != K_PROC) {
        soak_fail("an event of process task %" PRIu64 " came after its free_fn", e.serial);
        return;
    }
    if (lp != g_loops[t->loop]) soak_fail("an event of process task %" PRIu64 " reached another loop", e.serial);
    if (atomic_load(&t->dones) != 0)
        soak_fail("event %u of process task %" PRIu64 " came after its done", e.seq, e.serial);
    int seen = atomic_fetch_add(&t->events_seen, 1);
    if ((uint32_t)seen != e.seq)
        soak_fail("process task %" PRIu64 ": event %u came as the %d-th (emit order broken)", e.serial, e.seq,
                  seen);
    atomic_fetch_add(&g.proc_events, 1);
}

void watch_cb(weft_loop *lp, weft_id id, int fd, uint32_t events, void *ud) {
    item *it = (item *)ud;
    if (!item_alive(it, "an fd watch") || !on_its_loop(it, lp, "an fd watch") ||
        !not_after_cancel(it, "an fd watch"))
        return;
    atomic_fetch_add(&it->fires, 1);
    atomic_fetch_add(&g.fires[K_WATCH], 1);
    if (fd != it->fd) soak_fail("an fd watch of fd %d was called with fd %d", it->fd, fd);
    if (events & (WEFT_HANGUP | WEFT_ERROR))
        soak_fail("an fd watch of fd %d got events %#x: its socket pair is open", fd, events);
    if (it->flavour == W_WRITABLE_ONCE) {
        if (!(events & WEFT_WRITABLE)) soak_fail("a writable watch was called with events %#x", events);
        cancel_item(it, id, "its own callback");
        return;
    }
    char buf[4096];
    long total = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n > 0) {
            total += n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) soak_fail("read fd %d: %s", fd, strerror(errno));
        if (n == 0) soak_fail("fd %d reads EOF: its peer is open", fd);
        break;
    }
    if (it->flavour == W_CHURN) cancel_item(it, id, "its own callback");
    else atomic_fetch_add(&g.fd_read, total);
}

void emit_payload(int loop, weft_task *task, const char *topic, size_t len, uint64_t *rng) {
    unsigned char buf[sizeof(emit_head) + 256];
    if (len > 256) len = 256;
    for (size_t i = 0; i < len; i++) buf[sizeof(emit_head) + i] = (unsigned char)rnd(rng);
    emit_head h = {EMIT_MAGIC, (uint32_t)len, fnv(buf + sizeof h, len)};
    memcpy(buf, &h, sizeof h);
    bool counted = strncmp(topic, "soak.", 5) == 0;
    if (counted) atomic_fetch_add(&g.emits[loop], 1);
    int rc = task ? weft_task_emit(task, topic, buf, sizeof h + len)
                  : weft_emit(g_loops[loop], topic, buf, sizeof h + len);
    if (rc != WEFT_OK) {
        if (counted) atomic_fetch_sub(&g.emits[loop], 1);
        soak_fail("%s(\"%s\", %zu bytes) returned %d (%s)", task ? "weft_task_emit" : "weft_emit", topic,
                  sizeof h + len, rc, weft_strerror(rc));
    }
}
