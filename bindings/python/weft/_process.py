"""Process tasks (spawn(on="process")): the binding's part of them.

weft runs them (weft_spawn with WEFT_ON_PROCESS, see include/weft.h): it bounds them by
the loop's max_children and queues the rest (FIFO), counts their timeouts from spawn,
cancels them waiting or running (a running child is killed), reuses children
(reuse_child: a child runs only tasks spawned before its fork), streams the child's
events and result back, and reaps every child. The binding gives it:

* FORK, the fork_fn of every process task: Python's os.fork() (so Python's own at-fork
  hooks run), after flushing the std streams; in the child, gc.freeze() and
  `reset_signals()`: the child starts with no wakeup fd (signal.set_wakeup_fd(-1)) and
  every signal that had a Python handler (asyncio's add_signal_handler, a
  signal.signal(...) of the app, SIGINT's default_int_handler) back at SIG_DFL, so a
  cancel's or timeout's SIGTERM (or a Ctrl-C) ends the child at once and never runs the
  parent's handler nor writes into the parent's event loop. The forking thread blocks
  asynchronous signals across os.fork() (`_SignalMask`), so a signal sent to the child
  before that reset is delivered after it.
* ProcessTask, the registration's entry: in the child, `work` runs fn and writes its
  pickled outcome with weft_task_write (loop.emit and weft.cancelled() there go through
  the same weft_task: see `state.task`); in the parent, `done` rebuilds the outcome.

A child never returns from FORK's fork: weft runs the works in it, then `_exit`s, so no
atexit handler, finalizer or flush of inherited buffers runs there.
"""

from __future__ import annotations

import ctypes
import errno
import gc
import os
import pickle
import signal
import sys
import threading
import traceback
import warnings
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple

from . import _ffi
from ._callbacks import state, tls
from ._errors import ChildCrashed, ProcessTaskError, RemoteTraceback, last_error
from ._lib import lib

if TYPE_CHECKING:
    from ._future import Future
    from ._loop import Loop

# Python 3.12+ warns on every fork of a multi-threaded process. Process tasks fork on
# purpose (and the child only runs tasks, then _exit): the warning is about them.
warnings.filterwarnings("ignore", message=r".*is multi-threaded, use of fork\(\) may lead to deadlocks",
                        category=DeprecationWarning, module=__name__)

Outcome = Tuple[bool, Any]


def flush_std_streams() -> None:
    """Flushed before a fork (so the child does not inherit unwritten output) and in
    the child before it exits (so what it printed is not lost to os._exit)."""
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except Exception:  # noqa: BLE001
            pass


def describe(exc: BaseException, note: str = "") -> Tuple[Any, ...]:
    """A picklable account of exc: (type or None, "module.Qualname", args or None,
    message, traceback text, the pickled exception or None). The exception itself is
    sent when it survives a pickle round trip here (so OSError keeps its filename);
    otherwise the parent rebuilds it from its type and args, or from its message."""
    cls = type(exc)
    whole: Optional[bytes]
    try:
        whole = pickle.dumps(exc, pickle.HIGHEST_PROTOCOL)
        pickle.loads(whole)
    except Exception:  # noqa: BLE001 - unpicklable attributes, a strict __init__, ...
        whole = None
    name = f"{cls.__module__}.{cls.__qualname__}"
    text = "".join(traceback.format_exception(cls, exc, exc.__traceback__))
    if note:
        text += note + "\n"
    try:
        pickle.loads(pickle.dumps(cls))
        picklable_cls: Optional[type] = cls
    except Exception:  # noqa: BLE001 - a class defined in a function, ...
        picklable_cls = None
    try:
        args: Optional[Tuple[Any, ...]] = exc.args
        pickle.loads(pickle.dumps(args))
    except Exception:  # noqa: BLE001
        args = None
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001
        message = "<str() failed>"
    return (picklable_cls, name, args, message, text, whole)


def rebuild(description: Tuple[Any, ...]) -> BaseException:
    """The parent's exception for a child's description: the exception itself, or the
    same type with the same args, where possible (else ProcessTaskError), the child's traceback text as
    __cause__ (a RemoteTraceback) and as the `child_traceback` attribute."""
    cls, name, args, message, text, whole = description
    exc: Optional[BaseException] = None
    if whole is not None:
        try:
            exc = pickle.loads(whole)
        except Exception:  # noqa: BLE001
            exc = None
    if exc is None and isinstance(cls, type) and issubclass(cls, BaseException):
        for attempt in ((args,) if args is not None else ()) + ((message,),):
            try:
                exc = cls(*attempt)
                break
            except Exception:  # noqa: BLE001
                continue
    if exc is None:
        exc = ProcessTaskError(f"{name}: {message}")
    exc.__cause__ = RemoteTraceback(text)
    try:
        exc.child_traceback = text  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - __slots__ without a __dict__
        pass
    return exc


def decode(data: bytes) -> Outcome:
    """(ok, value or exception) from the bytes a child wrote."""
    try:
        ok, value = pickle.loads(data)
    except Exception as exc:  # noqa: BLE001
        return False, ProcessTaskError(f"the process task's result could not be unpickled: {exc!r}")
    if ok:
        return True, value
    return False, rebuild(value)


