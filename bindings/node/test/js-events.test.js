// Events emitted in JS while no native code sees the loop (lib/events.js): the binding
// delivers them itself, and nothing but timing may tell: each scenario runs twice, on a
// JS-only loop and on one whose pointer was read (every event through weft), and both
// must log the same.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { setTimeout: sleep } = require('node:timers/promises');

const { weft } = require('../test-support/native.js');

const { Loop } = weft;

test.after(() => assert.equal(weft.diagnostics().foreignCalls, 0));

// Runs scenario(loop, log, done) on a fresh loop, JS-only or native; resolves with the log
// once done() is called (and 20 ms more have passed without a new entry being wrong).
async function run(native, scenario) {
  const loop = new Loop();
  if (native) assert.equal(typeof loop.pointer, 'bigint');
  // Counts the binding's drains (white box: the JS-only loop must use its own path).
  let drains = 0;
  const fire = loop._events.fire;
  loop._events.fire = function countedFire() {
    drains++;
    return fire.call(this);
  };
  const log = [];
  try {
    await new Promise((resolve) => scenario(loop, log, resolve));
    await sleep(20);
  } finally {
    loop.close();
  }
  assert.equal(drains > 0, !native, `${drains} drains on a ${native ? 'native' : 'JS-only'} loop`);
  return log;
}

async function same(scenario) {
  const viaJs = await run(false, scenario);
  const viaWeft = await run(true, scenario);
  assert.deepEqual(viaJs, viaWeft);
  return viaJs;
}

test('one event\'s subscribers run in weft\'s order: the exact topic\'s, then prefixes, then *', async () => {
  const log = await same((loop, log, done) => {
    const sub = (pattern, tag) => loop.subscribe(pattern, (t, p) => {
      log.push([tag, t, p.toString()]);
      if (t === 'a.end' && tag === 'all2') done();
    });
    sub('*', 'all1');
    sub('a.*', 'pre1');
    sub('a.b', 'ex1');
    sub('a.b.*', 'pre2');
    sub('a.b', 'ex2');
    sub('*', 'all2');
    loop.emit('a.b', '1');
    loop.emit('a.b.c', '2');
    loop.emit('b', '3');
    loop.emit('a.end');
  });
  assert.deepEqual(log.slice(0, 6).map(([tag]) => tag), ['ex1', 'ex2', 'pre1', 'all1', 'all2', 'pre1']);
});

test('callbacks that subscribe, cancel, emit and mutate their payload', async () => {
  await same((loop, log, done) => {
    let late = null;
    let victim = null;
    loop.subscribe('x.*', (t, p, h) => {
      log.push(['first', t, p.toString()]);
      p.fill(0x21); // the next subscriber has a copy of its own
      if (t === 'x.sub' && late === null) {
        late = loop.subscribe('x.*', (t2, p2) => log.push(['late', t2, p2.toString()]));
      }
      if (t === 'x.cancel') victim.cancel(); // it runs after this one for the same event
      if (t === 'x.emit') loop.emit('x.again', 'from a callback');
      if (t === 'x.end') {
        h.cancel();
        done();
      }
    });
    victim = loop.subscribe('*', (t, p) => log.push(['victim', t, p.toString()]));
    loop.emit('x.one', 'a');
    loop.emit('x.sub', 'b');   // `late` gets the next events, not this one
    loop.emit('x.two', Buffer.from('c'));
    loop.emit('x.emit', new Uint8Array([100, 101]));
    loop.emit('x.cancel', 'e');
    loop.emit('x.three', 'f');
    loop.emit('x.end');
  });
});

test('an exception goes to the loop\'s error listeners; the other subscribers and events run', async () => {
  await same((loop, log, done) => {
    loop.on('error', (err) => log.push(['error', err.message]));
    loop.subscribe('e', (t, p) => {
      if (p.toString() === 'throw') throw new Error('boom');
      log.push(['one', p.toString()]);
    });
    loop.subscribe('e', (t, p, h) => {
      log.push(['two', p.toString()]);
      if (p.toString() === 'last') {
        h.cancel();
        setImmediate(done);
      }
    });
    for (const s of ['a', 'throw', 'b', 'last']) loop.emit('e', s);
  });
});

test('close() in a callback: the events still queued never run', async () => {
  const log = await same((loop, log, done) => {
    loop.subscribe('c', (t, p) => {
      log.push(p.toString());
      if (p.toString() === '2') {
        loop.close();
        setTimeout(done, 10);
      }
    });
    for (let i = 0; i < 5; i++) loop.emit('c', String(i));
  });
  assert.deepEqual(log, ['0', '1', '2']);
});

