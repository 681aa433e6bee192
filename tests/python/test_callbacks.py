"""call_soon, call_later, call_every and their handles; free_fn runs exactly once."""

import math
import threading
import time

import pytest

import weft
from conftest import registry_size, run
from weft import _callbacks


def test_call_soon_runs_in_order_with_args(loop):
    got = []
    for i in range(100):
        loop.call_soon(got.append, i)
    loop.call_soon(lambda *a: got.append(a), 1, "x", None)
    run(loop)
    assert got == list(range(100)) + [(1, "x", None)]


def test_call_soon_runs_on_the_loop_thread(loop):
    threads = []
    loop.call_soon(lambda: threads.append(threading.get_ident()))
    run(loop)
    assert threads == [threading.get_ident()]


def test_call_soon_from_many_threads_keeps_each_threads_order(loop):
    got = []
    keep_alive = loop.call_every(1, lambda: None)

    def producer(name):
        for i in range(2000):
            loop.call_soon(got.append, (name, i))

    producers = [threading.Thread(target=producer, args=(n,)) for n in range(4)]
    runner = threading.Thread(target=loop.run)
    runner.start()
    for p in producers:
        p.start()
    for p in producers:
        p.join()
    loop.call_soon(keep_alive.cancel)
    runner.join(10)
    assert not runner.is_alive()
    assert len(got) == 8000
    for name in range(4):
        assert [i for n, i in got if n == name] == list(range(2000))


def test_call_later_is_never_early_and_ordered(loop):
    start = time.monotonic()
    fired = []
    for delay in (0.03, 0.01, 0.02, 0.0):
        loop.call_later(delay, lambda d=delay: fired.append((d, time.monotonic() - start)))
    run(loop)
    assert [d for d, _ in fired] == [0.0, 0.01, 0.02, 0.03]
    for delay, at in fired:
        assert at >= delay


def test_call_every_at_a_fixed_rate_until_cancelled_from_its_own_callback(loop):
    times = []

    def tick():
        times.append(time.monotonic())
        if len(times) == 5:
            assert handle.cancel()

    handle = loop.call_every(0.01, tick)
    run(loop)
    assert len(times) == 5
    assert not handle.active
    # A fixed rate: ticks 2..5 fall on the 10 ms grid of the schedule, the first may be
    # late (a busy machine), so the span is above 30 ms, and 40 ms when nothing is late.
    assert times[-1] - times[0] >= 0.03 - 0.001


def test_cancel_returns_true_once_then_false(loop):
    handle = loop.call_later(10, print)
    assert handle.active and handle.id
    assert handle.cancel() is True
    assert handle.cancel() is False
    assert not handle.active


def test_cancel_after_it_ran_is_false(loop):
    handle = loop.call_soon(lambda: None)
    run(loop)
    assert not handle.active
    assert handle.cancel() is False


def test_cancel_a_queued_post_from_another_thread(loop):
    got = []
    handle = loop.call_soon(got.append, 1)
    result = []
    t = threading.Thread(target=lambda: result.append(handle.cancel()))
    t.start()
    t.join()
    run(loop)
    assert result == [True] and got == []


def test_free_fn_runs_exactly_once_per_registration(loop, errors):
    # The free_fn trampoline pops the registry entry; a second call for the same key
    # would be reported through the error handler, and a missing call would leave the
    # entry behind. call_soon's calls wait in the loop's queue (no registration each),
    # call_later's in one weft timer per millisecond (tests/python/test_batching.py).
    before = registry_size()
    handles = [loop.call_soon(lambda: None) for _ in range(10)]
    handles += [loop.call_later(0.001 * i, lambda: None) for i in range(10)]
    every = loop.call_every(0.001, lambda: None)
    cancelled = [loop.call_later(5, print) for _ in range(5)]
    assert before + 1 < registry_size() <= before + 12  # call_every, and <= 11 buckets
    with_five = registry_size()
    for h in cancelled:
        h.cancel()
    assert registry_size() < with_five  # the 5 s bucket's timer was cancelled
    loop.call_later(0.02, every.cancel)
    run(loop)
    assert registry_size() == before
    assert not any(h.active for h in handles + cancelled + [every])
    assert not loop._soon_live and not loop._buckets
    assert not errors


def test_a_second_free_fn_would_be_reported(errors):
    _callbacks._on_free(10**15)  # a key nobody registered, as a second free_fn would be
    assert errors.types() == [RuntimeError]
    assert "not registered" in str(errors[0][0])


def test_bad_arguments(loop):
    with pytest.raises(TypeError):
        loop.call_soon("not callable")
    with pytest.raises(TypeError):
        loop.call_later("1", print)
    with pytest.raises(TypeError):
        loop.call_later(True, print)
    with pytest.raises(TypeError):
        loop.call_later(None, print)
    with pytest.raises(ValueError):
        loop.call_later(-1, print)
    with pytest.raises(ValueError):
        loop.call_later(math.nan, print)
    with pytest.raises(ValueError):
        loop.call_later(math.inf, print)
    with pytest.raises(ValueError):
        loop.call_every(0, print)
    with pytest.raises(TypeError):
        loop.call_every(1, 42)
    with pytest.raises(weft.InvalidArgument, match="delay"):
        loop.call_later(400 * 86400, print)  # weft's bound: 2^35 - 1 ms


def test_failed_registrations_leave_nothing_behind(loop):
    before = registry_size()
    for _ in range(3):
        with pytest.raises(weft.InvalidArgument):
            loop.call_later(400 * 86400, print)
        with pytest.raises(weft.InvalidArgument):
            loop.subscribe("", print)
    assert registry_size() == before


def test_a_raising_callback_does_not_stop_the_loop(loop, errors):
    got = []
    loop.call_soon(lambda: 1 / 0)
    loop.call_soon(got.append, "after")
    run(loop)
    assert got == ["after"]
    assert errors.types() == [ZeroDivisionError]
    assert "call_soon" in errors[0][1]
    errors.clear()


def test_handle_repr(loop):
    handle = loop.call_later(1, print)
    assert "active" in repr(handle)
    handle.cancel()
    assert "ended" in repr(handle)
