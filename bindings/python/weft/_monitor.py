"""Seeing what blocks a loop: the slow-callback watchdog (weft_loop_set_watchdog) with
the loop thread's Python stack, sampled while the callback still runs.

weft's watchdog thread calls `_on_report` (ctypes takes the interpreter lock for it)
when a callback of the loop thread has run longer than the threshold, and again when it
returns. While it still runs, the report samples the loop thread's frames with
`sys._current_frames()`: the innermost frame is the line that blocks the loop, and the
frame just inside the binding's own (the trampoline that called it) is the callback.
A callback that holds the interpreter lock without a pause (a C extension that does
not release it) delays the report until the interpreter switches threads (every
`sys.getswitchinterval()`, 5 ms by default) or the callback returns.

`Monitoring` is a base class of `weft.Loop`: `set_watchdog` and the `debug` switch,
`stats()` (see _stats) and `set_label`.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

from . import _ffi
from ._callbacks import FREE, discard, register, registry
from ._errors import check
from ._future import Future
from ._handles import Handle, Watch
from ._lib import held, lib
from ._stats import LoopStats, loop_stats

logger = logging.getLogger("weft")

# The default threshold of Loop(debug=True): asyncio's slow_callback_duration.
DEBUG_THRESHOLD = 0.1

_KINDS = {
    _ffi.WEFT_CALLBACK_TIMER: "timer",
    _ffi.WEFT_CALLBACK_POST: "post",
    _ffi.WEFT_CALLBACK_FD: "fd",
    _ffi.WEFT_CALLBACK_SIGNAL: "signal",
    _ffi.WEFT_CALLBACK_EVENT: "event",
    _ffi.WEFT_CALLBACK_DONE: "done",
}

# The binding's own files: frames in them are weft's, not the user's.
_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


@dataclass(frozen=True)
class SlowCallback:
    """A callback that held the loop thread longer than the watchdog's threshold."""

    #: The weft id of the registration (a post batches the binding's call_soon calls).
    id: int
    #: "timer", "post", "fd", "signal", "event" or "done".
    kind: str
    #: True: the callback is still running and `elapsed` is its time so far; False: it
    #: returned and `elapsed` is its total time.
    running: bool
    #: Seconds.
    elapsed: float
    #: The callback's number on its loop: its running and returned reports share it.
    seq: int
    #: The Python function the loop thread was in (the callback), when known.
    name: Optional[str]
    #: The loop thread's stack when the report was made (innermost last), while it runs.
    stack: Optional[traceback.StackSummary]
    #: The registration's label (`Loop.set_label`; the binding labels call_every, watch,
    #: watch_signal and subscribe registrations with their callable's qualified name).
    label: Optional[str] = None

    def format(self) -> str:
        """The report as the debug log writes it."""
        what = self.name or self.label or f"a {self.kind} callback"
        if self.running:
            head = f"weft: {what} has blocked the loop for {self.elapsed:.3f} s and is still running"
        else:
            head = f"weft: {what} blocked the loop for {self.elapsed:.3f} s"
        if not self.stack:
            return head
        return head + "; the loop thread is at:\n" + "".join(self.stack.format()).rstrip()


def _log(report: SlowCallback) -> None:
    logger.warning("%s", report.format())


class _Watchdog:
    """A loop's watchdog registration: the handler and what the reports need."""

    def __init__(self, loop: Any, handler: Callable[[SlowCallback], None]) -> None:
        self.loop = loop
        self.handler = handler
        self.names: Dict[int, Optional[str]] = {}  # seq -> name, from the running report

    def report(self, r: Any) -> None:
        running = not r.returned
        name: Optional[str] = None
        stack: Optional[traceback.StackSummary] = None
        if running:
            stack, name = _sample(r.thread_id, self.loop)
            if len(self.names) > 64:
                self.names.clear()
            self.names[r.seq] = name
        else:
            name = self.names.pop(r.seq, None)
        label = r.label.decode("utf-8", "replace") if r.label else None
        report = SlowCallback(
            id=r.id, kind=_KINDS.get(r.kind, str(r.kind)), running=running, elapsed=r.elapsed_ns / 1e9,
            seq=r.seq, name=name, stack=stack, label=label,
        )
        try:
            self.handler(report)
        except Exception:  # noqa: BLE001 - a handler must not end the watchdog
            logger.exception("weft: the watchdog handler raised")

    def freed(self) -> None:
        self.loop = None


