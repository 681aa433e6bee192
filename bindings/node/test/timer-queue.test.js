// The binding's timer queue (lib/timers.js): after and every kept in JS lists with one
// weft timer (the alarm) armed for the earliest deadline. Order, never early, passes,
// re-arming, fixed-rate intervals, ids, and the alarm's own lifetime in weft.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { setTimeout: sleep } = require('node:timers/promises');

const weft = require('..');

const { Loop, WeftError } = weft;
const isWeftError = (code) => (err) => err instanceof WeftError && err.code === code;
const alive = (loop) => weft.native.weft_loop_alive(loop.pointer);

test.after(() => assert.equal(weft.diagnostics().foreignCalls, 0));

test('2,000 timers of 0-20 ms: each fires once, never early, in deadline then call order', async () => {
  const loop = new Loop();
  const fired = [];
  let seed = 7;
  await new Promise((resolve) => {
    for (let i = 0; i < 2000; i++) {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      const ms = seed % 21;
      const at = performance.now();
      loop.after(ms, () => {
        fired.push({ i, ms, late: performance.now() - at - ms });
        if (fired.length === 2000) resolve();
      });
    }
  });
  assert.equal(new Set(fired.map((f) => f.i)).size, 2000);
  for (const f of fired) assert.ok(f.late >= 0, `timer ${f.i} (${f.ms} ms) fired ${-f.late} ms early`);
  // Of one delay, the earlier call fires first.
  const byDelay = new Map();
  for (const f of fired) {
    const last = byDelay.get(f.ms);
    if (last !== undefined) assert.ok(last < f.i, `${f.ms} ms: timer ${f.i} before ${last}`);
    byDelay.set(f.ms, f.i);
  }
  await sleep(30);
  assert.equal(fired.length, 2000);
  assert.equal(loop.size, 0);
  assert.equal(alive(loop), 0); // nothing left in weft: the alarm is not re-armed
  loop.close();
});

test('an earlier timer re-arms the alarm; cancelling every timer cancels it', async () => {
  const loop = new Loop();
  const start = performance.now();
  const late = loop.after(500, () => assert.fail('cancelled'));
  const early = await new Promise((resolve) => loop.after(10, () => resolve(performance.now() - start)));
  assert.ok(early >= 10 && early < 400, `the 10 ms timer fired after ${early} ms`);
  assert.equal(alive(loop), 1); // the alarm, now for the 500 ms timer
  assert.equal(late.cancel(), true);
  assert.equal(alive(loop), 0);
  assert.equal(loop.size, 0);
  loop.close();
});

test('after(0) from a timer runs in the next pass; a timer may cancel one due with it', async () => {
  const loop = new Loop();
  const passes = [];
  let second;
  await new Promise((resolve) => {
    loop.after(5, () => {
      passes.push(['first', weft.diagnostics().passes]);
      assert.equal(second.cancel(), true);
      loop.after(0, () => {
        passes.push(['zero', weft.diagnostics().passes]);
        resolve();
      });
    });
    second = loop.after(5, () => passes.push(['second']));
  });
  assert.deepEqual(passes.map(([name]) => name), ['first', 'zero']);
  assert.ok(passes[1][1] > passes[0][1], 'after(0) ran in the same pass');
  loop.close();
});

test('every: fixed rate; calls missed while the thread was busy are skipped, not bunched', async () => {
  const loop = new Loop();
  const times = [];
  const start = performance.now();
  const h = loop.every(20, () => {
    times.push(performance.now() - start);
    if (times.length === 1) {
      const until = performance.now() + 75; // busy past 3 more deadlines: 40, 60, 80
      while (performance.now() < until);
    }
  });
  await sleep(150);
  h.cancel();
  assert.ok(times[0] >= 20, `first call at ${times[0]} ms`);
  // One late call stands for 40, 60 and 80; the next is due at 100, then 120, 140.
  assert.ok(times[1] >= 95 - 1, `second call at ${times[1]} ms`);
  assert.ok(times[2] >= 100, `third call at ${times[2]} ms`);
  for (let i = 2; i < times.length; i++) {
    assert.ok(times[i] >= 20 * (i + 3), `call ${i} at ${times[i]} ms, early`);
  }
  assert.ok(times.length <= 6, `${times.length} calls in 150 ms: missed calls were bunched`);
  loop.close();
});

