#!/usr/bin/env python3
"""weft inside asyncio: one weft loop attached to the running asyncio loop.

Process and thread tasks are awaited like coroutines; weft timers and events run on the
asyncio thread next to asyncio's own callbacks; a child's progress events feed an
asyncio.Queue; cancelling the awaiting coroutine kills the child.

    python3 examples/python/asyncio_example.py
"""

import asyncio
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "bindings", "python"))  # a checkout; else installed

import weft  # noqa: E402
import weft.asyncio  # noqa: E402


def crunch(n, loop):
    """CPU-bound work for a child process; reports progress as events."""
    total = 0
    for i in range(n):
        total += i * i
        if i % (n // 4) == 0:
            loop.emit("crunch.progress", f"{os.getpid()}:{i * 100 // n}")
    return total


async def main():
    loop = weft.asyncio.attach()
    asyncio_thread = threading.get_ident()
    try:
        # Events from children arrive on the asyncio thread: hand them to a queue.
        progress = asyncio.Queue()
        loop.subscribe("crunch.*", lambda topic, payload: progress.put_nowait(payload.decode()))

        # A weft timer and an asyncio timer, side by side on one thread.
        beats = []
        heartbeat = loop.call_every(0.01, lambda: beats.append(threading.get_ident() == asyncio_thread))

        # Await process tasks concurrently (fn is a closure: `loop` is not picklable).
        started = time.monotonic()
        results = await asyncio.gather(*(loop.spawn(crunch, 2_000_000 + k, loop, on="process")
                                         for k in range(3)))
        print(f"3 process tasks in {time.monotonic() - started:.2f} s: sums {[f'{r:.4e}' for r in results]}")

        # A thread task for a blocking call, awaited the same way.
        slept = await loop.spawn(lambda: time.sleep(0.05) or "slept 50 ms", on="thread")
        print("thread task:", slept)

        drained = []
        while not progress.empty():
            drained.append(await progress.get())
        print(f"{len(drained)} progress events from {len({d.split(':')[0] for d in drained})} children, "
              f"e.g. {drained[:3]}")

        # Cancelling an awaiting coroutine cancels the weft task: the child is killed.
        child = loop.spawn(time.sleep, 30, on="process")
        try:
            await asyncio.wait_for(asyncio.wrap_future(child), timeout=0.1)
        except asyncio.TimeoutError:
            pass
        await asyncio.sleep(0.01)
        print("awaiting coroutine timed out; weft task cancelled:", child.cancelled())

        # Errors raise where they are awaited.
        try:
            await loop.spawn(lambda: {}["missing"], on="process")
        except KeyError as exc:
            print("process task raised KeyError", exc, "(child traceback attached:",
                  "child_traceback" in dir(exc), ")")

        heartbeat.cancel()
        await asyncio.sleep(0)
        print(f"weft heartbeat: {len(beats)} beats, all on the asyncio thread: {all(beats)}")
        return all(beats) and child.cancelled() and len(results) == 3
    finally:
        loop.close()


if __name__ == "__main__":
    sys.exit(0 if asyncio.run(main()) else 1)
