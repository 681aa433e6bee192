// weft.Loop fd watches: READABLE, WRITABLE, HANGUP, level-triggered, cancel, bad fds.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { setTimeout: sleep } = require('node:timers/promises');

const { weft, libc, pipe } = require('../test-support/native.js');

const { Loop, WeftError, READABLE, WRITABLE, HANGUP } = weft;
const isWeftError = (code) => (err) => err instanceof WeftError && err.code === code;

test.after(() => assert.equal(weft.diagnostics().foreignCalls, 0));

test('READABLE: fires when data arrives, level-triggered until read; HANGUP at EOF', async () => {
  const loop = new Loop();
  const [r, w] = pipe();
  try {
    const seen = [];
    let calls = 0;
    const h = await new Promise((resolve) => {
      const watch = loop.watch(r, READABLE, (events, handle) => {
        calls++;
        assert.equal(handle, watch);
        if (calls < 3) return; // not read yet: called again in the next pass
        const buf = Buffer.alloc(64);
        const n = Number(libc.read(r, buf, buf.length));
        if (n > 0) seen.push(buf.toString('utf8', 0, n));
        if (events & HANGUP) resolve(handle);
      });
      assert.equal(watch.kind, 'watch');
      setTimeout(() => { fs.writeSync(w, 'hello'); }, 10);
      setTimeout(() => { libc.close(w); }, 40);
    });
    assert.ok(calls >= 3);
    assert.deepEqual(seen, ['hello']);
    assert.equal(h.cancel(), true);
  } finally {
    libc.close(r);
    loop.close();
  }
});

test('WRITABLE: an empty pipe is writable at once; READABLE | WRITABLE on a read end reports READABLE', async () => {
  const loop = new Loop();
  const [r, w] = pipe();
  try {
    const events = await new Promise((resolve) => {
      loop.watch(w, WRITABLE, (ev, h) => { h.cancel(); resolve(ev); });
    });
    assert.equal(events & WRITABLE, WRITABLE);
    assert.equal(events & READABLE, 0);
    fs.writeSync(w, 'x');
    const both = await new Promise((resolve) => {
      // A pipe end is one-way: watch the read end for both; only READABLE is ready.
      loop.watch(r, READABLE | WRITABLE, (ev, h) => { h.cancel(); resolve(ev); });
    });
    assert.equal(both & READABLE, READABLE);
  } finally {
    libc.close(r);
    libc.close(w);
    loop.close();
  }
});

test('a cancelled watch is silent; loop.cancel(watch.id) works too', async () => {
  const loop = new Loop();
  const [r, w] = pipe();
  try {
    let calls = 0;
    const a = loop.watch(r, READABLE, () => calls++);
    const b = loop.watch(r, READABLE, () => calls++);
    assert.equal(a.cancel(), true);
    loop.cancel(b.id);
    assert.equal(b.active, false);
    fs.writeSync(w, 'data');
    await sleep(20);
    assert.equal(calls, 0);
    assert.equal(loop.size, 0);
  } finally {
    libc.close(r);
    libc.close(w);
    loop.close();
  }
});

test('bad fds and interests', () => {
  const loop = new Loop();
  const file = path.join(os.tmpdir(), `weft-watch-${process.pid}`);
  const fd = fs.openSync(file, 'w');
  try {
    const fn = () => {};
    assert.throws(() => loop.watch(-1, READABLE, fn), isWeftError('WEFT_ERR_INVALID'));
    assert.throws(() => loop.watch(fd, READABLE, fn), isWeftError('WEFT_ERR_INVALID')); // a regular file
    assert.throws(() => loop.watch(1 << 30, READABLE, fn), isWeftError('WEFT_ERR_INVALID')); // not open
    const [r, w] = pipe();
    assert.throws(() => loop.watch(r, 16, fn), isWeftError('WEFT_ERR_INVALID'));
    assert.throws(() => loop.watch(r, -1, fn), TypeError);
    assert.throws(() => loop.watch(r, 1.5, fn), TypeError);
    assert.throws(() => loop.watch(1.5, READABLE, fn), TypeError);
    assert.throws(() => loop.watch('0', READABLE, fn), TypeError);
    assert.throws(() => loop.watch(2 ** 40, READABLE, fn), RangeError);
    assert.throws(() => loop.watch(r, READABLE), TypeError);
    libc.close(r);
    libc.close(w);
    assert.equal(loop.size, 0);
  } finally {
    fs.closeSync(fd);
    fs.unlinkSync(file);
    loop.close();
  }
});

test('closing a watched fd under a live watch never crashes the loop', async () => {
  const loop = new Loop();
  const [r, w] = pipe();
  const h = loop.watch(r, READABLE, () => {});
  libc.close(r);
  libc.close(w);
  const fired = await new Promise((resolve) => loop.after(10, () => resolve(true)));
  assert.equal(fired, true);
  assert.equal(h.cancel(), true);
  loop.close();
});
