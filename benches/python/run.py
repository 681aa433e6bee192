#!/usr/bin/env python3
"""Benchmarks of weft's Python binding against asyncio, in one run, with ratios.

    python3 benches/python/run.py                  # every workload, 3 runs each (median)
    python3 benches/python/run.py --runs 5         # more runs
    python3 benches/python/run.py --only timers,thread_tasks
    python3 benches/python/run.py --markdown out.md   # also write the summary table

Every (workload, system) pair runs in a fresh interpreter (this script re-runs itself
with --child), RUNS times interleaved, and the median of each figure is reported.
Standard library only (plus weft). The package is imported from bindings/python, so
the library is target/release/libweft.so unless WEFT_LIBRARY says otherwise.

Workloads (see README.md):
  call_soon       a producer thread queues 200,000 calls; the loop runs them.
                  weft: loop.call_soon; asyncio: loop.call_soon_threadsafe. calls/s.
  thread_tasks    20,000 trivial thread tasks, all submitted, then awaited. weft:
                  loop.spawn(on="thread"); asyncio: run_in_executor(ThreadPoolExecutor()).
  thread_state    the same on a one-thread IO pool, with the binding's persistent thread
                  state per pool thread and without it (every work call then makes and
                  destroys a thread state): microseconds per task.
  process_tasks   200 calls of sum(range(200000)) in processes. weft: on="process" (cold:
                  children forked on demand and reused, max_children = cores); asyncio:
                  run_in_executor with a warm ProcessPoolExecutor (fork context, cores
                  workers). Plus the closure case, which ProcessPoolExecutor cannot run.
  timers          100,000 call_later timers, delays 0..100 ms (seeded), until all fired.
                  Timers per CPU second (process_time over schedule + run).
  heartbeat       a 10 ms heartbeat on the loop while a process task renders (~1 s of
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
sys.path.insert(0, os.path.join(REPO, "bindings", "python"))

CPUS = len(os.sched_getaffinity(0))


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
        start = time.perf_counter()
        thread.start()
        loop.run()
        thread.join()
    return {"calls_per_s": n / (finished[0] - start)}


def call_soon_asyncio():
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
        start = time.perf_counter()
        thread.start()
        finished = await done
        thread.join()
        return {"calls_per_s": n / (finished - start)}

    return asyncio.run(main())


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


def thread_tasks_asyncio(n=20_000):
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

    return asyncio.run(main())


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
    delays = [rng.random() * 0.1 for _ in range(n)]
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


def timers_asyncio(n=100_000):
    import asyncio
    import random

    rng = random.Random(42)
    delays = [rng.random() * 0.1 for _ in range(n)]

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

    return asyncio.run(main())


def _render(lines=2_500_000):
    """A stand-in for rendering a recording: ~1 s of string work."""
    import html

    total = 0
    for i in range(lines):
        total += len(html.escape(f"<frame {i}> \x1b[32mok\x1b[0m & step {i * 7}"))
    return total


def _lateness(beats, start, interval):
    late = []
    for t in beats:
        n = max(1, int((t - start) / interval))
        late.append(t - (start + n * interval))
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


def heartbeat_asyncio():
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

    return asyncio.run(main())


CHILDREN = {
    ("call_soon", "weft"): call_soon_weft,
    ("call_soon", "asyncio"): call_soon_asyncio,
    ("thread_tasks", "weft"): thread_tasks_weft,
    ("thread_tasks", "asyncio"): thread_tasks_asyncio,
    ("thread_state", "persistent"): thread_state_weft_persistent,
    ("thread_state", "per-call"): thread_state_weft_per_call,
    ("process_tasks", "weft"): process_tasks_weft,
    ("process_tasks", "asyncio"): process_tasks_asyncio,
    ("timers", "weft"): timers_weft,
    ("timers", "asyncio"): timers_asyncio,
    ("heartbeat", "weft"): heartbeat_weft,
    ("heartbeat", "asyncio"): heartbeat_asyncio,
}

# workload: (description, [(key, label, better)], goal). A goal (key, factor, reference)
# means weft >= factor * reference (higher is better) or weft <= ... (lower); reference
# None means an absolute bound.
WORKLOADS = [
    ("call_soon", "call_soon from another thread vs call_soon_threadsafe (200k calls)",
     ["weft", "asyncio"], [("calls_per_s", "calls/s", "higher")], ("calls_per_s", 1.0, "asyncio")),
    ("thread_tasks", "20,000 thread tasks vs run_in_executor(ThreadPoolExecutor)",
     ["weft", "asyncio"], [("tasks_per_s", "tasks/s", "higher"), ("us_per_task", "us/task", "lower")],
     ("tasks_per_s", 5.0, "asyncio")),
    ("thread_state", "20,000 thread tasks on a 1-thread IO pool: persistent thread state vs one per call",
     ["persistent", "per-call"], [("us_per_task", "us/task", "lower"), ("tasks_per_s", "tasks/s", "higher")],
     None),
    ("process_tasks", "200 x sum(range(200000)): on='process' vs ProcessPoolExecutor(fork)",
     ["weft", "asyncio"], [("calls_per_s", "calls/s", "higher"), ("closure_calls_per_s", "closure calls/s",
                                                                  "higher")],
     ("calls_per_s", 1.0, "asyncio")),
    ("timers", "100,000 call_later timers, delays 0..100 ms, until all fired",
     ["weft", "asyncio"], [("timers_per_cpu_s", "timers/CPU s", "higher"), ("cpu_s", "CPU s", "lower"),
                           ("wall_s", "wall s", "lower")], ("timers_per_cpu_s", 1.0, "asyncio")),
    ("heartbeat", "10 ms heartbeat lateness while a process task renders (~1 s)",
     ["weft", "asyncio"], [("p99_late_ms", "p99 late ms", "lower"), ("max_late_ms", "max late ms", "lower"),
                           ("beats", "beats", "higher")], ("p99_late_ms", 5.0, None)),
]


def child_main(workload, system):
    result = CHILDREN[(workload, system)]()
    print("RESULT " + json.dumps(result), flush=True)


# ---- the driver ------------------------------------------------------------------------

def run_child(workload, system):
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", workload, system],
                          capture_output=True, text=True, timeout=300)
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="")
    parser.add_argument("--markdown", default="")
    parser.add_argument("--json", default="",
                        help="also write every run's figures to this file (benches/report.py)")
    parser.add_argument("--child", nargs=2, metavar=("WORKLOAD", "SYSTEM"))
    args = parser.parse_args()
    if args.child:
        child_main(*args.child)
        return 0
    only = {w for w in args.only.split(",") if w}
    summary = []
    report = []   # --json: each workload's table entry and every run's figures
    failed = False
    print(f"weft Python binding benchmarks: {CPUS} CPUs, Python {sys.version.split()[0]}, "
          f"{args.runs} runs per (workload, system), medians\n")
    for name, description, systems, metrics, goal in WORKLOADS:
        if only and name not in only:
            continue
        samples = {system: [] for system in systems}
        for _ in range(args.runs):
            for system in systems:
                try:
                    samples[system].append(run_child(name, system))
                except Exception as exc:  # noqa: BLE001
                    print(f"  {exc}")
                    failed = True
        report.append({"workload": name, "desc": description, "systems": systems,
                       "metrics": metrics, "goal": goal, "samples": samples})
        medians = {}
        for system, runs in samples.items():
            medians[system] = {}
            for key in runs[0] if runs else {}:
                values = [r[key] for r in runs]
                medians[system][key] = values[0] if isinstance(values[0], str) else statistics.median(values)
        print(f"== {name}: {description}")
        for key, label, better in metrics:
            row = "   " + f"{label:>18}"
            for system in systems:
                row += f" | {system} {fmt(medians[system].get(key, float('nan')))}"
            if len(systems) == 2 and key in medians[systems[0]] and key in medians[systems[1]]:
                a, b = medians[systems[0]][key], medians[systems[1]][key]
                ratio = a / b if better == "higher" else b / a
                row += f" | {systems[0]}/{systems[1]} {ratio:.2f}x"
            print(row)
        for system in systems:
            for key, value in medians[system].items():
                if isinstance(value, str) and value:
                    print(f"   {system} {key}: {value}")
        if goal:
            key, factor, reference = goal
            better = next(b for k, _, b in metrics if k == key)
            weft_value = medians["weft"].get(key)
            if reference:
                ref_value = medians[reference].get(key)
                ratio = weft_value / ref_value if better == "higher" else ref_value / weft_value
                ok = ratio >= factor
                verdict = f"goal >= {factor}x {reference}: {ratio:.2f}x {'met' if ok else 'NOT met'}"
                summary.append((name, key, fmt(weft_value), fmt(ref_value), f"{ratio:.2f}x", f">= {factor}x",
                                "met" if ok else "not met"))
            else:
                ok = weft_value <= factor if better == "lower" else weft_value >= factor
                verdict = f"goal {'<=' if better == 'lower' else '>='} {factor}: {fmt(weft_value)} " \
                          f"{'met' if ok else 'NOT met'}"
                other = medians.get("asyncio", {}).get(key)
                summary.append((name, key, fmt(weft_value), fmt(other) if other is not None else "",
                                "", f"{'<=' if better == 'lower' else '>='} {factor}", "met" if ok else "not met"))
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
    table = ["| workload | figure | weft | asyncio / reference | ratio | goal | |",
             "|---|---|---|---|---|---|---|"]
    table += ["| " + " | ".join(row) + " |" for row in summary]
    print("\n".join(table))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(table) + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"suite": "python", "runs": args.runs, "cpus": CPUS,
                       "python": sys.version.split()[0], "workloads": report}, f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
