// What a loop, a pool and a task report about themselves: loop.stats()
// (weft_loop_get_stats), weft.poolStats(kind) (weft_pool_get_stats) and a spawn
// promise's `timing` (weft_task_get_timing), as plain objects of Numbers.
//
// Each read fills a Buffer laid out as weft.h's struct (offsets from koffi's view of the
// generated declaration, so they follow the header) and reads its uint64_t fields as
// Numbers: nanosecond counts stay exact below 2^53 ns (104 days). busy/idle time and
// timer lateness count from a loop's first stats() on.
//
// Timings: a spawn with options.timing asks weft to record them (WEFT_SPAWN_TIMING),
// and the done trampoline reads them (weft_task_get_timing answers only inside done)
// onto the resolved Buffer or the rejection's error as `timing`, in milliseconds on
// performance.now()'s clock (weft reads CLOCK_MONOTONIC, the clock of
// process.hrtime.bigint(); the offset between the two is measured once).
'use strict';

const ffi = require('./ffi.js');
const { lib } = require('./library.js');
const { lastError } = require('./errors.js');

const { koffi, WEFT_OK, WEFT_POOL_CPU, WEFT_POOL_IO } = ffi;

// [JS name, C field] of each uint64_t field, in the header's order.
const LOOP_FIELDS = [
  ['passes', 'passes'],
  ['timerCallbacks', 'timer_callbacks'],
  ['postCallbacks', 'post_callbacks'],
  ['fdCallbacks', 'fd_callbacks'],
  ['signalCallbacks', 'signal_callbacks'],
  ['eventCallbacks', 'event_callbacks'],
  ['doneCallbacks', 'done_callbacks'],
  ['busyNs', 'busy_ns'],
  ['idleNs', 'idle_ns'],
  ['timerLateP50Ns', 'timer_late_p50_ns'],
  ['timerLateP99Ns', 'timer_late_p99_ns'],
  ['timerLateMaxNs', 'timer_late_max_ns'],
  ['timerLateSamples', 'timer_late_samples'],
  ['queuedRecords', 'queued_records'],
  ['waitingCompletions', 'waiting_completions'],
  ['tasks', 'tasks'],
  ['processTasks', 'process_tasks'],
  ['children', 'children'],
  ['timers', 'timers'],
  ['fdWatches', 'fd_watches'],
  ['signalWatches', 'signal_watches'],
  ['subscriptions', 'subscriptions'],
];
const POOL_FIELDS = [
  ['threads', 'threads'],
  ['busyThreads', 'busy_threads'],
  ['queued', 'queued'],
  ['tasksRun', 'tasks_run'],
  ['steals', 'steals'],
  ['threadsStarted', 'threads_started'],
  ['threadsRetired', 'threads_retired'],
];
const TIMING_FIELDS = [
  ['queued', 'queued_ns'],
  ['started', 'started_ns'],
  ['finished', 'finished_ns'],
  ['done', 'done_ns'],
];

// A struct type's layout: its size and [JS name, offset] of the fields.
function layout(type, fields) {
  return {
    size: koffi.sizeof(type),
    fields: fields.map(([js, c]) => [js, koffi.offsetof(type, c)]),
  };
}

const LOOP = layout(ffi.weft_loop_stats, LOOP_FIELDS);
const POOL = layout(ffi.weft_pool_stats, POOL_FIELDS);
const TIMING = layout(ffi.weft_task_timing, TIMING_FIELDS);

// The three calls, declared with `void *` out-parameters so that a Buffer is their
// memory (the generated prototypes would have koffi encode a struct from an object).
const raw = {
  loop: lib.handle.func('int weft_loop_get_stats(void *lp, void *stats)'),
  pool: lib.handle.func('int weft_pool_get_stats(void *pool, int kind, void *stats)'),
  timing: lib.handle.func('int weft_task_get_timing(void *lp, uint64_t task, void *timing)'),
};

// A zeroed Buffer of `l.size` bytes whose first field (size_t size) says so.
function sized(l) {
  const buf = Buffer.alloc(l.size);
  buf.writeBigUInt64LE(BigInt(l.size), 0);
  return buf;
}

function read(buf, l, out) {
  for (const [name, off] of l.fields) out[name] = Number(buf.readBigUInt64LE(off));
  return out;
}

