#!/usr/bin/env python3
"""Benchmarks of weft's Python binding against asyncio and uvloop, in one run, with ratios.

    python3 benches/python/run.py                  # every workload, 3 runs each (median)
    python3 benches/python/run.py --runs 5         # more runs
    python3 benches/python/run.py --only timers,thread_tasks
    python3 benches/python/run.py --markdown out.md   # also write the summary table
    python3 benches/python/run.py --base-binding DIR --base-library FILE --base REV
                                                   # also a weft-base row: an older weft

Every (workload, system) pair runs in a fresh interpreter (this script re-runs itself
with --child), RUNS times interleaved, and the median of each figure is reported.
Standard library only (plus weft, and uvloop where installed: `make -C benches venv` puts it
in .venv/; without it uvloop's rows are left out). The package is imported from
bindings/python, so the library is target/release/libweft.so unless WEFT_LIBRARY says
otherwise. uvloop runs the asyncio workloads' coroutines on uvloop.new_event_loop().
With --base-binding (an older checkout's bindings/python, e.g. `make bench BASE=rev`'s
target/base-src) and --base-library (its libweft.so), every weft workload also runs a
`weft-base` row: the same workload code on that package and library, interleaved with the
others, for "did anything get slower" in one run. It has no goal; a workload the older
binding cannot run is reported as skipped for it.

Workloads (see README.md):
  call_soon       a producer thread queues 200,000 calls; the loop runs them.
                  weft: loop.call_soon; asyncio, uvloop: loop.call_soon_threadsafe. calls/s,
                  and CPU time per call (both threads; load on the machine changes it less).
  thread_tasks    20,000 trivial thread tasks, all submitted, then awaited. weft:
                  loop.spawn(on="thread"); asyncio: run_in_executor(ThreadPoolExecutor()).
  thread_state    the same on a one-thread IO pool, with the binding's persistent thread
                  state per pool thread and without it (every work call then makes and
                  destroys a thread state): microseconds per task.
  process_tasks   200 calls of sum(range(200000)) in processes. weft: on="process" (cold:
                  children forked on demand and reused, max_children = cores); asyncio:
                  run_in_executor with a warm ProcessPoolExecutor (fork context, cores
                  workers). Plus the closure case, which ProcessPoolExecutor cannot run.
  timers          100,000 call_later timers, delays 0..50 ms (seeded), until all fired.
                  CPU seconds (process_time over schedule + run), timers per CPU second.
  heartbeat       a 10 ms heartbeat on the loop while a process task renders (~0.5 s of
                  CPU in the child): p99 and worst lateness. asyncio: a fixed-rate
                  call_at chain while a ProcessPoolExecutor renders.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
# The binding a child imports: this checkout's, or the base's for a weft-base row.
sys.path.insert(0, os.environ.get("WEFT_BENCH_BINDING") or os.path.join(REPO, "bindings", "python"))
BASE = "weft-base"

CPUS = len(os.sched_getaffinity(0))


def _run_async(main, flavour):
    """Runs main() to completion on a fresh asyncio loop: the standard one, or uvloop's."""
    import asyncio

    if flavour == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(main())
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def has_uvloop():
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


# ---- the workloads (each runs in its own interpreter) ---------------------------------

def call_soon_weft():
    import threading

    import weft

    n = 200_000
    with weft.Loop() as loop:
        count = [0]
        finished = [0.0]

        def cb():
            count[0] += 1
            if count[0] == n:
                finished[0] = time.perf_counter()
                keep_alive.cancel()

        keep_alive = loop.call_every(10, lambda: None)

        def producer():
            call_soon = loop.call_soon
            for _ in range(n):
                call_soon(cb)

        thread = threading.Thread(target=producer)
        cpu, start = time.process_time(), time.perf_counter()
        thread.start()
        loop.run()
        cpu = time.process_time() - cpu
        thread.join()
    return {"calls_per_s": n / (finished[0] - start), "cpu_us_per_call": cpu / n * 1e6}


