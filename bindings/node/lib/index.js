// weft for Node.js: event loops, timers, fd watches, publish/subscribe events and native
// tasks on worker pools, running on Node's own event loop. See bindings/node/README.md.
//
//     const weft = require('weft');
//     const loop = new weft.Loop();
//     loop.subscribe('job.*', (topic, payload) => console.log(topic, payload.toString()));
//     loop.after(100, () => loop.emit('job.done', 'ok'));
//
// How it runs: each Loop watches its weft_loop_fd() with a libuv poll handle
// (koffi.node.poll), and when that fd is readable calls weft_loop_run(NOWAIT) on the JS
// thread. So every callback runs on the JS thread, inside that call; no weft thread ever
// calls into JavaScript: the only JS functions weft is given are the trampolines
// (trampolines.js), which weft calls from the loop thread only, and every free_fn this
// module passes is NULL or libc's free (native). The poll handle is ref'd only while a
// ref'd registration is alive, so a script exits by itself once its work is done.
//
// This file is the public entry (index.mjs re-exports it for ESM) and the exit hook. The
// rest, one concept per file: library.js (finding and loading libweft), libc.js (memcpy,
// malloc/free, dladdr), errors.js, checks.js (argument checks), trampolines.js (the C
// callbacks and the registry they use), handle.js (Handle), timers.js and events.js
// (the timers and JS events the binding keeps), loop.js (Loop), spawn.js
// (loop.spawn's tasks).
'use strict';

const { isMainThread } = require('node:worker_threads');

const ffi = require('./ffi.js');
const { lib, loadedFile } = require('./library.js');
const { WeftError, AbortError, TaskError } = require('./errors.js');
const { trampolineStats } = require('./trampolines.js');
const { Handle } = require('./handle.js');
const { Loop, openLoops } = require('./loop.js');
const { poolStats, utilizationBetween, TaskTiming } = require('./stats.js');

// ---------------------------------------------------------------------------------------
// Exit: free the loops, join weft's default pools (weft_shutdown). A worker thread only
// frees its own loops: the pools are the process's.

function onExit() {
  for (const loop of [...openLoops]) {
    try {
      loop.close();
    } catch {
      // exiting anyway
    }
  }
  if (isMainThread) lib.weft_shutdown();
}
process.on('exit', onExit);

function diagnostics() {
  const { foreignCalls, passes, running, tokens } = trampolineStats();
  return { foreignCalls, passes, openLoops: openLoops.size, running, tokens };
}

module.exports = {
  Loop,
  Handle,
  WeftError,
  AbortError,
  TaskError,
  READABLE: ffi.WEFT_READABLE,
  WRITABLE: ffi.WEFT_WRITABLE,
  HANGUP: ffi.WEFT_HANGUP,
  ERROR: ffi.WEFT_ERROR,
  version: lib.weft_version(),
  abiVersion: lib.weft_abi_version(),
  libraryPath: loadedFile(),
  native: lib,
  ffi,
  diagnostics,
  poolStats,
  utilizationBetween,
  TaskTiming,
};
