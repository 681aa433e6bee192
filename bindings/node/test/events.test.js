// weft.Loop publish/subscribe: emit from JS, from a C library's own threads, and from
// task work; patterns, payload types, ordering, bad input; and the thread rule: every
// callback runs on the JS thread, inside the loop's own weft pass.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { setTimeout: sleep } = require('node:timers/promises');

const { weft, emitter, libc } = require('../test-support/native.js');

const { Loop, WeftError } = weft;
const isWeftError = (code) => (err) => err instanceof WeftError && err.code === code;

test.after(() => assert.equal(weft.diagnostics().foreignCalls, 0));

// Collects events until `until(topic, payload)` is true; resolves with them.
function collect(loop, pattern, until) {
  const events = [];
  return new Promise((resolve) => {
    loop.subscribe(pattern, (topic, payload, h) => {
      events.push([topic, payload]);
      if (until(topic, payload)) {
        h.cancel();
        resolve(events);
      }
    });
  });
}

test('emit: a Buffer, a string, a Uint8Array, an ArrayBuffer or nothing; payloads are copies', async () => {
  const loop = new Loop();
  const buf = Buffer.from('bytes\0with nul');
  const got = collect(loop, 'p.*', (topic) => topic === 'p.end');
  assert.equal(loop.emit('p.buffer', buf), true);
  buf.fill(0); // weft copied it inside emit
  loop.emit('p.string', 'héllo');
  loop.emit('p.u8', new Uint8Array([1, 2, 3]));
  loop.emit('p.slice', Buffer.from('xxabcxx').subarray(2, 5));
  loop.emit('p.view', new Uint16Array([0x0201]));
  loop.emit('p.ab', new Uint8Array([9, 8]).buffer);
  loop.emit('p.empty', '');
  loop.emit('p.end');
  const events = await got;
  assert.deepEqual(events.map(([t]) => t),
    ['p.buffer', 'p.string', 'p.u8', 'p.slice', 'p.view', 'p.ab', 'p.empty', 'p.end']);
  for (const [, payload] of events) assert.ok(Buffer.isBuffer(payload));
  assert.equal(events[0][1].toString(), 'bytes\0with nul');
  assert.equal(events[1][1].toString(), 'héllo');
  assert.deepEqual([...events[2][1]], [1, 2, 3]);
  assert.equal(events[3][1].toString(), 'abc');
  assert.deepEqual([...events[4][1]], [1, 2]);
  assert.deepEqual([...events[5][1]], [9, 8]);
  assert.equal(events[6][1].length, 0);
  assert.equal(events[7][1].length, 0);
  loop.close();
});

test('patterns: exact, prefix.*, and *; each subscriber gets its events in emit order', async () => {
  const loop = new Loop();
  const exact = collect(loop, 'job.done', () => true);
  const prefix = collect(loop, 'job.*', (t) => t === 'job.done');
  const all = collect(loop, '*', (t) => t === 'job.done');
  loop.emit('job', 'not under job.');
  loop.emit('other', '1');
  for (let i = 0; i < 100; i++) loop.emit('job.step', String(i));
  loop.emit('job.a.b', 'deep');
  loop.emit('job.done', 'ok');
  const [e, p, a] = await Promise.all([exact, prefix, all]);
  assert.deepEqual(e.map(([t, b]) => [t, b.toString()]), [['job.done', 'ok']]);
  assert.equal(p.length, 102);
  assert.deepEqual(p.slice(0, 100).map(([, b]) => Number(b)), [...Array(100).keys()]);
  assert.equal(p[100][0], 'job.a.b');
  assert.deepEqual(a.slice(0, 2).map(([t]) => t), ['job', 'other']);
  assert.equal(a.length, 104);
  loop.close();
});

test('a subscriber may emit, subscribe and cancel itself from its callback', async () => {
  const loop = new Loop();
  const seen = [];
  await new Promise((resolve) => {
    loop.subscribe('ping', (topic, payload, h) => {
      const n = Number(payload);
      seen.push(n);
      if (n < 3) loop.emit('ping', String(n + 1));
      else {
        h.cancel();
        loop.subscribe('late', (t, p, h2) => { h2.cancel(); resolve(); });
        loop.emit('late');
        loop.emit('ping', '99'); // nobody listens any more
      }
    });
    loop.emit('ping', '0');
  });
  assert.deepEqual(seen, [0, 1, 2, 3]);
  await sleep(10);
  assert.deepEqual(seen, [0, 1, 2, 3]);
  loop.close();
});

