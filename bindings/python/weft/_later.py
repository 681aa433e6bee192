"""call_later's timers: one weft timer per millisecond that has timers due, not one per
call_later, so a timer costs no ctypes round trip to make and none to fire.

A call_later's deadline is rounded up to a whole millisecond of the monotonic clock
(`time.monotonic()`, the clock weft's timers use): its bucket. `loop._buckets` maps
each such millisecond to a `Bucket`, an insertion-ordered dict of the handles due
then, and `loop._bucket_heap` holds the bucket milliseconds in order. The first timer
of a bucket arms one `weft_timer_after` for it, of the whole milliseconds from now to
the bucket's deadline, rounded up, so it never fires early.

* Order: when a bucket's weft timer fires, every bucket up to its millisecond runs, in
  millisecond order (an earlier bucket whose own weft timer has not fired yet runs
  too: it is due), and each bucket's timers in the order they were made.
* Run or cancel: whoever pops the handle from its bucket owns it (dict.pop is one
  atomic step under the GIL): the firing loop thread runs it, `Handle.cancel()`
  returns True. A cancel that empties a bucket that is still waiting also cancels its
  weft timer, so an idle `Loop.run()` returns as it did with one weft timer each.
* Locking: buckets are made, taken for firing and removed under the loop's lock, so a
  timer is never added to a bucket whose weft timer has fired or been cancelled.
* Close: `release_all()` (Loop._free) releases every timer still waiting, once.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Tuple

from ._callbacks import CALL, FREE, discard, register
from ._errors import error_from
from ._handles import Handle
from ._lib import held
from ._soon import _next_id

if TYPE_CHECKING:
    from ._loop import Loop

_timer_after = held.weft_timer_after
_cancel = held.weft_cancel


class TimerHandle(Handle):
    """The Handle of a call_later."""

    __slots__ = ("_fn", "_args", "_bucket")

    def __init__(self, loop: "Loop", fn: Callable[..., Any], args: Tuple[Any, ...]) -> None:
        self._loop = loop
        self._id = 0
        self._active = True
        self._fn = fn
        self._args = args

    @property
    def id(self) -> int:
        if not self._id:
            self._id = _next_id()
        return self._id

    def cancel(self) -> bool:
        bucket: Optional[Bucket] = getattr(self, "_bucket", None)
        if bucket is None or bucket.pop(self, None) is None:
            return False
        self._release()
        if not bucket:
            bucket.emptied()
        return True

    def _release(self) -> None:
        self._active = False
        self._fn = self._args = None  # type: ignore[assignment]

    def _run(self) -> None:
        fn, args = self._fn, self._args
        self._fn = self._args = None  # type: ignore[assignment]
        try:
            fn(*args)
        except BaseException as exc:  # noqa: BLE001
            self._loop._callback_failed(exc, f"call_later callback {fn!r}")
        self._active = False


class Bucket(dict):  # type: ignore[type-arg]
    """The timers due in one millisecond (handle -> True), and the registry entry of
    its weft timer."""

    __slots__ = ("loop", "ms", "rid")

    def fire(self) -> None:
        loop = self.loop
        with loop._lock:
            due = _take_due(loop, self.ms)
        for i, bucket in enumerate(due):
            try:
                bucket.run()
            except BaseException:
                # A KeyboardInterrupt between two timers: the rest run in a later pass.
                with loop._lock:
                    for rest in due[i:]:
                        if rest and loop._ptr is not None and not loop._closed:
                            _put_back(loop, rest)
                raise

    def run(self) -> None:
        pop = self.pop
        for handle in list(self):
            if pop(handle, None) is not None:
                handle._run()

    def emptied(self) -> None:
        """A cancel emptied the bucket: if it still waits, its weft timer goes."""
        loop = self.loop
        with loop._lock:
            if self or loop._buckets.get(self.ms) is not self:
                return
            del loop._buckets[self.ms]
            if loop._ptr is not None:
                _cancel(loop._ptr, self.rid)

    def freed(self) -> None:
        pass


def setup(loop: "Loop") -> None:
    loop._buckets = {}
    loop._bucket_heap = []


def bucket_for(loop: "Loop", ms: int, now: float) -> Bucket:
    """The bucket of millisecond ms, made (and its weft timer armed) if there is none.
    The loop's lock is held; now is time.monotonic() at the call_later."""
    bucket = loop._buckets.get(ms)
    if bucket is not None:
        return bucket
    bucket = Bucket()
    bucket.loop = loop
    bucket.ms = ms
    _arm(loop, bucket, ms - now * 1000.0)
    loop._buckets[ms] = bucket
    heap = loop._bucket_heap
    heapq.heappush(heap, ms)
    if len(heap) > 64 and len(heap) > 2 * len(loop._buckets):  # cancelled buckets' stale entries
        heap[:] = sorted(loop._buckets)
    return bucket


def _arm(loop: "Loop", bucket: Bucket, delay_ms: float) -> None:
    whole = int(delay_ms)
    if whole < delay_ms:
        whole += 1
    key = register(bucket)
    rid = _timer_after(loop._ptr, max(whole, 0), CALL, key, FREE)
    if not rid:
        err = error_from()
        discard(key)
        raise err
    bucket.rid = rid


def _take_due(loop: "Loop", ms: int) -> List[Bucket]:
    """Removes and returns the buckets up to millisecond ms, in order (lock held)."""
    heap, buckets = loop._bucket_heap, loop._buckets
    due = []
    while heap and heap[0] <= ms:
        bucket = buckets.pop(heapq.heappop(heap), None)
        if bucket is not None:
            due.append(bucket)
    return due


def _put_back(loop: "Loop", bucket: Bucket) -> None:
    """Makes a taken bucket wait again, due at once (lock held)."""
    if loop._buckets.get(bucket.ms) is not None:  # a new bucket of that ms: merge
        target = loop._buckets[bucket.ms]
        for handle in list(bucket):
            if bucket.pop(handle, None) is not None:
                target[handle] = True
                handle._bucket = target
        return
    _arm(loop, bucket, 0)
    loop._buckets[bucket.ms] = bucket
    heapq.heappush(loop._bucket_heap, bucket.ms)


def release_all(loop: "Loop") -> None:
    """Releases every waiting timer (the loop is being freed; its lock is held)."""
    buckets, loop._buckets, loop._bucket_heap = loop._buckets, {}, []
    for bucket in buckets.values():
        for handle in list(bucket):
            if bucket.pop(handle, None) is not None:
                handle._release()
