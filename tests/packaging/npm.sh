#!/usr/bin/env bash
# The npm package (bindings/node) installed the ways npm users install it, each into a
# new project in a temporary directory, run from outside the repository with
# WEFT_LIBRARY and LD_LIBRARY_PATH unset:
#
#   a. `npm pack`, then `npm install weft-<version>.tgz`: require('weft') and
#      `import weft from 'weft'` load the library the tarball carries;
#   b. `npm install /path/to/bindings/node` (a link): of this checkout, and of a copy laid
#      out like a fresh clone (no node_modules/, so the prepare script installs koffi);
#   c. the errors: a wrong WEFT_LIBRARY, no library anywhere, npm pack with no library.
#
#     bash tests/packaging/npm.sh
#
# Needs node >= 20, npm, cargo (npm pack builds the release library; it packs
# $WEFT_LIBRARY instead when that is set), and the npm registry or npm's cache (koffi).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
PACKAGE=$REPO/bindings/node
PACK_LIBRARY=${WEFT_LIBRARY:-}
unset WEFT_LIBRARY LD_LIBRARY_PATH
NPM=(--no-audit --no-fund --loglevel=error --prefer-offline)
NATIVE=native/$(node -p 'process.platform + "-" + process.arch')/libweft.so

WORK=$(mktemp -d)
cleanup() {
    rm -rf "$WORK"
    # An interrupted npm pack leaves its copy, which the source tree would then load.
    if [ -n "${packing:-}" ]; then node "$PACKAGE/scripts/native.js" remove; fi
}
trap cleanup EXIT

checks=0
ok() { checks=$((checks + 1)); echo "ok $checks - $1"; }
fail() { echo "FAIL: $1" >&2; exit 1; }

# A new npm project in $WORK/<name>; prints its path.
project() {
    mkdir "$WORK/$1"
    echo "{\"name\": \"$1\", \"version\": \"1.0.0\", \"private\": true}" >"$WORK/$1/package.json"
    echo "$WORK/$1"
}

# In project $1: loads weft, runs a timer to completion on a Loop, and checks that
# libraryPath is $2. The same body for `node -e` (CommonJS) and an .mjs file (ESM).
CHECK_BODY='
const want = process.argv.at(-1);
if (weft.libraryPath !== want) throw new Error(`libraryPath is ${weft.libraryPath}, not ${want}`);
const loop = new weft.Loop();
process.exitCode = 1;
loop.after(5, () => { loop.close(); process.exitCode = 0; });'
check_require() { (cd "$1" && node -e "const weft = require('weft'); $CHECK_BODY" "$2"); }
check_import() {
    printf "import weft from 'weft';\n%s\n" "$CHECK_BODY" >"$1/check.mjs"
    (cd "$1" && node check.mjs "$2")
}

# Requires weft in project $1, which must fail; prints the error.
require_fails() {
    local out
    if out=$(cd "$1" && node -e "require('weft')" 2>&1); then fail "require('weft') in $1 loaded"; fi
    echo "$out"
}

has() { grep -qF -- "$2" <<<"$1" || fail "the error does not say '$2':"$'\n'"$1"; }

# --- a. the tarball -----------------------------------------------------------------------
[ ! -e "$PACKAGE/native" ] || fail "$PACKAGE/native exists (left by an interrupted npm pack?): remove it"
packing=1
(cd "$PACKAGE" && WEFT_LIBRARY=$PACK_LIBRARY npm pack --pack-destination "$WORK" "${NPM[@]}" >/dev/null)
packing=
tarball=$(echo "$WORK"/weft-*.tgz)
[ -f "$tarball" ] || fail "npm pack made no tarball"
tar -tzf "$tarball" >"$WORK/contents"
grep -qx "package/$NATIVE" "$WORK/contents" || fail "$tarball has no $NATIVE"
[ ! -e "$PACKAGE/native" ] || fail "postpack left $PACKAGE/native"
ok "npm pack puts $NATIVE in $(basename "$tarball") and removes it from the source tree"

TARBALL_USER=$(project tarball-user)
(cd "$TARBALL_USER" && npm install "$tarball" "${NPM[@]}" >/dev/null)
[ ! -L "$TARBALL_USER/node_modules/weft" ] || fail "the tarball was installed as a link"
check_require "$TARBALL_USER" "$TARBALL_USER/node_modules/weft/$NATIVE"
ok "require('weft') from the installed tarball loads its $NATIVE"
check_import "$TARBALL_USER" "$TARBALL_USER/node_modules/weft/$NATIVE"
ok "import weft from 'weft' (ESM) likewise"

# --- b. a directory ----------------------------------------------------------------------
LINK_USER=$(project link-user)
(cd "$LINK_USER" && npm install "$PACKAGE" "${NPM[@]}" >/dev/null)
[ "$(readlink -f "$LINK_USER/node_modules/weft")" = "$PACKAGE" ] || fail "node_modules/weft is not a link to $PACKAGE"
check_require "$LINK_USER" "$REPO/target/release/libweft.so"
ok "npm install $PACKAGE links it, and require('weft') loads target/release"

# A fresh clone: bindings/node without node_modules/ (whether or not this checkout's has
# one), next to include/weft.h and this checkout's target/.
CLONE=$WORK/clone
mkdir -p "$CLONE/bindings/node" "$CLONE/include"
cp -r "$PACKAGE"/{lib,scripts,package.json,package-lock.json} "$CLONE/bindings/node/"
cp "$REPO/include/weft.h" "$CLONE/include/"
ln -s "$REPO/target" "$CLONE/target"
CLONE_USER=$(project clone-user)
(cd "$CLONE_USER" && npm install "$CLONE/bindings/node" "${NPM[@]}" >/dev/null)
[ -d "$CLONE/bindings/node/node_modules/koffi" ] || fail "the prepare script did not install koffi"
check_require "$CLONE_USER" "$CLONE/target/release/libweft.so"
ok "npm install of a fresh clone's bindings/node installs koffi there (prepare), and loads"

# --- c. errors ---------------------------------------------------------------------------
out=$(WEFT_LIBRARY=/nonexistent/libweft.so require_fails "$TARBALL_USER")
has "$out" "WEFT_LIBRARY: /nonexistent/libweft.so (no such file)"
has "$out" "Set WEFT_LIBRARY to the path of libweft.so"
ok "a wrong WEFT_LIBRARY is an error naming it, why, and what to do"

rm -r "$TARBALL_USER/node_modules/weft/native"
out=$(LD_LIBRARY_PATH= require_fails "$TARBALL_USER")
has "$out" "package: $TARBALL_USER/node_modules/weft/$NATIVE (no such file)"
has "$out" "system: libweft.so.0 (Failed to load shared library: "
has "$out" "system: libweft.so (Failed to load shared library: "
has "$out" '`make build` (or `cargo build --release`)'
if grep -q "repository:" <<<"$out"; then fail "an installed package looked for a repository: $out"; fi
ok "with no library anywhere, the error lists every path tried"

if out=$(cd "$PACKAGE" && WEFT_LIBRARY=/nonexistent/libweft.so npm pack --pack-destination "$WORK/none" "${NPM[@]}" 2>&1); then
    fail "npm pack with WEFT_LIBRARY=/nonexistent/libweft.so succeeded"
fi
has "$out" "weft: npm pack needs libweft.so: WEFT_LIBRARY is /nonexistent/libweft.so, which does not exist"
[ ! -e "$PACKAGE/native" ] || fail "a failed npm pack left $PACKAGE/native"
ok "npm pack with a wrong WEFT_LIBRARY fails, saying so"

echo "npm packaging: $checks checks passed"
