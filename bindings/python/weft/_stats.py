"""What a loop, a pool and a task report about themselves: `Loop.stats()`
(weft_loop_get_stats), `weft.pool_stats()` (weft_pool_get_stats) and `Future.timing`
(weft_task_get_timing), as frozen dataclasses.

Reading stats is one ctypes call that fills a struct (weft copies its counters; the
loop is not stopped), from any thread; it releases the interpreter lock, as weft may
wait for the loop's own lock there. busy/idle time and timer lateness are counted
from the first read of a loop's stats on: the first `stats()` starts them.

Timings: the binding spawns every task with `WEFT_SPAWN_TIMING` set, and its
done trampoline (`_callbacks._on_done`, the only place weft_task_get_timing answers)
copies the four times into a `weft_task_timing` kept on the future; `Future.timing`
turns them into a `TaskTiming` when asked. weft reads CLOCK_MONOTONIC, the clock of
`time.monotonic()`, so the times compare with it.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, fields
from typing import Any, Optional

from . import _ffi
from ._errors import check
from ._lib import held, lib


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
    #: Time spent running callbacks, and waiting for something to do, since the loop's
    #: stats were first read.
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
    #: Tasks that finished and whose done waits for a pass.
    waiting_completions: int
    #: Loop and pool tasks spawned whose done has not run.
    tasks: int
    #: Process tasks waiting or running, and adopted children.
    process_tasks: int
    #: Live child processes.
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
_TIMING_SIZE = ctypes.sizeof(_Timing)
_get_timing = held.weft_task_get_timing


def read_timing(lp: Any, rid: int) -> Any:
    """Inside a task's done: its weft_task_timing (None if weft has none)."""
    raw = _Timing()
    raw.size = _TIMING_SIZE
    if _get_timing(lp, rid, raw) != 0:
        return None
    return raw


def timing_of(raw: Any) -> Optional[TaskTiming]:
    """A read_timing struct as a TaskTiming."""
    if raw is None or not raw.queued_ns:
        return None
    return TaskTiming(
        queued=raw.queued_ns / 1e9,
        started=raw.started_ns / 1e9 if raw.started_ns else None,
        finished=raw.finished_ns / 1e9 if raw.finished_ns else None,
        done=raw.done_ns / 1e9,
    )
