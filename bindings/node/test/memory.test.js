// 100,000 timers at a time, round after round, without growing RSS; and the same for
// events and cancelled registrations.
//
// After warm-up rounds (V8's heap and JIT settle, and weft's timer wheel keeps the
// capacity of its slot vectors, which grows for a while before it levels off), the RSS
// must stay within a bound: 8 MB over 600,000 more timers is under 14 bytes each, where
// a leaked Handle, closure or koffi call frame per timer would be 50 bytes or more.
// With other test files running beside it (node --test runs them in parallel), the
// heap's one-time step of ~6.5 MB came as late as the fourth round of timers; the
// timers' window starts after the sixth.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const v8 = require('node:v8');
const vm = require('node:vm');

const weft = require('..');

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');

const MB = 1024 * 1024;

function rss() {
  gc();
  gc();
  return process.memoryUsage().rss;
}

// Runs `round` `rounds` times; returns the RSS after each.
async function measure(rounds, round) {
  const after = [];
  for (let i = 0; i < rounds; i++) {
    await round(i);
    after.push(rss());
  }
  return after;
}

test.after(() => assert.equal(weft.diagnostics().foreignCalls, 0));

test('100,000 timers, 12 rounds: RSS stays flat after the first six', async () => {
  const loop = new weft.Loop();
  const N = 100000;
  const samples = await measure(12, () => new Promise((resolve) => {
    let fired = 0;
    const fn = () => { if (++fired === N) resolve(); };
    for (let i = 0; i < N; i++) loop.after(i % 20, fn);
    assert.equal(loop.size, N);
  }));
  assert.equal(loop.size, 0);
  const growth = (samples[11] - samples[5]) / MB;
  if (process.env.WEFT_TEST_VERBOSE) console.log(samples.map((s) => (s / MB).toFixed(1)).join(" "));
  assert.ok(growth < 8, `RSS grew ${growth.toFixed(1)} MB from round 6 to round 12: ${samples.map((s) => (s / MB).toFixed(1)).join(', ')} MB`);
  loop.close();
});

test('100,000 timers cancelled, and 100,000 events, per round: RSS stays flat', async () => {
  const loop = new weft.Loop();
  const N = 100000;
  const payload = Buffer.alloc(64, 1);
  const samples = await measure(6, () => new Promise((resolve) => {
    for (let i = 0; i < N; i++) loop.every(1000 + i, () => {}).cancel();
    let got = 0;
    loop.subscribe('m', (topic, p, h) => {
      if (++got === N) { h.cancel(); resolve(); }
    });
    for (let i = 0; i < N; i++) loop.emit('m', payload);
  }));
  assert.equal(loop.size, 0);
  const growth = (samples[5] - samples[2]) / MB;
  if (process.env.WEFT_TEST_VERBOSE) console.log(samples.map((s) => (s / MB).toFixed(1)).join(" "));
  assert.ok(growth < 8, `RSS grew ${growth.toFixed(1)} MB: ${samples.map((s) => (s / MB).toFixed(1)).join(', ')} MB`);
  loop.close();
});

test('20,000 native tasks per round, with userData copies: RSS stays flat', async () => {
  const { emitter } = require('../test-support/native.js');
  const em = emitter();
  const loop = new weft.Loop();
  const samples = await measure(6, async () => {
    const tasks = [];
    for (let i = 0; i < 20000; i++) tasks.push(loop.spawn(em.sum, '1 2 3', { on: i % 2 ? 'io' : 'cpu' }));
    const results = await Promise.all(tasks);
    assert.equal(results[19999].toString(), '6');
  });
  assert.equal(loop.size, 0);
  const growth = (samples[5] - samples[2]) / MB;
  if (process.env.WEFT_TEST_VERBOSE) console.log(samples.map((s) => (s / MB).toFixed(1)).join(' '));
  assert.ok(growth < 8, `RSS grew ${growth.toFixed(1)} MB: ${samples.map((s) => (s / MB).toFixed(1)).join(', ')} MB`);
  loop.close();
});
