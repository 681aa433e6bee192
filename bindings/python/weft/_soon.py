"""The call_soon queue: Loop.call_soon's calls wait in a Python deque, and the loop
runs them in one weft post per batch, so a call costs no ctypes round trip.

The protocol (every step is one operation under the GIL; threads may switch between
any two of them):

* Producer (any thread, Loop.call_soon): puts the handle in `loop._soon_live` (the
  dict that says which queued calls may still run; its value is the call: fn alone
  when there are no arguments, else the tuple (fn, args), so the common call makes one
  object the garbage collector tracks, the handle, not two), appends it to
  `loop._soon`, then reads `loop._soon_armed`. If it is False, `arm()` takes the
  loop's lock, sets it True and makes one `weft_post` of the drain (`_Drain.fire`).
* Consumer (the loop thread, in the post's callback): `drain()` sets `_soon_armed`
  False first, then runs the calls that were queued at that moment (later ones wait
  for the next pass, as posts made during a pass do). A call appended after the
  consumer read the queue's length was appended before its producer read the flag,
  which the consumer had cleared already: that producer arms a new drain. So a
  queued call always has a drain ahead of it (an extra drain that finds nothing is
  harmless), and the loop's run() does not return while calls are queued.
* Run or cancel: whoever pops the handle from `_soon_live` owns its call (dict.pop is
  one atomic step): the drain runs it, `Handle.cancel()` returns True. Each call runs
  at most once, and is released (its fn and args dropped) exactly once: by the pop.
* Close: `release_all()` (in Loop._free, lock held) leaves `_soon_armed` False for good
  (only `arm()` sets it, under the lock, on an open loop) and releases what is
  queued. A producer that appends after that reads False, so `arm()` finds the loop
  closed, releases the queue again and raises Closed.

The order is the deque's: FIFO, so each thread's calls run in the order it made them.
"""

from __future__ import annotations

import itertools
import weakref
from typing import TYPE_CHECKING, Callable, Optional

from . import _ffi
from ._callbacks import CALL, discard, register
from ._errors import error_from
from ._handles import Handle
from ._lib import held

if TYPE_CHECKING:
    from ._loop import Loop

_post = held.weft_post
_NO_FREE = _ffi.weft_free_fn()  # NULL: the drain entry lives as long as its loop
# Ids of the binding's own handles (call_soon, call_later), which have no weft id of
# their own; odd numbers above 2**62, so they never equal one of weft's small ids.
_next_id = itertools.count((1 << 62) + 1, 2).__next__


class SoonHandle(Handle):
    """The Handle of a call_soon (and of the loop's internal posts). Each loop has a
    subclass of its own whose class attribute `_loop_ref` is a weak reference to the
    loop, so a handle is made with no Python __init__; the call itself (fn, or (fn, args)) is
    the handle's value in `loop._soon_live` while it waits."""

    __slots__ = ()
    __init__ = object.__init__  # type: ignore[assignment]

    @property
    def id(self) -> int:
        rid = getattr(self, "_id", 0)
        if not rid:
            rid = self._id = _next_id()
        return rid

    _loop_ref: "Callable[[], Optional[Loop]]"

    @property
    def active(self) -> bool:
        loop = self._loop_ref()
        return loop is not None and self in loop._soon_live

    def cancel(self) -> bool:
        loop = self._loop_ref()
        return loop is not None and loop._soon_live.pop(self, None) is not None


class _Drain:
    """The registry entry of a loop's drain posts (one key per loop, no free_fn)."""

    __slots__ = ("loop",)

    def __init__(self, loop: "Loop") -> None:
        self.loop = loop

    def fire(self) -> None:
        drain(self.loop)

    def freed(self) -> None:
        pass


def setup(loop: "Loop") -> None:
    """Gives a new loop its queue."""
    from collections import deque

    loop._soon_handle = type("SoonHandle", (SoonHandle,), {"__slots__": (), "_loop_ref": weakref.ref(loop)})
    loop._soon = deque()
    loop._soon_live = {}
    loop._soon_armed = False
    loop._soon_ok = True  # open, and not in a forked child: call_soon's one check
    loop._soon_key = register(_Drain(loop))


def arm(loop: "Loop", handle: SoonHandle, what: str) -> None:
    """Posts a drain (the producer found `_soon_armed` False). On a closed loop, releases
    the queue and raises Closed."""
    with loop._lock:
        if loop._closed or loop._ptr is None:
            release_all(loop)
            raise loop._unusable(what)
        if loop._soon_armed:
            return
        loop._soon_armed = True
        rid = _post(loop._ptr, CALL, loop._soon_key, _NO_FREE)
        if not rid:
            loop._soon_armed = False
            err = error_from()
            loop._soon_live.pop(handle, None)
            raise err


def drain(loop: "Loop") -> None:
    """Runs the calls queued when it starts (the loop thread, in a post's callback)."""
    loop._soon_armed = False
    queue, live = loop._soon, loop._soon_live
    popleft, pop = queue.popleft, live.pop
    failed = loop._callback_failed
    try:
        for _ in range(len(queue)):
            call = pop(popleft(), None)
            if call is not None:
                try:
                    if type(call) is tuple:
                        call[0](*call[1])
                    else:
                        call()
                except BaseException as exc:  # noqa: BLE001
                    fn = call[0] if type(call) is tuple else call
                    failed(exc, f"call_soon callback {fn!r}")
    except IndexError:  # emptied by release_all (the loop closed)
        pass
    except BaseException:
        # A KeyboardInterrupt raised between two calls: the rest run in a later pass.
        if queue and not loop._closed:
            try:
                arm(loop, queue[0], "call_soon")
            except BaseException:  # noqa: BLE001
                pass
        raise


def release_all(loop: "Loop") -> None:
    """Releases every queued call (the loop is closed or closing; its lock is held)."""
    loop._soon_armed = False
    queue, live = loop._soon, loop._soon_live
    queue.clear()
    live.clear()


def forget(loop: "Loop") -> None:
    """The loop is freed: its drain entry goes (weft never runs a free_fn for it)."""
    discard(loop._soon_key)
