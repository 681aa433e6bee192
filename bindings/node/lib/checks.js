// Argument checks of the Loop's methods, and the 64-bit helpers they share. weft checks
// ranges, ids and patterns itself; these keep values that koffi would convert silently,
// such as -1 -> 2^64 - 1 or "a\0b" -> "a", from reaching it.
'use strict';

const toBigInt = (v) => (typeof v === 'bigint' ? v : BigInt(v));
const U64_MAX = (1n << 64n) - 1n;
const U32_MAX = 2 ** 32 - 1;

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

module.exports = {
  toBigInt, U64_MAX, checkFunction, checkMs, checkU32, checkString, toBytes, checkId,
};
