"""weft.Loop and its handles."""

from __future__ import annotations

import atexit
import collections
import ctypes
import math
import os
import signal as _signal
import threading
import time
import warnings
import weakref
from typing import Any, Callable, Deque, Dict, Optional, Set, Tuple, TypeVar, Union

from . import _ffi, _pools, _process
from ._callbacks import (CALL, DONE, EVENT, FD, FREE, SIGNAL, WORK, discard, install_unraisablehook, register,
                         registry, report, state, tls)
from ._errors import Busy, ChildCrashed, Closed, Error, Forked, TaskTimeout, check, error_from, last_error
from ._future import Future
from ._lib import held, lib

_T = TypeVar("_T")

READ = _ffi.WEFT_READABLE
WRITE = _ffi.WEFT_WRITABLE
HANGUP = _ffi.WEFT_HANGUP
ERROR = _ffi.WEFT_ERROR

_WHERE = {"loop": _ffi.WEFT_ON_LOOP, "thread": _ffi.WEFT_ON_IO, "cpu": _ffi.WEFT_ON_CPU,
          "process": _ffi.WEFT_ON_PROCESS}
_POOL_OF = {_ffi.WEFT_ON_IO: _pools.IO, _ffi.WEFT_ON_CPU: _pools.CPU}

_string_at = ctypes.string_at
_ceil = math.ceil
_get_ident = threading.get_ident

# Every open loop, for the atexit handler.
_loops: "weakref.WeakSet[Loop]" = weakref.WeakSet()
# Entries of thread and cpu tasks whose work is running now (set.add and discard are
# atomic under the GIL).
_running_work: Set[Any] = set()
# How long the atexit handler waits for running thread tasks before it leaves the pools
# alone (a task still running then is abandoned: joining its thread would hang exit).
EXIT_GRACE = 0.5

# The parent's ends of every worker's control and data pipes (reuse_children). Every
# forked child closes them (see _forget_in_child): a worker whose control pipe another
# child holds open would never see its end. Forks of process tasks are serialised by
# _fork_lock, so no child inherits a pipe made for another child being forked.
_worker_fds: Set[int] = set()
_fork_lock = threading.Lock()

# Python 3.12+ warns on every fork of a multi-threaded process. Process tasks fork on
# purpose (and the child only runs the task, then os._exit): the warning is about them.
warnings.filterwarnings("ignore", message=r".*is multi-threaded, use of fork\(\) may lead to deadlocks",
                        category=DeprecationWarning, module=__name__)


# The hot paths' C functions (GIL held: see _lib.held).
_post = held.weft_post
_timer_after = held.weft_timer_after

# ---- argument checks --------------------------------------------------------------------

def _check_callable(what: str, fn: Any) -> None:
    if not callable(fn):
        raise TypeError(f"{what}: fn must be callable, not {type(fn).__name__}")


def _milliseconds(what: str, seconds: Any, name: str = "seconds", positive: bool = False) -> int:
    """Seconds to whole milliseconds, rounded up (a timer never fires early)."""
    if type(seconds) is float and 0.0 < seconds < 1e9:  # the common case, quickly
        return _ceil(seconds * 1000)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"{what}: {name} must be a number of seconds (int or float), not {type(seconds).__name__}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{what}: {name} must be a finite number >= 0, not {seconds!r}")
    if positive and seconds == 0:
        raise ValueError(f"{what}: {name} must be > 0")
    ms = math.ceil(seconds * 1000)
    if ms >= 1 << 63:
        raise ValueError(f"{what}: {name} {seconds!r} is too large")
    return ms


def _int_arg(what: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what}: {name} must be an int, not {type(value).__name__}")
    return int(value)


def _fileno(what: str, obj: Any) -> int:
    if isinstance(obj, int) and not isinstance(obj, bool):
        return int(obj)
    fileno = getattr(obj, "fileno", None)
    if fileno is None or isinstance(obj, bool):
        raise TypeError(f"{what}: expected a file descriptor (int) or an object with fileno(), "
                        f"not {type(obj).__name__}")
    return _int_arg(what, "fileno()", fileno())


def _topic(what: str, topic: Any, name: str = "topic") -> bytes:
    if isinstance(topic, str):
        try:
            data = topic.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"{what}: {name} {topic!r} is not valid UTF-8: {exc}") from None
    elif isinstance(topic, bytes):
        data = topic
    else:
        raise TypeError(f"{what}: {name} must be str, not {type(topic).__name__}")
    if b"\0" in data:
        raise ValueError(f"{what}: {name} {topic!r} contains a NUL character")
    return data


def _payload(what: str, payload: Any) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode("utf-8")
    if isinstance(payload, (bytearray, memoryview)):
        return bytes(payload)
    raise TypeError(f"{what}: payload must be bytes or str, not {type(payload).__name__}")


# ---- handles ----------------------------------------------------------------------------

class Handle:
    """A registration on a loop: a call_soon / call_later / call_every callback, a
    subscription, or a watch. `cancel()` ends it."""

    __slots__ = ("_loop", "_id", "_active", "__weakref__")

    def __init__(self, loop: "Loop") -> None:
        self._loop = loop
        self._id = 0
        self._active = True

    def cancel(self) -> bool:
        """Ends the registration: True if this call ended it (its callback will not
        start again), False if it had ended already (ran, cancelled, or its loop
        closed). Any thread."""
        if not self._active or not self._id:
            return False
        return self._loop._cancel_id(self._id)

    @property
    def active(self) -> bool:
        """True until the registration has ended (weft ran its free_fn)."""
        return self._active

    @property
    def id(self) -> int:
        """weft's id of the registration (0 while it is being made)."""
        return self._id

    def __repr__(self) -> str:
        state_ = "active" if self._active else "ended"
        return f"<weft.{type(self).__name__} id={self._id:#x} {state_}>"


class Watch(Handle):
    """An fd watch (Loop.watch)."""

    __slots__ = ()

    def modify(self, events: int) -> None:
        """Changes the events watched (READ | WRITE, or 0 to pause: HANGUP and ERROR are
        still reported). Any thread."""
        events = _int_arg("Watch.modify", "events", events)
        loop = self._loop
        with loop._lock:
            if loop._ptr is None:
                raise Closed("Watch.modify: the loop is closed")
            rc = held.weft_watch_fd_modify(loop._ptr, self._id, events)
        check(rc)


# ---- registry entries (see _callbacks) --------------------------------------------------

