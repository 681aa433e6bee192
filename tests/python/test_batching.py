"""call_soon's queue and call_later's per-millisecond timers (bindings/python/weft/_soon.py
and _later.py): order, exactly once, cancel, close with calls queued, errors."""

import asyncio
import threading
import time
import weakref

import pytest

import weft

from conftest import run


class Counted:
    """A callable whose calls and releases (garbage collection) are counted."""

    def __init__(self, tally, name=None):
        self.tally = tally
        self.name = name
        weakref.finalize(self, tally.released)

    def __call__(self, *args):
        self.tally.called(self.name)


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.calls = []
        self.freed = 0

    def called(self, name):
        with self.lock:
            self.calls.append(name)

    def released(self):
        with self.lock:
            self.freed += 1


def test_call_soon_from_many_threads_keeps_each_threads_order(loop):
    got = []
    threads_n, per_thread = 4, 5000
    keep_alive = loop.call_every(10, print)
    done = []

    def producer(name):
        for i in range(per_thread):
            loop.call_soon(got.append, (name, i))
        loop.call_soon(done.append, name)

    def check_done():
        if len(done) == threads_n:
            keep_alive.cancel()
        else:
            loop.call_later(0.005, check_done)

    threads = [threading.Thread(target=producer, args=(n,)) for n in range(threads_n)]
    for t in threads:
        t.start()
    loop.call_later(0.005, check_done)
    run(loop)
    for t in threads:
        t.join()
    assert len(got) == threads_n * per_thread
    for n in range(threads_n):
        assert [i for name, i in got if name == n] == list(range(per_thread))


def test_each_call_soon_runs_exactly_once_and_is_released_once(loop):
    tally = Tally()
    handles = [loop.call_soon(Counted(tally, i)) for i in range(1000)]
    run(loop)
    assert tally.calls == list(range(1000))
    assert tally.freed == 1000
    assert not any(h.active for h in handles)
    assert [h.cancel() for h in handles[:3]] == [False] * 3


