// benches/node/run.js: weft's Node binding against Node's own mechanisms.
//
//     node benches/node/run.js [--runs N] [--only a,b] [--markdown FILE] [--compare DIR]
//                              [--json FILE]     (after cargo build --release)
//     (--json: every run's figures, for benches/report.py)
//
//   timers         100,000 one-shot timers of 1 ms through loop.after vs setTimeout: from
//                  the first registration to the last callback.
//   timers-spread  100,000 one-shot timers of 0-50 ms (spread evenly, in a shuffled
//                  order), the same way: the wall time until all fired.
//   events-js      200,000 events emitted in JS (loop.emit(topic, string)) and received
//                  by a JS subscriber as (topic, Buffer), vs a MessageChannel's
//                  port1.postMessage(string) -> port2.onmessage on the same thread: from
//                  the first emit to the last delivery (each checks the order). The
//                  loop's pointer is never read, so the binding delivers these events
//                  itself, one weft_post per batch (bindings/node/lib/events.js); the
//                  events of events-c go through weft_emit and a trampoline each.
//   events-c       1,000,000 events emitted by a C thread (examples/c's
//                  libweft_emitter.so, weft_emit) and delivered to a JS subscriber, vs a
//                  worker_threads Worker posting 1,000,000 messages (strings) to the main
//                  thread: from the start signal to the last delivery.
//   spawn          trivial native tasks (emitter_work_sum of a short string) spawned from
//                  JS on weft's CPU pool with loop.spawn, in batches of 1,024 awaited with
//                  Promise.all, as many batches as fit in ~0.2 s; vs the same batches on a
//                  worker_threads pool (one Worker per core, round robin, a message per
//                  task and its reply, a Promise per task).
//
// Each workload runs in a fresh `node` process per system and run (so neither warms up
// the other), the systems one after the other within each run (interleaved); the median
// of --runs (default 5) is reported, with the spread (min-max) and the process's CPU time
// (user + system, every thread) per operation, which load disturbs less than the wall
// clock. Ratio = weft's wall time per operation / the baseline's, and in parentheses the
// same for CPU time: below 1 weft is faster. --compare DIR also runs the weft side of every row with the
// binding in DIR (e.g. another worktree's bindings/node, which loads its own libweft.so),
// interleaved the same way, as a before/after column; --compare-library FILE is the
// libweft.so that binding loads (its WEFT_LIBRARY; `make bench BASE=rev` passes the base's),
// and --compare-rev REV names it. With --json the column is the row `weft-base` (no goal).
'use strict';

const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const TIMERS = 100000;
const SPREAD_MS = 50;
const JS_EVENTS = 200000;
const C_EVENTS = 1000000;
const SPAWN_BATCH = 1024;
const SPAWN_WINDOW_MS = 200;

// The binding under test: WEFT_BENCH_BINDING (set by --compare for the other column), or
// this checkout's.
const BINDING = process.env.WEFT_BENCH_BINDING || path.resolve(__dirname, '..', '..', 'bindings', 'node');
const loadWeft = () => require(BINDING);
const loadNative = () => require(path.join(BINDING, 'test-support', 'native.js'));

// The clocks of a measured region: wall time and this process's CPU time (user + system,
// all threads), which a loaded machine disturbs less than the wall clock.
function startClock() {
  return { hr: process.hrtime.bigint(), cpu: process.cpuUsage() };
}

// { ms, cpuMs } since `start` (from startClock).
function since(start) {
  const cpu = process.cpuUsage(start.cpu);
  return { ms: Number(process.hrtime.bigint() - start.hr) / 1e6, cpuMs: (cpu.user + cpu.system) / 1000 };
}

// The spread timers' delays: 0..SPREAD_MS, each about as often, in an order shuffled by
// a fixed LCG (the same for every system and run).
function spreadDelays() {
  const delays = Array.from({ length: TIMERS }, (_, i) => i % (SPREAD_MS + 1));
  let seed = 12345;
  for (let i = delays.length - 1; i > 0; i--) {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    const j = seed % (i + 1);
    const d = delays[i]; // no destructuring swap: its garbage would be collected on the clock
    delays[i] = delays[j];
    delays[j] = d;
  }
  return delays;
}

async function weftTimers(delays) {
  const weft = loadWeft();
  const loop = new weft.Loop();
  const start = startClock();
  await new Promise((resolve) => {
    let fired = 0;
    const fn = () => { if (++fired === delays.length) resolve(); };
    for (let i = 0; i < delays.length; i++) loop.after(delays[i], fn);
  });
  const t = since(start);
  loop.close();
  return { ...t, n: delays.length };
}

