// weft for Node.js: event loops, timers, fd watches, publish/subscribe events and native
// tasks on worker pools, running on Node's own event loop. See bindings/node/README.md.
//
//     const weft = require('weft');
//     const loop = new weft.Loop();
//     loop.subscribe('job.*', (topic, payload) => console.log(topic, payload.toString()));
//     loop.after(100, () => loop.emit('job.done', 'ok'));
//
// How it runs: each Loop watches its weft_loop_fd() with a libuv poll handle
// (koffi.node.poll), and when that fd is readable calls weft_loop_run(NOWAIT) on the JS
// thread. So every callback runs on the JS thread, inside that call; no weft thread ever
// calls into JavaScript: the only JS functions weft is given are the four trampolines
// below, which weft calls from the loop thread only, and every free_fn this module passes
// is NULL or libc's free (native). The poll handle is ref'd only while a ref'd
// registration is alive, so a script exits by itself once its work is done.
'use strict';

const EventEmitter = require('node:events');
const fs = require('node:fs');
const path = require('node:path');
const { isMainThread } = require('node:worker_threads');

const ffi = require('./ffi.js');

const { koffi } = ffi;

// ---------------------------------------------------------------------------------------
// The library

// Where the library is looked for, in this order; the first that loads is used:
// 1. $WEFT_LIBRARY. When it is set nothing else is tried, so that a wrong path is an
//    error rather than a silent fallback to another copy.
// 2. The package's own copy, native/<platform>-<arch>/, which `npm pack` puts in the
//    tarball (scripts/native.js), as koffi ships its own native library.
// 3. The repository's target/release, when this is the source tree (or a link to it:
//    `npm install /path/to/bindings/node`).
// 4. The system's, through the dynamic loader: the SONAME libweft.so.N
//    (N = WEFT_ABI_VERSION - 1, build.rs), then libweft.so.
const LIBRARY_FILE = process.platform === 'darwin' ? 'libweft.dylib' : 'libweft.so';

function libraryCandidates() {
  if (process.env.WEFT_LIBRARY) return [['WEFT_LIBRARY', path.resolve(process.env.WEFT_LIBRARY)]];
  const packageDir = path.resolve(__dirname, '..');
  const candidates = [
    ['package', path.join(packageDir, 'native', `${process.platform}-${process.arch}`, LIBRARY_FILE)],
  ];
  // An installed package's ../.. is the user's project: the repository is known by its header.
  const repo = path.resolve(packageDir, '..', '..');
  if (fs.existsSync(path.join(repo, 'include', 'weft.h'))) {
    candidates.push(['repository', path.join(repo, 'target', 'release', LIBRARY_FILE)]);
  }
  const major = ffi.WEFT_ABI_VERSION - 1;
  const soname = process.platform === 'darwin' ? `libweft.${major}.dylib` : `libweft.so.${major}`;
  candidates.push(['system', soname], ['system', LIBRARY_FILE]);
  return candidates;
}

// Returns [the loaded library, its path or name], or throws an Error naming every
// candidate tried and why it failed (koffi's own message names no file).
function loadLibrary() {
  const tried = [];
  for (const [where, file] of libraryCandidates()) {
    if (path.isAbsolute(file) && !fs.existsSync(file)) {
      tried.push(`${where}: ${file} (no such file)`);
      continue;
    }
    try {
      return [ffi.load(file), file];
    } catch (err) {
      tried.push(`${where}: ${file} (${err.message})`);
    }
  }
  throw new Error(`weft: cannot load ${LIBRARY_FILE}. Tried, in order:\n  ${tried.join('\n  ')}\n`
    + `Set WEFT_LIBRARY to the path of ${LIBRARY_FILE}, or build it: \`make build\` `
    + '(or `cargo build --release`) at the root of the weft repository.');
}

const [lib, LIBRARY] = loadLibrary();

if (lib.weft_abi_version() !== ffi.WEFT_ABI_VERSION) {
  throw new Error(`weft: ${LIBRARY} has ABI version ${lib.weft_abi_version()}, `
    + `this binding was generated for ${ffi.WEFT_ABI_VERSION}`);
}

