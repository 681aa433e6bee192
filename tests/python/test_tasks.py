"""spawn on the loop, the IO pool (on="thread") and the CPU pool (on="cpu")."""

import concurrent.futures as cf
import threading
import time

import pytest

import weft
from conftest import registry_size, run, wait_for

WHERE = ["loop", "thread", "cpu"]


@pytest.mark.parametrize("on", WHERE)
def test_result_args_and_kwargs(loop, on):
    fut = loop.spawn(lambda a, b=0, *, c: (a, b, c), 1, b=2, c=3, on=on)
    assert isinstance(fut, cf.Future) and isinstance(fut, weft.Future)
    run(loop)
    assert fut.done() and not fut.cancelled()
    assert fut.result() == (1, 2, 3)
    assert fut.exception() is None


@pytest.mark.parametrize("on", WHERE)
def test_exception_comes_back_as_itself(loop, on):
    class Custom(Exception):
        pass

    error = Custom("bad", 7)
    fut = loop.spawn(lambda: (_ for _ in ()).throw(error), on=on)
    run(loop)
    assert fut.exception() is error
    with pytest.raises(Custom):
        fut.result()


def test_thread_tasks_run_on_pool_threads_and_loop_tasks_on_the_loop(loop):
    here = threading.get_ident()
    on_loop = loop.spawn(threading.get_ident)
    on_thread = loop.spawn(threading.get_ident, on="thread")
    on_cpu = loop.spawn(threading.get_ident, on="cpu")
    names = loop.spawn(lambda: threading.current_thread().name, on="thread")
    run(loop)
    assert on_loop.result() == here
    assert on_thread.result() != here and on_cpu.result() != here
    assert names.result()  # a _DummyThread: Python knows the pool thread


@pytest.mark.parametrize("on", WHERE)
def test_done_callbacks_run_on_the_loop_thread(loop, on):
    here = threading.get_ident()
    seen = []
    fut = loop.spawn(time.sleep, 0.01, on=on)
    fut.add_done_callback(lambda f: seen.append(threading.get_ident()))
    fut.add_done_callback(lambda f: seen.append(f.done()))
    run(loop)
    assert seen == [here, True]
    fut.add_done_callback(lambda f: seen.append("late"))  # done already: at once
    assert seen[-1] == "late"


def test_done_callbacks_run_on_the_loop_thread_when_it_runs_elsewhere(loop):
    keep_alive = loop.call_every(1, lambda: None)
    runner = threading.Thread(target=loop.run)
    runner.start()
    loop_thread = runner.ident
    seen = []
    gate = threading.Event()
    fut = loop.spawn(gate.wait, on="thread")
    fut.add_done_callback(lambda f: seen.append(threading.get_ident()))
    assert fut.cancel()  # from this thread: callbacks still run on the loop thread
    assert wait_for(lambda: seen)
    assert seen == [loop_thread]
    gate.set()
    loop.call_soon(keep_alive.cancel)
    runner.join(5)


def test_thread_local_persists_on_each_pool_thread(loop):
    # One Python thread state per pool thread (the pool's start/stop hooks): a
    # threading.local set by one task is still there for the next on that thread.
    local = threading.local()

    def task():
        count = getattr(local, "count", 0) + 1
        local.count = count
        return threading.get_ident(), count

    futures = [loop.spawn(task, on=on) for on in ("thread", "cpu") for _ in range(300)]
    run(loop)
    by_thread = {}
    for fut in futures:
        ident, count = fut.result()
        by_thread.setdefault(ident, []).append(count)
    assert any(len(counts) > 1 for counts in by_thread.values())
    for counts in by_thread.values():
        assert sorted(counts) == list(range(1, len(counts) + 1))


def test_cancel_while_queued(loop):
    # The CPU pool has one thread per core: block them all, then queue one more.
    gate = threading.Event()
    started = []
    blockers = [loop.spawn(lambda: (started.append(1), gate.wait()), on="cpu") for _ in range(8)]
    assert wait_for(lambda: len(started) >= 1)
    queued = loop.spawn(lambda: "ran", on="cpu")
    ran_before = len(started)
    time.sleep(0.02)
    assert queued.cancel() is True
    assert queued.cancelled() and queued.done()
    assert queued.cancel() is True  # cancelling twice: still cancelled
    with pytest.raises(cf.CancelledError):
        queued.result()
    gate.set()
    run(loop)
    assert all(b.done() for b in blockers)
    assert ran_before <= len(started)


