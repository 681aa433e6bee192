// weft.Loop.spawn(work, userData, { on: 'process' }): native work functions
// (test-support/process_work.c) in forked children -> Promise<Buffer>; reuse and
// maxChildren, userData in the child, events before the promise settles, crashes,
// timeouts and aborts that kill the child, close with children running, bad options;
// no child left behind (running or zombie) after any test.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { setTimeout: sleep } = require('node:timers/promises');
const { inspect } = require('node:util');

const { weft, koffi, processWork, emitter } = require('../test-support/native.js');

const { Loop, WeftError, AbortError, TaskError } = weft;
const isWeftError = (code) => (err) => err instanceof WeftError && err.code === code;
const PROCESS = { on: 'process' };

// "<pid> <runs in that child> <userData>" -> { pid, runs, arg }
function parse(buf) {
  const [pid, runs, ...rest] = buf.toString().split(' ');
  return { pid: Number(pid), runs: Number(runs), arg: rest.join(' ') };
}

// This process's children (running or zombie), from /proc; null where the kernel does
// not list them (CONFIG_PROC_CHILDREN).
const LISTS_CHILDREN = fs.existsSync(`/proc/self/task/${process.pid}/children`);
function children() {
  if (!LISTS_CHILDREN) return null;
  const pids = [];
  for (const tid of fs.readdirSync('/proc/self/task')) {
    let text = '';
    try {
      text = fs.readFileSync(`/proc/self/task/${tid}/children`, 'utf8').trim();
    } catch {
      continue; // the thread exited
    }
    if (text) pids.push(...text.split(' ').map(Number));
  }
  return pids;
}

// Waits (up to `ms`) until `pid` is gone from /proc: killed and reaped, not a zombie.
async function assertReaped(pid, ms = 2000) {
  const end = Date.now() + ms;
  let state = null;
  for (;;) {
    try {
      state = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '')[0];
    } catch {
      return;
    }
    if (Date.now() > end) break;
    await sleep(5);
  }
  assert.fail(`child ${pid} is still there, state ${state}${state === 'Z' ? ' (a zombie)' : ''}`);
}

// Every loop of a test is closed and idle: no child of this process is left.
async function assertNoChildren() {
  const end = Date.now() + 2000;
  let left = children();
  while (left !== null && left.length > 0 && Date.now() < end) {
    await sleep(5);
    left = children();
  }
  if (left !== null) assert.deepEqual(left, [], 'children left behind');
}

test.after(() => assert.equal(weft.diagnostics().foreignCalls, 0));
test.afterEach(assertNoChildren);

test('process: resolves with the bytes the work wrote, in a child that has userData', async () => {
  const pw = processWork();
  const loop = new Loop();
  const kept = Buffer.from('through a pointer\0');
  const [str, buf, ptr, none] = await Promise.all([
    loop.spawn(pw.pid, 'a string', PROCESS),
    loop.spawn(pw.pid, Buffer.from('a buffer'), PROCESS),
    loop.spawn(pw.pid, koffi.address(kept), PROCESS), // valid in the child's copy
    loop.spawn(pw.pid, null, PROCESS),
  ]);
  assert.ok(Buffer.isBuffer(str));
  for (const r of [str, buf, ptr, none]) assert.notEqual(parse(r).pid, process.pid);
  assert.equal(parse(str).arg, 'a string');
  assert.equal(parse(buf).arg, 'a buffer');
  assert.equal(parse(ptr).arg, 'through a pointer');
  assert.equal(parse(none).arg, '');
  assert.equal(loop.size, 0);
  loop.close();
});

