"""weft: an embeddable async runtime (event loops, timers, fd and signal watches,
publish/subscribe events, and tasks on the loop, on threads or in forked processes),
for Python through ctypes. See bindings/python/README.md.

    import weft

    with weft.Loop() as loop:
        loop.call_every(0.5, print, "tick")
        fut = loop.spawn(render, path, on="process")  # fn may be a closure or a lambda
        fut.add_done_callback(lambda f: (send(f.result()), loop.stop()))
        loop.run()

`weft.asyncio.attach()` and `weft.tornado.attach()` run a Loop inside those loops
(those two modules, and asyncio or tornado, are imported when first touched).
The C declarations are in `weft._ffi` (generated from include/weft.h).
`python -m weft` prints the versions and the library in use.
"""

from __future__ import annotations

import importlib as _importlib
import types as _types

from ._callbacks import set_error_handler
from ._errors import (
    Busy,
    ChildCrashed,
    Closed,
    Error,
    Forked,
    InvalidArgument,
    NotFound,
    Panic,
    ProcessTaskError,
    RemoteTraceback,
    SystemCallFailed,
    Unsupported,
)
from ._future import Future
from ._lib import library_path
from ._loop import ERROR, HANGUP, READ, WRITE, Handle, Loop, Watch, cancelled
from ._monitor import SlowCallback
from ._pools import configure as configure_pools
from ._stats import LoopStats, PoolStats, TaskTiming

__version__ = "0.1.0"

__all__ = [
    "Busy",
    "ChildCrashed",
    "Closed",
    "ERROR",
    "Error",
    "Forked",
    "Future",
    "HANGUP",
    "Handle",
    "InvalidArgument",
    "Loop",
    "LoopStats",
    "NotFound",
    "Panic",
    "PoolStats",
    "ProcessTaskError",
    "READ",
    "RemoteTraceback",
    "SlowCallback",
    "SystemCallFailed",
    "TaskTiming",
    "Unsupported",
    "WRITE",
    "Watch",
    "cancelled",
    "configure_pools",
    "library_path",
    "pool_stats",
    "set_error_handler",
    "version",
]


def pool_stats(kind: str) -> PoolStats:
    """The counters of the binding's pool of `kind` now, as a `weft.PoolStats`: "io"
    (the pool of `on="thread"` tasks) or "cpu" (`on="cpu"`). A pool is made by its
    first task: before that, all zero. Any thread."""
    from ._pools import stats

    return stats(kind)


def version() -> str:
    """The version of the loaded weft library ("MAJOR.MINOR.PATCH")."""
    from ._lib import lib

    return str(lib.weft_version().decode())


# Submodules that import a host loop's package (asyncio, tornado): imported on first
# access, so that `import weft` costs neither and works without tornado installed.
_HOST_LOOP_MODULES = ("asyncio", "tornado")


def __getattr__(name: str) -> _types.ModuleType:
    if name in _HOST_LOOP_MODULES:
        return _importlib.import_module(f"{__name__}.{name}")  # also sets weft.<name>
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOST_LOOP_MODULES))
