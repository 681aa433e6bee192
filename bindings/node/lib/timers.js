// A Loop's timers (after and every), kept by the binding: lists of Handles in deadline
// order and one weft timer armed for the earliest deadline, which runs every due timer
// in its one callback.
//
// Why not a weft timer per Handle: a weft timer costs a koffi call to make and a koffi
// callback to fire (with a BigInt id and a HeapNumber per call), about as much as all
// the rest of after(); Node's own timers are JS lists for the same reason.
//
// Protocol:
// - A timer's deadline is performance.now() (the monotonic clock, as weft's) at the call
//   plus its delay (checkMs rounds fractions of a ms up), kept to ~1 ns (FRAC, below):
//   never early. The alarm's delay is in whole ms, weft's unit.
// - One-shot timers of one delay sit in that delay's List, appended in call order, so
//   each List is in deadline order. An interval is a List of its own (its next deadline
//   is not in call order). The heap holds the non-empty Lists, keyed by their head's
//   (deadline, seq); seq numbers timers in call order and breaks ties.
// - The weft timer ("the alarm") is armed for the heap top's deadline, rounded up to
//   whole ms from now, so weft runs it no earlier. A timer added with an earlier deadline
//   re-arms it (cancel + a new one); a cancel leaves it: an early alarm finds nothing
//   due and arms itself again. With no timer left it is cancelled.
// - The alarm's callback, inside weft's pass, runs the timers due at its start
//   (deadline <= now) in (deadline, seq) order, but none added during it (seq at its
//   start is the cutoff): after(0) from a timer runs in the next pass, as with weft's.
//   A one-shot is over (inactive) before its callback runs; an interval moves to its
//   next deadline first (fixed rate: start + n * interval; calls it fell behind on are
//   skipped, the next is the first multiple still ahead), so it may cancel itself.
//   Closing the loop from a callback stops the run.
// - Ids: a timer's id is the binding's, not weft's: a counter below 2^52, shared by all
//   loops. weft promises every id it returns is at least WEFT_ID_MIN (2^52: a loop tag
//   from 1 up fills bits 52-63), so the two never meet; loop.cancel(id) looks for a
//   timer first.
'use strict';

const { performance } = require('node:perf_hooks');

const ffi = require('./ffi.js');
const { lib } = require('./library.js');
const { WeftError, lastError } = require('./errors.js');
const { T_ALARM, takeToken, fillToken, releaseToken } = require('./trampolines.js');

const { WEFT_ERR_INVALID } = ffi;

// A deadline is two whole numbers, which V8 keeps unboxed (Smis; a double field would
// be a heap box per timer, ~100 ns more per after()): whole ms of performance.now(), and
// the fraction of a ms in units of 2^-20 ms (~1 ns), rounded up. Whole ms stay Smis for
// 12 days after the process started (later ones are boxed: as correct, a little slower).
const FRAC = 2 ** 20;
// The alarm's delay in whole ms allows for that rounding, so a timer of `ms` arms it
// for `ms`, not `ms + 1`: an alarm that comes within that ~1 ns before the deadline
// (practically never) only arms itself again.
const ROUNDING_MS = 1e-6;

// weft's own bound on a delay (2^35 - 1 ms), kept for the binding's timers.
const MAX_DELAY_MS = 2 ** 35 - 1;

let nextId = 1;

// A new timer id (a Number; Handle.id makes it a BigInt), always below weft's ids.
function nextTimerId() {
  if (nextId >= ffi.WEFT_ID_MIN) throw new RangeError('weft: 2^52 timers made in this process');
  return nextId++;
}

const raw = {
  after: lib.handle.func(ffi.PROTOTYPES.weft_timer_after),
  cancel: lib.handle.func(ffi.PROTOTYPES.weft_cancel),
};

// The one-shot timers of one delay, or one interval: Handles linked by _prev/_next.
class List {
  constructor(ms) {
    this.ms = ms; // the delay; -1 for an interval's own list
    this.head = null;
    this.tail = null;
    this.index = -1; // in the heap; -1 when empty
  }
}

