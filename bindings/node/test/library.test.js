// Finding the library (lib/library.js): $WEFT_LIBRARY, the package's native/ copy, the
// repository's target/release, the system; and the error when none loads. Each case
// requires the binding in a child process, from a copy of the package laid out as in
// the repository. tests/packaging/npm.sh does the same through real npm installs.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const PACKAGE_DIR = path.resolve(__dirname, '..');
const REPO = path.resolve(PACKAGE_DIR, '..', '..');
const REPO_LIBRARY = path.join(REPO, 'target', 'release', 'libweft.so');
const NATIVE = path.join('native', `${process.platform}-${process.arch}`, 'libweft.so');

// Requires the binding at `packageDir` in a new node; returns libraryPath, or the error.
function load(packageDir, env = {}) {
  const clean = { ...process.env };
  delete clean.WEFT_LIBRARY;
  delete clean.LD_LIBRARY_PATH;
  const r = spawnSync(process.execPath, ['-e', `
    try { console.log(require(${JSON.stringify(packageDir)}).libraryPath); }
    catch (err) { console.log(err.message); process.exitCode = 3; }`],
  { encoding: 'utf8', env: { ...clean, ...env } });
  assert.ok(r.status === 0 || r.status === 3, r.stderr);
  return r.status === 0 ? { path: r.stdout.trim() } : { error: r.stdout };
}

// A repository with only what the loader looks at: include/weft.h, target/release, and
// bindings/node (lib/ and a link to node_modules/ for koffi).
function fakeRepository(t) {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'weft-library-'));
  t.after(() => fs.rmSync(root, { recursive: true, force: true }));
  const packageDir = path.join(root, 'bindings', 'node');
  fs.mkdirSync(path.join(root, 'include'));
  fs.writeFileSync(path.join(root, 'include', 'weft.h'), '');
  fs.mkdirSync(path.join(root, 'target', 'release'), { recursive: true });
  fs.copyFileSync(REPO_LIBRARY, path.join(root, 'target', 'release', 'libweft.so'));
  fs.mkdirSync(path.join(packageDir, path.dirname(NATIVE)), { recursive: true });
  fs.copyFileSync(REPO_LIBRARY, path.join(packageDir, NATIVE));
  fs.cpSync(path.join(PACKAGE_DIR, 'lib'), path.join(packageDir, 'lib'), { recursive: true });
  fs.copyFileSync(path.join(PACKAGE_DIR, 'package.json'), path.join(packageDir, 'package.json'));
  fs.symlinkSync(path.join(PACKAGE_DIR, 'node_modules'), path.join(packageDir, 'node_modules'));
  return { root, packageDir };
}

test('the source tree loads the repository\'s target/release', () => {
  assert.deepEqual(load(PACKAGE_DIR), { path: REPO_LIBRARY });
});

test('WEFT_LIBRARY is loaded, before the package\'s copy', (t) => {
  const { root, packageDir } = fakeRepository(t);
  const copy = path.join(root, 'elsewhere.so');
  fs.copyFileSync(REPO_LIBRARY, copy);
  assert.deepEqual(load(packageDir, { WEFT_LIBRARY: copy }), { path: copy });
});

test('a wrong WEFT_LIBRARY is an error naming it and why, not a fallback', (t) => {
  const { root, packageDir } = fakeRepository(t);
  const { error } = load(packageDir, { WEFT_LIBRARY: '/nonexistent/libweft.so' });
  assert.match(error, /^weft: cannot load libweft\.so\. Tried, in order:\n {2}WEFT_LIBRARY: \/nonexistent\/libweft\.so \(no such file\)\nSet WEFT_LIBRARY /);
  assert.match(error, /`make build` \(or `cargo build --release`\)/);

  const text = path.join(root, 'not-a-library.so');
  fs.writeFileSync(text, 'not ELF\n');
  const notElf = load(packageDir, { WEFT_LIBRARY: text }).error;
  assert.ok(notElf.includes(`WEFT_LIBRARY: ${text} (Failed to load shared library: `), notElf);
  assert.doesNotMatch(notElf, /package:|repository:|system:/);
});

test('then the package\'s copy, the repository\'s target/release, the system', (t) => {
  const { root, packageDir } = fakeRepository(t);
  const packaged = path.join(packageDir, NATIVE);
  const built = path.join(root, 'target', 'release', 'libweft.so');
  assert.deepEqual(load(packageDir), { path: packaged });

  fs.rmSync(packaged);
  assert.deepEqual(load(packageDir), { path: built });

  fs.rmSync(built);
  const system = path.join(root, 'lib');
  fs.mkdirSync(system);
  fs.copyFileSync(REPO_LIBRARY, path.join(system, 'libweft.so.0'));
  assert.deepEqual(load(packageDir, { LD_LIBRARY_PATH: system }), { path: path.join(system, 'libweft.so.0') });

  const { error } = load(packageDir);
  const tried = error.split('\n').slice(1, 5);
  assert.deepEqual(tried.map((line) => line.replace(/ \(.*/, '')), [
    `  package: ${packaged}`,
    `  repository: ${built}`,
    '  system: libweft.so.0',
    '  system: libweft.so',
  ]);
  assert.match(tried[0], /\(no such file\)$/);
  assert.match(tried[2], /\(Failed to load shared library: .+\)$/);
});

test('an installed package does not look for a repository around it', (t) => {
  const { root, packageDir } = fakeRepository(t);
  fs.rmSync(path.join(root, 'include'), { recursive: true });
  fs.rmSync(path.join(packageDir, NATIVE));
  const { error } = load(packageDir);
  assert.doesNotMatch(error, /repository:/);
  assert.match(error, /package: .* \(no such file\)\n {2}system: libweft\.so\.0 /);
});
