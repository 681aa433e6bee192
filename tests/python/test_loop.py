"""weft.Loop: run, stop, close, the context manager, threads, a closed loop."""

import threading
import time

import pytest

import weft
from conftest import registry_size, run


def test_run_returns_when_nothing_is_left(loop):
    calls = []
    loop.call_soon(calls.append, 1)
    loop.call_later(0.02, calls.append, 2)
    start = time.monotonic()
    run(loop)
    # Both ran. (Their order is call_soon's first only when the first pass comes before
    # the timer is due: a pass runs due timers before posts, weft.h's weft_loop_run.)
    assert sorted(calls) == [1, 2]
    assert time.monotonic() - start < 2
    run(loop)  # an idle loop returns at once


def test_stop_from_a_callback_and_run_again(loop):
    ticks = []

    def tick():
        ticks.append(1)
        if len(ticks) == 3:
            loop.stop()

    handle = loop.call_every(0.005, tick)
    run(loop)
    assert len(ticks) == 3
    assert handle.active
    ticks.clear()
    run(loop)  # the timer still runs; it stops again at 3
    assert len(ticks) == 3
    assert handle.cancel()


def test_stop_from_another_thread(loop):
    keep_alive = loop.call_every(0.01, lambda: None)
    threading.Timer(0.05, loop.stop).start()
    start = time.monotonic()
    run(loop)
    assert time.monotonic() - start < 2
    keep_alive.cancel()


def test_stop_before_run_returns_after_one_pass(loop):
    calls = []
    # An interval that keeps the loop alive and cannot come due in that one pass, even
    # when a loaded machine starts the pass late.
    loop.call_every(5.0, calls.append, 1)
    loop.call_soon(calls.append, 0)
    loop.stop()
    run(loop)
    assert calls == [0]


def test_run_is_refused_while_running(loop):
    outcome = []

    def reenter():
        try:
            loop.run()
        except weft.Error as exc:
            outcome.append(exc)

    loop.call_soon(reenter)
    run(loop)
    assert len(outcome) == 1 and outcome[0].code == weft._ffi.WEFT_ERR_BUSY


def test_run_is_refused_from_a_second_thread(loop):
    started = threading.Event()
    loop.call_soon(started.set)
    keep_alive = loop.call_every(0.01, lambda: None)
    runner = threading.Thread(target=loop.run)
    runner.start()
    assert started.wait(5)
    with pytest.raises(weft.Error, match="already running"):
        loop.run()
    keep_alive.cancel()
    runner.join(5)
    assert not runner.is_alive()


def test_context_manager_closes(errors):
    with weft.Loop() as lp:
        lp.call_later(10, lambda: None)
        assert not lp.closed
    assert lp.closed
    with pytest.raises(weft.Closed):
        lp.call_soon(print)


def test_close_ends_every_registration_once():
    before = registry_size()
    lp = weft.Loop()
    handles = [lp.call_later(10, print), lp.call_every(1, print), lp.call_soon(print),
               lp.subscribe("a.b", print)]
    assert registry_size() == before + 4
    lp.close()
    assert not any(h.active for h in handles)
    assert registry_size() == before
    assert [h.cancel() for h in handles] == [False] * 4
    lp.close()  # twice: nothing


def test_every_method_of_a_closed_loop_raises_closed():
    lp = weft.Loop()
    lp.close()
    calls = [
        lambda: lp.call_soon(print),
        lambda: lp.call_later(1, print),
        lambda: lp.call_every(1, print),
        lambda: lp.subscribe("a", print),
        lambda: lp.emit("a", b""),
        lambda: lp.spawn(print),
        lambda: lp.spawn(print, on="thread"),
        lambda: lp.spawn(print, on="process"),
        lambda: lp.watch_signal(10, print),
        lambda: lp.run(),
    ]
    for call in calls:
        with pytest.raises(weft.Closed):
            call()
    lp.stop()  # stop on a closed loop does nothing
    assert isinstance(weft.Closed("x"), RuntimeError)


def test_close_from_a_callback_frees_after_run(loop):
    later = loop.call_later(10, print)
    loop.call_soon(loop.close)
    run(loop)
    assert loop.closed and not later.active


def test_close_from_another_thread_while_running():
    lp = weft.Loop()
    timer = lp.call_every(0.005, lambda: None)
    runner = threading.Thread(target=lp.run)
    runner.start()
    time.sleep(0.05)
    lp.close()  # stops the loop; the runner frees it when run() returns
    runner.join(5)
    assert not runner.is_alive()
    assert lp.closed and not timer.active


def test_loops_are_independent(errors):
    with weft.Loop() as a, weft.Loop() as b:
        got = []
        a.subscribe("t", lambda topic, payload: got.append(("a", payload)))
        b.subscribe("t", lambda topic, payload: got.append(("b", payload)))
        a.emit("t", b"1")
        b.emit("t", b"2")
        a.stop()
        run(a)
        b.stop()
        run(b)
        assert got == [("a", b"1"), ("b", b"2")]


def test_max_children_is_checked():
    with pytest.raises(ValueError):
        weft.Loop(max_children=0)
    with pytest.raises(TypeError):
        weft.Loop(max_children="2")
    with pytest.raises(TypeError):
        weft.Loop(2)  # keyword only


def test_repr_and_properties(loop):
    assert "idle" in repr(loop)
    assert not loop.running and not loop.closed
    seen = []
    loop.call_soon(lambda: seen.append(loop.running))
    run(loop)
    assert seen == [True]


def test_version_and_library():
    assert weft.version().count(".") == 2
    assert weft.library_path.endswith("libweft.so")
