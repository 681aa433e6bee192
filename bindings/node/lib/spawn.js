// Spawning tasks: a native weft_work_fn run on a weft pool thread (on: 'cpu' or 'io') or
// in a forked child (on: 'process'), and the promise its done settles.
'use strict';

const ffi = require('./ffi.js');
const { lib } = require('./library.js');
const { c_copyTo, c_calloc, c_strdup, c_free, C_FREE, c_dladdr } = require('./libc.js');
const { WeftError, AbortError, TaskError, lastError } = require('./errors.js');
const { U64_MAX, checkMs, checkU32, toBytes } = require('./checks.js');
const { T_DONE } = require('./trampolines.js');

const { koffi, WEFT_ERR_INVALID, WEFT_ON_IO, WEFT_ON_CPU, WEFT_ON_PROCESS, WEFT_SPAWN_TIMING } = ffi;

const SPAWN_OPTIONS_SIZE = koffi.sizeof(ffi.weft_spawn_options);

const WHERE = { io: WEFT_ON_IO, cpu: WEFT_ON_CPU, process: WEFT_ON_PROCESS };

// Labels longer than this weft refuses (weft_set_label).
const LABEL_MAX = 4096;

// Work pointers that passed the dladdr check below. dladdr fills a struct whose two
// strings koffi decodes on every call (~2.5 us); a pointer checked once is not checked
// again (a library that koffi unloads takes its functions with it either way).
const checkedWork = new Set();

function checkWork(work) {
  if (typeof work !== 'bigint') {
    throw new TypeError('work must be a pointer to a native weft_work_fn (a BigInt, '
      + "e.g. koffi.load(path).symbol('my_work')), not a JavaScript function");
  }
  if (checkedWork.has(work)) return;
  const info = {};
  if (work <= 0n || work > U64_MAX || c_dladdr(work, info) === 0 || info.dli_saddr !== work) {
    throw new TypeError(`work ${work === 0n ? 'NULL' : '0x' + work.toString(16)} is not an exported `
      + 'function of a loaded library');
  }
  checkedWork.add(work);
}

// loop.spawn(work, userData, options), which throws where spawn rejects: runs the native
// `work(task, userData)` (a weft_work_fn: a BigInt pointer to an exported C function,
// e.g. koffi.load(path).symbol('my_work')) on a weft pool thread or in a forked child,
// and resolves with the bytes it wrote (weft_task_write) once it returns 0.
//   userData: null; a Buffer, Uint8Array or string (copied, NUL-terminated, into memory
//     the task owns, freed after the work returns); or a BigInt pointer you keep valid
//     until the work has returned (even after a timeout or an abort).
//   options.on: 'cpu' (default), 'io' or 'process'; options.timeout: ms (rejects with a
//     WeftError WEFT_ERR_TIMEOUT; the work sees weft_task_cancelled, a child is
//     killed); options.signal: AbortSignal (rejects with an AbortError at once; the work
//     sees weft_task_cancelled, a child is killed).
//   on: 'process' only: options.maxChildren (default 0: one per core),
//     options.reuse (default true), options.keepFds (fds of this process the child
//     keeps open; by default it closes all but stdin, stdout and stderr) and
//     options.inheritFds (true: the child keeps every fd).
// A status other than 0 rejects with a TaskError (its .status and .result); a child
// that died rejects with a WeftError WEFT_ERR_CRASHED naming the signal or exit code.
//   options.timing: true records when the task was queued, started, finished and done
//     (WEFT_SPAWN_TIMING): the resolved Buffer, or the rejection's error, carries them
//     as `timing`, a TaskTiming of stats.js (an AbortError gets it once the work has
//     returned). Not by default: reading the times in each done, and the options struct
//     koffi encodes for each such spawn, cost more than the rest of a trivial spawn.
//   options.label: the task's name for the watchdog's reports (weft_set_label).
//
// on: 'process' runs the native function in a child forked from this process (a
// copy-on-write snapshot of it at the fork); JavaScript never runs there. The child
// has only the forking thread: the work must not call into V8, Node or libuv, nor
// take locks other threads may have held at the fork (glibc's malloc is fine). Its
// weft_task_write bytes and weft_task_emit events come back through a pipe; the events
// reach the loop's subscribers before the promise settles. With reuse, a child that
// finished its task runs the next waiting one spawned with reuse before the child was
// forked: one fork for many tasks, but a later task sees the globals earlier tasks in
// that child changed.
//
// The task is recorded in loop._tasks (id -> task), which the done trampoline settles.
// options.keepFds as an Int32Array of fds (non-negative integers).
function checkFds(fds) {
  if (!Array.isArray(fds)) throw new TypeError(`options.keepFds must be an array of fds, got ${typeof fds}`);
  for (const fd of fds) {
    if (!Number.isInteger(fd) || fd < 0 || fd > 0x7fffffff) {
      throw new RangeError(`options.keepFds: ${String(fd)} is not a file descriptor`);
    }
  }
  return fds.length ? Int32Array.from(fds) : null;
}