// libc: memcpy to copy bytes weft lends a callback into a Buffer (koffi.decode with a
// length and koffi.view both leak memory on every call: 18 and 220 bytes in koffi
// 3.3.4), malloc/free for the bytes a task's work reads (they must outlive a timeout or
// an abort, and free is a native free_fn weft may call on a pool thread), and dladdr to
// refuse a work pointer that is not a function of a loaded library. Addresses are
// uintptr_t: Numbers, exact below 2^53, which covers user space.
const libc = koffi.load(process.platform === 'darwin' ? 'libSystem.B.dylib' : 'libc.so.6');
const c_copyFrom = libc.func('void *memcpy(void *dst, uintptr_t src, size_t n)');
const c_copyTo = libc.func('void *memcpy(uintptr_t dst, const void *src, size_t n)');
const c_malloc = libc.func('uintptr_t malloc(size_t size)');
const c_free = libc.func('void free(uintptr_t ptr)');
const C_FREE = libc.symbol('free');
const Dl_info = koffi.struct('weft_js_Dl_info', {
  dli_fname: 'const char *', dli_fbase: 'void *', dli_sname: 'const char *', dli_saddr: 'void *',
});
const c_dladdr = libc.func('int dladdr(void *addr, _Out_ weft_js_Dl_info *info)');

// The file the library was loaded from: the dynamic loader chose it when a system
// library was loaded by name, and dladdr says which.
function loadedFile() {
  const info = {};
  return c_dladdr(lib.handle.symbol('weft_version'), info) ? info.dli_fname : LIBRARY;
}

const {
  WEFT_OK, WEFT_ERR_NOT_FOUND, WEFT_ERR_CLOSED, WEFT_ERR_INVALID, WEFT_RUN_NOWAIT,
  WEFT_ON_IO, WEFT_ON_CPU, WEFT_ON_PROCESS, WEFT_ERR_TIMEOUT, WEFT_ERR_CANCELLED,
} = ffi;
const SPAWN_OPTIONS_SIZE = koffi.sizeof(ffi.weft_spawn_options);
const NUL = Buffer.alloc(1);

const toBigInt = (v) => (typeof v === 'bigint' ? v : BigInt(v));
const U64_MAX = (1n << 64n) - 1n;
const U32_MAX = 2 ** 32 - 1;

// ---------------------------------------------------------------------------------------
// Errors

const CODE_NAMES = new Map(Object.entries(ffi.CONSTANTS)
  .filter(([name]) => name.startsWith('WEFT_ERR_'))
  .map(([name, value]) => [value, name]));

// An error weft reported: `code` is the weft_result's name ('WEFT_ERR_NOT_FOUND'),
// `errno` its value (-3), the message weft_last_error's text.
class WeftError extends Error {
  constructor(errno, message) {
    super(message || lib.weft_strerror(errno));
    this.name = 'WeftError';
    this.errno = errno;
    this.code = CODE_NAMES.get(errno) || `WEFT_ERR_${errno}`;
  }
}

// What the caller's AbortSignal ended: as node:timers/promises does.
class AbortError extends Error {
  constructor(message = 'The operation was aborted', options = undefined) {
    super(message, options);
    this.name = 'AbortError';
    this.code = 'ABORT_ERR';
  }
}

// A task whose work returned a status other than 0: `status` is it, `result` the
// bytes the work wrote.
class TaskError extends Error {
  constructor(status, result) {
    super(`the task's work returned status ${status}`);
    this.name = 'TaskError';
    this.code = 'WEFT_TASK_STATUS';
    this.status = status;
    this.result = result;
  }
}

// The error of the call that just failed on this thread (read right after the failure).
function lastError(code) {
  const errno = code === undefined ? lib.weft_last_error_code() : code;
  const len = Number(lib.weft_last_error(null, 0));
  let message = '';
  if (len > 0) {
    const buf = Buffer.alloc(len + 1);
    lib.weft_last_error(buf, buf.length);
    message = buf.toString('utf8', 0, len);
  }
  return new WeftError(errno || WEFT_ERR_INVALID, message);
}

function closedError(what) {
  return new WeftError(WEFT_ERR_CLOSED, `${what}: the loop is closed`);
}