class _Callback:
    """A post, timer, watch or subscription: fn and its arguments."""

    __slots__ = ("loop", "fn", "args", "handle", "kind")

    def __init__(self, loop: "Loop", fn: Callable[..., Any], args: Tuple[Any, ...], handle: Handle, kind: str):
        self.loop = loop
        self.fn = fn
        self.args = args
        self.handle = handle
        self.kind = kind

    def fire(self) -> None:
        try:
            self.fn(*self.args)
        except BaseException as exc:  # noqa: BLE001
            self.loop._callback_failed(exc, f"{self.kind} callback {self.fn!r}")

    def fire_fd(self, fd: int, events: int) -> None:
        try:
            self.fn(fd, events)
        except BaseException as exc:  # noqa: BLE001
            self.loop._callback_failed(exc, f"watch callback {self.fn!r}")

    def fire_signal(self, signum: int) -> None:
        try:
            self.fn(signum)
        except BaseException as exc:  # noqa: BLE001
            self.loop._callback_failed(exc, f"signal callback {self.fn!r}")

    def fire_event(self, topic: bytes, payload: Optional[int], length: int) -> None:
        data = _string_at(payload, length) if length and payload else b""
        try:
            self.fn(topic.decode("utf-8", "surrogateescape"), data)
        except BaseException as exc:  # noqa: BLE001
            self.loop._callback_failed(exc, f"subscriber {self.fn!r}")

    def freed(self) -> None:
        self.handle._active = False
        self.fn = self.args = None  # type: ignore[assignment]


class _Task:
    """A task on the loop, the IO pool or the CPU pool. The outcome stays a Python
    object: nothing is serialised."""

    __slots__ = ("loop", "fn", "args", "kwargs", "future", "where", "timeout", "ok", "value")

    def __init__(self, loop: "Loop", fn: Callable[..., Any], args: Tuple[Any, ...], kwargs: Dict[str, Any],
                 future: "Future[Any]", where: int, timeout: Optional[float]):
        self.loop = loop
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.future = future
        self.where = where
        self.timeout = timeout
        self.ok = False
        self.value: Any = None

    def work(self, task: Any) -> int:
        self.future._mark_running()
        previous = getattr(tls, "task", None)
        tls.task = (task, self.loop)
        _running_work.add(self)
        try:
            kwargs = self.kwargs
            self.value = self.fn(*self.args, **kwargs) if kwargs else self.fn(*self.args)
            self.ok = True
        except BaseException as exc:  # noqa: BLE001 - it goes to the future
            self.value = exc
            if self.where == _ffi.WEFT_ON_LOOP and isinstance(exc, (KeyboardInterrupt, SystemExit)):
                self.loop._callback_failed(exc, f"task {self.fn!r}")
        finally:
            tls.task = previous
            _running_work.discard(self)
        return 0

    def done(self, status: int, result: Any, length: int) -> None:
        if status >= 0:
            self.future._settle(self.ok, self.value)
            self.value = None
        else:
            self.loop._settle_status(self.future, status, self.timeout, "")

    def freed(self) -> None:
        self.fn = self.args = self.kwargs = self.value = None  # type: ignore[assignment]
        if not self.future.done():  # the loop was closed before done
            self.future._settle_cancelled()


class _ProcessTask:
    """A task run in a forked child. Waits in the loop's queue until a slot frees."""

    __slots__ = ("loop", "fn", "args", "kwargs", "future", "timeout", "deadline", "rid", "pid",
                 "cancel_requested", "queue_timer")

    def __init__(self, loop: "Loop", fn: Callable[..., Any], args: Tuple[Any, ...], kwargs: Dict[str, Any],
                 future: "Future[Any]", timeout: Optional[float]):
        self.loop = loop
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.future = future
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.rid = 0
        self.pid = 0
        self.cancel_requested = False
        self.queue_timer: Optional[Handle] = None

    def done(self, status: int, result: Any, length: int) -> None:
        # Read what weft hands over before anything else calls weft on this thread.
        message = last_error() if status == _ffi.WEFT_ERR_CRASHED else ""
        data = _string_at(result, length) if status >= 0 and length else b""
        self.loop._child_ended()
        future = self.future
        if status >= 0:
            if data:
                ok, value = _process.decode(data)
                future._settle(ok, value)
            else:
                future._settle(False, ChildCrashed(f"process task {self.fn!r} (pid {self.pid}) "
                                                   "ended without a result"))
        else:
            self.loop._settle_status(future, status, self.timeout, message)

    def freed(self) -> None:
        self.fn = self.args = self.kwargs = None  # type: ignore[assignment]
        if not self.future.done():  # the loop was closed: the child was killed
            self.future._settle_cancelled()

    def cancel(self) -> bool:
        """The future's cancel hook."""
        loop = self.loop
        with loop._lock:
            try:
                loop._queue.remove(self)
                queued = True
            except ValueError:
                queued = False
        if queued:
            if self.queue_timer is not None:
                self.queue_timer.cancel()
            return True
        if self.rid:
            return loop._cancel_id(self.rid)
        if self.future.done():
            return False
        self.cancel_requested = True  # being forked right now: _fork cancels it
        return True

    def queued_timeout(self) -> None:
        """The timer of a task that waits in the queue: its timeout expired there."""
        loop = self.loop
        with loop._lock:
            try:
                loop._queue.remove(self)
            except ValueError:
                return
        self.timed_out_waiting()

    def timed_out_waiting(self) -> None:
        self.future._settle(False, TaskTimeout(f"process task {self.fn!r} did not finish within "
                                               f"its timeout of {self.timeout} s (it never started)"))


