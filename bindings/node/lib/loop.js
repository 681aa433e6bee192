// The Loop class: a weft event loop driven by Node's (a libuv poll handle on
// weft_loop_fd), its registrations, its tasks, its 'error' listeners and close().
'use strict';

const EventEmitter = require('node:events');

const ffi = require('./ffi.js');
const { lib } = require('./library.js');
const { WeftError, lastError, closedError } = require('./errors.js');
const { checkFunction, checkMs, checkString, checkId } = require('./checks.js');
const {
  T_FD, T_EVENT, T_EVENT_EXACT,
  takeToken, fillToken, releaseToken, liveHandles, runPass, isRunning,
} = require('./trampolines.js');
const { WeftHandle, TimerHandle, KIND_WATCH, KIND_SUBSCRIPTION } = require('./handle.js');
const { spawnTask } = require('./spawn.js');
const { EventQueue } = require('./events.js');
const { TimerQueue, nextTimerId } = require('./timers.js');
const { setWatchdog, setLabel, DEBUG_MS } = require('./monitor.js');
const { loopStats } = require('./stats.js');

const { koffi, WEFT_OK, WEFT_ERR_INVALID } = ffi;

// The registering calls, declared again without load()'s BigInt conversion of the id
// (a Handle converts its id when asked): the hot path of watch() and subscribe().
const raw = {};
for (const name of ['weft_watch_fd', 'weft_subscribe']) {
  raw[name] = lib.handle.func(ffi.PROTOTYPES[name]);
}

// The loops not closed yet, which index.js closes at exit.
const openLoops = new Set();

// Posts, events and task completions one turn of Node's loop runs at most.
const PASS_LIMIT = 4096;

// A weft event loop driven by Node's. An exception thrown by one of its callbacks goes to
// its 'error' listeners (loop.on('error', fn)); without one it is an uncaught exception,
// as with any EventEmitter. `emit` is weft's (an event for subscribers), so the loop is
// not an EventEmitter itself: on/once/off take only 'error'.
class Loop {
  // options.debug: turns the watchdog on (setWatchdog) with a 100 ms threshold, logging
  // each slow callback with console.warn, as asyncio's debug mode does.
  constructor(options = {}) {
    if (options === null || typeof options !== 'object') {
      throw new TypeError(`Loop: options must be an object, not ${options === null ? 'null' : typeof options}`);
    }
    const ptr = lib.weft_loop_new();
    if (ptr === null) throw lastError();
    this._ptr = ptr;
    this._ptrNum = Number(ptr); // as the trampolines get it
    this._closed = false;
    this._freePending = false;
    this._count = 0;         // live Handles
    this._byId = null;       // id -> Handle, made by the first loop.cancel(id)
    this._tasks = new Map(); // id -> task record
    this._timers = new TimerQueue(this);
    this._events = new EventQueue(this); // JS emits while no native code sees the loop
    this._refs = 0;
    this._errors = [];
    this._emitter = new EventEmitter();
    this._watchdog = null;   // monitor.js, while set
    this._statsSince = null; // stats.js: when stats() was first read (ns)
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
    if (options.debug) this.setWatchdog(DEBUG_MS);
  }

  // Reports each callback of this loop that held Node's thread longer than `ms`:
  // handler({ id, kind, name, durationMs, seq }) on the JS thread once it has returned
  // (Node's one thread is the blocked one: no report can run, and no JS stack can be
  // sampled, while it is blocked; see monitor.js). `name` is the callback's function
  // name. No handler: console.warn. `ms` null or 0 turns it off. The watchdog does not
  // keep Node alive.
  setWatchdog(ms, handler) {
    setWatchdog(this, ms, handler);
  }

  // weft's counters of this loop now (weft_loop_get_stats; stats.js), as Numbers:
  // passes, callbacks run by kind, busy and idle time, timer lateness (p50, p99, max,
  // in ns, over weft's last 1024 timer calls), queued records, tasks and children in
  // flight, registrations by kind, `timeNs` (when read, process.hrtime's clock) and
  // `utilization`: busy time over the wall time since the first read (null at the
  // first read, which starts weft's clock; idleNs stays 0: Node waits in libuv, not in
  // weft). It does not stop the loop.
  // The binding's JS timers are one weft timer and its JS events weft posts: weft
  // counts those, not each JS callback.
  stats() {
    return loopStats(this);
  }

  // Names a watch, a subscription or a JS timer (or a weft id) for the watchdog's
  // reports and weft's own readers of labels (weft_set_label); null removes the label
  // (monitor.js). A task: spawn's options.label.
  setLabel(target, label) {
    setLabel(this, target, label);
  }

