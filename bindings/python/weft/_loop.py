"""weft.Loop, its tasks on the loop and the pools, and weft.cancelled()."""

from __future__ import annotations

import atexit
import ctypes
import math
import os
import threading
import time
import weakref
from typing import Any, Callable, Dict, Optional, Set, Tuple, TypeVar, Union

from . import _ffi, _later, _pools, _process, _soon
from ._callbacks import (CALL, DONE, EVENT, FD, FREE, SIGNAL, WORK, discard, install_unraisablehook, register,
                         registry, report, state, tls)
from ._errors import Busy, ChildCrashed, Closed, Error, Forked, TaskTimeout, check, error_from
from ._args import _check_callable, _fileno, _int_arg, _milliseconds, _payload, _topic
from ._future import Future
from ._handles import Handle, Watch, _Callback
from ._later import TimerHandle
from ._lib import held, lib
from ._monitor import DEBUG_THRESHOLD, Monitoring, SlowCallback
from ._stats import TimingBuffer

_T = TypeVar("_T")

READ = _ffi.WEFT_READABLE
WRITE = _ffi.WEFT_WRITABLE
HANGUP = _ffi.WEFT_HANGUP
ERROR = _ffi.WEFT_ERROR

_WHERE = {"loop": _ffi.WEFT_ON_LOOP, "thread": _ffi.WEFT_ON_IO, "cpu": _ffi.WEFT_ON_CPU,
          "process": _ffi.WEFT_ON_PROCESS}
_POOL_OF = {_ffi.WEFT_ON_IO: _pools.IO, _ffi.WEFT_ON_CPU: _pools.CPU}

_get_ident = threading.get_ident
_spawn = held.weft_spawn
_ON_PROCESS = _ffi.WEFT_ON_PROCESS
_monotonic = time.monotonic
_monotonic_ns = time.monotonic_ns
_ceil = math.ceil

# Every open loop, for the atexit handler.
_loops: "weakref.WeakSet[Loop]" = weakref.WeakSet()
# Entries of thread and cpu tasks whose work is running now (set.add and discard are
# atomic under the GIL).
_running_work: Set[Any] = set()
# How long the atexit handler waits for running thread tasks before it leaves the pools
# alone (a task still running then is abandoned: joining its thread would hang exit).
EXIT_GRACE = 0.5

# ---- the registry entry of a task (see _callbacks) --------------------------------------

class _Task:
    """A task on the loop, the IO pool or the CPU pool. The outcome stays a Python
    object: nothing is serialised."""

    __slots__ = ("loop", "fn", "args", "kwargs", "future", "where", "timeout", "ok", "value", "queued_ns",
                 "started_ns", "finished_ns")
    # Its future's timing is stamped here, in Python (see _stats), not read from weft.
    weft_timing = False

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
        self.queued_ns = _monotonic_ns()
        self.started_ns = self.finished_ns = 0

    def work(self, task: Any) -> int:
        self.started_ns = _monotonic_ns()
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
            self.finished_ns = _monotonic_ns()
        return 0

    def done(self, status: int, result: Any, length: int) -> None:
        self.future._timing_raw = (self.queued_ns, self.started_ns, self.finished_ns, _monotonic_ns())
        if status >= 0:
            self.future._settle(self.ok, self.value)
            self.value = None
        else:
            self.loop._settle_status(self.future, status, self.timeout, "")

    def freed(self) -> None:
        self.fn = self.args = self.kwargs = self.value = None  # type: ignore[assignment]
        if not self.future.done():  # the loop was closed before done
            self.future._settle_cancelled()


# ---- the loop ---------------------------------------------------------------------------

