"""Interpreter exit with tasks in flight neither hangs nor crashes (each case runs in
a fresh interpreter)."""

import os
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import PACKAGE_ROOT

PRELUDE = """
import os, sys, threading, time
import weft
"""


def run_script(tmp_path, body, timeout=20, prelude=PRELUDE):
    script = tmp_path / "script.py"
    script.write_text(prelude + textwrap.dedent(body))
    env = dict(os.environ, PYTHONPATH=PACKAGE_ROOT)
    start = time.monotonic()
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=timeout,
                          env=env)
    elapsed = time.monotonic() - start
    for bad in ("Fatal Python error", "exception not rethrown", "Segmentation", "Exception ignored"):
        assert bad not in proc.stderr, proc.stderr
    return proc, elapsed


def child_gone(pid):
    return not os.path.exists(f"/proc/{pid}")


def test_exit_while_a_thread_task_sleeps(tmp_path):
    proc, elapsed = run_script(tmp_path, """
        loop = weft.Loop()
        task = loop.spawn(time.sleep, 30, on="thread")
        loop.call_later(0.1, loop.stop)
        loop.run()
        print("leaving", task.running())
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "leaving True"
    assert elapsed < 5


def test_exit_while_a_process_task_runs(tmp_path):
    proc, elapsed = run_script(tmp_path, """
        loop = weft.Loop()
        def child():
            loop.emit("pid", str(os.getpid()))
            time.sleep(30)
        task = loop.spawn(child, on="process")
        loop.subscribe("pid", lambda t, p: (print(p.decode(), flush=True), loop.stop()))
        loop.run()
    """)
    assert proc.returncode == 0, proc.stderr
    assert elapsed < 5
    pid = int(proc.stdout.split()[0])
    assert child_gone(pid)  # killed and reaped when the loop was closed at exit


def test_sys_exit_from_a_callback_with_tasks_in_flight(tmp_path):
    proc, elapsed = run_script(tmp_path, """
        loop = weft.Loop()
        loop.spawn(time.sleep, 30, on="thread")
        loop.spawn(time.sleep, 30, on="cpu")
        loop.spawn(time.sleep, 30, on="process")
        loop.spawn(time.sleep, 30, on="process", timeout=60)
        loop.call_every(0.01, lambda: None)
        loop.call_later(0.1, sys.exit, 3)
        loop.run()
    """)
    assert proc.returncode == 3, proc.stderr
    assert elapsed < 5


def test_exit_without_running_the_loop(tmp_path):
    proc, elapsed = run_script(tmp_path, """
        loop = weft.Loop(max_children=1)
        for _ in range(3):
            loop.spawn(time.sleep, 30, on="process")
        loop.spawn(print, "never")  # on the loop, which never runs
        loop.call_later(30, print, "never")
        loop.subscribe("x", print)
        print("done")
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "done\n"
    assert elapsed < 5


def test_exit_while_a_daemon_thread_runs_the_loop(tmp_path):
    proc, elapsed = run_script(tmp_path, """
        loop = weft.Loop()
        loop.call_every(0.001, lambda: None)
        threading.Thread(target=loop.run, daemon=True).start()
        futures = [loop.spawn(time.sleep, 0.001 * i, on="thread") for i in range(50)]
        futures.append(loop.spawn(time.sleep, 30, on="process"))
        time.sleep(0.1)
    """)
    assert proc.returncode == 0, proc.stderr
    assert elapsed < 5


def test_exit_after_an_uncaught_exception(tmp_path):
    proc, elapsed = run_script(tmp_path, """
        loop = weft.Loop()
        loop.spawn(time.sleep, 30, on="process")
        loop.spawn(time.sleep, 30, on="thread")
        raise RuntimeError("the script failed")
    """)
    assert proc.returncode == 1
    assert "the script failed" in proc.stderr
    assert elapsed < 5


def test_exit_from_asyncio_with_a_process_task_in_flight(tmp_path):
    proc, elapsed = run_script(tmp_path, """
        import asyncio, weft.asyncio
        async def main():
            loop = weft.asyncio.attach()
            loop.spawn(time.sleep, 30, on="process")
            loop.spawn(time.sleep, 30, on="thread")
            await asyncio.sleep(0.1)
        asyncio.run(main())
        print("done")
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "done\n"
    assert elapsed < 5


def test_short_thread_tasks_finish_and_the_pools_are_joined(tmp_path):
    # Work that ends within the exit grace lets the binding free its pools and call
    # weft_shutdown: no weft thread is left when Python finalizes.
    proc, elapsed = run_script(tmp_path, """
        import atexit, os, time
        def count_threads():
            # weft's handler joined its threads; the kernel lists a joined thread a
            # moment longer, until it reaps it.
            end = time.monotonic() + 1
            while len(os.listdir("/proc/self/task")) > 1 and time.monotonic() < end:
                time.sleep(0.001)
            print(len(os.listdir("/proc/self/task")))
        atexit.register(count_threads)  # registered first: runs after weft's handler
        import weft
        loop = weft.Loop()
        loop.spawn(time.sleep, 0.1, on="thread")
        loop.spawn(time.sleep, 0.1, on="cpu")
    """, prelude="")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "1"
    assert elapsed < 5


@pytest.mark.parametrize("attempt", range(3))
def test_exit_is_repeatable(tmp_path, attempt):
    proc, elapsed = run_script(tmp_path, """
        loop = weft.Loop()
        fs = [loop.spawn(time.sleep, 0.02, on=on) for on in ("thread", "cpu", "process") for _ in range(4)]
        loop.call_later(0.03, loop.stop)
        loop.run()
    """)
    assert proc.returncode == 0, proc.stderr


def test_a_thread_task_that_finishes_while_the_interpreter_finalizes(tmp_path):
    # The pool thread wakes up during finalization and wants the GIL: CPython <= 3.13
    # ends it with pthread_exit. That must end the thread, not abort the process
    # ("FATAL: exception not rethrown" before weft's pool threads became plain pthreads).
    proc, elapsed = run_script(tmp_path, """
        loop = weft.Loop()
        task = loop.spawn(time.sleep, 0.6, on="thread")
        loop.call_later(0.05, loop.stop)
        loop.run()

        class SlowToDie:
            def __del__(self):
                time.sleep(1.0)  # finalization outlasts the task's sleep

        keep = SlowToDie()
        print("exiting", flush=True)
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "exiting"
