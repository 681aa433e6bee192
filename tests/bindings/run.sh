#!/usr/bin/env bash
# Runs the binding tests: the generated declarations are up to date with include/weft.h,
# then the Python (ctypes) and Node (koffi) tests against the release library.
#
#     bash tests/bindings/run.sh
#
# Builds target/release/libweft.so first (cargo build --release) unless WEFT_LIBRARY
# names a library already; installs bindings/node's locked packages if they are missing.
set -euo pipefail
cd "$(dirname "$0")/../.."

echo "== python3 bindings/gen.py --check"
python3 bindings/gen.py --check

if [ -z "${WEFT_LIBRARY:-}" ]; then
    echo "== cargo build --release"
    cargo build --release --quiet
fi

if [ ! -d bindings/node/node_modules/koffi ]; then
    echo "== npm ci (bindings/node)"
    (cd bindings/node && npm ci --no-audit --no-fund --loglevel=error)
fi

echo "== python3 tests/bindings/test_ffi_python.py"
python3 tests/bindings/test_ffi_python.py -v

echo "== node --test bindings/node/test/"
node --test bindings/node/test/
