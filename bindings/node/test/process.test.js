// Whole-process behaviour, in child `node` processes: a script exits by itself once its
// weft work is done (and at once when nothing is registered); exceptions thrown by
// callbacks surface as 'error' events or uncaught exceptions, never swallowed, never a
// crash; weft_shutdown runs at exit; the ESM entry; a Loop in a worker thread.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const path = require('node:path');

const { weft, emitter, pipe, libc } = require('../test-support/native.js');

const BINDING = path.resolve(__dirname, '..');
const SUPPORT = path.resolve(__dirname, '..', 'test-support', 'native.js');
const PRELUDE = `const weft = require(${JSON.stringify(BINDING)});\n`;

// Runs `code` in a child node; resolves with { code, signal, stdout, stderr, ms }.
function run(code, { args = [], timeout = 15000, prelude = PRELUDE } = {}) {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const child = spawn(process.execPath, [...args, '-e', prelude + code], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeout);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: Number(process.hrtime.bigint() - start) / 1e6 });
    });
  });
}

function ok(r) {
  assert.equal(r.signal, null, `killed (hung?): ${r.stderr}`);
  assert.equal(r.code, 0, r.stderr);
  return r;
}

test.after(() => assert.equal(weft.diagnostics().foreignCalls, 0));

test('exit: nothing registered, or only unref\'d or finished work, exits at once', async () => {
  const [base, ...variants] = await Promise.all([
    run(''),
    run('new weft.Loop();'),
    run('const l = new weft.Loop(); l.every(60000, () => {}).unref(); l.subscribe("x", () => {}).unref();'),
    run('const l = new weft.Loop(); const s = l.subscribe("x", () => {}); l.after(60000, () => {}).cancel(); s.cancel();'),
    run('const l = new weft.Loop(); l.after(0, () => console.log("fired"));'),
  ]);
  ok(base);
  for (const r of variants) {
    ok(r);
    // Node's own start-up, plus a margin for a loaded machine; a pending timer would be 60 s.
    assert.ok(r.ms < base.ms + 2000, `took ${r.ms} ms (bare start-up: ${base.ms} ms)`);
  }
  assert.equal(variants[3].stdout, 'fired\n');
});

test('exit: pending timers, intervals and tasks keep the script alive until they are done', async () => {
  const r = ok(await run(`
    const l = new weft.Loop();
    const t0 = Date.now();
    l.after(300, () => console.log('after', Date.now() - t0 >= 300));
    let n = 0;
    l.every(50, (h) => { if (++n === 4) { h.cancel(); console.log('every done'); } });
    const em = weft.ffi.koffi.load(${JSON.stringify(emitter().file)});
    l.spawn(em.symbol('emitter_work_sleep'), '150', { on: 'io' }).then((b) => console.log('task', b.toString()));
    process.on('exit', () => console.log('exit', Date.now() - t0 >= 300));
  `));
  const lines = r.stdout.trim().split('\n');
  assert.deepEqual(lines.slice().sort(), ['after true', 'every done', 'exit true', 'task slept']);
  assert.equal(lines[3], 'exit true');
  assert.ok(r.ms >= 300);
});

test('exit: a script subscribed to a C library\'s thread exits once it unsubscribes', async () => {
  const r = ok(await run(`
    const { emitter } = require(${JSON.stringify(SUPPORT)});
    const em = emitter();
    const loop = new weft.Loop();
    let ticks = 0;
    loop.subscribe('lib.*', (topic, payload, h) => {
      if (topic === 'lib.tick') ticks++;
      else { h.cancel(); console.log('ticks', ticks, 'done', payload.toString()); em.join(handle); }
    });
    const handle = em.start(loop.pointer, 'lib', 50, 2000);
  `));
  assert.equal(r.stdout, 'ticks 50 done 50\n');
});

test('an exception in a callback with no listener is an uncaught exception; the pass still ran', async () => {
  const r = await run(`
    const l = new weft.Loop();
    l.after(10, () => { throw new Error('boom-1'); });
    l.after(10, () => console.log('second ran'));
    l.after(5000, () => console.log('never'));
    // Both deadlines pass before the loop's first pass, so both are due in it (on a
    // loaded machine a pass could otherwise fall between them).
    const t = Date.now();
    while (Date.now() - t < 30) {}
  `);
  assert.equal(r.code, 1, r.stderr);
  assert.equal(r.signal, null);
  assert.match(r.stderr, /Error: boom-1/);
  assert.equal(r.stdout, 'second ran\n');
  assert.ok(r.ms < 4000);
});

test('uncaughtException handlers see it, and the loop carries on', async () => {
  const r = ok(await run(`
    process.on('uncaughtException', (err) => console.log('caught', err.message));
    const l = new weft.Loop();
    l.after(10, () => { throw new Error('boom-2'); });
    l.subscribe('t', () => { throw new TypeError('boom-3'); });
    l.emit('t');
    let n = 0;
    l.every(20, (h) => { if (++n === 3) { h.cancel(); console.log('still running'); } });
    setTimeout(() => l.close(), 200);
  `));
  assert.deepEqual(r.stdout.trim().split('\n').sort(), ['caught boom-2', 'caught boom-3', 'still running']);
});

