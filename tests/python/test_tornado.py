"""weft.tornado.attach: a weft loop driven by a Tornado IOLoop."""

import os
import threading
import time

import pytest

import weft

tornado = pytest.importorskip("tornado")
from tornado.ioloop import IOLoop  # noqa: E402

import weft.tornado  # noqa: E402


def test_callbacks_run_on_the_ioloop_thread_and_spawn_is_awaitable(errors):
    async def main():
        loop = weft.tornado.attach()
        seen = []
        loop.call_soon(lambda: seen.append(threading.get_ident()))
        loop.subscribe("e", lambda t, p: seen.append(threading.get_ident()))
        loop.emit("e", "x")
        result = (await loop.spawn(lambda: "t", on="thread"), await loop.spawn(os.getpid, on="process"))
        loop.close()
        return threading.get_ident(), seen, result

    here, seen, (from_thread, pid) = IOLoop.current().run_sync(main, timeout=10)
    assert seen == [here, here]
    assert from_thread == "t" and pid != os.getpid()
    assert not errors


def test_timers_and_close_detaches(errors):
    async def main():
        io_loop = IOLoop.current()
        loop = weft.tornado.attach(io_loop)
        ticks = []
        handle = loop.call_every(0.005, lambda: ticks.append(time.monotonic()))
        await tornado.gen.sleep(0.06)
        handle.cancel()
        with pytest.raises(RuntimeError):
            loop.run()
        loop.close()
        return ticks

    ticks = IOLoop.current().run_sync(main, timeout=10)
    assert len(ticks) >= 5


def test_attach_type_check():
    with pytest.raises(TypeError):
        weft.tornado.attach("io loop")
