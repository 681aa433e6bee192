"""weft.Future: the result of Loop.spawn."""

from __future__ import annotations

import concurrent.futures
import threading
from concurrent.futures._base import (
    CANCELLED,
    CANCELLED_AND_NOTIFIED,
    FINISHED,
    PENDING,
    RUNNING,
)
from typing import TYPE_CHECKING, Any, Callable, Generator, List, Optional, Tuple, TypeVar

from ._callbacks import report
from ._stats import TaskTiming, timing_of

if TYPE_CHECKING:
    from ._loop import Loop

_T = TypeVar("_T")
_DONE = (CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED)

# Guards the lazy creation of a future's condition, and every change of state made
# while a future has none (see Future).
_lazy_lock = threading.Lock()


class Future(concurrent.futures.Future[_T]):
    """The outcome of a task started by `Loop.spawn`: a `concurrent.futures.Future`
    (result(), exception(), done(), add_done_callback(), usable with
    concurrent.futures.wait and as_completed) that is also awaitable from asyncio
    (`await fut`, which is `await asyncio.wrap_future(fut)`).

    * Its done-callbacks run on the loop's thread (the thread in `Loop.run()`, or the
      asyncio / Tornado thread of an attached loop). A callback added once the future
      is done runs at once, on the calling thread.
    * `cancel()` works while the task waits and while it runs (a thread task sees
      `weft.cancelled()` turn true; a process task's child is killed). It returns True
      if the future is cancelled, False once it has finished.
    * Exceptions raised by done-callbacks go to the weft error handler.
    """

    # concurrent.futures.Future makes a threading.Condition (eight objects the garbage
    # collector then tracks) and two lists per future. Most futures are never waited
    # on, so this one makes them on first use: `_condition` and `_waiters` are
    # properties, and `_done_callbacks` is None until a callback is added. While a
    # future has no condition, its state changes under the module's `_lazy_lock`,
    # which also guards making the condition: so either a change happens before the
    # condition exists (and whoever makes it then sees the new state), or it happens
    # under the condition, as in concurrent.futures.

    # The state of a new future, as class attributes: __init__ sets only `_loop` and
    # `_timing_raw` (an instance attribute shadows each of these once it is set).
    _state = PENDING
    _result: Any = None
    _exception: Optional[BaseException] = None
    _done_callbacks: Optional[List[Callable[..., Any]]] = None  # type: ignore[assignment]
    _cond: Optional[threading.Condition] = None
    _waiter_list: Optional[List[Any]] = None
    _task_id = 0  # weft's id of a loop/thread/cpu task: cancel() cancels it
    _cancel_hook: Optional[Callable[[], bool]] = None  # for process tasks

    def __init__(self, loop: "Loop") -> None:  # noqa: D107 - no super().__init__: see above
        self._loop: Optional["Loop"] = loop
        # Set here, though the task's done sets it again: an attribute every future gets
        # in the same order stays in CPython's shared-key layout; first set in done, it
        # made each future a dict of its own (6% more instructions per thread task).
        self._timing_raw: Optional[Tuple[int, int, int, int]] = None

    @property
    def _condition(self) -> threading.Condition:  # type: ignore[override]
        cond = self._cond
        if cond is None:
            with _lazy_lock:
                cond = self._cond
                if cond is None:
                    cond = self._cond = threading.Condition()
        return cond

    @property
    def _waiters(self) -> List[Any]:  # type: ignore[override]
        waiters = self._waiter_list
        if waiters is None:  # made under the condition, by concurrent.futures.wait
            waiters = self._waiter_list = []
        return waiters

    def __repr__(self) -> str:
        return "<weft." + super().__repr__()[1:]

    def __await__(self) -> Generator[Any, None, _T]:
        import asyncio

        return asyncio.wrap_future(self).__await__()

    # ---- reading, without making a condition when the answer is known ----------------

    def done(self) -> bool:
        """True once the task finished or was cancelled."""
        return self._state in _DONE

    def cancelled(self) -> bool:
        """True if the future was cancelled."""
        return self._state in (CANCELLED, CANCELLED_AND_NOTIFIED)

    def running(self) -> bool:
        """True while the task's work runs (it started and has not finished). A process
        task counts only when its child was forked inside its spawn: weft does not tell
        the binding when a task that waited starts (forked later, or run by a reused
        child), so such a future stays pending until it is done."""
        return self._state == RUNNING

    def result(self, timeout: Optional[float] = None) -> _T:
        """The task's result: waits up to timeout seconds (None: no limit) for it.
        Raises the task's exception, CancelledError, or TimeoutError (the wait's, or
        the task's own)."""
        if self._state == FINISHED:
            if self._exception is not None:
                raise self._exception
            return self._result  # type: ignore[return-value]
        return super().result(timeout)

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        """The task's exception (None if it returned): waits up to timeout seconds."""
        if self._state == FINISHED:
            return self._exception
        return super().exception(timeout)

    @property
    def timing(self) -> Optional[TaskTiming]:
        """When the task was queued, started, finished and completed (a
        `weft.TaskTiming`, on `time.monotonic()`'s clock, with `queue_delay` and
        `run_time`); None until its done has run (done-callbacks see it), and for a
        future cancelled before that or whose loop was closed."""
        return timing_of(self._timing_raw)

    # ---- cancelling and callbacks -----------------------------------------------------

    def cancel(self) -> bool:
        """Cancels the task: True if the future is (now) cancelled, False if it has
        finished. Any thread."""
        state = self._state
        if state == FINISHED:
            return False
        if state in (CANCELLED, CANCELLED_AND_NOTIFIED):
            return True
        loop = self._loop
        if self._task_id and loop is not None:
            if not loop._cancel_id(self._task_id):
                return self.cancelled()  # it finished meanwhile (its done is under way)
        elif self._cancel_hook is not None and not self._cancel_hook():
            return self.cancelled()
        return self._settle_cancelled()

    def add_done_callback(self, fn: Callable[["Future[_T]"], object]) -> None:
        """Calls fn(future) on the loop thread once the future is done (at once, on
        this thread, if it is done already)."""
        lock = self._lock_state()
        try:
            if self._state not in _DONE:
                if self._done_callbacks is None:
                    self._done_callbacks = []
                self._done_callbacks.append(fn)
                return
        finally:
            lock.release()
        self._call(fn)

    # ---- settling, from the binding ---------------------------------------------------

    def _lock_state(self) -> Any:
        """Acquires and returns the lock that guards the state now: the condition if
        the future has one, else _lazy_lock (held, so that none is made meanwhile)."""
        if self._cond is None:
            _lazy_lock.acquire()
            if self._cond is None:
                return _lazy_lock
            _lazy_lock.release()
        cond = self._cond
        cond.acquire()
        return cond

    def _mark_running(self) -> None:
        lock = self._lock_state()
        if self._state == PENDING:
            self._state = RUNNING
        lock.release()

    def _settle(self, ok: bool, value: Any) -> None:
        """Finishes the future with a result (ok) or an exception, as set_result and
        set_exception do; ignored if it is done already (cancelled meanwhile)."""
        lock = self._lock_state()
        try:
            if self._state in _DONE:
                return
            if ok:
                self._result = value
            else:
                self._exception = value
            self._state = FINISHED
            if lock is not _lazy_lock:
                for waiter in self._waiters:
                    if ok:
                        waiter.add_result(self)
                    else:
                        waiter.add_exception(self)
                lock.notify_all()
        finally:
            lock.release()
        self._invoke_callbacks()

    def _settle_cancelled(self) -> bool:
        lock = self._lock_state()
        try:
            if self._state == FINISHED:
                return False
            if self._state in (CANCELLED, CANCELLED_AND_NOTIFIED):
                return True
            self._state = CANCELLED_AND_NOTIFIED
            if lock is not _lazy_lock:
                for waiter in self._waiters:
                    waiter.add_cancelled(self)
                lock.notify_all()
        finally:
            lock.release()
        self._invoke_callbacks()
        return True

    def _invoke_callbacks(self) -> None:
        # Called once the future is done (by set_result / set_exception too).
        if not self._done_callbacks:
            return
        loop = self._loop
        if loop is not None and loop._runs_elsewhere():
            try:
                loop._post_internal(self._run_callbacks)
                return
            except Exception:  # noqa: BLE001 - closed meanwhile: run them here
                pass
        self._run_callbacks()

    def _run_callbacks(self) -> None:
        callbacks, self._done_callbacks = self._done_callbacks or [], []
        for fn in callbacks:
            self._call(fn)

    def _call(self, fn: Callable[["Future[_T]"], object]) -> None:
        try:
            fn(self)
        except BaseException as exc:  # noqa: BLE001
            loop = self._loop
            if loop is not None:
                loop._callback_failed(exc, f"done-callback {fn!r} of {self!r}")
            else:
                report(exc, f"done-callback {fn!r} of {self!r}")
