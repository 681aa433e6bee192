"""weft inside Tornado (>= 6): `weft.tornado.attach()` makes a weft Loop that the
IOLoop drives through IOLoop.add_handler on the weft loop's fd (weft_loop_fd), making a
non-blocking pass (weft_loop_run NOWAIT) whenever it is readable. Every weft callback
runs on the IOLoop's thread; futures of `loop.spawn` can be awaited in coroutines::

    class RenderHandler(tornado.web.RequestHandler):
        async def get(self):
            html = await self.application.weft.spawn(render, path, on="process")
            self.write(html)
"""

from __future__ import annotations

import asyncio as _asyncio
import threading
from typing import Any, Callable, Optional

try:
    import tornado
except ImportError as exc:
    raise ModuleNotFoundError("weft.tornado needs Tornado >= 6, which is not installed: "
                              "pip install tornado (or pip install 'weft[tornado]')", name="tornado") from exc
from tornado.ioloop import IOLoop

from ._loop import Loop

__all__ = ["attach"]

if tornado.version_info < (6,):
    raise ImportError(f"weft.tornado needs Tornado >= 6, not {tornado.version}")


class _TornadoDriver:
    def __init__(self, host: IOLoop, drive: Callable[[], None]) -> None:
        self.host = host
        self.drive = drive
        self.fd: Optional[int] = None

    def attach(self, fd: int) -> None:
        self.fd = fd
        self.host.add_handler(fd, lambda fd, events: self.drive(), IOLoop.READ)

    def detach(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            try:
                self.host.remove_handler(fd)
            except Exception:  # noqa: BLE001 - the IOLoop is closed already
                pass

    def in_host_thread(self) -> bool:
        aio = getattr(self.host, "asyncio_loop", None)
        if aio is None or not aio.is_running():
            return True
        try:
            return _asyncio.get_running_loop() is aio
        except RuntimeError:
            return False

    def call_soon_threadsafe(self, fn: Callable[[], Any]) -> None:
        self.host.add_callback(fn)


def attach(io_loop: Optional[IOLoop] = None, *, max_children: Optional[int] = None) -> Loop:
    """A new weft Loop driven by io_loop (default: IOLoop.current()). Its callbacks run
    on the IOLoop's thread; `await loop.spawn(...)` works in coroutines. `close()`
    detaches it. Loop.run() is refused: run the IOLoop instead."""
    if io_loop is None:
        io_loop = IOLoop.current()
    if not isinstance(io_loop, IOLoop):
        raise TypeError(f"weft.tornado.attach: expected a tornado IOLoop, not {type(io_loop).__name__}")
    loop = Loop(max_children=max_children)
    aio = getattr(io_loop, "asyncio_loop", None)
    try:
        running_here = aio is not None and _asyncio.get_running_loop() is aio
    except RuntimeError:
        running_here = False
    try:
        loop._attach(_TornadoDriver(io_loop, loop._drive), threading.get_ident() if running_here else None)
    except BaseException:
        loop.close()
        raise
    return loop