def call_soon_asyncio(flavour="asyncio"):
    import asyncio
    import threading

    n = 200_000

    async def main():
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        count = [0]

        def cb():
            count[0] += 1
            if count[0] == n:
                done.set_result(time.perf_counter())

        def producer():
            call = loop.call_soon_threadsafe
            for _ in range(n):
                call(cb)

        thread = threading.Thread(target=producer)
        cpu, start = time.process_time(), time.perf_counter()
        thread.start()
        finished = await done
        cpu = time.process_time() - cpu
        thread.join()
        return {"calls_per_s": n / (finished - start), "cpu_us_per_call": cpu / n * 1e6}

    return _run_async(main, flavour)


def _trivial():
    return 1


def thread_tasks_weft(io_threads=None, hooks=True, n=20_000):
    import weft
    from weft import _pools

    _pools.thread_hooks = hooks
    if io_threads:
        weft.configure_pools(io_threads=io_threads)
    with weft.Loop() as loop:
        for _ in range(500):  # start the pool's threads
            loop.spawn(_trivial, on="thread")
        loop.run()
        start = time.perf_counter()
        futures = [loop.spawn(_trivial, on="thread") for _ in range(n)]
        loop.run()
        elapsed = time.perf_counter() - start
        assert all(f.result() == 1 for f in futures)
    return {"tasks_per_s": n / elapsed, "us_per_task": elapsed / n * 1e6}


def thread_tasks_asyncio(n=20_000, flavour="asyncio"):
    import asyncio
    import concurrent.futures

    async def main():
        loop = asyncio.get_running_loop()
        with concurrent.futures.ThreadPoolExecutor() as executor:
            await asyncio.gather(*[loop.run_in_executor(executor, _trivial) for _ in range(500)])
            start = time.perf_counter()
            results = await asyncio.gather(*[loop.run_in_executor(executor, _trivial) for _ in range(n)])
            elapsed = time.perf_counter() - start
            assert results == [1] * n
        return {"tasks_per_s": n / elapsed, "us_per_task": elapsed / n * 1e6}

    return _run_async(main, flavour)


def thread_state_weft_persistent():
    return thread_tasks_weft(io_threads=1, hooks=True)


def thread_state_weft_per_call():
    return thread_tasks_weft(io_threads=1, hooks=False)


def _cpu_bound():
    return sum(range(200_000))


def process_tasks_weft(n=200):
    import threading

    import weft

    with weft.Loop() as loop:
        start = time.perf_counter()
        futures = [loop.spawn(_cpu_bound, on="process") for _ in range(n)]
        loop.run()
        elapsed = time.perf_counter() - start
        assert all(f.result() == 199_999 * 100_000 for f in futures)

        lock = threading.Lock()  # the closure case: captures an unpicklable lock

        def closure():
            with lock:
                return sum(range(200_000))

        start = time.perf_counter()
        futures = [loop.spawn(closure, on="process") for _ in range(n)]
        loop.run()
        closure_elapsed = time.perf_counter() - start
        assert all(f.result() == 199_999 * 100_000 for f in futures)
    return {"calls_per_s": n / elapsed, "closure_calls_per_s": n / closure_elapsed}


def process_tasks_asyncio(n=200):
    import asyncio
    import concurrent.futures
    import multiprocessing
    import threading

    async def main():
        loop = asyncio.get_running_loop()
        context = multiprocessing.get_context("fork")
        with concurrent.futures.ProcessPoolExecutor(max_workers=CPUS, mp_context=context) as executor:
            await asyncio.gather(*[loop.run_in_executor(executor, _cpu_bound) for _ in range(CPUS)])  # warm
            start = time.perf_counter()
            results = await asyncio.gather(*[loop.run_in_executor(executor, _cpu_bound) for _ in range(n)])
            elapsed = time.perf_counter() - start
            assert results == [199_999 * 100_000] * n
            lock = threading.Lock()

            def closure():
                with lock:
                    return sum(range(200_000))

            try:
                await loop.run_in_executor(executor, closure)
                closure_error = ""
            except Exception as exc:  # noqa: BLE001 - the point: it cannot be sent
                closure_error = f"{type(exc).__name__}: {exc}"
        return {"calls_per_s": n / elapsed, "closure_error": closure_error}

    return asyncio.run(main())


def timers_weft(n=100_000):
    import random

    import weft

    rng = random.Random(42)
    delays = [rng.random() * 0.05 for _ in range(n)]
    with weft.Loop() as loop:
        count = [0]

        def cb():
            count[0] += 1

        cpu, wall = time.process_time(), time.perf_counter()
        call_later = loop.call_later
        for delay in delays:
            call_later(delay, cb)
        loop.run()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        assert count[0] == n
    return {"timers_per_cpu_s": n / cpu, "cpu_s": cpu, "wall_s": wall}


