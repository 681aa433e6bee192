// The slow-callback watchdog from Node: a callback that holds the JS thread past the
// threshold is reported (after it returns: Node's one thread is the blocked one) with
// its function's name and its duration; debug: true logs; off; bad input.
//
//     node --test bindings/node/test/
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { setTimeout: sleep } = require('node:timers/promises');

const weft = require('..');
const { spin, until } = require('../test-support/timing.js');

const { Loop } = weft;


test('a slow timer, JS event and native-path subscriber are reported by name', async () => {
  const loop = new Loop();
  const reports = [];
  loop.setWatchdog(40, (r) => reports.push(r));
  loop.after(1, function slowTimer() { spin(120); });
  loop.after(1, function fastTimer() {});
  loop.subscribe('job.x', function slowEvent() { spin(90); });
  loop.emit('job.x', 'a'); // JS-only: the binding's drain runs it
  assert.ok(await until(() => reports.length >= 2), JSON.stringify(reports, (k, v) => (typeof v === 'bigint' ? String(v) : v)));
  const byName = Object.fromEntries(reports.map((r) => [r.name, r]));
  assert.ok(byName.slowTimer, 'the timer is named');
  assert.equal(byName.slowTimer.kind, 'timer');
  assert.ok(byName.slowTimer.durationMs >= 120);
  assert.ok(byName.slowEvent, 'the JS event subscriber is named');
  assert.equal(byName.slowEvent.kind, 'post');
  assert.ok(!reports.some((r) => r.name === 'fastTimer'));
  // once native code sees the loop, events go through weft: its subscription's callback
  void loop.pointer;
  loop.subscribe('job.y', function slowNative() { spin(80); });
  loop.emit('job.y', 'b');
  assert.ok(await until(() => reports.some((r) => r.name === 'slowNative')));
  const native = reports.find((r) => r.name === 'slowNative');
  assert.equal(native.kind, 'event');
  assert.equal(typeof native.id, 'bigint');
  assert.ok(native.durationMs >= 80);
  loop.close();
});

test('debug: true logs slow callbacks with console.warn; off stops reports', async () => {
  const logged = [];
  const warn = console.warn;
  console.warn = (msg) => logged.push(String(msg));
  let loop;
  try {
    loop = new Loop({ debug: true });
    loop.after(1, function blocksTheLoop() { spin(150); });
    assert.ok(await until(() => logged.length >= 1));
  } finally {
    console.warn = warn;
  }
  // At least the 150 ms spun; a loaded machine may stretch it, so no upper bound.
  const m = /weft: blocksTheLoop \(a timer callback\) blocked the loop for (\d+\.\d) ms/.exec(logged[0]);
  assert.ok(m, logged[0]);
  assert.ok(Number(m[1]) >= 100, logged[0]);
  const reports = [];
  loop.setWatchdog(30, (r) => reports.push(r));
  loop.setWatchdog(0);
  loop.setWatchdog(null); // off again: fine
  loop.after(1, () => spin(80));
  await sleep(200);
  assert.equal(reports.length, 0);
  loop.close();
});

test('bad arguments, a closed loop, and a watchdog does not keep Node alive', async () => {
  const loop = new Loop();
  assert.throws(() => loop.setWatchdog(-1), TypeError);
  assert.throws(() => loop.setWatchdog('10'), TypeError);
  assert.throws(() => loop.setWatchdog(10, 3), TypeError);
  assert.throws(() => loop.setWatchdog(2 ** 40), weft.WeftError);
  assert.throws(() => new Loop(5), TypeError);
  loop.close();
  assert.throws(() => loop.setWatchdog(10), weft.WeftError);
  // a process whose only registration is a watchdog exits by itself
  const { spawnSync } = require('node:child_process');
  const child = spawnSync(process.execPath, ['-e',
    `const weft = require(${JSON.stringify(require.resolve('..'))});
     new weft.Loop().setWatchdog(10); console.log('set');`], { timeout: 10000, encoding: 'utf8' });
  assert.equal(child.status, 0, child.stderr);
  assert.equal(child.stdout.trim(), 'set');
});