// ---------------------------------------------------------------------------------------
// Argument checks (weft checks ranges, ids and patterns itself; these keep values that
// koffi would convert silently, such as -1 -> 2^64 - 1 or "a\0b" -> "a", from reaching it)

function checkFunction(fn, name) {
  if (typeof fn !== 'function') throw new TypeError(`${name} must be a function, got ${typeof fn}`);
}

function checkMs(ms, name) {
  if (typeof ms === 'bigint') {
    if (ms < 0n || ms > U64_MAX) throw new RangeError(`${name} must be >= 0, got ${ms}`);
    return ms;
  }
  if (typeof ms !== 'number') throw new TypeError(`${name} must be a number of milliseconds, got ${typeof ms}`);
  if (!(ms >= 0) || !Number.isFinite(ms)) throw new RangeError(`${name} must be a finite number >= 0, got ${ms}`);
  return Math.ceil(ms); // never early
}

// A count for a uint32_t field: a Number or BigInt integer in 0..2^32 - 1.
function checkU32(n, name) {
  if (typeof n === 'bigint') {
    if (n < 0n || n > BigInt(U32_MAX)) throw new RangeError(`${name} must be an integer in 0..${U32_MAX}, got ${n}`);
    return Number(n);
  }
  if (typeof n !== 'number') throw new TypeError(`${name} must be a number, got ${typeof n}`);
  if (!Number.isInteger(n) || n < 0 || n > U32_MAX) {
    throw new RangeError(`${name} must be an integer in 0..${U32_MAX}, got ${n}`);
  }
  return n;
}

function checkString(s, name) {
  if (typeof s !== 'string') throw new TypeError(`${name} must be a string, got ${typeof s}`);
  if (s.includes('\0')) throw new TypeError(`${name} must not contain NUL characters`);
  return s;
}

function toBytes(data, name) {
  if (data === undefined || data === null) return null;
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (data instanceof Uint8Array) return data;
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  throw new TypeError(`${name} must be a Buffer, a Uint8Array or a string, got ${typeof data}`);
}

function checkId(id) {
  if (typeof id !== 'bigint') throw new TypeError(`id must be a BigInt, got ${typeof id}`);
  if (id < 0n || id > U64_MAX) throw new RangeError(`id must be a 64-bit unsigned integer, got ${id}`);
  return id;
}

// A copy of the `len` bytes at address `ptr` (a Number), which weft lends a callback.
function copyBytes(ptr, len) {
  if (len === 0 || ptr === 0) return Buffer.alloc(0);
  const buf = Buffer.allocUnsafe(len);
  c_copyFrom(buf, ptr, len);
  return buf;
}

// ---------------------------------------------------------------------------------------
// Trampolines: one registered C callback per callback type, for the whole process.
//
// Timers, watches and subscriptions pass a token as their user_data: the index of their
// Handle in `slots`, so a callback finds its Handle without hashing the 64-bit id. The
// trampolines are declared with integer (uintptr_t) loop and user_data parameters, which
// koffi hands over as Numbers; the ABI is that of weft_cb, weft_fd_cb and weft_event_cb.
// A task's user_data is its work's own, so its done finds it by id.

let running = null;    // the Loop whose weft_loop_run is on the stack
let foreignCalls = 0;  // callbacks that arrived outside that: must stay 0
let passes = 0;        // weft_loop_run calls made

const slots = [null];  // token -> Handle (token 0 would be a NULL user_data)
const freeTokens = [];

function takeToken() {
  if (freeTokens.length > 0) return freeTokens.pop();
  slots.push(null);
  return slots.length - 1;
}

function releaseToken(token) {
  slots[token] = null;
  freeTokens.push(token);
}

// The live Handle that `token` names, for a callback of registration `id`; null if none.
function handleFor(id, token) {
  const h = slots[token];
  // `==`: koffi gives a 64-bit id as a Number below 2^53 and a BigInt above, the same
  // way for results and callback arguments; compare by value either way.
  if (h === undefined || h === null || h._rawId != id) return null;
  if (h.loop !== running) {
    // Not inside this loop's weft_loop_run on the JS thread: another thread called a
    // trampoline (koffi would bring the call here), which the design rules out. Count it
    // (the tests check for 0) and still run the callback.
    foreignCalls++;
  }
  return h.loop._closed ? null : h;
}

