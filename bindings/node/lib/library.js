// The library: where libweft is looked for, loading it (the first candidate that loads),
// its ABI check, and the file it was loaded from.
'use strict';

const fs = require('node:fs');
const path = require('node:path');

const ffi = require('./ffi.js');
const { c_dladdr } = require('./libc.js');

// Where the library is looked for, in this order; the first that loads is used:
// 1. $WEFT_LIBRARY. When it is set nothing else is tried, so that a wrong path is an
//    error rather than a silent fallback to another copy.
// 2. The package's own copy, native/<platform>-<arch>/, which `npm pack` puts in the
//    tarball (scripts/native.js), as koffi ships its own native library.
// 3. The repository's target/release, when this is the source tree (or a link to it:
//    `npm install /path/to/bindings/node`).
// 4. The system's, through the dynamic loader: the SONAME libweft.so.N
//    (N = WEFT_ABI_VERSION - 1, build.rs), then libweft.so.
const LIBRARY_FILE = process.platform === 'darwin' ? 'libweft.dylib' : 'libweft.so';

function libraryCandidates() {
  if (process.env.WEFT_LIBRARY) return [['WEFT_LIBRARY', path.resolve(process.env.WEFT_LIBRARY)]];
  const packageDir = path.resolve(__dirname, '..');
  const candidates = [
    ['package', path.join(packageDir, 'native', `${process.platform}-${process.arch}`, LIBRARY_FILE)],
  ];
  // An installed package's ../.. is the user's project: the repository is known by its header.
  const repo = path.resolve(packageDir, '..', '..');
  if (fs.existsSync(path.join(repo, 'include', 'weft.h'))) {
    candidates.push(['repository', path.join(repo, 'target', 'release', LIBRARY_FILE)]);
  }
  const major = ffi.WEFT_ABI_VERSION - 1;
  const soname = process.platform === 'darwin' ? `libweft.${major}.dylib` : `libweft.so.${major}`;
  candidates.push(['system', soname], ['system', LIBRARY_FILE]);
  return candidates;
}

// Returns [the loaded library, its path or name], or throws an Error naming every
// candidate tried and why it failed (koffi's own message names no file).
function loadLibrary() {
  const tried = [];
  for (const [where, file] of libraryCandidates()) {
    if (path.isAbsolute(file) && !fs.existsSync(file)) {
      tried.push(`${where}: ${file} (no such file)`);
      continue;
    }
    try {
      return [ffi.load(file), file];
    } catch (err) {
      tried.push(`${where}: ${file} (${err.message})`);
    }
  }
  throw new Error(`weft: cannot load ${LIBRARY_FILE}. Tried, in order:\n  ${tried.join('\n  ')}\n`
    + `Set WEFT_LIBRARY to the path of ${LIBRARY_FILE}, or build it: \`make build\` `
    + '(or `cargo build --release`) at the root of the weft repository.');
}

const [lib, LIBRARY] = loadLibrary();

if (lib.weft_abi_version() !== ffi.WEFT_ABI_VERSION) {
  throw new Error(`weft: ${LIBRARY} has ABI version ${lib.weft_abi_version()}, `
    + `this binding was generated for ${ffi.WEFT_ABI_VERSION}`);
}

// The file the library was loaded from: the dynamic loader chose it when a system
// library was loaded by name, and dladdr says which.
function loadedFile() {
  const info = {};
  return c_dladdr(lib.handle.symbol('weft_version'), info) ? info.dli_fname : LIBRARY;
}

module.exports = { lib, loadedFile };