// Whether List a's head is due before List b's.
function before(a, b) {
  const x = a.head;
  const y = b.head;
  if (x._deadline !== y._deadline) return x._deadline < y._deadline;
  if (x._frac !== y._frac) return x._frac < y._frac;
  return x._seq < y._seq;
}

class TimerQueue {
  constructor(loop) {
    this.loop = loop;
    this.lists = new Map(); // delay in ms -> List of one-shots
    this.heap = [];
    this.seq = 0;
    this.alarmId = 0;       // the armed weft timer's id (0: none)
    this.alarmAt = Infinity; // the deadline it was armed for
    this.token = 0;         // the alarm's user_data (trampolines.js)
  }

  // Checks a delay or interval (a Number of whole ms, or a BigInt) against weft's bound;
  // returns it as a Number.
  static checkDelay(ms, what, name) {
    if (ms > MAX_DELAY_MS) {
      throw new WeftError(WEFT_ERR_INVALID, `${what}: ${name} ${ms} ms is above 2^35 - 1 ms`);
    }
    return Number(ms);
  }

  // Schedules TimerHandle `h` `ms` (whole) from now: a one-shot, or an interval of `ms`
  // when h._interval is set.
  add(h, ms) {
    const now = performance.now();
    const whole = Math.floor(now);
    let frac = Math.ceil((now - whole) * FRAC);
    let deadline = whole + ms;
    if (frac >= FRAC) {
      frac = 0;
      deadline++;
    }
    h._deadline = deadline;
    h._frac = frac;
    h._seq = this.seq++;
    if (h._interval > 0) {
      h._start = deadline - ms;
      const list = new List(-1);
      list.head = h;
      list.tail = h;
      h._list = list;
      this._push(list);
    } else {
      let list = this.lists.get(ms);
      if (list === undefined) {
        list = new List(ms);
        this.lists.set(ms, list);
      }
      h._list = list;
      if (list.head === null) {
        list.head = h;
        list.tail = h;
        this._push(list);
      } else {
        h._prev = list.tail;
        list.tail._next = h;
        list.tail = h;
      }
    }
    if (deadline + frac / FRAC < this.alarmAt) {
      try {
        this._arm(now);
      } catch (err) {
        this.remove(h); // weft refused the alarm: the timer was never scheduled
        throw err;
      }
    }
  }

  // Takes Handle `h` out of its list (a cancel, or a one-shot about to run).
  remove(h) {
    const list = h._list;
    if (list === null) return;
    h._list = null;
    if (h._prev !== null) h._prev._next = h._next;
    else list.head = h._next;
    if (h._next !== null) h._next._prev = h._prev;
    else list.tail = h._prev;
    const wasHead = h._prev === null;
    h._prev = null;
    h._next = null;
    if (list.head === null) {
      this._emptied(list);
      if (this.heap.length === 0) this._disarm();
    } else if (wasHead) {
      this._down(list.index);
    }
  }

  // The live timers, for close() and loop.cancel(id).
  handles() {
    const out = [];
    for (const list of this.heap) {
      for (let h = list.head; h !== null; h = h._next) out.push(h);
    }
    return out;
  }

  // Forgets everything (the loop is being freed, and the alarm with it).
  clear() {
    for (const list of this.heap) {
      for (let h = list.head; h !== null;) {
        const next = h._next;
        h._list = null;
        h._prev = null;
        h._next = null;
        h = next;
      }
      list.head = null;
      list.tail = null;
      list.index = -1;
    }
    this.heap = [];
    this.lists.clear();
    this.alarmId = 0;
    this.alarmAt = Infinity;
    if (this.token !== 0) releaseToken(this.token);
    this.token = 0;
  }