test('reading loop.pointer with JS events queued: they arrive first, then the later ones', async () => {
  const loop = new Loop();
  const got = [];
  const done = new Promise((resolve) => {
    loop.subscribe('p', (t, p, h) => {
      got.push(Number(p));
      if (got.length === 200) {
        h.cancel();
        resolve();
      }
    });
  });
  for (let i = 0; i < 100; i++) loop.emit('p', String(i));
  assert.equal(typeof loop.pointer, 'bigint');
  for (let i = 100; i < 200; i++) loop.emit('p', String(i));
  await done;
  assert.deepEqual(got, [...Array(200).keys()]);
  loop.close();
});

test('a flood of JS events runs inside weft passes, a bounded number per pass, in order', async () => {
  const loop = new Loop();
  const N = 20000;
  let next = 0;
  let outside = 0;
  let bad = 0;
  let timerRan = -1;
  const passes0 = weft.diagnostics().passes;
  setTimeout(() => { timerRan = next; }, 0);
  await new Promise((resolve) => {
    loop.subscribe('f', (t, p, h) => {
      if (!weft.diagnostics().running) outside++;
      if (Number(p) !== next++) bad++;
      if (next === N) {
        h.cancel();
        resolve();
      }
    });
    for (let i = 0; i < N; i++) loop.emit('f', String(i));
  });
  assert.equal(bad, 0);
  assert.equal(outside, 0);
  assert.ok(weft.diagnostics().passes - passes0 >= Math.ceil(N / 4096), 'one pass ran them all');
  assert.ok(timerRan >= 0 && timerRan < N, `Node's timer waited for the whole flood (${timerRan})`);
  loop.close();
});

test('a topic weft refuses is refused the same way; nothing is queued', async () => {
  for (const native of [false, true]) {
    const loop = new Loop();
    try {
      await refusedTopics(loop, native);
    } finally {
      loop.close(); // a failure must not leave the loop's poll handle keeping Node alive
    }
  }
});

async function refusedTopics(loop, native) {
  if (native) assert.equal(typeof loop.pointer, 'bigint');
  const got = [];
  const ok = new Promise((resolve) => {
    loop.subscribe('*', (t) => {
      got.push(t);
      if (t === 'ok') resolve();
    });
  });
  for (const topic of ['', 'a.*', '*']) {
    assert.throws(() => loop.emit(topic, 'x'), (err) => err.code === 'WEFT_ERR_INVALID' && /weft_emit/.test(err.message));
  }
  loop.emit('ok');
  await ok;
  assert.deepEqual(got, ['ok']);
}

test('subscription order survives cancels in any order (holes, compaction); weft agrees', async () => {
  await same((loop, log, done) => {
    const n = 600;
    const handles = [];
    for (let i = 0; i < n; i++) {
      const pattern = i % 3 === 0 ? '*' : i % 3 === 1 ? 't' : 't.*';
      handles.push(loop.subscribe(pattern, (t, p) => log.push([i, t, p.toString()])));
    }
    const order = [...Array(n).keys()].sort((a, b) => ((a * 7919) % 613) - ((b * 7919) % 613));
    let k = 0;
    for (const i of order) {
      if ((i * 31) % 10 < 7) handles[i].cancel();
      if (++k % 97 === 0) loop.emit('t', `after ${k}`);
    }
    loop.emit('t.x', 'prefix');
    loop.subscribe('t.end', (t, p, h) => {
      h.cancel();
      done();
    });
    loop.emit('t.end');
  });
});

test('the JS index: 100,000 subscriptions to one pattern, then all cancelled, in linear time', () => {
  // White box, on the index alone (weft's own index is the core's business).
  const { EventQueue } = require('../lib/events.js');
  const q = new EventQueue({});
  for (const pattern of ['*', 'a.*', 'a']) {
    const hs = Array.from({ length: 100000 }, () => ({ _pattern: null, active: true }));
    const start = performance.now();
    for (const h of hs) q.add(h, pattern);
    for (let i = hs.length - 1; i >= 0; i -= 2) q.remove(hs[i]);
    for (let i = 0; i < hs.length; i += 2) q.remove(hs[i]);
    const ms = performance.now() - start;
    assert.ok(ms < 5000, `${pattern}: ${ms.toFixed(0)} ms`);
  }
  assert.equal(q.all.items.length + q.prefix.items.length + q.exact.size, 0);
});
