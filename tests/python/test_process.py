"""spawn(on="process"): forked children, only the result pickled back.

Every test here runs twice: with workers that serve several tasks (reuse_children=True,
the default) and with a fork per task (reuse_children=False). test_process_reuse.py
has the tests of reuse itself."""

import concurrent.futures as cf
import gc
import os
import pickle
import signal
import socket
import threading
import time

import pytest

import weft
from conftest import children, open_fds, registry_size, run, run_all, wait_for, zombie_children

AT_FORK = []
os.register_at_fork(after_in_child=lambda: AT_FORK.append("child"))


# Every test runs with reused children and with a fork per task (conftest.py).
pytestmark = pytest.mark.usefixtures("reuse_children")


def gone(pid):
    return not os.path.exists(f"/proc/{pid}")


def test_each_mode_is_used(loop, reuse_children):
    assert loop.reuse_children is reuse_children
    with weft.Loop() as other:
        assert other.reuse_children is reuse_children


def test_lambda_runs_in_another_process(loop):
    fut = loop.spawn(lambda: os.getpid(), on="process")
    run(loop)
    assert fut.result() != os.getpid()


def test_closure_over_unpicklable_objects(loop):
    a, b = socket.socketpair()
    lock = threading.Lock()
    with pytest.raises(TypeError):
        pickle.dumps(a)
    with pytest.raises(TypeError):
        pickle.dumps(lock)

    def render(prefix, *, suffix):
        with lock:  # the child's copy of the lock
            a.send(b"from the child")
        return f"{prefix}:{a.fileno()}:{suffix}"

    fut = loop.spawn(render, "fd", suffix="!", on="process", keep_fds=[a])  # the child uses a
    run(loop)
    assert fut.result() == f"fd:{a.fileno()}:!"
    assert b.recv(100) == b"from the child"
    a.close()
    b.close()


def test_exception_comes_back_with_the_childs_traceback(loop):
    def parse_config():
        raise ValueError("bad value 42")

    fut = loop.spawn(parse_config, on="process")
    run(loop)
    exc = fut.exception()
    assert type(exc) is ValueError and str(exc) == "bad value 42"
    assert isinstance(exc.__cause__, weft.RemoteTraceback)
    assert "parse_config" in exc.child_traceback and "bad value 42" in exc.child_traceback
    assert "parse_config" in str(exc.__cause__)


def test_exception_of_a_class_the_parent_cannot_rebuild(loop):
    def fails():
        class Local(Exception):
            pass

        raise Local("inner")

    fut = loop.spawn(fails, on="process")
    run(loop)
    exc = fut.exception()
    assert isinstance(exc, weft.ProcessTaskError)
    assert "Local: inner" in str(exc)
    assert "fails" in exc.child_traceback


def test_exception_with_odd_constructor_keeps_its_type(loop):
    def fails():
        raise OSError(2, "No such file", "/nope")

    fut = loop.spawn(fails, on="process")
    run(loop)
    exc = fut.exception()
    assert type(exc) is FileNotFoundError and exc.filename == "/nope"


def test_result_that_cannot_be_pickled(loop):
    fut = loop.spawn(lambda: threading.Lock(), on="process")
    run(loop)
    exc = fut.exception()
    assert exc is not None
    assert "could not be pickled" in exc.child_traceback


def test_child_killed_by_a_signal(loop):
    fut = loop.spawn(lambda: os.kill(os.getpid(), signal.SIGKILL), on="process")
    run(loop)
    exc = fut.exception()
    assert isinstance(exc, weft.ChildCrashed)
    assert "SIGKILL" in str(exc) and "signal 9" in str(exc)


def test_child_that_exits_without_a_result(loop):
    fut = loop.spawn(lambda: os._exit(3), on="process")
    run(loop)
    exc = fut.exception()
    assert isinstance(exc, weft.ChildCrashed) and "code 3" in str(exc)


def pid_of(loop):
    """Subscribes to "pid": returns the list the children's pids land in."""
    pids = []
    loop.subscribe("pid", lambda t, p: pids.append(int(p)))
    return pids


def report_pid_and_sleep(loop, seconds):
    loop.emit("pid", str(os.getpid()))
    time.sleep(seconds)
    return "slept"


def test_timeout_kills_the_child(loop):
    pids = pid_of(loop)
    start = time.monotonic()
    fut = loop.spawn(report_pid_and_sleep, loop, 10, on="process", timeout=0.2)
    fut.add_done_callback(lambda f: loop.stop())
    run(loop)
    assert isinstance(fut.exception(), TimeoutError)
    assert time.monotonic() - start < 3
    assert wait_for(lambda: gone(pids[0]))


