// loop.setWatchdog(ms, handler) and new Loop({ debug: true }): weft's slow-callback
// watchdog (weft_loop_set_watchdog) for a Loop driven by Node.
//
// What Node can and cannot have: weft's watchdog runs on a thread of its own and sees a
// callback that blocks the loop while it still runs. But Node has one JS thread, and it
// is the one blocked: no JS can run on it until the callback returns, and a JS stack
// cannot be sampled from another thread (V8 offers no such API to addons, let alone to
// koffi). So the binding asks weft for the reports as events on the loop's topic
// "weft.watchdog" (no callback: weft_loop_set_watchdog with cb NULL), which its own
// subscription gets on the JS thread once the slow callback has returned; the report
// handed to `handler` is the returned one, with the callback's total time. Its name:
// - a watch's or subscription's: its function's name;
// - the binding's own registrations, which run many JS callbacks each (the timer alarm
//   of timers.js, the event drain of events.js): while a watchdog is set, they time
//   each JS callback (two performance.now() calls) and the report names the slowest
//   one of that weft callback;
// - a Handle labelled with loop.setLabel: its label.
//
// loop.setLabel(target, label) names a watch or a subscription for weft
// (weft_set_label: what C-side readers of labels see) and for these reports; a JS
// timer's label is the binding's alone (its timers share one weft timer); a task is
// named by spawn's options.label.
'use strict';

const ffi = require('./ffi.js');
const { lib } = require('./library.js');
const { WeftError, lastError } = require('./errors.js');
const { Handle } = require('./handle.js');
const { checkLabel } = require('./spawn.js');

const { WEFT_OK, WEFT_ERR_NOT_FOUND } = ffi;

const TOPIC = 'weft.watchdog';

// The default of Loop({ debug: true }): asyncio's slow_callback_duration.
const DEBUG_MS = 100;

// weft_watchdog_report's layout (weft.h): size, seq, id, kind, returned, elapsed_ns,
// label, thread_id.
const OFF = { size: 0, seq: 8, id: 16, kind: 24, returned: 28, elapsed: 32 };
const KINDS = { 1: 'timer', 2: 'post', 3: 'fd', 4: 'signal', 5: 'event', 6: 'done' };

// A Loop's watchdog state: the threshold, the handler, and the slow JS callbacks its
// multiplexing registrations ran (weft id -> the slowest one's name).
class Watchdog {
  constructor(loop, ms, handler) {
    this.loop = loop;
    this.ms = ms;
    this.handler = handler;
    this.slowest = new Map();
    this.sub = null;
  }

  // The JS callback of Handle `h`, run by the binding's registration `id`, ran `ms`
  // milliseconds.
  note(id, h, ms) {
    if (ms < this.ms) return;
    const key = String(id);
    const prev = this.slowest.get(key);
    if (prev === undefined || prev.ms < ms) this.slowest.set(key, { name: nameOf(h), ms });
  }

  // A report arrived (on the JS thread, in a later pass).
  report(payload) {
    if (payload.length < OFF.elapsed + 8) return;
    if (payload.readInt32LE(OFF.returned) === 0) return; // the returned one follows
    const id = payload.readBigUInt64LE(OFF.id);
    const kind = KINDS[payload.readInt32LE(OFF.kind)] || 'unknown';
    const durationMs = Number(payload.readBigUInt64LE(OFF.elapsed)) / 1e6;
    const seq = Number(payload.readBigUInt64LE(OFF.seq));
    let name = null;
    const slow = this.slowest.get(String(id));
    if (slow !== undefined) {
      name = slow.name;
      this.slowest.delete(String(id));
    } else {
      const h = this.loop._handlesById().get(id);
      if (h !== undefined && typeof h._fn === 'function') name = nameOf(h);
    }
    if (this.slowest.size > 256) this.slowest.clear();
    const report = { id, kind, name, durationMs, seq };
    try {
      this.handler(report);
    } catch (err) {
      this.loop._fail(err);
    }
  }
}

// A Handle's name in reports: its label (loop.setLabel), else its function's name.
function nameOf(h) {
  return h._label ?? (h._fn.name || '(anonymous)');
}

function logReport(r) {
  const what = r.name ? `${r.name} (a ${r.kind} callback)` : `a ${r.kind} callback`;
  console.warn(`weft: ${what} blocked the loop for ${r.durationMs.toFixed(1)} ms`);
}

// loop.setWatchdog(ms, handler): see Loop.setWatchdog in loop.js.
function setWatchdog(loop, ms, handler) {
  loop._check('setWatchdog');
  if (ms === null || ms === undefined || ms === 0) {
    const rc = lib.weft_loop_set_watchdog(loop._ptr, 0, null, null, null);
    if (rc !== WEFT_OK) throw lastError(rc);
    const wd = loop._watchdog;
    loop._watchdog = null;
    if (wd !== null && wd.sub !== null && wd.sub.active) wd.sub.cancel();
    return;
  }
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms <= 0) {
    throw new TypeError(`setWatchdog: ms must be a positive number of milliseconds, not ${String(ms)}`);
  }
  if (handler === undefined || handler === null) handler = logReport;
  if (typeof handler !== 'function') {
    throw new TypeError(`setWatchdog: handler must be a function, not ${typeof handler}`);
  }
  const threshold = Math.max(1, Math.round(ms));
  const rc = lib.weft_loop_set_watchdog(loop._ptr, threshold, null, null, null);
  if (rc !== WEFT_OK) throw lastError(rc);
  const old = loop._watchdog;
  const wd = new Watchdog(loop, threshold, handler);
  if (old !== null && old.sub !== null && old.sub.active) {
    wd.sub = old.sub;
  } else {
    wd.sub = loop.subscribe(TOPIC, (topic, payload) => loop._watchdog?.report(payload));
    wd.sub.unref(); // a watchdog does not keep Node alive
  }
  loop._watchdog = wd;
}

// loop.setLabel(target, label): see Loop.setLabel in loop.js.
function setLabel(loop, target, label) {
  loop._check('setLabel');
  if (label !== null) checkLabel(label, 'setLabel: label');
  let id;
  if (target instanceof Handle) {
    if (target.loop !== loop) throw new TypeError("setLabel: the handle is another loop's");
    if (!target.active) throw new WeftError(WEFT_ERR_NOT_FOUND, 'setLabel: the handle has ended');
    if (target._token === 0) { // a JS timer (timers.js): no weft registration of its own
      target._label = label;
      return;
    }
    id = target._rawId;
  } else if (typeof target === 'bigint') {
    id = target;
  } else {
    throw new TypeError('setLabel: target must be a Handle or a BigInt id (a task: spawn\'s options.label)');
  }
  const rc = lib.weft_set_label(loop._ptr, id, label);
  if (rc !== WEFT_OK) throw lastError(rc);
  if (target instanceof Handle) target._label = label;
}

module.exports = { setWatchdog, setLabel, DEBUG_MS, TOPIC };
