// A Loop's events emitted in JS while no native code can see the loop: kept by the
// binding, as its timers are (timers.js), and delivered in weft's pass by one weft post
// per batch, not a koffi call and a koffi callback per event.
//
// Why: an event through weft costs three crossings between JS and C (weft_emit, the
// subscriber's trampoline, the memcpy of its payload), about two thirds of the cost of
// an event emitted and received in JS. While the loop's pointer has never left the
// binding (`loop.pointer` not read), every subscriber of the loop is a JS one made by
// loop.subscribe (native code needs the pointer to subscribe), and every weft_emit the
// JS thread could make on this loop is loop.emit's: the binding knows all there is to
// know about such an event, and delivers it as weft would.
//
// Protocol (all on the JS thread):
// - The index: every live subscription of the loop in weft's order (bus.rs: the exact
//   topic's subscribers in subscription order, then the prefixes', then "*"'s), under
//   its pattern as weft reads it (UTF-8, so a lone surrogate is U+FFFD). An event's
//   delivery walks the lists as they were when it began (List, below): a subscription
//   made by a callback gets the next events, not the current one (weft looks up an
//   event's subscribers once, when it delivers it).
// - emit, while the loop is "JS-only": checks the topic as weft would (a topic weft
//   refuses goes to weft_emit, which throws its error and queues nothing), copies the
//   payload (a string is kept as it is: strings are immutable) and appends the event
//   to the queue. The first event of a batch makes one weft_post of the drain.
// - The drain (the post's callback, inside weft's pass; `running` says so, as for any
//   callback): runs at most PASS_LIMIT events queued when it began, each to the
//   subscribers the index has then (an inactive Handle, cancelled by an earlier
//   callback, is skipped); events emitted meanwhile, and the rest beyond the limit,
//   wait for the next pass: one more post. Each subscriber gets a Buffer of its own.
//   Closing the loop from a callback stops the run.
// - Going native: reading `loop.pointer` ends this for good. The queued events go to
//   weft_emit first, in their order, so the JS thread's events stay in emit order; a
//   drain still posted then finds the queue empty.
// What is not the same as weft's path: nothing a program can see but timing and
// weft.diagnostics().passes (one pass delivers up to PASS_LIMIT JS events as one
// record).
'use strict';

const { performance } = require('node:perf_hooks');

const ffi = require('./ffi.js');
const { lib } = require('./library.js');
const { lastError } = require('./errors.js');
const { checkString, toBytes } = require('./checks.js');
const { T_DRAIN, takeToken, fillToken, releaseToken } = require('./trampolines.js');
const { emitEvent } = require('./emit.js');

const rawPost = lib.handle.func(ffi.PROTOTYPES.weft_post);

// Events one drain delivers at most (the loop's pass limit: loop.js).
const PASS_LIMIT = 4096;

// A string as weft reads it once it is UTF-8: lone surrogates as U+FFFD.
const wellFormed = typeof ''.toWellFormed === 'function'
  ? (s) => s.toWellFormed()
  : (s) => Buffer.from(s, 'utf8').toString('utf8');

// The last topic emitted, and weft's reading of it (null: weft refuses it).
let lastTopic = null;
let lastWeftTopic = null;

// One pattern's subscriptions in subscription order (entries: a Handle, or for prefixes
// [prefix, Handle]). A delivery walks the first `length` entries of `items` as they
// were when the event's delivery began: a new subscription is pushed after them, and a
// cancelled one stays in place as a hole (its Handle inactive, its `_pattern` null)
// until holes are half the list, which is then copied without them. So subscribing and
// cancelling cost O(1) amortized, and no array a delivery walks ever changes below its
// starting length.
class List {
  constructor() {
    this.items = [];
    this.holes = 0;
  }

  // One of its entries was cancelled. Returns true once the list holds nobody.
  removed() {
    this.holes++;
    if (this.holes === this.items.length) {
      this.items = [];
      this.holes = 0;
      return true;
    }
    if (this.holes * 2 > this.items.length) {
      this.items = this.items.filter((e) => (Array.isArray(e) ? e[1] : e)._pattern !== null);
      this.holes = 0;
    }
    return false;
  }
}

class EventQueue {
  constructor(loop) {
    this.loop = loop;
    this.native = false;     // loop.pointer was read: emits go to weft
    this.topics = [];        // the queue: topic (weft's reading) and payload (string or Buffer)
    this.payloads = [];
    this.head = 0;           // the next event to deliver
    this.postId = 0;         // the drain's weft post, while one is pending (0: none)
    this.firing = 0;         // the drain's post while it runs
    this.token = 0;          // its user_data (trampolines.js)
    this.exact = new Map();  // the index: topic -> List of Handles
    this.prefix = new List(); // of [prefix with its '.', Handle]
    this.all = new List();   // of Handles
  }

  // ---- the index --------------------------------------------------------------------

