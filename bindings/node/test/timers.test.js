// weft.Loop timers on Node's event loop: after, every, cancel, ids, bad input, close.
//
//     node --test bindings/node/test/
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { setTimeout: sleep } = require('node:timers/promises');

const weft = require('..');

const { Loop, WeftError } = weft;

const isWeftError = (code) => (err) => err instanceof WeftError && err.code === code;

test.after(() => assert.equal(weft.diagnostics().foreignCalls, 0));

test('after fires once, never early, on the JS thread inside a weft pass', async () => {
  const loop = new Loop();
  const start = process.hrtime.bigint();
  const fired = await new Promise((resolve) => {
    const h = loop.after(30, (arg) => {
      resolve({ arg, h, ms: Number(process.hrtime.bigint() - start) / 1e6, running: weft.diagnostics().running });
    });
    assert.equal(typeof h.id, 'bigint');
    assert.equal(h.kind, 'timer');
    assert.equal(h.active, true);
  });
  assert.equal(fired.arg, fired.h);
  assert.ok(fired.ms >= 30, `fired after ${fired.ms} ms`);
  assert.equal(fired.running, true);
  assert.equal(fired.h.active, false);
  assert.equal(fired.h.cancel(), false); // over already: not an error
  assert.equal(loop.size, 0);
  loop.close();
});

test('timers fire in deadline order; 0 ms runs in the next pass, not inside after()', async () => {
  const loop = new Loop();
  const order = [];
  await new Promise((resolve) => {
    loop.after(40, () => { order.push(40); resolve(); });
    loop.after(20, () => order.push(20));
    loop.after(0, () => order.push(0));
    loop.after(1.2, () => order.push(1.2)); // rounded up, never early
    assert.deepEqual(order, []);
  });
  assert.deepEqual(order, [0, 1.2, 20, 40]);
  loop.close();
});

test('every repeats until cancelled from its own callback; cancel is final', async () => {
  const loop = new Loop();
  const times = [];
  const start = Date.now();
  await new Promise((resolve) => {
    loop.every(10, (h) => {
      times.push(Date.now() - start);
      if (times.length === 5) {
        assert.equal(h.cancel(), true);
        assert.equal(h.active, false);
        assert.equal(h.cancel(), false);
        resolve();
      }
    });
  });
  await sleep(40);
  assert.equal(times.length, 5);
  assert.ok(times[4] >= 50, `5th call after ${times[4]} ms`);
  loop.close();
});

test('cancel before the deadline: the callback never runs', async () => {
  const loop = new Loop();
  let calls = 0;
  const a = loop.after(10, () => calls++);
  const b = loop.every(5, () => calls++);
  assert.equal(a.cancel(), true);
  assert.equal(b.cancel(), true);
  assert.equal(loop.size, 0);
  await sleep(40);
  assert.equal(calls, 0);
  loop.close();
});

test('a callback may cancel another registration due in the same pass', async () => {
  const loop = new Loop();
  const ran = [];
  let second;
  await new Promise((resolve) => {
    loop.after(5, () => { ran.push('first'); assert.equal(second.cancel(), true); });
    second = loop.after(5, () => ran.push('second'));
    loop.after(30, resolve);
  });
  assert.deepEqual(ran, ['first']);
  loop.close();
});

test('loop.cancel(id): ids are BigInts that weft validates', async () => {
  const loop = new Loop();
  const other = new Loop();
  try {
    const h = loop.every(1000, () => {});
    const foreign = other.every(1000, () => {});
    // Another loop's id, a forged one, 0, one above 2^53: WEFT_ERR_NOT_FOUND, never a crash.
    assert.throws(() => loop.cancel(foreign.id), isWeftError('WEFT_ERR_NOT_FOUND'));
    assert.throws(() => loop.cancel(12345n), isWeftError('WEFT_ERR_NOT_FOUND'));
    assert.throws(() => loop.cancel(0n), isWeftError('WEFT_ERR_NOT_FOUND'));
    assert.throws(() => loop.cancel(h.id ^ (1n << 60n)), isWeftError('WEFT_ERR_NOT_FOUND'));
    assert.throws(() => loop.cancel((1n << 64n) - 1n), (err) => {
      assert.ok(err instanceof WeftError);
      assert.equal(err.errno, weft.ffi.WEFT_ERR_NOT_FOUND);
      assert.match(err.message, /weft_cancel/);
      return true;
    });
    // Not a 64-bit unsigned BigInt: refused before weft sees it.
    assert.throws(() => loop.cancel(-1n), RangeError);
    assert.throws(() => loop.cancel(1n << 64n), RangeError);
    assert.throws(() => loop.cancel(5), TypeError);
    assert.throws(() => loop.cancel('5'), TypeError);
    assert.equal(h.active, true); // none of that touched it
    loop.cancel(h.id);
    assert.equal(h.active, false);
    assert.equal(loop.size, 0);
    // Stale: cancelled already.
    assert.throws(() => loop.cancel(h.id), isWeftError('WEFT_ERR_NOT_FOUND'));
    // Stale: a one-shot timer that fired.
    const once = await new Promise((resolve) => { const t = loop.after(1, () => resolve(t)); });
    assert.throws(() => loop.cancel(once.id), isWeftError('WEFT_ERR_NOT_FOUND'));
    assert.equal(foreign.cancel(), true);
  } finally {
    loop.close();
    other.close();
  }
});