def test_cancel_while_running_kills_the_child(loop):
    pids = []

    def on_pid(topic, payload):
        pids.append(int(payload))
        assert fut.running()
        assert fut.cancel() is True
        subscription.cancel()

    subscription = loop.subscribe("pid", on_pid)
    fut = loop.spawn(report_pid_and_sleep, loop, 10, on="process")
    start = time.monotonic()
    run(loop)  # until the killed child is reaped
    assert time.monotonic() - start < 3
    assert fut.cancelled()
    assert gone(pids[0])
    assert fut.cancel() is True  # twice: still cancelled


def test_cancel_while_queued_never_forks():
    with weft.Loop(max_children=1) as lp:
        first = lp.spawn(time.sleep, 0.2, on="process")
        touched = []
        second = lp.spawn(lambda: touched.append(1) or "ran", on="process")
        assert not second.running()
        assert second.cancel() is True
        assert second.cancelled()
        run(lp)
        assert first.result() is None
        assert second.cancelled()


def test_max_children_and_fifo_order():
    with weft.Loop(max_children=2) as lp:
        spans = []
        subscription = lp.subscribe("span", lambda t, p: spans.append(tuple(map(float, p.split()))))

        def job(i):
            start = time.monotonic()
            time.sleep(0.05)
            lp.emit("span", f"{i} {start} {time.monotonic()}")
            return i

        futures = [lp.spawn(job, i, on="process") for i in range(6)]
        run_all(lp, futures, subscription.cancel)
        assert [f.result() for f in futures] == list(range(6))
        start_of = {int(i): start for i, start, _ in spans}
        for i in range(6):  # FIFO: a task starts after every task two places before it
            for j in range(i + 2, 6):
                assert start_of[j] > start_of[i]
        for _, start, _ in spans:  # at most two run at once
            assert sum(1 for _, s, e in spans if s <= start < e) <= 2


def test_timeout_of_a_queued_task():
    with weft.Loop(max_children=1) as lp:
        first = lp.spawn(time.sleep, 0.5, on="process")
        start = time.monotonic()
        waited = []
        second = lp.spawn(lambda: "ran", on="process", timeout=0.1)
        second.add_done_callback(lambda f: waited.append(time.monotonic() - start))
        run(lp)
        assert isinstance(second.exception(), TimeoutError)
        assert waited[0] < 0.45
        assert first.result() is None


def test_thousand_events_in_order_before_the_result(loop):
    got = []
    loop.subscribe("n.*", lambda topic, payload: got.append(int(payload)))

    def emitter():
        for i in range(1000):
            loop.emit("n.i", str(i))
        return "result"

    fut = loop.spawn(emitter, on="process")
    fut.add_done_callback(lambda f: got.append(f.result()))
    fut.add_done_callback(lambda f: loop.stop())
    run(loop)
    assert got == list(range(1000)) + ["result"]


def test_large_results(loop):
    fut = loop.spawn(lambda: b"x" * (20 << 20), on="process")  # above a 16 MiB frame
    run(loop)
    assert len(fut.result()) == 20 << 20


def test_inside_the_child(loop):
    def inside():
        found = {"cancelled": weft.cancelled(), "at_fork": AT_FORK[-1:] == ["child"],
                 "frozen": gc.get_freeze_count() > 0}
        try:
            loop.call_soon(print)
        except weft.Forked as exc:
            found["call_soon"] = str(exc)
        try:
            weft.Loop()
        except weft.Forked:
            found["new_loop"] = "forked"
        return found

    fut = loop.spawn(inside, on="process")
    run(loop)
    found = fut.result()
    assert found["cancelled"] is False and found["at_fork"] is True and found["frozen"] is True
    assert "forked child" in found["call_soon"] and found["new_loop"] == "forked"


def test_child_output_is_flushed(loop, capfd):
    fut = loop.spawn(lambda: print("hello from the child") or 1, on="process")
    run(loop)
    assert fut.result() == 1
    assert "hello from the child" in capfd.readouterr().out


def test_spawn_from_another_thread(loop):
    keep_alive = loop.call_every(1, lambda: None)
    runner = threading.Thread(target=loop.run)
    runner.start()
    fut = loop.spawn(lambda: 6 * 7, on="process")
    assert fut.result(timeout=5) == 42
    loop.call_soon(keep_alive.cancel)
    runner.join(5)


def test_close_kills_running_children():
    lp = weft.Loop()
    pids = pid_of(lp)
    fut = lp.spawn(report_pid_and_sleep, lp, 10, on="process")
    lp.call_later(5, lp.stop)
    lp.subscribe("pid", lambda t, p: lp.stop())
    run(lp)
    lp.close()
    assert fut.cancelled()
    assert gone(pids[0])