class _WorkerTask(_ProcessTask):
    """A process task of a loop with reuse_children: run by a worker child (_Worker),
    which may run it after other tasks. `seq` orders it: a worker runs only tasks
    spawned before it was forked (seq below its fork_seq). Its deadline is a loop timer,
    from spawn to settle, whether it waits or runs."""

    __slots__ = ("seq", "worker", "timer", "finished")

    def __init__(self, loop: "Loop", fn: Callable[..., Any], args: Tuple[Any, ...], kwargs: Dict[str, Any],
                 future: "Future[Any]", timeout: Optional[float]):
        super().__init__(loop, fn, args, kwargs, future, timeout)
        self.seq = 0
        self.worker: Optional[_Worker] = None
        self.timer: Optional[Handle] = None
        self.finished = False

    def _end(self) -> None:
        """The task is over: its timer goes, and so do its fn and arguments."""
        with self.loop._lock:
            self.finished = True
            timer, self.timer = self.timer, None
        if timer is not None:
            timer.cancel()
        self.fn = self.args = self.kwargs = None  # type: ignore[assignment]

    def settle(self, ok: bool, value: Any) -> None:
        self._end()
        self.future._settle(ok, value)

    def settle_cancelled(self) -> None:
        self._end()
        self.future._settle_cancelled()

    def start_timer(self) -> None:
        """The deadline's timer (after spawn placed the task: the timer may fire at once)."""
        loop = self.loop
        try:
            timer = loop.call_later(max(0.0, self.deadline - time.monotonic()),  # type: ignore[operator]
                                    self.deadline_passed)
        except Error:  # closed meanwhile: the task ends cancelled
            return
        with loop._lock:
            finished = self.finished
            if not finished:
                self.timer = timer
        if finished:
            timer.cancel()

    def cancel(self) -> bool:
        """The future's cancel hook: True if the future is to be cancelled."""
        loop = self.loop
        with loop._lock:
            queued = loop._queued.get(self.seq) is self
            if queued:
                del loop._queued[self.seq]
                loop._queue.remove(self)
            worker = self.worker
            if not queued and worker is None:
                if self.future.done():
                    return False
                self.cancel_requested = True  # being forked, or its result is on its way
        if queued:
            self._end()
        elif worker is not None:
            worker.kill(self, "cancel")
        return True

    def deadline_passed(self) -> None:
        """The timer: a waiting task times out, a running one's worker is killed."""
        loop = self.loop
        with loop._lock:
            self.timer = None
            queued = loop._queued.get(self.seq) is self
            if queued:
                del loop._queued[self.seq]
                loop._queue.remove(self)
            worker = self.worker
        if queued:
            self.timed_out_waiting()
        elif worker is not None:
            worker.kill(self, "timeout")

    def timed_out_waiting(self) -> None:
        self.settle(False, TaskTimeout(f"process task {self.fn!r} did not finish within "
                                       f"its timeout of {self.timeout} s (it never started)"))


_CANCELLED = object()
# A worker's data pipe: bytes read per read() call, and per pass of the loop (a large
# result is read over several passes, so timers and other callbacks keep running).
_CHUNK = 1 << 16
_READ_BUDGET = 2 << 20


class _Settle:
    """A post that settles a worker's task, so that its events (emitted before it, from
    the same thread) reach the subscribers before its future's done-callbacks run.
    `data` is a pickled outcome (bytes-like), or None for (ok, value)."""

    __slots__ = ("task", "data", "ok", "value")

    def __init__(self, task: _WorkerTask, data: Any, ok: bool = False, value: Any = None):
        self.task: Optional[_WorkerTask] = task
        self.data = data
        self.ok = ok
        self.value = value

    def fire(self) -> None:
        task, self.task = self.task, None
        if task is None:
            return
        if task.future.done():
            task._end()
            return
        ok, value = _process.decode(self.data) if self.data is not None else (self.ok, self.value)
        self.data = self.value = None
        if value is _CANCELLED:
            task.settle_cancelled()
        else:
            task.settle(ok, value)

    def freed(self) -> None:
        task, self.task = self.task, None
        if task is not None:  # the loop was closed before the post ran
            task.settle_cancelled()


