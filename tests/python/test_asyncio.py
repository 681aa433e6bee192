"""weft.asyncio.attach: a weft loop driven by an asyncio loop."""

import asyncio
import os
import threading
import time

import pytest

import weft
import weft.asyncio


def arun(coro, timeout=10):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_callbacks_run_on_the_asyncio_thread(errors):
    async def main():
        loop = weft.asyncio.attach()
        here = threading.get_ident()
        seen = []
        done = asyncio.get_running_loop().create_future()
        loop.call_soon(lambda: seen.append(("soon", threading.get_ident())))
        loop.call_later(0.01, lambda: seen.append(("later", threading.get_ident())))
        loop.subscribe("e", lambda t, p: seen.append((p, threading.get_ident())))
        loop.emit("e", b"event")
        threading.Thread(target=loop.emit, args=("e", b"from a thread")).start()
        loop.call_later(0.05, done.set_result, None)
        await done
        loop.close()
        return here, seen

    here, seen = arun(main())
    assert {ident for _, ident in seen} == {here}
    assert {what for what, _ in seen} == {"soon", "later", b"event", b"from a thread"}
    assert not errors


def test_await_spawn_on_every_kind(errors):
    async def main():
        loop = weft.asyncio.attach()
        try:
            return (await loop.spawn(lambda: 1),
                    await loop.spawn(lambda: 2, on="thread"),
                    await loop.spawn(lambda: 3, on="cpu"),
                    await loop.spawn(os.getpid, on="process"))
        finally:
            loop.close()

    one, two, three, pid = arun(main())
    assert (one, two, three) == (1, 2, 3) and pid != os.getpid()
    assert not errors


def test_awaited_exceptions_and_timeouts(errors):
    async def main():
        loop = weft.asyncio.attach()
        try:
            with pytest.raises(KeyError):
                await loop.spawn(lambda: {}["x"], on="process")
            with pytest.raises(TimeoutError):
                await loop.spawn(time.sleep, 5, on="process", timeout=0.05)
        finally:
            loop.close()

    arun(main())


def test_asyncio_cancellation_cancels_the_task(errors):
    async def main():
        loop = weft.asyncio.attach()
        fut = loop.spawn(time.sleep, 5, on="process")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.wrap_future(fut), 0.05)
        await asyncio.sleep(0.01)
        loop.close()
        return fut

    fut = arun(main())
    assert fut.cancelled()


def test_close_detaches_and_run_is_refused(errors):
    async def main():
        aio = asyncio.get_running_loop()
        loop = weft.asyncio.attach(aio)
        fd = weft._lib.held.weft_loop_fd(loop._ptr)
        assert aio._selector.get_key(fd)
        with pytest.raises(RuntimeError, match="attached"):
            loop.run()
        loop.close()
        with pytest.raises(KeyError):
            aio._selector.get_key(fd)
        with pytest.raises(weft.Closed):
            loop.call_soon(print)

    arun(main())


def test_close_from_a_callback(errors):
    async def main():
        loop = weft.asyncio.attach()
        later = loop.call_later(10, print)
        loop.call_soon(loop.close)
        await asyncio.sleep(0.05)
        return loop, later

    loop, later = arun(main())
    assert loop.closed and not later.active


def test_attach_needs_a_loop():
    with pytest.raises(RuntimeError, match="no running asyncio loop"):
        weft.asyncio.attach()
    with pytest.raises(TypeError):
        weft.asyncio.attach("loop")
    closed = asyncio.new_event_loop()
    closed.close()
    with pytest.raises(RuntimeError, match="closed"):
        weft.asyncio.attach(closed)


def test_attach_before_the_loop_runs(errors):
    aio = asyncio.new_event_loop()
    try:
        loop = weft.asyncio.attach(aio)
        got = []
        loop.call_later(0.01, got.append, threading.get_ident())
        fut = loop.spawn(lambda: "thread", on="thread")
        assert aio.run_until_complete(asyncio.wait_for(asyncio.wrap_future(fut, loop=aio), 5)) == "thread"
        aio.run_until_complete(asyncio.sleep(0.05))
        assert got == [threading.get_ident()]
        loop.close()
    finally:
        aio.close()


def test_exceptions_in_callbacks_are_reported_not_raised(errors):
    async def main():
        loop = weft.asyncio.attach()
        loop.call_soon(lambda: 1 / 0)
        await asyncio.sleep(0.02)
        loop.close()

    arun(main())
    assert errors.types() == [ZeroDivisionError]
    errors.clear()
