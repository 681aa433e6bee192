"""The slow-callback watchdog from Python: a callback that blocks the loop is reported
while it still blocks, with the loop thread's stack naming the blocking line, and again
when it returns; Loop(debug=True) logs the reports."""

import logging
import threading
import time

import pytest

import weft


def _blocking_sleep(seconds):
    time.sleep(seconds)  # THE BLOCKING LINE


def _busy(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:  # THE BUSY LINE
        pass


def test_a_sleeping_callback_is_reported_with_its_line_before_it_returns():
    reports = []
    seen_while_running = []
    with weft.Loop() as loop:
        loop.set_watchdog(0.05, reports.append)

        def slow():
            _blocking_sleep(0.2)
            seen_while_running.extend(reports)

        loop.call_soon(slow)
        loop.call_soon(lambda: None)  # fast: not reported
        loop.run()
        deadline = time.monotonic() + 5
        while len(reports) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert len(seen_while_running) == 1, reports
    running = seen_while_running[0]
    assert running.running and running.kind == "post"
    assert 0.05 <= running.elapsed < 0.2
    assert running.name == "slow"
    assert running.stack[-1].name == "_blocking_sleep"
    assert "THE BLOCKING LINE" in running.stack[-1].line
    assert any(f.name == "slow" for f in running.stack)
    returned = reports[1]
    assert not returned.running and returned.seq == running.seq and returned.name == "slow"
    assert returned.elapsed >= 0.2 and returned.stack is None
    assert len(reports) == 2
    assert "still running" in running.format() and "_blocking_sleep" in running.format()


def test_a_busy_callback_holding_the_interpreter_is_reported_while_it_runs():
    reports = []
    got = threading.Event()

    def handler(r):
        reports.append(r)
        got.set()

    with weft.Loop() as loop:
        loop.set_watchdog(0.05, handler)
        seen = []

        def busy():
            _busy(0.3)
            seen.append(got.is_set())

        loop.call_later(0, busy)
        loop.run()
    assert seen == [True]
    assert reports[0].running and reports[0].kind in ("timer", "post")
    assert reports[0].stack[-1].name == "_busy"


def test_debug_logs_slow_callbacks(caplog):
    with caplog.at_level(logging.WARNING, logger="weft"):
        with weft.Loop(debug=True) as loop:
            loop.call_soon(_blocking_sleep, 0.25)
            loop.run()
            deadline = time.monotonic() + 5
            while len([r for r in caplog.records if "blocked the loop" in r.getMessage()]) < 2 \
                    and time.monotonic() < deadline:
                time.sleep(0.01)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "is still running" in text and "THE BLOCKING LINE" in text
    assert "weft: _blocking_sleep blocked the loop for 0.2" in text


def test_off_replace_and_bad_arguments():
    reports = []
    with weft.Loop() as loop:
        loop.set_watchdog(0.03, reports.append)
        loop.set_watchdog(0.03, reports.append)  # replaced: the first registration ends
        loop.set_watchdog(None)
        loop.call_soon(_blocking_sleep, 0.1)
        loop.run()
        time.sleep(0.05)
        assert reports == []
        loop.set_watchdog(0)  # off again: fine
        with pytest.raises(TypeError):
            loop.set_watchdog("1")
        with pytest.raises(ValueError):
            loop.set_watchdog(-1)
        with pytest.raises(TypeError):
            loop.set_watchdog(1, handler=3)
        with pytest.raises(weft.Error):
            loop.set_watchdog(1e12)  # above weft's bound
    with pytest.raises(weft.Closed):
        loop.set_watchdog(1)