async function nodeTimers(delays) {
  const start = startClock();
  await new Promise((resolve) => {
    let fired = 0;
    const fn = () => { if (++fired === delays.length) resolve(); };
    for (let i = 0; i < delays.length; i++) setTimeout(fn, delays[i]);
  });
  return { ...since(start), n: delays.length };
}

// Batches of SPAWN_BATCH tasks through `spawnOne(i)` (a Promise of the result), awaited
// with Promise.all, until SPAWN_WINDOW_MS have passed.
async function spawnBatches(spawnOne) {
  // One batch first, outside the clock: the pool's threads start.
  await Promise.all(Array.from({ length: SPAWN_BATCH }, (_, i) => spawnOne(i)));
  let n = 0;
  const start = startClock();
  let t = { ms: 0 };
  while (t.ms < SPAWN_WINDOW_MS) {
    const batch = new Array(SPAWN_BATCH);
    for (let i = 0; i < SPAWN_BATCH; i++) batch[i] = spawnOne(i);
    const results = await Promise.all(batch);
    if (Number(results[SPAWN_BATCH - 1]) !== SPAWN_BATCH) throw new Error(`bad result ${results[SPAWN_BATCH - 1]}`);
    n += SPAWN_BATCH;
    t = since(start);
  }
  return { ...t, n };
}

const workloads = {
  // Each returns { ms, n, extra? } and prints nothing.
  'timers/weft': () => weftTimers(new Array(TIMERS).fill(1)),
  'timers/setTimeout': () => nodeTimers(new Array(TIMERS).fill(1)),
  'timers-spread/weft': () => weftTimers(spreadDelays()),
  'timers-spread/setTimeout': () => nodeTimers(spreadDelays()),

  async 'events-js/weft'() {
    const weft = loadWeft();
    const loop = new weft.Loop();
    let next = 0;
    const start = startClock();
    await new Promise((resolve, reject) => {
      loop.subscribe('bench.js', (topic, payload, h) => {
        if (Number(payload.toString()) !== next++) reject(new Error(`event ${next - 1} out of order`));
        if (next === JS_EVENTS) {
          h.cancel();
          resolve();
        }
      });
      for (let i = 0; i < JS_EVENTS; i++) loop.emit('bench.js', String(i));
    });
    const t = since(start);
    loop.close();
    return { ...t, n: JS_EVENTS };
  },

  async 'events-js/MessageChannel'() {
    const { port1, port2 } = new MessageChannel();
    let next = 0;
    const start = startClock();
    await new Promise((resolve, reject) => {
      port2.onmessage = (m) => {
        if (Number(m.data) !== next++) reject(new Error(`message ${next - 1} out of order`));
        if (next === JS_EVENTS) resolve();
      };
      for (let i = 0; i < JS_EVENTS; i++) port1.postMessage(String(i));
    });
    const t = since(start);
    port1.close();
    return { ...t, n: JS_EVENTS };
  },

  async 'events-c/weft'() {
    const weft = loadWeft();
    const em = loadNative().emitter();
    const loop = new weft.Loop();
    let next = 0;
    let maxPass = 0;
    let passStart = 0;
    let lastPasses = -1;
    const done = new Promise((resolve, reject) => {
      loop.subscribe('bench.*', (topic, payload, h) => {
        const passes = weft.diagnostics().passes;
        if (passes !== lastPasses) {
          const now = performance.now();
          if (lastPasses >= 0) maxPass = Math.max(maxPass, now - passStart);
          passStart = now;
          lastPasses = passes;
        }
        if (topic === 'bench.done') {
          h.cancel();
          resolve();
        } else if (Number(payload.toString()) !== next++) {
          reject(new Error(`event ${next - 1} out of order`));
        }
      });
    });
    const start = startClock();
    const handle = em.start(loop.pointer, 'bench', C_EVENTS, 0);
    await done;
    const t = since(start);
    if (next !== C_EVENTS) throw new Error(`got ${next} events`);
    em.join(handle);
    loop.close();
    return { ...t, n: C_EVENTS, extra: `${weft.diagnostics().passes} passes, longest ~${maxPass.toFixed(0)} ms` };
  },

  async 'events-c/postMessage'() {
    const { Worker } = require('node:worker_threads');
    const worker = new Worker(`
      const { parentPort } = require('node:worker_threads');
      parentPort.once('message', (n) => {
        for (let i = 0; i < n; i++) parentPort.postMessage(String(i));
        parentPort.postMessage('done');
      });
    `, { eval: true });
    await new Promise((resolve) => worker.once('online', resolve));
    let next = 0;
    const start = startClock();
    await new Promise((resolve, reject) => {
      worker.on('message', (m) => {
        if (m === 'done') resolve();
        else if (Number(m) !== next++) reject(new Error(`message ${next - 1} out of order`));
      });
      worker.postMessage(C_EVENTS);
    });
    const t = since(start);
    if (next !== C_EVENTS) throw new Error(`got ${next} messages`);
    await worker.terminate();
    return { ...t, n: C_EVENTS };
  },

  async 'spawn/weft'() {
    const weft = loadWeft();
    const em = loadNative().emitter();
    const loop = new weft.Loop();
    const r = await spawnBatches((i) => loop.spawn(em.sum, `${i} 1`));
    loop.close();
    return r;
  },

  async 'spawn/worker_threads'() {
    const { Worker } = require('node:worker_threads');
    const cores = require('node:os').availableParallelism();
    const pending = new Map();
    let nextId = 0;
    const workers = Array.from({ length: cores }, () => {
      // The same work as emitter_work_sum: the sum of the numbers in a string.
      const w = new Worker(`
        const { parentPort } = require('node:worker_threads');
        parentPort.on('message', ({ id, text }) => {
          let sum = 0;
          for (const part of text.split(' ')) sum += Number(part);
          parentPort.postMessage({ id, result: String(sum) });
        });
      `, { eval: true });
      w.on('message', ({ id, result }) => {
        const resolve = pending.get(id);
        pending.delete(id);
        resolve(result);
      });
      return w;
    });
    await Promise.all(workers.map((w) => new Promise((resolve) => w.once('online', resolve))));
    const r = await spawnBatches((i) => new Promise((resolve) => {
      const id = nextId++;
      pending.set(id, resolve);
      workers[id % cores].postMessage({ id, text: `${i} 1` });
    }));
    await Promise.all(workers.map((w) => w.terminate()));
    return r;
  },
};

