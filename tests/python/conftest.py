"""Shared fixtures of the Python binding's tests.

    python3 -m pytest -q tests/python

The package is imported from bindings/python (the source tree), so with WEFT_LIBRARY
unset it loads the repository's target/release/libweft.so (`cargo build --release`).
"""

import gc
import os
import sys
import threading
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE_ROOT = os.path.join(REPO, "bindings", "python")
sys.path.insert(0, PACKAGE_ROOT)

import weft  # noqa: E402
from weft import _callbacks  # noqa: E402


def pytest_configure(config):
    # Python 3.12+ warns on each os.fork() of a multi-threaded process; process tasks
    # fork on purpose (the binding filters it too, but pytest resets filters per test).
    config.addinivalue_line(
        "filterwarnings", r"ignore:.*is multi-threaded, use of fork\(\) may lead to deadlocks:DeprecationWarning")


class Errors(list):
    """(exception, context) pairs reported through weft.set_error_handler."""

    def types(self):
        return [type(exc) for exc, _ in self]


@pytest.fixture
def errors():
    """Collects what weft reports instead of logging it; the test fails if the handler
    was replaced meanwhile."""
    found = Errors()
    previous = weft.set_error_handler(lambda exc, context: found.append((exc, context)))
    yield found
    weft.set_error_handler(previous)


@pytest.fixture
def loop(errors):
    """A fresh loop, closed after the test. Fails the test if a callback raised
    something the test did not look at (tests that expect errors clear the list)."""
    lp = weft.Loop()
    yield lp
    lp.close()
    assert not errors, f"unexpected callback errors: {errors!r}"


def run(lp, timeout=10.0):
    """Runs lp on this thread until it stops or goes idle; fails after timeout seconds
    (a threading.Timer stops it: a weft timer would keep the loop alive)."""
    expired = []

    def watchdog():
        expired.append(True)
        lp.stop()

    timer = threading.Timer(timeout, watchdog)
    timer.daemon = True
    timer.start()
    try:
        lp.run()
    finally:
        timer.cancel()
    assert not expired, f"the loop still ran after {timeout} s"


def run_all(lp, futures, when_done=None, timeout=10.0):
    """Runs lp until every future is done; then calls when_done() (default: lp.stop())."""
    left = [len(futures)]

    def one_done(_):
        left[0] -= 1
        if not left[0]:
            (when_done or lp.stop)()

    for fut in futures:
        fut.add_done_callback(one_done)
    run(lp, timeout)
    assert all(f.done() for f in futures)


def wait_for(predicate, timeout=5.0, interval=0.005):
    """Polls predicate until it is true; False after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def registry_size():
    """Live registrations of every loop (entries whose free_fn has not run)."""
    gc.collect()
    return len(_callbacks.registry)


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def zombie_children():
    """Pids of this process's children that are zombies."""
    me = str(os.getpid())
    zombies = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me and fields[0] == "Z":
            zombies.append(int(pid))
    return zombies


def children():
    me = str(os.getpid())
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me:
            found.append(int(pid))
    return found


@pytest.fixture(params=[True, False], ids=["reuse", "fork_per_task"])
def reuse_children(request, monkeypatch):
    """Makes weft.Loop() (the loop fixture's too) use each mode of process tasks in turn:
    a module opts in with `pytestmark = pytest.mark.usefixtures("reuse_children")`."""
    defaults = dict(weft.Loop.__init__.__kwdefaults__)
    defaults["reuse_children"] = request.param
    monkeypatch.setattr(weft.Loop.__init__, "__kwdefaults__", defaults)
    return request.param