test('process: with reuse, 20 tasks under maxChildren 2 run in at most 4 children', async () => {
  const pw = processWork();
  const loop = new Loop();
  const results = (await Promise.all(Array.from({ length: 20 },
    (_, i) => loop.spawn(pw.pid, String(i), { on: 'process', maxChildren: 2 })))).map(parse);
  assert.deepEqual(results.map((r) => r.arg), Array.from({ length: 20 }, (_, i) => String(i)));
  const pids = new Set(results.map((r) => r.pid));
  assert.ok(pids.size >= 2 && pids.size <= 4, `${pids.size} children`);
  // A reused child keeps its globals: its later tasks see the earlier ones' runs.
  assert.ok(Math.max(...results.map((r) => r.runs)) > 1);
  for (const pid of pids) {
    const runs = results.filter((r) => r.pid === pid).map((r) => r.runs);
    assert.deepEqual(runs, Array.from({ length: runs.length }, (_, i) => i + 1), `child ${pid}`);
  }
  loop.close();
});

test('process: reuse: false forks a fresh child for each of 20 tasks', async () => {
  const pw = processWork();
  const loop = new Loop();
  const results = (await Promise.all(Array.from({ length: 20 },
    (_, i) => loop.spawn(pw.pid, String(i), { on: 'process', maxChildren: 2, reuse: false })))).map(parse);
  assert.equal(new Set(results.map((r) => r.pid)).size, 20);
  assert.ok(results.every((r) => r.runs === 1));
  loop.close();
});

test('process: a reused child runs only tasks spawned before its fork', async () => {
  const pw = processWork();
  const loop = new Loop();
  const opts = { on: 'process', maxChildren: 1 };
  const a = loop.spawn(pw.pid, 'a', opts); // forks here
  const b = loop.spawn(pw.pid, 'b', opts); // waits: spawned after a's fork
  const c = loop.spawn(pw.pid, 'c', opts); // waits, then runs in b's child
  const [ra, rb, rc] = (await Promise.all([a, b, c])).map(parse);
  assert.notEqual(ra.pid, rb.pid);
  assert.equal(rb.pid, rc.pid);
  assert.deepEqual([ra.runs, rb.runs, rc.runs], [1, 1, 2]);
  const rd = parse(await loop.spawn(pw.pid, 'd', opts)); // after every fork: a fresh child
  assert.ok(![ra.pid, rb.pid].includes(rd.pid));
  loop.close();
});

test('process: events the child emits reach subscribers before the promise settles', async () => {
  const pw = processWork();
  const loop = new Loop();
  const seen = [];
  const sub = loop.subscribe('child.*', (topic, payload) => seen.push(`${topic}=${payload}`));
  const results = await Promise.all([1, 2, 3].map((k) => loop.spawn(pw.emit, `child.t${k} 50`, PROCESS)
    .then((r) => {
      // Every event of this task is in, in emit order.
      const mine = seen.filter((e) => e.startsWith(`child.t${k}=`));
      assert.deepEqual(mine, Array.from({ length: 50 }, (_, i) => `child.t${k}=${i + 1}`));
      return r.toString();
    })));
  assert.deepEqual(results, ['emitted 50', 'emitted 50', 'emitted 50']);
  assert.equal(seen.length, 150);
  sub.cancel();
  loop.close();
});

test('process: a child that aborts rejects with WEFT_ERR_CRASHED naming SIGABRT', async () => {
  const pw = processWork();
  const loop = new Loop();
  await assert.rejects(loop.spawn(pw.crash, null, PROCESS), (err) => {
    assert.ok(err instanceof WeftError);
    assert.equal(err.code, 'WEFT_ERR_CRASHED');
    assert.equal(err.errno, weft.ffi.WEFT_ERR_CRASHED);
    assert.match(err.message, /SIGABRT/);
    assert.match(err.message, /signal 6/);
    return true;
  });
  // The next task, reused or not, runs in a healthy child.
  assert.equal(parse(await loop.spawn(pw.pid, 'after', PROCESS)).arg, 'after');
  loop.close();
});

test('process: a non-zero status rejects with a TaskError holding the result', async () => {
  const pw = processWork();
  const loop = new Loop();
  await assert.rejects(loop.spawn(pw.status, '7', PROCESS), (err) => {
    assert.ok(err instanceof TaskError);
    assert.equal(err.status, 7);
    assert.equal(err.result.toString(), '7');
    return true;
  });
  loop.close();
});

