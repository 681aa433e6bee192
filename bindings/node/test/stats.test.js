// loop.stats(), weft.poolStats(), spawn's options.timing (a task queued behind a busy
// pool waits longer than it runs) and loop.setLabel / options.label (the watchdog's name).
//
//     node --test bindings/node/test/
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { setTimeout: sleep } = require('node:timers/promises');

const { weft, emitter, pipe } = require('../test-support/native.js');
const { spin, until } = require('../test-support/timing.js');

const { Loop, WeftError } = weft;


test('stats counts move with what the loop runs', async () => {
  const em = emitter();
  const loop = new Loop();
  const first = loop.stats();
  assert.equal(first.utilization, null); // the first read starts the clock
  assert.equal(typeof first.passes, 'number');
  const [r, w] = pipe();
  let reads = 0;
  const watch = loop.watch(r, weft.READABLE, () => {
    fs.readSync(r, Buffer.alloc(1));
    reads++;
  });
  const sub = loop.subscribe('stats.x', () => {});
  void loop.pointer; // JS events now go through weft: its event callbacks count them
  loop.emit('stats.x', 'a');
  let ticks = 0;
  const every = loop.every(2, () => { ticks++; });
  fs.writeSync(w, 'x');
  const inside = [];
  loop.after(1, () => inside.push(loop.stats()));
  assert.equal((await loop.spawn(em.sum, '1 2')).toString(), '3');
  assert.ok(await until(() => reads === 1 && ticks >= 5 && inside.length === 1));
  const during = loop.stats();
  assert.equal(during.fdWatches, 1);
  assert.ok(during.subscriptions >= 1);
  assert.ok(during.timers >= 1); // the JS timers' one weft timer
  watch.cancel();
  sub.cancel();
  every.cancel();
  const last = loop.stats();
  assert.equal(last.fdWatches, 0);
  assert.ok(last.passes > first.passes);
  assert.ok(last.fdCallbacks >= 1);
  assert.ok(last.eventCallbacks >= 1);
  assert.ok(last.timerCallbacks >= 5);
  assert.ok(last.doneCallbacks >= 1);
  assert.equal(last.tasks, 0);
  // Node waits in libuv, never in weft: no idle time; utilisation is busy over wall time
  // (busy on a coarse clock, a few ms a tick: this short run may show none)
  assert.equal(last.idleNs, 0);
  assert.ok(last.timeNs > first.timeNs);
  assert.ok(last.utilization >= 0 && last.utilization <= 1);
  const between = weft.utilizationBetween(inside[0], last);
  assert.ok(between === null || (between >= 0 && between <= 1));
  assert.ok(last.timerLateSamples >= 1);
  assert.ok(last.timerLateP50Ns <= last.timerLateP99Ns && last.timerLateP99Ns <= last.timerLateMaxNs);
  // A callback that holds the thread for 60 ms of ~100: the loop was busy for most of it.
  const before = loop.stats();
  let spun = false;
  loop.after(1, () => { spin(60); spun = true; });
  assert.ok(await until(() => spun));
  await sleep(20);
  const busy = weft.utilizationBetween(before, loop.stats());
  assert.ok(busy > 0.3 && busy <= 1, String(busy));
  fs.closeSync(r);
  fs.closeSync(w);
  loop.close();
  assert.throws(() => loop.stats(), (e) => e instanceof WeftError && e.code === 'WEFT_ERR_CLOSED');
});

test('poolStats: threads, tasks run; bad kind', async () => {
  const em = emitter();
  const loop = new Loop();
  const before = weft.poolStats('cpu');
  await Promise.all(Array.from({ length: 8 }, () => loop.spawn(em.sum, '1')));
  const after = weft.poolStats('cpu');
  assert.ok(after.tasksRun >= before.tasksRun + 8);
  assert.ok(after.threads >= 1);
  assert.ok(after.threadsStarted >= after.threads);
  assert.equal(typeof weft.poolStats('io').queued, 'number');
  assert.deepEqual(Object.keys(weft.poolStats()), Object.keys(after)); // default: cpu
  assert.throws(() => weft.poolStats('gpu'), TypeError);
  loop.close();
});