test('a throwing \'error\' listener is an uncaught exception too', async () => {
  const r = await run(`
    const l = new weft.Loop();
    l.on('error', (err) => { throw new Error('listener: ' + err.message); });
    l.after(1, () => { throw new Error('boom-4'); });
  `);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /listener: boom-4/);
});

test('loop.on(\'error\') receives every exception, whatever was thrown; callbacks keep running', async () => {
  const loop = new weft.Loop();
  const errors = [];
  loop.on('error', (err) => errors.push(err));
  assert.equal(loop.listenerCount('error'), 1);
  assert.throws(() => loop.on('data', () => {}), TypeError);
  const thrown = new Error('from a timer');
  const [r, w] = pipe();
  let ticks = 0;
  await new Promise((resolve) => {
    loop.after(1, () => { throw thrown; });
    loop.subscribe('e', () => { throw 'a string'; });
    loop.emit('e');
    const watch = loop.watch(w, weft.WRITABLE, () => { watch.cancel(); throw new RangeError('from a watch'); });
    loop.every(5, (h) => {
      if (++ticks === 4) { h.cancel(); resolve(); }
      if (ticks === 2) throw null;
    });
  });
  await new Promise((resolve) => setImmediate(resolve)); // errors are reported after the pass
  assert.equal(ticks, 4);
  assert.equal(errors.length, 4);
  assert.ok(errors.includes(thrown));
  assert.ok(errors.includes('a string'));
  assert.ok(errors.includes(null));
  assert.ok(errors.some((e) => e instanceof RangeError && e.message === 'from a watch'));
  libc.close(r);
  libc.close(w);
  loop.close();
});

test('process.exit() inside a callback exits cleanly, with its code', async () => {
  const r = await run(`
    const em = weft.ffi.koffi.load(${JSON.stringify(emitter().file)});
    const l = new weft.Loop();
    l.spawn(em.symbol('emitter_work_sleep'), '100', { on: 'cpu' });
    l.after(20, () => { console.log('exiting'); process.exit(7); });
  `);
  assert.equal(r.code, 7, r.stderr);
  assert.equal(r.stdout, 'exiting\n');
});

test('weft_shutdown at exit: no weft thread is left', async () => {
  const r = ok(await run(`
    const { threadsNamed, threadsNamedSettled } = require(${JSON.stringify(SUPPORT)});
    const em = weft.ffi.koffi.load(${JSON.stringify(emitter().file)});
    const l = new weft.Loop();
    Promise.all([
      l.spawn(em.symbol('emitter_work_sum'), '1', { on: 'cpu' }),
      l.spawn(em.symbol('emitter_work_sum'), '2', { on: 'io' }),
    ]).then(() => console.log('before', threadsNamed('weft-') > 0));
    // Registered after weft's own exit handler, so it runs after weft_shutdown.
    process.on('exit', () => console.log('after', threadsNamedSettled('weft-', 0)));
  `));
  assert.equal(r.stdout, 'before true\nafter 0\n');
});

test('the ESM entry', async () => {
  const r = ok(await run(`
    import weft, { Loop, WeftError, READABLE, WRITABLE } from ${JSON.stringify(path.join(BINDING, 'lib', 'index.mjs'))};
    const loop = new Loop();
    loop.after(1, () => console.log('esm', weft.Loop === Loop, READABLE | WRITABLE, typeof WeftError));
  `, { args: ['--input-type=module'], prelude: '' }));
  assert.equal(r.stdout, 'esm true 3 function\n');
});

test('a Loop in a worker thread; its exit leaves the process\'s pools alone', async () => {
  const r = ok(await run(`
    const { Worker } = require('node:worker_threads');
    const em = weft.ffi.koffi.load(${JSON.stringify(emitter().file)});
    const w = new Worker(\`
      const weft = require(${JSON.stringify(BINDING)});
      const { parentPort } = require('node:worker_threads');
      const l = new weft.Loop();
      l.subscribe('w', (t, p, h) => { h.cancel(); parentPort.postMessage(p.toString()); });
      l.after(5, () => l.emit('w', 'from the worker'));
    \`, { eval: true });
    w.on('message', (m) => console.log(m));
    w.on('exit', async (code) => {
      console.log('worker exit', code);
      const l = new weft.Loop();
      console.log('main', (await l.spawn(em.symbol('emitter_work_sum'), '2 3')).toString());
    });
  `));
  assert.equal(r.stdout, 'from the worker\nworker exit 0\nmain 5\n');
});

test('the examples run, exit 0 by themselves, in a few seconds', async () => {
  const examples = path.resolve(__dirname, '..', '..', '..', 'examples', 'node');
  const [tour, emit] = await Promise.all(['tour.js', 'emitter.js'].map((name) => run(
    `require(${JSON.stringify(path.join(examples, name))});`, { prelude: '' })));
  ok(tour);
  ok(emit);
  assert.match(tour.stdout, /exit 0: nothing left registered/);
  assert.match(emit.stdout, /the C thread emitted 40 ticks, 40 arrived/);
  assert.ok(tour.ms < 5000 && emit.ms < 5000, `tour ${tour.ms} ms, emitter ${emit.ms} ms`);
});
