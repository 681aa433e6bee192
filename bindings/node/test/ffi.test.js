// Tests of the generated koffi declarations (lib/ffi.js) against the real library:
// target/release/libweft.so, or $WEFT_LIBRARY (`cargo build --release` first).
//
//     node --test bindings/node/test/
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const ffi = require('../lib/ffi.js');

const LIBRARY = process.env.WEFT_LIBRARY
  || path.resolve(__dirname, '..', '..', '..', 'target', 'release', 'libweft.so');

assert.ok(fs.existsSync(LIBRARY), `${LIBRARY} is missing: run \`cargo build --release\` or set WEFT_LIBRARY`);
const lib = ffi.load(LIBRARY);

function lastError() {
  const n = Number(lib.weft_last_error(null, 0));
  const buf = Buffer.alloc(n + 1);
  assert.equal(Number(lib.weft_last_error(buf, buf.length)), n);
  return buf.toString('utf8', 0, n);
}

test('every function of FUNCTIONS is declared', () => {
  assert.ok(ffi.FUNCTIONS.length > 0);
  assert.deepEqual(Object.keys(ffi.PROTOTYPES), [...ffi.FUNCTIONS]);
  for (const name of ffi.FUNCTIONS) {
    assert.equal(typeof lib[name], 'function', name);
    assert.equal(typeof ffi.DOCS[name], 'string', name);
  }
  assert.equal(ffi.WEFT_ERR_NOT_FOUND, -3);
  assert.equal(ffi.CONSTANTS.WEFT_RUN_NOWAIT, ffi.WEFT_RUN_NOWAIT);
  assert.deepEqual(Object.keys(ffi.weft_spawn_options.members),
    ['size', 'timeout_ms', 'pool', 'max_children', 'fork_fn', 'fork_data', 'reuse_child',
      'keep_fds', 'keep_fds_len', 'inherit_fds', 'flags']);
});

test('weft_version and weft_abi_version', () => {
  assert.equal(lib.weft_version(),
    `${ffi.WEFT_VERSION_MAJOR}.${ffi.WEFT_VERSION_MINOR}.${ffi.WEFT_VERSION_PATCH}`);
  assert.equal(lib.weft_abi_version(), ffi.WEFT_ABI_VERSION);
  assert.match(lib.weft_strerror(ffi.WEFT_ERR_NOT_FOUND), /^WEFT_ERR_NOT_FOUND/);
});

test('a timer runs once on the JS thread, and its free_fn once', () => {
  const lp = lib.weft_loop_new();
  assert.notEqual(lp, null);
  const calls = [];
  let frees = 0;
  const cb = ffi.register(ffi.weft_cb, (loop, id, userData) => calls.push({ loop, id, userData }));
  const freeFn = ffi.register('weft_free_fn', () => { frees += 1; });
  try {
    const id = lib.weft_timer_after(lp, 1, cb, null, freeFn);
    assert.equal(typeof id, 'bigint');
    assert.notEqual(id, 0n, lastError());
    assert.equal(lib.weft_loop_run(lp, ffi.WEFT_RUN_DEFAULT), ffi.WEFT_OK);
    assert.equal(calls.length, 1);
    assert.equal(calls[0].id, id); // a BigInt on both sides
    assert.equal(calls[0].loop, lp);
    assert.equal(calls[0].userData, null);
    assert.equal(frees, 1);
    assert.equal(typeof lib.weft_loop_timeout_ms(lp), 'bigint');
    assert.equal(lib.weft_loop_timeout_ms(lp), -1n);
    lib.weft_loop_free(lp);
    assert.equal(frees, 1);
  } finally {
    ffi.unregister(cb);
    ffi.unregister(freeFn);
  }
});

test('a forged id gives WEFT_ERR_NOT_FOUND, NULL gives WEFT_ERR_NULL', () => {
  const lp = lib.weft_loop_new();
  try {
    assert.equal(lib.weft_cancel(lp, 12345n), ffi.WEFT_ERR_NOT_FOUND);
    assert.equal(lib.weft_last_error_code(), ffi.WEFT_ERR_NOT_FOUND);
    assert.match(lastError(), /weft_cancel/);
    // An id above 2^53 survives the trip (a Number could not hold it).
    assert.equal(lib.weft_cancel(lp, 0xfff0_0000_0000_0001n), ffi.WEFT_ERR_NOT_FOUND);
    assert.match(lastError(), /0xfff0000000000001/);
    assert.equal(lib.weft_cancel(null, 1n), ffi.WEFT_ERR_NULL);
  } finally {
    lib.weft_loop_free(lp);
  }
});

test('register refuses a type that is not a weft callback', () => {
  assert.throws(() => ffi.register(ffi.weft_spawn_options, () => {}), TypeError);
});
