#!/usr/bin/env python3
"""A short tour of weft from Python: timers, posts from other threads, events, fd and
signal watches, and tasks on the loop, on threads, on the CPU pool and in forked
processes, with cancel, timeouts and errors.

    python3 examples/python/tour.py
"""

import hashlib
import os
import signal
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "bindings", "python"))  # a checkout; else installed

import weft  # noqa: E402

start = time.monotonic()


def say(*args):
    print(f"[{time.monotonic() - start:5.3f}] ", *args, flush=True)


def main():
    problems = []
    weft.set_error_handler(lambda exc, where: (problems.append(exc), say(f"ERROR in {where}: {exc!r}")))
    with weft.Loop() as loop:
        # Timers: once, every, cancel.
        loop.call_later(0.05, say, "call_later: 50 ms")
        ticks = []

        def tick():
            ticks.append(1)
            if len(ticks) == 3:
                say("call_every: third tick of 20 ms; cancelling itself ->", every.cancel())

        every = loop.call_every(0.02, tick)
        never = loop.call_later(10, say, "never")
        say("cancel a pending timer ->", never.cancel(), "; again ->", never.cancel())

        # Posts from another thread run on the loop thread.
        loop_thread = threading.get_ident()
        threading.Thread(target=lambda: loop.call_soon(
            lambda: say("call_soon from a thread, running on the loop thread:",
                        threading.get_ident() == loop_thread))).start()

        # Events: topics with patterns, emitted from anywhere.
        events = loop.subscribe("job.*", lambda topic, payload: say(f"event {topic}: {payload.decode()}"))
        loop.emit("job.queued", "three jobs")

        # An fd watch: a socket pair.
        a, b = socket.socketpair()

        def readable(fd, ready):
            say("watch: fd", fd, "readable:", a.recv(64).decode())
            watch.cancel()

        watch = loop.watch(a, weft.READ, readable)
        loop.call_later(0.03, b.send, b"ping")

        # A signal, handled on the loop thread (not in a signal handler).
        sig = loop.watch_signal(signal.SIGUSR1, lambda signum: (say("signal", signal.Signals(signum).name),
                                                                  sig.cancel()))
        loop.call_later(0.04, os.kill, os.getpid(), signal.SIGUSR1)

        # Tasks. On a thread: blocking calls; threading.local survives between tasks.
        local = threading.local()

        def blocking(n):
            local.calls = getattr(local, "calls", 0) + 1
            time.sleep(0.01)
            loop.emit("job.thread", f"task {n} ran (its thread's call #{local.calls})")
            return n * n

        squares = [loop.spawn(blocking, n, on="thread") for n in range(3)]
        for fut in squares:
            fut.add_done_callback(lambda f: say("thread task ->", f.result()))

        # On the CPU pool: code that releases the GIL (hashlib on large buffers does).
        digest = loop.spawn(lambda: hashlib.sha256(b"x" * (32 << 20)).hexdigest()[:16], on="cpu")
        digest.add_done_callback(lambda f: say("cpu task: sha256 of 32 MiB =", f.result()))

        # In a forked child: a lambda over an unpicklable lock; only the result comes back.
        lock = threading.Lock()
        parent = os.getpid()
        child = loop.spawn(lambda: (lock.locked(), os.getpid() != parent), on="process")
        child.add_done_callback(lambda f: say("process task (closure over a Lock) ->", f.result()))

        # Errors come back as themselves, with the child's traceback attached.
        def fails():
            raise ValueError("bad input in the child")

        failed = loop.spawn(fails, on="process")
        failed.add_done_callback(lambda f: say("process task raised:", repr(f.exception()),
                                               "| child traceback ends:",
                                               f.exception().child_traceback.strip().splitlines()[-1]))

        crashed = loop.spawn(lambda: os.kill(os.getpid(), signal.SIGSEGV), on="process")
        crashed.add_done_callback(lambda f: say("crash ->", f.exception()))

        # Timeouts and cancel.
        slow = loop.spawn(time.sleep, 5, on="process", timeout=0.1)
        slow.add_done_callback(lambda f: say("timeout ->", type(f.exception()).__name__))
        doomed = loop.spawn(time.sleep, 5, on="process")
        loop.call_later(0.06, lambda: say("cancel a running process task ->", doomed.cancel()))

        # Stop listening once everything is in.
        everything = squares + [digest, child, failed, crashed, slow, doomed]
        remaining = [len(everything)]

        def one_done(_):
            remaining[0] -= 1
            if remaining[0] == 0:
                events.cancel()

        for fut in everything:
            fut.add_done_callback(one_done)

        loop.run()  # returns when nothing is left
        a.close()
        b.close()
    say("loop closed; bye")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