class Loop(Monitoring):
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

    weft itself bounds, queues, times out, cancels and reuses the children (weft_spawn's
    max_children and reuse_child options); the binding only forks them, with
    os.fork() (weft's fork_fn), and runs fn in them.

    debug=True turns on the slow-callback watchdog (see `set_watchdog`) with a 0.1 s
    threshold, logging each report to the "weft" logger, as asyncio's debug mode does,
    but while the callback still runs, with the line it is blocked at.
    """

    def __init__(self, *, max_children: Optional[int] = None, reuse_children: bool = True,
                 debug: bool = False) -> None:
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
        self._reuse = reuse_children
        self._timing = TimingBuffer()  # process tasks' timings, read in done (_callbacks._on_done)
        _soon.setup(self)
        _later.setup(self)
        _loops.add(self)
        if debug:
            self.set_watchdog(DEBUG_THRESHOLD)

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
            self._soon_ok = False
            driver = self._driver
            if self._running:
                self._free_pending = True
                held.weft_loop_stop(self._ptr)
            elif driver is not None and not driver.in_host_thread():
                self._free_pending = True
                driver.call_soon_threadsafe(self._finish_close)
            else:
                self._free()

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
        thread queued before. Any thread. The calls wait in a Python queue that the
        loop runs in one weft post per batch (see _soon)."""
        if not self._soon_ok or not callable(fn):
            if not callable(fn):
                _check_callable("call_soon", fn)
            raise self._unusable("call_soon")
        handle = self._soon_handle()
        self._soon_live[handle] = (fn, args) if args else fn
        self._soon.append(handle)
        if not self._soon_armed:
            _soon.arm(self, handle, "call_soon")
        return handle

    def call_later(self, seconds: float, fn: Callable[..., Any], *args: Any) -> Handle:
        """Calls fn(*args) on the loop thread once, `seconds` from now (never early;
        1 ms granularity: the deadline is rounded up to a whole millisecond). Any
        thread. Timers due in the same millisecond share one weft timer (see _later)."""
        if type(seconds) is not float or not 0.0 <= seconds < 1e9:
            _milliseconds("call_later", seconds)
        if not callable(fn):
            _check_callable("call_later", fn)
        now = _monotonic()
        ms = _ceil((now + seconds) * 1000.0)
        handle = TimerHandle(self, fn, args)
        with self._lock:
            if self._closed or state.forked:
                raise self._unusable("call_later")
            bucket = self._buckets.get(ms)
            if bucket is None:
                bucket = _later.bucket_for(self, ms, now)
            bucket[handle] = True
            handle._bucket = bucket
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
            rc = _process.emit_in_child(topic_bytes, data)
            if rc < 0:
                raise error_from(rc) if rc != _ffi.WEFT_ERR_FORKED else self._unusable("emit")
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
              keep_fds: Any = (), inherit_fds: bool = False, **kwargs: Any) -> "Future[_T]":
        """Runs fn(*args, **kwargs) and returns a Future of its result.

        on="loop": on the loop thread, in its next pass. on="thread": on the IO pool
        (blocking calls). on="cpu": on the CPU pool (one thread per core; for code that
        releases the GIL). on="process": in a forked child: fn may be a lambda or a
        closure over anything (sockets, locks, handlers); only its return value is
        pickled back. The child starts with default signal dispositions (each Python
        handler, SIGINT's too, reset to SIG_DFL) and no wakeup fd: a cancel's SIGTERM
        ends it and never reaches the parent's handlers. At most max_children run at
        once, the rest wait in FIFO order (in weft: a waiting task forks on the loop thread when a slot frees; the
        future's running() is true only for a task forked inside its spawn, weft
        telling the binding of no later start). With the loop's reuse_children (the
        default), a child may run several process tasks one after another, only ever
        ones spawned before it was forked: each task sees everything done before its
        spawn returned, and the side effects of the tasks run before it in the same
        child. A failed os.fork() raises weft.SystemCallFailed from spawn (or, for a
        task that waited, gives it to the future), with the fork's exception as its
        __cause__.

        A process child keeps only stdin, stdout, stderr (and the fds sys.stdin,
        sys.stdout, sys.stderr are on) and weft's own pipes of this process's fds (the
        rest are closed before fn runs): a server's listening socket
        or connection closed here ends at once for its peers, even while a render runs
        in a child. fn that uses an inherited fd (a log file, a database connection)
        lists it in keep_fds (ints or objects with fileno()), or inherit_fds=True keeps
        them all (as fork does). With reuse_children, a child keeps the fds of every
        task it may run.

        timeout (seconds): the future gets TimeoutError then (a thread task keeps
        running and sees weft.cancelled(); a process child is killed). An exception in
        fn comes back as the same type with its message (for a process task with the
        child's traceback as __cause__ and `child_traceback`); a child that dies gives
        weft.ChildCrashed.
        """
        if not callable(fn):
            _check_callable("spawn", fn)
        where = _WHERE.get(on) if isinstance(on, str) else None
        if where is None:
            raise ValueError(f"spawn: on must be 'loop', 'thread', 'cpu' or 'process', not {on!r}")
        timeout_ms = 0 if timeout is None else _milliseconds("spawn", timeout, "timeout", positive=True)
        if inherit_fds is not False and not isinstance(inherit_fds, bool):
            raise TypeError(f"spawn: inherit_fds must be a bool, not {type(inherit_fds).__name__}")
        if where != _ON_PROCESS and (keep_fds or inherit_fds):
            raise ValueError("spawn: keep_fds and inherit_fds are for on='process' only")
        future: Future[_T] = Future(self)
        if where == _ON_PROCESS:
            fds = () if inherit_fds else _process.fds_arg(keep_fds)
            self._spawn_process(_process.ProcessTask(self, fn, args, kwargs, future, timeout), timeout_ms,
                                fds, inherit_fds)
            return future
        options = _OPTIONS.get(where) if timeout_ms == 0 else None
        if options is None:
            options = _spawn_options(where, timeout_ms, lambda o: _pool_option(o, where))
        key = register(_Task(self, fn, args, kwargs, future, where, timeout))
        with self._lock:
            if self._closed or state.forked:
                discard(key)
                raise self._unusable("spawn")
            rid = _spawn(self._ptr, where, WORK, DONE, key, FREE, options)
        if not rid:
            err = error_from()
            discard(key)
            raise err
        future._task_id = rid
        return future

    def _spawn_process(self, entry: _process.ProcessTask, timeout_ms: int, keep_fds: Tuple[int, ...] = (),
                       inherit_fds: bool = False) -> None:
        """weft_spawn(WEFT_ON_PROCESS) with the binding's fork (see _process). The
        child may be forked inside this call (entry's future then runs), or later on
        the loop thread."""
        options = _spawn_options(("process", self._max_children, self._reuse, keep_fds, inherit_fds), timeout_ms,
                                 lambda o: _process.fill_options(o, self._max_children, self._reuse, keep_fds,
                                                                 inherit_fds), _ffi.WEFT_SPAWN_TIMING)
        key = register(entry)
        with self._lock:
            if self._closed or state.forked:
                discard(key)
                raise self._unusable("spawn")
            tls.spawning, tls.fork_error = entry, None
            try:
                rid = held.weft_spawn(self._ptr, _ffi.WEFT_ON_PROCESS, WORK, DONE, key, FREE, options)
            finally:
                tls.spawning = None
        if not rid:
            err = error_from()
            discard(key)
            cause = _process.take_fork_error()
            if isinstance(cause, (KeyboardInterrupt, SystemExit)):
                raise cause
            if cause is not None:
                raise type(err)(f"spawn: os.fork() failed: {cause!r} ({err})", err.code) from cause
            raise err
        entry.future._task_id = rid

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
            if rid:  # the watchdog's label (Loop.set_label): the callable's name
                held.weft_set_label(self._ptr, rid, _label_of(entry.fn))
        if not rid:
            err = error_from()
            discard(key)
            raise err
        entry.handle._id = rid
        return entry.handle

    def _post_internal(self, fn: Callable[[], Any]) -> None:
        self.call_soon(fn)

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

    def _settle_status(self, future: "Future[Any]", status: int, timeout: Optional[float], message: str,
                       cause: Optional[BaseException] = None) -> None:
        """Settles future for a task's negative status (message: weft_last_error's, read
        in done; cause: the exception of the host fork that failed, if any)."""
        if status == _ffi.WEFT_ERR_CANCELLED:
            future._settle_cancelled()
        elif status == _ffi.WEFT_ERR_TIMEOUT:
            future._settle(False, TaskTimeout(f"the task did not finish within its timeout of {timeout} s"))
        elif status == _ffi.WEFT_ERR_CRASHED:
            future._settle(False, ChildCrashed(message or "the process task's child died", status))
        else:
            err = error_from(status, message)
            if cause is not None:
                err.__cause__ = cause
                if isinstance(cause, (KeyboardInterrupt, SystemExit)):
                    self._callback_failed(cause, "the fork of a process task")
            future._settle(False, err)

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
        _soon.release_all(self)
        _soon.forget(self)
        _later.release_all(self)
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