def run_task(fn: Callable[..., Any], args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> bytes:
    """Runs fn in the child: its pickled outcome, (True, value) or (False, description)."""
    try:
        value = fn(*args, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - everything goes to the parent
        return pickle.dumps((False, describe(exc)), pickle.HIGHEST_PROTOCOL)
    try:
        return pickle.dumps((True, value), pickle.HIGHEST_PROTOCOL)
    except BaseException as exc:  # noqa: BLE001
        note = f"(the return value of {fn!r}, a {type(value).__name__}, could not be pickled)"
        return pickle.dumps((False, describe(exc, note)), pickle.HIGHEST_PROTOCOL)




# ---- the fork ----------------------------------------------------------------------------

def reset_signals() -> None:
    """In a forked child, before any work: no wakeup fd, and SIG_DFL for every signal
    whose handler is a Python callable. The child inherits the parent's: asyncio's
    add_signal_handler points the wakeup fd at a socket the parent's event loop reads,
    so a signal delivered to the child would reach the parent's loop (and run its
    handler there); a Python handler would also keep the child alive after the SIGTERM
    of a cancel or a timeout until weft's SIGKILL. Signals set to SIG_IGN stay ignored
    (SIGPIPE, as Python sets it). The thread that forked is the child's main thread
    (CPython makes it so after os.fork()), which both calls need; never raises."""
    try:
        signal.set_wakeup_fd(-1)
    except BaseException:  # noqa: BLE001 - not the main thread, or no signal support
        pass
    try:
        signals = signal.valid_signals()
    except BaseException:  # noqa: BLE001
        return
    for signum in signals:
        try:
            if callable(signal.getsignal(signum)):
                signal.signal(signum, signal.SIG_DFL)
        except BaseException:  # noqa: BLE001 - one signal's failure does not stop the rest
            pass


class _SignalMask:
    """Every asynchronous signal blocked on the forking thread across os.fork(), through
    libc (signal.pthread_sigmask would run pending Python handlers inside FORK): one
    sent to the child before reset_signals() is delivered once its handler is the
    default. Best effort: without libc's calls, nothing is blocked."""

    SIZE = 128  # at least any platform's sigset_t (glibc's is 128 bytes)

    def __init__(self) -> None:
        self.blocked = self.mask = None
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            self.mask = libc.pthread_sigmask
            blocked = ctypes.create_string_buffer(self.SIZE)
            libc.sigfillset(blocked)
            # Faults stay deliverable (faulthandler, and a fault while blocked is fatal).
            for name in ("SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGTRAP", "SIGSYS", "SIGABRT"):
                if hasattr(signal, name):
                    libc.sigdelset(blocked, int(getattr(signal, name)))
            self.blocked = blocked
        except Exception:  # noqa: BLE001 - no libc symbols (not POSIX)
            self.blocked = self.mask = None

    def block(self) -> Any:
        """Blocks them; the previous mask (for restore), or None."""
        if self.mask is None:
            return None
        previous = ctypes.create_string_buffer(self.SIZE)
        if self.mask(int(signal.SIG_BLOCK), self.blocked, previous) != 0:
            return None
        return previous

    def restore(self, previous: Any) -> None:
        if previous is not None and self.mask is not None:
            self.mask(int(signal.SIG_SETMASK), previous, None)


_signal_mask = _SignalMask()


def _fork(fork_data: Optional[int]) -> int:
    """weft's fork_fn: returns as fork(2) does, and never raises (ctypes would print the
    exception and return 0, which weft takes for a child). In the parent, the exception
    of a failed fork is kept in `tls.fork_error` for the spawn (or done) it fails."""
    previous = None
    try:
        flush_std_streams()
        previous = _signal_mask.block()
        pid = os.fork()
    except BaseException as exc:  # noqa: BLE001 - in the parent: no child
        _signal_mask.restore(previous)
        tls.fork_error = exc
        code = exc.errno if isinstance(exc, OSError) and exc.errno else errno.EAGAIN
        ctypes.set_errno(code)
        return -1
    if pid == 0:  # the child: weft runs the work(s) next, then _exits
        reset_signals()
        _signal_mask.restore(previous)  # (weft then unblocks every signal)
        try:
            # Everything inherited goes to the collector's permanent generation: the
            # child's collections then never walk (and so never copy-on-write) it.
            gc.freeze()
        except BaseException:  # noqa: BLE001
            pass
        return 0
    _signal_mask.restore(previous)
    try:
        entry = getattr(tls, "spawning", None)
        if entry is not None:  # forked inside its spawn: it runs from now on
            tls.spawning = None
            entry.future._mark_running()
    except BaseException:  # noqa: BLE001
        pass
    return pid


# One callback for the process's life: never collected while weft may call it. Its
# type has use_errno (see bindings/gen.py): ctypes.set_errno sets the errno weft reads.
FORK = _ffi.weft_fork_fn(_fork)


def take_fork_error() -> Optional[BaseException]:
    """The exception of this thread's last failed fork, if any (then forgotten)."""
    exc = getattr(tls, "fork_error", None)
    tls.fork_error = None
    return exc


def fill_options(options: Any, max_children: int, reuse: bool, keep_fds: Tuple[int, ...], inherit_fds: bool) -> None:
    """Sets what a process task of a loop asks of weft_spawn in `options`."""
    options.max_children = min(max_children, 0xFFFFFFFF)
    options.fork_fn = FORK
    options.reuse_child = reuse
    if keep_fds:
        # The structure keeps a reference to the array it points to.
        options.keep_fds = (ctypes.c_int * len(keep_fds))(*keep_fds)
        options.keep_fds_len = len(keep_fds)
    options.inherit_fds = inherit_fds


def std_stream_fds() -> Tuple[int, ...]:
    """The fds of sys.stdin/stdout/stderr and their originals, which a child keeps (they
    may be other than 0, 1, 2: pytest's capture, a redirected stream)."""
    fds = []
    for stream in (sys.stdin, sys.stdout, sys.stderr, sys.__stdin__, sys.__stdout__, sys.__stderr__):
        try:
            fd = stream.fileno() if stream is not None else -1
        except Exception:  # noqa: BLE001 - io.UnsupportedOperation, a closed stream
            continue
        if isinstance(fd, int) and fd > 2:
            fds.append(fd)
    return tuple(fds)


def fds_arg(keep_fds: Any) -> Tuple[int, ...]:
    """spawn's keep_fds: ints or objects with fileno() (sockets, files), sorted, with the
    std streams' fds (see std_stream_fds)."""
    try:
        items = list(keep_fds)
    except TypeError:
        raise TypeError(f"spawn: keep_fds must be an iterable of fds, not {type(keep_fds).__name__}") from None
    fds = []
    for item in items:
        fd = item if isinstance(item, int) and not isinstance(item, bool) else None
        if fd is None and hasattr(item, "fileno"):
            fd = item.fileno()
        if not isinstance(fd, int) or fd < 0:
            raise ValueError(f"spawn: keep_fds holds {item!r}, not an open fd (an int >= 0 or an object with fileno())")
        fds.append(fd)
    return tuple(sorted(set(fds) | set(std_stream_fds())))


# ---- the task ----------------------------------------------------------------------------

# In a child: keeps the frames of a task's result and of events emitted by several of
# its threads whole.
_child_lock = threading.Lock()


class ProcessTask:
    """The entry of a process task: fn and its arguments (the child runs its copy of
    them), the future the parent settles."""

    __slots__ = ("loop", "fn", "args", "kwargs", "future", "timeout")
    # Spawned with WEFT_SPAWN_TIMING: the done trampoline reads weft's times (_stats).
    weft_timing = True

    def __init__(self, loop: "Loop", fn: Callable[..., Any], args: Tuple[Any, ...], kwargs: Dict[str, Any],
                 future: "Future[Any]", timeout: Optional[float]):
        self.loop = loop
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.future = future
        self.timeout = timeout

    def work(self, task: Any) -> int:
        """In the child: runs fn, writes its pickled outcome (weft sends it)."""
        fn, args, kwargs = self.fn, self.args, self.kwargs
        # The child's copy lets go of the task's objects once it has run.
        self.fn = self.args = self.kwargs = None  # type: ignore[assignment]
        state.task = task
        try:
            data = run_task(fn, args, kwargs)
            fn = args = kwargs = None  # type: ignore[assignment]
            flush_std_streams()
            with _child_lock:
                lib.weft_task_write(task, data, len(data))
        finally:
            with _child_lock:
                state.task = None
        return 0

    def done(self, status: int, result: Any, length: int) -> None:
        """In the parent, on the loop thread: settles the future."""
        # What weft hands over is read before anything else calls weft on this thread.
        failed = status < 0 and status not in (_ffi.WEFT_ERR_CANCELLED, _ffi.WEFT_ERR_TIMEOUT)
        message = last_error() if failed else ""
        data = ctypes.string_at(result, length) if status >= 0 and length and result else b""
        future = self.future
        if status >= 0:
            if data:
                ok, value = decode(data)
                future._settle(ok, value)
            else:
                future._settle(False, ChildCrashed(f"process task {self.fn!r} ended without a result"))
            return
        cause = take_fork_error() if status == _ffi.WEFT_ERR_IO else None
        self.loop._settle_status(future, status, self.timeout, message, cause)

    def freed(self) -> None:
        self.fn = self.args = self.kwargs = None  # type: ignore[assignment]
        if not self.future.done():  # the loop was freed: it killed and reaped the child
            self.future._settle_cancelled()


def emit_in_child(topic: bytes, payload: bytes) -> int:
    """loop.emit inside a process task's work: weft_task_emit on the child's task
    (a weft_result; WEFT_ERR_FORKED once the work has returned)."""
    with _child_lock:
        task = state.task
        if task is None:
            return _ffi.WEFT_ERR_FORKED
        return int(lib.weft_task_emit(task, topic, payload, len(payload)))


def cancelled_in_child() -> bool:
    return bool(lib.weft_task_cancelled(state.task))
