// lib/ffi.js is what bindings/gen.py writes from include/weft.h: this fails when it is
// stale (regenerate with `python3 bindings/gen.py`, never by hand).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const REPO = path.resolve(__dirname, '..', '..', '..');

test('lib/ffi.js is up to date with include/weft.h', (t) => {
  const r = spawnSync('python3', [path.join(REPO, 'bindings', 'gen.py'), '--check'], { encoding: 'utf8' });
  if (r.error && r.error.code === 'ENOENT') {
    t.skip('python3 is not installed');
    return;
  }
  assert.equal(r.status, 0, `bindings/gen.py --check: ${r.stdout}${r.stderr}`);
});

test('the binding checks the ABI version of the library it loads', () => {
  const weft = require('..');
  assert.equal(weft.abiVersion, weft.ffi.WEFT_ABI_VERSION);
  assert.match(weft.version, /^\d+\.\d+\.\d+$/);
});