test('timer ids: BigInts of the binding, unique across loops, cancelled through loop.cancel', async () => {
  const a = new Loop();
  const b = new Loop();
  const ha = a.after(1000, () => {});
  const hb = b.every(1000, () => {});
  const watch = a.subscribe('t.x', () => {}); // a weft id beside them
  assert.equal(typeof ha.id, 'bigint');
  assert.notEqual(ha.id, hb.id);
  assert.ok(ha.id < 2n ** 52n && watch.id >= 2n ** 52n, 'the two id spaces overlap');
  assert.throws(() => a.cancel(hb.id), isWeftError('WEFT_ERR_NOT_FOUND')); // another loop's
  a.cancel(ha.id);
  assert.equal(ha.active, false);
  assert.throws(() => a.cancel(ha.id), isWeftError('WEFT_ERR_NOT_FOUND')); // stale
  b.cancel(hb.id);
  assert.equal(hb.cancel(), false);
  a.cancel(watch.id);
  assert.equal(a.size + b.size, 0);
  a.close();
  b.close();
});

test('an exception in a timer goes to the loop\'s error listeners; the other due timers run', async () => {
  const loop = new Loop();
  const errors = [];
  loop.on('error', (err) => errors.push(err.message));
  const ran = [];
  await new Promise((resolve) => {
    loop.after(3, () => { ran.push(1); throw new Error('boom'); });
    loop.after(3, () => ran.push(2));
    loop.after(4, () => { ran.push(3); resolve(); });
  });
  await sleep(1);
  assert.deepEqual(ran, [1, 2, 3]);
  assert.deepEqual(errors, ['boom']);
  loop.close();
});

test('unref\'d timers do not keep Node alive; close drops pending ones', async () => {
  const loop = new Loop();
  let calls = 0;
  const hs = Array.from({ length: 100 }, (_, i) => loop.after(5 + (i % 7), () => calls++).unref());
  assert.ok(hs.every((h) => !h.hasRef() && h.active));
  await sleep(30); // unref'd still fire while Node runs for other reasons
  assert.equal(calls, 100);
  loop.after(50, () => calls++);
  loop.every(10, () => calls++);
  assert.equal(loop.size, 2);
  loop.close();
  await sleep(60);
  assert.equal(calls, 100);
});

test('timers of many different delays leave no empty list behind', async () => {
  const loop = new Loop();
  let fired = 0;
  await new Promise((resolve) => {
    for (let i = 0; i < 500; i++) loop.after(i % 5 === 0 ? 1 : 2 + i, () => { if (++fired === 500) resolve(); });
  });
  assert.ok(loop._timers.lists.size <= 65, `${loop._timers.lists.size} lists kept`);
  const hs = Array.from({ length: 300 }, (_, i) => loop.after(10000 + i, () => {}));
  for (const h of hs) h.cancel();
  assert.ok(loop._timers.lists.size <= 65, `${loop._timers.lists.size} lists kept`);
  assert.equal(loop._timers.heap.length, 0);
  loop.close();
});

test('tokens: one per live watch or subscription and one per loop\'s alarm, each released once', async () => {
  const base = weft.diagnostics().tokens;
  const loop = new Loop();
  const timers = Array.from({ length: 50 }, (_, i) => loop.after(1000 + i, () => {}));
  loop.every(1000, () => {});
  assert.equal(weft.diagnostics().tokens, base + 1); // the alarm only
  const subs = Array.from({ length: 5 }, (_, i) => loop.subscribe(i % 2 ? `tok.${i}` : 'tok.*', () => {}));
  assert.equal(weft.diagnostics().tokens, base + 6);
  for (const h of timers) h.cancel();
  subs[0].cancel();
  assert.equal(subs[0].cancel(), false);
  assert.equal(weft.diagnostics().tokens, base + 5);
  await new Promise((resolve) => loop.after(1, resolve));
  loop.close();
  assert.equal(weft.diagnostics().tokens, base);
  loop.close();
  assert.equal(weft.diagnostics().tokens, base);
});

test('the alarm is armed for the delay itself, not a millisecond more', () => {
  const loop = new Loop();
  for (let i = 0; i < 20; i++) {
    const h = loop.after(50, () => {});
    // weft reads a timer of 50 ms as 51 (its timeout rounds up past the current ms
    // tick); an alarm armed for 51 ms would read 52.
    const ms = Number(weft.native.weft_loop_timeout_ms(loop.pointer));
    assert.ok(ms > 0 && ms <= 51, `weft's timeout after after(50): ${ms} ms`);
    h.cancel();
  }
  loop.close();
});