class _Worker:
    """A child that runs process tasks one after another (reuse_children). weft
    supervises it, adopted once for its life (no weft timeout: each task's deadline is
    its own timer); the binding feeds it task numbers through its control pipe and reads
    its events and outcomes from its data pipe (see _process)."""

    __slots__ = ("loop", "pid", "rid", "fork_seq", "control_fd", "data_fd", "watch", "buffer", "body", "filled",
                 "body_kind", "task", "kill_reason", "ended", "eof")

    def __init__(self, loop: "Loop") -> None:
        self.loop = loop
        self.pid = 0
        self.rid = 0
        self.fork_seq = 0
        self.control_fd = -1
        self.data_fd = -1
        self.watch: Optional[Watch] = None
        self.buffer = bytearray()  # data-pipe bytes not yet handled
        self.body: Optional[bytearray] = None  # a large frame's body being read, its
        self.filled = 0  # bytes so far and its kind
        self.body_kind = 0
        self.task: Optional[_WorkerTask] = None  # the task it runs now
        self.kill_reason: Optional[str] = None  # "timeout", "cancel", or a protocol error
        self.ended = False  # weft reported its end (or the loop was freed)
        self.eof = False

    def kill(self, task: _WorkerTask, reason: str) -> None:
        """Kills the worker if it runs task (weft: SIGTERM, then SIGKILL 250 ms later)."""
        loop = self.loop
        with loop._lock:
            if self.task is not task or self.kill_reason is not None or self.ended:
                return
            self.kill_reason = reason
            rid = self.rid
        if rid:  # otherwise it is being forked: _fork_worker cancels it once adopted
            loop._cancel_id(rid)

    # ---- the data pipe (loop thread) ---------------------------------------------------

    def on_readable(self, fd: int, events: int) -> None:
        self.read(_READ_BUDGET)

    def read(self, budget: float) -> None:
        """Reads what the pipe holds (up to about budget bytes: the watch calls again for
        the rest) and handles each whole frame. A large frame's body is read straight
        into a buffer of its size."""
        fd = self.data_fd
        total = 0
        while total < budget and not self.eof:
            body = self.body
            try:
                if body is not None:
                    n = os.readv(fd, [memoryview(body)[self.filled:]])
                else:
                    chunk = os.read(fd, _CHUNK)
                    n = len(chunk)
            except BlockingIOError:
                break
            except OSError:
                n = 0
            if not n:
                self.eof = True
                self._unwatch()  # a hung-up pipe would report HANGUP in every pass
                break
            total += n
            if body is not None:
                self.filled += n
                if self.filled == len(body):
                    self.body = None
                    self.frame(self.body_kind, body)
            else:
                self.buffer += chunk
                self.parse()

    def parse(self) -> None:
        """Handles the buffer's whole frames; moves a large incomplete one to self.body."""
        buffer = self.buffer
        size = len(buffer)
        pos = 0
        with memoryview(buffer) as view:
            while size - pos >= 5 and not self.eof:
                length, kind = _process.HEADER.unpack_from(buffer, pos)
                if kind != _process.KIND_RESULT and kind != _process.KIND_EVENT:
                    self.protocol_error(f"a frame of kind {kind}")
                    break
                end = pos + 5 + length
                if end > size:
                    if length >= _CHUNK:
                        body = self.body = bytearray(length)
                        body[:size - pos - 5] = view[pos + 5:]
                        self.filled = size - pos - 5
                        self.body_kind = kind
                        pos = size
                    break
                self.frame(kind, bytes(view[pos + 5:end]))
                pos = end
        if self.eof:
            buffer.clear()
        elif pos:
            del buffer[:pos]

    def frame(self, kind: int, body: Any) -> None:
        """One frame of the data pipe: an event, or a task's outcome."""
        length = len(body)
        if kind == _process.KIND_RESULT and length >= 8:
            self.result(_process.U64.unpack_from(body, 0)[0], memoryview(body)[8:])
        elif kind == _process.KIND_EVENT and length >= 4:
            topic_end = 4 + _process.U32.unpack_from(body, 0)[0]
            if topic_end > length:
                self.protocol_error("an event's topic runs past its frame")
            else:
                self.loop._emit_from_child(bytes(body[4:topic_end]), bytes(body[topic_end:]))
        else:
            self.protocol_error(f"a frame of kind {kind} and {length} bytes")

    def protocol_error(self, what: str) -> None:
        """The child wrote something else than frames: nothing more is read from it, and
        it is killed (its task fails with ChildCrashed)."""
        self.eof = True
        self.body = None
        self._unwatch()
        loop = self.loop
        with loop._lock:
            if self.ended or self.kill_reason is not None:
                return
            self.kill_reason = f"the worker child (pid {self.pid}) broke the pipe protocol: {what}"
            rid = self.rid
        if rid:  # otherwise it is being adopted: _fork_worker cancels it
            loop._cancel_id(rid)

    def result(self, seq: int, data: Any) -> None:
        loop = self.loop
        with loop._lock:
            task = self.task
            if task is None or task.seq != seq:
                task = None
            else:
                self.task = None
                task.worker = None
        if task is None:
            self.protocol_error(f"a result for task {seq}, which it does not run")
            return
        loop._post_settle(_Settle(task, data))
        self.next_task()

    def next_task(self) -> None:
        """After a result: sends the worker the queue's head if it may run it (spawned
        before the fork), else closes the control pipe so that it exits."""
        loop = self.loop
        while True:
            expired = False
            with loop._lock:
                queue = loop._queue
                if (self.ended or self.kill_reason is not None or loop._closed or not queue
                        or queue[0].seq >= self.fork_seq):  # type: ignore[attr-defined]
                    entry = None
                else:
                    entry = queue.popleft()
                    del loop._queued[entry.seq]  # type: ignore[attr-defined]
                    if entry.deadline is not None and entry.deadline <= time.monotonic():
                        expired = True
                    else:
                        self.task = entry  # type: ignore[assignment]
                        entry.worker = self  # type: ignore[attr-defined]
                        entry.pid = self.pid
            if entry is None:
                self.close_control()
                return
            if expired:
                entry.timed_out_waiting()
                continue
            try:
                os.write(self.control_fd, _process.U64.pack(entry.seq))  # type: ignore[attr-defined]
            except OSError:  # the worker is gone: the task goes back to the queue's head
                with loop._lock:
                    self.task = None
                    entry.worker = None  # type: ignore[attr-defined]
                    if not loop._closed and not entry.future.done():
                        queue.appendleft(entry)
                        loop._queued[entry.seq] = entry  # type: ignore[attr-defined,index]
                self.close_control()
                return
            entry.future._mark_running()
            return

    # ---- fds --------------------------------------------------------------------------

    def _unwatch(self) -> None:
        watch, self.watch = self.watch, None
        if watch is not None:
            watch.cancel()

    def close_control(self) -> None:
        fd, self.control_fd = self.control_fd, -1
        if fd >= 0:
            _worker_fds.discard(fd)  # before the close: a later fork must not close its number
            os.close(fd)

    def close_fds(self) -> None:
        self._unwatch()  # before the close (epoll)
        self.close_control()
        fd, self.data_fd = self.data_fd, -1
        if fd >= 0:
            _worker_fds.discard(fd)
            os.close(fd)

    # ---- weft's completion of the adopted child --------------------------------------

    def done(self, status: int, result: Any, length: int) -> None:
        message = last_error() if status == _ffi.WEFT_ERR_CRASHED else ""
        loop = self.loop
        with loop._lock:
            self.ended = True
        try:
            if not self.eof and self.data_fd >= 0:
                self.read(math.inf)  # the child is reaped: all it wrote is in the pipe
        finally:
            self.close_fds()
            with loop._lock:
                task, self.task = self.task, None
                if task is not None:
                    task.worker = None
                reason = self.kill_reason
            if task is not None:
                self.settle_lost(task, status, reason, message)
            loop._child_ended()

    def settle_lost(self, task: _WorkerTask, status: int, reason: Optional[str], message: str) -> None:
        """The worker ended while it ran task: why."""
        ok, value = False, None
        if reason == "cancel":
            value = _CANCELLED
        elif reason == "timeout":
            value = TaskTimeout(f"the task did not finish within its timeout of {task.timeout} s")
        elif reason is not None:
            value = ChildCrashed(reason)
        elif status == _ffi.WEFT_ERR_CRASHED:
            value = ChildCrashed(message or "the process task's child died", status)
        elif status >= 0:
            value = ChildCrashed(f"process task {task.fn!r} (pid {self.pid}) ended without a result")
        elif status == _ffi.WEFT_ERR_CANCELLED:
            value = _CANCELLED
        else:
            value = error_from(status, message)
        self.loop._post_settle(_Settle(task, None, ok, value))

    def freed(self) -> None:
        if self.ended:
            return
        self.ended = True  # the loop was freed (it killed and reaped the child)
        self.close_fds()
        task, self.task = self.task, None
        if task is not None:
            task.worker = None
            task.settle_cancelled()


# ---- the loop ---------------------------------------------------------------------------

