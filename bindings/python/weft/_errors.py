"""weft's exceptions, and the conversion of a failed C call into one of them."""

from __future__ import annotations

import concurrent.futures
import ctypes
from typing import Dict, Optional, Type

from . import _ffi
from ._lib import lib


class Error(Exception):
    """A weft call failed. `code` is the C `weft_result` (negative), and the message is
    `weft_last_error()`, which names the function, the argument and the value."""

    code: int = 0

    def __init__(self, message: str, code: Optional[int] = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class InvalidArgument(Error, ValueError):
    """An argument is out of range or malformed (WEFT_ERR_INVALID, WEFT_ERR_NULL)."""

    code = _ffi.WEFT_ERR_INVALID


class NotFound(Error, LookupError):
    """An id names no live registration of the loop (WEFT_ERR_NOT_FOUND)."""

    code = _ffi.WEFT_ERR_NOT_FOUND


class Closed(Error, RuntimeError):
    """The loop is closed or being closed (WEFT_ERR_CLOSED)."""

    code = _ffi.WEFT_ERR_CLOSED


class Busy(Error, RuntimeError):
    """The loop is already running, or a limit is reached (WEFT_ERR_BUSY)."""

    code = _ffi.WEFT_ERR_BUSY


class ChildCrashed(Error):
    """A process task's child died without a result: killed by a signal, or exited
    before reporting. The message names the signal or the exit code."""

    code = _ffi.WEFT_ERR_CRASHED


class Panic(Error):
    """weft caught a panic inside itself (a bug in weft: please report it)."""

    code = _ffi.WEFT_ERR_PANIC


class SystemCallFailed(Error, OSError):
    """A system call failed (WEFT_ERR_IO): out of fds or processes, a closed fd..."""

    code = _ffi.WEFT_ERR_IO


class Unsupported(Error, NotImplementedError):
    """Not supported on this platform or in this build (WEFT_ERR_UNSUPPORTED)."""

    code = _ffi.WEFT_ERR_UNSUPPORTED


class Forked(Error, RuntimeError):
    """Called in a forked child (a process task) where only `loop.emit` and
    `weft.cancelled()` work (WEFT_ERR_FORKED)."""

    code = _ffi.WEFT_ERR_FORKED


class ProcessTaskError(Error):
    """A process task raised an exception the parent could not rebuild as its own type
    (a class defined inside a function, or whose constructor rejects its args). The
    message is "module.Class: message"; the child's traceback is the __cause__."""


class RemoteTraceback(Exception):
    """The traceback text of an exception raised in a process task's child, attached
    as the __cause__ of the exception the parent raises, so that it is printed too."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return "\n\n" + self.text.rstrip("\n")


if concurrent.futures.TimeoutError is TimeoutError:  # Python >= 3.11
    TaskTimeout: Type[BaseException] = TimeoutError
else:  # Python 3.9, 3.10: be both

    class TaskTimeout(TimeoutError, concurrent.futures.TimeoutError):  # type: ignore[no-redef,misc]
        """A task's timeout expired (TimeoutError, and concurrent.futures.TimeoutError)."""


_BY_CODE: Dict[int, Type[Error]] = {
    _ffi.WEFT_ERR_NULL: InvalidArgument,
    _ffi.WEFT_ERR_INVALID: InvalidArgument,
    _ffi.WEFT_ERR_NOT_FOUND: NotFound,
    _ffi.WEFT_ERR_CLOSED: Closed,
    _ffi.WEFT_ERR_BUSY: Busy,
    _ffi.WEFT_ERR_CRASHED: ChildCrashed,
    _ffi.WEFT_ERR_PANIC: Panic,
    _ffi.WEFT_ERR_IO: SystemCallFailed,
    _ffi.WEFT_ERR_UNSUPPORTED: Unsupported,
    _ffi.WEFT_ERR_FORKED: Forked,
}


def last_error() -> str:
    """This thread's last weft error message ("" if none)."""
    n = lib.weft_last_error(None, 0)
    if n == 0:
        return ""
    buf = ctypes.create_string_buffer(n + 1)
    lib.weft_last_error(buf, n + 1)
    return buf.value.decode("utf-8", "replace")


def error_from(code: Optional[int] = None, fallback: str = "") -> Error:
    """The exception for this thread's last failed call (`code` defaults to
    `weft_last_error_code()`)."""
    if code is None or code >= 0:
        code = lib.weft_last_error_code()
    message = last_error() or fallback or lib.weft_strerror(code).decode()
    cls = _BY_CODE.get(code, Error)
    return cls(message, code)


def check(rc: int) -> int:
    """Raises the exception for a negative `weft_result`; returns rc otherwise."""
    if rc < 0:
        raise error_from(rc)
    return rc
