/* The loop's owner and another thread cancel the same timers at once: for each timer
 * exactly one of the two cancels returns WEFT_OK, the other WEFT_ERR_NOT_FOUND, and its
 * free_fn runs exactly once; no callback runs. The owner cancels with plain stores while
 * no other thread cancels, and the other thread's cancel waits for the owner's
 * (src/timer/table.rs): these cases race the two on every timer, with the owner outside
 * run (the host's thread, before weft_loop_run) and inside a callback (the loop thread). */
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

typedef struct {
    weft_loop *lp;
    weft_id *ids;
    int *rcs;
    long n;
    _Atomic int *go;
} race_arg;

/* The other thread: cancels every timer, from the last one down, once told to go. */
static void *cancel_from_the_end(void *arg) {
    race_arg *a = (race_arg *)arg;
    while (!atomic_load(a->go)) sched_yield();
    for (long i = a->n - 1; i >= 0; i--) a->rcs[i] = weft_cancel(a->lp, a->ids[i]);
    return NULL;
}

/* The owner: cancels every timer from the first one up; returns how many it ended. */
static void cancel_from_the_start(race_arg *a, int *rcs) {
    atomic_store(a->go, 1);
    for (long i = 0; i < a->n; i++) rcs[i] = weft_cancel(a->lp, a->ids[i]);
}

/* Each timer: one OK and one NOT_FOUND between the two cancels, freed once, never
 * called. */
static void check_settled(const race_arg *a, const int *owner_rcs, const track *t) {
    long bad = 0, by_owner = 0;
    for (long i = 0; i < a->n; i++) {
        int mine = owner_rcs[i], theirs = a->rcs[i];
        bool one_wins = (mine == WEFT_OK && theirs == WEFT_ERR_NOT_FOUND) ||
                        (mine == WEFT_ERR_NOT_FOUND && theirs == WEFT_OK);
        by_owner += mine == WEFT_OK;
        if (!one_wins || atomic_load(&t[i].frees) != 1 || atomic_load(&t[i].calls) != 0) {
            if (bad++ < 5)
                h_fail(__FILE__, __LINE__, "timer %ld: owner %d, other thread %d, frees %d, calls %d", i, mine,
                       theirs, atomic_load(&t[i].frees), atomic_load(&t[i].calls));
        }
    }
    CHECK_EQ(bad, 0);
    /* Both sides won some (almost always: the threads meet in the middle). */
    if (by_owner == 0 || by_owner == a->n)
        fprintf(stderr, "note: one side won all %ld cancels (the threads did not overlap)\n", a->n);
}

/* The timers both sides race to cancel: n of them, each with its tracker, and the
 * results of each side's cancels. */
typedef struct {
    long n;
    track *t;
    weft_id *ids;
    int *rcs, *owner_rcs;
} race_timers;

static race_timers race_timers_new(weft_loop *lp) {
    race_timers r = {h_scale(100000, 5000), NULL, NULL, NULL, NULL};
    r.t = calloc((size_t)r.n, sizeof *r.t);
    r.ids = calloc((size_t)r.n, sizeof *r.ids);
    r.rcs = calloc((size_t)r.n, sizeof *r.rcs);
    r.owner_rcs = calloc((size_t)r.n, sizeof *r.owner_rcs);
    for (long i = 0; i < r.n; i++)
        r.ids[i] = CHECK_ID(weft_timer_after(lp, 60000, track_cb, &r.t[i], track_free));
    return r;
}

static void race_timers_free(race_timers *r) {
    free(r->t);
    free(r->ids);
    free(r->rcs);
    free(r->owner_rcs);
}

TEST(owner_outside_run_and_another_thread_cancel_the_same_timers) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    race_timers r = race_timers_new(lp);
    long n = r.n;
    track *t = r.t;
    weft_id *ids = r.ids;
    int *rcs = r.rcs, *owner_rcs = r.owner_rcs;
    _Atomic int go = 0;
    race_arg a = {lp, ids, rcs, n, &go};
    pthread_t th;
    pthread_create(&th, NULL, cancel_from_the_end, &a);
    cancel_from_the_start(&a, owner_rcs);
    pthread_join(th, NULL);
    check_settled(&a, owner_rcs, t);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT)); /* nothing left: returns at once */
    weft_loop_free(lp);
    for (long i = 0; i < n; i++) CHECK_EQ(atomic_load(&t[i].frees), 1);
    race_timers_free(&r);
}

typedef struct {
    race_arg *a;
    int *owner_rcs;
} in_callback_arg;

static void cancel_all_in_callback(weft_loop *lp, weft_id id, void *ud) {
    (void)lp;
    (void)id;
    in_callback_arg *c = (in_callback_arg *)ud;
    cancel_from_the_start(c->a, c->owner_rcs);
}

TEST(owner_in_a_callback_and_another_thread_cancel_the_same_timers) {
    weft_loop *lp = weft_loop_new();
    REQUIRE(lp != NULL);
    race_timers r = race_timers_new(lp);
    long n = r.n;
    track *t = r.t;
    weft_id *ids = r.ids;
    int *rcs = r.rcs, *owner_rcs = r.owner_rcs;
    _Atomic int go = 0;
    race_arg a = {lp, ids, rcs, n, &go};
    in_callback_arg c = {&a, owner_rcs};
    CHECK_ID(weft_timer_after(lp, 0, cancel_all_in_callback, &c, NULL));
    pthread_t th;
    pthread_create(&th, NULL, cancel_from_the_end, &a);
    CHECK_OK(weft_loop_run(lp, WEFT_RUN_DEFAULT));
    pthread_join(th, NULL);
    check_settled(&a, owner_rcs, t);
    weft_loop_free(lp);
    race_timers_free(&r);
}
