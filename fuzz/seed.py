#!/usr/bin/env python3
"""Writes the hand-made seed inputs of each fuzz target into fuzz/corpus/<target>/
(named seed-*), and the inputs on which a target once failed (named found-*, each kept
as a regression test once its bug was fixed). The fuzzers grow the corpus from them;
`make fuzz-cmin` keeps it small and writes these again. The input formats are described
in src/fuzzing/."""

import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def frame(kind, body):
    return struct.pack("<I", len(body)) + kind + body


def event(topic, payload):
    return frame(b"E", struct.pack("<I", len(topic)) + topic + payload)


def status(n):
    return frame(b"S", struct.pack("<i", n))


def frames_seeds():
    task = frame(b"W", b"hello ") + event(b"a.b", b"payload") + frame(b"W", b"") + frame(b"W", b"world") + status(7)
    ready = status(0) + frame(b"R", b"")
    streams = {
        "task": task,
        "reuse": frame(b"W", b"one") + ready + frame(b"W", b"two") + status(1) + frame(b"R", b""),
        "ready-then-bytes": ready + frame(b"W", b"x"),
        "ready-then-partial": ready + b"\x01\x00",
        "unknown-kind": frame(b"X", b"\x00"),
        "status-3": b"\x03\x00\x00\x00S\x00\x00\x00",
        "event-short": b"\x02\x00\x00\x00E\x00\x00",
        "event-overrun": b"\x05\x00\x00\x00E\x09\x00\x00\x00x",
        "event-star": event(b"*", b""),
        "event-nul": event(b"a\x00b", b"p"),
        "event-utf8": event(b"\xff", b"\x01"),
        "event-empty-topic": event(b"", b"p"),
        "after-status": status(0) + frame(b"W", b""),
        "ready-first": frame(b"R", b""),
        "huge-result": b"\xff\xff\xff\xffW",
        "max-result": struct.pack("<I", 16 << 20) + b"W" + b"abc",
        "max-event": struct.pack("<I", 16 << 20) + b"E" + b"\x01\x00\x00\x00a",
        "over-max": struct.pack("<I", (16 << 20) + 1) + b"W",
    }
    seeds = {}
    for name, stream in streams.items():
        seeds[name] = b"\x00" + stream  # one chunk
        seeds[name + "-bytes"] = bytes([1 << 1]) + b"\x00" + stream  # byte by byte
        seeds[name + "-reuse-3-5"] = bytes([1 | 2 << 1, 2, 4]) + stream
    seeds["reuse-split-at-ready"] = bytes([1 | 2 << 1, 14, 255]) + streams["reuse"]
    return seeds


def topics_seeds():
    def items(n, *parts):
        return bytes([n]) + b"\xff".join(parts)

    return {
        "basic": items(3, b"a.*", b"*", b"a.b", b"a", b"a.b", b"ab", b"a.", b"b.a"),
        "invalid": items(4, b"", b"a*", b".*", b"*.a", b"a", b"", b"*", b"a*b"),
        "nul": items(2, b"a\x00b", b"a.*\x00x", b"a", b"a.b", b"a\x00c"),
        "dots": items(4, b"..*", b"a..*", b"a.b.*", b".", b"..", b"...", b"a..", b"a.b.c", b"."),
        "utf8": items(2, "é.*".encode(), b"\xc3", "é.x".encode(), b"\xc3\x28", "é".encode()),
    }


def api_seeds():
    RUN, STOP, POST, AFTER, EVERY, SUB, EMIT, WATCH, MODIFY, SPAWN, CANCEL, LIMIT, BAD, SOCK, IDLE, FOREIGN, SIG = range(17)
    seeds = {
        "posts": [0, POST, 9, POST, 3, POST, 0, RUN, IDLE, POST, 1, 0, RUN],
        "timers": [0, AFTER, 0, 9, AFTER, 2, 9, EVERY, 1, 0, EVERY, 2, 9, RUN, CANCEL, 3, 1, IDLE, RUN, AFTER, 4, 9],
        "topics": [0, SUB, 0, 9, SUB, 2, 9, SUB, 4, 0, SUB, 8, 9, EMIT, 1, EMIT, 2, EMIT, 5, RUN, EMIT, 0, RUN, IDLE],
        "watch": [0, WATCH, 0, 1, 1, 9, WATCH, 2, 2, 1, 9, SOCK, 1, 3, RUN, SOCK, 2, RUN, SOCK, 4, RUN,
                  MODIFY, 0, 0, 1, RUN, WATCH, 3, 1, 1, 9, WATCH, 5, 1, 1, 9],
        "tasks": [1, SPAWN, 0, 0, 5, 3, 1, 2, 3, 1, SPAWN, 1, 1, 6, 4, 1, 2, 3, 4, 2, SPAWN, 2, 2, 7, 0, 3,
                  SPAWN, 4, 0, 1, 0, 0, SPAWN, 2, 3, 1, 0, 0, RUN, CANCEL, 3, 0, RUN],
        "cancels": [0, POST, 9, AFTER, 2, 9, SPAWN, 2, 1, 1, 0, 0, CANCEL, 3, 0, CANCEL, 3, 1, CANCEL, 3, 2,
                    CANCEL, 0, CANCEL, 2, 0, 5, CANCEL, 1, 1, 2, 3, 4, 5, 6, 7, 8, RUN, IDLE],
        "callbacks": [1, POST, 0, POST, 1, 0, POST, 2, 1, POST, 3, POST, 4, POST, 5, 1, SUB, 0, 2, 3, EMIT, 0,
                      RUN, RUN, RUN, IDLE],
        "bad": [0] + [x for i in range(12) for x in (BAD, i, 5, 5, 5, 5, 5, 5, 5, 5)],
        "foreign": [0, AFTER, 2, 9, FOREIGN, 0, FOREIGN, 1, SIG, 0, SIG, 3, SIG, 1, RUN, IDLE],
        "limit": [0, LIMIT, 2, POST, 9, POST, 9, EMIT, 0, SUB, 0, 9, RUN, LIMIT, 0, RUN, STOP, IDLE],
    }
    return {name: bytes(ops) for name, ops in seeds.items()}


# Inputs on which a target failed, as found (hex), by target.
FOUND = {
    "api_sequence": {
        # A timer's callback cancels an fd watch in the pass that reports the fd: the
        # loop took the stale report for a polluted set and rebuilt it (fixed).
        "watch-cancelled-in-its-pass": "000700ffef02010300010902040100ffef02090302090001070202020201090d0103"
        "000109020201090d0107020201090d890d0107020201090d0103090601010000",
    },
}


def main():
    for target, seeds in (("frame_decoder", frames_seeds()), ("topic_pattern", topics_seeds()),
                          ("api_sequence", api_seeds())):
        os.makedirs(os.path.join(ROOT, target), exist_ok=True)
        inputs = {"seed-" + name: data for name, data in seeds.items()}
        inputs.update({"found-" + name: bytes.fromhex(text) for name, text in FOUND.get(target, {}).items()})
        for name, data in inputs.items():
            with open(os.path.join(ROOT, target, name), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
