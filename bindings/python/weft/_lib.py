"""Finds and loads libweft, and declares its functions from the generated `_ffi`.

Search order (the first that exists is loaded; `library_candidates()` lists them):

1. ``$WEFT_LIBRARY``: a path to the library. When it is set, nothing else is tried, so a
   wrong path is an ImportError rather than a silent fallback.
2. The copy inside the package (``weft/libweft.so``), put there by
   ``pip install ./bindings/python``.
3. The repository's ``target/release/libweft.so``, when the package is imported from
   the source tree (``bindings/python/weft``, known by the repository's
   ``include/weft.h``) after ``cargo build --release``.
4. The system: ``ctypes.util.find_library("weft")``, then the plain name for the dynamic
   loader (``LD_LIBRARY_PATH``, ``/etc/ld.so.conf``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from typing import Iterator, List, Tuple

from . import _ffi

if sys.platform == "darwin":
    LIBRARY_FILE = "libweft.dylib"
else:
    LIBRARY_FILE = "libweft.so"

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_REPO_DIR = os.path.dirname(os.path.dirname(os.path.dirname(_PACKAGE_DIR)))


def library_candidates() -> Iterator[Tuple[str, str]]:
    """Yields (where, path) in the order the loader tries them."""
    override = os.environ.get("WEFT_LIBRARY")
    if override:
        yield "WEFT_LIBRARY", override
        return
    yield "package", os.path.join(_PACKAGE_DIR, LIBRARY_FILE)
    # Only from the source tree: an installed package's ../../.. is not a repository.
    if os.path.isfile(os.path.join(_REPO_DIR, "include", "weft.h")):
        yield "repository", os.path.join(_REPO_DIR, "target", "release", LIBRARY_FILE)
    found = ctypes.util.find_library("weft")
    if found:
        yield "system", found
    yield "system", LIBRARY_FILE


def _load() -> Tuple[ctypes.CDLL, str]:
    tried: List[str] = []
    for where, path in library_candidates():
        is_path = os.sep in path
        if is_path and not os.path.exists(path):
            tried.append(f"{where}: {path} (no such file)")
            if where == "WEFT_LIBRARY":
                break
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError as exc:
            tried.append(f"{where}: {path} ({exc})")
            if where == "WEFT_LIBRARY":
                break
            continue
        return lib, path
    raise ImportError(
        "weft: cannot load the weft library. Tried, in order:\n  "
        + "\n  ".join(tried)
        + "\nBuild it with `cargo build --release` at the repository root, set "
        "WEFT_LIBRARY to its path, or reinstall with `pip install ./bindings/python`."
    )


lib, library_path = _load()
_ffi.bind(lib)

# The same library through a PyDLL handle: its calls keep the GIL held. The binding
# uses it for the calls that never wait for another thread (posting, emitting,
# registering, spawning a thread task, cancelling, stopping): releasing and re-taking
# the GIL around each of them costs more than the call, and lets a pool thread grab the
# GIL in between, so that the caller then waits for it. Callbacks weft runs inside such
# a call (a free_fn run by weft_cancel) run on this thread, which holds the GIL already.
# Everything that can block (weft_loop_run, weft_loop_free, weft_pool_free,
# weft_shutdown, writes to a pipe) goes through `lib`, which releases the GIL.
held = _ffi.bind(ctypes.PyDLL(library_path))

if lib.weft_abi_version() != _ffi.WEFT_ABI_VERSION:
    raise ImportError(
        f"weft: {library_path} has ABI version {lib.weft_abi_version()}, but this binding "
        f"was generated for ABI version {_ffi.WEFT_ABI_VERSION} (rebuild the library or "
        "regenerate the binding with `python3 bindings/gen.py`)"
    )

# The CPython C API, for the pool thread hooks (see _pools.py). PyDLL keeps the GIL
# held during the call, which these functions require.
pythonapi = ctypes.pythonapi
pythonapi.PyGILState_Ensure.restype = ctypes.c_int
pythonapi.PyGILState_Ensure.argtypes = []
pythonapi.PyGILState_Release.restype = None
pythonapi.PyGILState_Release.argtypes = [ctypes.c_int]
PyGILState_LOCKED = 0