function spawnTask(loop, work, userData, options) {
  loop._check('spawn');
  checkWork(work);
  if (options === null || typeof options !== 'object') throw new TypeError('options must be an object');
  const { on = 'cpu', timeout = 0, signal, maxChildren, reuse, keepFds, inheritFds, timing, label } = options;
  const where = on === 'cpu' ? WEFT_ON_CPU : Object.hasOwn(WHERE, on) ? WHERE[on] : undefined;
  if (where === undefined) throw new TypeError(`options.on must be 'cpu', 'io' or 'process', got ${String(on)}`);
  const inProcess = where === WEFT_ON_PROCESS;
  const timeoutMs = timeout === 0 ? 0 : checkMs(timeout, 'options.timeout');
  if (!inProcess) {
    for (const [name, value] of [['maxChildren', maxChildren], ['reuse', reuse], ['keepFds', keepFds],
      ['inheritFds', inheritFds]]) {
      if (value !== undefined) throw new TypeError(`options.${name} applies only to on: 'process' (on: '${on}')`);
    }
  }
  const keep = keepFds === undefined ? null : checkFds(keepFds);
  if (inheritFds !== undefined && typeof inheritFds !== 'boolean') {
    throw new TypeError(`options.inheritFds must be a boolean, got ${typeof inheritFds}`);
  }
  const maxChildrenN = maxChildren === undefined ? 0 : checkU32(maxChildren, 'options.maxChildren');
  if (reuse !== undefined && typeof reuse !== 'boolean') {
    throw new TypeError(`options.reuse must be a boolean, got ${typeof reuse}`);
  }
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new TypeError('options.signal must be an AbortSignal');
  }
  if (timing !== undefined && typeof timing !== 'boolean') {
    throw new TypeError(`options.timing must be a boolean, got ${typeof timing}`);
  }
  if (label !== undefined) checkLabel(label, 'options.label');
  if (signal && signal.aborted) throw new AbortError(undefined, { cause: signal.reason });

  let data = null;
  let freeFn = null;
  if (typeof userData === 'bigint') {
    if (userData < 0n || userData > U64_MAX) throw new RangeError('userData pointer out of range');
    data = userData === 0n ? null : userData;
  } else if (userData !== null && userData !== undefined) {
    data = copyUserData(userData);
    // Native: weft may call it on the pool thread, after the work; for a process
    // task, in this process after done (the child has its own copy from the fork).
    freeFn = C_FREE;
  }
  const opts = timeoutMs || inProcess || timing ? {
    size: SPAWN_OPTIONS_SIZE,
    timeout_ms: timeoutMs,
    pool: null,
    max_children: maxChildrenN,
    fork_fn: null,
    fork_data: null,
    reuse_child: inProcess && reuse !== false,
    // Read (copied) by weft_spawn: the array need only live through the call.
    keep_fds: keep,
    keep_fds_len: keep === null ? 0 : keep.length,
    inherit_fds: inheritFds === true,
    flags: timing ? WEFT_SPAWN_TIMING : 0,
  } : null;
  const id = lib.weft_spawn(loop._ptr, where, work, T_DONE, data, freeFn, opts);
  if (id === 0n) {
    const err = lastError();
    if (freeFn !== null) c_free(data); // a failed registration leaves user_data ours
    throw err;
  }
  // A label weft refuses (not UTF-8: a lone surrogate) leaves the task unnamed.
  if (label !== undefined) lib.weft_set_label(loop._ptr, id, label);
  const task = new Task(loop, id, inProcess, signal, timing === true);
  // Nothing is added to the promise itself: V8's await and Promise.all take their fast
  // paths only for promises of the initial shape.
  const promise = new Promise((resolve, reject) => {
    task.resolve = resolve;
    task.reject = reject;
  });
  if (signal) {
    task.onAbort = () => task.abort();
    signal.addEventListener('abort', task.onAbort, { once: true });
  }
  loop._tasks.set(id, task);
  loop._addRef();
  return promise;
}

