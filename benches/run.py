#!/usr/bin/env python3
"""Run the weft benchmark suite and print per-workload tables plus a Markdown summary.

Every (system, workload) pair runs in its own process, RUNS times (interleaved),
and the median of each figure is reported.  Python 3 standard library only.
The pool workloads use N = the number of CPUs this process may run on.
"""
import argparse
import os
import statistics
import subprocess
import sys

SYSTEMS = [("weft", "bench_weft"), ("libuv", "bench_uv"),
           ("libevent", "bench_event"), ("libev", "bench_ev")]

# weft's builds: bench_weft.c linked against each backend's libweft.so (benches/Makefile).
# Every process of bench_weft in WORKLOADS also runs with each other build chosen with
# --weft, in rows named after it: its label (and each of its row labels) with a leading
# "weft" replaced by the build's name (weft-io -> weft-portable-io); rows not starting
# with "weft" (fork-per-task-*, which do not use weft) are left to the Linux build.
WEFT_BUILDS = [("weft", "bench_weft"), ("weft-portable", "bench_weft-portable"),
               ("weft-portable-epoll", "bench_weft-portable-epoll")]

# Pool size N of the pool workloads (the C programs compute the same number).
THREADS = len(os.sched_getaffinity(0))


def variants(*rows):
    """The systems of a workload that not all of SYSTEMS run: (label, binary, extra
    arguments, extra environment[, row labels]).  Labels in SYSTEMS fill that system's
    column of the summary; other labels (weft-io) appear only as the subject of their own
    goal row.  A process that prints several RESULT lines names its rows: each row label
    is the system= field of one of its lines (or of a SKIP line)."""
    return list(rows)


ALL = [(label, binary, [], {}) for label, binary in SYSTEMS]
UV_N = {"UV_THREADPOOL_SIZE": str(THREADS)}
POOLS = variants(("weft", "bench_weft", [], {}), ("libuv", "bench_uv", [], UV_N))