def test_no_zombies_and_no_leaked_fds():
    baseline = open_fds()
    with weft.Loop(max_children=3) as lp:
        futures = [lp.spawn(lambda i=i: i, on="process") for i in range(12)]
        futures.append(lp.spawn(lambda: os._exit(1), on="process"))
        futures.append(lp.spawn(time.sleep, 5, on="process", timeout=0.05))
        cancelled = lp.spawn(time.sleep, 5, on="process")
        lp.call_later(0.05, cancelled.cancel)
        run(lp)
        assert [f.result() for f in futures[:12]] == list(range(12))
        assert cancelled.cancelled()
    assert zombie_children() == []
    assert open_fds() == baseline
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # weft reaped every child


def test_futures_are_concurrent_futures(loop):
    futures = [loop.spawn(lambda i=i: i, on="process") for i in range(3)]
    runner = threading.Thread(target=run, args=(loop,))
    runner.start()
    assert sorted(f.result() for f in cf.as_completed(futures, timeout=10)) == [0, 1, 2]
    runner.join(5)


def test_max_children_holds_across_many_tasks():
    """At most max_children children exist at any moment (a reused child waiting for
    its next task, or exiting, still holds its slot until it is reaped)."""
    with weft.Loop(max_children=3) as lp:
        spans = []
        subscription = lp.subscribe("span", lambda t, p: spans.append(tuple(map(float, p.split()))))

        def job(i):
            start = time.monotonic()
            time.sleep(0.01)
            lp.emit("span", f"{start} {time.monotonic()}")
            return i

        most = [0]
        sampling = [True]

        def sample():
            while sampling[0]:
                most[0] = max(most[0], len(children()))
                time.sleep(0.002)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            futures = [lp.spawn(job, i, on="process") for i in range(40)]
            run_all(lp, futures, subscription.cancel)
        finally:
            sampling[0] = False
            sampler.join()
        assert [f.result() for f in futures] == list(range(40))
    assert 1 <= most[0] <= 3, most[0]
    for start, _ in spans:
        assert sum(1 for s, e in spans if s <= start < e) <= 3


def test_a_host_fork_that_fails_inside_spawn(monkeypatch):
    """os.fork() raising in the parent (weft calls it inside spawn when a slot is free):
    spawn raises weft.SystemCallFailed (an OSError) caused by it; no child, no leak."""
    baseline_fds, baseline_registry = open_fds(), registry_size()
    with weft.Loop() as lp:
        for raised in (OSError(11, "Resource temporarily unavailable"), RuntimeError("no fork today")):
            def failing_fork(raised=raised):
                raise raised

            monkeypatch.setattr(os, "fork", failing_fork)
            with pytest.raises(weft.SystemCallFailed, match="fork") as info:
                lp.spawn(lambda: 1, on="process")
            assert info.value.__cause__ is raised
            assert repr(raised) in str(info.value)
            assert children() == []
        monkeypatch.undo()
        fut = lp.spawn(lambda: 2, on="process")  # the loop is still usable
        run(lp)
        assert fut.result() == 2
    assert zombie_children() == [] and children() == []
    assert open_fds() == baseline_fds
    assert registry_size() == baseline_registry


def test_a_host_fork_interrupted_raises_the_interrupt(monkeypatch):
    def interrupted():
        raise KeyboardInterrupt

    with weft.Loop() as lp:
        monkeypatch.setattr(os, "fork", interrupted)
        with pytest.raises(KeyboardInterrupt):
            lp.spawn(lambda: 1, on="process")
    assert children() == []


def test_a_host_fork_that_fails_on_the_loop_thread(monkeypatch):
    """A waiting task whose fork (on the loop thread, when a slot frees) fails: its
    future gets weft.SystemCallFailed caused by the fork's exception; the tasks after it
    still run once forks work again."""
    real_fork = os.fork
    failures = []

    def flaky_fork():
        if failures and failures[0] > 0:
            failures[0] -= 1
            raise OSError(12, "Cannot allocate memory")
        return real_fork()

    monkeypatch.setattr(os, "fork", flaky_fork)
    with weft.Loop(max_children=1) as lp:
        first = lp.spawn(time.sleep, 0.1, on="process")  # forked now
        failures.append(1)  # the next fork fails
        unlucky = lp.spawn(lambda: "unlucky", on="process")
        lucky = lp.spawn(lambda: "lucky", on="process")
        run(lp)
        assert first.result() is None
        exc = unlucky.exception()
        assert isinstance(exc, weft.SystemCallFailed) and "fork" in str(exc)
        assert isinstance(exc.__cause__, OSError) and exc.__cause__.errno == 12
        assert lucky.result() == "lucky"
    assert zombie_children() == [] and children() == []
