"""Process tasks: the child's side (run fn, pickle only its outcome, hand it to weft),
and the parent's rebuilding of that outcome.

The parent forks with os.fork() (so Python's own fork hooks run), closes the write end
and hands the child to weft_adopt_child, which supervises it like a WEFT_ON_PROCESS task
(see _loop.Loop._fork). The child gets a weft_task with weft_child_task(write_fd),
through which loop.emit (weft_task_emit) and the result (weft_task_write) reach the
parent, and always ends with weft_child_exit or os._exit: no atexit handler, no
finalizer and no flush of inherited buffers runs in it.
"""

from __future__ import annotations

import gc
import os
import pickle
import sys
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


def child_main(write_fd: int, fn: Callable[..., Any], args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> None:
    """Runs in the forked child; never returns."""
    try:
        # Everything inherited goes to the collector's permanent generation: the child's
        # collections then never walk (and so never copy-on-write) the parent's objects.
        gc.freeze()
        task = lib.weft_child_task(write_fd)
        if not task:
            os._exit(EXIT_NO_TASK)
        state.task = task
        try:
            value = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - everything goes to the parent
            data = pickle.dumps((False, describe(exc)), pickle.HIGHEST_PROTOCOL)
        else:
            try:
                data = pickle.dumps((True, value), pickle.HIGHEST_PROTOCOL)
            except BaseException as exc:  # noqa: BLE001
                note = f"(the return value of {fn!r}, a {type(value).__name__}, could not be pickled)"
                data = pickle.dumps((False, describe(exc, note)), pickle.HIGHEST_PROTOCOL)
        flush_std_streams()
        lib.weft_task_write(task, data, len(data))
        lib.weft_child_exit(task, 0)  # does not return
    except BaseException:  # noqa: BLE001
        try:
            traceback.print_exc()
            flush_std_streams()
        except BaseException:  # noqa: BLE001
            pass
    finally:
        os._exit(EXIT_FAILED)


def task_write_emit(topic: bytes, payload: bytes) -> int:
    """weft_task_emit for the child's task."""
    return int(lib.weft_task_emit(state.task, topic, payload, len(payload)))


def cancelled_in_child() -> bool:
    return bool(lib.weft_task_cancelled(state.task))

