#!/usr/bin/env python3
"""Run the weft benchmark suite and print per-workload tables plus a Markdown summary.

Every (system, workload) pair runs in its own process, RUNS times (interleaved),
and the median of each figure is reported.  Python 3 standard library only.
"""
import argparse
import os
import statistics
import subprocess
import sys

SYSTEMS = [("weft", "bench_weft"), ("libuv", "bench_uv"),
           ("libevent", "bench_event"), ("libev", "bench_ev")]

# name, description, metrics [(key, label, better)], goals [(key, reference, factor)]
# A goal with reference system R and factor f means weft <= f*R (better="lower")
# or weft >= f*R (better="higher"); reference None means an absolute bound f.
WORKLOADS = [
    ("timers_fire", "1M one-shot timers, delays 0..1000 ms, run until all fired",
     [("cpu_ns_per_timer", "CPU ns/timer", "lower"), ("cpu_s", "CPU s", "lower"),
      ("wall_s", "wall s", "lower")],
     [("cpu_ns_per_timer", "libev", 0.8)]),
    ("timers_cancel", "1M timers, delays 10..60 s, all cancelled in shuffled order",
     [("ops_per_s", "schedule+cancel ops/s", "higher"), ("ns_per_timer", "ns/timer", "lower")],
     [("ops_per_s", "libev", 1.5)]),
    ("cross_thread_post", "producer thread posts 1M records to the loop",
     [("recs_per_s", "records/s", "higher"), ("wall_s", "wall s", "lower")],
     [("recs_per_s", "libuv", 1.5)]),
    ("fd_pingpong", "200k one-byte round trips over a socketpair, one loop",
     [("trips_per_s", "round trips/s", "higher"), ("us_per_trip", "us/trip", "lower")],
     [("trips_per_s", "libuv", 1.0)]),
    ("wakeup_latency", "post to an idle loop from another thread, 10k samples",
     [("median_us", "median us", "lower"), ("p99_us", "p99 us", "lower"),
      ("max_us", "max us", "lower")],
     [("median_us", "libuv", 1.0), ("p99_us", "libuv", 1.0)]),
    ("memory", "1M pending timers (delay 1 h), RSS growth",
     [("bytes_per_timer", "bytes/timer", "lower"), ("peak_rss_mb", "peak RSS MiB", "lower")],
     [("bytes_per_timer", None, 64.0)]),
]


