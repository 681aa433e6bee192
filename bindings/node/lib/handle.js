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
    this._topic = null; // an exact subscription's topic (trampolines.js)
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

module.exports = { Handle, KIND_TIMER, KIND_INTERVAL, KIND_WATCH, KIND_SUBSCRIPTION };
