#!/usr/bin/env python3
"""Cost per operation as the work grows: the report's scaling curves.

    python3 benches/scaling.py --json out.json                 # sizes 10^3 .. 10^7, 3 runs
    python3 benches/scaling.py --sizes 1e3,1e4 --runs 1 --json out.json   # a quick look

Each curve is one workload of the C programs run with a size argument
(`bench_weft timers_cancel 100000`), for each system that has it, at each size; every
(curve, system, size) runs in a fresh process, runs interleaved (run by run, each size,
each curve, each system in turn), and the report takes the median per point. Only the
Linux build of weft (build/bench_weft). A size whose estimated memory (bytes per item
below, twice over) is above MemAvailable is skipped. Standard library only.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (run_one, THREADS)

UV_N = {"UV_THREADPOOL_SIZE": str(run.THREADS)}

# name, workload, metric key, axis label, shape, systems [(label, binary, env)], other
# figures worth a line in the report's table, bytes per item (a generous estimate)
CURVES = [
    ("timers", "timers_cancel", "ns_per_timer", "ns per timer: schedule + shuffled cancel",
     "main thread, the loop never runs: N timers of 10..60 s scheduled, then all cancelled "
     "in shuffled order",
     [("weft", "bench_weft", {}), ("libuv", "bench_uv", {}), ("libevent", "bench_event", {}),
      ("libev", "bench_ev", {})], ["schedule_ns", "cancel_ns"], 200),
    ("tasks", "pool_roundtrip", "ns_per_task", "ns per task: spawn to done, all in flight",
     "N tiny tasks spawned from a loop callback (weft: a weft_post; libuv: a 0 ms timer) "
     "on a %d-thread pool, completions counted on the loop thread; 3 batches per process "
     "up to 10^6, 1 above" % run.THREADS,
     [("weft", "bench_weft", {}), ("libuv", "bench_uv", UV_N)], ["submit_ns"], 300),
    ("subscribers", "topic_fanout", "deliver_ns", "ns per delivery: one emit, N subscribers",
     "N subscriptions to one topic from the main thread before the loop runs, one "
     "weft_emit, run until every subscriber was called (weft only: the peers have no "
     "topics)",
     [("weft", "bench_weft", {})], ["subscribe_ns", "cancel_ns"], 300),
]
SIZES = "1e3,1e4,1e5,1e6,1e7"


def mem_available():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(os.path.dirname(__file__), "build"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sizes", default=os.environ.get("SIZES", SIZES))
    ap.add_argument("--only", default="", help="comma-separated curves (timers,tasks,...)")
    ap.add_argument("--timeout", type=int, default=120)
    ap.add_argument("--json", required=True)
    args = ap.parse_args(argv)
    sizes = [int(float(x)) for x in args.sizes.split(",") if x]
    curves = [c for c in CURVES if not args.only or c[0] in args.only.split(",")]
    points, errors, skips = {}, {}, {}
    for r in range(args.runs):
        print("scaling: run %d/%d ..." % (r + 1, args.runs), file=sys.stderr, flush=True)
        for size in sizes:
            for name, workload, key, _, _, systems, _, per_item in curves:
                avail = mem_available()
                if avail is not None and 2 * per_item * size > avail:
                    skips[(name, size)] = "needs ~%d MB, MemAvailable %d MB" % (
                        2 * per_item * size >> 20, avail >> 20)
                    continue
                for label, binary, env in systems:
                    if (name, label, size) in errors:
                        continue
                    figs, err = run.run_one(args.build, binary, workload, args.timeout,
                                            [str(size)], env)
                    if not err and key not in figs:
                        err = "no %s in its RESULT line" % key
                    if err:
                        errors[(name, label, size)] = err
                        print("  %s %s %d FAILED: %s" % (label, workload, size, err),
                              file=sys.stderr, flush=True)
                        continue
                    for k in ("rows", "skips", "library"):
                        figs.pop(k, None)
                    points.setdefault((name, label, size), []).append(figs)
    out = {"suite": "scaling", "runs": args.runs, "sizes": sizes, "threads": run.THREADS,
           "curves": []}
    for name, workload, key, label, shape, systems, others, _ in curves:
        out["curves"].append({
            "name": name, "workload": workload, "metric": key, "label": label,
            "shape": shape, "others": others, "systems": [s[0] for s in systems],
            "points": {s[0]: {str(n): points.get((name, s[0], n), []) for n in sizes}
                       for s in systems},
            "errors": {"%s %d" % (s, n): e for (c, s, n), e in errors.items() if c == name},
            "skips": {str(n): t for (c, n), t in skips.items() if c == name},
        })
    with open(args.json, "w") as f:
        json.dump(out, f, indent=1)
    return 1 if any(s == "weft" for _, s, _ in errors) else 0


if __name__ == "__main__":
    sys.exit(main())