def test_cancel_before_run_skips_the_call_and_releases_it(loop):
    tally = Tally()
    handles = [loop.call_soon(Counted(tally, i)) for i in range(100)]
    results = []
    threads = [threading.Thread(target=lambda hs=handles[k::4]: results.extend(h.cancel() for h in hs[::2]))
               for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 52
    assert [h.cancel() for h in handles[0:8:8]] == [False]  # cancelled already
    run(loop)
    cancelled = {i for k in range(4) for i in list(range(100))[k::4][::2]}
    assert tally.calls == [i for i in range(100) if i not in cancelled]
    assert tally.freed == 100


def test_cancel_races_the_drain_exactly_once(loop):
    # A thread cancels while the loop runs the queue: every call either runs or is
    # cancelled (cancel() True), never both, never neither.
    tally = Tally()
    n = 20000
    handles = [loop.call_soon(Counted(tally, i)) for i in range(n)]
    results = {}

    def canceller():
        for i in range(n - 1, -1, -3):
            results[i] = handles[i].cancel()

    t = threading.Thread(target=canceller)
    t.start()
    run(loop)
    t.join()
    ran = set(tally.calls)
    assert len(ran) == len(tally.calls)
    for i, ok in results.items():
        assert ok == (i not in ran)
    assert len(ran) + sum(results.values()) == n
    assert tally.freed == n


def test_call_soon_in_a_callback_runs_in_the_next_pass(loop):
    # A call that queues itself again does not starve timers or the loop's stop.
    count = [0]

    def again():
        count[0] += 1
        loop.call_soon(again)

    loop.call_soon(again)
    loop.call_later(0.02, loop.stop)
    run(loop)
    assert count[0] > 1


def test_close_with_calls_queued_releases_each_once():
    tally = Tally()
    lp = weft.Loop()
    soon = [lp.call_soon(Counted(tally, i)) for i in range(100)]
    later = [lp.call_later(10 + i * 0.001, Counted(tally, i)) for i in range(100)]
    lp.close()
    assert tally.calls == [] and tally.freed == 200
    assert not any(h.active for h in soon + later)
    assert [h.cancel() for h in soon[:2] + later[:2]] == [False] * 4
    with pytest.raises(weft.Closed):
        lp.call_soon(print)
    with pytest.raises(weft.Closed):
        lp.call_later(0.1, print)


def test_producers_racing_close_release_each_call_once():
    tally = Tally()
    lp = weft.Loop()
    outcomes = []
    go = threading.Event()

    def producer():
        go.wait()
        made = closed = 0
        while True:
            try:
                lp.call_soon(Counted(tally))
                lp.call_later(5, Counted(tally))
                made += 2
            except weft.Closed:
                closed += 1
                break
        outcomes.append(made)

    threads = [threading.Thread(target=producer) for _ in range(3)]
    for t in threads:
        t.start()
    go.set()
    time.sleep(0.05)
    lp.close()
    for t in threads:
        t.join()
    # Every callable made was released once (the one whose call raised Closed too).
    made_in_all = sum(outcomes)
    assert tally.calls == []
    assert made_in_all <= tally.freed <= made_in_all + 2 * len(threads)


def test_close_from_another_thread_while_running_releases_queued_calls():
    tally = Tally()
    lp = weft.Loop()
    started = threading.Event()

    def first():
        started.set()
        time.sleep(0.05)  # the other thread queues more and closes meanwhile

    lp.call_soon(first)
    t = threading.Thread(target=lp.run)
    t.start()
    started.wait(5)
    handles = [lp.call_soon(Counted(tally, i)) for i in range(50)]
    lp.close()
    t.join(5)
    assert not t.is_alive()
    # Those queued before close ran in the pass that was running, or were released.
    assert tally.freed == 50
    assert not any(h.active for h in handles)


def test_call_later_order_and_never_early(loop):
    fired = []
    made = []
    for i in range(300):
        delay = (i % 30) * 0.001
        made.append((time.monotonic() + delay, i))
        loop.call_later(delay, lambda i=i: fired.append((time.monotonic(), i)))
    run(loop)
    assert sorted(i for _, i in fired) == list(range(300))
    deadline = dict((i, d) for d, i in made)
    for t, i in fired:
        assert t >= deadline[i], f"timer {i} fired {deadline[i] - t:.6f} s early"
    # Due 2 ms or more later (a different bucket even if a bucket boundary falls between
    # the test's clock read and the binding's), fired later; the same delay, in the order made.
    position = {i: k for k, (_, i) in enumerate(fired)}
    for a in range(300):
        for b in range(300):
            if deadline[a] + 0.002 <= deadline[b] or (a % 30 == b % 30 and a < b):
                assert position[a] < position[b], (a, b)


def test_cancelling_every_timer_lets_run_return(loop):
    handles = [loop.call_later(30, print) for _ in range(100)]
    assert all(h.cancel() for h in handles)
    start = time.monotonic()
    run(loop)
    assert time.monotonic() - start < 5


def test_cancel_a_timer_from_its_own_bucket(loop):
    got = []
    h2 = None

    def first():
        got.append(1)
        got.append(h2.cancel())

    loop.call_later(0.01, first)
    h2 = loop.call_later(0.01, got.append, 2)
    run(loop)
    assert got == [1, True]


def test_errors_in_batched_calls_are_reported_and_the_rest_run(loop, errors):
    got = []
    loop.call_soon(got.append, 1)
    loop.call_soon(lambda: 1 / 0)
    loop.call_soon(got.append, 2)
    loop.call_later(0.001, got.append, 3)
    loop.call_later(0.001, lambda: [][1])
    loop.call_later(0.001, got.append, 4)
    run(loop)
    # Each kind in its order; the timers may come first (a loaded machine lets their
    # millisecond pass before run() starts, and a pass runs due timers before posts).
    assert [x for x in got if x < 3] == [1, 2] and [x for x in got if x >= 3] == [3, 4]
    contexts = {type(exc): context for exc, context in errors}
    assert len(errors) == 2 and set(contexts) == {IndexError, ZeroDivisionError}
    assert "call_soon" in contexts[ZeroDivisionError] and "call_later" in contexts[IndexError]
    errors.clear()


def test_batched_calls_with_and_without_arguments(loop, errors):
    # call_soon keeps fn alone when there are no arguments, (fn, args) otherwise: both
    # kinds run in order, a tuple argument stays one argument, and an error names fn.
    got = []

    def fails(x):
        raise ValueError(x)

    loop.call_soon(got.append, (1, 2))
    loop.call_soon(lambda: got.append("bare"))
    loop.call_soon(lambda *a: got.append(a), 3, (4,), None)
    loop.call_soon(fails, "x")
    loop.call_soon(got.append, ())
    run(loop)
    assert got == [(1, 2), "bare", (3, (4,), None), ()]
    assert errors.types() == [ValueError]
    assert "call_soon" in errors[0][1] and "fails" in errors[0][1]
    errors.clear()


def test_keyboard_interrupt_in_a_batch_stops_run_and_the_rest_run_later(loop):
    got = []

    def interrupt():
        raise KeyboardInterrupt

    loop.call_soon(got.append, 1)
    loop.call_soon(interrupt)
    loop.call_soon(got.append, 2)
    with pytest.raises(KeyboardInterrupt):
        loop.run()
    run(loop)
    assert got == [1, 2]


def test_handles_of_batched_calls_have_distinct_ids(loop):
    hs = [loop.call_soon(print) for _ in range(3)] + [loop.call_later(1, print) for _ in range(3)]
    ids = [h.id for h in hs]
    assert all(ids) and len(set(ids)) == 6 and [h.id for h in hs] == ids
    for h in hs:
        h.cancel()


def test_asyncio_call_soon_and_call_later_from_a_thread(errors):
    async def main():
        loop = weft.asyncio.attach()
        seen = []
        done = asyncio.get_running_loop().create_future()
        aio = asyncio.get_running_loop()

        def producer():
            for i in range(2000):
                loop.call_soon(lambda i=i: seen.append((i, threading.get_ident())))
            loop.call_later(0.01, aio.call_soon_threadsafe, done.set_result, None)

        t = threading.Thread(target=producer)
        t.start()
        await asyncio.wait_for(done, 10)
        t.join()
        loop.close()
        return threading.get_ident(), seen

    import weft.asyncio  # noqa: F401

    here, seen = asyncio.run(main())
    assert [i for i, _ in seen] == list(range(2000))
    assert {tid for _, tid in seen} == {here}
    assert not errors


def test_tornado_call_soon_from_a_thread(errors):
    pytest.importorskip("tornado")
    from tornado.ioloop import IOLoop

    import weft.tornado

    async def main():
        loop = weft.tornado.attach()
        seen = []
        finished = asyncio.Event()
        io_loop = IOLoop.current()

        def producer():
            for i in range(1000):
                loop.call_soon(lambda i=i: seen.append((i, threading.get_ident())))
            loop.call_soon(io_loop.add_callback, finished.set)

        t = threading.Thread(target=producer)
        t.start()
        await asyncio.wait_for(finished.wait(), 10)
        t.join()
        loop.close()
        return threading.get_ident(), seen

    here, seen = IOLoop.current().run_sync(main, timeout=15)
    assert [i for i, _ in seen] == list(range(1000))
    assert {tid for _, tid in seen} == {here}
    assert not errors