// [workload, title, baseline system, unit of the rate column]
const ROWS = [
  ['timers', `${TIMERS.toLocaleString('en')} timers of 1 ms`, 'setTimeout', 'timers'],
  ['timers-spread', `${TIMERS.toLocaleString('en')} timers of 0-${SPREAD_MS} ms`, 'setTimeout', 'timers'],
  ['events-js', `${JS_EVENTS.toLocaleString('en')} events emitted and received in JS`, 'MessageChannel', 'events'],
  ['events-c', `${C_EVENTS.toLocaleString('en')} events from a C thread`, 'postMessage', 'events'],
  ['spawn', `spawn: native tasks on the CPU pool, batches of ${SPAWN_BATCH.toLocaleString('en')}, ~${SPAWN_WINDOW_MS} ms`,
    'worker_threads', 'tasks'],
];

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function runChild(name, binding, library) {
  let env = binding ? { ...process.env, WEFT_BENCH_BINDING: binding } : process.env;
  if (library) env = { ...env, WEFT_LIBRARY: library };
  const out = execFileSync(process.execPath, [__filename, '--child', name], { encoding: 'utf8', timeout: 120000, env });
  return JSON.parse(out.trim().split('\n').pop());
}

// "1.23 M/s" for `perMs` operations per millisecond.
function rate(perMs, unit) {
  const perS = perMs * 1000;
  return perS >= 1e6 ? `${(perS / 1e6).toFixed(2)} M ${unit}/s` : `${(perS / 1e3).toFixed(0)} k ${unit}/s`;
}

