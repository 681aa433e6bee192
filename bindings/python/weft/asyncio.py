"""weft inside asyncio: `weft.asyncio.attach()` makes a weft Loop that the asyncio loop
drives. asyncio watches the weft loop's one fd (weft_loop_fd) with add_reader and makes a
non-blocking pass (weft_loop_run NOWAIT) whenever it is readable, which is whenever
weft has work: due timers, ready watches, posts, events, finished tasks. So every weft
callback runs on the asyncio thread, and futures of `loop.spawn` can be awaited::

    async def main():
        loop = weft.asyncio.attach()
        try:
            html = await loop.spawn(render, path, on="process")
        finally:
            loop.close()
"""

from __future__ import annotations

import asyncio as _asyncio
import threading
from typing import Any, Callable, Optional

from ._loop import Loop

__all__ = ["attach"]


class _AsyncioDriver:
    def __init__(self, host: _asyncio.AbstractEventLoop, drive: Callable[[], None]) -> None:
        self.host = host
        self.drive = drive
        self.fd: Optional[int] = None

    def attach(self, fd: int) -> None:
        self.fd = fd
        self.host.add_reader(fd, self.drive)

    def detach(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            try:
                self.host.remove_reader(fd)
            except Exception:  # noqa: BLE001 - the host loop is closed already
                pass

    def in_host_thread(self) -> bool:
        if not self.host.is_running():
            return True  # nobody polls the fd: detaching from here is safe
        try:
            return _asyncio.get_running_loop() is self.host
        except RuntimeError:
            return False

    def call_soon_threadsafe(self, fn: Callable[[], Any]) -> None:
        try:
            self.host.call_soon_threadsafe(fn)
        except RuntimeError:  # the host loop is closed
            fn()


def attach(asyncio_loop: Optional[_asyncio.AbstractEventLoop] = None, *,
           max_children: Optional[int] = None) -> Loop:
    """A new weft Loop driven by asyncio_loop (default: the running loop). Its callbacks
    run on that loop's thread; `await loop.spawn(...)` works. `close()` detaches it.
    Loop.run() is refused: run the asyncio loop instead."""
    if asyncio_loop is None:
        try:
            asyncio_loop = _asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError("weft.asyncio.attach: no running asyncio loop; call it from a coroutine "
                               "or pass the loop") from None
    if not isinstance(asyncio_loop, _asyncio.AbstractEventLoop):
        raise TypeError(f"weft.asyncio.attach: expected an asyncio event loop, not {type(asyncio_loop).__name__}")
    if asyncio_loop.is_closed():
        raise RuntimeError("weft.asyncio.attach: the asyncio loop is closed")
    loop = Loop(max_children=max_children)
    try:
        running_here = _asyncio.get_running_loop() is asyncio_loop
    except RuntimeError:
        running_here = False
    try:
        loop._attach(_AsyncioDriver(asyncio_loop, loop._drive), threading.get_ident() if running_here else None)
    except BaseException:
        loop.close()
        raise
    return loop