// userData's bytes (a string, Buffer, Uint8Array...) copied NUL-terminated into
// malloc'ed memory: the address (a Number). A string without NUL characters is one
// strdup call; other bytes are a calloc (whose zeroes end them) and a memcpy.
function copyUserData(userData) {
  let data;
  if (typeof userData === 'string' && !userData.includes('\0')) {
    data = c_strdup(userData);
  } else {
    const bytes = toBytes(userData, 'userData');
    data = c_calloc(bytes.length + 1, 1);
    if (data !== 0 && bytes.length > 0) c_copyTo(data, bytes, bytes.length);
  }
  if (data === 0) throw new WeftError(WEFT_ERR_INVALID, 'spawn: out of memory for userData');
  return data;
}

// A spawned task's promise, which done (the trampoline) settles through finish(), and
// close() through fail().
class Task {
  constructor(loop, id, inProcess, signal, timed) {
    this.loop = loop;
    this.id = id;
    this.process = inProcess;
    this.signal = signal;
    this.timed = timed; // spawned with options.timing
    this.settled = false;
    this.resolve = null;
    this.reject = null;
    this.onAbort = null;
    this.aborted = null; // the AbortError it was rejected with
  }

  // `why`: weft_last_error's text, read inside done, for a process task's crash;
  // `timing`: its TaskTiming (options.timing) or null.
  finish(status, result, why, timing) {
    if (this.onAbort !== null) this.signal.removeEventListener('abort', this.onAbort);
    if (this.settled) {
      if (timing !== null && this.aborted !== null) this.aborted.timing = timing;
      return;
    }
    this.settled = true;
    let err;
    if (status === 0) {
      if (timing !== null) result.timing = timing;
      this.resolve(result);
      return;
    }
    if (status > 0) err = new TaskError(status, result);
    else err = new WeftError(status, `spawn: ${why ? why.message : lib.weft_strerror(status)}`);
    if (timing !== null) err.timing = timing;
    this.reject(err);
  }

  fail(err) {
    if (this.onAbort !== null) this.signal.removeEventListener('abort', this.onAbort);
    if (this.settled) return;
    this.settled = true;
    this.reject(err);
  }

  abort() {
    if (this.settled || this.loop._closed) return;
    this.settled = true;
    // done still comes (WEFT_ERR_CANCELLED, once the work returns or the killed
    // child is reaped); until then the task stays registered, and keeps Node alive.
    lib.weft_cancel(this.loop._ptr, this.id);
    this.aborted = new AbortError(undefined, { cause: this.signal.reason });
    this.reject(this.aborted);
  }
}

// A label for weft_set_label: a string without NUL, at most LABEL_MAX bytes of UTF-8.
function checkLabel(label, name) {
  if (typeof label !== 'string') throw new TypeError(`${name} must be a string, got ${typeof label}`);
  if (label.includes('\0')) throw new TypeError(`${name} contains a NUL character`);
  if (Buffer.byteLength(label, 'utf8') > LABEL_MAX) throw new RangeError(`${name} is over ${LABEL_MAX} bytes`);
}

module.exports = { spawnTask, checkLabel };