test('timing: a task queued behind a busy pool waits longer than it runs', async () => {
  const em = emitter();
  const loop = new Loop();
  await loop.spawn(em.sum, '1'); // the pool's threads exist
  const threads = weft.poolStats('cpu').threads;
  const blockers = Array.from({ length: threads }, () => loop.spawn(em.sleep, '200', { timing: true }));
  // every thread busy (the pool need not start tasks in the order they came)
  assert.ok(await until(() => weft.poolStats('cpu').busyThreads === threads));
  const quick = await loop.spawn(em.sum, '1 1', { timing: true });
  assert.equal(quick.toString(), '2');
  const t = quick.timing;
  assert.ok(t instanceof weft.TaskTiming);
  assert.ok(t.queueDelay > t.runTime, JSON.stringify(t));
  assert.ok(t.queueDelay >= 150, JSON.stringify(t));
  assert.ok(t.queued <= t.started && t.started <= t.finished && t.finished <= t.done);
  assert.ok(t.done <= performance.now() + 1, `${t.done} vs ${performance.now()}`);
  assert.ok(Math.abs(t.doneNs / 1e6 - Number(process.hrtime.bigint()) / 1e6) < 5000);
  for (const b of await Promise.all(blockers)) assert.ok(b.timing.runTime >= 190);
  assert.equal((await loop.spawn(em.sum, '1')).timing, undefined); // not asked for
  // A status other than 0: the TaskError carries it.
  const failed = await loop.spawn(em.status, '3', { timing: true }).catch((e) => e);
  assert.ok(failed instanceof weft.TaskError && failed.timing instanceof weft.TaskTiming);
  // An aborted task that never started: its AbortError gets the timing once done ran.
  const more = Array.from({ length: threads }, () => loop.spawn(em.sleep, '100'));
  assert.ok(await until(() => weft.poolStats('cpu').busyThreads === threads));
  const ac = new AbortController();
  const p = loop.spawn(em.sum, '1', { signal: ac.signal, timing: true, label: 'doomed' });
  ac.abort();
  const err = await p.catch((e) => e);
  assert.ok(err instanceof weft.AbortError);
  await Promise.all(more);
  assert.ok(await until(() => err.timing !== undefined));
  assert.equal(err.timing.started, null);
  assert.equal(err.timing.queueDelay, null);
  assert.throws(() => loop._spawn(em.sum, '1', { timing: 1 }), TypeError);
  assert.throws(() => loop._spawn(em.sum, '1', { label: 3 }), TypeError);
  assert.throws(() => loop._spawn(em.sum, '1', { label: 'a\0b' }), TypeError);
  loop.close();
});

test('setLabel names a handle in the watchdog reports; bad arguments', async () => {
  const em = emitter();
  const loop = new Loop();
  const reports = [];
  loop.setWatchdog(30, (r) => reports.push(r));
  const [r, w] = pipe();
  const watch = loop.watch(r, weft.READABLE, function slowRead() {
    fs.readSync(r, Buffer.alloc(1));
    spin(60);
  });
  loop.setLabel(watch, 'client socket');
  fs.writeSync(w, 'x');
  const timer = loop.after(1, function slowTimer() { spin(60); });
  loop.setLabel(timer, 'render tick');
  assert.ok(await until(() => reports.length >= 2));
  const names = reports.map((x) => x.name).sort();
  assert.deepEqual(names, ['client socket', 'render tick']);
  loop.setLabel(watch, null);
  fs.writeSync(w, 'y');
  assert.ok(await until(() => reports.length >= 3));
  assert.equal(reports[2].name, 'slowRead');
  assert.equal((await loop.spawn(em.sum, '1', { label: 'a sum' })).toString(), '1');
  assert.throws(() => loop.setLabel(123n, 'no such id'), WeftError);
  assert.throws(() => loop.setLabel(watch, 3), TypeError);
  assert.throws(() => loop.setLabel('x', 'y'), TypeError);
  const pending = loop.spawn(em.sum, '1');
  assert.throws(() => loop.setLabel(pending, 'y'), TypeError); // a task: options.label
  await pending;
  watch.cancel();
  assert.throws(() => loop.setLabel(watch, 'gone'), WeftError);
  fs.closeSync(r);
  fs.closeSync(w);
  loop.close();
  assert.throws(() => loop.setLabel(timer, 'x'), WeftError);
});
