// Handle: one registration of a Loop (a timer, an interval, an fd watch or a
// subscription), which ends it (cancel) and says whether it keeps Node alive (ref/unref).
'use strict';

const ffi = require('./ffi.js');
const { lib } = require('./library.js');
const { lastError } = require('./errors.js');
const { toBigInt } = require('./checks.js');
const { releaseToken } = require('./trampolines.js');

const { WEFT_OK, WEFT_ERR_NOT_FOUND } = ffi;

const KIND_TIMER = 'timer';
const KIND_INTERVAL = 'interval';
const KIND_WATCH = 'watch';
const KIND_SUBSCRIPTION = 'subscription';

// A registration: a timer, an interval, an fd watch or a subscription. `id` is its id (a
// BigInt): weft's, or for a timer the binding's (timers.js); `cancel()` ends it;
// `unref()` lets Node exit while it is alive. The base of WeftHandle (watches and
// subscriptions: weft registrations) and TimerHandle (the binding's timers), with the
// fields both have.
class Handle {
  constructor(loop, rawId, fn) {
    this.loop = loop;
    this.active = true;
    this._rawId = rawId; // as koffi gave it: a Number below 2^53, else a BigInt
    this._fn = fn;
    this._ref = true;
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
    if (this._token !== 0) releaseToken(this._token);
    const loop = this.loop;
    loop._count--;
    if (loop._byId !== null) loop._byId.delete(this.id);
    if (this._ref) loop._dropRef();
  }
}

// A watch or a subscription: a weft registration, whose callback finds it by `token`
// (trampolines.js).
class WeftHandle extends Handle {
  constructor(loop, rawId, token, kind, fn) {
    super(loop, rawId, fn);
    this.kind = kind;
    this._id = null;
    this._token = token;
  }

  // weft's id of the registration, a BigInt.
  get id() {
    if (this._id === null) this._id = toBigInt(this._rawId);
    return this._id;
  }

  _end() {
    if (this.active && this._pattern !== null) this.loop._events.remove(this);
    super._end();
  }

  // Ends the registration: returns true, or false when it had ended already (a
  // cancelled handle, a closed loop). Its callback does not start again once this
  // returns, even when called from inside that callback.
  cancel() {
    if (!this.active) return false;
    const rc = lib.weft_cancel(this.loop._ptr, this._rawId);
    if (rc === WEFT_OK || rc === WEFT_ERR_NOT_FOUND) {
      this._end();
      return rc === WEFT_OK;
    }
    throw lastError(rc);
  }
}

// An exact subscription's topic (trampolines.js), set on its own Handle; null on the
// prototype, so that other Handles do not carry the field.
WeftHandle.prototype._topic = null;
// A subscription's pattern as weft reads it, while the loop's JS event index
// (events.js) holds it; null on the prototype too.
WeftHandle.prototype._pattern = null;

// A timer or an interval: kept by the binding (timers.js), not by weft, so it has no
// token (0, on the prototype) and its id is the binding's. Its fields are few: a
// program may hold a hundred thousand of them, and V8 copies the young ones at each
// scavenge.
class TimerHandle extends Handle {
  constructor(loop, rawId, interval, fn) {
    super(loop, rawId, fn);
    // The deadline: whole ms of performance.now() and the fraction in 2^-20 ms (Smis,
    // not a boxed double: timers.js); an interval's start (whole ms, the same fraction);
    // the call order; the list links; the interval in ms (0: a one-shot).
    this._deadline = 0;
    this._frac = 0;
    this._start = 0;
    this._seq = 0;
    this._list = null;
    this._prev = null;
    this._next = null;
    this._interval = interval;
  }

  get kind() {
    return this._interval > 0 ? KIND_INTERVAL : KIND_TIMER;
  }

  // The binding's id of the timer, a BigInt.
  get id() {
    return BigInt(this._rawId);
  }

  // Ends the timer: true, or false when it had ended already (a one-shot that fired, a
  // second cancel, a closed loop). Its callback does not start again once this
  // returns, even when called from inside that callback.
  cancel() {
    if (!this.active) return false;
    this.loop._timers.remove(this);
    this._end();
    return true;
  }
}

TimerHandle.prototype._token = 0;
// A Handle's label (loop.setLabel, monitor.js): null on the prototype, set on the few
// handles that have one.
Handle.prototype._label = null;

module.exports = { Handle, WeftHandle, TimerHandle, KIND_WATCH, KIND_SUBSCRIPTION };
