// benches/node/run.js: weft's Node binding against Node's own mechanisms.
//
//     node benches/node/run.js [--runs N] [--markdown FILE] [--json FILE]   (after cargo build --release)
//     (--json: every run's figures, for benches/report.py)
//
//   timers   100,000 one-shot timers (1 ms) through loop.after vs setTimeout: from the
//            first registration to the last callback.
//   events   1,000,000 events emitted by a C thread (examples/c's libweft_emitter.so,
//            weft_emit) and delivered to a JS subscriber as (topic, Buffer), vs a
//            worker_threads Worker posting 1,000,000 messages (postMessage of a string) to
//            the main thread: from the start signal to the last delivery.
//
// Each workload runs in a fresh `node` process per system and run (so neither warms up
// the other); the median of --runs (default 5) is reported. Ratio = weft time / baseline
// time: below 1 weft is faster.
'use strict';

const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const TIMERS = 100000;
const EVENTS = 1000000;

const workloads = {
  // Each returns { ms, extra } and prints nothing.
  async 'timers/weft'() {
    const weft = require('../../bindings/node');
    const loop = new weft.Loop();
    const start = process.hrtime.bigint();
    await new Promise((resolve) => {
      let fired = 0;
      const fn = () => { if (++fired === TIMERS) resolve(); };
      for (let i = 0; i < TIMERS; i++) loop.after(1, fn);
    });
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    loop.close();
    return { ms };
  },

  async 'timers/setTimeout'() {
    const start = process.hrtime.bigint();
    await new Promise((resolve) => {
      let fired = 0;
      const fn = () => { if (++fired === TIMERS) resolve(); };
      for (let i = 0; i < TIMERS; i++) setTimeout(fn, 1);
    });
    return { ms: Number(process.hrtime.bigint() - start) / 1e6 };
  },

  async 'events/weft'() {
    const { weft, emitter } = require('../../bindings/node/test-support/native.js');
    const em = emitter();
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
    const start = process.hrtime.bigint();
    const handle = em.start(loop.pointer, 'bench', EVENTS, 0);
    await done;
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    if (next !== EVENTS) throw new Error(`got ${next} events`);
    em.join(handle);
    loop.close();
    return { ms, extra: `${weft.diagnostics().passes} passes, longest pass ~${maxPass.toFixed(0)} ms` };
  },

  async 'events/postMessage'() {
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
    const start = process.hrtime.bigint();
    await new Promise((resolve, reject) => {
      worker.on('message', (m) => {
        if (m === 'done') resolve();
        else if (Number(m) !== next++) reject(new Error(`message ${next - 1} out of order`));
      });
      worker.postMessage(EVENTS);
    });
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    if (next !== EVENTS) throw new Error(`got ${next} messages`);
    await worker.terminate();
    return { ms };
  },
};

const PAIRS = [
  ['timers', `${TIMERS.toLocaleString('en')} timers`, 'timers/weft', 'timers/setTimeout', TIMERS],
  ['events', `${EVENTS.toLocaleString('en')} events from a C thread`, 'events/weft', 'events/postMessage', EVENTS],
];

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function runChild(name) {
  const out = execFileSync(process.execPath, [__filename, '--child', name], { encoding: 'utf8', timeout: 120000 });
  return JSON.parse(out.trim().split('\n').pop());
}

async function main() {
  const args = process.argv.slice(2);
  if (args[0] === '--child') {
    const result = await workloads[args[1]]();
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return;
  }
  let runs = 5;
  let markdown = null;
  let json = null;
  const report = [];   // --json: every run's figures
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--runs') runs = Number(args[++i]);
    else if (args[i] === '--markdown') markdown = args[++i];
    else if (args[i] === '--json') json = args[++i];
    else throw new Error(`unknown argument ${args[i]}`);
  }
  // Build the C library once, before timing anything.
  require('../../bindings/node/test-support/native.js').emitter();

  console.log(`node ${process.version}, ${require('node:os').availableParallelism()} cores, median of ${runs} runs`);
  const rows = [];
  for (const [key, title, weftName, baseName, n] of PAIRS) {
    const w = [];
    const b = [];
    let extra = '';
    for (let r = 0; r < runs; r++) {
      const wr = runChild(weftName);
      w.push(wr.ms);
      extra = wr.extra || extra;
      b.push(runChild(baseName).ms);
    }
    report.push({ workload: key, title, n, unit: 'ms', better: 'lower', systems: [weftName, baseName],
      samples: { [weftName]: w, [baseName]: b }, extra });
    const wm = median(w);
    const bm = median(b);
    const row = {
      title,
      weft: `${wm.toFixed(1)} ms (${(wm * 1e6 / n).toFixed(0)} ns each)`,
      baseline: `${baseName.split('/')[1]}: ${bm.toFixed(1)} ms (${(bm * 1e6 / n).toFixed(0)} ns each)`,
      ratio: (wm / bm).toFixed(2),
      extra,
    };
    rows.push(row);
    console.log(`${title}\n  weft      ${row.weft}${extra ? `  [${extra}]` : ''}\n  baseline  ${row.baseline}\n  ratio     ${row.ratio} (weft / baseline)`);
  }
  const table = ['| workload | weft | baseline | weft / baseline |', '| --- | --- | --- | --- |',
    ...rows.map((r) => `| ${r.title} | ${r.weft} | ${r.baseline} | ${r.ratio} |`)].join('\n');
  console.log(`\n${table}`);
  if (markdown) fs.writeFileSync(markdown, `${table}\n`);
  if (json) {
    fs.writeFileSync(json, `${JSON.stringify({ suite: 'node', runs, node: process.version,
      cores: require('node:os').availableParallelism(), workloads: report }, null, 1)}\n`);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