function onTimer(lp, id, token) {
  const h = handleFor(id, token);
  if (h === null) return;
  if (h._once) h._end(); // a one-shot timer is over before its callback runs
  try {
    h._fn(h);
  } catch (err) {
    h.loop._fail(err);
  }
}

function onFd(lp, id, fd, events, token) {
  const h = handleFor(id, token);
  if (h === null) return;
  try {
    h._fn(events, h);
  } catch (err) {
    h.loop._fail(err);
  }
}

function onEvent(lp, sub, topic, payload, len, token) {
  const h = handleFor(sub, token);
  if (h === null) return;
  try {
    h._fn(topic, copyBytes(payload, len), h);
  } catch (err) {
    h.loop._fail(err);
  }
}

function onDone(lp, id, status, result, len) {
  const loop = running;
  if (loop === null || loop._ptrNum !== lp) {
    foreignCalls++;
    return; // a task of a loop that is not running here: refuse rather than guess
  }
  id = toBigInt(id);
  const task = loop._tasks.get(id);
  if (task === undefined) return;
  loop._tasks.delete(id);
  loop._dropRef();
  // A process task's crash (or a fork that failed on the loop thread): weft_last_error,
  // read here inside done, says why (the signal, the exit code, the errno).
  const why = task.process && status < 0 && status !== WEFT_ERR_TIMEOUT && status !== WEFT_ERR_CANCELLED
    ? lastError(status) : null;
  try {
    task.finish(status, status >= 0 ? copyBytes(result, len) : null, why);
  } catch (err) {
    loop._fail(err);
  }
}

const P_TIMER = koffi.proto('void weft_js_timer_cb(uintptr_t lp, weft_id id, uintptr_t token)');
const P_FD = koffi.proto('void weft_js_fd_cb(uintptr_t lp, weft_id id, int fd, uint32_t events, uintptr_t token)');
const P_EVENT = koffi.proto('void weft_js_event_cb(uintptr_t lp, weft_id sub, const char *topic, uintptr_t payload, size_t len, uintptr_t token)');
const P_DONE = koffi.proto('void weft_js_done_fn(uintptr_t lp, weft_id task, int status, uintptr_t result, size_t len, uintptr_t user_data)');
const T_TIMER = koffi.register(onTimer, koffi.pointer(P_TIMER));
const T_FD = koffi.register(onFd, koffi.pointer(P_FD));
const T_EVENT = koffi.register(onEvent, koffi.pointer(P_EVENT));
const T_DONE = koffi.register(onDone, koffi.pointer(P_DONE));

// The registering calls, declared again without load()'s BigInt conversion of the id
// (a Handle converts its id when asked): the hot path of after() and subscribe().
const raw = {};
for (const name of ['weft_timer_after', 'weft_timer_every', 'weft_watch_fd', 'weft_subscribe']) {
  raw[name] = lib.handle.func(ffi.PROTOTYPES[name]);
}

// ---------------------------------------------------------------------------------------
// Handles

const KIND_TIMER = 'timer';
const KIND_INTERVAL = 'interval';
const KIND_WATCH = 'watch';
const KIND_SUBSCRIPTION = 'subscription';

// A registration: a timer, an interval, an fd watch or a subscription. `id` is weft's id
// (a BigInt); `cancel()` ends it; `unref()` lets Node exit while it is alive.
class Handle {
  constructor(loop, rawId, token, kind, fn, once) {
    this.loop = loop;
    this.kind = kind;
    this.active = true;
    this._rawId = rawId; // as koffi gave it: a Number below 2^53, else a BigInt
    this._id = null;
    this._token = token;
    this._fn = fn;
    this._once = once;
    this._ref = true;
  }

  // weft's id of the registration, a BigInt.
  get id() {
    if (this._id === null) this._id = toBigInt(this._rawId);
    return this._id;
  }

  // Ends the registration: returns true, or false when it had ended already (a one-shot
  // timer that fired, a cancelled handle, a closed loop). Its callback does not start
  // again once this returns, even when called from inside that callback.
  cancel() {
    if (!this.active) return false;
    const rc = lib.weft_cancel(this.loop._ptr, this._rawId);
    if (rc === WEFT_OK || rc === WEFT_ERR_NOT_FOUND) {
      this._end();
      return rc === WEFT_OK;
    }
    throw lastError(rc);
  }

