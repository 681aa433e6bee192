#!/usr/bin/env bash
# The Python wheel, end to end: built from the checkout it is named
# weft-<version>-py3-none-manylinux_X_Y_<arch>.whl, auditwheel finds it consistent with
# that very tag, and it installs (--no-index) into a fresh venv of the system python3
# where, from outside the checkout, the packed library runs a timer, a thread task and a
# process task, and `python -m weft` reports it. A copy of bindings/python outside the
# checkout refuses to build without WEFT_LIBRARY, saying how to set it, and builds with it.
#
#     bash tests/packaging/wheel.sh        (after `make build` and `make venv`)
#
# Needs no network: the checkout's .venv (tests/requirements.txt) has setuptools, wheel
# and auditwheel. The fresh venv is made with python3 from PATH.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
build_python=$repo/.venv/bin/python
version=$(sed -n 's/^version = "\(.*\)"/\1/p' bindings/python/pyproject.toml)
arch=$(uname -m)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

checks=0
pass() { checks=$((checks + 1)); echo "ok: $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

build_wheel() {  # build_wheel <source dir> <output dir> <log>: pip wheel, offline
    "$build_python" -m pip wheel --no-deps --no-build-isolation --disable-pip-version-check \
        -w "$2" "$1" >"$3" 2>&1
}

# -- the wheel built from the checkout: it needs no WEFT_LIBRARY (cargo build --release)
if ! (unset WEFT_LIBRARY; build_wheel ./bindings/python "$tmp/dist" "$tmp/build.log"); then
    cat "$tmp/build.log" >&2
    fail "pip wheel ./bindings/python"
fi
wheels=("$tmp"/dist/*.whl)
[ ${#wheels[@]} -eq 1 ] || fail "expected one wheel, found: ${wheels[*]}"
wheel=${wheels[0]}
name=$(basename "$wheel")
[[ $name =~ ^weft-${version//./\\.}-py3-none-(manylinux_[0-9]+_[0-9]+_${arch})\.whl$ ]] ||
    fail "wheel name $name is not weft-$version-py3-none-manylinux_X_Y_$arch.whl"
tag=${BASH_REMATCH[1]}
pass "built $name"

contents=$("$build_python" -m zipfile -l "$wheel")
grep -q '^weft/libweft\.so ' <<<"$contents" || fail "$name does not hold weft/libweft.so"
pass "the wheel holds weft/libweft.so"

audit=$("$repo/.venv/bin/auditwheel" show "$wheel" 2>/dev/null) || fail "auditwheel show $name"
policy=$(tr '\n' ' ' <<<"$audit" | grep -o 'following platform tag: *"[^"]*"' | sed 's/.*"\(.*\)"/\1/') || true
[ "$policy" = "$tag" ] || { echo "$audit" >&2; fail "auditwheel says \"$policy\", the wheel says $tag"; }
pass "auditwheel show: consistent with $policy"

# -- installed into a fresh venv, used from outside the checkout
python3 -m venv "$tmp/venv" || fail "python3 -m venv (Debian: apt-get install python3-venv)"
"$tmp/venv/bin/python" -m pip install --no-index --quiet --disable-pip-version-check "$wheel" ||
    fail "pip install --no-index $name"
pass "installed into a fresh venv ($("$tmp/venv/bin/python" --version))"

site=$("$tmp/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])')
outside() { (cd "$tmp" && env -u WEFT_LIBRARY PYTHONPATH= "$tmp/venv/bin/python" "$@"); }

outside - >"$tmp/run.out" <<'PYTHON' || fail "the program using the installed wheel"
import os
import threading
import time

import weft

print("library:", weft.library_path)
with weft.Loop() as loop:
    start = time.monotonic()
    timer = []
    loop.call_later(0.02, lambda: timer.append(time.monotonic() - start))
    on_thread = loop.spawn(lambda: (sum(range(1000)), threading.current_thread() is threading.main_thread()),
                           on="thread")
    on_process = loop.spawn(os.getpid, on="process")
    loop.run()
print(f"timer: fired {'after' if timer[0] >= 0.02 else 'BEFORE'} 20 ms")
print("thread task: %d, on the main thread: %s" % on_thread.result(0))
print("process task: in", "another process" if on_process.result(0) != os.getpid() else "THIS PROCESS")
PYTHON
sed 's/^/    /' "$tmp/run.out"
expect() {  # expect <line> <what>: the program printed exactly that line
    grep -qxF -- "$1" "$tmp/run.out" || fail "$2: expected \"$1\""
    pass "$2"
}
expect "library: $site/weft/libweft.so" "weft.library_path is the venv's copy"
expect "timer: fired after 20 ms" "call_later"
expect "thread task: 499500, on the main thread: False" "spawn(on=\"thread\")"
expect "process task: in another process" "spawn(on=\"process\")"

outside -m weft >"$tmp/about.out" || fail "python -m weft"
sed 's/^/    /' "$tmp/about.out"
grep -qx "binding version: $version" "$tmp/about.out" && grep -qx "library path: *$site/weft/libweft.so" "$tmp/about.out" ||
    fail "python -m weft: expected the binding version $version and the venv's library"
pass "python -m weft"

# -- a copy of bindings/python outside the checkout
mkdir -p "$tmp/copy/bindings"
cp -R bindings/python "$tmp/copy/bindings/"
rm -rf "$tmp"/copy/bindings/python/{build,*.egg-info,weft/libweft.*}
find "$tmp/copy" -name __pycache__ -prune -exec rm -rf {} +

if (cd "$tmp" && unset WEFT_LIBRARY && build_wheel copy/bindings/python copy-dist copy.log); then
    fail "the copy built without WEFT_LIBRARY"
fi
grep -q 'and set WEFT_LIBRARY to it' "$tmp/copy.log" && grep -q 'WEFT_LIBRARY=/path/to/weft/target/release/libweft.so pip wheel' "$tmp/copy.log" ||
    { cat "$tmp/copy.log" >&2; fail "the copy without WEFT_LIBRARY: expected how to set WEFT_LIBRARY"; }
! grep -q Traceback "$tmp/copy.log" || { cat "$tmp/copy.log" >&2; fail "the copy without WEFT_LIBRARY: a traceback"; }
pass "the copy without WEFT_LIBRARY says how to set it (no traceback)"

(cd "$tmp" && WEFT_LIBRARY=$repo/target/release/libweft.so build_wheel copy/bindings/python copy-dist copy.log) ||
    { cat "$tmp/copy.log" >&2; fail "the copy with WEFT_LIBRARY"; }
[ -f "$tmp/copy-dist/$name" ] || fail "the copy with WEFT_LIBRARY built $(ls "$tmp/copy-dist"), not $name"
pass "the copy with WEFT_LIBRARY builds $name"

echo "wheel: $checks checks passed"