test('bad patterns, topics and payloads', () => {
  const loop = new Loop();
  const fn = () => {};
  for (const pattern of ['', 'a*', 'a.*.b', '**', '*.a']) {
    assert.throws(() => loop.subscribe(pattern, fn), isWeftError('WEFT_ERR_INVALID'), pattern);
  }
  assert.throws(() => loop.subscribe('a\0b', fn), TypeError);
  assert.throws(() => loop.subscribe(5, fn), TypeError);
  assert.throws(() => loop.subscribe('a', 'fn'), TypeError);
  for (const topic of ['', 'a.*', '*']) {
    assert.throws(() => loop.emit(topic, 'x'), (err) => err.code === 'WEFT_ERR_INVALID' && /weft_emit/.test(err.message), topic);
  }
  assert.throws(() => loop.emit('a\0b', 'x'), TypeError);
  assert.throws(() => loop.emit(null, 'x'), TypeError);
  assert.throws(() => loop.emit('a', 5), TypeError);
  assert.throws(() => loop.emit('a', { length: 3 }), TypeError);
  assert.throws(() => loop.emit('a', [1, 2]), TypeError);
  assert.equal(loop.size, 0);
  loop.close();
});

test('events a C library emits from its own thread arrive in order, on the JS thread', async () => {
  const em = emitter();
  const loop = new Loop();
  const jsTid = libc.gettid();
  let count = 0;
  let outOfOrder = 0;
  let outsidePass = 0;
  let otherThread = 0;
  const N = 20000;
  const done = new Promise((resolve) => {
    loop.subscribe('c.*', (topic, payload, h) => {
      if (!weft.diagnostics().running) outsidePass++;
      if (count % 1000 === 0 && libc.gettid() !== jsTid) otherThread++;
      if (topic === 'c.done') {
        h.cancel();
        resolve(Number(payload));
      } else if (Number(payload) !== count++) {
        outOfOrder++;
      }
    });
  });
  const handle = em.start(loop.pointer, 'c', N, 0);
  assert.notEqual(handle, null);
  assert.equal(await done, N);
  assert.equal(count, N);
  assert.equal(outOfOrder, 0);
  assert.equal(outsidePass, 0);
  assert.equal(otherThread, 0);
  assert.equal(await em.joinAsync(handle), 0); // every weft_emit succeeded
  loop.close();
});

test('two C threads at once: each thread\'s events stay in order', async () => {
  const em = emitter();
  const loop = new Loop();
  const next = { a: 0, b: 0 };
  let bad = 0;
  let ends = 0;
  const done = new Promise((resolve) => {
    loop.subscribe('*', (topic, payload, h) => {
      const [src, kind] = topic.split('.');
      if (kind === 'done') {
        if (++ends === 2) { h.cancel(); resolve(); }
      } else if (Number(payload) !== next[src]++) {
        bad++;
      }
    });
  });
  const a = em.start(loop.pointer, 'a', 5000, 0);
  const b = em.start(loop.pointer, 'b', 5000, 10);
  await done;
  assert.deepEqual(next, { a: 5000, b: 5000 });
  assert.equal(bad, 0);
  await Promise.all([em.joinAsync(a), em.joinAsync(b)]);
  loop.close();
});

test('events emitted by task work arrive before the task resolves', async () => {
  const em = emitter();
  const loop = new Loop();
  const seen = [];
  const sub = loop.subscribe('work.progress', (topic, payload) => seen.push(Number(payload)));
  const result = await loop.spawn(em.progress, 'work.progress 50', { on: 'cpu' });
  assert.equal(result.toString(), 'done');
  assert.deepEqual(seen, Array.from({ length: 50 }, (_, i) => i + 1));
  sub.cancel();
  loop.close();
});