  // Node keeps running while this handle is alive (the default).
  ref() {
    if (this.active && !this._ref) {
      this._ref = true;
      this.loop._addRef();
    }
    return this;
  }

  // Node may exit while this handle is alive: it no longer counts as pending work.
  unref() {
    if (this.active && this._ref) {
      this._ref = false;
      this.loop._dropRef();
    }
    return this;
  }

  hasRef() {
    return this.active && this._ref;
  }

  _end() {
    if (!this.active) return;
    this.active = false;
    releaseToken(this._token);
    const loop = this.loop;
    loop._count--;
    if (loop._byId !== null) loop._byId.delete(this.id);
    if (this._ref) loop._dropRef();
  }
}

// ---------------------------------------------------------------------------------------
// The loop

const openLoops = new Set();

// Posts, events and task completions one turn of Node's loop runs at most.
const PASS_LIMIT = 4096;

const WHERE = { io: WEFT_ON_IO, cpu: WEFT_ON_CPU, process: WEFT_ON_PROCESS };

// A weft event loop driven by Node's. An exception thrown by one of its callbacks goes to
// its 'error' listeners (loop.on('error', fn)); without one it is an uncaught exception,
// as with any EventEmitter. `emit` is weft's (an event for subscribers), so the loop is
// not an EventEmitter itself: on/once/off take only 'error'.
class Loop {
  constructor() {
    const ptr = lib.weft_loop_new();
    if (ptr === null) throw lastError();
    this._ptr = ptr;
    this._ptrNum = Number(ptr); // as the trampolines get it
    this._closed = false;
    this._freePending = false;
    this._count = 0;         // live Handles
    this._byId = null;       // id -> Handle, made by the first loop.cancel(id)
    this._tasks = new Map(); // id -> task record
    this._refs = 0;
    this._errors = [];
    this._emitter = new EventEmitter();
    const fd = lib.weft_loop_fd(ptr);
    if (fd < 0) {
      const err = lastError(fd);
      lib.weft_loop_free(ptr);
      throw err;
    }
    this._fd = fd;
    // A flood of events from native threads runs over several turns of Node's loop, so
    // Node's own timers and I/O get their turn in between.
    lib.weft_loop_set_pass_limit(ptr, PASS_LIMIT);
    try {
      this._poll = koffi.node.poll(fd, { readable: true }, () => this._run());
    } catch (err) {
      lib.weft_loop_free(ptr);
      throw err;
    }
    this._poll.unref();
    openLoops.add(this);
  }

  // The weft_loop pointer, for native libraries built on weft (a BigInt).
  get pointer() {
    this._check('pointer');
    return this._ptr;
  }

  // weft_loop_fd(): readable whenever weft has work; Node watches it.
  get fd() {
    return this._closed ? -1 : this._fd;
  }

  get closed() {
    return this._closed;
  }

  // How many registrations and tasks are alive (ref'd or not).
  get size() {
    return this._count + this._tasks.size;
  }

  // Calls fn(handle) once, `ms` milliseconds from now (never early).
  after(ms, fn) {
    this._check('after');
    const delay = checkMs(ms, 'ms');
    checkFunction(fn, 'fn');
    const token = takeToken();
    const id = raw.weft_timer_after(this._ptr, delay, T_TIMER, token, null);
    return this._register(id, token, KIND_TIMER, fn, true);
  }

  // Calls fn(handle) every `ms` milliseconds, at a fixed rate, until cancelled.
  every(ms, fn) {
    this._check('every');
    const interval = checkMs(ms, 'ms');
    checkFunction(fn, 'fn');
    const token = takeToken();
    const id = raw.weft_timer_every(this._ptr, interval, T_TIMER, token, null);
    return this._register(id, token, KIND_INTERVAL, fn, false);
  }

