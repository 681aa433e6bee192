"""weft: an embeddable async runtime (event loops, timers, fd and signal watches,
publish/subscribe events, and tasks on the loop, on threads or in forked processes),
for Python through ctypes. See bindings/python/README.md.

    import weft

    with weft.Loop() as loop:
        loop.call_every(0.5, print, "tick")
        fut = loop.spawn(render, path, on="process")  # fn may be a closure or a lambda
        fut.add_done_callback(lambda f: (send(f.result()), loop.stop()))
        loop.run()

`weft.asyncio.attach()` and `weft.tornado.attach()` run a Loop inside those loops.
The C declarations are in `weft._ffi` (generated from include/weft.h).
"""

from __future__ import annotations

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
from ._pools import configure as configure_pools

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
    "NotFound",
    "Panic",
    "ProcessTaskError",
    "READ",
    "RemoteTraceback",
    "SystemCallFailed",
    "Unsupported",
    "WRITE",
    "Watch",
    "cancelled",
    "configure_pools",
    "library_path",
    "set_error_handler",
    "version",
]


def version() -> str:
    """The version of the loaded weft library ("MAJOR.MINOR.PATCH")."""
    from ._lib import lib

    return str(lib.weft_version().decode())