test('emit from JS: topics alternating, long and odd ones, string payloads of every size, in order', async () => {
  const loop = new Loop();
  const long = `long.${'x'.repeat(2000)}`;          // beyond emit's scratch space for a topic
  const big = 'é'.repeat(40000);                   // 80,000 bytes: beyond it for a payload
  const emitted = [
    ['a.one', '1'], ['a.two', '22'], ['a.one', ''], [long, 'L'], ['a.two', big],
    ['a.one', Buffer.from('buf')], ['a.\u00e9t\u00e9', 'ünïcödé ✓ 😀'], ['a.one', '\ud800 lone'],
    ['a.two', 'x'.repeat(21000)], ['a.two', 'x'.repeat(63 * 1024)], ['a.one', undefined],
    ['a.end', 'end'],
  ];
  const got = collect(loop, '*', (topic) => topic === 'a.end');
  for (const [topic, payload] of emitted) loop.emit(topic, payload);
  const events = await got;
  assert.deepEqual(events.map(([t]) => t), emitted.map(([t]) => t));
  events.forEach(([, payload], i) => {
    const sent = emitted[i][1];
    assert.deepEqual(payload, sent === undefined ? Buffer.alloc(0) : Buffer.from(sent));
  });
  // A bad topic is refused however the last good one was cached.
  loop.emit('a.one', 'ok');
  assert.throws(() => loop.emit('a.one\0', 'x'), TypeError);
  assert.throws(() => loop.emit(1, 'x'), TypeError);
  assert.throws(() => loop.emit('a.one', 5), TypeError);
  assert.throws(() => loop.emit('', 'x'), isWeftError('WEFT_ERR_INVALID'));
  assert.throws(() => loop.emit('a.*', 'x'), isWeftError('WEFT_ERR_INVALID'));
  assert.throws(() => loop.emit(`${long}*`, 'x'), isWeftError('WEFT_ERR_INVALID'));
  loop.close();
  assert.throws(() => loop.emit('a.one', 'x'), isWeftError('WEFT_ERR_CLOSED'));
});

test('an exact subscription gets its topic as weft delivers it; patterns get each topic', async () => {
  const loop = new Loop();
  const exact = collect(loop, 'x.\u00e9', () => true);
  const lone = collect(loop, 'x.\ud800', () => true);  // weft gets U+FFFD for the lone surrogate
  const prefix = collect(loop, 'x.*', (t) => t === 'x.end');
  loop.emit('x.\u00e9', '1');
  loop.emit('x.\ufffd', '2');
  loop.emit('x.end');
  const [e, l, p] = await Promise.all([exact, lone, prefix]);
  assert.deepEqual(e.map(([t, b]) => [t, b.toString()]), [['x.\u00e9', '1']]);
  assert.deepEqual(l.map(([t, b]) => [t, b.toString()]), [['x.\ufffd', '2']]);
  assert.deepEqual(p.map(([t]) => t), ['x.\u00e9', 'x.\ufffd', 'x.end']);
  loop.close();
});

test('a C thread and JS emit to one exact topic at once: each source in order, none lost', async () => {
  const em = emitter();
  const loop = new Loop();
  const N = 20000;
  const fromC = [];
  const fromJs = [];
  const done = new Promise((resolve) => {
    loop.subscribe('mix.done', (topic, payload, h) => { h.cancel(); resolve(); });
  });
  let lastJs;
  const jsDone = new Promise((resolve) => { lastJs = resolve; });
  loop.subscribe('mix.tick', (topic, payload) => {
    assert.equal(topic, 'mix.tick');
    const s = payload.toString();
    if (s.startsWith('js')) {
      fromJs.push(Number(s.slice(2)));
      if (fromJs.length === N) lastJs();
    } else {
      fromC.push(Number(s));
    }
  });
  const handle = em.start(loop.pointer, 'mix', N, 0);
  for (let i = 0; i < N; i++) loop.emit('mix.tick', `js${i}`);
  await Promise.all([done, jsDone]);
  em.join(handle);
  assert.equal(fromC.length, N);
  assert.equal(fromJs.length, N);
  assert.ok(fromC.every((v, i) => v === i), 'C events out of order');
  assert.ok(fromJs.every((v, i) => v === i), 'JS events out of order');
  loop.close();
});
