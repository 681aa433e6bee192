// TypeScript declarations of weft for Node.js (lib/index.js, lib/index.mjs).

/// <reference types="node" />

/** fd watch interest and readiness bit: the fd is readable. */
export const READABLE: number;
/** fd watch interest and readiness bit: the fd is writable. */
export const WRITABLE: number;
/** Readiness bit, always reported: the peer hung up. */
export const HANGUP: number;
/** Readiness bit, always reported: an error is pending on the fd. */
export const ERROR: number;

/** The loaded library's version, "MAJOR.MINOR.PATCH". */
export const version: string;
/** The loaded library's ABI version. */
export const abiVersion: number;
/**
 * The file libweft was loaded from: $WEFT_LIBRARY, the package's native/<platform>-<arch>/,
 * the repository's target/release, or the system's (see README.md, "Install").
 */
export const libraryPath: string;
/** The C API itself (lib/ffi.js's load()): every weft_* function. */
export const native: Record<string, (...args: any[]) => any>;
/** The generated koffi declarations (lib/ffi.js). */
export const ffi: Record<string, any>;

export type WeftErrorCode =
  | 'WEFT_ERR_NULL' | 'WEFT_ERR_INVALID' | 'WEFT_ERR_NOT_FOUND' | 'WEFT_ERR_CLOSED'
  | 'WEFT_ERR_BUSY' | 'WEFT_ERR_CANCELLED' | 'WEFT_ERR_TIMEOUT' | 'WEFT_ERR_CRASHED'
  | 'WEFT_ERR_PANIC' | 'WEFT_ERR_IO' | 'WEFT_ERR_UNSUPPORTED' | 'WEFT_ERR_FORKED';

/** An error weft reported. */
export class WeftError extends Error {
  name: 'WeftError';
  /** A rejected spawn's timing, with `timing: true`. */
  timing?: TaskTiming;
  /** The weft_result's name, e.g. 'WEFT_ERR_NOT_FOUND'. */
  code: WeftErrorCode;
  /** The weft_result's value, e.g. -3. */
  errno: number;
}

/** What an AbortSignal did to a spawn (its cause is the signal's reason). */
export class AbortError extends Error {
  name: 'AbortError';
  /** With `timing: true`: set once the aborted task's work has returned. */
  timing?: TaskTiming;
  code: 'ABORT_ERR';
}

/** A task whose work returned a status other than 0. */
export class TaskError extends Error {
  name: 'TaskError';
  /** With `timing: true`. */
  timing?: TaskTiming;
  code: 'WEFT_TASK_STATUS';
  status: number;
  /** The bytes the work wrote. */
  result: Buffer;
}

export type HandleKind = 'timer' | 'interval' | 'watch' | 'subscription';

/** A registration of a Loop: a timer, an interval, an fd watch or a subscription. */
export class Handle {
  readonly loop: Loop;
  /** The registration's id: weft's, or for a timer (after, every) the binding's own. */
  readonly id: bigint;
  readonly kind: HandleKind;
  /** False once it fired (one-shot timers), was cancelled, or its loop closed. */
  readonly active: boolean;
  /** Ends it: true, or false when it had ended already. */
  cancel(): boolean;
  /** Keeps Node running while the handle is alive (the default). */
  ref(): this;
  /** Lets Node exit while the handle is alive. */
  unref(): this;
  hasRef(): boolean;
}

export interface SpawnOptions {
  /**
   * Where the work runs: 'cpu' (default, a pool of one thread per core), 'io' (a pool for
   * blocking calls) or 'process' (a forked child; only the native function runs there,
   * never JavaScript: it must not call into V8, Node or libuv).
   */
  on?: 'cpu' | 'io' | 'process';
  /** Milliseconds after which the promise rejects with WEFT_ERR_TIMEOUT (0: none); a child is killed. */
  timeout?: number | bigint;
  /** Rejects with an AbortError when aborted; the work sees weft_task_cancelled, a child is killed. */
  signal?: AbortSignal;
  /** on: 'process' only: this task forks only while fewer of the loop's process tasks run (0, the default: one per core). */
  maxChildren?: number | bigint;
  /**
   * on: 'process' only (default true): the task may run in a child that ran earlier
   * tasks, and its child may run later waiting ones spawned before its fork. false: a
   * fresh child for this task alone.
   */
  reuse?: boolean;
  /**
   * on: 'process' only: fds of this process the child keeps open. By default the child
   * closes every fd above stderr but its own pipes, so it never holds a server's
   * sockets open.
   */
  keepFds?: number[];
  /** on: 'process' only: true keeps every fd open in the child (the fork(2) default). */
  inheritFds?: boolean;
  /**
   * Records when the task was queued, started, finished and done: the resolved Buffer,
   * or the rejection's error (an AbortError once the work has returned), carries it as
   * `timing`. Off by default: it costs a few microseconds a spawn.
   */
  timing?: boolean;
  /** The task's name in the watchdog's reports (weft_set_label). */
  label?: string;
}