# spawn options without a timeout, made once per key (a task's place, or a process
# task's settings); at most 256 are kept.
_OPTIONS: Dict[Any, Any] = {}


def _spawn_options(key: Any, timeout_ms: int, fill: Callable[[Any], None], flags: int = 0) -> Any:
    """weft_spawn's options (a pointer to them) with timeout_ms, flags and what fill sets."""
    if timeout_ms == 0:
        cached = _OPTIONS.get(key)
        if cached is not None:
            return cached
    options = _ffi.weft_spawn_options()
    options.size = ctypes.sizeof(options)
    options.timeout_ms = timeout_ms
    options.flags = flags
    fill(options)
    ref = ctypes.byref(options)
    if timeout_ms == 0 and len(_OPTIONS) < 256:
        _OPTIONS[key] = ref
    return ref


def _label_of(fn: Any) -> bytes:
    return str(getattr(fn, "__qualname__", None) or type(fn).__qualname__).encode("utf-8", "replace")


def _pool_option(options: Any, where: int) -> None:
    kind = _POOL_OF.get(where)
    if kind is not None:
        options.pool = _pools.get(kind)


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
    for loop in list(_loops):
        loop._soon_ok = False  # call_soon's quick check: the loop is unusable here
    _OPTIONS.clear()
    _pools.forget_in_child()
    _running_work.clear()


os.register_at_fork(after_in_child=_forget_in_child)
