// The trampolines and the callback registry: the four C callbacks weft is given, the
// tokens that lead a callback to its Handle, and which Loop is running on this thread.
'use strict';

const ffi = require('./ffi.js');
const { lib } = require('./library.js');
const { copyBytes } = require('./libc.js');
const { lastError } = require('./errors.js');
const { toBigInt } = require('./checks.js');
const { readTiming } = require('./stats.js');

const { koffi, WEFT_RUN_NOWAIT, WEFT_ERR_TIMEOUT, WEFT_ERR_CANCELLED } = ffi;

// One registered C callback per callback type, for the whole process (two for
// subscriptions: an exact topic's, and a pattern's).
//
// Watches and subscriptions pass a token as their user_data: the index of their Handle
// in `slots`, so a callback finds its Handle without hashing the 64-bit id; a Loop's
// timer alarm (timers.js) passes the token of its TimerQueue, and its event drain
// (events.js) that of its EventQueue. The
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

// Gives `token` (from takeToken) to Handle `h`, once its registration succeeded.
function fillToken(token, h) {
  slots[token] = h;
}

function releaseToken(token) {
  slots[token] = null;
  freeTokens.push(token);
}

// The active Handles of `loop` that hold a token (all but timers).
function liveHandles(loop) {
  return slots.filter((h) => h !== null && h.loop === loop && h.active === true);
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

// The alarm of a Loop's timers (timers.js): `token` names its TimerQueue.
function onAlarm(lp, id, token) {
  const q = slots[token];
  if (q === undefined || q === null || q.alarmId != id) return;
  if (q.loop !== running) foreignCalls++; // as handleFor
  if (q.loop._closed) return;
  try {
    q.fire(); // catches its timers' exceptions; only re-arming the alarm could throw
  } catch (err) {
    q.loop._fail(err);
  }
}

// The drain of a Loop's JS events (events.js): a weft post whose user_data is the token
// of its EventQueue, which knows the post's id.
function onDrain(lp, id, token) {
  const q = slots[token];
  if (q === undefined || q === null || q.postId != id) return;
  if (q.loop !== running) foreignCalls++; // as handleFor
  if (q.loop._closed) return;
  try {
    q.fire(); // catches its subscribers' exceptions; only posting the rest could throw
  } catch (err) {
    q.loop._fail(err);
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

// A subscription to an exact topic: every event it gets has that topic, which the
// Handle keeps (h._topic), so weft's copy is not decoded into a new string each time.
function onEventExact(lp, sub, topicPtr, payload, len, token) {
  const h = handleFor(sub, token);
  if (h === null) return;
  try {
    h._fn(h._topic, copyBytes(payload, len), h);
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
  // Its times (options.timing), which weft tells only inside done (stats.js).
  const timing = task.timed ? readTiming(loop._ptr, id) : null;
  try {
    task.finish(status, status >= 0 ? copyBytes(result, len) : null, why, timing);
  } catch (err) {
    loop._fail(err);
  }
}

const P_ALARM = koffi.proto('void weft_js_alarm_cb(uintptr_t lp, weft_id id, uintptr_t token)');
const P_FD = koffi.proto('void weft_js_fd_cb(uintptr_t lp, weft_id id, int fd, uint32_t events, uintptr_t token)');
const P_EVENT = koffi.proto('void weft_js_event_cb(uintptr_t lp, weft_id sub, const char *topic, uintptr_t payload, size_t len, uintptr_t token)');
const P_EVENT_EXACT = koffi.proto('void weft_js_event_exact_cb(uintptr_t lp, weft_id sub, uintptr_t topic, uintptr_t payload, size_t len, uintptr_t token)');
const P_DONE = koffi.proto('void weft_js_done_fn(uintptr_t lp, weft_id task, int status, uintptr_t result, size_t len, uintptr_t user_data)');
const T_ALARM = koffi.register(onAlarm, koffi.pointer(P_ALARM));
const T_DRAIN = koffi.register(onDrain, koffi.pointer(P_ALARM));
const T_FD = koffi.register(onFd, koffi.pointer(P_FD));
const T_EVENT = koffi.register(onEvent, koffi.pointer(P_EVENT));
const T_EVENT_EXACT = koffi.register(onEventExact, koffi.pointer(P_EVENT_EXACT));
const T_DONE = koffi.register(onDone, koffi.pointer(P_DONE));

// One pass of `loop`: weft_loop_run(NOWAIT), with `loop` as the running one meanwhile
// (the trampolines run inside this call). Returns weft_loop_run's result.
function runPass(loop) {
  const outer = running;
  running = loop;
  passes++;
  try {
    return lib.weft_loop_run(loop._ptr, WEFT_RUN_NOWAIT);
  } finally {
    running = outer;
  }
}

// Whether `loop`'s weft_loop_run is on the stack.
function isRunning(loop) {
  return running === loop;
}

// The counts weft.diagnostics() reports.
function trampolineStats() {
  return { foreignCalls, passes, running: running !== null, tokens: slots.length - 1 - freeTokens.length };
}

module.exports = {
  T_ALARM, T_DRAIN, T_FD, T_EVENT, T_EVENT_EXACT, T_DONE,
  takeToken, fillToken, releaseToken, liveHandles,
  runPass, isRunning, trampolineStats,
};