def run_one(build, binary, workload, timeout):
    """Run one process; return (figures dict, None) or (None, error text)."""
    path = os.path.join(build, binary)
    try:
        p = subprocess.run([path, workload], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "timed out after %ds" % timeout
    except OSError as e:
        return None, str(e)
    figures = None
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            fields = dict(kv.split("=", 1) for kv in line.split()[1:])
            figures = {k: float(v) for k, v in fields.items() if k not in ("workload", "system")}
    if p.returncode != 0 or figures is None:
        how = ("killed by signal %d" % -p.returncode) if p.returncode < 0 else "exit %d" % p.returncode
        err = " ".join(p.stderr.strip().splitlines()[-3:])
        return None, (how + (": " + err if err else ""))
    if p.stderr.strip():
        print("    note from %s %s: %s" % (binary, workload, p.stderr.strip()), file=sys.stderr)
    return figures, None


def fmt(v):
    if v is None:
        return "—"
    if abs(v) >= 1e6:
        return "%.2fM" % (v / 1e6)
    if abs(v) >= 1e4:
        return "%.0fk" % (v / 1e3)
    if abs(v) >= 100:
        return "%.0f" % v
    return "%.3g" % v


def ratio(weft, other):
    if weft is None or other in (None, 0):
        return None
    return weft / other


def goal_status(figs, key, ref, factor, better):
    """Returns (text describing goal, achieved value text, met or None)."""
    weft = figs.get("weft", {}).get(key)
    if ref is None:
        target = "≤ %g" % factor if better == "lower" else "≥ %g" % factor
        if weft is None:
            return target, "—", None
        met = weft <= factor if better == "lower" else weft >= factor
        return target, fmt(weft), met
    target = "%s %g× %s" % ("≤" if better == "lower" else "≥", factor, ref)
    r = ratio(weft, figs.get(ref, {}).get(key))
    if r is None:
        return target, "—", None
    met = r <= factor if better == "lower" else r >= factor
    return target, "%.2f×" % r, met


def print_table(headers, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    line = lambda cells: "  ".join(str(c).rjust(w) if i else str(c).ljust(w)
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    print(line(headers))
    print(line(["-" * w for w in widths]))
    for r in rows:
        print(line(r))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--build", default=os.path.join(os.path.dirname(__file__), "build"))
    ap.add_argument("--runs", type=int, default=int(os.environ.get("RUNS", "3")))
    ap.add_argument("--timeout", type=int, default=120, help="seconds per process")
    ap.add_argument("--only", default=os.environ.get("ONLY", ""),
                    help="comma-separated workloads to run (default: all)")
    ap.add_argument("--markdown", default=None, help="also write the summary to this file")
    args = ap.parse_args()

    workloads = [w for w in WORKLOADS if not args.only or w[0] in args.only.split(",")]
    samples = {}   # (workload, system) -> list of figure dicts
    errors = {}    # (workload, system) -> last error text
    for run in range(args.runs):
        print("run %d/%d ..." % (run + 1, args.runs), file=sys.stderr, flush=True)
        for name, *_ in workloads:
            for system, binary in SYSTEMS:
                figs, err = run_one(args.build, binary, name, args.timeout)
                if err:
                    errors[(name, system)] = err
                    print("  %s/%s FAILED: %s" % (system, name, err), file=sys.stderr, flush=True)
                else:
                    samples.setdefault((name, system), []).append(figs)

    summary = []
    for name, desc, metrics, goals in workloads:
        figs = {}
        for system, _ in SYSTEMS:
            runs = samples.get((name, system), [])
            if runs:
                figs[system] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print("\n### %s — %s (median of %d runs)\n" % (name, desc, args.runs))
        key0, label0, better0 = metrics[0]
        headers = ["system"] + ["%s (%s is better)" % (l, b) if i == 0 else l
                                for i, (k, l, b) in enumerate(metrics)] + ["weft / system"]
        rows = []
        for system, _ in SYSTEMS:
            f = figs.get(system)
            if f is None:
                rows.append([system] + ["FAILED"] * len(metrics) + ["—"])
                continue
            r = ratio(figs.get("weft", {}).get(key0), f.get(key0))
            rows.append([system] + [fmt(f.get(k)) for k, _, _ in metrics] +
                        ["%.2f×" % r if r is not None else "—"])
        print_table(headers, rows)
        for system, _ in SYSTEMS:
            if (name, system) in errors:
                print("  ! %s: %s" % (system, errors[(name, system)]))
        for key, ref, factor in goals:
            label, better = next((l, b) for k, l, b in metrics if k == key)
            target, achieved, met = goal_status(figs, key, ref, factor, better)
            print("  goal: weft %s %s — weft %s %s" % (
                label, target, achieved, {True: "MET", False: "NOT MET", None: "n/a"}[met]))
            cells = []
            for system, _ in SYSTEMS:
                v = figs.get(system, {}).get(key)
                r = ratio(figs.get("weft", {}).get(key), v)
                cells.append(fmt(v) if system == "weft" or r is None
                             else "%s (%.2f×)" % (fmt(v), r))
            summary.append([name, "%s (%s)" % (label, "↓" if better == "lower" else "↑")] +
                           cells + ["weft %s" % target, achieved,
                                    {True: "yes", False: "**no**", None: "n/a"}[met]])

    md = ["| workload | metric | " + " | ".join(s for s, _ in SYSTEMS) +
          " | goal | weft got | met |",
          "|---|---|" + "---:|" * len(SYSTEMS) + "---|---:|:---:|"]
    md += ["| " + " | ".join(r) + " |" for r in summary]
    md.append("")
    md.append("Median of %d runs; (N×) = weft / that system. ↓ lower is better, ↑ higher is better."
              % args.runs)
    if errors:
        md.append("Failures: " + "; ".join("%s/%s: %s" % (s, w, e) for (w, s), e in errors.items()))
    print("\n## Summary\n")
    print("\n".join(md))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(md) + "\n")
    return 1 if any(s == "weft" for _, s in errors) else 0


if __name__ == "__main__":
    sys.exit(main())
