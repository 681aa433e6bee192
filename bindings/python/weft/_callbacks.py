"""The registry of live registrations, the module-level ctypes trampolines, and the
reporting of exceptions raised by user callbacks.

Every weft registration is given one of the trampolines below (one per C callback
signature, created once at import, so no ctypes callback object is ever collected
while C holds it) and, as `user_data`, an integer key into `registry`. The entry under
that key holds the Python callable and its arguments. The free_fn trampoline pops it:
weft runs free_fn exactly once per registration, so an entry lives exactly as long
as its registration.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import threading
from typing import Any, Callable, Dict, Optional

from . import _ffi
from ._lib import held
from ._stats import TIMES, TIMES_OFFSET

logger = logging.getLogger("weft")

# key -> entry (an object with the methods its trampolines call).
registry: Dict[int, Any] = {}
_get_timing = held.weft_task_get_timing
_times = TIMES.unpack_from
_next_key = itertools.count(1).__next__  # 0 would be NULL user_data

# Per-thread state: `task` is (weft_task pointer, Loop) while a task's work runs here;
# `loop` is the Loop this thread runs (inside Loop.run or an attached loop's pass).
tls = threading.local()


class _ProcessState:
    """What a forked child knows about itself."""

    forked = False  # this process is a child forked from the one that imported weft
    task: Any = None  # the weft_task of a process task, in its child
    exiting = False  # the interpreter is exiting (the atexit handler has started)


state = _ProcessState()


def _after_fork_in_child() -> None:
    state.forked = True


os.register_at_fork(after_in_child=_after_fork_in_child)


def register(entry: Any) -> int:
    """Stores entry under a new key (the user_data of its registration)."""
    key = _next_key()
    registry[key] = entry
    return key


def discard(key: int) -> None:
    """Forgets the entry of a registration that failed (weft never calls its free_fn)."""
    registry.pop(key, None)


# ---- exceptions raised by callbacks ---------------------------------------------------

ErrorHandler = Callable[[BaseException, str], None]
_error_handler: Optional[ErrorHandler] = None


def set_error_handler(handler: Optional[ErrorHandler]) -> Optional[ErrorHandler]:
    """Sets the function that receives every exception raised by a callback (timers,
    posts, watches, subscribers, done-callbacks of futures): `handler(exc, context)`,
    where context says which callback raised. None restores the default, which logs
    the exception with its traceback to `logging.getLogger("weft")` at ERROR level.
    Returns the previous handler. Such an exception never stops the loop, except
    KeyboardInterrupt and SystemExit, which stop `Loop.run()` and are raised from it."""
    global _error_handler
    if handler is not None and not callable(handler):
        raise TypeError(f"set_error_handler: handler must be callable or None, not {type(handler).__name__}")
    previous, _error_handler = _error_handler, handler
    return previous


def report(exc: BaseException, context: str) -> None:
    """Hands exc to the error handler, or logs it. Never raises."""
    handler = _error_handler
    if handler is not None:
        try:
            handler(exc, context)
            return
        except BaseException as handler_exc:  # noqa: BLE001 - the handler must not kill us
            try:
                logger.error("weft: the error handler raised", exc_info=handler_exc)
            except BaseException:  # noqa: BLE001
                pass
    try:
        logger.error("weft: exception in %s", context, exc_info=exc)
    except BaseException:  # noqa: BLE001 - logging itself failed (interpreter exiting)
        pass


# ---- the trampolines -------------------------------------------------------------------

def _trampoline_failed(exc: BaseException, context: str) -> None:
    """A KeyboardInterrupt (a SIGINT handled between two lines of a trampoline) or a
    SystemExit goes to the loop this thread runs, which stops and raises it; anything
    else is reported."""
    loop = getattr(tls, "loop", None)
    if isinstance(exc, (KeyboardInterrupt, SystemExit)) and loop is not None:
        loop._callback_failed(exc, context)
    else:
        report(exc, context)


# Each looks its entry up and calls it. Entries catch their callables' exceptions
# themselves; the try here is a last line so nothing ever escapes into C (where ctypes
# would print it as "Exception ignored" and carry on).


def _on_call(lp: Any, rid: int, key: Optional[int]) -> None:  # weft_cb: posts and timers
    try:
        entry = registry.get(key)  # type: ignore[arg-type]
        if entry is not None:
            entry.fire()
    except BaseException as exc:  # noqa: BLE001
        _trampoline_failed(exc, "weft callback trampoline")


def _on_fd(lp: Any, rid: int, fd: int, events: int, key: Optional[int]) -> None:
    try:
        entry = registry.get(key)  # type: ignore[arg-type]
        if entry is not None:
            entry.fire_fd(fd, events)
    except BaseException as exc:  # noqa: BLE001
        _trampoline_failed(exc, "weft fd trampoline")


def _on_signal(lp: Any, rid: int, signum: int, key: Optional[int]) -> None:
    try:
        entry = registry.get(key)  # type: ignore[arg-type]
        if entry is not None:
            entry.fire_signal(signum)
    except BaseException as exc:  # noqa: BLE001
        _trampoline_failed(exc, "weft signal trampoline")


def _on_event(lp: Any, sub: int, topic: bytes, payload: Optional[int], length: int, key: Optional[int]) -> None:
    try:
        entry = registry.get(key)  # type: ignore[arg-type]
        if entry is not None:
            entry.fire_event(topic, payload, length)
    except BaseException as exc:  # noqa: BLE001
        _trampoline_failed(exc, "weft event trampoline")


def _on_work(task: Any, key: Optional[int]) -> int:
    try:
        entry = registry.get(key)  # type: ignore[arg-type]
        if entry is not None:
            return int(entry.work(task))
    except BaseException as exc:  # noqa: BLE001
        _trampoline_failed(exc, "weft work trampoline")
    return 0


def _on_done(lp: Any, rid: int, status: int, result: Any, length: int, key: Optional[int]) -> None:
    try:
        entry = registry.get(key)  # type: ignore[arg-type]
        if entry is not None:
            if entry.weft_timing:
                # A process task's times, which only weft knows and tells only here:
                # kept on its future before the entry settles it (its done-callbacks
                # see them). A successful read leaves weft_last_error alone, which the
                # entry's done reads next.
                buffer = entry.loop._timing
                if _get_timing(lp, rid, buffer.ref) == 0:
                    entry.future._timing_raw = _times(buffer.raw, TIMES_OFFSET)
            entry.done(status, result, length)
    except BaseException as exc:  # noqa: BLE001
        _trampoline_failed(exc, "weft done trampoline")


def _on_free(key: Optional[int]) -> None:
    try:
        entry = registry.pop(key, None)  # type: ignore[arg-type]
        if entry is None:
            report(RuntimeError(f"weft ran free_fn for key {key}, which is not registered "
                                "(a second free_fn for one registration?)"), "weft free trampoline")
            return
        entry.freed()
    except BaseException as exc:  # noqa: BLE001
        _trampoline_failed(exc, "weft free trampoline")


# A KeyboardInterrupt (SIGINT) is raised where Python next checks for signals, which
# can be the first line of a trampoline, before its try. ctypes then hands the exception
# to sys.unraisablehook and carries on; this hook (installed by the first Loop.run or
# attach, and chaining to the hook it replaces) gives a KeyboardInterrupt or SystemExit
# raised that way to the loop running on this thread, which stops and raises it from run().
_TRAMPOLINES = (_on_call, _on_fd, _on_signal, _on_event, _on_work, _on_done, _on_free)
_TRAMPOLINE_CODE = frozenset(fn.__code__ for fn in _TRAMPOLINES)
_previous_unraisablehook: Any = None


def _from_a_trampoline(unraisable: Any) -> bool:
    if unraisable.object in _TRAMPOLINES:
        return True
    tb = unraisable.exc_traceback  # Python 3.13 passes no object: look at the frames
    while tb is not None:
        if tb.tb_frame.f_code in _TRAMPOLINE_CODE:
            return True
        tb = tb.tb_next
    return False


def _unraisablehook(unraisable: Any) -> None:
    exc = unraisable.exc_value
    loop = getattr(tls, "loop", None)
    if isinstance(exc, (KeyboardInterrupt, SystemExit)) and loop is not None and _from_a_trampoline(unraisable):
        loop._callback_failed(exc, "a weft trampoline")
        return
    (_previous_unraisablehook or sys.__unraisablehook__)(unraisable)


def install_unraisablehook() -> None:
    global _previous_unraisablehook
    if sys.unraisablehook is not _unraisablehook:
        _previous_unraisablehook = sys.unraisablehook
        sys.unraisablehook = _unraisablehook


CALL = _ffi.weft_cb(_on_call)
FD = _ffi.weft_fd_cb(_on_fd)
SIGNAL = _ffi.weft_signal_cb(_on_signal)
EVENT = _ffi.weft_event_cb(_on_event)
WORK = _ffi.weft_work_fn(_on_work)
DONE = _ffi.weft_done_fn(_on_done)
FREE = _ffi.weft_free_fn(_on_free)