def timers_asyncio(n=100_000, flavour="asyncio"):
    import asyncio
    import random

    rng = random.Random(42)
    delays = [rng.random() * 0.05 for _ in range(n)]

    async def main():
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        count = [0]

        def cb():
            count[0] += 1
            if count[0] == n:
                done.set_result(None)

        cpu, wall = time.process_time(), time.perf_counter()
        call_later = loop.call_later
        for delay in delays:
            call_later(delay, cb)
        await done
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        return {"timers_per_cpu_s": n / cpu, "cpu_s": cpu, "wall_s": wall}

    return _run_async(main, flavour)


def _render(lines=1_250_000):
    """A stand-in for rendering a recording: ~0.5 s of string work."""
    import html

    total = 0
    for i in range(lines):
        total += len(html.escape(f"<frame {i}> \x1b[32mok\x1b[0m & step {i * 7}"))
    return total


def _lateness(beats, start, interval):
    """Each beat's lateness against the nearest point of the schedule's grid (start +
    k * interval), so a beat is never counted a whole interval late for being a hair
    early: a loop whose clock lags time.monotonic() (uvloop's loop.time() is the
    cached time of its current iteration) has beats slightly before the grid, which
    count as negative lateness, and a beat late by half an interval or more cannot be
    told from an early one (none is, on a machine that is not overloaded)."""
    late = []
    for t in beats:
        k = max(1, round((t - start) / interval))
        late.append(t - (start + k * interval))
    late.sort()
    return {"p99_late_ms": late[int(len(late) * 0.99)] * 1000, "max_late_ms": late[-1] * 1000,
            "beats": len(beats)}


def heartbeat_weft():
    import weft

    interval = 0.010
    with weft.Loop() as loop:
        beats = []
        start = time.monotonic()
        heartbeat = loop.call_every(interval, lambda: beats.append(time.monotonic()))
        future = loop.spawn(_render, on="process")
        future.add_done_callback(lambda f: heartbeat.cancel())
        loop.run()
        assert future.result() > 0
    return _lateness(beats, start, interval)


def heartbeat_asyncio(flavour="asyncio"):
    import asyncio
    import concurrent.futures
    import multiprocessing

    interval = 0.010

    async def main():
        loop = asyncio.get_running_loop()
        beats = []
        context = multiprocessing.get_context("fork")
        with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as executor:
            await loop.run_in_executor(executor, int)  # warm
            start = time.monotonic()
            origin = loop.time()
            state = {"n": 1, "stop": False}

            def beat():
                beats.append(time.monotonic())
                now = loop.time()
                state["n"] = max(state["n"] + 1, int((now - origin) / interval) + 1)  # fixed rate
                if not state["stop"]:
                    loop.call_at(origin + state["n"] * interval, beat)

            loop.call_at(origin + interval, beat)
            await loop.run_in_executor(executor, _render)
            state["stop"] = True
        return _lateness(beats, start, interval)

    return _run_async(main, flavour)


CHILDREN = {
    ("call_soon", "weft"): call_soon_weft,
    ("call_soon", "asyncio"): call_soon_asyncio,
    ("call_soon", "uvloop"): lambda: call_soon_asyncio(flavour="uvloop"),
    ("thread_tasks", "weft"): thread_tasks_weft,
    ("thread_tasks", "asyncio"): thread_tasks_asyncio,
    ("thread_tasks", "uvloop"): lambda: thread_tasks_asyncio(flavour="uvloop"),
    ("thread_state", "persistent"): thread_state_weft_persistent,
    ("thread_state", "per-call"): thread_state_weft_per_call,
    ("process_tasks", "weft"): process_tasks_weft,
    ("process_tasks", "asyncio"): process_tasks_asyncio,
    ("timers", "weft"): timers_weft,
    ("timers", "asyncio"): timers_asyncio,
    ("timers", "uvloop"): lambda: timers_asyncio(flavour="uvloop"),
    ("heartbeat", "weft"): heartbeat_weft,
    ("heartbeat", "asyncio"): heartbeat_asyncio,
    ("heartbeat", "uvloop"): lambda: heartbeat_asyncio(flavour="uvloop"),
}