  // The weft_loop pointer, for native libraries built on weft (a BigInt). Once it has
  // been read, events emitted in JS go through weft_emit (events.js).
  get pointer() {
    this._check('pointer');
    this._events.toNative();
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
    // The common case, whole ms in range and a function, checked inline: the first calls
    // of a fresh process run in V8's interpreter, where each call is costly.
    if (typeof ms !== 'number' || ms !== (ms >>> 0) || typeof fn !== 'function' || this._closed) {
      this._check('after');
      ms = TimerQueue.checkDelay(checkMs(ms, 'ms'), 'weft_timer_after', 'delay');
      checkFunction(fn, 'fn');
    }
    const h = new TimerHandle(this, nextTimerId(), 0, fn);
    this._timers.add(h, ms);
    this._count++;
    if (this._byId !== null) this._byId.set(h.id, h);
    if (this._refs++ === 0) this._poll.ref();
    return h;
  }

  // Calls fn(handle) every `ms` milliseconds, at a fixed rate, until cancelled.
  every(ms, fn) {
    this._check('every');
    const interval = checkMs(ms, 'ms');
    checkFunction(fn, 'fn');
    const n = TimerQueue.checkDelay(interval, 'weft_timer_every', 'interval');
    if (n === 0) throw new WeftError(WEFT_ERR_INVALID, 'weft_timer_every: interval 0 ms (it must be at least 1)');
    return this._addTimer(n, fn);
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
    return this._register(id, token, KIND_WATCH, fn);
  }

  // Calls fn(topic, payload: Buffer, handle) for each event whose topic matches `pattern`:
  // an exact topic, a prefix ending in ".*", or "*". Events emitted by one thread (JS or
  // native) arrive in the order they were emitted.
  subscribe(pattern, fn) {
    this._check('subscribe');
    checkString(pattern, 'pattern');
    checkFunction(fn, 'fn');
    // An exact topic (no '*': weft refuses a '*' anywhere but a pattern's end) is the
    // topic of every event the subscription gets: its callback is given this string,
    // as weft's bytes decode (lone surrogates as U+FFFD), not a new one per event.
    const exact = !pattern.includes('*');
    const token = takeToken();
    const id = raw.weft_subscribe(this._ptr, pattern, exact ? T_EVENT_EXACT : T_EVENT, token, null);
    const h = this._register(id, token, KIND_SUBSCRIPTION, fn);
    if (exact) h._topic = Buffer.from(pattern, 'utf8').toString('utf8');
    this._events.add(h, pattern);
    return h;
  }

  // Emits an event to this loop's subscribers (delivered in a later pass, never inside
  // this call). `payload`: a Buffer, a Uint8Array, a string (UTF-8) or nothing. While
  // native code cannot see the loop, the binding delivers it itself (events.js).
  emit(topic, payload) {
    this._check('emit');
    this._events.emit(topic, payload);
    return true;
  }

  // Ends the registration `id` (a BigInt, e.g. handle.id). Throws a WeftError
  // (WEFT_ERR_NOT_FOUND) for an id that is not a live registration of this loop:
  // forged, stale, finished, or another loop's.
  cancel(id) {
    this._check('cancel');
    checkId(id);
    const h = this._handlesById().get(id);
    if (h !== undefined && h._token === 0) { // a timer: the binding's (timers.js)
      h.cancel();
      return;
    }
    const rc = lib.weft_cancel(this._ptr, id);
    if (rc !== WEFT_OK) throw lastError(rc);
    if (h !== undefined) h._end();
    // A task's cancel is reported by its done (WEFT_ERR_CANCELLED).
  }

  // Runs the native `work(task, userData)` (a BigInt pointer to an exported C function)
  // on a weft pool thread or in a forked child, and resolves with the bytes it wrote once
  // it returns 0. userData and options (on, timeout, signal, maxChildren, reuse): see
  // spawn.js.
  spawn(work, userData = null, options = {}) {
    try {
      return this._spawn(work, userData, options);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  // spawn, throwing where spawn rejects (spawn.js).
  _spawn(work, userData, options) {
    return spawnTask(this, work, userData, options);
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
      if (h._token !== 0) releaseToken(h._token);
    }
    this._timers.clear();
    this._events.clear();
    this._count = 0;
    this._byId = null;
    const tasks = [...this._tasks.values()];
    this._tasks.clear();
    this._refs = 0;
    this._poll.close();
    if (isRunning(this)) this._freePending = true; // weft refuses to free a running loop
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

  _register(id, token, kind, fn) {
    if (id === 0 || id === 0n) {
      releaseToken(token);
      throw lastError();
    }
    const h = new WeftHandle(this, id, token, kind, fn);
    fillToken(token, h);
    this._count++;
    if (this._byId !== null) this._byId.set(h.id, h);
    this._addRef();
    return h;
  }

  _liveHandles() {
    return liveHandles(this).concat(this._timers.handles());
  }

  // A timer of this loop's TimerQueue (timers.js): no weft registration, no token.
  _addTimer(interval, fn) {
    const h = new TimerHandle(this, nextTimerId(), interval, fn);
    this._timers.add(h, interval);
    this._count++;
    if (this._byId !== null) this._byId.set(h.id, h);
    this._addRef();
    return h;
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
    const rc = runPass(this);
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

module.exports = { Loop, openLoops };
