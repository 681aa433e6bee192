// loop.emit's path into weft_emit: the topic and the payload written into one scratch
// buffer outside V8's heap, and weft_emit called with addresses only.
'use strict';

const ffi = require('./ffi.js');
const { lib } = require('./library.js');
const { lastError } = require('./errors.js');
const { checkString, toBytes } = require('./checks.js');

const { koffi, WEFT_OK } = ffi;

// weft_emit copies the topic and the payload before it returns, so one buffer serves
// every call on this thread (a Worker loads its own copy of this module). Its memory is
// outside V8's heap (allocUnsafeSlow: an ArrayBuffer of its own), which the GC never
// moves, so its address is taken once. Integer arguments are koffi's cheapest: a string
// or Buffer argument costs a conversion per call (V8's UTF-8 encoder into koffi's
// arena, or a typed-array lookup), and a payload string a Buffer allocation.
//
// [0, TOPIC_MAX): the last topic, UTF-8 and NUL-terminated; [TOPIC_MAX, SIZE): a payload.
const SIZE = 64 * 1024;
const TOPIC_MAX = 1024;
const scratch = Buffer.allocUnsafeSlow(SIZE);
const SCRATCH = Number(koffi.address(scratch));
const PAYLOAD_MAX = SIZE - TOPIC_MAX;

const emitAddr = lib.handle.func('int weft_emit(uintptr_t lp, uintptr_t topic, uintptr_t payload, size_t len)');
const emitBytes = lib.handle.func('int weft_emit(uintptr_t lp, uintptr_t topic, const void *payload, size_t len)');

// Writes string `s` at `offset` in UTF-8 (lone surrogates as U+FFFD, as Buffer.from and
// koffi do), returning the bytes written; the caller makes sure it fits.
const writeUtf8 = typeof scratch.utf8Write === 'function'
  ? (s, offset) => scratch.utf8Write(s, offset)
  : (s, offset) => scratch.write(s, offset, 'utf8');

let lastTopic = null; // the topic in scratch[0, TOPIC_MAX), checked already

// Emits `topic` with `payload` (a Buffer, any typed array or DataView, an ArrayBuffer, a
// string, or nothing) to `loop` (an open Loop).
function emitEvent(loop, topic, payload) {
  if (topic !== lastTopic) {
    checkString(topic, 'topic');
    // A UTF-8 character is at most 3 bytes per UTF-16 unit: a topic that may not fit
    // takes koffi's string conversion.
    if (topic.length * 3 >= TOPIC_MAX) return emitSlow(loop, topic, payload);
    scratch[writeUtf8(topic, 0)] = 0;
    lastTopic = topic;
  }
  const lp = loop._ptrNum;
  let rc;
  if (typeof payload === 'string' && payload.length * 3 <= PAYLOAD_MAX) {
    rc = emitAddr(lp, SCRATCH, SCRATCH + TOPIC_MAX, writeUtf8(payload, TOPIC_MAX));
  } else {
    const bytes = toBytes(payload, 'payload');
    if (bytes === null || bytes.length === 0) rc = emitAddr(lp, SCRATCH, 0, 0);
    else rc = emitBytes(lp, SCRATCH, bytes, bytes.length);
  }
  if (rc !== WEFT_OK) throw lastError(rc);
}

// A topic too long for the scratch buffer.
function emitSlow(loop, topic, payload) {
  const bytes = toBytes(payload, 'payload');
  const rc = bytes === null || bytes.length === 0
    ? lib.weft_emit(loop._ptr, topic, null, 0)
    : lib.weft_emit(loop._ptr, topic, bytes, bytes.length);
  if (rc !== WEFT_OK) throw lastError(rc);
}

module.exports = { emitEvent };
