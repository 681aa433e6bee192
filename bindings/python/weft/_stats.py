"""What a loop, a pool and a task report about themselves: `Loop.stats()`
(weft_loop_get_stats), `weft.pool_stats()` (weft_pool_get_stats) and `Future.timing`
(weft_task_get_timing), as frozen dataclasses.

Reading stats is one ctypes call that fills a struct (weft copies its counters; the
loop is not stopped), from any thread; it releases the interpreter lock, as weft may
wait for the loop's own lock there. busy/idle time and timer lateness are counted
from the first read of a loop's stats on: the first `stats()` starts them.

Timings, kept on the future as (queued, started, finished, done) in CLOCK_MONOTONIC ns
(`time.monotonic_ns()`'s clock) and turned into a `TaskTiming` when asked:
* loop, thread and cpu tasks: stamped by the binding (`_loop._Task`: the spawn, the
  start and the end of fn on its thread, the done), four `time.monotonic_ns()` calls.
  Asking weft (WEFT_SPAWN_TIMING) would cost a ctypes round trip in every done (a
  fifth more instructions per trivial thread task); and fn's start is then when its
  pool thread holds the GIL, when the user's code really starts.
* process tasks, whose start and end only weft sees (in the child): spawned with
  WEFT_SPAWN_TIMING, and the done trampoline (`_callbacks._on_done`: weft answers only
  inside done) reads weft_task_get_timing into the loop's `TimingBuffer`.
"""

from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass, fields
from typing import Any, Optional, Tuple

from . import _ffi
from ._errors import check
from ._lib import lib


@dataclass(frozen=True)
class LoopStats:
    """A loop's counters at one moment (`Loop.stats()`). Times are nanoseconds."""

    #: Passes the loop has run.
    passes: int
    #: Callbacks run, by kind (a `done` is a task's completion).
    timer_callbacks: int
    post_callbacks: int
    fd_callbacks: int
    signal_callbacks: int
    event_callbacks: int
    done_callbacks: int
    #: Time spent in passes (callbacks and the loop's own work), and waiting for work
    #: inside run(), since the loop's stats were first read. A callback still running
    #: counts as busy up to the read: a blocked loop shows as busy while it is blocked.
    busy_ns: int
    idle_ns: int
    #: How late timers ran (deadline to call), over the last 1024 timer calls since the
    #: first read: median, 99th percentile, maximum, and how many calls that is.
    timer_late_p50_ns: int
    timer_late_p99_ns: int
    timer_late_max_ns: int
    timer_late_samples: int
    #: Posts and events queued, not yet run.
    queued_records: int
    #: Tasks that finished and whose done waits for a later pass (the pass limit).
    waiting_completions: int
    #: Loop and pool tasks spawned whose done has not run.
    tasks: int
    #: Process tasks waiting or running, and adopted children.
    process_tasks: int
    #: Process tasks running in a child now.
    children: int
    #: Registrations, by kind.
    timers: int
    fd_watches: int
    signal_watches: int
    subscriptions: int
    #: busy / (busy + idle) since the first read; None before a second read (nothing
    #: counted yet). See `utilization_since` for the share between two reads.
    utilization: Optional[float]

    def utilization_since(self, earlier: "LoopStats") -> Optional[float]:
        """The share of the time between `earlier` (a previous `stats()` of the same
        loop) and this read that the loop spent running callbacks; None if no time was
        counted in between."""
        busy = self.busy_ns - earlier.busy_ns
        total = busy + self.idle_ns - earlier.idle_ns
        return busy / total if total > 0 else None


@dataclass(frozen=True)
class PoolStats:
    """A worker pool's counters at one moment (`weft.pool_stats()`)."""

    #: Threads alive, and those running a task now.
    threads: int
    busy_threads: int
    #: Tasks waiting for a thread.
    queued: int
    #: Tasks run to the end, and those a thread took from another thread's queue.
    tasks_run: int
    steals: int
    #: Threads started and retired (idle ones end) since the pool was made.
    threads_started: int
    threads_retired: int


@dataclass(frozen=True)
class TaskTiming:
    """When a task was queued, started, finished and completed (its done ran), in seconds
    on `time.monotonic()`'s clock; None for what did not happen (a task cancelled or
    timed out before it started has no start)."""

    queued: float
    started: Optional[float]
    finished: Optional[float]
    done: float

    @property
    def queue_delay(self) -> Optional[float]:
        """Seconds the task waited for a thread (or a child) before it started."""
        return None if self.started is None else self.started - self.queued

    @property
    def run_time(self) -> Optional[float]:
        """Seconds its work ran (None if it did not start, or did not finish)."""
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started


_LOOP_FIELDS = tuple(f.name for f in fields(LoopStats) if f.name != "utilization")
_POOL_FIELDS = tuple(f.name for f in fields(PoolStats))


def loop_stats(ptr: Any) -> LoopStats:
    """weft_loop_get_stats of the loop `ptr` as a LoopStats."""
    raw = _ffi.weft_loop_stats()
    raw.size = ctypes.sizeof(raw)
    check(lib.weft_loop_get_stats(ptr, raw))
    values = {name: getattr(raw, name) for name in _LOOP_FIELDS}
    total = raw.busy_ns + raw.idle_ns
    return LoopStats(**values, utilization=raw.busy_ns / total if total else None)


def pool_stats(ptr: Any, kind: int) -> PoolStats:
    """weft_pool_get_stats of the pool `ptr` (None: weft's default pool of `kind`)."""
    raw = _ffi.weft_pool_stats()
    raw.size = ctypes.sizeof(raw)
    check(lib.weft_pool_get_stats(ptr, kind, raw))
    return PoolStats(**{name: getattr(raw, name) for name in _POOL_FIELDS})


# ---- task timings ------------------------------------------------------------------------

_Timing = _ffi.weft_task_timing
# The four times of a weft_task_timing: consecutive u64s after its size_t.
TIMES = struct.Struct("=4Q")
TIMES_OFFSET = _Timing.queued_ns.offset
assert [getattr(_Timing, f).offset - TIMES_OFFSET for f in ("queued_ns", "started_ns", "finished_ns", "done_ns")] \
    == [0, 8, 16, 24], "weft_task_timing's layout changed"

class TimingBuffer:
    """A loop's weft_task_timing, which its done trampoline fills for each process task
    (made once: done runs on the loop thread only), and a reference to pass it by."""

    __slots__ = ("raw", "ref")

    def __init__(self) -> None:
        self.raw = _Timing()
        self.raw.size = ctypes.sizeof(_Timing)
        self.ref = ctypes.byref(self.raw)


def timing_of(times: Optional[Tuple[int, int, int, int]]) -> Optional[TaskTiming]:
    """(queued, started, finished, done) in CLOCK_MONOTONIC ns (0: did not happen) as a
    TaskTiming."""
    if times is None:
        return None
    queued, started, finished, done = times
    if not queued:
        return None
    return TaskTiming(
        queued=queued / 1e9,
        started=started / 1e9 if started else None,
        finished=finished / 1e9 if finished else None,
        done=done / 1e9,
    )
