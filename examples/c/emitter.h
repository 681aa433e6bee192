/*
 * emitter.h: a small C library built on weft, for the Node example
 * (examples/node/emitter.js), the Node binding's tests and benches/node.
 *
 * It stands for any native library that reports to its host through weft events: it
 * runs a thread of its own that calls weft_emit(loop, ...), and it exports weft work
 * functions a host can run with weft_spawn. Whoever loads it (C, or Node through koffi)
 * hands it a weft_loop; subscribers of that loop get the events on the loop's thread.
 *
 *   make -C examples/c emitter        builds build/libweft_emitter.so
 */
#ifndef WEFT_EMITTER_H
#define WEFT_EMITTER_H

#include <stdint.h>

#include <weft.h>

typedef struct emitter emitter;

/* Starts a thread that emits `count` events on `loop`: topic "<prefix>.tick", payload
 * the event's sequence number (0, 1, ...) in decimal text, `interval_us` microseconds
 * apart (0: as fast as it can); then one "<prefix>.done" event whose payload is the
 * count. Returns NULL on bad input (NULL loop or prefix, a prefix of more than 200
 * bytes) or when the thread cannot start. */
emitter *emitter_start(weft_loop *loop, const char *prefix, uint32_t count, uint32_t interval_us);

/* Waits for the thread and frees the emitter. Returns how many weft_emit calls
 * failed (0 when every event was queued), or -1 for NULL. */
int emitter_join(emitter *em);

/* Work functions for weft_spawn; user_data is a NUL-terminated string.
 *
 * emitter_work_sum: user_data holds whitespace-separated integers; writes their sum
 *   (decimal text) as the result and returns 0. NULL user_data: the sum is 0.
 * emitter_work_sleep: user_data holds a number of milliseconds; sleeps that long, 1 ms
 *   at a time, stopping early once weft_task_cancelled is true. Writes "slept" and
 *   returns 0, or writes "cancelled" and returns 1.
 * emitter_work_progress: user_data holds "<topic> <n>"; emits n events on <topic>
 *   with weft_task_emit (payloads "1".."n"), then writes "done" and returns 0.
 * emitter_work_status: user_data holds a number; returns it, writing nothing.
 */
int emitter_work_sum(weft_task *task, void *user_data);
int emitter_work_sleep(weft_task *task, void *user_data);
int emitter_work_progress(weft_task *task, void *user_data);
int emitter_work_status(weft_task *task, void *user_data);

#endif /* WEFT_EMITTER_H */