# workload: (name, description, systems, [(key, label, better)], goal). The first
# system is the one measured (weft, or the reference case); the others are anchors,
# and each metric gets a ratio against each (> 1 means the first is better). A goal
# (key, factor, reference) means: that ratio against reference >= factor; a reference
# of None means an absolute bound on the first system's value. Systems whose package
# is missing (uvloop outside the bench venv) are left out, and so is a goal on them.
WORKLOADS = [
    ("call_soon", "call_soon from another thread vs call_soon_threadsafe (200k calls)",
     ["weft", "asyncio", "uvloop"], [("calls_per_s", "calls/s", "higher"),
                                     ("cpu_us_per_call", "CPU us/call", "lower")], ("calls_per_s", 1.0, "uvloop")),
    ("thread_tasks", "20,000 thread tasks vs run_in_executor(ThreadPoolExecutor)",
     ["weft", "asyncio", "uvloop"], [("tasks_per_s", "tasks/s", "higher"), ("us_per_task", "us/task", "lower")],
     ("tasks_per_s", 5.0, "uvloop")),
    ("thread_state", "20,000 thread tasks on a 1-thread IO pool: persistent thread state vs one per call",
     ["persistent", "per-call"], [("us_per_task", "us/task", "lower"), ("tasks_per_s", "tasks/s", "higher")],
     None),
    ("process_tasks", "200 x sum(range(200000)): on='process' vs ProcessPoolExecutor(fork)",
     ["weft", "asyncio"], [("calls_per_s", "calls/s", "higher"), ("closure_calls_per_s", "closure calls/s",
                                                                  "higher")],
     ("calls_per_s", 1.0, "asyncio")),
    ("timers", "100,000 call_later timers, delays 0..50 ms, until all fired (CPU time)",
     ["weft", "asyncio", "uvloop"], [("cpu_s", "CPU s", "lower"), ("timers_per_cpu_s", "timers/CPU s", "higher"),
                                     ("wall_s", "wall s", "lower")], ("cpu_s", 1.25, "uvloop")),
    ("heartbeat", "10 ms heartbeat lateness while a process task renders (~0.5 s)",
     ["weft", "asyncio", "uvloop"], [("p99_late_ms", "p99 late ms", "lower"), ("max_late_ms", "max late ms", "lower"),
                                     ("beats", "beats", "higher")], ("p99_late_ms", 1.0, "uvloop")),
]


def child_main(workload, system):
    result = CHILDREN[(workload, "weft" if system == BASE else system)]()
    print("RESULT " + json.dumps(result), flush=True)


# ---- the driver ------------------------------------------------------------------------

def run_child(workload, system, base=None):
    """One fresh interpreter's figures. base: (binding dir, library) for the weft-base row."""
    env = None
    if system == BASE:
        env = dict(os.environ, WEFT_BENCH_BINDING=base[0], WEFT_LIBRARY=base[1])
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", workload, system],
                          capture_output=True, text=True, timeout=300, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{workload}/{system} failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")


def fmt(value):
    if isinstance(value, str):
        return value
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


