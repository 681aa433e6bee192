"""What Loop's registrations return (Handle, Watch), and the registry entry of a post,
timer, watch or subscription (see _callbacks)."""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING, Any, Callable, Optional, Tuple

from ._args import _int_arg
from ._errors import Closed, check
from ._lib import held

if TYPE_CHECKING:
    from ._loop import Loop

_string_at = ctypes.string_at


class Handle:
    """A registration on a loop: a call_soon / call_later / call_every callback, a
    subscription, or a watch. `cancel()` ends it. (call_soon's and call_later's are
    the subclasses in _soon and _later.)"""

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
        """weft's id of the registration (0 while it is being made). The handles of
        call_soon and call_later, which share weft registrations (see _soon, _later),
        have ids the binding gives them, unique in the process."""
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
