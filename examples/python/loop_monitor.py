#!/usr/bin/env python3
"""Watching a weft loop at work: `loop.stats()`, the slow-callback watchdog and task
timings, plotted.

A demo server on one weft loop, for about five seconds:

* a 10 ms heartbeat timer (the loop's pulse: how late it runs is what clients feel);
* "client requests" every 50 ms, each compressing a log chunk in a thread task;
* three "renders" of a terminal recording in process tasks (a second or so of CPU in a
  child each, 10 MB of HTML back; at most one per core at a time, so the third waits);
* one deliberately blocking callback: `time.sleep(0.3)` in a timer callback, at 2 s.

`set_watchdog(0.1)` reports the blocking callback while it still sleeps, with the loop
thread's stack (the line that blocks), and again when it returns. A sampler thread reads
`loop.stats()` every 100 ms (any thread may: it does not stop the loop), and at the end
the demo plots timer lateness (p50, p99 and max over weft's window of the last 1024
timer calls) and the loop's utilisation per 100 ms into a PNG, the blocked interval
marked, and prints the tasks' queueing delay against their run time (`Future.timing`).
A callback still running counts as busy up to each read, so the blocked interval shows
as busy while it lasts.

    python3 examples/python/loop_monitor.py [out.png] [--seconds 5]

The PNG goes to build/loop_monitor.png by default. It needs matplotlib (`make demo`
installs it into .venv/); without it the demo runs and says it skipped the plot.
"""

import argparse
import os
import statistics
import sys
import threading
import time
import unicodedata
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "bindings", "python"))  # a checkout; else installed

import weft  # noqa: E402

SAMPLE_EVERY = 0.1  # seconds between two loop.stats()
BLOCK_AT = 2.0  # when the blocking callback runs, seconds after the start
BLOCK_FOR = 0.3
RENDERS_AT = (0.2, 1.2, 2.6)
RENDER_FRAMES = 100_000


# ---- the work ---------------------------------------------------------------------------

def render(frames):
    """A terminal recording's frames to HTML, cell by cell (wide characters take two
    cells): half a second of CPU or more for 100,000 frames, some 10 MB of HTML. Runs
    in a forked child (a process task)."""
    words = ["compiling", "linking", "testing", "warning:", "error:", "ok", "cache", "fetch", "résumé", "日本語"]
    colours = ["green", "olive", "red", "blue", "gray"]
    width_of = unicodedata.east_asian_width
    out = []
    for i in range(frames):
        text = f"[{i:06d}] {words[i % 10]} step {i} <{'#' * (i % 30)}> {words[(i * 7) % 10]}"
        cells, col = [], 0
        for ch in text:
            w = 2 if width_of(ch) in ("W", "F") else 1
            if col + w > 40:
                cells.append("<br>")
                col = 0
            col += w
            cells.append("&lt;" if ch == "<" else "&gt;" if ch == ">" else "&amp;" if ch == "&" else ch)
        out.append(f'<div class="t" style="color:{colours[i % 5]}">{"".join(cells)}</div>\n')
    return "".join(out).encode()


LOG_CHUNK = b"".join(b"%06d GET /recordings/%d 200 %d ms\n" % (i, i % 97, i % 13) for i in range(30_000))


def compress(chunk):
    """A client's log chunk, compressed (a thread task: zlib lets go of the GIL)."""
    return len(zlib.compress(chunk, 6))


def block_the_loop():
    """The bug the watchdog is for: a blocking call inside a loop callback."""
    time.sleep(BLOCK_FOR)  # <- the watchdog's report points here, while it sleeps


# ---- the server ---------------------------------------------------------------------------

class Demo:
    def __init__(self, seconds):
        self.seconds = seconds
        self.loop = weft.Loop()
        self.t0 = time.monotonic()
        self.samples = []  # (seconds since t0, LoopStats)
        self.reports = []
        self.blocked = None  # (start, end) of the blocking callback, seconds since t0
        self.requests = []  # thread tasks' futures
        self.renders = []  # (label, future)
        self.beats = 0
        self.sampling = True

    def since(self, t):
        return t - self.t0

    # The watchdog's handler: on weft's watchdog thread, while the loop is blocked.
    def on_slow(self, report):
        self.reports.append(report)
        print(report.format(), flush=True)

    def beat(self):
        self.beats += 1

    def request(self):
        if self.since(time.monotonic()) < self.seconds - 0.3:
            self.requests.append(self.loop.spawn(compress, LOG_CHUNK, on="thread"))

    def start_render(self, n):
        fut = self.loop.spawn(render, RENDER_FRAMES, on="process")
        label = f"render #{n}"
        self.loop.set_label(fut, label)  # the name the watchdog would give its done
        self.renders.append((label, fut))

    def blocking_timer(self):
        start = time.monotonic()
        block_the_loop()
        self.blocked = (self.since(start), self.since(time.monotonic()))

    def maybe_stop(self):
        # Once the time is up and the renders are back (or 5 s later regardless).
        late = self.since(time.monotonic()) > self.seconds + 5
        if late or all(f.done() for _, f in self.renders):
            self.loop.stop()

    def sampler(self):
        while self.sampling:
            try:
                self.samples.append((self.since(time.monotonic()), self.loop.stats()))
            except weft.Closed:
                return
            time.sleep(SAMPLE_EVERY)

    def run(self):
        loop = self.loop
        loop.set_watchdog(0.1, self.on_slow)
        loop.stats()  # the first read starts the busy/idle and lateness counts
        loop.call_every(0.01, self.beat)
        loop.call_every(0.05, self.request)
        for n, at in enumerate(RENDERS_AT, 1):
            loop.call_later(at, self.start_render, n)
        loop.call_later(BLOCK_AT, self.blocking_timer)
        loop.call_later(self.seconds, lambda: loop.call_every(0.05, self.maybe_stop))
        thread = threading.Thread(target=self.sampler, name="stats-sampler", daemon=True)
        thread.start()
        loop.run()
        self.sampling = False
        thread.join()
        self.io_pool = weft.pool_stats("io")
        loop.close()


