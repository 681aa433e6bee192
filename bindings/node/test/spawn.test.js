// weft.Loop.spawn: native work functions on weft's CPU and IO pools -> Promise<Buffer>;
// userData, timeout, AbortSignal, non-zero statuses, bad input, close with tasks in flight.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { setTimeout: sleep } = require('node:timers/promises');

const { weft, koffi, emitter, threadsNamed } = require('../test-support/native.js');

const { Loop, WeftError, AbortError, TaskError } = weft;
const isWeftError = (code) => (err) => err instanceof WeftError && err.code === code;

test.after(() => assert.equal(weft.diagnostics().foreignCalls, 0));

test('cpu and io work resolve with the bytes the work wrote', async () => {
  const em = emitter();
  const loop = new Loop();
  const [cpu, io, dflt] = await Promise.all([
    loop.spawn(em.sum, '1 2 3 4', { on: 'cpu' }),
    loop.spawn(em.sum, Buffer.from('40 2'), { on: 'io' }),
    loop.spawn(em.sum, new Uint8Array(Buffer.from('7'))),
  ]);
  assert.ok(Buffer.isBuffer(cpu));
  assert.equal(cpu.toString(), '10');
  assert.equal(io.toString(), '42');
  assert.equal(dflt.toString(), '7');
  assert.equal(loop.size, 0);
  assert.ok(threadsNamed('weft-cpu') + threadsNamed('weft-io') > 0); // real pool threads ran them
  loop.close();
});

test('userData: null, a string copied for the task, or a BigInt pointer the caller keeps', async () => {
  const em = emitter();
  const loop = new Loop();
  assert.equal((await loop.spawn(em.sum, null)).toString(), '0');
  assert.equal((await loop.spawn(em.sum)).toString(), '0');
  const mine = Buffer.from('5 6\0');
  assert.equal((await loop.spawn(em.sum, koffi.address(mine))).toString(), '11');
  // Many at once, each with its own copy (freed by weft with libc's free).
  const results = await Promise.all(Array.from({ length: 200 }, (_, i) => loop.spawn(em.sum, `${i} 1`, { on: i % 2 ? 'io' : 'cpu' })));
  assert.deepEqual(results.map((b) => Number(b)), Array.from({ length: 200 }, (_, i) => i + 1));
  loop.close();
});

test('userData copies: strings (strdup), strings with NUL and bytes (calloc), empty ones', async () => {
  const em = emitter();
  const loop = new Loop();
  const cases = [['1 2 3', '6'], ['', '0'], ['5\0 6', '5'], [Buffer.from('7 8'), '15'],
    [new Uint8Array(0), '0'], [new Uint16Array([0x2039]), '9'], ['9 é 1', '9']];
  for (const [userData, sum] of cases) {
    assert.equal((await loop.spawn(em.sum, userData)).toString(), sum, JSON.stringify(userData));
  }
  // A pointer checked once is remembered; others are still checked.
  assert.equal((await loop.spawn(em.sum, '2 2')).toString(), '4');
  await assert.rejects(loop.spawn(em.sum + 1n, '1'), TypeError);
  await assert.rejects(loop.spawn(em.sum - 16n, '1'), TypeError);
  loop.close();
});

test('a non-zero status rejects with a TaskError holding the status and the result', async () => {
  const em = emitter();
  const loop = new Loop();
  await assert.rejects(loop.spawn(em.status, '3'), (err) => {
    assert.ok(err instanceof TaskError);
    assert.equal(err.status, 3);
    assert.equal(err.result.length, 0);
    return true;
  });
  loop.close();
});

test('timeout: rejects with WEFT_ERR_TIMEOUT at the deadline, without waiting for the work', async () => {
  const em = emitter();
  const loop = new Loop();
  const start = Date.now();
  await assert.rejects(loop.spawn(em.sleep, '5000', { on: 'io', timeout: 50 }), isWeftError('WEFT_ERR_TIMEOUT'));
  const ms = Date.now() - start;
  assert.ok(ms >= 50 && ms < 2000, `rejected after ${ms} ms`);
  // Within the deadline: resolves.
  assert.equal((await loop.spawn(em.sleep, '1', { on: 'io', timeout: 2000 })).toString(), 'slept');
  loop.close();
});

test('signal: abort rejects at once with an AbortError; an aborted signal never spawns', async () => {
  const em = emitter();
  const loop = new Loop();
  const ac = new AbortController();
  const start = Date.now();
  const p = loop.spawn(em.sleep, '5000', { on: 'io', signal: ac.signal });
  setTimeout(() => ac.abort(new Error('enough')), 20);
  await assert.rejects(p, (err) => {
    assert.ok(err instanceof AbortError);
    assert.equal(err.name, 'AbortError');
    assert.equal(err.cause.message, 'enough');
    return true;
  });
  assert.ok(Date.now() - start < 2000);
  // The task stays registered until the work has seen the cancel and returned (it
  // would sleep 5 s otherwise).
  while (loop.size > 0) await sleep(5);
  assert.ok(Date.now() - start < 2000);
  await assert.rejects(loop.spawn(em.sum, '1', { signal: AbortSignal.abort() }), AbortError);
  assert.equal(loop.size, 0);
  // A signal that never fires is released when the task is done.
  const keep = new AbortController();
  assert.equal((await loop.spawn(em.sum, '2', { signal: keep.signal })).toString(), '2');
  keep.abort(); // too late: nothing happens
  loop.close();
});

test('bad work pointers and options are refused, never called', async () => {
  const em = emitter();
  const loop = new Loop();
  await assert.rejects(loop.spawn(() => 0), TypeError); // a JS function would run on a pool thread
  await assert.rejects(loop.spawn(0n), TypeError);
  await assert.rejects(loop.spawn(0x1234n), TypeError); // forged
  await assert.rejects(loop.spawn(em.sum + 1n), TypeError); // not a function's start
  await assert.rejects(loop.spawn(-1n), TypeError);
  await assert.rejects(loop.spawn(Number(em.sum)), TypeError);
  await assert.rejects(loop.spawn(em.sum, {}), TypeError);
  await assert.rejects(loop.spawn(em.sum, 42), TypeError);
  await assert.rejects(loop.spawn(em.sum, -1n), RangeError);
  await assert.rejects(loop.spawn(em.sum, null, { on: 'loop' }), TypeError);
  await assert.rejects(loop.spawn(em.sum, null, { on: 'toString' }), TypeError);
  await assert.rejects(loop.spawn(em.sum, null, { reuse: true }), TypeError); // on: 'process' only
  await assert.rejects(loop.spawn(em.sum, null, { on: 'io', maxChildren: 1 }), TypeError);
  await assert.rejects(loop.spawn(em.sum, null, { timeout: -1 }), RangeError);
  await assert.rejects(loop.spawn(em.sum, null, { timeout: 'soon' }), TypeError);
  await assert.rejects(loop.spawn(em.sum, null, { timeout: 2 ** 40 }), isWeftError('WEFT_ERR_INVALID'));
  await assert.rejects(loop.spawn(em.sum, null, { signal: {} }), TypeError);
  await assert.rejects(loop.spawn(em.sum, null, null), TypeError);
  assert.equal(loop.size, 0);
  loop.close();
});

test('close with tasks in flight rejects them with WEFT_ERR_CLOSED; the work still finishes', async () => {
  const em = emitter();
  const loop = new Loop();
  const p = loop.spawn(em.sleep, '50', { on: 'io' });
  await sleep(5);
  loop.close();
  await assert.rejects(p, isWeftError('WEFT_ERR_CLOSED'));
  await sleep(80); // the work returns on its thread; weft frees its copy of userData
});
