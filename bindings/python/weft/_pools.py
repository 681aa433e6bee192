"""The binding's own worker pools: one IO pool (`on="thread"`) and one CPU pool
(`on="cpu"`), made with weft_pool_new on first use, shared by every Loop.

Each pool thread keeps ONE Python thread state for its whole life. Without that, every
work call on a thread that Python did not create would make and destroy a thread state
(ctypes' callback wrapper does PyGILState_Ensure / PyGILState_Release around each call),
costing several microseconds and losing threading.local between tasks. The hooks:

* on_thread_start: runs through a ctypes callback, so ctypes has already done
  PyGILState_Ensure (creating the thread state, counter 1). It calls PyGILState_Ensure
  once more (counter 2). When the hook returns, ctypes' PyGILState_Release drops the
  counter to 1 and, as its Ensure found the thread without the GIL, releases the GIL
  with PyEval_SaveThread: the thread state stays, detached, stored in the thread's
  PyGILState slot. That is "Ensure, then SaveThread, keeping the state".
* every work call: ctypes' PyGILState_Ensure finds that state and only takes the GIL
  (PyEval_RestoreThread); its Release only gives the GIL back (counter 2 -> 1, no delete).
* on_thread_stop: inside the ctypes call (GIL held, counter 2), PyGILState_Release
  (LOCKED) drops the counter to 1; ctypes' own Release then drops it to 0, which clears
  and deletes the thread state. That is "RestoreThread, then Release".

A pool thread must not enter Python while the interpreter finalizes (CPython <= 3.13
ends such a thread with pthread_exit); the atexit handler frees the pools, which joins
their threads, while Python is still whole (see _loop._at_exit).
"""

from __future__ import annotations

import ctypes
import os
import threading
from typing import Any, Dict, Optional

from . import _ffi
from ._errors import error_from
from ._lib import PyGILState_LOCKED, lib, pythonapi
from ._stats import PoolStats
from ._stats import pool_stats as _pool_stats

IO = _ffi.WEFT_POOL_IO
CPU = _ffi.WEFT_POOL_CPU

# Pool sizes. IO: at most min(32, cores + 4) threads, as ThreadPoolExecutor: every task
# of this pool needs the GIL to run its Python function, so more threads than that buy
# concurrency only for calls that block without the GIL. CPU: 0, one per core. Set with
# weft.configure_pools before the first thread or cpu task.
sizes: Dict[int, int] = {IO: min(32, (os.cpu_count() or 1) + 4), CPU: 0}
# Whether pool threads keep a persistent thread state (the hooks above). Only the
# benchmark turns it off, to measure what it saves.
thread_hooks = True

_pools: Dict[int, Any] = {}
_lock = threading.Lock()


def _on_thread_start(index: int, data: Any) -> None:
    pythonapi.PyGILState_Ensure()


def _on_thread_stop(index: int, data: Any) -> None:
    pythonapi.PyGILState_Release(PyGILState_LOCKED)


THREAD_START = _ffi.weft_thread_hook(_on_thread_start)
THREAD_STOP = _ffi.weft_thread_hook(_on_thread_stop)


def get(kind: int) -> Any:
    """The pool of this kind (a POINTER(weft_pool)), made on first use."""
    pool = _pools.get(kind)
    if pool is not None:
        return pool
    with _lock:
        pool = _pools.get(kind)
        if pool is None:
            options = _ffi.weft_pool_options()
            options.size = ctypes.sizeof(options)
            options.kind = kind
            options.threads = sizes[kind]
            options.name = b"weft-py-io" if kind == IO else b"weft-py-cpu"
            if thread_hooks:
                options.on_thread_start = THREAD_START
                options.on_thread_stop = THREAD_STOP
            pool = lib.weft_pool_new(ctypes.byref(options))
            if not pool:
                raise error_from()
            _pools[kind] = pool
    return pool


def configure(io_threads: Optional[int] = None, cpu_threads: Optional[int] = None) -> None:
    """Sets the size of the binding's pools; allowed only before they are made."""
    for name, value in (("io_threads", io_threads), ("cpu_threads", cpu_threads)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise TypeError(f"configure_pools: {name} must be a non-negative int, not {value!r}")
    with _lock:
        if _pools:
            raise RuntimeError("configure_pools: the pools exist already (call it before the first "
                               "thread or cpu task)")
        if io_threads is not None:
            sizes[IO] = io_threads
        if cpu_threads is not None:
            sizes[CPU] = cpu_threads


_KIND_NAMES = {"io": IO, "thread": IO, "cpu": CPU}


def stats(kind: str) -> PoolStats:
    """`weft.pool_stats`."""
    code = _KIND_NAMES.get(kind) if isinstance(kind, str) else None
    if code is None:
        raise ValueError(f"pool_stats: kind must be 'io' (on='thread') or 'cpu', not {kind!r}")
    with _lock:
        pool = _pools.get(code)
        if pool is None:  # not made yet: no thread has run anything
            return PoolStats(0, 0, 0, 0, 0, 0, 0)
        return _pool_stats(pool, code)


def free_all() -> None:
    """Frees both pools (joins their threads; each runs its on_thread_stop hook)."""
    with _lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        lib.weft_pool_free(pool)


def forget_in_child() -> None:
    """In a forked child the pools' threads do not exist: never touch them."""
    _pools.clear()
