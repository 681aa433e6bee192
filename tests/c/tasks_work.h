/*
 * tasks_work.h: what several test_tasks*.c files share (include after tasks_util.h):
 * plain_work, a work that counts its runs in plain_runs and returns 3.
 */
#ifndef TASKS_WORK_H
#define TASKS_WORK_H

static _Atomic int plain_runs; /* plain_work's runs */
static inline int plain_work(weft_task *t, void *ud) {
    (void)t, (void)ud;
    atomic_fetch_add(&plain_runs, 1);
    return 3;
}

#endif /* TASKS_WORK_H */