class Loop:
    """A weft event loop. Its callbacks (timers, posts, watches, subscribers, task
    completions and the done-callbacks of its futures) all run on one thread: the one
    in `run()`, or the asyncio / Tornado thread when attached with
    `weft.asyncio.attach()` / `weft.tornado.attach()`.

    Every method may be called from any thread, except `run()`, which runs the loop on
    the calling thread. A closed loop raises `weft.Closed` (a RuntimeError). Use it as a
    context manager to close it::

        with weft.Loop() as loop:
            loop.call_later(0.1, print, "tick")
            loop.run()

    max_children bounds the process tasks running at once (default: os.cpu_count());
    more wait in FIFO order.

    reuse_children (default True): a process task's child may go on to run later
    process tasks of the loop, one at a time, as a ProcessPoolExecutor's workers do,
    which saves a fork per task. A child only ever runs tasks spawned before it was
    forked (it has them in its copy-on-write memory: nothing is pickled but results),
    so every task still sees everything the parent did before its spawn returned. But a
    task's side effects in its child (module globals it changes, caches it fills) are
    seen by later tasks run in the same child. reuse_children=False forks one child per
    task: full isolation, at the cost of a fork each (about 1 ms).
    """

    def __init__(self, *, max_children: Optional[int] = None, reuse_children: bool = True) -> None:
        if state.forked:
            raise Forked("weft.Loop: cannot make a loop in a forked child (a process task)")
        if state.exiting:
            raise Closed("weft.Loop: the interpreter is exiting (weft's atexit handler has run)")
        if max_children is None:
            max_children = os.cpu_count() or 1
        max_children = _int_arg("Loop", "max_children", max_children)
        if max_children < 1:
            raise ValueError(f"Loop: max_children must be >= 1, not {max_children}")
        if not isinstance(reuse_children, bool):
            raise TypeError(f"Loop: reuse_children must be a bool, not {type(reuse_children).__name__}")
        ptr = lib.weft_loop_new()
        if not ptr:
            raise error_from()
        self._ptr: Any = ptr
        self._lock = threading.RLock()
        self._run_lock = threading.Lock()
        self._closed = False
        self._free_pending = False
        self._running = False
        self._thread: Optional[int] = None
        self._driver: Any = None
        self._pending_exit: Optional[BaseException] = None
        self._max_children = max_children
        self._children = 0
        self._queue: Deque[_ProcessTask] = collections.deque()
        self._reuse = reuse_children
        # reuse_children: the queued tasks by number (a worker child looks the numbers
        # the parent sends it up in its copy), and the next number.
        self._queued: Dict[int, _WorkerTask] = {}
        self._next_seq = 1
        self._start_child = self._fork_worker if reuse_children else self._fork
        _loops.add(self)

    def __repr__(self) -> str:
        what = "closed" if self._closed else ("running" if self._running else "idle")
        return f"<weft.Loop {what} at {id(self):#x}>"

    def __enter__(self) -> "Loop":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if getattr(self, "_ptr", None) is not None and not state.forked:
                self.close()
        except Exception:  # noqa: BLE001
            pass

    # ---- running --------------------------------------------------------------------

    def run(self) -> None:
        """Runs the loop on this thread until `stop()` is called or nothing is left to
        run (no timer, watch, subscription, queued call or task in flight). Raises
        weft.Busy if the loop is already running, RuntimeError if it is attached to
        asyncio or Tornado, and re-raises a KeyboardInterrupt or SystemExit raised by a
        callback (which stops the loop)."""
        if self._driver is not None:
            raise RuntimeError("Loop.run: this loop is driven by its host loop (attached); run that instead")
        if not self._run_lock.acquire(blocking=False):
            raise Busy("Loop.run: the loop is already running")
        try:
            with self._lock:
                self._check_open("run")
                self._running = True
                self._thread = _get_ident()
            install_unraisablehook()
            outer, tls.loop = getattr(tls, "loop", None), self
            try:
                rc = lib.weft_loop_run(self._ptr, _ffi.WEFT_RUN_DEFAULT)
            finally:
                tls.loop = outer
                with self._lock:
                    self._running = False
                    if self._free_pending:
                        self._free()
            check(rc)
        finally:
            self._run_lock.release()
        self._raise_pending_exit()

    def stop(self) -> None:
        """Makes `run()` return once the callbacks of its current pass have run. Called
        while the loop is not running, the next `run()` returns after one pass. Any
        thread; does nothing on a closed loop."""
        with self._lock:
            if self._ptr is not None:
                check(held.weft_loop_stop(self._ptr))

    def close(self) -> None:
        """Closes the loop: every registration ends (its free_fn runs), futures of
        unfinished tasks are cancelled, process children are killed and reaped. Called
        from a callback, or while another thread runs the loop, it stops the loop and
        the loop is freed when `run()` returns. Closing twice does nothing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            queued = list(self._queue)
            self._queue.clear()
            self._queued.clear()
            driver = self._driver
            if self._running:
                self._free_pending = True
                held.weft_loop_stop(self._ptr)
            elif driver is not None and not driver.in_host_thread():
                self._free_pending = True
                driver.call_soon_threadsafe(self._finish_close)
            else:
                self._free()
        for entry in queued:
            if isinstance(entry, _WorkerTask):
                entry.settle_cancelled()
            else:
                entry.future._settle_cancelled()

    @property
    def reuse_children(self) -> bool:
        """Whether a process task's child may run later process tasks (see Loop)."""
        return self._reuse

    @property
    def closed(self) -> bool:
        """True once close() was called."""
        return self._closed

    @property
    def running(self) -> bool:
        """True while a thread is inside run() (or, attached, inside a pass)."""
        return self._running

    # ---- callbacks ------------------------------------------------------------------

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> Handle:
        """Calls fn(*args) on the loop thread in its next pass, after everything this
        thread queued before. Any thread."""
        if not callable(fn):
            _check_callable("call_soon", fn)
        handle = Handle(self)
        key = register(_Callback(self, fn, args, handle, "call_soon"))
        with self._lock:
            if self._closed or state.forked:
                discard(key)
                raise self._unusable("call_soon")
            rid = _post(self._ptr, CALL, key, FREE)
        if not rid:
            err = error_from()
            discard(key)
            raise err
        handle._id = rid
        return handle

    def call_later(self, seconds: float, fn: Callable[..., Any], *args: Any) -> Handle:
        """Calls fn(*args) on the loop thread once, `seconds` from now (never early;
        1 ms granularity). Any thread."""
        ms = _milliseconds("call_later", seconds)
        if not callable(fn):
            _check_callable("call_later", fn)
        handle = Handle(self)
        key = register(_Callback(self, fn, args, handle, "call_later"))
        with self._lock:
            if self._closed or state.forked:
                discard(key)
                raise self._unusable("call_later")
            rid = _timer_after(self._ptr, ms, CALL, key, FREE)
        if not rid:
            err = error_from()
            discard(key)
            raise err
        handle._id = rid
        return handle

    def call_every(self, seconds: float, fn: Callable[..., Any], *args: Any) -> Handle:
        """Calls fn(*args) on the loop thread every `seconds` (> 0), at a fixed rate:
        when the loop falls behind, missed calls are skipped, not bunched. Runs until
        cancelled (the handle's cancel(), from anywhere, fn's own call included)."""
        ms = _milliseconds("call_every", seconds, positive=True)
        _check_callable("call_every", fn)
        handle = Handle(self)
        return self._add("call_every", _Callback(self, fn, args, handle, "call_every"),
                         held.weft_timer_every, max(ms, 1), CALL)

    def watch(self, fd: Any, events: int, fn: Callable[[int, int], Any]) -> Watch:
        """Calls fn(fd, ready) on the loop thread in every pass while fd (an int or an
        object with fileno()) is ready for `events` (READ | WRITE, level-triggered);
        `ready` holds the READ / WRITE bits that are ready plus HANGUP and ERROR. Cancel
        the watch before closing the fd."""
        fd_number = _fileno("watch", fd)
        events = _int_arg("watch", "events", events)
        _check_callable("watch", fn)
        handle = Watch(self)
        self._add("watch", _Callback(self, fn, (fd,), handle, "watch"), held.weft_watch_fd, fd_number, events, FD)
        return handle

    def watch_signal(self, signum: int, fn: Callable[[int], Any]) -> Handle:
        """Calls fn(signum) on the loop thread (never in a signal handler) after the
        signal is delivered to the process. While watched, weft's handler replaces
        Python's for that signal; the previous one comes back when the last watch
        ends."""
        signum = _int_arg("watch_signal", "signum", signum)
        _check_callable("watch_signal", fn)
        handle = Handle(self)
        return self._add("watch_signal", _Callback(self, fn, (), handle, "watch_signal"),
                         held.weft_watch_signal, signum, SIGNAL)

    def subscribe(self, pattern: str, fn: Callable[[str, bytes], Any]) -> Handle:
        """Calls fn(topic, payload) on the loop thread for every event emitted on this
        loop whose topic matches pattern: an exact topic ("log.ready"), a prefix ending
        in ".*" ("job.*"), or "*"."""
        pattern_bytes = _topic("subscribe", pattern, "pattern")
        _check_callable("subscribe", fn)
        handle = Handle(self)
        return self._add("subscribe", _Callback(self, fn, (), handle, "subscribe"),
                         held.weft_subscribe, pattern_bytes, EVENT)

    def emit(self, topic: str, payload: Union[bytes, str] = b"") -> None:
        """Queues an event for this loop's subscribers (payload: bytes, or str sent as
        UTF-8). Any thread. Inside a thread task, the task's events reach subscribers
        before its future completes; inside a process task (in the child), they travel
        to the parent loop's subscribers, in order, before the result."""
        topic_bytes = _topic("emit", topic)
        data = _payload("emit", payload)
        if state.task is not None:  # in a process task's child
            check(_process.task_write_emit(topic_bytes, data))
            return
        current = getattr(tls, "task", None)
        if current is not None and current[1] is self:
            check(held.weft_task_emit(current[0], topic_bytes, data, len(data)))
            return
        with self._lock:
            self._check_open("emit")
            rc = held.weft_emit(self._ptr, topic_bytes, data, len(data))
        check(rc)

    # ---- tasks ----------------------------------------------------------------------

    def spawn(self, fn: Callable[..., _T], *args: Any, on: str = "loop", timeout: Optional[float] = None,
              **kwargs: Any) -> "Future[_T]":
        """Runs fn(*args, **kwargs) and returns a Future of its result.

        on="loop": on the loop thread, in its next pass. on="thread": on the IO pool
        (blocking calls). on="cpu": on the CPU pool (one thread per core; for code that
        releases the GIL). on="process": in a forked child: fn may be a lambda or a
        closure over anything (sockets, locks, handlers); only its return value is
        pickled back. At most max_children run at once, the rest wait in FIFO order.
        With the loop's reuse_children (the default), a child may run several process
        tasks one after another, only ever ones spawned before it was forked: each task
        sees everything done before its spawn returned, and the side effects of the
        tasks run before it in the same child.

        timeout (seconds): the future gets TimeoutError then (a thread task keeps
        running and sees weft.cancelled(); a process child is killed). An exception in
        fn comes back as the same type with its message (for a process task with the
        child's traceback as __cause__ and `child_traceback`); a child that dies gives
        weft.ChildCrashed.
        """
        _check_callable("spawn", fn)
        where = _WHERE.get(on) if isinstance(on, str) else None
        if where is None:
            raise ValueError(f"spawn: on must be 'loop', 'thread', 'cpu' or 'process', not {on!r}")
        timeout_ms = 0 if timeout is None else _milliseconds("spawn", timeout, "timeout", positive=True)
        future: Future[_T] = Future(self)
        if where == _ffi.WEFT_ON_PROCESS:
            if self._reuse:
                self._spawn_worker_task(_WorkerTask(self, fn, args, kwargs, future, timeout))
            else:
                self._spawn_process(_ProcessTask(self, fn, args, kwargs, future, timeout))
            return future
        options = _spawn_options(where, timeout_ms)
        key = register(_Task(self, fn, args, kwargs, future, where, timeout))
        with self._lock:
            if self._closed or state.forked:
                discard(key)
                raise self._unusable("spawn")
            rid = held.weft_spawn(self._ptr, where, WORK, DONE, key, FREE, options)
        if not rid:
            err = error_from()
            discard(key)
            raise err
        future._task_id = rid
        return future

    # ---- internals ------------------------------------------------------------------

    def _unusable(self, what: str) -> Error:
        if state.forked:
            return Forked(f"{what}: in a forked child (a process task) only loop.emit and weft.cancelled() work")
        return Closed(f"{what}: the loop is closed")

    def _check_open(self, what: str) -> None:
        if self._closed or state.forked:
            raise self._unusable(what)

    def _add(self, what: str, entry: _Callback, register_fn: Any, *c_args: Any) -> Handle:
        """Registers entry with register_fn(loop, *c_args, user_data, free_fn)."""
        key = register(entry)
        with self._lock:
            if self._closed or state.forked:
                discard(key)
                raise self._unusable(what)
            rid = register_fn(self._ptr, *c_args, key, FREE)
        if not rid:
            err = error_from()
            discard(key)
            raise err
        entry.handle._id = rid
        return entry.handle

    def _post_internal(self, fn: Callable[[], Any]) -> None:
        handle = Handle(self)
        self._add("call_soon", _Callback(self, fn, (), handle, "internal"), held.weft_post, CALL)

    def _cancel_id(self, rid: int) -> bool:
        with self._lock:
            if self._ptr is None:
                return False
            rc = held.weft_cancel(self._ptr, rid)
        if rc == _ffi.WEFT_OK:
            return True
        if rc == _ffi.WEFT_ERR_NOT_FOUND:
            return False
        raise error_from(rc)

    def _runs_elsewhere(self) -> bool:
        """True when another thread runs (or drives) the loop: callbacks must be posted."""
        if self._ptr is None or self._closed:
            return False
        if self._driver is not None or self._running:
            return self._thread != _get_ident()
        return False

    def _callback_failed(self, exc: BaseException, context: str) -> None:
        if isinstance(exc, (KeyboardInterrupt, SystemExit)) and self._running and self._thread == _get_ident():
            if self._pending_exit is None:
                self._pending_exit = exc
            with self._lock:
                if self._ptr is not None:
                    held.weft_loop_stop(self._ptr)
            return
        report(exc, context)

    def _raise_pending_exit(self) -> None:
        exc, self._pending_exit = self._pending_exit, None
        if exc is not None:
            raise exc

    def _settle_status(self, future: "Future[Any]", status: int, timeout: Optional[float], message: str) -> None:
        if status == _ffi.WEFT_ERR_CANCELLED:
            future._settle_cancelled()
        elif status == _ffi.WEFT_ERR_TIMEOUT:
            future._settle(False, TaskTimeout(f"the task did not finish within its timeout of {timeout} s"))
        elif status == _ffi.WEFT_ERR_CRASHED:
            future._settle(False, ChildCrashed(message or "the process task's child died", status))
        else:
            future._settle(False, error_from(status, message))

    def _emit_from_child(self, topic: bytes, payload: bytes) -> None:
        """An event a worker child emitted (loop thread)."""
        with self._lock:
            if self._ptr is None or self._closed:
                return
            rc = held.weft_emit(self._ptr, topic, payload, len(payload))
        if rc < 0:
            report(error_from(rc), "an event from a process task")

    def _post_settle(self, entry: "_Settle") -> None:
        """Posts entry (a worker task's settling): after the events posted before it."""
        key = register(entry)
        with self._lock:
            rid = _post(self._ptr, CALL, key, FREE) if self._ptr is not None and not self._closed else 0
        if not rid:
            discard(key)
            entry.fire()  # closing: there are no subscribers left to be ahead of

    def _free(self) -> None:
        """Frees the C loop (lock held, loop not running)."""
        driver, self._driver = self._driver, None
        if driver is not None:
            driver.detach()
        ptr, self._ptr = self._ptr, None
        self._free_pending = False
        _loops.discard(self)
        if ptr is not None and not state.forked:
            lib.weft_loop_free(ptr)
        # Thread tasks still running keep their entries until their work returns (weft
        # runs their free_fn then, on the pool thread); their futures end now.
        for entry in list(registry.values()):
            if type(entry) is _Task and entry.loop is self:
                entry.future._settle_cancelled()

    def _finish_close(self) -> None:
        with self._lock:
            if self._ptr is not None and not self._running:
                self._free()

    # ---- attached to a host loop (weft.asyncio, weft.tornado) -----------------------

    def _attach(self, driver: Any, thread: Optional[int]) -> None:
        with self._lock:
            self._check_open("attach")
            self._driver = driver
            self._thread = thread
            fd = check(held.weft_loop_fd(self._ptr))
        install_unraisablehook()
        driver.attach(fd)

    def _drive(self, *_: Any) -> None:
        """The host loop's reader callback: one NOWAIT pass."""
        with self._lock:
            if self._ptr is None or self._running:
                return
            self._running = True
            self._thread = _get_ident()
        outer, tls.loop = getattr(tls, "loop", None), self
        try:
            rc = lib.weft_loop_run(self._ptr, _ffi.WEFT_RUN_NOWAIT)
        finally:
            tls.loop = outer
            with self._lock:
                self._running = False
                if self._free_pending:
                    self._free()
        if rc < 0 and rc != _ffi.WEFT_ERR_BUSY:
            report(error_from(rc), "weft_loop_run(NOWAIT) from the host loop")
        self._raise_pending_exit()

    # ---- process tasks --------------------------------------------------------------

    def _spawn_process(self, entry: _ProcessTask) -> None:
        entry.future._cancel_hook = entry.cancel
        with self._lock:
            self._check_open("spawn")
            start = self._children < self._max_children and not self._queue
            if start:
                self._children += 1
            else:
                self._queue.append(entry)
        if start:
            try:
                started = self._fork(entry)
            except BaseException:
                self._child_ended()
                raise
            if not started:
                self._child_ended()
        elif entry.timeout is not None:
            try:
                entry.queue_timer = timer = self.call_later(entry.timeout, entry.queued_timeout)
            except Error:
                return
            with self._lock:
                still_queued = entry in self._queue
            if not still_queued:  # a slot freed meanwhile and it was forked
                timer.cancel()

    def _spawn_worker_task(self, entry: _WorkerTask) -> None:
        entry.future._cancel_hook = entry.cancel
        with self._lock:
            self._check_open("spawn")
            entry.seq = self._next_seq
            self._next_seq += 1
            start = self._children < self._max_children and not self._queue
            if start:
                self._children += 1
            else:
                self._queue.append(entry)
                self._queued[entry.seq] = entry
        if start:
            try:
                started = self._fork_worker(entry)
            except BaseException:
                self._child_ended()
                raise
            if not started:
                self._child_ended()
        if entry.timeout is not None:
            entry.start_timer()

    def _fork_worker(self, entry: _ProcessTask) -> bool:
        """Forks a worker child that runs entry first, and hands it to weft. False if
        entry was not started (cancelled, or its deadline passed while it waited)."""
        assert isinstance(entry, _WorkerTask)
        if entry.deadline is not None and entry.deadline <= time.monotonic():
            entry.timed_out_waiting()
            return False
        worker = _Worker(self)
        with self._lock:
            cancelled = entry.cancel_requested or entry.future.done()
            if not cancelled:
                worker.task = entry
                entry.worker = worker
                worker.fork_seq = self._next_seq  # it may run the tasks spawned before now
        if cancelled:
            entry.settle_cancelled()
            return False
        try:
            pid, status_fd = self._fork_worker_child(worker, entry)
        except BaseException:
            with self._lock:
                worker.task = entry.worker = None
            raise
        entry.pid = worker.pid = pid
        err: Optional[Error] = None
        rid = 0
        try:
            worker.watch = self.watch(worker.data_fd, READ, worker.on_readable)
        except Error as exc:
            err = exc
        if err is None:
            key = register(worker)
            options = _spawn_options(_ffi.WEFT_ON_PROCESS, 0)
            with self._lock:
                if self._ptr is None or self._closed:
                    err = Closed("spawn: the loop was closed while the task was starting")
                else:
                    rid = lib.weft_adopt_child(self._ptr, pid, status_fd, DONE, key, FREE, options)
                    if not rid:
                        err = error_from()
            if not rid:
                discard(key)
        if not rid:
            with self._lock:
                worker.ended = True  # no task is sent to it any more
                task, worker.task = worker.task, None
                entry.worker = None
                if task is not None:
                    task.worker = None
            _kill_and_reap(pid)
            os.close(status_fd)
            worker.close_fds()
            if task is not None and task is not entry:  # it had finished entry already
                task.settle_cancelled()
            if isinstance(err, Closed):
                entry.settle_cancelled()
                return False
            raise err  # type: ignore[misc]
        entry.future._mark_running()
        with self._lock:
            worker.rid = rid
            reason = worker.kill_reason
        if reason is not None:  # cancelled while it was being forked
            self._cancel_id(rid)
        return True

    def _fork_worker_child(self, worker: _Worker, entry: _WorkerTask) -> Tuple[int, int]:
        """Makes the worker's pipes and forks it: (pid, the status pipe's read end)."""
        with _fork_lock:
            fds = []
            try:
                for _ in range(3):
                    fds.extend(os.pipe())
            except BaseException:
                for fd in fds:
                    os.close(fd)
                raise
            status_r, status_w, control_r, control_w, data_r, data_w = fds
            _process.flush_std_streams()
            try:
                pid = os.fork()
            except BaseException:
                for fd in fds:
                    os.close(fd)
                raise
            if pid == 0:  # the child
                os.close(status_r)
                os.close(control_w)
                os.close(data_r)
                _process.worker_main(status_w, control_r, data_w, self._queued, entry)  # never returns
            os.close(status_w)
            os.close(control_r)
            os.close(data_w)
            _worker_fds.update((control_w, data_r))
        os.set_blocking(data_r, False)
        worker.control_fd = control_w
        worker.data_fd = data_r
        return pid, status_r

    def _fork(self, entry: _ProcessTask) -> bool:
        """Forks the child of entry and hands it to weft. False if it was not started
        (cancelled, or its deadline passed while it waited)."""
        if entry.cancel_requested:
            entry.future._settle_cancelled()
            return False
        timeout_ms = 0
        if entry.deadline is not None:
            remaining = entry.deadline - time.monotonic()
            if remaining <= 0:
                entry.timed_out_waiting()
                return False
            timeout_ms = max(1, math.ceil(remaining * 1000))
        options = _spawn_options(_ffi.WEFT_ON_PROCESS, timeout_ms)
        with _fork_lock:
            read_fd, write_fd = os.pipe()
            _process.flush_std_streams()
            try:
                pid = os.fork()
            except BaseException:
                os.close(read_fd)
                os.close(write_fd)
                raise
            if pid == 0:  # the child
                os.close(read_fd)
                _process.child_main(write_fd, entry.fn, entry.args, entry.kwargs)  # never returns
            os.close(write_fd)
        entry.pid = pid
        key = register(entry)
        err: Optional[Error]
        with self._lock:
            if self._ptr is None or self._closed:
                rid, err = 0, Closed("spawn: the loop was closed while the task was starting")
            else:
                rid = lib.weft_adopt_child(self._ptr, pid, read_fd, DONE, key, FREE, options)
                err = None if rid else error_from()
        if not rid:
            discard(key)
            _kill_and_reap(pid)
            os.close(read_fd)
            if isinstance(err, Closed):
                entry.future._settle_cancelled()
                return False
            raise err  # type: ignore[misc]
        entry.rid = rid
        entry.future._mark_running()
        if entry.cancel_requested:
            self._cancel_id(rid)
        return True

    def _child_ended(self) -> None:
        """A process task's child is over (or never started): start queued ones."""
        with self._lock:
            self._children -= 1
        while True:
            with self._lock:
                if self._closed or self._children >= self._max_children or not self._queue:
                    return
                entry = self._queue.popleft()
                self._queued.pop(getattr(entry, "seq", 0), None)
                self._children += 1
            if entry.queue_timer is not None:
                entry.queue_timer.cancel()
            try:
                started = self._start_child(entry)
            except BaseException as exc:  # noqa: BLE001 - it goes to the task's future
                started = False
                if isinstance(entry, _WorkerTask):
                    entry.settle(False, exc)
                else:
                    entry.future._settle(False, exc)
            if not started:
                with self._lock:
                    self._children -= 1


