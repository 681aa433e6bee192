"""Process tasks: the child's side (run fn, pickle only its outcome, hand it to weft),
and the parent's rebuilding of that outcome.

The parent forks with os.fork() (so Python's own fork hooks run), closes the write end
and hands the child to weft_adopt_child, which supervises it like a WEFT_ON_PROCESS task
(see _loop.Loop._fork). The child gets a weft_task with weft_child_task(write_fd),
through which loop.emit (weft_task_emit) and the result (weft_task_write) reach the
parent, and always ends with weft_child_exit or os._exit: no atexit handler, no
finalizer and no flush of inherited buffers runs in it.

With reuse_children (the default) a child is a worker that may run several tasks, one
after another (see _loop._Worker): only tasks spawned before it was forked, whose fn,
args and kwargs are in its copy-on-write memory, so the parent sends it task numbers,
never a function. Besides the status pipe of weft_child_task (used only for its final
weft_child_exit), a worker has a control pipe (parent -> child: the number of its next
task, 8 bytes little-endian; end of file: exit) and a data pipe (child -> parent) of
frames `length:u32le kind:u8 body[length]`: kind 'E' is an event, body
`topic_len:u32le topic payload`; kind 'R' a task's outcome, body `seq:u64le` followed by
the pickled outcome child_main would send.
"""

from __future__ import annotations

import gc
import os
import pickle
import struct
import sys
import threading
import traceback
from typing import Any, Callable, Dict, Optional, Tuple

from ._callbacks import state
from ._errors import ProcessTaskError, RemoteTraceback
from ._lib import lib

# The child's exit code when something failed before weft_child_exit could run: the
# parent then gets ChildCrashed naming it.
EXIT_NO_TASK = 71
EXIT_FAILED = 70

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


def _in_child(status_fd: int, body: Callable[[Any], None]) -> None:
    """Runs body(task) in a forked child, with its weft_task on status_fd; never
    returns. body ends with weft_child_exit; anything it raises is printed and the
    child exits with EXIT_FAILED."""
    try:
        # Everything inherited goes to the collector's permanent generation: the child's
        # collections then never walk (and so never copy-on-write) the parent's objects.
        gc.freeze()
        task = lib.weft_child_task(status_fd)
        if not task:
            os._exit(EXIT_NO_TASK)
        state.task = task
        body(task)
    except BaseException:  # noqa: BLE001
        try:
            traceback.print_exc()
            flush_std_streams()
        except BaseException:  # noqa: BLE001
            pass
    finally:
        os._exit(EXIT_FAILED)


def child_main(write_fd: int, fn: Callable[..., Any], args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> None:
    """Runs in the forked child of one task (reuse_children=False); never returns."""

    def body(task: Any) -> None:
        data = run_task(fn, args, kwargs)
        flush_std_streams()
        lib.weft_task_write(task, data, len(data))
        lib.weft_child_exit(task, 0)  # does not return

    _in_child(write_fd, body)


# ---- workers (reuse_children) ----------------------------------------------------------

HEADER = struct.Struct("<IB")  # a data-pipe frame: body length, kind
U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")
KIND_EVENT = ord("E")
KIND_RESULT = ord("R")
MAX_BODY = 0xFFFFFFFF

# In a worker child: its data pipe's write end, and the lock that keeps the frames of
# several threads (the task's own threads may emit) whole.
_data_fd = -1
_data_lock: Optional[Any] = None


def _write_all(fd: int, data: Any) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_frame(kind: int, *parts: bytes) -> None:
    """Writes one frame to the worker's data pipe (blocking)."""
    length = sum(len(part) for part in parts)
    if length > MAX_BODY:
        raise OverflowError(f"a frame of {length} bytes is above the pipe protocol's 4 GiB")
    header = HEADER.pack(length, kind)
    with _data_lock:  # type: ignore[union-attr]
        if length < 1 << 16:  # one write: whole even beside another thread's frames
            _write_all(_data_fd, b"".join((header,) + parts))
        else:
            _write_all(_data_fd, header)
            for part in parts:
                _write_all(_data_fd, part)


def _read_number(fd: int) -> Optional[int]:
    """The next task number from the control pipe; None at its end (exit)."""
    data = b""
    while len(data) < 8:
        chunk = os.read(fd, 8 - len(data))
        if not chunk:
            return None
        data += chunk
    return int(U64.unpack(data)[0])


def worker_main(status_fd: int, control_fd: int, data_fd: int, table: Dict[int, Any], entry: Any) -> None:
    """Runs in a worker child; never returns. Runs entry, then each task whose number
    the parent sends, looked up in table (the loop's queued tasks as they were at the
    fork), until the control pipe ends."""

    def body(task: Any) -> None:
        global _data_fd, _data_lock
        _data_fd, _data_lock = data_fd, threading.Lock()
        current = entry
        while True:
            seq, fn, args, kwargs = current.seq, current.fn, current.args, current.kwargs
            # The child's copy of the entry (and of everything that holds it, like the
            # future's cancel hook) lets go of the task's objects once it has run.
            current.fn = current.args = current.kwargs = None
            current = None
            data = run_task(fn, args, kwargs)
            fn = args = kwargs = None
            flush_std_streams()
            write_frame(KIND_RESULT, U64.pack(seq), data)
            data = None  # type: ignore[assignment]
            number = _read_number(control_fd)
            if number is None:
                break
            current = table.pop(number)
        flush_std_streams()
        lib.weft_child_exit(task, 0)  # does not return

    _in_child(status_fd, body)


def task_write_emit(topic: bytes, payload: bytes) -> int:
    """weft_task_emit for the child's task; in a worker, an 'E' frame on its data pipe."""
    if _data_fd >= 0:
        try:
            write_frame(KIND_EVENT, U32.pack(len(topic)), topic, payload)
        except BrokenPipeError:  # the parent is gone: weft.cancelled() says so
            pass
        return 0
    return int(lib.weft_task_emit(state.task, topic, payload, len(payload)))


def cancelled_in_child() -> bool:
    return bool(lib.weft_task_cancelled(state.task))

