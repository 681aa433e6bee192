#!/usr/bin/env python3
"""The Tornado user's own case: render a terminal recording to HTML without freezing
the server.

A recording of terminal frames (gzip, one JSON line per frame, with ANSI colours) is
rendered to HTML in a process task. The task is a closure that captures the client's
connection object, which holds a socket and a lock and so cannot be pickled: a
ProcessPoolExecutor could not even submit it. weft forks, so nothing is pickled but
the returned HTML. Meanwhile:

* a 10 ms heartbeat timer keeps running on the loop (its worst gap is printed at the
  end: the loop never waits for the render);
* the child reports its progress with loop.emit, which reaches the parent's
  subscriber, in order, before the result;
* the HTML is delivered to the connection by the future's done-callback, on the loop
  thread, as a server would write its response.

    python3 examples/python/log_playback.py [frames]
"""

import gzip
import html
import json
import os
import re
import socket
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "bindings", "python"))  # a checkout; else installed

import weft  # noqa: E402


# ---- the recording --------------------------------------------------------------------

def make_recording(path, frames):
    """Writes a gzip recording: a header line, then [seconds, "o", text] per frame."""
    colours = ["\x1b[32m", "\x1b[33m", "\x1b[31m", "\x1b[1;34m", ""]
    words = ["compiling", "linking", "testing", "warning:", "error:", "ok", "cache", "fetch"]
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(json.dumps({"version": 2, "width": 120, "height": 40}) + "\n")
        t = 0.0
        for i in range(frames):
            t += 0.004 + (i % 7) * 0.001
            colour = colours[i % len(colours)]
            text = f"{colour}[{i:06d}]\x1b[0m {words[i % len(words)]} step {i} <{'#' * (i % 30)}>\r\n"
            f.write(json.dumps([round(t, 4), "o", text]) + "\n")


# ---- rendering (runs in the child) ----------------------------------------------------

SGR = re.compile(r"\x1b\[([0-9;]*)m")
COLOURS = {"30": "black", "31": "red", "32": "green", "33": "olive", "34": "blue", "35": "purple",
           "36": "teal", "37": "gray"}


def ansi_to_html(text):
    out, open_span, pos = [], False, 0
    for match in SGR.finditer(text):
        out.append(html.escape(text[pos:match.start()]))
        pos = match.end()
        if open_span:
            out.append("</span>")
            open_span = False
        codes = [c for c in match.group(1).split(";") if c and c != "0"]
        if codes:
            style = ";".join("font-weight:bold" if c == "1" else f"color:{COLOURS.get(c, 'inherit')}"
                             for c in codes)
            out.append(f'<span style="{style}">')
            open_span = True
    out.append(html.escape(text[pos:]))
    if open_span:
        out.append("</span>")
    return "".join(out)


class Connection:
    """A client connection as a web server holds it: a socket, a lock, a handler.
    None of that pickles."""

    def __init__(self, sock, peer):
        self.sock = sock
        self.peer = peer
        self.lock = threading.Lock()
        self.on_close = lambda: None
        self.sent_on_thread = None

    def send_html(self, page):
        with self.lock:
            body = page.encode()
            self.sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            self.sent_on_thread = threading.get_ident()


def main():
    frames = int(sys.argv[1]) if len(sys.argv) > 1 else 150000
    workdir = tempfile.mkdtemp(prefix="weft-playback-")
    recording = os.path.join(workdir, "session.cast.gz")
    t0 = time.monotonic()
    make_recording(recording, frames)
    print(f"recording: {frames} frames, {os.path.getsize(recording) // 1024} KiB gzip "
          f"({time.monotonic() - t0:.2f} s to make)")

    server_end, client_end = socket.socketpair()
    conn = Connection(server_end, peer="client-1")
    received = []

    def client():  # the browser: reads the response
        chunks = []
        while True:
            data = client_end.recv(1 << 16)
            if not data:
                break
            chunks.append(data)
        received.append(b"".join(chunks))

    reader = threading.Thread(target=client)
    reader.start()

    with weft.Loop() as loop:
        # The heartbeat: every 10 ms, record how late it is.
        beats = []
        heartbeat = loop.call_every(0.010, lambda: beats.append(time.monotonic()))

        progress_seen = []

        def on_progress(topic, payload):
            percent = int(payload)
            progress_seen.append(percent)
            if percent % 25 == 0:
                print(f"  render progress {percent:3d}%  (heartbeats so far: {len(beats)})")

        progress = loop.subscribe("playback.progress", on_progress)

        # The task: a closure over `conn` (unpicklable) and `recording`.
        def render():
            lines = []
            with gzip.open(recording, "rt", encoding="utf-8") as f:
                header = json.loads(f.readline())
                body = f.readlines()
            step = max(1, len(body) // 100)
            for i, line in enumerate(body):
                at, _, text = json.loads(line)
                lines.append(f'<div data-t="{at}">{ansi_to_html(text.rstrip())}</div>')
                if i % step == 0:
                    loop.emit("playback.progress", str(min(100, i * 100 // len(body))))
            loop.emit("playback.progress", "100")
            return (f"<!doctype html><title>session for {html.escape(conn.peer)}</title>"
                    f'<pre style="width:{header["width"]}ch">' + "\n".join(lines) + "</pre>")

        started = time.monotonic()
        future = loop.spawn(render, on="process", timeout=60)

        def deliver(fut):
            # On the loop thread: the connection object is the parent's own.
            conn.send_html(fut.result())
            server_end.shutdown(socket.SHUT_WR)
            heartbeat.cancel()
            progress.cancel()
            print(f"rendered in a forked child in {time.monotonic() - started:.2f} s; "
                  f"{len(fut.result()) // 1024} KiB of HTML sent to {conn.peer}")

        future.add_done_callback(deliver)
        loop_thread = threading.get_ident()
        loop.run()

    reader.join(10)
    server_end.close()
    client_end.close()

    gaps = sorted(b - a for a, b in zip(beats, beats[1:]))
    response = received[0] if received else b""
    print(f"heartbeat: {len(beats)} beats of 10 ms while rendering; worst gap {gaps[-1] * 1000:.1f} ms, "
          f"p99 gap {gaps[int(len(gaps) * 0.99)] * 1000:.1f} ms")
    print(f"progress events: {len(progress_seen)}, in order: {progress_seen == sorted(progress_seen)}")
    print(f"delivered on the loop thread: {conn.sent_on_thread == loop_thread}; "
          f"client got {len(response) // 1024} KiB, starts {response[:15]!r}")
    ok = (response.startswith(b"HTTP/1.1 200 OK") and b"session for client-1" in response
          and progress_seen[-1] == 100 and conn.sent_on_thread == loop_thread)
    os.remove(recording)
    os.rmdir(workdir)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