// loop.stats(): see Loop.stats in loop.js.
//
// Node waits in libuv, never inside weft (each pass is a weft_loop_run(NOWAIT)), so
// weft's idleNs stays 0 here and busy / (busy + idle) would always be 1. Utilisation is
// measured against the wall clock instead: busyNs over the time since the loop's first
// stats() (when weft began counting), `timeNs` being when each read was made.
function loopStats(loop) {
  loop._check('stats');
  const buf = sized(LOOP);
  const rc = raw.loop(loop._ptr, buf);
  const timeNs = Number(process.hrtime.bigint());
  if (rc !== WEFT_OK) throw lastError(rc);
  const s = read(buf, LOOP, {});
  if (loop._statsSince === null) loop._statsSince = timeNs;
  s.timeNs = timeNs;
  const wall = timeNs - loop._statsSince;
  s.utilization = wall > 0 ? Math.min(1, s.busyNs / wall) : null;
  return s;
}

// The share of the wall time between two stats() of one loop that it spent in passes.
function utilizationBetween(earlier, later) {
  const wall = later.timeNs - earlier.timeNs;
  return wall > 0 ? Math.min(1, Math.max(0, (later.busyNs - earlier.busyNs) / wall)) : null;
}

const POOL_KINDS = { cpu: WEFT_POOL_CPU, io: WEFT_POOL_IO };

// weft.poolStats(kind): weft's default pool of that kind, which loop.spawn uses.
function poolStats(kind = 'cpu') {
  if (!Object.hasOwn(POOL_KINDS, kind)) throw new TypeError(`poolStats: kind must be 'cpu' or 'io', got ${String(kind)}`);
  const buf = sized(POOL);
  const rc = raw.pool(null, POOL_KINDS[kind], buf);
  if (rc !== WEFT_OK) throw lastError(rc);
  return read(buf, POOL, {});
}

// performance.now() minus CLOCK_MONOTONIC, in ms: measured once (both clocks are
// monotonic and run at one rate; the read pair is microseconds apart).
let offsetMs = null;
function clockOffset() {
  if (offsetMs === null) {
    const a = performance.now();
    const mono = Number(process.hrtime.bigint()) / 1e6;
    const b = performance.now();
    offsetMs = (a + b) / 2 - mono;
  }
  return offsetMs;
}

const timingBuf = sized(TIMING);
// The same bytes as 32-bit halves: a u64 read without making a BigInt.
const timingWords = new Uint32Array(timingBuf.buffer, timingBuf.byteOffset, TIMING.size / 4);
const TIMING_WORDS = TIMING.fields.map(([name, off]) => [name, off / 4]);

// Inside a task's done (the JS thread): its timing, or null when weft has none.
function readTiming(loopPtr, id) {
  if (raw.timing(loopPtr, id, timingBuf) !== WEFT_OK) return null;
  const ns = {};
  for (const [name, w] of TIMING_WORDS) ns[name] = timingWords[w] + timingWords[w + 1] * 4294967296;
  if (ns.queued === 0) return null;
  return new TaskTiming(ns);
}

// When a task was queued, started, finished and completed (its done ran): milliseconds
// on performance.now()'s clock, null for what did not happen; `*Ns`: weft's raw
// CLOCK_MONOTONIC nanoseconds (0 for what did not happen).
class TaskTiming {
  constructor(ns) {
    const off = clockOffset();
    const ms = (v) => (v === 0 ? null : v / 1e6 + off);
    this.queuedNs = ns.queued;
    this.startedNs = ns.started;
    this.finishedNs = ns.finished;
    this.doneNs = ns.done;
    this.queued = ms(ns.queued);
    this.started = ms(ns.started);
    this.finished = ms(ns.finished);
    this.done = ms(ns.done);
  }

  // Milliseconds the task waited before it started (null if it never started).
  get queueDelay() {
    return this.startedNs === 0 ? null : (this.startedNs - this.queuedNs) / 1e6;
  }

  // Milliseconds its work ran (null if it did not start or did not finish).
  get runTime() {
    return this.startedNs === 0 || this.finishedNs === 0 ? null : (this.finishedNs - this.startedNs) / 1e6;
  }
}

module.exports = { loopStats, poolStats, utilizationBetween, readTiming, TaskTiming };