  // The alarm's callback (inside weft's pass): runs the timers due now.
  fire() {
    const firing = this.alarmId;
    this.alarmId = 0;
    this.alarmAt = Infinity;
    const loop = this.loop;
    const now = performance.now();
    const nowMs = Math.floor(now);
    const nowFrac = Math.floor((now - nowMs) * FRAC); // rounded down: never early
    const cutoff = this.seq;
    const heap = this.heap;
    while (heap.length > 0) {
      const h = heap[0].head;
      if (h._deadline > nowMs || (h._deadline === nowMs && h._frac > nowFrac) || h._seq >= cutoff) break;
      if (h._interval > 0) {
        const iv = h._interval;
        h._deadline = h._start + (Math.floor((now - h._start - h._frac / FRAC) / iv) + 1) * iv;
        h._seq = this.seq++;
        this._down(0);
      } else {
        // remove(h), for the head of the heap's top list
        const list = heap[0];
        const next = h._next;
        list.head = next;
        h._list = null;
        if (next === null) {
          list.tail = null;
          this._emptied(list);
        } else {
          next._prev = null;
          h._next = null;
          this._down(0);
        }
        h._end();
      }
      const wd = loop._watchdog;
      const t0 = wd === null ? 0 : performance.now();
      try {
        h._fn(h);
      } catch (err) {
        loop._fail(err);
      }
      if (wd !== null) wd.note(firing, h, performance.now() - t0);
      if (loop._closed) return;
    }
    if (heap.length > 0 && this.alarmId === 0) this._arm(performance.now());
  }

  // Arms the alarm for the heap top's deadline (cancelling one armed for later); `now`
  // is performance.now().
  _arm(now) {
    const loop = this.loop;
    const top = this.heap[0].head;
    const deadline = top._deadline + top._frac / FRAC;
    // WEFT_ERR_NOT_FOUND would mean weft took the alarm into this pass already: its
    // callback then finds the timers it can run, which is harmless.
    if (this.alarmId !== 0) raw.cancel(loop._ptr, this.alarmId);
    if (this.token === 0) {
      this.token = takeToken();
      fillToken(this.token, this);
    }
    const delay = Math.max(0, Math.ceil(deadline - now - ROUNDING_MS));
    const id = raw.after(loop._ptr, delay, T_ALARM, this.token, null);
    if (id === 0 || id === 0n) {
      this.alarmId = 0;
      this.alarmAt = Infinity;
      throw lastError();
    }
    this.alarmId = id;
    this.alarmAt = deadline;
  }

  _disarm() {
    if (this.alarmId === 0) return;
    raw.cancel(this.loop._ptr, this.alarmId);
    this.alarmId = 0;
    this.alarmAt = Infinity;
  }

  // `list` has no timer left: out of the heap; a one-shot list stays in `lists` for the
  // next timer of its delay, unless many delays are in use (then it goes, so that a
  // program whose delays are all different keeps no empty list per delay).
  _emptied(list) {
    this._removeAt(list.index);
    if (list.ms >= 0 && this.lists.size > 64) this.lists.delete(list.ms);
  }

  _push(list) {
    list.index = this.heap.length;
    this.heap.push(list);
    this._up(list.index);
  }

  _removeAt(i) {
    const heap = this.heap;
    const list = heap[i];
    list.index = -1;
    const last = heap.pop();
    if (i < heap.length) {
      heap[i] = last;
      last.index = i;
      this._down(i);
      this._up(last.index);
    }
  }

  _up(i) {
    const heap = this.heap;
    const item = heap[i];
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(item, heap[parent])) break;
      heap[i] = heap[parent];
      heap[i].index = i;
      i = parent;
    }
    heap[i] = item;
    item.index = i;
  }

  _down(i) {
    const heap = this.heap;
    const n = heap.length;
    const item = heap[i];
    for (;;) {
      let child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && before(heap[child + 1], heap[child])) child++;
      if (!before(heap[child], item)) break;
      heap[i] = heap[child];
      heap[i].index = i;
      i = child;
    }
    heap[i] = item;
    item.index = i;
  }
}

module.exports = { TimerQueue, nextTimerId };