def ratio_of(a, b, better):
    """How much better a is than b (> 1: better)."""
    if not a or not b:
        return float("nan")
    return a / b if better == "higher" else b / a


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="")
    parser.add_argument("--markdown", default="")
    parser.add_argument("--json", default="",
                        help="also write every run's figures to this file (benches/report.py)")
    parser.add_argument("--child", nargs=2, metavar=("WORKLOAD", "SYSTEM"))
    parser.add_argument("--base-binding", default="",
                        help="an older checkout's bindings/python: adds a weft-base row")
    parser.add_argument("--base-library", default="", help="the libweft.so the base row loads")
    parser.add_argument("--base", default="", help="the base's git revision (for the report)")
    args = parser.parse_args()
    if bool(args.base_binding) != bool(args.base_library):
        parser.error("--base-binding and --base-library go together")
    base = (os.path.abspath(args.base_binding), os.path.abspath(args.base_library)) \
        if args.base_binding else None
    if args.child:
        child_main(*args.child)
        return 0
    only = {w for w in args.only.split(",") if w}
    uvloop_ok = has_uvloop()
    summary = []
    report = []   # --json: each workload's table entry and every run's figures
    failed = False
    print(f"weft Python binding benchmarks: {CPUS} CPUs, Python {sys.version.split()[0]}, "
          f"{args.runs} runs per (workload, system), interleaved, medians")
    if not uvloop_ok:
        print("uvloop is not installed: its rows are left out (`make -C benches venv`, then run this "
              "script with .venv/bin/python)")
    print()
    for name, description, systems, metrics, goal in WORKLOADS:
        if only and name not in only:
            continue
        systems = [s for s in systems if s != "uvloop" or uvloop_ok]
        if base and "weft" in systems:
            systems = systems + [BASE]
        samples = {system: [] for system in systems}
        skipped = {}
        for _ in range(args.runs):
            for system in systems:
                if system in skipped:
                    continue
                try:
                    samples[system].append(run_child(name, system, base))
                except Exception as exc:  # noqa: BLE001
                    print(f"  {exc}")
                    if system == BASE:   # an older binding may lack what the workload calls
                        skipped[system] = str(exc).strip().splitlines()[-1][:200]
                    else:
                        failed = True
        report.append({"workload": name, "desc": description, "systems": systems,
                       "metrics": metrics, "goal": goal, "samples": samples, "skips": skipped})
        medians = {}
        for system, runs in samples.items():
            medians[system] = {}
            for key in runs[0] if runs else {}:
                values = [r[key] for r in runs]
                medians[system][key] = values[0] if isinstance(values[0], str) else statistics.median(values)
        first, anchors = systems[0], [s for s in systems[1:] if s != BASE]
        print(f"== {name}: {description}")
        for key, label, better in metrics:
            row = "   " + f"{label:>18}"
            for system in systems:
                row += f" | {system} {fmt(medians[system].get(key, float('nan')))}"
            for anchor in anchors + ([BASE] if BASE in systems else []):
                if key in medians[first] and key in medians[anchor]:
                    row += f" | {first}/{anchor} {ratio_of(medians[first][key], medians[anchor][key], better):.2f}x"
            print(row)
        for system in systems:
            for key, value in medians[system].items():
                if isinstance(value, str) and value:
                    print(f"   {system} {key}: {value}")
        if goal and (goal[2] is None or goal[2] in systems):
            key, factor, reference = goal
            better = next(b for k, _, b in metrics if k == key)
            value = medians[first].get(key, float("nan"))
            others = " / ".join(fmt(medians[a].get(key, float("nan"))) for a in anchors)
            if reference:
                ratio = ratio_of(value, medians[reference].get(key), better)
                ok = ratio >= factor
                shown = factor if better == "higher" else 1 / factor
                goal_text = f"{'>=' if better == 'higher' else '<='} {shown:.2g}x {reference}"
                verdict = f"goal {goal_text}: {ratio:.2f}x better, {'met' if ok else 'NOT met'}"
            else:
                ok = value <= factor if better == "lower" else value >= factor
                goal_text = f"{'<=' if better == 'lower' else '>='} {factor}"
                verdict = f"goal {goal_text}: {fmt(value)} {'met' if ok else 'NOT met'}"
            summary.append((name, key, fmt(value), others, " / ".join(
                f"{ratio_of(value, medians[a].get(key), better):.2f}x" for a in anchors), goal_text,
                "met" if ok else "not met"))
            print("   " + verdict)
            report[-1]["verdict"] = verdict
        elif name == "thread_state":
            a, b = medians["persistent"], medians["per-call"]
            if a and b:
                print(f"   a thread state per call costs {b['us_per_task'] - a['us_per_task']:.2f} us more "
                      f"per task ({b['us_per_task'] / a['us_per_task']:.2f}x)")
                summary.append((name, "us_per_task", fmt(a["us_per_task"]), fmt(b["us_per_task"]),
                                f"{b['us_per_task'] / a['us_per_task']:.2f}x", "(reference)", ""))
        print()
    anchors_title = "asyncio / uvloop" if uvloop_ok else "asyncio"
    table = [f"| workload | figure | weft | {anchors_title} (or reference) | weft better by | goal | |",
             "|---|---|---|---|---|---|---|"]
    table += ["| " + " | ".join(row) + " |" for row in summary]
    print("\n".join(table))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(table) + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"suite": "python", "runs": args.runs, "cpus": CPUS,
                       "python": sys.version.split()[0], "base": (args.base or base[0]) if base else None,
                       "workloads": report}, f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