  // Handle h subscribed to `pattern` (weft took it).
  add(h, pattern) {
    const p = wellFormed(pattern);
    h._pattern = p;
    if (p === '*') {
      this.all.items.push(h);
    } else if (p.endsWith('.*')) {
      this.prefix.items.push([p.slice(0, -1), h]);
    } else {
      let list = this.exact.get(p);
      if (list === undefined) {
        list = new List();
        this.exact.set(p, list);
      }
      list.items.push(h);
    }
  }

  // Handle h's subscription ended.
  remove(h) {
    const p = h._pattern;
    if (p === null) return;
    h._pattern = null; // marks its entry a hole
    if (p === '*') {
      this.all.removed();
    } else if (p.endsWith('.*')) {
      this.prefix.removed();
    } else {
      const list = this.exact.get(p);
      if (list !== undefined && list.removed()) this.exact.delete(p);
    }
  }

  // ---- emit -------------------------------------------------------------------------

  // loop.emit(topic, payload) on an open loop.
  emit(topic, payload) {
    if (this.native) {
      emitEvent(this.loop, topic, payload);
      return;
    }
    if (topic !== lastTopic) {
      checkString(topic, 'topic');
      const t = wellFormed(topic);
      lastWeftTopic = t.length === 0 || t.includes('*') ? null : t;
      lastTopic = topic;
    }
    if (lastWeftTopic === null) {
      emitEvent(this.loop, topic, payload); // weft refuses it, with its own error
      return;
    }
    let data;
    if (typeof payload === 'string') {
      data = payload;
    } else {
      const bytes = toBytes(payload, 'payload');
      if (bytes === null || bytes.length === 0) {
        data = '';
      } else {
        data = Buffer.allocUnsafe(bytes.length);
        data.set(bytes);
      }
    }
    this.topics.push(lastWeftTopic);
    this.payloads.push(data);
    if (this.postId === 0) {
      try {
        this.post();
      } catch (err) {
        this.topics.pop();
        this.payloads.pop();
        throw err;
      }
    }
  }

  // Posts the drain.
  post() {
    if (this.token === 0) {
      this.token = takeToken();
      fillToken(this.token, this);
    }
    const id = rawPost(this.loop._ptr, T_DRAIN, this.token, null);
    if (id === 0 || id === 0n) throw lastError();
    this.postId = id;
  }

  // ---- the drain --------------------------------------------------------------------

  // The post's callback, inside weft's pass.
  fire() {
    this.firing = this.postId; // the weft post running: the watchdog's reports name it
    this.postId = 0;
    const loop = this.loop;
    const topics = this.topics;
    const payloads = this.payloads;
    const end = Math.min(topics.length, this.head + PASS_LIMIT);
    while (this.head < end) {
      const i = this.head++;
      const topic = topics[i];
      const data = payloads[i];
      topics[i] = undefined;
      payloads[i] = undefined;
      this.deliver(topic, data);
      if (loop._closed || this.native) return; // close() or loop.pointer in a callback
    }
    if (this.head === topics.length) {
      topics.length = 0;
      payloads.length = 0;
      this.head = 0;
    } else if (this.postId === 0) {
      this.post(); // the rest (or what callbacks emitted) in the next pass
    }
  }

  // Runs one event's subscribers: those of the index when it begins.
  deliver(topic, data) {
    const exact = this.exact.get(topic);
    const prefix = this.prefix.items;
    const all = this.all.items;
    const nPrefix = prefix.length;
    const nAll = all.length;
    if (exact !== undefined) {
      const items = exact.items;
      const n = items.length;
      for (let i = 0; i < n; i++) this.call(items[i], items[i]._topic, data);
    }
    for (let i = 0; i < nPrefix; i++) {
      if (topic.startsWith(prefix[i][0])) this.call(prefix[i][1], topic, data);
    }
    for (let i = 0; i < nAll; i++) this.call(all[i], topic, data);
  }

  call(h, topic, data) {
    if (!h.active) return; // cancelled by an earlier callback, or the loop closed
    const payload = typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data);
    const wd = this.loop._watchdog;
    const t0 = wd === null ? 0 : performance.now();
    try {
      h._fn(topic, payload, h);
    } catch (err) {
      this.loop._fail(err);
    }
    if (wd !== null) wd.note(this.firing, h, performance.now() - t0);
  }

  // ---- going native, closing --------------------------------------------------------

  // loop.pointer was read: from now on every emit is weft's; the queued events go first.
  toNative() {
    if (this.native) return;
    this.native = true;
    const { topics, payloads } = this;
    const from = this.head;
    this.topics = [];
    this.payloads = [];
    this.head = 0;
    for (let i = from; i < topics.length; i++) emitEvent(this.loop, topics[i], payloads[i]);
  }

  // The loop is being freed: the queue, the index and the pending post go with it.
  clear() {
    this.topics = [];
    this.payloads = [];
    this.head = 0;
    this.exact = new Map();
    this.prefix = new List();
    this.all = new List();
    this.postId = 0;
    if (this.token !== 0) releaseToken(this.token);
    this.token = 0;
  }
}

module.exports = { EventQueue };