def _sample(thread_id: int, loop: Any) -> Any:
    """The loop thread's stack (outermost first) and the callback's name."""
    ident = None
    for t in threading.enumerate():
        if t.native_id == thread_id:
            ident = t.ident
            break
    if ident is None:
        ident = getattr(loop, "_thread", None)
    frame = sys._current_frames().get(ident) if ident is not None else None
    if frame is None:
        return None, None
    stack = traceback.extract_stack(frame)
    # The callback: the first frame after the innermost frame of the binding itself
    # (the trampoline, or the binding's dispatcher of a batch of call_soon calls).
    inner = max((i for i, f in enumerate(stack) if f.filename.startswith(_PACKAGE)), default=-1)
    if inner + 1 < len(stack):
        user = stack[inner + 1:]
        return traceback.StackSummary.from_list(user), user[0].name
    # In the binding itself (a process task's done reading its result) or in C: no
    # callable of the user's to name (the report's label may).
    return traceback.StackSummary.from_list(stack), None


def _on_report(lp: Any, report: Any, key: Optional[int]) -> None:
    try:
        entry = registry.get(key)  # type: ignore[arg-type]
        if entry is not None:
            entry.report(report.contents)
    except BaseException:  # noqa: BLE001 - nothing escapes into C
        pass


REPORT = _ffi.weft_watchdog_cb(_on_report)


class Monitoring:
    """The monitoring methods of weft.Loop."""

    _ptr: Any
    _lock: Any

    def set_watchdog(self, threshold: Optional[float],
                     handler: Optional[Callable[[SlowCallback], None]] = None) -> None:
        """Reports every callback of this loop that runs longer than `threshold`
        seconds: once while it still runs, with the loop thread's Python stack (the
        line that blocks), and once when it returns, with its total time. `handler`
        gets a `weft.SlowCallback` on weft's watchdog thread (not the loop thread: the
        loop is busy); None logs each report as a warning to the "weft" logger.
        `threshold` None or 0 turns the watchdog off. weft looks every quarter of the
        threshold, so a callback longer than 1.25 times it is always reported while it
        runs. Any thread, but not from the handler itself."""
        if threshold is None or threshold == 0:
            with self._lock:
                ptr = self._ptr
            if ptr is not None:
                check(lib.weft_loop_set_watchdog(ptr, 0, _ffi.weft_watchdog_cb(), None, _ffi.weft_free_fn()))
            return
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise TypeError(f"set_watchdog: threshold must be a number of seconds, not {type(threshold).__name__}")
        if not threshold > 0:
            raise ValueError(f"set_watchdog: threshold must be > 0, not {threshold}")
        if handler is not None and not callable(handler):
            raise TypeError(f"set_watchdog: handler must be callable or None, not {type(handler).__name__}")
        ms = max(1, round(threshold * 1000))
        with self._lock:
            self._check_open("set_watchdog")  # type: ignore[attr-defined]
            ptr = self._ptr
        # Not under the loop's lock: replacing a watchdog waits for a report in
        # progress, whose handler may call this loop's methods.
        key = register(_Watchdog(self, handler or _log))
        rc = lib.weft_loop_set_watchdog(ptr, ms, REPORT, key, FREE)
        if rc != 0:
            discard(key)
        check(rc)

    def stats(self) -> LoopStats:
        """The loop's counters now, as a `weft.LoopStats`: passes, callbacks run by kind,
        busy and idle time, timer lateness (p50, p99, max), queued posts and events,
        tasks and children in flight, registrations by kind. Counting busy/idle time
        and lateness starts with the first call; `utilization` is None until a later
        one. Any thread; it does not stop the loop."""
        with self._lock:
            self._check_open("stats")  # type: ignore[attr-defined]
            return loop_stats(self._ptr)

    def set_label(self, registration: Any, label: Optional[str]) -> None:
        """Names a registration for the watchdog's reports (`SlowCallback.label`) and
        anything else that reads weft's labels: a Handle or Watch of call_every, watch,
        watch_signal or subscribe (which the binding labels with their callable's
        qualified name already), the Future of a spawn, or a weft id. None removes the
        label. call_soon and call_later handles share weft registrations, so they
        cannot have one (ValueError). Any thread."""
        rid = _registration_id(registration)
        if label is not None and not isinstance(label, str):
            raise TypeError(f"set_label: label must be a str or None, not {type(label).__name__}")
        data = None if label is None else label.encode("utf-8")
        with self._lock:
            self._check_open("set_label")  # type: ignore[attr-defined]
            check(held.weft_set_label(self._ptr, rid, data))


def _registration_id(registration: Any) -> int:
    """The weft id of set_label's registration argument."""
    if isinstance(registration, int) and not isinstance(registration, bool):
        return registration
    if isinstance(registration, Future):
        if not registration._task_id:
            raise ValueError("set_label: this future is not a spawned task's")
        return int(registration._task_id)
    if type(registration) in (Handle, Watch):
        return int(registration.id)
    if isinstance(registration, Handle):
        raise ValueError(f"set_label: a {type(registration).__name__} (call_soon, call_later) shares its weft "
                         "registration with others and cannot have a label of its own")
    raise TypeError(f"set_label: expected a Handle, a Future or an int id, not {type(registration).__name__}")
