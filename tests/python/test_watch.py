"""watch (fds and file objects) and watch_signal."""

import os
import signal
import socket
import tempfile

import pytest

import weft
from conftest import run


def test_watch_a_socket_for_read(loop):
    a, b = socket.socketpair()
    got = []

    def on_ready(fd, events):
        got.append((fd, events & weft.READ, a.recv(100)))
        watch.cancel()

    watch = loop.watch(a, weft.READ, on_ready)
    b.send(b"hello")
    run(loop)
    assert got == [(a.fileno(), weft.READ, b"hello")]
    a.close()
    b.close()


def test_watch_an_fd_number_for_write_then_modify(loop):
    a, b = socket.socketpair()
    events_seen = []

    def on_ready(fd, events):
        events_seen.append(events)
        if len(events_seen) == 1:
            watch.modify(weft.READ)  # writable no more: wait for data
            b.send(b"x")
        else:
            watch.cancel()

    watch = loop.watch(a.fileno(), weft.WRITE, on_ready)
    run(loop)
    assert events_seen[0] & weft.WRITE
    assert events_seen[1] & weft.READ and not events_seen[1] & weft.WRITE
    a.close()
    b.close()


def test_hangup_is_reported(loop):
    r, w = os.pipe()
    got = []

    def on_ready(fd, events):
        got.append(events)
        watch.cancel()

    watch = loop.watch(r, weft.READ, on_ready)
    os.close(w)
    run(loop)
    assert got and got[0] & weft.HANGUP
    os.close(r)


def test_bad_fds(loop):
    with pytest.raises(weft.InvalidArgument, match="-1"):
        loop.watch(-1, weft.READ, print)
    with pytest.raises(TypeError):
        loop.watch("3", weft.READ, print)
    with pytest.raises(TypeError):
        loop.watch(True, weft.READ, print)
    with pytest.raises(TypeError):
        loop.watch(0, "r", print)
    with pytest.raises(weft.InvalidArgument):
        loop.watch(0, 64, print)  # unknown interest bit
    with tempfile.TemporaryFile() as f:
        with pytest.raises(weft.InvalidArgument):
            loop.watch(f, weft.READ, print)  # a regular file cannot be polled
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(weft.InvalidArgument):
        loop.watch(r, weft.READ, print)  # closed


def test_modify_after_cancel(loop):
    a, b = socket.socketpair()
    watch = loop.watch(a, weft.READ, print)
    assert watch.cancel()
    with pytest.raises(weft.NotFound):
        watch.modify(weft.WRITE)
    with pytest.raises(TypeError):
        watch.modify("w")
    a.close()
    b.close()


def test_watch_signal(loop):
    got = []

    def on_signal(signum):
        got.append(signum)
        handle.cancel()

    handle = loop.watch_signal(signal.SIGUSR1, on_signal)
    loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
    run(loop)
    assert got == [signal.SIGUSR1]


def test_python_handler_is_back_after_the_last_watch(loop):
    python_got = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: python_got.append(signum))
    try:
        weft_got = []
        handle = loop.watch_signal(signal.SIGUSR2, weft_got.append)
        loop.call_soon(os.kill, os.getpid(), signal.SIGUSR2)
        loop.call_later(0.05, handle.cancel)
        run(loop)
        assert weft_got == [signal.SIGUSR2] and python_got == []
        os.kill(os.getpid(), signal.SIGUSR2)
        for _ in range(100):  # Python runs its handlers between bytecodes
            if python_got:
                break
        assert python_got == [signal.SIGUSR2]
    finally:
        signal.signal(signal.SIGUSR2, previous)


def test_bad_signals(loop):
    with pytest.raises(weft.InvalidArgument):
        loop.watch_signal(signal.SIGKILL, print)
    with pytest.raises(weft.InvalidArgument):
        loop.watch_signal(0, print)
    with pytest.raises(weft.InvalidArgument):
        loop.watch_signal(99, print)
    with pytest.raises(TypeError):
        loop.watch_signal("SIGUSR1", print)
    with pytest.raises(TypeError):
        loop.watch_signal(signal.SIGUSR1, None)


def test_a_raising_watch_callback_is_reported(loop, errors):
    a, b = socket.socketpair()
    calls = []

    def on_ready(fd, events):
        calls.append(1)
        a.recv(10)
        watch.cancel()
        raise ValueError("boom")

    watch = loop.watch(a, weft.READ, on_ready)
    b.send(b"x")
    run(loop)
    assert calls == [1]
    assert errors.types() == [ValueError]
    errors.clear()
    a.close()
    b.close()