test('process: a timeout kills the child and rejects with WEFT_ERR_TIMEOUT; no zombie', async () => {
  const pw = processWork();
  const loop = new Loop();
  let pid = 0;
  loop.subscribe('proc.sleep', (topic, payload) => { pid = Number(payload.toString()); });
  const start = Date.now();
  await assert.rejects(loop.spawn(pw.sleep, '5000', { on: 'process', timeout: 100 }),
    isWeftError('WEFT_ERR_TIMEOUT'));
  const ms = Date.now() - start;
  assert.ok(ms >= 100 && ms < 2000, `rejected after ${ms} ms`);
  assert.ok(pid > 0 && pid !== process.pid, 'the child said its pid');
  await assertReaped(pid);
  // Within the deadline: resolves.
  assert.equal((await loop.spawn(pw.sleep, '1', { on: 'process', timeout: 2000 })).toString(), 'slept');
  loop.close();
});

test('process: an abort kills the child and rejects at once; no zombie', async () => {
  const pw = processWork();
  const loop = new Loop();
  const ac = new AbortController();
  const start = Date.now();
  const p = loop.spawn(pw.sleep, '5000', { on: 'process', signal: ac.signal });
  let pid = 0;
  loop.subscribe('proc.sleep', (topic, payload) => {
    pid = Number(payload.toString());
    ac.abort(new Error('enough'));
  });
  await assert.rejects(p, (err) => {
    assert.ok(err instanceof AbortError);
    assert.equal(err.cause.message, 'enough');
    return true;
  });
  assert.ok(pid > 0);
  // The task stays registered until weft has reaped the killed child.
  while (loop.size > 1) await sleep(5); // the subscription stays
  assert.ok(Date.now() - start < 2000, `${Date.now() - start} ms`);
  await assertReaped(pid);
  await assert.rejects(loop.spawn(pw.pid, null, { on: 'process', signal: AbortSignal.abort() }), AbortError);
  assert.equal(loop.size, 1);
  loop.close();
});

test('process: 120 mixed tasks, some aborted, each settle exactly once as expected', async () => {
  const pw = processWork();
  const loop = new Loop();
  const settled = new Array(120).fill(0);
  const aborts = [];
  const promises = Array.from({ length: 120 }, (_, i) => {
    const opts = { on: 'process', maxChildren: 3, reuse: i % 5 !== 0 };
    let p;
    switch (i % 4) {
      case 0: p = loop.spawn(pw.pid, String(i), opts); break;
      case 1: p = loop.spawn(pw.status, String(i), opts); break;
      case 2: {
        const ac = new AbortController();
        aborts.push(ac);
        p = loop.spawn(pw.sleep, '5000', { ...opts, signal: ac.signal });
        break;
      }
      default: p = i % 8 === 3 ? loop.spawn(pw.crash, null, opts) : loop.spawn(pw.emit, `mixed.${i} 2`, opts);
    }
    return p.finally(() => { settled[i]++; });
  });
  setTimeout(() => { for (const ac of aborts) ac.abort(); }, 50);
  const outcomes = await Promise.allSettled(promises);
  assert.deepEqual(settled, new Array(120).fill(1));
  outcomes.forEach((o, i) => {
    const what = `task ${i}`;
    switch (i % 4) {
      case 0: assert.equal(parse(o.value).arg, String(i), what); break;
      case 1: assert.ok(o.reason instanceof TaskError && o.reason.status === i, what); break;
      case 2: assert.ok(o.reason instanceof AbortError, what); break;
      default:
        if (i % 8 === 3) assert.ok(isWeftError('WEFT_ERR_CRASHED')(o.reason), what);
        else assert.equal(o.value.toString(), 'emitted 2', what);
    }
  });
  while (loop.size > 0) await sleep(5);
  await sleep(20);
  assert.deepEqual(settled, new Array(120).fill(1));
  loop.close();
});

