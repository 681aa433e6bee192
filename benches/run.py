#!/usr/bin/env python3
"""Run the weft benchmark suite and print per-workload tables plus a Markdown summary.

Every (system, workload) pair runs in its own process, RUNS times (interleaved),
and the median of each figure is reported.  Python 3 standard library only.
The pool workloads use N = the number of CPUs this process may run on.
"""
import argparse
import os
import statistics
import shutil
import subprocess
import sys
import tempfile
import json

SYSTEMS = [("weft", "bench_weft"), ("libuv", "bench_uv"),
           ("libevent", "bench_event"), ("libev", "bench_ev")]

# weft's builds: bench_weft.c linked against each backend's libweft.so (benches/Makefile).
# Every process of bench_weft in WORKLOADS also runs with each other build chosen with
# --weft, in rows named after it: its label (and each of its row labels) with a leading
# "weft" replaced by the build's name (weft-io -> weft-portable-io); rows not starting
# with "weft" (fork-per-task-*, which do not use weft) are left to the Linux build.
WEFT_BUILDS = [("weft", "bench_weft"), ("weft-portable", "bench_weft-portable"),
               ("weft-portable-epoll", "bench_weft-portable-epoll"),
               ("weft-base", "bench_weft-base")]
# weft-base (make bench BASE=rev): the Linux backend's library as it was at an earlier
# revision, loaded by today's program. A reference for "did anything get slower", run
# in the same processes' turn as every other row: it has no goals and no ratio column,
# and a workload that calls a function its library lacks is skipped, not failed.
BASE_BUILD = "weft-base"

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
# {"timeout": s} allows each of the workload's processes s seconds (at least --timeout);
# {"shape": text} says how every row of the workload calls the system (from which thread,
# inside a callback or not, before or while the loop runs), {"shapes": {row: text}} a
# row's own; a RESULT line's shape= field (underscores for spaces) overrides both;
# {"samples": True}: each process is given BENCH_SAMPLES=file, the program writes a
# value per line there (timer_lateness: each timer's lateness), kept in --json.
# A row a program prints that is not declared here (its RESULT line's system= names it)
# is shown after the declared ones, with no goal: a new row needs only its program.
# A goal with reference system R and factor f means weft <= f*R (better="lower")
# or weft >= f*R (better="higher"); reference None means an absolute bound f; factor
# None makes a reference row with no goal. subject: the row judged (default "weft").
WORKLOADS = [
    ("timers_fire", "1M one-shot timers, delays 0..1000 ms, run until all fired",
     [("cpu_ns_per_timer", "CPU ns/timer", "lower"), ("cpu_s", "CPU s", "lower"),
      ("wall_s", "wall s", "lower")],
     [("cpu_ns_per_timer", "libev", 0.8)], ALL,
     {"shape": "main thread: all scheduled before the loop runs, then run until all fired"}),
    ("timers_cancel", "1M timers, delays 10..60 s, all cancelled in shuffled order",
     [("ops_per_s", "schedule+cancel ops/s", "higher"), ("ns_per_timer", "ns/timer", "lower"),
      ("schedule_ns", "schedule ns", "lower"), ("cancel_ns", "cancel ns", "lower")],
     [("ops_per_s", "libev", 1.5)], ALL,
     {"shape": "main thread, the loop never runs: schedule all, then cancel all"}),
    ("cross_thread_post", "producer thread posts 1M records to the loop",
     [("recs_per_s", "records/s", "higher"), ("wall_s", "wall s", "lower")],
     [("recs_per_s", "libuv", 1.5)], ALL,
     {"shape": "1 producer thread posts into the running loop"}),
    ("cross_thread_post_4", "4 producer threads post 250k records each to the loop",
     [("recs_per_s", "records/s", "higher"), ("wall_s", "wall s", "lower")],
     [("recs_per_s", "libuv", 1.5)], ALL,
     {"shape": "4 producer threads post into the running loop (FIFO checked per producer)"}),
    ("fd_pingpong", "200k one-byte round trips over a socketpair, one loop",
     [("trips_per_s", "round trips/s", "higher"), ("us_per_trip", "us/trip", "lower")],
     [("trips_per_s", "libuv", 1.0)], ALL,
     {"shape": "reads and writes inside the loop's fd callbacks"}),
    ("wakeup_latency", "post to an idle loop from another thread, 10k samples",
     [("median_us", "median us", "lower"), ("p99_us", "p99 us", "lower"),
      ("max_us", "max us", "lower")],
     [("median_us", "libuv", 1.0), ("p99_us", "libuv", 1.0)], ALL,
     {"shape": "another thread posts to the idle, blocked loop"}),
    ("memory", "1M pending timers (delay 1 h), RSS growth",
     [("bytes_per_timer", "bytes/timer", "lower"), ("peak_rss_mb", "peak RSS MiB", "lower")],
     [("bytes_per_timer", None, 64.0)], ALL,
     {"shape": "main thread, before the loop runs"}),
    ("timer_lateness", "10k one-shot timers, delays 1..50 ms, on an idle loop: deadline "
     "(the clock at the call + delay) to callback",
     [("within_us", "median distance us", "lower"), ("median_us", "median late us", "lower"),
      ("p90_us", "p90 us", "lower"),
      ("p99_us", "p99 us", "lower"), ("max_us", "max us", "lower"),
      ("min_us", "min us (< 0: early)", "higher"), ("early", "early", "lower")],
     [("within_us", None, 300.0), ("within_us", "libuv", None)], ALL,
     {"shape": "main thread: all scheduled before the loop runs (loop time refreshed "
      "before each call), then run until all fired", "samples": True}),
    ("pool_roundtrip", "200k tiny tasks (an atomic increment) submitted at once from the "
     "loop thread, completions counted there; weft: weft_spawn(WEFT_ON_CPU) on a %d-thread "
     "CPU pool, weft-io: the default IO pool; libuv: uv_queue_work, UV_THREADPOOL_SIZE=%d; "
     "median of 3 batches per process" % (THREADS, THREADS),
     [("tasks_per_s", "tasks/s", "higher"), ("ns_per_task", "ns/task", "lower"),
      ("submit_ns", "submit ns/task", "lower"), ("cpu_s", "CPU s", "lower")],
     [("tasks_per_s", "libuv", 3.0), ("tasks_per_s", "libuv", None, "weft-io")],
     variants(("weft", "bench_weft", [], {}), ("weft-io", "bench_weft", ["io"], {}),
              ("libuv", "bench_uv", [], UV_N)),
     {"shape": "spawned from a loop callback (weft: a weft_post; libuv: a 0 ms timer)"}),
] + [
    # Issue 16: the same tiny tasks, spawned the ways a host or a binding spawns outside a
    # loop callback (bench_common.h, "spawn shapes"); default pools, NULL options.
    (name, "%s tiny tasks on the default CPU pool (libuv: uv_queue_work, "
     "UV_THREADPOOL_SIZE=%d); median of 3 batches per process" % (n, THREADS),
     [("tasks_per_s", "tasks/s", "higher"), ("ns_per_task", "ns/task", "lower"),
      ("submit_ns", "submit ns/task", "lower"), ("cpu_s", "CPU s", "lower")],
     [("tasks_per_s", "libuv", factor)], POOLS, {"shape": shape, "timeout": 120})
    for name, n, factor, shape in [
        ("spawn_before", "200k", 3.0, "main thread, all spawned before the loop runs, then "
         "run until all completed"),
        ("spawn_before_2m", "2M", 3.0, "main thread, all spawned before the loop runs, then "
         "run until all completed"),
        ("spawn_nowait", "200k", None, "main thread, a non-blocking pass after every 1,000 "
         "spawns (a binding's shape), then run until all completed"),
        ("spawn_thread", "200k", None, "another thread spawns while the loop runs (libuv: "
         "hands the requests over with uv_async_send; uv_queue_work is not thread-safe)"),
    ]
] + [
    ("fork_join", "100k busy-loop tasks of ~10 us (calibrated once, the same for every run) "
     "from the loop thread; wall time on a 1-thread pool / on a %d-thread pool, each in a "
     "fresh child process" % THREADS,
     [("speedup", "speed-up", "higher"), ("wall_1_s", "1-thread s", "lower"),
      ("wall_n_s", "%d-thread s" % THREADS, "lower"), ("ideal_1_s", "work alone s", "lower")],
     [("speedup", None, 1.8)], POOLS,
     {"shape": "spawned from a loop callback (weft: a weft_post; libuv: a 0 ms timer)"}),
    ("task_overhead", "trivial task, spawn to done: 10k one at a time (the next spawned by "
     "the previous done) and 200k in flight; %d-thread pool" % THREADS,
     [("seq_median_ns", "one-at-a-time median ns", "lower"), ("seq_p99_ns", "p99 ns", "lower"),
      ("amortised_ns", "amortised ns/task", "lower"), ("submit_ns", "submit ns", "lower")],
     [("seq_median_ns", "libuv", None), ("seq_p99_ns", "libuv", None),
      ("amortised_ns", "libuv", None)], POOLS,
     {"shape": "spawned from a loop callback (the previous completion; amortised: one "
      "callback)"}),
    ("task_memory", "1M trivial tasks queued on a 1-thread pool held by its first task, "
     "RSS growth, then drained; weft: spawned from the main thread (the loop's registration "
     "table), weft-cb: from a loop callback (the loop's task table)",
     [("bytes_per_task", "bytes/queued task", "lower"), ("peak_rss_mb", "peak RSS MiB", "lower"),
      ("drain_s", "drain s", "lower")],
     [("bytes_per_task", None, 128.0), ("bytes_per_task", None, 128.0, "weft-cb")],
     variants(("weft", "bench_weft", [], {}), ("weft-cb", "bench_weft", ["callback"], {}),
              ("libuv", "bench_uv", [], {"UV_THREADPOOL_SIZE": "1"})),
     {"shapes": {"weft": "main thread, loop not running", "weft-cb": "from a loop callback",
                 "libuv": "main thread, loop not running"}}),
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
                                 "weft-process-1g": "weft-io-1g"}),
      "shape": "spawned from a loop callback (the previous done)"}),
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
      "timeout": 90, "shape": "main thread, all spawned before weft_loop_run"}),
    # Issue 17: what watching a loop costs it (benches/c/bench_monitor.h).
    ("monitor_overhead", "the loop's cost per callback with nothing watching (weft), with a "
     "thread reading weft_loop_get_stats every ms (weft-stats: busy/idle time and timer "
     "lateness measured), and with the watchdog on at 100 ms (weft-watchdog); 1M chained "
     "posts (wall ns each) and 200k timers of 0..100 ms (loop thread CPU ns each); modes "
     "alternate, median of 3 rounds per process",
     [("post_ns", "ns/post callback", "lower"), ("timer_ns", "CPU ns/timer", "lower")],
     [("post_ns", "weft", 1.15, "weft-stats"), ("timer_ns", "weft", 1.15, "weft-stats"),
      ("post_ns", "weft", 1.25, "weft-watchdog"), ("timer_ns", "weft", 1.25, "weft-watchdog")],
     variants(("weft", "bench_weft", [], {}, ["weft", "weft-stats", "weft-watchdog"])),
     {"ratio": ("÷ weft (nothing watching)", {"weft-stats": "weft", "weft-watchdog": "weft"}),
      "shape": "main thread runs the loop: each post callback posts the next; timers "
      "scheduled before the run"}),
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
                       for b in weft_builds[1:] if b != BASE_BUILD]
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


