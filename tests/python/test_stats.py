"""What a loop, a pool and a task report: Loop.stats() (counts that move, from any
thread), weft.pool_stats(), Future.timing (a task queued behind a busy pool waits longer
than it runs), and labels on registrations (set_label, and the qualified name the
binding gives call_every, watch, watch_signal and subscribe), as the watchdog sees them."""

import dataclasses
import os
import threading
import time

import pytest

import weft
from weft import _pools

from conftest import run, run_all, wait_for


def test_stats_counts_move_with_what_the_loop_runs(loop):
    first = loop.stats()
    assert isinstance(first, weft.LoopStats)
    assert first.utilization is None  # the first read starts the clock
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.passes = 1  # type: ignore[misc]
    r, w = os.pipe()
    seen = {}
    ticks = []

    def tick():
        ticks.append(time.monotonic())
        if len(ticks) == 5:
            os.write(w, b"x")

    every = loop.call_every(0.005, tick)

    def readable(fd, ready):
        os.read(fd, 1)
        seen["inside"] = loop.stats()  # registrations, read on the loop thread
        watch.cancel()
        sub.cancel()
        every.cancel()

    watch = loop.watch(r, weft.READ, readable)
    events = []
    sub = loop.subscribe("stats.*", lambda topic, payload: events.append(topic))
    loop.emit("stats.x", b"")
    loop.call_soon(lambda: None)
    fut = loop.spawn(sum, [1, 2, 3], on="thread")
    run(loop)
    os.close(r)
    os.close(w)
    assert fut.result() == 6 and events == ["stats.x"]
    last = loop.stats()
    inside = seen["inside"]
    assert inside.timers >= 1 and inside.fd_watches == 1 and inside.subscriptions >= 1
    assert last.fd_watches == 0
    assert last.passes > first.passes
    assert last.timer_callbacks >= 5
    assert last.fd_callbacks >= 1
    assert last.post_callbacks >= 1  # call_soon's batch
    assert last.event_callbacks >= 1
    assert last.done_callbacks >= 1
    assert last.tasks == 0 and last.children == 0 and last.process_tasks == 0
    # busy/idle time is on a coarse clock (a few ms a tick): this short run may show
    # no busy time at all
    assert last.idle_ns > 0
    assert 0 <= last.utilization < 1
    assert last.utilization_since(inside) is None or 0 <= last.utilization_since(inside) <= 1
    assert last.timer_late_samples >= 5
    assert 0 <= last.timer_late_p50_ns <= last.timer_late_p99_ns <= last.timer_late_max_ns
    assert last.timer_late_max_ns < 5e9
    # A callback that holds the loop for 60 ms: the loop was busy for most of the run.
    loop.call_soon(time.sleep, 0.06)
    run(loop)
    busy = loop.stats().utilization_since(last)
    assert busy is not None and 0.5 < busy <= 1


def test_stats_from_another_thread_while_the_loop_runs(loop):
    got = []
    loop.stats()

    def reader():
        for _ in range(20):
            got.append(loop.stats())
            time.sleep(0.005)
        loop.stop()

    keep = loop.call_every(0.002, lambda: None)
    thread = threading.Thread(target=reader)
    thread.start()
    run(loop)
    thread.join()
    keep.cancel()
    assert len(got) == 20
    assert got[-1].timer_callbacks > got[0].timer_callbacks
    assert all(b.passes >= a.passes for a, b in zip(got, got[1:]))
    loop.close()
    with pytest.raises(weft.Closed):
        loop.stats()


def test_pool_stats():
    with pytest.raises(ValueError):
        weft.pool_stats("gpu")
    with weft.Loop() as loop:
        futures = [loop.spawn(time.sleep, 0.001, on="thread") for _ in range(10)]
        run_all(loop, futures)
    stats = weft.pool_stats("io")
    assert isinstance(stats, weft.PoolStats)
    assert stats.tasks_run >= 10
    assert 1 <= stats.threads <= _pools.sizes[_pools.IO]
    assert stats.threads_started >= stats.threads
    assert stats.queued == 0
    assert weft.pool_stats("thread").threads_started == stats.threads_started  # an alias of "io"


