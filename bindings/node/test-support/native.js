// Native helpers for the Node binding's tests and benches/node (not itself a test file:
// node --test runs every .js file under test/).
//
// - emitter(): examples/c's libweft_emitter.so (a C library built on weft: a thread that
//   emits events, and weft work functions), built with `make -C examples/c emitter`
//   against the same libweft.so the binding loaded, so that only one copy is mapped.
// - processWork(): test-support/process_work.c, the work functions of the process-task
//   tests, built with `cc -shared -fPIC` into test-support/build/ against the same
//   libweft.so (rebuilt when the source, the header or the library is newer).
// - libc: pipe/read/write/close/gettid, for fd watches and thread checks.
'use strict';

const { execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const weft = require('..');

const { koffi } = weft.ffi;
const REPO = path.resolve(__dirname, '..', '..', '..');
const EXAMPLES_C = path.join(REPO, 'examples', 'c');

let emitterLib = null;

// Builds (when stale) and loads libweft_emitter.so; returns its functions and symbols.
function emitter() {
  if (emitterLib) return emitterLib;
  const libdir = path.dirname(weft.libraryPath);
  execFileSync('make', ['-s', '-C', EXAMPLES_C, 'emitter', `LIBDIR=${libdir}`], { stdio: ['ignore', 'ignore', 'inherit'] });
  const file = path.join(EXAMPLES_C, 'build', 'libweft_emitter.so');
  const handle = koffi.load(file);
  emitterLib = {
    file,
    handle,
    start: handle.func('void *emitter_start(void *loop, const char *prefix, uint32_t count, uint32_t interval_us)'),
    join: handle.func('int emitter_join(void *em)'),
    sum: handle.symbol('emitter_work_sum'),
    sleep: handle.symbol('emitter_work_sleep'),
    progress: handle.symbol('emitter_work_progress'),
    status: handle.symbol('emitter_work_status'),
  };
  // Joins on a koffi worker thread, so the JS thread keeps delivering the events.
  emitterLib.joinAsync = promisifyAsync(emitterLib.join);
  return emitterLib;
}

let processWorkLib = null;

// Builds (when stale) and loads process_work.so; returns its work functions (BigInt
// pointers for loop.spawn). The file's name carries a hash of the library's directory
// (its rpath), so two libweft.so builds never share one helper.
function processWork() {
  if (processWorkLib) return processWorkLib;
  const libdir = path.dirname(weft.libraryPath);
  const source = path.join(__dirname, 'process_work.c');
  const header = path.join(REPO, 'include', 'weft.h');
  const tag = crypto.createHash('sha256').update(libdir).digest('hex').slice(0, 12);
  const file = path.join(__dirname, 'build', `libweft_process_work-${tag}.so`);
  const mtime = (f) => fs.statSync(f).mtimeMs;
  const stale = !fs.existsSync(file)
    || [source, header, weft.libraryPath].some((f) => mtime(f) > mtime(file));
  if (stale) {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    // Under a temporary name, then renamed: test files run in parallel processes.
    const tmp = `${file}.tmp.${process.pid}`;
    execFileSync('cc', ['-std=c11', '-O2', '-Wall', '-Wextra', '-Werror', '-shared', '-fPIC',
      `-I${path.dirname(header)}`, '-o', tmp, source, `-L${libdir}`, '-lweft', `-Wl,-rpath,${libdir}`],
    { stdio: ['ignore', 'ignore', 'inherit'] });
    fs.renameSync(tmp, file);
  }
  const handle = koffi.load(file);
  processWorkLib = { file, handle };
  for (const name of ['pid', 'sleep', 'crash', 'emit', 'status', 'fds']) {
    processWorkLib[name] = handle.symbol(`proc_work_${name}`);
  }
  return processWorkLib;
}

function promisifyAsync(fn) {
  return (...args) => new Promise((resolve, reject) => {
    fn.async(...args, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

const libcHandle = koffi.load('libc.so.6');
const libc = {
  pipe: libcHandle.func('int pipe(_Out_ int *fds)'),
  write: libcHandle.func('intptr_t write(int fd, const void *buf, size_t len)'),
  read: libcHandle.func('intptr_t read(int fd, _Out_ uint8_t *buf, size_t len)'),
  close: libcHandle.func('int close(int fd)'),
  gettid: libcHandle.func('int gettid(void)'),
};

// A pipe: [readFd, writeFd].
function pipe() {
  const fds = [0, 0];
  if (libc.pipe(fds) !== 0) throw new Error('pipe failed');
  return fds;
}

// How many threads of this process have a name starting with `prefix`.
function threadsNamed(prefix) {
  const fs = require('node:fs');
  let n = 0;
  for (const tid of fs.readdirSync('/proc/self/task')) {
    try {
      if (fs.readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').startsWith(prefix)) n++;
    } catch {
      // the thread exited
    }
  }
  return n;
}

// threadsNamed once it reaches `want`, or after a second. For counts taken right after
// weft joined its threads: pthread_join returns when a thread has cleared its tid, and
// the kernel lists it in /proc/self/task a moment longer. Synchronous (an exit handler
// can call it): it sleeps with Atomics.wait.
function threadsNamedSettled(prefix, want) {
  const pause = new Int32Array(new SharedArrayBuffer(4));
  const end = Date.now() + 1000;
  let n = threadsNamed(prefix);
  while (n !== want && Date.now() < end) {
    Atomics.wait(pause, 0, 0, 1);
    n = threadsNamed(prefix);
  }
  return n;
}

module.exports = { weft, koffi, emitter, processWork, libc, pipe, threadsNamed, threadsNamedSettled, REPO };
