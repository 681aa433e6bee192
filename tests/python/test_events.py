"""subscribe and emit: patterns, payload types, threads, bad input."""

import threading

import pytest

import weft
from conftest import run


def collect(loop, pattern):
    got = []
    handle = loop.subscribe(pattern, lambda topic, payload: got.append((topic, payload)))
    return got, handle


def test_exact_prefix_and_star_patterns(loop):
    exact, h1 = collect(loop, "job.done")
    prefix, h2 = collect(loop, "job.*")
    star, h3 = collect(loop, "*")
    for topic in ("job.done", "job.a.b", "job", "other"):
        loop.emit(topic, topic)
    loop.call_soon(lambda: [h.cancel() for h in (h1, h2, h3)])
    run(loop)
    assert exact == [("job.done", b"job.done")]
    assert prefix == [("job.done", b"job.done"), ("job.a.b", b"job.a.b")]
    assert [t for t, _ in star] == ["job.done", "job.a.b", "job", "other"]


def test_payload_types(loop):
    got, handle = collect(loop, "p")
    loop.emit("p", b"bytes")
    loop.emit("p", "str \u00e9")
    loop.emit("p", bytearray(b"ba"))
    loop.emit("p", memoryview(b"mv"))
    loop.emit("p")
    loop.emit("p", b"\x00\xff" * 1000)
    loop.call_soon(handle.cancel)
    run(loop)
    assert [p for _, p in got] == [b"bytes", "str \u00e9".encode(), b"ba", b"mv", b"", b"\x00\xff" * 1000]


def test_payload_that_is_neither_bytes_nor_str(loop):
    for bad in (None, 1, 1.5, ["x"], {"a": 1}, object()):
        with pytest.raises(TypeError, match="payload must be bytes or str"):
            loop.emit("p", bad)


def test_bad_topics_and_patterns(loop):
    with pytest.raises(TypeError):
        loop.emit(1, b"")
    with pytest.raises(TypeError):
        loop.subscribe(None, print)
    with pytest.raises(ValueError):
        loop.emit("a\0b", b"")
    with pytest.raises(weft.InvalidArgument, match="topic"):
        loop.emit("", b"")
    with pytest.raises(weft.InvalidArgument):
        loop.emit("job.*", b"")
    with pytest.raises(weft.InvalidArgument):
        loop.subscribe("", print)
    with pytest.raises(weft.InvalidArgument):
        loop.subscribe("a*b", print)
    with pytest.raises(TypeError):
        loop.subscribe("a", "not callable")
    with pytest.raises(ValueError):
        loop.emit("\ud800", b"")  # not encodable as UTF-8


def test_emit_from_other_threads_keeps_each_threads_order(loop):
    got, handle = collect(loop, "t.*")

    def producer(n):
        for i in range(500):
            loop.emit(f"t.{n}", str(i))

    threads = [threading.Thread(target=producer, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    loop.call_soon(handle.cancel)
    run(loop)
    assert len(got) == 1500
    for n in range(3):
        assert [int(p) for t, p in got if t == f"t.{n}"] == list(range(500))


def test_subscriber_can_cancel_itself_and_emit(loop):
    got = []

    def on_event(topic, payload):
        got.append(topic)
        if topic == "a":
            loop.emit("b", b"")
            handle.cancel()

    handle = loop.subscribe("*", on_event)
    loop.emit("a", b"")
    run(loop)
    assert got == ["a"]  # cancelled before "b" was delivered
    assert not handle.active


def test_a_raising_subscriber_is_reported(loop, errors):
    handle = loop.subscribe("x", lambda t, p: {}["missing"])
    loop.emit("x", b"")
    loop.call_soon(handle.cancel)
    run(loop)
    assert errors.types() == [KeyError]
    assert "subscriber" in errors[0][1]
    errors.clear()
