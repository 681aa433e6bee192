// Timing helpers the Node tests share: spin (hold the JS thread, as a slow callback
// does) and until (wait, polling, for a condition).
'use strict';

const { setTimeout: sleep } = require('node:timers/promises');

/** Holds the JS thread for `ms` milliseconds. */
function spin(ms) {
  const end = performance.now() + ms;
  while (performance.now() < end);
}

/** Waits up to `ms` for `cond()`, looking every 5 ms; its last answer. */
async function until(cond, ms = 3000) {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await sleep(5);
  return cond();
}

module.exports = { spin, until };
