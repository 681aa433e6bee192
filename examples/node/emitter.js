// emitter.js: a Node script subscribed to events that a C library emits from a thread
// of its own.
//
//     node examples/node/emitter.js        (after `cargo build --release`)
//
// The C library is examples/c/emitter.c (built here with `make -C examples/c emitter`):
// emitter_start(loop, prefix, count, interval_us) starts a pthread that calls
// weft_emit(loop, "<prefix>.tick", ...) `count` times, then "<prefix>.done". The script
// hands it its weft loop (loop.pointer) through koffi, and subscribes. weft queues each
// event on the C thread and delivers it here, on the JS thread, in the order the C
// thread emitted them; the C thread never calls into JavaScript and never waits for it.
'use strict';

const { execFileSync } = require('node:child_process');
const path = require('node:path');

const weft = require('../../bindings/node');

const { koffi } = weft.ffi;

const EXAMPLES_C = path.join(__dirname, '..', 'c');
execFileSync('make', ['-s', '-C', EXAMPLES_C, 'emitter', `LIBDIR=${path.dirname(weft.libraryPath)}`], { stdio: 'inherit' });
const lib = koffi.load(path.join(EXAMPLES_C, 'build', 'libweft_emitter.so'));
const emitterStart = lib.func('void *emitter_start(void *loop, const char *prefix, uint32_t count, uint32_t interval_us)');
const emitterJoin = lib.func('int emitter_join(void *em)');

const loop = new weft.Loop();
const t0 = Date.now();

// Two subscribers: every sensor event, and the end of the stream.
let ticks = 0;
const all = loop.subscribe('sensor.*', (topic, payload) => {
  if (topic === 'sensor.tick') {
    ticks++;
    if (ticks <= 5 || ticks % 10 === 0) {
      console.log(`${String(Date.now() - t0).padStart(4)} ms  ${topic} #${payload.toString()}`);
    }
  }
});
loop.subscribe('sensor.done', (topic, payload, sub) => {
  console.log(`${String(Date.now() - t0).padStart(4)} ms  ${topic}: the C thread emitted ${payload} ticks, ${ticks} arrived`);
  sub.cancel();
  all.cancel(); // nothing left registered: the script exits by itself
  const failures = emitterJoin(em); // the thread is done emitting: joins at once
  if (failures !== 0 || ticks !== Number(payload)) process.exitCode = 1;
});

// 40 events, 25 ms apart, from the C library's own thread.
const em = emitterStart(loop.pointer, 'sensor', 40, 25000);
if (em === null) throw new Error('emitter_start failed');
console.log(`emitter thread started on loop fd ${loop.fd}; waiting for its events`);