test('process: close with children running rejects with WEFT_ERR_CLOSED and reaps them', async () => {
  const pw = processWork();
  const loop = new Loop();
  const pids = [];
  loop.subscribe('proc.sleep', (topic, payload) => pids.push(Number(payload.toString())));
  const ps = [1, 2, 3].map(() => loop.spawn(pw.sleep, '5000', { on: 'process', maxChildren: 2 }));
  while (pids.length < 2) await sleep(5);
  loop.close();
  for (const p of ps) await assert.rejects(p, isWeftError('WEFT_ERR_CLOSED'));
  for (const pid of pids) await assertReaped(pid, 500);
});

test('process: bad options are refused with TypeError or RangeError', async () => {
  const pw = processWork();
  const em = emitter();
  const loop = new Loop();
  const bad = (opts, type) => assert.rejects(loop.spawn(pw.pid, null, opts), type, inspect(opts));
  await bad({ on: 'process', reuse: 1 }, TypeError);
  await bad({ on: 'process', reuse: 'yes' }, TypeError);
  await bad({ on: 'process', reuse: null }, TypeError);
  await bad({ on: 'process', maxChildren: -1 }, RangeError);
  await bad({ on: 'process', maxChildren: 1.5 }, RangeError);
  await bad({ on: 'process', maxChildren: 2 ** 32 }, RangeError);
  await bad({ on: 'process', maxChildren: NaN }, RangeError);
  await bad({ on: 'process', maxChildren: -1n }, RangeError);
  await bad({ on: 'process', maxChildren: '2' }, TypeError);
  await bad({ on: 'cpu', reuse: true }, TypeError);
  await bad({ reuse: false }, TypeError);
  await bad({ on: 'io', maxChildren: 2 }, TypeError);
  await bad({ on: 'process', timeout: -1 }, RangeError);
  await bad({ on: 'Process' }, TypeError);
  await assert.rejects(loop.spawn(() => 0, null, PROCESS), TypeError); // JS never runs in the child
  await assert.rejects(loop.spawn(pw.pid + 1n, null, PROCESS), TypeError);
  assert.equal(loop.size, 0);
  // The bounds themselves are fine.
  assert.equal(parse(await loop.spawn(pw.pid, 'max', { on: 'process', maxChildren: 2 ** 32 - 1 })).arg, 'max');
  assert.equal(parse(await loop.spawn(pw.pid, 'big', { on: 'process', maxChildren: 1n, reuse: false })).arg, 'big');
  assert.equal(parse(await loop.spawn(pw.pid, 'undef', { on: 'process', maxChildren: undefined, reuse: undefined })).arg, 'undef');
  // Other libraries' work functions run in children too.
  assert.equal((await loop.spawn(em.sum, '2 3', PROCESS)).toString(), '5');
  loop.close();
});

test('process: the child closes fds above stderr but keepFds; inheritFds keeps them all', async () => {
  const { fds } = processWork();
  const fd = fs.openSync('/dev/null', 'r');
  const loop = new Loop();
  try {
    const open = async (options) => {
      const out = await loop.spawn(fds, null, { ...PROCESS, reuse: false, ...options });
      return out.toString().trim().split(' ').map(Number);
    };
    const closing = await open({});
    assert.ok(!closing.includes(fd), `the child has fd ${fd}: ${closing}`);
    assert.ok([0, 1, 2].every((n) => closing.includes(n)), `std fds: ${closing}`);
    assert.ok((await open({ keepFds: [fd] })).includes(fd));
    assert.ok((await open({ inheritFds: true })).includes(fd));
    await assert.rejects(loop.spawn(fds, null, { keepFds: [fd] }), TypeError);
    await assert.rejects(loop.spawn(fds, null, { ...PROCESS, keepFds: [-1] }), RangeError);
    await assert.rejects(loop.spawn(fds, null, { ...PROCESS, keepFds: 3 }), TypeError);
    await assert.rejects(loop.spawn(fds, null, { ...PROCESS, inheritFds: 1 }), TypeError);
  } finally {
    loop.close();
    fs.closeSync(fd);
  }
});