def test_cancel_while_running_sets_weft_cancelled(loop):
    saw_cancel = threading.Event()
    running = threading.Event()

    def work():
        running.set()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if weft.cancelled():
                saw_cancel.set()
                return "stopped"
            time.sleep(0.001)
        return "not cancelled"

    fut = loop.spawn(work, on="thread")
    assert running.wait(5)
    assert fut.running()
    assert fut.cancel() is True
    assert fut.cancelled()
    run(loop)
    assert saw_cancel.is_set()
    with pytest.raises(cf.CancelledError):
        fut.result()


def test_cancel_after_finishing_is_false(loop):
    fut = loop.spawn(lambda: 5, on="thread")
    run(loop)
    assert fut.cancel() is False
    assert fut.result() == 5


def test_loop_task_cancelled_before_its_pass(loop):
    ran = []
    fut = loop.spawn(ran.append, 1)
    assert fut.cancel()
    run(loop)
    assert ran == [] and fut.cancelled()


def test_timeout_gives_timeout_error_and_the_work_sees_it(loop):
    saw = threading.Event()

    def slow():
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not weft.cancelled():
            time.sleep(0.001)
        if weft.cancelled():
            saw.set()

    start = time.monotonic()
    fut = loop.spawn(slow, on="thread", timeout=0.05)
    run(loop)
    assert 0.04 < time.monotonic() - start < 3
    assert isinstance(fut.exception(), TimeoutError)
    assert isinstance(fut.exception(), cf.TimeoutError)
    assert saw.wait(5)


def test_result_from_another_thread_with_timeout(loop):
    gate = threading.Event()
    fut = loop.spawn(gate.wait, on="thread")
    with pytest.raises(cf.TimeoutError):
        fut.result(timeout=0.01)
    results = []
    waiter = threading.Thread(target=lambda: results.append(fut.result(timeout=5)))
    waiter.start()
    gate.set()
    run(loop)
    waiter.join(5)
    assert results == [True]


def test_wait_and_as_completed(loop):
    futures = [loop.spawn(time.sleep, 0.01 * i, on="thread") for i in range(5)]
    runner = threading.Thread(target=run, args=(loop,))
    runner.start()
    done, not_done = cf.wait(futures, timeout=5)
    assert len(done) == 5 and not not_done
    runner.join(5)
    futures = [loop.spawn(lambda i=i: i, on="thread") for i in range(5)]
    runner = threading.Thread(target=run, args=(loop,))
    runner.start()
    assert sorted(f.result() for f in cf.as_completed(futures, timeout=5)) == list(range(5))
    runner.join(5)


def test_emit_from_a_thread_task_arrives_before_its_result(loop):
    order = []
    loop.subscribe("progress", lambda t, p: order.append(p))

    def work():
        for i in range(100):
            loop.emit("progress", str(i))
        return "done"

    fut = loop.spawn(work, on="thread")
    fut.add_done_callback(lambda f: (order.append(f.result()), loop.stop()))
    run(loop)
    assert order == [str(i).encode() for i in range(100)] + ["done"]


def test_weft_cancelled_outside_a_task():
    with pytest.raises(RuntimeError):
        weft.cancelled()


def test_bad_arguments(loop):
    with pytest.raises(TypeError):
        loop.spawn(42)
    with pytest.raises(ValueError, match="on must be"):
        loop.spawn(print, on="gpu")
    with pytest.raises(ValueError):
        loop.spawn(print, on=None)
    with pytest.raises(TypeError):
        loop.spawn(print, timeout="1")
    with pytest.raises(ValueError):
        loop.spawn(print, timeout=-1)
    with pytest.raises(ValueError):
        loop.spawn(print, timeout=0)


def test_registrations_end_after_tasks(loop):
    before = registry_size()
    futures = [loop.spawn(int, on=on) for on in WHERE for _ in range(50)]
    run(loop)
    assert all(f.done() for f in futures)
    assert registry_size() == before


def test_close_cancels_unfinished_futures():
    lp = weft.Loop()
    gate = threading.Event()
    running = lp.spawn(gate.wait, on="thread")
    queued = lp.spawn(print)
    lp.close()
    assert queued.cancelled()
    assert running.cancelled()
    gate.set()


def test_many_thread_tasks(loop):
    futures = [loop.spawn(lambda i=i: i * i, on="thread") for i in range(5000)]
    run(loop)
    assert [f.result() for f in futures] == [i * i for i in range(5000)]


def test_configure_pools_after_use_is_refused(loop):
    loop.spawn(int, on="thread")
    run(loop)
    with pytest.raises(RuntimeError):
        weft.configure_pools(io_threads=4)
    with pytest.raises(TypeError):
        weft.configure_pools(io_threads=-1)
