"""Signals and process tasks: a child starts with default signal dispositions and no
wakeup fd (issue 15). The parent's SIGTERM handler (asyncio's add_signal_handler, or a
plain signal.signal) never runs for the SIGTERM of a cancel or a timeout, neither in the
parent (through the inherited wakeup fd) nor in the child, and the child dies at once
instead of at weft's SIGKILL 250 ms later.

Every test runs with reused children and with a fork per task."""

import asyncio
import os
import signal
import time

import pytest

import weft
import weft.asyncio
from conftest import run

# The child must be reaped within this long of the cancel (weft's SIGKILL comes 250 ms
# after its SIGTERM: a child that survives the SIGTERM takes longer).
FAST = 0.2
# How long the parent waits for a handler that must not run.
SETTLE = 0.5


# Every test runs with reused children and with a fork per task (conftest.py).
pytestmark = pytest.mark.usefixtures("reuse_children")


@pytest.fixture
def handler_calls():
    """A pipe a SIGTERM handler writes its pid to (the child's copy of it writes to the
    same pipe); read() gives the pids written so far. Restores SIGTERM's handler and
    the wakeup fd afterwards."""
    saved = signal.getsignal(signal.SIGTERM)
    saved_wakeup = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(saved_wakeup)
    r, w = os.pipe()
    os.set_blocking(r, False)

    class Calls:
        def handler(self, *args):
            os.write(w, b"%d\n" % os.getpid())

        def read(self):
            try:
                data = os.read(r, 4096)
            except BlockingIOError:
                return []
            return [int(line) for line in data.split()]

    yield Calls()
    signal.signal(signal.SIGTERM, saved)
    signal.set_wakeup_fd(saved_wakeup)
    os.close(r)
    os.close(w)


def gone(pid):
    return not os.path.exists(f"/proc/{pid}")


def report_pid_and_sleep(loop, seconds):
    loop.emit("pid", str(os.getpid()))
    time.sleep(seconds)
    return "slept"


def signal_facts():
    """In the child: its SIGTERM handler, whether a wakeup fd was set, SIGINT's handler."""
    wakeup = signal.set_wakeup_fd(-1)
    return (signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, wakeup,
            signal.getsignal(signal.SIGINT) is signal.SIG_DFL)


async def cancel_under_asyncio(calls, timeout=None):
    """Spawns a 5 s sleep in a child, cancels it (or lets it time out) once it runs:
    (the future, seconds from the cancel until the child was reaped)."""
    aio = asyncio.get_running_loop()
    aio.add_signal_handler(signal.SIGTERM, calls.handler)
    loop = weft.asyncio.attach()
    try:
        pids = []
        got_pid = aio.create_future()
        loop.subscribe("pid", lambda t, p: (pids.append(int(p)), got_pid.done() or got_pid.set_result(None)))
        fut = loop.spawn(report_pid_and_sleep, loop, 5, on="process", timeout=timeout)
        await asyncio.wait_for(got_pid, 5)
        if timeout is None:
            assert fut.cancel() is True
        start = time.monotonic()
        while not gone(pids[0]) and time.monotonic() - start < 2:
            await asyncio.sleep(0.002)
        took = time.monotonic() - start
        await asyncio.sleep(SETTLE)  # the parent's loop would run the handler meanwhile
        return fut, took
    finally:
        loop.close()
        aio.remove_signal_handler(signal.SIGTERM)


def test_cancel_under_asyncio_with_a_sigterm_handler(handler_calls):
    fut, took = asyncio.run(cancel_under_asyncio(handler_calls))
    assert handler_calls.read() == []
    assert fut.cancelled()
    assert took < FAST, f"the child took {took * 1000:.0f} ms to die"


def test_timeout_under_asyncio_with_a_sigterm_handler(handler_calls):
    # The timeout (50 ms) fires after the child reported its pid: the time is counted
    # from then on, so it includes up to the timeout itself.
    fut, took = asyncio.run(cancel_under_asyncio(handler_calls, timeout=0.05))
    assert handler_calls.read() == []
    assert isinstance(fut.exception(), TimeoutError)
    assert took < 0.05 + FAST, f"the child took {took * 1000:.0f} ms to die"


def cancel_with_a_plain_handler(calls, timeout=None):
    signal.signal(signal.SIGTERM, calls.handler)
    lp = weft.Loop()
    try:
        pids, times = [], []

        def on_pid(topic, payload):
            pids.append(int(payload))
            if timeout is None:
                assert fut.cancel() is True
            times.append(time.monotonic())
            subscription.cancel()

        subscription = lp.subscribe("pid", on_pid)
        fut = lp.spawn(report_pid_and_sleep, lp, 5, on="process", timeout=timeout)
        run(lp)  # until idle: the child was reaped
        took = time.monotonic() - times[0]
        assert gone(pids[0])
        time.sleep(SETTLE)  # a Python handler in this process would run meanwhile
        return fut, took
    finally:
        lp.close()


def test_cancel_with_a_plain_sigterm_handler(handler_calls):
    fut, took = cancel_with_a_plain_handler(handler_calls)
    assert handler_calls.read() == []
    assert fut.cancelled()
    assert took < FAST, f"the child took {took * 1000:.0f} ms to die"


def test_timeout_with_a_plain_sigterm_handler(handler_calls):
    fut, took = cancel_with_a_plain_handler(handler_calls, timeout=0.05)
    assert handler_calls.read() == []
    assert isinstance(fut.exception(), TimeoutError)
    assert took < 0.05 + FAST, f"the child took {took * 1000:.0f} ms to die"


def test_the_child_has_default_handlers_and_no_wakeup_fd(handler_calls):
    async def main():
        aio = asyncio.get_running_loop()
        aio.add_signal_handler(signal.SIGTERM, handler_calls.handler)
        loop = weft.asyncio.attach()
        try:
            return await loop.spawn(signal_facts, on="process")
        finally:
            loop.close()
            aio.remove_signal_handler(signal.SIGTERM)

    sigterm_default, wakeup, sigint_default = asyncio.run(main())
    assert sigterm_default is True
    assert wakeup == -1
    assert sigint_default is True


def test_the_child_has_default_handlers_with_a_plain_handler(handler_calls):
    signal.signal(signal.SIGTERM, handler_calls.handler)
    lp = weft.Loop()
    try:
        fut = lp.spawn(signal_facts, on="process")
        fut.add_done_callback(lambda f: lp.stop())
        run(lp)
        assert fut.result() == (True, -1, True)
    finally:
        lp.close()