/**
 * When a task spawned with `timing: true` was queued, started, finished and done:
 * milliseconds on performance.now()'s clock, null for what did not happen (a task
 * aborted or timed out before it started has no start). The `*Ns` fields are weft's
 * CLOCK_MONOTONIC nanoseconds (process.hrtime.bigint()'s clock; 0: did not happen).
 */
export class TaskTiming {
  readonly queued: number;
  readonly started: number | null;
  readonly finished: number | null;
  readonly done: number;
  readonly queuedNs: number;
  readonly startedNs: number;
  readonly finishedNs: number;
  readonly doneNs: number;
  /** Milliseconds it waited for a thread or a child (null if it never started). */
  readonly queueDelay: number | null;
  /** Milliseconds its work ran (null if it did not start or finish). */
  readonly runTime: number | null;
}

/** What a spawn resolves with: the bytes the work wrote (and its timing, if asked). */
export interface SpawnResult extends Buffer {
  /** With `timing: true` only. */
  timing?: TaskTiming;
}

/**
 * A loop's counters (weft_loop_get_stats), as Numbers. Times are nanoseconds; busy/idle
 * time and timer lateness count from the loop's first stats() on.
 */
export interface LoopStats {
  passes: number;
  /** Callbacks run, by kind. The binding's JS timers are one weft timer, its JS events weft posts. */
  timerCallbacks: number;
  postCallbacks: number;
  fdCallbacks: number;
  signalCallbacks: number;
  eventCallbacks: number;
  doneCallbacks: number;
  /** Time in weft's passes (callbacks and the loop's own work), on a coarse clock. */
  busyNs: number;
  /** Time waiting inside weft: 0 under Node, which waits in libuv. */
  idleNs: number;
  /** Timer lateness (deadline to call) over weft's last 1024 timer calls. */
  timerLateP50Ns: number;
  timerLateP99Ns: number;
  timerLateMaxNs: number;
  timerLateSamples: number;
  /** Posts and events queued, not yet run. */
  queuedRecords: number;
  /** Tasks finished whose done waits for a pass. */
  waitingCompletions: number;
  /** Pool tasks spawned whose done has not run. */
  tasks: number;
  /** Process tasks waiting or running. */
  processTasks: number;
  /** Live child processes. */
  children: number;
  /** Registrations, by kind (weft's: JS timers are one). */
  timers: number;
  fdWatches: number;
  signalWatches: number;
  subscriptions: number;
  /** When this was read (ns, process.hrtime.bigint()'s clock). */
  timeNs: number;
  /**
   * busyNs over the wall time since the first stats() (null at the first read). Node
   * waits in libuv, not in weft: idleNs stays 0.
   */
  utilization: number | null;
}

/** A weft pool's counters (weft_pool_get_stats). */
export interface PoolStats {
  threads: number;
  busyThreads: number;
  queued: number;
  tasksRun: number;
  steals: number;
  threadsStarted: number;
  threadsRetired: number;
}

/** The counters of weft's default pool of `kind` (the pools loop.spawn uses). */
export function poolStats(kind?: 'cpu' | 'io'): PoolStats;
/** The share of the wall time between two stats() of one loop spent in its passes. */
export function utilizationBetween(earlier: LoopStats, later: LoopStats): number | null;

/** A callback that held Node's thread longer than the watchdog's threshold. */
export interface SlowCallback {
  /** The weft id of the registration (the binding's own for JS timers and JS events). */
  id: bigint;
  /** 'timer', 'post', 'fd', 'signal', 'event' or 'done'. */
  kind: string;
  /** The handle's label (loop.setLabel), else the JS function's name, when known. */
  name: string | null;
  /** How long it ran, in milliseconds. */
  durationMs: number;
  /** The callback's number on its loop. */
  seq: number;
}

export interface LoopOptions {
  /** Turns the watchdog on with a 100 ms threshold, logging with console.warn. */
  debug?: boolean;
}