# ---- the report -------------------------------------------------------------------------

def ms(seconds):
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def summary(demo):
    print()
    last = demo.samples[-1][1]
    print(f"{demo.beats} heartbeats; timer lateness over the last {last.timer_late_samples} timer calls: "
          f"p50 {last.timer_late_p50_ns / 1e6:.2f} ms, p99 {last.timer_late_p99_ns / 1e6:.2f} ms, "
          f"max {last.timer_late_max_ns / 1e6:.1f} ms")
    print(f"loop utilisation {last.utilization or 0:.1%} over {last.passes} passes; callbacks: "
          f"{last.timer_callbacks} timer, {last.post_callbacks} post, {last.done_callbacks} done")
    done = [f.timing for f in demo.requests if f.done() and f.timing is not None]
    if any(t.run_time is not None for t in done):
        waits = [t.queue_delay for t in done if t.queue_delay is not None]
        runs = [t.run_time for t in done if t.run_time is not None]
        print(f"{len(done)} thread tasks (compress 1 MB): queue delay median {ms(statistics.median(waits))}, "
              f"run time median {ms(statistics.median(runs))}")
    pool = demo.io_pool
    print(f"io pool: {pool.threads} threads, {pool.tasks_run} tasks run, {pool.threads_started} started")
    for label, fut in demo.renders:
        t = fut.timing
        if fut.cancelled():
            size = "cancelled at the end of the demo (a busy machine)"
        else:
            size = f"{len(fut.result()) / 1e6:.1f} MB of HTML"
        if t is None:
            print(f"{label}: {size}")
        else:
            print(f"{label}: queue delay {ms(t.queue_delay)}, run time {ms(t.run_time)} in a child, {size}")
    running = [r for r in demo.reports if r.running]
    if running and running[0].stack:
        line = running[0].stack[-1]
        print(f"the watchdog saw the loop blocked at {os.path.basename(line.filename)}:{line.lineno} "
              f"({line.line}) after {running[0].elapsed * 1000:.0f} ms, while it still ran")


def plot(demo, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: skipped the plot (`make demo` installs it into .venv/)")
        return
    times = [t for t, _ in demo.samples]
    stats = [s for _, s in demo.samples]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(9, 6), gridspec_kw={"height_ratios": [3, 2]})
    for field, label, style in (("timer_late_p50_ns", "p50", "-"), ("timer_late_p99_ns", "p99", "--"),
                                ("timer_late_max_ns", "max", ":")):
        top.plot(times, [max(getattr(s, field) / 1e6, 1e-2) for s in stats], style, label=label)
    top.set_yscale("log")
    top.set_ylim(1e-2, 2e3)
    top.set_ylabel("timer lateness (ms)")
    top.set_title("a weft loop: 10 ms heartbeat, thread and process tasks, one blocking callback")
    top.legend(title="over the last 1024 timer calls", loc="lower right")
    util = [None] + [b.utilization_since(a) for a, b in zip(stats, stats[1:])]
    bottom.plot(times[1:], [u * 100 if u is not None else float("nan") for u in util[1:]], color="C3")
    bottom.set_ylabel("loop busy (% of 100 ms)")
    bottom.set_ylim(0, 105)
    bottom.set_xlabel("seconds")
    tasks = bottom.twinx()
    tasks.step(times, [s.tasks for s in stats], where="post", color="C7", alpha=0.6, label="thread tasks")
    tasks.step(times, [s.children for s in stats], where="post", color="C2", alpha=0.8, label="children")
    tasks.set_ylabel("in flight")
    tasks.legend(loc="upper right")
    if demo.blocked:
        for ax in (top, bottom):
            ax.axvspan(*demo.blocked, color="C1", alpha=0.25)
        top.annotate("time.sleep(0.3) in a timer callback", (demo.blocked[1], BLOCK_FOR * 1000),
                     xytext=(0.2, 0.025), fontsize=9, color="C1",
                     arrowprops={"arrowstyle": "->", "color": "C1"})
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("png", nargs="?", default=os.path.join(REPO, "build", "loop_monitor.png"))
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    demo = Demo(args.seconds)
    demo.run()
    summary(demo)
    plot(demo, args.png)


if __name__ == "__main__":
    main()