def test_timing_a_task_queued_behind_a_busy_pool_waits_longer_than_it_runs(loop):
    size = _pools.sizes[_pools.IO]
    blockers = [loop.spawn(time.sleep, 0.3, on="thread") for _ in range(size)]
    # every thread busy (a pool need not start tasks in the order they came)
    assert wait_for(lambda: weft.pool_stats("io").busy_threads == size)
    quick = loop.spawn(sum, [1], on="thread")
    assert quick.timing is None  # until its done has run
    in_callback = []
    quick.add_done_callback(lambda f: in_callback.append(f.timing))
    run_all(loop, blockers + [quick])
    timing = quick.timing
    assert isinstance(timing, weft.TaskTiming)
    assert in_callback == [timing]  # done-callbacks see it
    assert timing.queue_delay > timing.run_time
    assert timing.queue_delay >= 0.2
    assert timing.queued <= timing.started <= timing.finished <= timing.done <= time.monotonic()
    for fut in blockers:
        assert fut.timing.run_time >= 0.29


def test_timing_of_loop_process_and_cancelled_tasks(loop):
    on_loop = loop.spawn(lambda: 1)
    in_child = loop.spawn(time.sleep, 0.05, on="process")
    run_all(loop, [on_loop, in_child])
    for fut in (on_loop, in_child):
        t = fut.timing
        assert t is not None and t.started is not None and t.finished is not None
        assert t.queue_delay >= 0 and t.run_time >= 0
    assert in_child.timing.run_time >= 0.04
    # Cancelled while it waits behind a busy pool: it never started.
    blockers = [loop.spawn(time.sleep, 0.2, on="thread") for _ in range(_pools.sizes[_pools.IO])]
    assert wait_for(lambda: weft.pool_stats("io").busy_threads == _pools.sizes[_pools.IO])
    waiting = loop.spawn(time.sleep, 0.001, on="thread")
    assert waiting.cancel()
    run_all(loop, blockers)
    run(loop)  # the cancelled task's done
    if waiting.timing is not None:  # its done ran before the loop stopped
        assert waiting.timing.started is None and waiting.timing.run_time is None
        assert waiting.timing.queue_delay is None


def test_labels_name_registrations_in_the_watchdogs_reports():
    reports = []
    with weft.Loop() as loop:
        loop.set_watchdog(0.03, reports.append)

        def slow_tick(handle_box):
            time.sleep(0.08)
            handle_box[0].cancel()

        box = []
        auto = loop.call_every(0.001, slow_tick, box)
        box.append(auto)
        run(loop)
        assert wait_for(lambda: any(not r.running for r in reports))
        assert {r.label for r in reports} == {slow_tick.__qualname__}
        assert all(r.id == auto.id for r in reports)
        reports.clear()

        named = loop.call_every(0.001, slow_tick, box)
        box[:] = [named]
        loop.set_label(named, "the render queue")
        run(loop)
        assert wait_for(lambda: any(not r.running for r in reports))
        assert {r.label for r in reports} == {"the render queue"}
        returned = [r for r in reports if not r.running][0]
        assert "slow_tick" in returned.format() or "the render queue" in returned.format()
        reports.clear()

        unnamed = loop.call_every(0.001, slow_tick, box)
        box[:] = [unnamed]
        loop.set_label(unnamed, None)  # removed
        run(loop)
        assert wait_for(lambda: any(not r.running for r in reports))
        assert {r.label for r in reports} == {None}

        fut = loop.spawn(time.sleep, 0.01, on="thread")
        loop.set_label(fut, "a thread task")
        loop.set_label(fut._task_id, "by id")
        run_all(loop, [fut])
        with pytest.raises(ValueError):
            loop.set_label(loop.call_soon(lambda: None), "x")
        with pytest.raises(ValueError):
            loop.set_label(loop.call_later(1, lambda: None), "x")
        with pytest.raises(TypeError):
            loop.set_label("not a handle", "x")
        with pytest.raises(TypeError):
            loop.set_label(auto.id, 3)
        with pytest.raises(weft.NotFound):
            loop.set_label(auto, "ended")  # its registration is gone
    with pytest.raises(weft.Closed):
        loop.set_label(auto, "x")
