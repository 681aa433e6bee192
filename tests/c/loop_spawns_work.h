/*
 * loop_spawns_work.h: what test_loop_spawns.c and test_loop_spawns_free.c share:
 * spawner, spawn_cb and spawn_from_callback spawn a batch of tasks from inside a loop
 * callback (include after tasks_util.h).
 */
#ifndef LOOP_SPAWNS_WORK_H
#define LOOP_SPAWNS_WORK_H

typedef struct spawner {
    weft_where where;
    const weft_spawn_options *opts; /* NULL: defaults */
    rec *recs;
    int n;
    weft_id *ids;
    /* After spawning, wait inside the callback until this many works have run (0: no). */
    int wait_for_runs;
    _Atomic int *runs;
    int runs_seen; /* how many had run when the wait ended */
    _Atomic int spawned;
} spawner;

static inline void spawn_cb(weft_loop *lp, weft_id id, void *ud) {
    (void)id;
    spawner *s = (spawner *)ud;
    for (int i = 0; i < s->n; i++) {
        weft_id tid = rec_spawn(lp, s->where, &s->recs[i], s->opts);
        if (tid == 0) h_fail(__FILE__, __LINE__, "spawn %d from a callback failed: %s", i, h_last_error());
        if (s->ids) s->ids[i] = tid;
    }
    if (s->wait_for_runs > 0) {
        uint64_t end = now_ms() + h_slack_ms(5000);
        while (atomic_load(s->runs) < s->wait_for_runs && now_ms() < end) sched_yield();
        s->runs_seen = atomic_load(s->runs);
    }
    atomic_store(&s->spawned, 1);
}

/* Posts spawn_cb and runs the loop until it has run. */
static inline bool spawn_from_callback(weft_loop *lp, spawner *s) {
    if (weft_post(lp, spawn_cb, s, NULL) == 0) return false;
    return run_until(lp, &s->spawned, 1, h_slack_ms(10000));
}

#endif /* LOOP_SPAWNS_WORK_H */
