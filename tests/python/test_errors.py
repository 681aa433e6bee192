"""Exceptions raised by callbacks: reported (logging or the error handler), never
swallowed, never fatal; KeyboardInterrupt and SystemExit stop run() and are raised."""

import logging
import threading

import pytest

import weft
from conftest import run


def test_default_is_logging_to_the_weft_logger(caplog):
    with weft.Loop() as lp:
        lp.call_soon(lambda: 1 / 0)
        got = []
        lp.call_soon(got.append, "still running")
        with caplog.at_level(logging.ERROR, logger="weft"):
            run(lp)
    assert got == ["still running"]
    records = [r for r in caplog.records if r.name == "weft"]
    assert len(records) == 1
    assert records[0].exc_info[0] is ZeroDivisionError
    assert "call_soon" in records[0].getMessage()


def test_error_handler_gets_every_kind_of_callback(errors):
    with weft.Loop() as lp:
        def boom(*args):
            raise ValueError(args)

        lp.call_soon(boom)
        lp.call_later(0, boom)
        timer = lp.call_every(0.001, lambda: (timer.cancel(), boom()))
        sub = lp.subscribe("t", boom)
        lp.emit("t", b"")
        fut = lp.spawn(lambda: 1)
        fut.add_done_callback(boom)
        lp.call_later(0.02, sub.cancel)
        run(lp)
        assert fut.result() == 1
    kinds = sorted(context.split()[0] for _, context in errors)
    assert kinds == ["call_every", "call_later", "call_soon", "done-callback", "subscriber"]
    assert all(type(exc) is ValueError for exc, _ in errors)
    errors.clear()


def test_a_raising_error_handler_is_logged(caplog):
    def bad_handler(exc, context):
        raise RuntimeError("handler broke")

    previous = weft.set_error_handler(bad_handler)
    try:
        with weft.Loop() as lp, caplog.at_level(logging.ERROR, logger="weft"):
            lp.call_soon(lambda: 1 / 0)
            run(lp)
    finally:
        weft.set_error_handler(previous)
    assert any("error handler raised" in r.getMessage() for r in caplog.records)


def test_set_error_handler_returns_the_previous_and_checks_its_argument():
    first = weft.set_error_handler(None)
    try:
        handler = lambda exc, context: None  # noqa: E731
        assert weft.set_error_handler(handler) is None
        assert weft.set_error_handler(None) is handler
        with pytest.raises(TypeError):
            weft.set_error_handler("not callable")
    finally:
        weft.set_error_handler(first)


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_keyboard_interrupt_and_system_exit_stop_run(loop, exc_type):
    after = []

    def interrupt():
        raise exc_type()

    loop.call_soon(interrupt)
    keep_alive = loop.call_every(0.001, after.append, 1)
    with pytest.raises(exc_type):
        run(loop)
    keep_alive.cancel()


def test_exception_in_a_thread_task_goes_to_its_future_not_the_handler(loop, errors):
    fut = loop.spawn(lambda: [][1], on="thread")
    run(loop)
    assert isinstance(fut.exception(), IndexError)
    assert not errors


def test_exception_in_a_done_callback_on_another_thread(loop, errors):
    keep_alive = loop.call_every(1, lambda: None)
    runner = threading.Thread(target=loop.run)
    runner.start()
    fut = loop.spawn(lambda: 1, on="thread")
    fut.add_done_callback(lambda f: (loop.call_soon(keep_alive.cancel), 1 / 0))
    runner.join(5)
    assert not runner.is_alive()
    assert errors.types() == [ZeroDivisionError]
    errors.clear()


def test_ctrl_c_while_run_waits_is_raised_from_run(tmp_path):
    # SIGINT is handled where Python next checks for signals: possibly the first line of
    # a trampoline. Wherever it lands, run() stops and raises KeyboardInterrupt.
    import os
    import subprocess
    import sys

    from conftest import PACKAGE_ROOT

    script = tmp_path / "sigint.py"
    script.write_text(
        "import os, signal, threading, time, weft\n"
        # A shell without job control starts background commands with SIGINT ignored,
        # and Python then keeps it ignored: give this child Python's own handler.
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "with weft.Loop() as loop:\n"
        "    for _ in range(5):\n"
        "        loop.call_every(0.003, lambda: None)\n"
        "    threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()\n"
        "    try:\n"
        "        loop.run()\n"
        "    except KeyboardInterrupt:\n"
        "        print('interrupted')\n")
    for _ in range(3):
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=20,
                              env=dict(os.environ, PYTHONPATH=PACKAGE_ROOT))
        assert proc.stdout == "interrupted\n", proc.stderr
        assert proc.stderr == ""
