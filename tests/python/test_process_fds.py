"""Which of the parent's fds a process task's child keeps: by default only 0, 1, 2 and
weft's pipes, so a server's sockets closed in the parent end at once for their peers
while a child runs (the Gate One case); keep_fds and inherit_fds keep the old way."""

import os
import socket
import stat
import time

import pytest

import weft
from conftest import run


# Every test runs with reused children and with a fork per task (conftest.py).
pytestmark = pytest.mark.usefixtures("reuse_children")


def render(seconds):
    time.sleep(seconds)
    return os.getpid()


def test_a_listening_socket_closed_while_a_child_renders_refuses_connections(loop):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    address = server.getsockname()
    fut = loop.spawn(render, 1.0, on="process")
    time.sleep(0.2)  # the child runs
    server.close()  # server.stop()
    client = socket.socket()
    client.settimeout(1)
    t0 = time.monotonic()
    with pytest.raises(ConnectionRefusedError):
        client.connect(address)
    assert time.monotonic() - t0 < 0.5
    client.close()
    run(loop)
    assert fut.result() != os.getpid()


def test_a_connection_closed_while_a_child_renders_ends_for_the_peer_at_once(loop):
    ours, peer = socket.socketpair()
    fut = loop.spawn(render, 1.0, on="process")
    time.sleep(0.2)
    ours.close()
    peer.settimeout(0.3)
    t0 = time.monotonic()
    assert peer.recv(1) == b""
    assert time.monotonic() - t0 < 0.2
    peer.close()
    run(loop)
    fut.result()


@pytest.mark.parametrize("how", ["keep_fds", "inherit_fds"])
def test_kept_fds_stay_open_in_the_child(loop, how):
    ours, peer = socket.socketpair()

    def use(seconds):
        ours.send(b"x")  # the inherited socket works in the child
        time.sleep(seconds)

    kw = {"keep_fds": [ours]} if how == "keep_fds" else {"inherit_fds": True}
    fut = loop.spawn(use, 0.6, on="process", **kw)
    peer.settimeout(2)
    assert peer.recv(1) == b"x"
    ours.close()
    peer.settimeout(0.3)
    with pytest.raises(socket.timeout):
        peer.recv(1)  # the child still holds it
    run(loop)
    fut.result()
    peer.settimeout(2)
    assert peer.recv(1) == b""
    peer.close()


def child_fds():
    out = {}
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            continue  # listdir's own fd, closed by now
        out[fd] = "pipe" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode) else "other"
    return out


def test_the_child_has_only_std_fds_weft_pipes_and_keep_fds(loop, reuse_children):
    files = [open(os.devnull) for _ in range(6)]
    kept = [files[1], files[4].fileno()]
    fut = loop.spawn(child_fds, on="process", keep_fds=kept)
    run(loop)
    seen = fut.result()
    keep = {files[1].fileno(), files[4].fileno()} | set(weft._process.std_stream_fds())
    assert {0, 1, 2} | keep <= set(seen)
    rest = {fd: kind for fd, kind in seen.items() if fd > 2 and fd not in keep}
    # The result pipe, and for a reused child its control socket.
    assert sorted(rest.values()) == (["pipe", "socket"] if reuse_children else ["pipe"]), seen
    for f in files:
        f.close()


def test_the_python_child_still_works(loop):
    # Randomness, imports, files and the std streams in a child without the parent's fds.
    def work():
        import json
        import random
        with open(os.devnull, "w") as f:
            f.write("x")
        print("printed in the child", flush=True)
        return json.dumps([random.random() < 2, os.urandom(4).__len__()])

    fut = loop.spawn(work, on="process")
    run(loop)
    assert fut.result() == "[true, 4]"


def test_bad_keep_fds(loop):
    with pytest.raises(ValueError):
        loop.spawn(render, 0, on="process", keep_fds=[1.5])
    with pytest.raises(ValueError):
        loop.spawn(render, 0, on="process", keep_fds=[-1])
    with pytest.raises(TypeError):
        loop.spawn(render, 0, on="process", keep_fds=3)
    with pytest.raises(TypeError):
        loop.spawn(render, 0, on="process", inherit_fds=1)
    with pytest.raises(ValueError):
        loop.spawn(render, 0, on="thread", keep_fds=[0])