# name, description, metrics [(key, label, better)], goals [(key, reference, factor
# [, subject])] and optionally the systems (default: ALL) and options: {"ratio": (header,
# {row: base row})} makes the tables' ratio column row / base row (default: a column per
# weft build B, B / row);
# {"timeout": s} allows each of the workload's processes s seconds (at least --timeout).
# A goal with reference system R and factor f means weft <= f*R (better="lower")
# or weft >= f*R (better="higher"); reference None means an absolute bound f; factor
# None makes a reference row with no goal. subject: the row judged (default "weft").
WORKLOADS = [
    ("timers_fire", "1M one-shot timers, delays 0..1000 ms, run until all fired",
     [("cpu_ns_per_timer", "CPU ns/timer", "lower"), ("cpu_s", "CPU s", "lower"),
      ("wall_s", "wall s", "lower")],
     [("cpu_ns_per_timer", "libev", 0.8)]),
    ("timers_cancel", "1M timers, delays 10..60 s, all cancelled in shuffled order",
     [("ops_per_s", "schedule+cancel ops/s", "higher"), ("ns_per_timer", "ns/timer", "lower"),
      ("schedule_ns", "schedule ns", "lower"), ("cancel_ns", "cancel ns", "lower")],
     [("ops_per_s", "libev", 1.5)]),
    ("cross_thread_post", "producer thread posts 1M records to the loop",
     [("recs_per_s", "records/s", "higher"), ("wall_s", "wall s", "lower")],
     [("recs_per_s", "libuv", 1.5)]),
    ("cross_thread_post_4", "4 producer threads post 250k records each to the loop",
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
    ("pool_roundtrip", "200k tiny tasks (an atomic increment) submitted at once from the "
     "loop thread, completions counted there; weft: weft_spawn(WEFT_ON_CPU) on a %d-thread "
     "CPU pool, weft-io: the default IO pool; libuv: uv_queue_work, UV_THREADPOOL_SIZE=%d; "
     "median of 3 batches per process" % (THREADS, THREADS),
     [("tasks_per_s", "tasks/s", "higher"), ("ns_per_task", "ns/task", "lower"),
      ("submit_ns", "submit ns/task", "lower"), ("cpu_s", "CPU s", "lower")],
     [("tasks_per_s", "libuv", 3.0), ("tasks_per_s", "libuv", None, "weft-io")],
     variants(("weft", "bench_weft", [], {}), ("weft-io", "bench_weft", ["io"], {}),
              ("libuv", "bench_uv", [], UV_N))),
    ("fork_join", "100k busy-loop tasks of ~10 us (calibrated once, the same for every run) "
     "from the loop thread; wall time on a 1-thread pool / on a %d-thread pool, each in a "
     "fresh child process" % THREADS,
     [("speedup", "speed-up", "higher"), ("wall_1_s", "1-thread s", "lower"),
      ("wall_n_s", "%d-thread s" % THREADS, "lower"), ("ideal_1_s", "work alone s", "lower")],
     [("speedup", None, 1.8)], POOLS),
    ("task_overhead", "trivial task, spawn to done: 10k one at a time (the next spawned by "
     "the previous done) and 200k in flight; %d-thread pool" % THREADS,
     [("seq_median_ns", "one-at-a-time median ns", "lower"), ("seq_p99_ns", "p99 ns", "lower"),
      ("amortised_ns", "amortised ns/task", "lower"), ("submit_ns", "submit ns", "lower")],
     [("seq_median_ns", "libuv", None), ("seq_p99_ns", "libuv", None),
      ("amortised_ns", "libuv", None)], POOLS),
    ("task_memory", "1M trivial tasks queued on a 1-thread pool held by its first task, "
     "RSS growth, then drained; weft: spawned from the main thread (the loop's registration "
     "table), weft-cb: from a loop callback (the loop's task table)",
     [("bytes_per_task", "bytes/queued task", "lower"), ("peak_rss_mb", "peak RSS MiB", "lower"),
      ("drain_s", "drain s", "lower")],
     [("bytes_per_task", None, 128.0), ("bytes_per_task", None, 128.0, "weft-cb")],
     variants(("weft", "bench_weft", [], {}), ("weft-cb", "bench_weft", ["callback"], {}),
              ("libuv", "bench_uv", [], {"UV_THREADPOOL_SIZE": "1"}))),
    ("process_overhead", "trivial WEFT_ON_PROCESS task, spawn to done, one at a time from "
     "the loop thread (the next spawned by the previous done), with the parent's RSS at "
     "~10 MB and ~1 GB (a fresh child per size); weft-io-*: WEFT_ON_IO in the same process",
     [("median_us", "median us", "lower"), ("p99_us", "p99 us", "lower"),
      ("spawn_median_us", "in weft_spawn us", "lower"), ("rss_mb", "RSS MiB", "lower"),
      ("n", "samples", "higher")],
     [("median_us", "weft-io-10m", None, "weft-process-10m"),
      ("p99_us", "weft-io-10m", None, "weft-process-10m"),
      ("median_us", "weft-io-1g", None, "weft-process-1g"),
      ("p99_us", "weft-io-1g", None, "weft-process-1g")],
     variants(("weft", "bench_weft", [], {},
               ["weft-process-10m", "weft-io-10m", "weft-process-1g", "weft-io-1g"])),
     {"ratio": ("process / io", {"weft-process-10m": "weft-io-10m",
                                 "weft-process-1g": "weft-io-1g"})}),
    ("process_reuse", "200 WEFT_ON_PROCESS tasks of a ~2 ms busy loop, spawned from the "
     "loop thread before weft_loop_run, max_children = %d, first spawn to last done; "
     "weft-process-reuse-*: reuse_child, weft-process-fork-*: a fork per task, "
     "fork-per-task-*: hand-written fork + pipe + waitpid, %d at a time (no weft); parent "
     "RSS ~10 MB and ~256 MB (a fresh child per size); median of 5 batches (256 MB: 3) "
     "per process; ideal = 200 x task / %d" % (THREADS, THREADS, THREADS),
     [("tasks_per_s", "tasks/s", "higher"), ("wall_ms", "wall ms", "lower"),
      ("over_ms", "ms/task over ideal", "lower"), ("ideal_ms", "ideal ms", "lower"),
      ("children", "children", "lower"), ("rss_mb", "RSS MiB", "lower")],
     [("tasks_per_s", "weft-process-fork-10m", None, "weft-process-reuse-10m"),
      ("tasks_per_s", "weft-process-fork-10m", None, "fork-per-task-10m"),
      ("tasks_per_s", "weft-process-fork-256m", None, "weft-process-reuse-256m"),
      ("tasks_per_s", "weft-process-fork-256m", None, "fork-per-task-256m")],
     variants(("weft", "bench_weft", ["10m"], {},
               ["weft-process-reuse-10m", "weft-process-fork-10m", "fork-per-task-10m"]),
              ("weft", "bench_weft", ["256m"], {},
               ["weft-process-reuse-256m", "weft-process-fork-256m", "fork-per-task-256m"])),
     {"ratio": ("tasks/s ÷ weft-process-fork", {
         "weft-process-reuse-10m": "weft-process-fork-10m",
         "fork-per-task-10m": "weft-process-fork-10m",
         "weft-process-reuse-256m": "weft-process-fork-256m",
         "fork-per-task-256m": "weft-process-fork-256m"}),
      "timeout": 90}),
]

# Workloads that run the calibrated busy loop.
SPIN_WORKLOADS = {"fork_join", "process_reuse"}


def rename(row, build):
    """A weft row's name in another build's run (weft-io -> weft-portable-io)."""
    if build == "weft" or row is None or not row.startswith("weft"):
        return row
    return build + row[len("weft"):]


def twins(variant, builds):
    """The variant itself and, if it runs bench_weft, the same processes with each other
    build of `builds`: (label, binary, arguments, environment, rows, {row: the system=
    name of its RESULT/SKIP lines})."""
    label, binary, extra, env = variant[:4]
    rows = rows_of(variant)
    out = [(label, binary, extra, env, rows, {r: r for r in rows})]
    if binary == WEFT_BUILDS[0][1]:
        for build, bin_b in WEFT_BUILDS[1:]:
            if build in builds:
                mine = [r for r in rows if r.startswith("weft")]
                out.append((rename(label, build), bin_b, extra, env,
                            [rename(r, build) for r in mine],
                            {rename(r, build): r for r in mine}))
    return out


def expand(workload, builds):
    """A workload with its variants, ratio bases and goals for every build in `builds`:
    each weft row and goal is followed by its twins."""
    name, desc, metrics, goals, *rest = workload
    variants_ = [t for v in (rest[0] if rest else ALL) for t in twins(v, builds)]
    opts = dict(rest[1]) if len(rest) > 1 else {}
    weft_builds = [b for b, _ in WEFT_BUILDS if b in builds]
    if "ratio" in opts:
        header, base = opts["ratio"]
        opts["ratio"] = (header, {rename(r, b): rename(r0, b) for r, r0 in base.items()
                                  for b in weft_builds if b == "weft" or r.startswith("weft")})
    goals_ = []
    for goal in goals:
        key, ref, factor, *subj = goal
        subject = subj[0] if subj else "weft"
        goals_.append(goal)
        if subject.startswith("weft"):
            goals_ += [(key, rename(ref, b), factor, rename(subject, b))
                       for b in weft_builds[1:]]
    # the tables' rows: each weft row followed by its twins
    order = []
    for v in (rest[0] if rest else ALL):
        for r in rows_of(v):
            order += [r] + ([rename(r, b) for b in weft_builds[1:]] if r.startswith("weft")
                            and v[1] == WEFT_BUILDS[0][1] else [])
    return name, desc, metrics, goals_, variants_, opts, order


def systems_of(workload):
    return workload[4] if len(workload) > 4 else ALL


def options_of(workload):
    return workload[5] if len(workload) > 5 else {}


def rows_of(variant):
    """The row labels one process of this variant fills."""
    return list(variant[4]) if len(variant) > 4 else [variant[0]]


def run_one(build, binary, workload, timeout, args=(), env=None):
    """Run one process; return (figures dict of its last RESULT line, None) or (None,
    error text).  The figures of every line are in figures["rows"] ({system: figures}),
    its SKIP lines' reasons in figures["skips"] ({system: reason}), and the library
    its LIBRARY line names (the file the loader chose) in figures["library"]."""
    path = os.path.join(build, binary)
    try:
        p = subprocess.run([path, workload, *args], capture_output=True, text=True,
                           timeout=timeout, env=dict(os.environ, **(env or {})))
    except subprocess.TimeoutExpired:
        return None, "timed out after %ds" % timeout
    except OSError as e:
        return None, str(e)
    figures, rows, skips, library = None, {}, {}, None
    for line in p.stdout.splitlines():
        if line.startswith("LIBRARY "):
            library = line.split("path=", 1)[-1]
        elif line.startswith("RESULT "):
            fields = dict(kv.split("=", 1) for kv in line.split()[1:])
            figures = {k: float(v) for k, v in fields.items() if k not in ("workload", "system")}
            rows[fields.get("system")] = figures
        elif line.startswith("SKIP "):
            # SKIP workload=W system=S reason=free text
            head = dict(kv.split("=", 1) for kv in line.split(None, 3)[1:3])
            skips[head.get("system")] = line.split("reason=", 1)[-1]
    if p.returncode != 0 or (figures is None and not skips):
        how = ("killed by signal %d" % -p.returncode) if p.returncode < 0 else "exit %d" % p.returncode
        err = " ".join(p.stderr.strip().splitlines()[-3:])
        return None, (how + (": " + err if err else ""))
    if p.stderr.strip():
        print("    note from %s %s: %s" % (" ".join([binary, *args]), workload, p.stderr.strip()),
          file=sys.stderr)
    return dict(figures or {}, rows=rows, skips=skips, library=library), None


def fmt(v):
    if v is None:
        return "—"
    if abs(v) >= 1e6:
        return "%.2fM" % (v / 1e6)
    if abs(v) >= 1e4:
        return "%.0fk" % (v / 1e3)
    if abs(v) >= 99.95:   # (would print as "100." below)
        return "%.0f" % v
    return "%#.3g" % v   # 3 significant digits, trailing zeros kept (2.00)


def ratio(weft, other):
    if weft is None or other in (None, 0):
        return None
    return weft / other


def goal_status(figs, key, ref, factor, better, subject="weft"):
    """Returns (text describing goal, achieved value text, met or None)."""
    weft = figs.get(subject, {}).get(key)
    if factor is None:   # a reference row: no goal
        r = ratio(weft, figs.get(ref, {}).get(key))
        return "(reference)", "—" if r is None else "%.3f×" % r, None
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
    return target, "%.3f×" % r, met


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
    ap.add_argument("--timeout", type=int, default=30,
                    help="seconds per process (a normal run takes a few)")
    ap.add_argument("--only", default=os.environ.get("ONLY", ""),
                    help="comma-separated workloads to run (default: all)")
    ap.add_argument("--markdown", default=None, help="also write the summary to this file")
    ap.add_argument("--weft", default=",".join(b for b, _ in WEFT_BUILDS),
                    help="comma-separated weft builds to run (default: all of %s)"
                    % ", ".join(b for b, _ in WEFT_BUILDS))
    args = ap.parse_args()

    builds = [b for b in args.weft.replace(",", " ").split() if b]
    known = {b: binary for b, binary in WEFT_BUILDS}
    if "weft" not in builds or set(builds) - set(known):
        ap.error("--weft: a list of %s, with weft" % ", ".join(known))
    for b in builds:
        if not os.path.exists(os.path.join(args.build, known[b])):
            ap.error("%s not found (make -C benches build; or --weft without %s)"
                     % (os.path.join(args.build, known[b]), b))
    workloads = [expand(w, builds) for w in WORKLOADS
                 if not args.only or w[0] in args.only.split(",")]
    unknown = set(args.only.split(",")) - {w[0] for w in WORKLOADS} if args.only else set()
    if unknown:
        ap.error("unknown workload(s): %s" % ", ".join(sorted(unknown)))
    if any(w[0] in SPIN_WORKLOADS for w in workloads) and not os.environ.get("BENCH_SPIN_ITERS"):
        # One calibration of the busy loop for every run of every system.
        figs, err = run_one(args.build, SYSTEMS[0][1], "calibrate", args.timeout)
        if err:
            print("calibration FAILED: %s" % err, file=sys.stderr)
            return 1
        os.environ["BENCH_SPIN_ITERS"] = "%d" % figs["spin_iters"]
        print("busy loop: %d iterations = %.2f us" % (figs["spin_iters"], figs["task_us"]),
              file=sys.stderr)
    samples = {}   # (workload, row) -> list of figure dicts
    errors = {}    # (workload, row) -> last error text
    skipped = {}   # (workload, row) -> why the program skipped it
    libraries = {}   # weft build -> the libweft.so its processes loaded
    build_of = {binary: b for b, binary in WEFT_BUILDS}
    for run in range(args.runs):
        print("run %d/%d ..." % (run + 1, args.runs), file=sys.stderr, flush=True)
        for w in workloads:
            name = w[0]
            timeout = max(args.timeout, options_of(w).get("timeout", 0))
            for system, binary, extra, env, rows, line_of in systems_of(w):
                if any((name, row) in errors for row in rows):
                    continue   # failed once: do not spend more time on it
                figs, err = run_one(args.build, binary, name, timeout, extra, env)
                if not err and binary in build_of:
                    # each weft build must run its own library (LD_LIBRARY_PATH overrides
                    # the programs' RUNPATH: the same one for all would go unnoticed)
                    b, lib = build_of[binary], figs["library"]
                    other = [o for o, l in libraries.items() if o != b and l == lib]
                    if lib is None:
                        err = "no LIBRARY line (rebuild: make -C benches build)"
                    elif other:
                        err = "loaded %s, as %s did" % (lib, other[0])
                    elif libraries.setdefault(b, lib) != lib:
                        err = "loaded %s, before %s" % (lib, libraries[b])
                if not err and len(rows) == 1:   # one row: its last RESULT line
                    if not figs["rows"]:
                        err = "no RESULT line (skipped: %s)" % "; ".join(figs["skips"].values())
                    else:
                        for k in ("rows", "skips", "library"):
                            figs.pop(k, None)
                        samples.setdefault((name, system), []).append(figs)
                elif not err:
                    missing = [line_of[r] for r in rows
                               if line_of[r] not in figs["rows"] and line_of[r] not in figs["skips"]]
                    if missing:
                        err = "no RESULT line for %s" % ", ".join(missing)
                    for row in rows:
                        if line_of[row] in figs["rows"]:
                            samples.setdefault((name, row), []).append(figs["rows"][line_of[row]])
                        elif line_of[row] in figs["skips"]:
                            skipped[(name, row)] = figs["skips"][line_of[row]]
                if err:
                    for row in rows:
                        errors[(name, row)] = err
                    print("  %s/%s FAILED: %s" % (system, name, err), file=sys.stderr, flush=True)

    if libraries:
        print("\nweft builds (the library each one's processes loaded):")
        for b, _ in WEFT_BUILDS:
            if b in libraries:
                print("  %-20s %s" % (b, libraries[b]))
    summary = []
    for name, desc, metrics, goals, _, opts, systems in workloads:
        ratio_header, ratio_base = opts.get("ratio", ("weft / system", None))
        # without a ratio option: a column per weft build, that build / the row
        bases = ([b for b, _ in WEFT_BUILDS if b in builds and b in systems]
                 if ratio_base is None else [None])
        if ratio_base is None:
            ratio_header = ["%s / system" % b for b in bases]
        else:
            ratio_header = [ratio_header]
        figs = {}
        for system in systems:
            runs = samples.get((name, system), [])
            if runs:
                figs[system] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print("\n### %s — %s (median of %d runs)\n" % (name, desc, args.runs))
        key0, label0, better0 = metrics[0]
        headers = ["system"] + ["%s (%s is better)" % (l, b) if i == 0 else l
                                for i, (k, l, b) in enumerate(metrics)] + ratio_header
        rows = []
        for system in systems:
            f = figs.get(system)
            if f is None:
                how = "skipped" if (name, system) in skipped else "FAILED"
                rows.append([system] + [how] * len(metrics) + ["—"] * len(bases))
                continue
            rs = []
            for base in bases:
                if base is None:
                    rs.append(ratio(f.get(key0), figs.get(ratio_base.get(system), {}).get(key0)))
                else:
                    rs.append(ratio(figs.get(base, {}).get(key0), f.get(key0))
                              if system != base else None)
            rows.append([system] + [fmt(f.get(k)) for k, _, _ in metrics] +
                        ["%.2f×" % r if r is not None else "—" for r in rs])
        print_table(headers, rows)
        for system in systems:
            if (name, system) in errors:
                print("  ! %s: %s" % (system, errors[(name, system)]))
            elif (name, system) in skipped and system not in figs:
                print("  - %s skipped: %s" % (system, skipped[(name, system)]))
        for key, ref, factor, *subj in goals:
            subject = subj[0] if subj else "weft"
            label, better = next((l, b) for k, l, b in metrics if k == key)
            target, achieved, met = goal_status(figs, key, ref, factor, better, subject)
            if factor is None:
                print("  reference: %s %s / %s — %s" % (subject, label, ref, achieved))
            else:
                print("  goal: %s %s %s — %s %s %s" % (
                    subject, label, target, subject, achieved,
                    {True: "MET", False: "NOT MET", None: "n/a"}[met]))
            cells = []
            for system, _ in SYSTEMS:
                column = subject if system == "weft" else system
                v = figs.get(column, {}).get(key)
                r = ratio(figs.get(subject, {}).get(key), v)
                cells.append("FAILED" if (name, column) in errors and v is None
                             else "skipped" if (name, column) in skipped and v is None
                             else "—" if column not in systems
                             else fmt(v) if system == "weft" or r is None
                             else "%s (%.2f×)" % (fmt(v), r))
            verdict = {True: "yes", False: "**no**", None: "n/a"}[met]
            if factor is None:
                verdict = "—"
            if (name, subject) in errors:
                verdict = "**failed**"
            elif (name, subject) in skipped and subject not in figs:
                verdict = "skipped"
            row_name = name if subject == "weft" else "%s (%s)" % (name, subject)
            summary.append([row_name, "%s (%s)" % (label, "↓" if better == "lower" else "↑")] +
                           cells + ["%s %s" % (subject, target) if factor is not None
                                    else "(reference)", achieved, verdict])

    md = ["| workload | metric | " + " | ".join(s for s, _ in SYSTEMS) +
          " | goal | weft got | met |",
          "|---|---|" + "---:|" * len(SYSTEMS) + "---|---:|:---:|"]
    md += ["| " + " | ".join(r) + " |" for r in summary]
    md.append("")
    md.append("Median of %d runs; (N×) = weft / that system (in a row named after a "
              "variant or another weft build, e.g. (weft-portable), the weft column is that "
              "row's and N× is it / the system). ↓ lower is better, ↑ higher is better. "
              "Pool workloads: N = %d threads; — = not run for that system." % (args.runs, THREADS))
    if errors:
        md.append("Failures: " + "; ".join("%s/%s: %s" % (s, w, e) for (w, s), e in errors.items()))
    never = [(w, s, r) for (w, s), r in skipped.items() if (w, s) not in samples]
    if never:
        md.append("Skipped: " + "; ".join("%s/%s: %s" % (s, w, r) for w, s, r in never))
    print("\n## Summary\n")
    print("\n".join(md))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(md) + "\n")
    return 1 if any(s.startswith("weft") for _, s in errors) else 0


if __name__ == "__main__":
    sys.exit(main())
