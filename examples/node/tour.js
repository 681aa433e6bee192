// tour.js: weft from Node.js, on Node's own event loop.
//
//     node examples/node/tour.js          (after `cargo build --release`)
//
//   loop.after(ms, fn) / loop.every(ms, fn)     timers -> a Handle with cancel()
//   loop.subscribe(pattern, fn) / loop.emit()   publish/subscribe ("job.*", "*")
//   loop.watch(fd, READABLE | WRITABLE, fn)     fd readiness
//   loop.spawn(work, userData, options)         a native work function on a weft pool
//                                               thread -> Promise<Buffer>
//   loop.cancel(id)                             ids are BigInts that weft checks
//
// Every callback runs on this (the JS) thread. Nothing here calls loop.run(): Node runs
// the loop, and the script exits by itself once nothing is registered.
'use strict';

const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const weft = require('../../bindings/node');

const { koffi } = weft.ffi;

// The native side: examples/c/emitter.c, a small C library built on weft.
const EXAMPLES_C = path.join(__dirname, '..', 'c');
execFileSync('make', ['-s', '-C', EXAMPLES_C, 'emitter', `LIBDIR=${path.dirname(weft.libraryPath)}`], { stdio: 'inherit' });
const native = koffi.load(path.join(EXAMPLES_C, 'build', 'libweft_emitter.so'));

const t0 = Date.now();
const log = (...args) => console.log(`${String(Date.now() - t0).padStart(4)} ms `, ...args);

const loop = new weft.Loop();
log(`weft ${weft.version}, loop fd ${loop.fd}`);

// 1. Timers. A Handle's id is weft's, a BigInt.
let ticks = 0;
loop.every(100, (h) => {
  log(`tick ${++ticks}`);
  if (ticks === 5) h.cancel(); // from its own callback: final
});
const once = loop.after(250, () => log('after 250 ms'));
log(`timer id ${once.id} (${typeof once.id})`);
loop.after(1000, () => log('never: cancelled')).cancel();

// 2. Events: any number of subscribers; payloads are Buffers. A subscription keeps the
// script alive (as a listening server does) until it is cancelled or unref()'d.
loop.subscribe('job.*', (topic, payload, sub) => {
  log(`[job.*] ${topic}: ${payload.toString()}`);
  if (topic === 'job.done') sub.cancel();
});
loop.subscribe('job.done', (topic, payload, sub) => {
  log(`[job.done] the job says ${payload.toString()}; unsubscribing`);
  sub.cancel();
});
loop.emit('job.progress', '50%');
loop.emit('job.progress', Buffer.from('100%'));
loop.after(50, () => loop.emit('job.done', 'ok'));

// 3. An fd watch: a pipe, written to by a timer (pipe() from libc, through koffi).
const pipe = koffi.load('libc.so.6').func('int pipe(_Out_ int *fds)');
const fds = [0, 0];
pipe(fds);
const [readFd, writeFd] = fds;
const watch = loop.watch(readFd, weft.READABLE, (events) => {
  const buf = Buffer.alloc(100);
  const n = fs.readSync(readFd, buf);
  log(`fd ${readFd} readable (events ${events}): "${buf.toString('utf8', 0, n)}"`);
  watch.cancel();
  fs.closeSync(readFd);
  fs.closeSync(writeFd);
});
loop.after(150, () => fs.writeSync(writeFd, 'hello through a pipe'));

// 4. Native work on weft's pools. `userData` strings and Buffers are copied for the task.
(async () => {
  const sum = await loop.spawn(native.symbol('emitter_work_sum'), '1 2 3 4 5', { on: 'cpu' });
  log(`cpu task: sum = ${sum.toString()}`);

  try {
    await loop.spawn(native.symbol('emitter_work_sleep'), '10000', { on: 'io', timeout: 200 });
  } catch (err) {
    log(`io task: ${err.code} after its 200 ms timeout`);
  }

  const ac = new AbortController();
  loop.after(100, () => ac.abort());
  try {
    await loop.spawn(native.symbol('emitter_work_sleep'), '10000', { on: 'io', signal: ac.signal });
  } catch (err) {
    log(`io task: ${err.name} (AbortSignal)`);
  }
})();

// 5. Errors. Ids are checked by weft: a forged or stale one is an error, not a crash.
try {
  loop.cancel(0x123456789n);
} catch (err) {
  log(`${err.name} ${err.code}: ${err.message}`);
}
// An exception thrown by a callback goes to 'error' listeners (or is uncaught).
loop.on('error', (err) => log(`'error' event: ${err.message}`));
loop.after(300, () => { throw new Error('a callback threw'); });

process.on('exit', (code) => log(`exit ${code}: nothing left registered`));