def number(text):
    """A RESULT field's value: a float, or the text itself (shape=from_a_callback)."""
    try:
        return float(text)
    except ValueError:
        return text


def median_figures(runs):
    """{key: median} over the runs of one row: the numeric figures every run has, and a
    text figure (shape) as the first run gives it."""
    out = {}
    for k, v in runs[0].items():
        vals = [r.get(k) for r in runs]
        if isinstance(v, str):
            out[k] = v
        elif all(isinstance(x, float) for x in vals):
            out[k] = statistics.median(vals)
    return out


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
            fields = dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)
            figures = {k: number(v) for k, v in fields.items() if k not in ("workload", "system")}
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


def base_row(row):
    """The Linux build's name of a weft row (weft-portable-io -> weft-io)."""
    for b, _ in sorted(WEFT_BUILDS[1:], key=lambda x: -len(x[0])):
        if row.startswith(b):
            return "weft" + row[len(b):]
    return row


def shape_of(workload, row, figures=None):
    """How a row calls its system: its RESULT line's shape=, else the table's."""
    if figures and isinstance(figures.get("shape"), str):
        return figures["shape"].replace("_", " ")
    opts = options_of(workload)
    return opts.get("shapes", {}).get(base_row(row), opts.get("shape", ""))


def read_values(path):
    try:
        with open(path) as f:
            return [float(x) for x in f.read().split()]
    except (OSError, ValueError):
        return []