  // Calls fn(events, handle) while `fd` is ready for `interest` (READABLE | WRITABLE;
  // level-triggered); `events` also carries HANGUP and ERROR.
  watch(fd, interest, fn) {
    this._check('watch');
    if (!Number.isInteger(fd)) throw new TypeError(`fd must be an integer, got ${fd}`);
    if (!Number.isInteger(interest) || interest < 0 || interest > 0xffffffff) {
      throw new TypeError(`interest must be READABLE, WRITABLE or both, got ${interest}`);
    }
    checkFunction(fn, 'fn');
    if (fd < -0x80000000 || fd > 0x7fffffff) throw new RangeError(`fd ${fd} is out of range`);
    const token = takeToken();
    const id = raw.weft_watch_fd(this._ptr, fd, interest, T_FD, token, null);
    return this._register(id, token, KIND_WATCH, fn, false);
  }

  // Calls fn(topic, payload: Buffer, handle) for each event whose topic matches `pattern`:
  // an exact topic, a prefix ending in ".*", or "*". Events emitted by one thread (JS or
  // native) arrive in the order they were emitted.
  subscribe(pattern, fn) {
    this._check('subscribe');
    checkString(pattern, 'pattern');
    checkFunction(fn, 'fn');
    const token = takeToken();
    const id = raw.weft_subscribe(this._ptr, pattern, T_EVENT, token, null);
    return this._register(id, token, KIND_SUBSCRIPTION, fn, false);
  }

  // Emits an event to this loop's subscribers (delivered in a later pass, never inside
  // this call). `payload`: a Buffer, a Uint8Array, a string (UTF-8) or nothing.
  emit(topic, payload) {
    this._check('emit');
    checkString(topic, 'topic');
    const bytes = toBytes(payload, 'payload');
    const rc = bytes === null || bytes.length === 0
      ? lib.weft_emit(this._ptr, topic, null, 0)
      : lib.weft_emit(this._ptr, topic, bytes, bytes.length);
    if (rc !== WEFT_OK) throw lastError(rc);
    return true;
  }

  // Ends the registration `id` (a BigInt, e.g. handle.id). Throws a WeftError
  // (WEFT_ERR_NOT_FOUND) for an id that is not a live registration of this loop:
  // forged, stale, finished, or another loop's.
  cancel(id) {
    this._check('cancel');
    checkId(id);
    const rc = lib.weft_cancel(this._ptr, id);
    if (rc !== WEFT_OK) throw lastError(rc);
    const h = this._handlesById().get(id);
    if (h !== undefined) h._end();
    // A task's cancel is reported by its done (WEFT_ERR_CANCELLED).
  }

