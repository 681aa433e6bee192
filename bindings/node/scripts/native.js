// Puts libweft into this package for `npm pack` and takes it out again: the prepack and
// postpack scripts. An installed package then loads its own copy, as koffi does, from
// native/<platform>-<arch>/ (lib/library.js looks there after $WEFT_LIBRARY).
//
//     node scripts/native.js add       # $WEFT_LIBRARY, else cargo build --release at ../..
//     node scripts/native.js remove
//
// The copy is removed after packing, so that in the source tree the binding keeps
// loading target/release, not a copy that the next build leaves stale.
'use strict';

const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const PACKAGE_DIR = path.resolve(__dirname, '..');
const REPO = path.resolve(PACKAGE_DIR, '..', '..');
const LIBRARY_FILE = process.platform === 'darwin' ? 'libweft.dylib' : 'libweft.so';
const NATIVE_DIR = path.join(PACKAGE_DIR, 'native');
const PLATFORM_DIR = path.join(NATIVE_DIR, `${process.platform}-${process.arch}`);

function fail(message) {
  console.error(`weft: npm pack needs ${LIBRARY_FILE}: ${message}`);
  process.exit(1);
}

// The library to pack: $WEFT_LIBRARY as it is, or a release build of this repository.
function library() {
  if (process.env.WEFT_LIBRARY) {
    const file = path.resolve(process.env.WEFT_LIBRARY);
    if (!fs.existsSync(file)) fail(`WEFT_LIBRARY is ${file}, which does not exist`);
    return file;
  }
  if (!fs.existsSync(path.join(REPO, 'Cargo.toml'))) {
    fail(`${REPO} is not the weft repository (no Cargo.toml); set WEFT_LIBRARY to the library's path`);
  }
  try {
    // cargo's stdout goes to stderr: npm pack's own stdout is the tarball's name.
    execFileSync('cargo', ['build', '--release'], { cwd: REPO, stdio: ['ignore', 2, 2] });
  } catch (err) {
    fail(`\`cargo build --release\` in ${REPO} failed (${err.message}); `
      + 'install Rust (https://rustup.rs) or set WEFT_LIBRARY to the library\'s path');
  }
  return path.join(process.env.CARGO_TARGET_DIR || path.join(REPO, 'target'), 'release', LIBRARY_FILE);
}

function add() {
  const from = library();
  fs.mkdirSync(PLATFORM_DIR, { recursive: true });
  fs.copyFileSync(from, path.join(PLATFORM_DIR, LIBRARY_FILE));
  console.error(`weft: packing ${from} as native/${path.basename(PLATFORM_DIR)}/${LIBRARY_FILE}`);
}

function remove() {
  fs.rmSync(PLATFORM_DIR, { recursive: true, force: true });
  // native/ itself only when nothing else is in it.
  if (fs.existsSync(NATIVE_DIR) && fs.readdirSync(NATIVE_DIR).length === 0) fs.rmdirSync(NATIVE_DIR);
}

const commands = { add, remove };
const command = commands[process.argv[2]];
if (!command) fail(`usage: node scripts/native.js ${Object.keys(commands).join('|')}`);
command();