test('bad timer arguments', () => {
  const loop = new Loop();
  const fn = () => {};
  assert.throws(() => loop.after('10', fn), TypeError);
  assert.throws(() => loop.after(undefined, fn), TypeError);
  assert.throws(() => loop.after(-1, fn), RangeError);
  assert.throws(() => loop.after(NaN, fn), RangeError);
  assert.throws(() => loop.after(Infinity, fn), RangeError);
  assert.throws(() => loop.after(-1n, fn), RangeError);
  assert.throws(() => loop.after(10, null), TypeError);
  assert.throws(() => loop.after(10), TypeError);
  assert.throws(() => loop.every(10, 'fn'), TypeError);
  // Out of weft's range (2^35 - 1 ms), and every(0): weft says why.
  assert.throws(() => loop.after(2 ** 40, fn), isWeftError('WEFT_ERR_INVALID'));
  assert.throws(() => loop.after((1n << 64n) - 1n, fn), isWeftError('WEFT_ERR_INVALID'));
  assert.throws(() => loop.every(0, fn), (err) => err.code === 'WEFT_ERR_INVALID' && /weft_timer_every/.test(err.message));
  assert.equal(loop.size, 0);
  loop.close();
});

test('close ends every registration; the loop then refuses everything', async () => {
  const loop = new Loop();
  let calls = 0;
  const h = loop.every(1, () => calls++);
  loop.after(1, () => calls++);
  loop.close();
  loop.close(); // idempotent
  assert.equal(loop.closed, true);
  assert.equal(loop.fd, -1);
  assert.equal(h.active, false);
  assert.equal(h.cancel(), false);
  await sleep(20);
  assert.equal(calls, 0);
  const closed = isWeftError('WEFT_ERR_CLOSED');
  assert.throws(() => loop.after(1, () => {}), closed);
  assert.throws(() => loop.every(1, () => {}), closed);
  assert.throws(() => loop.subscribe('a', () => {}), closed);
  assert.throws(() => loop.emit('a'), closed);
  assert.throws(() => loop.watch(0, weft.READABLE, () => {}), closed);
  assert.throws(() => loop.cancel(1n), closed);
  assert.throws(() => loop.pointer, closed);
  await assert.rejects(loop.spawn(0n), closed);
});

test('close from inside a callback: the rest of the pass does not run', async () => {
  const loop = new Loop();
  const ran = [];
  loop.after(5, () => { ran.push('a'); loop.close(); });
  loop.after(5, () => ran.push('b'));
  await sleep(30);
  assert.deepEqual(ran, ['a']);
  assert.equal(loop.closed, true);
});

test('a loop with nothing registered does not keep Node alive; unref() lets it go', async () => {
  const loop = new Loop();
  const h = loop.every(1000, () => {});
  assert.equal(h.hasRef(), true);
  assert.equal(h.unref(), h);
  assert.equal(h.hasRef(), false);
  h.ref().unref(); // idempotent both ways
  assert.equal(h.active, true);
  assert.equal(h.cancel(), true);
  assert.equal(h.hasRef(), false);
  loop.close();
});

test('many loops at once, each with its own ids', async () => {
  const loops = Array.from({ length: 8 }, () => new Loop());
  const seen = await Promise.all(loops.map((loop, i) => new Promise((resolve) => {
    loop.after(i, (h) => resolve(h.id));
  })));
  assert.equal(new Set(seen).size, loops.length);
  for (const loop of loops) loop.close();
});
