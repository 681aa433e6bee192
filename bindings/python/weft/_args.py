"""The checks of the arguments of the public API: each raises TypeError or ValueError
naming the call and the argument."""

from __future__ import annotations

import math
from typing import Any

_ceil = math.ceil


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