async function main() {
  const args = process.argv.slice(2);
  if (args[0] === '--child') {
    const result = args[1] === 'prepare' ? (loadNative().emitter(), {}) : await workloads[args[1]]();
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return;
  }
  let runs = 5;
  let markdown = null;
  let only = null;
  let compare = null;
  let compareLibrary = null;
  let compareRev = null;
  let json = null;
  const report = []; // --json: every run's figures
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--runs') runs = Number(args[++i]);
    else if (args[i] === '--markdown') markdown = args[++i];
    else if (args[i] === '--only') only = args[++i].split(',');
    else if (args[i] === '--compare') compare = path.resolve(args[++i]);
    else if (args[i] === '--compare-library') compareLibrary = path.resolve(args[++i]);
    else if (args[i] === '--compare-rev') compareRev = args[++i];
    else if (args[i] === '--json') json = args[++i];
    else throw new Error(`unknown argument ${args[i]}`);
  }
  if (only) {
    for (const name of only) {
      if (!ROWS.some(([w]) => w === name)) throw new Error(`unknown workload ${name}`);
    }
  }
  // Build the C library once per binding, before timing anything.
  loadNative().emitter();
  // The other binding builds its helper in a child: two bindings in one process would
  // declare koffi's types twice.
  if (compare) runChild('prepare', compare, compareLibrary);

  console.log(`node ${process.version}, ${require('node:os').availableParallelism()} cores, median of ${runs} fresh processes each`
    + (compare ? `; "before": ${compare}` : ''));
  const rows = [];
  for (const [workload, title, baseName, unit] of ROWS) {
    if (only && !only.includes(workload)) continue;
    // Each system's samples: { ms, n } per run; the systems interleaved within each run.
    const systems = [['weft', null], ...(compare ? [['before', compare]] : []), [baseName, null]];
    const samples = new Map(systems.map(([s]) => [s, []]));
    let extra = '';
    for (let r = 0; r < runs; r++) {
      for (const [system, binding] of systems) {
        let res;
        try {
          res = runChild(`${workload}/${system === 'before' ? 'weft' : system}`, binding,
            system === 'before' ? compareLibrary : null);
        } catch (err) {
          if (system !== 'before') throw err;
          // an older binding may lack what the workload calls: its column stays empty
          console.log(`  before: ${workload} failed: ${String(err.message).split('\n')[0]}`);
          continue;
        }
        samples.get(system).push(res);
        if (system === 'weft') extra = res.extra || extra;
      }
    }
    // Cost per operation (ns), median over the runs; its spread (min-max).
    const stat = (system) => {
      const ns = samples.get(system).map((s) => (s.ms * 1e6) / s.n);
      const cpu = samples.get(system).map((s) => (s.cpuMs * 1e6) / s.n);
      const ms = samples.get(system).map((s) => s.ms);
      return { ns: median(ns), lo: Math.min(...ns), hi: Math.max(...ns), ms: median(ms), cpu: median(cpu) };
    };
    const fmt = (s) => `${s.ms.toFixed(1)} ms, ${s.ns.toFixed(0)} ns each (${s.lo.toFixed(0)}-${s.hi.toFixed(0)}), `
      + `${rate(1e6 / s.ns, unit)}; CPU ${s.cpu.toFixed(0)} ns each`;
    const w = stat('weft');
    const b = stat(baseName);
    // For the report: ms per run, each scaled to the first weft run's operation count
    // (the spawn row runs as many operations as fit in its window).
    const n0 = samples.get('weft')[0].n;
    const hasBefore = compare && samples.get('before').length > 0;
    const scaled = (system) => samples.get(system).map((x) => (x.ms * n0) / x.n);
    report.push({ workload, title, n: n0, unit: 'ms', better: 'lower',
      systems: ['weft', baseName, ...(compare ? ['weft-base'] : [])],
      samples: { weft: scaled('weft'), [baseName]: scaled(baseName),
        ...(compare ? { 'weft-base': scaled('before') } : {}) },
      extra });
    const row = {
      title,
      weft: fmt(w),
      before: compare ? (hasBefore ? fmt(stat('before')) : 'failed') : null,
      baseline: `${baseName}: ${fmt(b)}`,
      ratio: (w.ns / b.ns).toFixed(2),
      beforeRatio: compare ? (hasBefore ? (stat('before').ns / b.ns).toFixed(2) : '—') : null,
      cpuRatio: (w.cpu / b.cpu).toFixed(2),
      beforeCpuRatio: compare ? (hasBefore ? (stat('before').cpu / b.cpu).toFixed(2) : '—') : null,
      extra,
    };
    rows.push(row);
    console.log(`${title}\n  weft      ${row.weft}${extra ? `  [${extra}]` : ''}`
      + (compare ? `\n  before    ${row.before}` : '')
      + `\n  baseline  ${row.baseline}\n  ratio     ${row.ratio} (weft / baseline, wall time per operation)`
      + (compare ? `; before: ${row.beforeRatio}` : '')
      + `\n  CPU ratio ${row.cpuRatio}` + (compare ? `; before: ${row.beforeCpuRatio}` : ''));
  }
  const head = compare
    ? ['| workload | weft | weft before | baseline | weft / baseline (CPU) | before / baseline (CPU) |',
      '| --- | --- | --- | --- | --- | --- |']
    : ['| workload | weft | baseline | weft / baseline (CPU) |', '| --- | --- | --- | --- |'];
  const table = [...head, ...rows.map((r) => (compare
    ? `| ${r.title} | ${r.weft} | ${r.before} | ${r.baseline} | ${r.ratio} (${r.cpuRatio}) | ${r.beforeRatio} (${r.beforeCpuRatio}) |`
    : `| ${r.title} | ${r.weft} | ${r.baseline} | ${r.ratio} (${r.cpuRatio}) |`))].join('\n');
  console.log(`\n${table}`);
  if (markdown) fs.writeFileSync(markdown, `${table}\n`);
  if (json) {
    fs.writeFileSync(json, `${JSON.stringify({ suite: 'node', runs, node: process.version,
      base: compare ? (compareRev || compare) : null,
      cores: require('node:os').availableParallelism(), workloads: report }, null, 1)}\n`);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