def _kill_and_reap(pid: int) -> None:
    try:
        os.kill(pid, _signal.SIGKILL)
        os.waitpid(pid, 0)
    except OSError:
        pass


# spawn options: the ones without a timeout are made once per pool.
_OPTIONS: Dict[int, Any] = {}


def _spawn_options(where: int, timeout_ms: int) -> Any:
    if timeout_ms == 0:
        cached = _OPTIONS.get(where)
        if cached is not None:
            return cached
    options = _ffi.weft_spawn_options()
    options.size = ctypes.sizeof(options)
    options.timeout_ms = timeout_ms
    kind = _POOL_OF.get(where)
    if kind is not None:
        options.pool = _pools.get(kind)
    ref = ctypes.byref(options)
    if timeout_ms == 0:
        _OPTIONS[where] = ref
    return ref


# ---- inside a task --------------------------------------------------------------------

def cancelled() -> bool:
    """Inside a task's fn: True once its task was cancelled or timed out (a thread task
    should then return soon: weft cannot stop a thread); in a process task's child,
    True once the parent is gone. RuntimeError outside a task."""
    if state.task is not None:
        return _process.cancelled_in_child()
    current = getattr(tls, "task", None)
    if current is None:
        raise RuntimeError("weft.cancelled() is only meaningful inside a task's fn")
    return bool(held.weft_task_cancelled(current[0]))


# ---- interpreter exit -------------------------------------------------------------------

def _at_exit() -> None:
    """Closes every loop (cancelling what is in flight: process children are killed and
    reaped), then frees the binding's pools and weft's default pools if no thread task
    is still running. A thread task still running after EXIT_GRACE is abandoned: its
    thread is not joined (that could hang exit) and dies with the process."""
    if state.forked:
        return
    state.exiting = True
    for loop in list(_loops):
        try:
            loop.close()
        except BaseException as exc:  # noqa: BLE001
            report(exc, f"closing {loop!r} at exit")
    deadline = time.monotonic() + EXIT_GRACE
    while _running_work and time.monotonic() < deadline:
        time.sleep(0.005)
    if _running_work:
        return
    _OPTIONS.clear()
    _pools.free_all()
    lib.weft_shutdown()


atexit.register(_at_exit)


def _forget_in_child() -> None:
    for fd in _worker_fds:
        try:
            os.close(fd)
        except OSError:
            pass
    _worker_fds.clear()
    _OPTIONS.clear()
    _pools.forget_in_child()
    _running_work.clear()


os.register_at_fork(after_in_child=_forget_in_child)