  // Runs the native `work(task, userData)` (a weft_work_fn: a BigInt pointer to an
  // exported C function, e.g. koffi.load(path).symbol('my_work')) on a weft pool thread
  // or in a forked child, and resolves with the bytes it wrote (weft_task_write) once it
  // returns 0.
  //   userData: null; a Buffer, Uint8Array or string (copied, NUL-terminated, into memory
  //     the task owns, freed after the work returns); or a BigInt pointer you keep valid
  //     until the work has returned (even after a timeout or an abort).
  //   options.on: 'cpu' (default), 'io' or 'process'; options.timeout: ms (rejects with a
  //     WeftError WEFT_ERR_TIMEOUT; the work sees weft_task_cancelled, a child is
  //     killed); options.signal: AbortSignal (rejects with an AbortError at once; the work
  //     sees weft_task_cancelled, a child is killed).
  //   on: 'process' only: options.maxChildren (default 0: one per core) and
  //     options.reuse (default true).
  // A status other than 0 rejects with a TaskError (its .status and .result); a child
  // that died rejects with a WeftError WEFT_ERR_CRASHED naming the signal or exit code.
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
  spawn(work, userData = null, options = {}) {
    try {
      return this._spawn(work, userData, options);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  _spawn(work, userData, options) {
    this._check('spawn');
    checkWork(work);
    if (options === null || typeof options !== 'object') throw new TypeError('options must be an object');
    const { on = 'cpu', timeout = 0, signal, maxChildren, reuse } = options;
    const where = Object.hasOwn(WHERE, on) ? WHERE[on] : undefined;
    if (where === undefined) throw new TypeError(`options.on must be 'cpu', 'io' or 'process', got ${String(on)}`);
    const inProcess = where === WEFT_ON_PROCESS;
    const timeoutMs = checkMs(timeout, 'options.timeout');
    if (maxChildren !== undefined || reuse !== undefined) {
      const given = maxChildren !== undefined ? 'maxChildren' : 'reuse';
      if (!inProcess) throw new TypeError(`options.${given} applies only to on: 'process' (on: '${on}')`);
    }
    const maxChildrenN = maxChildren === undefined ? 0 : checkU32(maxChildren, 'options.maxChildren');
    if (reuse !== undefined && typeof reuse !== 'boolean') {
      throw new TypeError(`options.reuse must be a boolean, got ${typeof reuse}`);
    }
    if (signal !== undefined && !(signal instanceof AbortSignal)) {
      throw new TypeError('options.signal must be an AbortSignal');
    }
    if (signal && signal.aborted) throw new AbortError(undefined, { cause: signal.reason });

    let data = null;
    let freeFn = null;
    if (typeof userData === 'bigint') {
      if (userData < 0n || userData > U64_MAX) throw new RangeError('userData pointer out of range');
      data = userData === 0n ? null : userData;
    } else if (userData !== null && userData !== undefined) {
      const bytes = toBytes(userData, 'userData');
      data = c_malloc(bytes.length + 1);
      if (data === 0) throw new WeftError(WEFT_ERR_INVALID, 'spawn: out of memory for userData');
      if (bytes.length > 0) c_copyTo(data, bytes, bytes.length);
      c_copyTo(data + bytes.length, NUL, 1);
      // Native: weft may call it on the pool thread, after the work; for a process
      // task, in this process after done (the child has its own copy from the fork).
      freeFn = C_FREE;
    }
    const opts = timeoutMs || inProcess ? {
      size: SPAWN_OPTIONS_SIZE,
      timeout_ms: timeoutMs,
      pool: null,
      max_children: maxChildrenN,
      fork_fn: null,
      fork_data: null,
      reuse_child: inProcess && reuse !== false,
    } : null;
    const id = lib.weft_spawn(this._ptr, where, work, T_DONE, data, freeFn, opts);
    if (id === 0n) {
      const err = lastError();
      if (freeFn !== null) c_free(data); // a failed registration leaves user_data ours
      throw err;
    }
    return new Promise((resolve, reject) => {
      const task = {
        settled: false,
        process: inProcess,
        // `why`: weft_last_error's text, read inside done, for a process task's crash.
        finish: (status, result, why) => {
          if (signal) signal.removeEventListener('abort', onAbort);
          if (task.settled) return;
          task.settled = true;
          if (status === 0) resolve(result);
          else if (status > 0) reject(new TaskError(status, result));
          else reject(new WeftError(status, `spawn: ${why ? why.message : lib.weft_strerror(status)}`));
        },
        fail: (err) => {
          if (signal) signal.removeEventListener('abort', onAbort);
          if (task.settled) return;
          task.settled = true;
          reject(err);
        },
      };
      const onAbort = () => {
        if (task.settled || this._closed) return;
        task.settled = true;
        // done still comes (WEFT_ERR_CANCELLED, once the work returns or the killed
        // child is reaped); until then the task stays registered, and keeps Node alive.
        lib.weft_cancel(this._ptr, id);
        reject(new AbortError(undefined, { cause: signal.reason }));
      };
      if (signal) signal.addEventListener('abort', onAbort, { once: true });
      this._tasks.set(id, task);
      this._addRef();
    });
  }

  // Frees the loop: every registration ends (their callbacks never run again), pending
  // spawns reject with WEFT_ERR_CLOSED (their work still finishes on its thread). Safe
  // to call from a callback, and more than once. Every other method then throws.
  close() {
    if (this._closed) return;
    this._closed = true;
    openLoops.delete(this);
    for (const h of this._liveHandles()) {
      h.active = false;
      releaseToken(h._token);
    }
    this._count = 0;
    this._byId = null;
    const tasks = [...this._tasks.values()];
    this._tasks.clear();
    this._refs = 0;
    this._poll.close();
    if (running === this) this._freePending = true; // weft refuses to free a running loop
    else this._free();
    for (const task of tasks) task.fail(closedError('spawn'));
  }

  // loop.on('error', fn): fn(err) for each exception a callback of this loop throws.
  on(event, fn) {
    this._emitter.on(checkEvent(event), fn);
    return this;
  }

  once(event, fn) {
    this._emitter.once(checkEvent(event), fn);
    return this;
  }

  off(event, fn) {
    this._emitter.off(checkEvent(event), fn);
    return this;
  }

  addListener(event, fn) {
    return this.on(event, fn);
  }

  removeListener(event, fn) {
    return this.off(event, fn);
  }

  listenerCount(event) {
    return this._emitter.listenerCount(checkEvent(event));
  }

  _free() {
    this._freePending = false;
    lib.weft_loop_free(this._ptr);
  }

  _check(what) {
    if (this._closed) throw closedError(what);
  }

  _register(id, token, kind, fn, once) {
    if (id === 0 || id === 0n) {
      releaseToken(token);
      throw lastError();
    }
    const h = new Handle(this, id, token, kind, fn, once);
    slots[token] = h;
    this._count++;
    if (this._byId !== null) this._byId.set(h.id, h);
    this._addRef();
    return h;
  }

  _liveHandles() {
    return slots.filter((h) => h !== null && h.loop === this && h.active);
  }

  // id -> Handle for loop.cancel(id): made on first use, then kept up to date.
  _handlesById() {
    if (this._byId === null) this._byId = new Map(this._liveHandles().map((h) => [h.id, h]));
    return this._byId;
  }

  _addRef() {
    if (this._refs++ === 0 && !this._closed) this._poll.ref();
  }

  _dropRef() {
    if (--this._refs === 0 && !this._closed) this._poll.unref();
  }

  _fail(err) {
    this._errors.push(err);
  }

  // The poll handle's callback: weft_loop_fd is readable.
  _run() {
    if (this._closed) return;
    const outer = running;
    running = this;
    passes++;
    let rc;
    try {
      rc = lib.weft_loop_run(this._ptr, WEFT_RUN_NOWAIT);
    } finally {
      running = outer;
    }
    if (rc !== WEFT_OK && !this._closed) this._fail(lastError(rc));
    if (this._freePending) this._free();
    if (this._errors.length) {
      const errors = this._errors;
      this._errors = [];
      // Outside any native frame: with no 'error' listener, EventEmitter throws, and the
      // error is an uncaughtException like any other.
      for (const err of errors) process.nextTick(emitError, this, err);
    }
  }
}

function emitError(loop, err) {
  loop._emitter.emit('error', err); // throws err when nobody listens
}

function checkEvent(event) {
  if (event !== 'error') {
    throw new TypeError(`a weft.Loop emits only 'error' (got ${String(event)}): `
      + 'subscribe(pattern, fn) receives weft events');
  }
  return event;
}

function checkWork(work) {
  if (typeof work !== 'bigint') {
    throw new TypeError('work must be a pointer to a native weft_work_fn (a BigInt, '
      + "e.g. koffi.load(path).symbol('my_work')), not a JavaScript function");
  }
  const info = {};
  if (work <= 0n || work > U64_MAX || c_dladdr(work, info) === 0 || info.dli_saddr !== work) {
    throw new TypeError(`work ${work === 0n ? 'NULL' : '0x' + work.toString(16)} is not an exported `
      + 'function of a loaded library');
  }
}

// ---------------------------------------------------------------------------------------
// Exit: free the loops, join weft's default pools (weft_shutdown). A worker thread only
// frees its own loops: the pools are the process's.

function onExit() {
  for (const loop of [...openLoops]) {
    try {
      loop.close();
    } catch {
      // exiting anyway
    }
  }
  if (isMainThread) lib.weft_shutdown();
}
process.on('exit', onExit);

function diagnostics() {
  return { foreignCalls, passes, openLoops: openLoops.size, running: running !== null };
}

module.exports = {
  Loop,
  Handle,
  WeftError,
  AbortError,
  TaskError,
  READABLE: ffi.WEFT_READABLE,
  WRITABLE: ffi.WEFT_WRITABLE,
  HANGUP: ffi.WEFT_HANGUP,
  ERROR: ffi.WEFT_ERROR,
  version: lib.weft_version(),
  abiVersion: lib.weft_abi_version(),
  libraryPath: loadedFile(),
  native: lib,
  ffi,
  diagnostics,
};