def collect(args, workloads):
    """Runs every process of every workload args.runs times, interleaved (run by run,
    each system in turn, a fresh process each). Returns {"samples": {(workload, row):
    [figures of each run]}, "values": {(workload, row): [[sample values of a run]]},
    "errors", "skipped": {(workload, row): text}, "extra": {workload: [rows printed but
    not declared]}, "libraries": {build: libweft.so loaded}}."""
    samples = {}   # (workload, row) -> list of figure dicts
    values = {}    # (workload, row) -> list of lists of BENCH_SAMPLES values
    errors = {}    # (workload, row) -> last error text
    skipped = {}   # (workload, row) -> why the program skipped it
    extra = {}     # workload -> rows a program printed that the table does not declare
    libraries = {}   # weft build -> the libweft.so its processes loaded
    build_of = {binary: b for b, binary in WEFT_BUILDS}
    tmp = tempfile.mkdtemp(prefix="weft-bench-")
    for run in range(args.runs):
        print("run %d/%d ..." % (run + 1, args.runs), file=sys.stderr, flush=True)
        for w in workloads:
            name = w[0]
            opts = options_of(w)
            timeout = max(args.timeout, opts.get("timeout", 0))
            for system, binary, extra_args, env, rows, line_of in systems_of(w):
                if any((name, row) in errors for row in rows):
                    continue   # failed once: do not spend more time on it
                env = dict(env)
                sample_file = None
                if opts.get("samples"):
                    sample_file = os.path.join(tmp, "%s-%s.txt" % (name, system))
                    env["BENCH_SAMPLES"] = sample_file
                figs, err = run_one(args.build, binary, name, timeout, extra_args, env)
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
                if not err:
                    lines = dict(figs["rows"])
                    fallback = len(rows) == 1 and line_of[rows[0]] not in lines and lines
                    if fallback:
                        # one row: its last RESULT line, whatever its system= says
                        lines = {line_of[rows[0]]: figs["rows"][list(figs["rows"])[-1]]}
                    if len(rows) == 1 and not lines:
                        err = "no RESULT line (skipped: %s)" % "; ".join(figs["skips"].values())
                    missing = [line_of[r] for r in rows
                               if line_of[r] not in lines and line_of[r] not in figs["skips"]]
                    if missing and not err:
                        err = "no RESULT line for %s" % ", ".join(missing)
                    for row in rows:
                        if line_of[row] in lines:
                            samples.setdefault((name, row), []).append(lines[line_of[row]])
                            if sample_file and len(rows) == 1:
                                values.setdefault((name, row), []).append(read_values(sample_file))
                        elif line_of[row] in figs["skips"]:
                            skipped[(name, row)] = figs["skips"][line_of[row]]
                    # rows the table does not know: shown with no goal
                    build = build_of.get(binary, "weft")
                    known = set(line_of.values())
                    for printed, f in figs["rows"].items():
                        if fallback or printed in known or printed is None:
                            continue
                        row = rename(printed, build)
                        if row not in w[6] and row not in extra.setdefault(name, []):
                            extra[name].append(row)
                        if row not in w[6]:
                            samples.setdefault((name, row), []).append(f)
                if err and build_of.get(binary) == BASE_BUILD and "undefined symbol" in err:
                    for row in rows:
                        skipped[(name, row)] = "the base library lacks " + err.rsplit(" ", 1)[-1]
                    continue
                if err:
                    for row in rows:
                        errors[(name, row)] = err
                    print("  %s/%s FAILED: %s" % (system, name, err), file=sys.stderr, flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    return {"samples": samples, "values": values, "errors": errors, "skipped": skipped,
            "extra": extra, "libraries": libraries}


def to_json(args, workloads, res, builds):
    """Everything a report needs, raw: every run's figures, not only the medians."""
    out = {"suite": "c", "runs": args.runs, "threads": THREADS, "builds": builds,
           "base": args.base if BASE_BUILD in builds else None,
           "libraries": res["libraries"], "spin_iters": os.environ.get("BENCH_SPIN_ITERS"),
           "workloads": []}
    for w in workloads:
        name, desc, metrics, goals, _, opts, order = w
        rows = order + res["extra"].get(name, [])
        out["workloads"].append({
            "name": name, "desc": desc, "metrics": [list(m) for m in metrics],
            "goals": [[g[0], g[1], g[2], g[3] if len(g) > 3 else "weft"] for g in goals],
            "rows": rows, "extra": res["extra"].get(name, []),
            "ratio": list(opts["ratio"]) if "ratio" in opts else None,
            "shapes": {r: shape_of(w, r, (res["samples"].get((name, r)) or [None])[0])
                       for r in rows},
            "samples": {r: res["samples"][(name, r)] for r in rows if (name, r) in res["samples"]},
            "values": {r: res["values"][(name, r)] for r in rows if (name, r) in res["values"]},
            "errors": {r: e for (n, r), e in res["errors"].items() if n == name},
            "skips": {r: t for (n, r), t in res["skipped"].items() if n == name},
        })
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--build", default=os.path.join(os.path.dirname(__file__), "build"))
    ap.add_argument("--runs", type=int, default=int(os.environ.get("RUNS", "3")))
    ap.add_argument("--timeout", type=int, default=30,
                    help="seconds per process (a normal run takes a few)")
    ap.add_argument("--only", default=os.environ.get("ONLY", ""),
                    help="comma-separated workloads to run (default: all)")
    ap.add_argument("--markdown", default=None, help="also write the summary to this file")
    ap.add_argument("--json", default=None,
                    help="also write every run's figures to this file (for benches/report.py)")
    ap.add_argument("--weft", default=",".join(b for b, _ in WEFT_BUILDS),
                    help="comma-separated weft builds to run (default: all of %s)"
                    % ", ".join(b for b, _ in WEFT_BUILDS))
    ap.add_argument("--base", default=None,
                    help="the git revision weft-base's library was built from (for the report)")
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
    res = collect(args, workloads)
    samples, errors, skipped, libraries = (res["samples"], res["errors"], res["skipped"],
                                           res["libraries"])
    if libraries:
        print("\nweft builds (the library each one's processes loaded):")
        for b, _ in WEFT_BUILDS:
            if b in libraries:
                print("  %-20s %s" % (b, libraries[b]))
    summary = []
    for w in workloads:
        name, desc, metrics, goals, _, opts, systems = w
        systems = systems + res["extra"].get(name, [])
        ratio_header, ratio_base = opts.get("ratio", ("weft / system", None))
        # without a ratio option: a column per weft build, that build / the row
        bases = ([b for b, _ in WEFT_BUILDS if b in builds and b in systems and b != BASE_BUILD]
                 if ratio_base is None else [None])
        if ratio_base is None:
            ratio_header = ["%s / system" % b for b in bases]
        else:
            ratio_header = [ratio_header]
        figs = {}
        for system in systems:
            runs = samples.get((name, system), [])
            if runs:
                figs[system] = median_figures(runs)
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
        shapes = {shape_of(w, r, figs.get(r)) for r in systems}
        for r in (systems if len(shapes) > 1 else systems[:1]):
            print("  shape%s: %s" % (" of " + r if len(shapes) > 1 else "",
                                     shape_of(w, r, figs.get(r)) or "—"))
        for r in res["extra"].get(name, []):
            print("  + %s: a row the program printed, not in run.py's table (no goal)" % r)
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
    if args.json:
        with open(args.json, "w") as f:
            json.dump(to_json(args, workloads, res, builds), f, indent=1)
    return 1 if any(s.startswith("weft") for _, s in errors) else 0


if __name__ == "__main__":
    sys.exit(main())