/** A weft event loop, run by Node's own event loop. */
export class Loop {
  constructor(options?: LoopOptions);
  /**
   * Reports each callback that held Node's thread longer than `ms`, once it has
   * returned (a JS stack cannot be sampled, nor a report run, while the thread is
   * blocked). No handler: console.warn. `ms` null or 0: off.
   */
  setWatchdog(ms: number | null, handler?: (report: SlowCallback) => void): void;
  /**
   * weft's counters of this loop now; the first call starts counting busy/idle time and
   * timer lateness. Does not stop the loop.
   */
  stats(): LoopStats;
  /**
   * Names a watch, a subscription or a JS timer (or a weft id) for the watchdog's
   * reports and weft_set_label; null removes it. A task: spawn's `label` option.
   */
  setLabel(target: Handle | bigint, label: string | null): void;
  /**
   * The weft_loop pointer, for native libraries built on weft. Once it has been read,
   * events emitted in JS go through weft_emit (until then the binding delivers them).
   */
  readonly pointer: bigint;
  /** weft_loop_fd(), or -1 once closed. */
  readonly fd: number;
  readonly closed: boolean;
  /** Registrations and tasks alive. */
  readonly size: number;

  /** Calls fn once, `ms` milliseconds from now (never early). */
  after(ms: number | bigint, fn: (handle: Handle) => void): Handle;
  /** Calls fn every `ms` milliseconds, at a fixed rate, until cancelled. */
  every(ms: number | bigint, fn: (handle: Handle) => void): Handle;
  /** Calls fn while fd is ready for `interest` (READABLE | WRITABLE), level-triggered. */
  watch(fd: number, interest: number, fn: (events: number, handle: Handle) => void): Handle;
  /** Calls fn for each event whose topic matches `pattern` ("a.b", "a.*" or "*"). */
  subscribe(pattern: string, fn: (topic: string, payload: Buffer, handle: Handle) => void): Handle;
  /** Emits an event to this loop's subscribers, delivered in a later pass. */
  emit(topic: string, payload?: Buffer | Uint8Array | ArrayBuffer | string | null): true;
  /** Ends registration `id`; throws a WeftError (WEFT_ERR_NOT_FOUND) for a forged or stale id. */
  cancel(id: bigint): void;
  /**
   * Runs a native weft_work_fn (a pointer to an exported C function, e.g.
   * `koffi.load(path).symbol('my_work')`) on a pool thread or in a forked child
   * (`on: 'process'`); resolves with the bytes it wrote once it returns 0. A child that
   * dies rejects with a WeftError WEFT_ERR_CRASHED naming the signal. With
   * `timing: true`, the result (or the error) has `timing`.
   */
  spawn(work: bigint, userData?: Buffer | Uint8Array | ArrayBuffer | string | bigint | null,
    options?: SpawnOptions): Promise<SpawnResult>;
  /** Frees the loop; pending spawns reject with WEFT_ERR_CLOSED. Idempotent. */
  close(): void;

  on(event: 'error', fn: (err: unknown) => void): this;
  once(event: 'error', fn: (err: unknown) => void): this;
  off(event: 'error', fn: (err: unknown) => void): this;
  addListener(event: 'error', fn: (err: unknown) => void): this;
  removeListener(event: 'error', fn: (err: unknown) => void): this;
  listenerCount(event: 'error'): number;
}

export interface Diagnostics {
  /** Callbacks that reached JS outside weft_loop_run on the JS thread: always 0. */
  foreignCalls: number;
  /** weft_loop_run(NOWAIT) calls made so far. */
  passes: number;
  openLoops: number;
  running: boolean;
  /** user_data tokens held: one per live watch and subscription, and one per open loop
   * that has had a timer (its alarm's); back to 0 once every loop is closed. */
  tokens: number;
}
export function diagnostics(): Diagnostics;

declare const weft: {
  Loop: typeof Loop;
  Handle: typeof Handle;
  WeftError: typeof WeftError;
  AbortError: typeof AbortError;
  TaskError: typeof TaskError;
  READABLE: number;
  WRITABLE: number;
  HANGUP: number;
  ERROR: number;
  version: string;
  abiVersion: number;
  libraryPath: string;
  native: Record<string, (...args: any[]) => any>;
  ffi: Record<string, any>;
  diagnostics: typeof diagnostics;
  poolStats: typeof poolStats;
  utilizationBetween: typeof utilizationBetween;
  TaskTiming: typeof TaskTiming;
};
export default weft;
