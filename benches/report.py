#!/usr/bin/env python3
"""Writes docs/benchmarks.md, its plots and the README's benchmark section from the
suites' --json files.

    python3 benches/report.py --c c.json --python py.json --node node.json \\
        --scaling scaling.json --out docs/benchmarks.md --plots docs/bench --readme README.md

Inputs (each optional: a missing one is a section that says so): benches/run.py --json
(the C workloads), benches/scaling.py --json (the curves), benches/python/run.py --json
and benches/node/run.js --json. Every figure is a median over the runs with its min-max
spread; every goal is judged from those medians. The plots (benches/plots.py) need
matplotlib; without it the report keeps its tables and says the plots were not drawn.
The README gets the headline table between its `<!-- bench:begin -->` and
`<!-- bench:end -->` lines. Standard library only (plus matplotlib for the plots).
"""
import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import run  # noqa: E402  (goal_status, fmt, median_figures, base_row)

PEERS = ["libuv", "libevent", "libev"]
# The Node workloads' goals: weft's time <= factor x the baseline's (run.js has none).
NODE_GOALS = {"timers-spread": 1.0, "events-js": 1.0}   # issue 16: timers of 0-50 ms, events in JS
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
UNREADABLE = []   # the sections whose input could not be read: main returns 1


def load(path):
    if not path or not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def spread(values):
    """(median, min, max) of the numbers among values, or None."""
    values = [v for v in values if isinstance(v, (int, float))]
    if not values:
        return None
    return statistics.median(values), min(values), max(values)


def cell(values):
    """A table cell: the median, with the min-max spread when the runs differ."""
    s = spread(values)
    if s is None:
        return "—"
    med, lo, hi = s
    if len(values) < 2 or lo == hi:
        return run.fmt(med)
    return "%s (%s–%s)" % (run.fmt(med), run.fmt(lo), run.fmt(hi))


def oriented(weft, other, better):
    """How many times better weft is than other (above 1: weft is better)."""
    if weft is None or other is None or weft <= 0 or other <= 0:
        return None
    return weft / other if better == "higher" else other / weft


def best_peer(figs, key, better, peers):
    have = [(p, figs[p][key]) for p in peers if key in figs.get(p, {})]
    if not have:
        return None, None
    pick = max if better == "higher" else min
    return pick(have, key=lambda x: x[1])


def goal_entry(suite, workload, subject, shape, label, better, figs, peers, target_value,
               target, achieved, met):
    """One goal, for the headline table and the ratio chart."""
    weft = figs.get(subject, {}).get(label[0])
    peer, peer_value = best_peer(figs, label[0], better, peers)
    r = oriented(weft, peer_value, better)
    goal_units = (oriented(target_value, peer_value, better)
                  if target_value is not None and peer_value is not None else None)
    return {"suite": suite, "workload": workload, "subject": subject, "shape": shape,
            "metric": "%s (%s)" % (label[1], "↓" if better == "lower" else "↑"),
            "weft": weft, "peer": peer, "peer_value": peer_value, "vs_best": r,
            "goal_units": goal_units, "target": target, "achieved": achieved, "met": met}


# ---- the C workloads (benches/run.py --json) -------------------------------------------

def c_section(c):
    md, goals, lateness = [], [], []
    builds = [b for b in c["builds"] if b != run.BASE_BUILD]
    for w in c["workloads"]:
        rows, metrics = w["rows"], w["metrics"]
        figs = {r: run.median_figures(s) for r, s in w["samples"].items() if s}
        md.append("### `%s`\n" % w["name"])
        md.append("%s. Median (min–max) of %d runs.\n" % (w["desc"][0].upper() + w["desc"][1:],
                                                       c["runs"]))
        key0, _, better0 = metrics[0]
        if w.get("ratio"):
            header, base = w["ratio"]
            ratio_cols = [(header, lambda r, b=base: run.ratio(
                figs.get(r, {}).get(key0), figs.get(b.get(r), {}).get(key0)))]
        else:
            ratio_cols = [("%s / row" % b, lambda r, b=b: None if r == b else run.ratio(
                figs.get(b, {}).get(key0), figs.get(r, {}).get(key0)))
                for b in builds if b in rows]
        shapes = {w["shapes"].get(r, "") for r in rows}
        one_shape = len(shapes) == 1
        if one_shape:
            md.append("Shape: %s.\n" % (shapes.pop() or "—"))
        shape_of = (lambda r: []) if one_shape else (lambda r: [w["shapes"].get(r, "")])
        head = ["row"] + ["%s (%s)" % (l, "↓" if b == "lower" else "↑") for _, l, b in metrics]
        head += [h for h, _ in ratio_cols] + ([] if one_shape else ["shape"])
        md.append("| " + " | ".join(head) + " |")
        md.append("|---|" + "---:|" * (len(metrics) + len(ratio_cols)) +
                  ("" if one_shape else "---|"))
        for r in rows:
            runs = w["samples"].get(r, [])
            if not runs:
                why = ("skipped: " + w["skips"][r] if r in w["skips"]
                       else "FAILED: " + w["errors"].get(r, "no result"))
                md.append("| " + " | ".join([r, why] + [""] * (len(metrics) + len(ratio_cols) - 1)
                                            + shape_of(r)) + " |")
                continue
            cells = [cell([x.get(k) for x in runs]) for k, _, _ in metrics]
            rs = [f(r) for _, f in ratio_cols]
            cells += ["%.2f×" % x if x is not None else "—" for x in rs]
            name = r + (" (new)" if r in w.get("extra", []) else "")
            md.append("| " + " | ".join([name] + cells + shape_of(r)) + " |")
        md.append("")
        for key, ref, factor, subject in w["goals"]:
            label, better = next((l, b) for k, l, b in metrics if k == key)
            target, achieved, met = run.goal_status(figs, key, ref, factor, better, subject)
            if factor is None:
                md.append("* reference: %s %s / %s: %s" % (subject, label, ref, achieved))
                continue
            verdict = {True: "**met**", False: "**not met**", None: "n/a"}[met]
            md.append("* goal: %s %s %s: %s, %s" % (subject, label, target, achieved, verdict))
            ref_value = figs.get(ref, {}).get(key) if ref else None
            target_value = (factor if ref is None else
                            None if ref_value is None else factor * ref_value)
            goals.append(goal_entry("C", w["name"], subject, w["shapes"].get(subject, ""),
                                    (key, label), better, figs, PEERS, target_value,
                                    "%s %s" % (subject, target), achieved, met))
        if w.get("extra"):
            md.append("* (new): a row the program printed that run.py's table does not "
                      "declare; no goal.")
        for r in rows:
            if w.get("values", {}).get(r) and not r.startswith(run.BASE_BUILD):
                lateness.append((r, [x for v in w["values"][r] for x in v]))
        md.append("")
    return md + against_base(c), goals, lateness


SLOWER = 0.9   # "Against the base": a figure below this many times the base's is flagged


def against_base(c):
    """With make bench BASE=rev: every metric of every Linux-backend weft row beside the
    same row run with the base's library, in the same run."""
    if not c.get("base"):
        return []
    entries = []
    for w in c["workloads"]:
        figs = {r: run.median_figures(s) for r, s in w["samples"].items() if s}
        for r in w["rows"]:
            b = run.rename(r, run.BASE_BUILD)
            if r == b or run.base_row(r) != r or r not in figs:
                continue
            if b not in figs:
                why = w["skips"].get(b) or w["errors"].get(b) or "no result"
                entries.append((w["name"], r, None, None, None, None, why))
                continue
            for key, label, better in w["metrics"]:
                entries.append((w["name"], r, label, better, figs[r].get(key),
                                figs[b].get(key), None))
    return base_table(c["base"], "the same program loading the library built from it",
                      c["runs"], entries)


def base_table(base, how, runs, entries):
    """The "Against the base" table: entries are (workload, row, metric label, better,
    now, base, why-not-compared)."""
    md = ["### Against the base: %s\n" % base,
          "Every weft row beside %s (`make bench BASE=%s`), its processes interleaved with "
          "the others. *now vs base*: how many times better today's weft is (above 1: "
          "better). Medians of %d runs; figures below %.2f× are in bold.\n"
          % (how, base, runs, SLOWER),
          "| workload | row | metric | now | base | now vs base |",
          "|---|---|---|---:|---:|---:|"]
    worse, compared = [], 0
    for workload, row, label, better, now, then, why in entries:
        if why is not None:
            md.append("| %s | %s | | | %s | |" % (workload, row, why))
            continue
        x = oriented(now, then, better)
        if x is None:
            continue
        compared += 1
        text = "%.2f×" % x
        if x < SLOWER:
            worse.append("%s %s %s" % (workload, row, label))
            text = "**%s**" % text
        md.append("| %s | %s | %s (%s) | %s | %s | %s |" % (
            workload, row, label, "↓" if better == "lower" else "↑", run.fmt(now),
            run.fmt(then), text))
    md += ["", "%d of %d figures below %.2f× the base%s" % (
        len(worse), compared, SLOWER, (": " + "; ".join(worse)) if worse else "."), ""]
    return md


# ---- the scaling curves (benches/scaling.py --json) -------------------------------------

def scaling_section(sc):
    md, curves = [], []
    for c in sc["curves"]:
        md.append("### %s: %s\n" % (c["name"], c["label"]))
        md.append("Shape: %s. Workload `%s N`; median (min–max) of %d runs, ns per "
                  "operation.\n" % (c["shape"], c["workload"], sc["runs"]))
        sizes = [str(n) for n in sc["sizes"]]
        md.append("| system | figure | " + " | ".join("N = %s" % sup(int(n)) for n in sizes) + " |")
        md.append("|---|---|" + "---:|" * len(sizes))
        lines = {}
        for s in c["systems"]:
            pts = c["points"][s]
            for key in [c["metric"]] + c.get("others", []):
                cells = []
                for n in sizes:
                    runs = pts.get(n, [])
                    if not runs:
                        why = c["skips"].get(n) or c["errors"].get("%s %s" % (s, n))
                        cells.append("skipped" if n in c["skips"] else "failed" if why else "—")
                    else:
                        cells.append(cell([x.get(key) for x in runs]))
                if key != c["metric"] and all(x == "—" for x in cells):
                    continue
                md.append("| %s | %s | %s |" % (s, key, " | ".join(cells)))
            lines[s] = [(int(n),) + (spread([x.get(c["metric"]) for x in pts.get(n, [])])
                                     or (None, None, None)) for n in sizes]
        for n, why in c["skips"].items():
            md.append("\nN = %s skipped: %s." % (sup(int(n)), why))
        for what, err in c["errors"].items():
            md.append("\n%s failed: %s." % (what, err))
        md.append("")
        curves.append(("%s (%s)" % (c["name"], c["workload"]), c["label"], lines))
    return md, curves


def sup(n):
    """10^k for powers of ten, else the number."""
    k = len(str(n)) - 1
    return "10^%d" % k if n == 10 ** k else str(n)


# ---- the bindings' suites --------------------------------------------------------------

def python_section(py):
    md, goals = [], []
    md.append("Python %s; each (workload, system) in a fresh interpreter, %d runs "
              "interleaved; median (min–max).\n" % (py.get("python", "?"), py["runs"]))
    for w in py["workloads"]:
        systems, metrics = w["systems"], w["metrics"]
        md.append("**%s**: %s.\n" % (w["workload"], w["desc"]))
        md.append("| figure | " + " | ".join(systems) + " |")
        md.append("|---|" + "---:|" * len(systems))
        for key, label, better in metrics:
            cells = [cell([x.get(key) for x in w["samples"].get(s, [])]) for s in systems]
            md.append("| %s (%s) | %s |" % (label, "↓" if better == "lower" else "↑",
                                            " | ".join(cells)))
        md.append("")
        if w.get("verdict"):
            md.append("* " + w["verdict"])
        goal = w.get("goal")
        if goal:
            key, factor, ref = goal[:3]
            better = next(b for k, _, b in metrics if k == key)
            label = next(l for k, l, _ in metrics if k == key)
            figs = {s: run.median_figures(w["samples"][s]) for s in systems if w["samples"].get(s)}
            met = None
            if w.get("verdict"):
                met = not re.search(r"not met", w["verdict"], re.I)
            ref_value = figs.get(ref, {}).get(key) if ref else None
            if ref:
                target_value = (None if ref_value is None else
                                ref_value * factor if better == "higher" else ref_value / factor)
                target = "weft %s %g× %s" % ("≥" if better == "higher" else "≤",
                                             factor if better == "higher" else 1 / factor, ref)
            else:
                target_value = factor
                target = "weft %s %g" % ("≥" if better == "higher" else "≤", factor)
            r = oriented(figs.get("weft", {}).get(key), ref_value, better) if ref else None
            achieved = ("%.2f× %s" % (r, "better" if r >= 1 else "worse") if r is not None
                        else run.fmt(figs.get("weft", {}).get(key)))
            peers = [s for s in systems if s not in ("weft", run.BASE_BUILD)]
            goals.append(goal_entry("Python", w["workload"], "weft", "", (key, label), better,
                                    figs, peers, target_value, target, achieved, met))
        md.append("")
    if py.get("base"):
        entries = []
        for w in py["workloads"]:
            if run.BASE_BUILD not in w["systems"]:
                continue
            why = w.get("skips", {}).get(run.BASE_BUILD)
            if why or not w["samples"].get(run.BASE_BUILD):
                entries.append((w["workload"], "weft", None, None, None, None, why or "no result"))
                continue
            for key, label, better in w["metrics"]:
                now, then = (spread([x.get(key) for x in w["samples"][s]])
                             for s in ("weft", run.BASE_BUILD))
                if now and then:
                    entries.append((w["workload"], "weft", label, better, now[0], then[0], None))
        md += base_table(py["base"], "the same workload on the base's Python package and "
                         "library", py["runs"], entries)
    return md, goals


def node_section(node):
    md, goals = [], []
    md.append("Node %s; each (workload, system) in a fresh `node` process, %d runs "
              "interleaved; median (min–max) ms, lower is better.\n"
              % (node.get("node", "?"), node["runs"]))
    md.append("| workload | weft | baseline | baseline ms | weft / baseline |")
    md.append("|---|---:|---|---:|---:|")
    for w in node["workloads"]:
        weft_name, base_name = w["systems"][:2]
        wv, bv = w["samples"][weft_name], w["samples"][base_name]
        sw, sb = spread(wv), spread(bv)
        r = sw[0] / sb[0] if sw and sb else None
        md.append("| %s | %s | %s | %s | %s |" % (
            w["title"], cell(wv), base_name.split("/")[-1], cell(bv),
            "%.2f" % r if r is not None else "—"))
        factor = NODE_GOALS.get(w["workload"])
        if factor is not None and sw and sb:
            figs = {"weft": {"ms": sw[0]}, base_name: {"ms": sb[0]}}
            goals.append(goal_entry(
                "Node", w["workload"], "weft", "", ("ms", "%s ms" % w["title"]), "lower",
                figs, [base_name], factor * sb[0],
                "weft ≤ %g× %s" % (factor, base_name.split("/")[-1]), "%.2f×" % r,
                r <= factor))
    md.append("")
    if node.get("base"):
        entries = []
        for w in node["workloads"]:
            now, then = spread(w["samples"]["weft"]), spread(w["samples"].get(run.BASE_BUILD, []))
            entries.append((w["workload"], "weft", "ms", "lower", now and now[0],
                            then and then[0], None if then else "no result"))
        md += base_table(node["base"], "the same workload on the base's Node binding and "
                         "library", node["runs"], entries)
    return md, goals


# ---- the machine and the headline ------------------------------------------------------

def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine(node, py):
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
    except OSError:
        pass
    ev = sh("dpkg-query", "-W", "-f", "${Version}", "libev-dev") or "?"
    uvloop = sh(sys.executable, "-c", "import uvloop; print(uvloop.__version__)")
    head = sh("git", "-C", ROOT, "rev-parse", "--short", "HEAD")
    dirty = " (with uncommitted changes)" if sh("git", "-C", ROOT, "status", "--porcelain",
                                                "--untracked-files=no") else ""
    version = "?"
    with open(os.path.join(ROOT, "Cargo.toml")) as f:
        m = re.search(r'^version = "(.*)"', f.read(), re.M)
        version = m.group(1) if m else "?"
    return [
        ("weft", "%s, commit %s%s" % (version, head or "?", dirty)),
        ("CPU", "%s; %d CPUs, %d usable by the benchmarks" % (cpu, os.cpu_count() or 0,
                                                           len(os.sched_getaffinity(0)))),
        ("kernel", "%s %s" % (platform.system(), platform.release())),
        ("compilers", "%s; %s" % (sh("gcc", "--version").split("\n")[0] or "gcc ?",
                                  sh("rustc", "--version") or "rustc ?")),
        ("libraries", "libuv %s, libevent %s, libev %s" % (
            sh("pkg-config", "--modversion", "libuv") or "?",
            sh("pkg-config", "--modversion", "libevent") or "?", ev)),
        ("Python, Node", "Python %s%s; Node %s" % (
            (py or {}).get("python", platform.python_version()),
            ", uvloop " + uvloop if uvloop else "", (node or {}).get("node", "?"))),
    ]


def headline(goals, with_shape=True):
    """The goals table: the Linux build's goals and the bindings'."""
    head = ["suite", "workload", "metric", "weft", "best peer", "weft vs best peer", "goal",
            "got", "met"] + (["shape"] if with_shape else [])
    md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g in goals:
        if run.base_row(g["subject"]) != g["subject"]:
            continue   # a portable build's twin: in its workload's section
        name = g["workload"] + ("" if g["subject"] == "weft" else " (%s)" % g["subject"])
        peer = "%s %s" % (g["peer"].split("/")[-1], run.fmt(g["peer_value"])) if g["peer"] else "—"
        vs = "%.2f×" % g["vs_best"] if g["vs_best"] is not None else "—"
        met = {True: "yes", False: "**no**", None: "n/a"}[g["met"]]
        md.append("| " + " | ".join([g["suite"], name, g["metric"], run.fmt(g["weft"]), peer,
                                     vs, g["target"], g["achieved"], met] +
                                    ([g["shape"]] if with_shape else [])) + " |")
    return md


def update_readme(path, block):
    with open(path) as f:
        text = f.read()
    if BEGIN not in text or END not in text:
        print("report: %s has no %s ... %s section: not updated" % (path, BEGIN, END),
              file=sys.stderr)
        return
    before, rest = text.split(BEGIN, 1)
    after = rest.split(END, 1)[1]
    with open(path, "w") as f:
        f.write(before + BEGIN + "\n" + "\n".join(block) + "\n" + END + after)


def section(fn, data, parts):
    """fn(data), or a section that says why there is none: a suite not run, or a file
    this report cannot read (a suite's format changed); the other sections still come."""
    if data is None:
        return (["Not run.", ""],) + ([],) * (parts - 1)
    try:
        return fn(data)
    except (KeyError, TypeError, ValueError, IndexError, StopIteration) as e:
        print("report: %s failed on its input: %r" % (fn.__name__, e), file=sys.stderr)
        UNREADABLE.append(fn.__name__)
        return (["Its results could not be read (%s: %r): see the suite's own output." %
                 (fn.__name__, e), ""],) + ([],) * (parts - 1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for suite in ("c", "python", "node", "scaling"):
        ap.add_argument("--" + suite, default=None, help="%s suite's --json file" % suite)
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    ap.add_argument("--plots", default=None, help="directory of the PNGs (default: "
                    "bench/ beside --out); --plots '' draws none")
    ap.add_argument("--readme", default=None, help="update this README's bench section")
    ap.add_argument("--command", default="make bench", help="the command that made the inputs")
    ap.add_argument("--date", default=None, help="the date printed (default: now, UTC)")
    ap.add_argument("--no-machine", action="store_true", help="leave the machine out (tests)")
    args = ap.parse_args(argv)
    c, py, node, sc = (load(args.c), load(args.python), load(args.node), load(args.scaling))
    plots_dir = os.path.join(os.path.dirname(args.out), "bench") if args.plots is None else args.plots
    rel = os.path.relpath(plots_dir, os.path.dirname(args.out)) if plots_dir else ""

    c_md, c_goals, lateness = section(c_section, c, 3)
    s_md, curves = section(scaling_section, sc, 2)
    p_md, p_goals = section(python_section, py, 2)
    n_md, n_goals = section(node_section, node, 2)
    goals = c_goals + p_goals + n_goals

    drawn, why = set(), ""
    if plots_dir:
        try:
            import plots
            os.makedirs(plots_dir, exist_ok=True)
            shown = [g for g in goals if g["vs_best"] is not None
                     and run.base_row(g["subject"]) == g["subject"]]
            names = ["%s %s%s" % (g["suite"], g["workload"], "" if g["subject"] == "weft"
                                  else " (%s)" % g["subject"]) for g in shown]
            # a workload with two goals: each bar says its metric
            names = [n + (", " + g["metric"] if names.count(n) > 1 else "")
                     for n, g in zip(names, shown)]
            bars = [(n, g["vs_best"], g["goal_units"], g["met"]) for n, g in zip(names, shown)]
            if bars:
                plots.ratio_chart(bars, os.path.join(plots_dir, "ratios.png"),
                                  "weft against the best peer, per goal")
                drawn.add("ratios")
            if lateness:
                plots.lateness_histograms(lateness, os.path.join(plots_dir, "lateness.png"),
                                          "timer lateness on an idle loop: 10k timers of 1–50 ms")
                drawn.add("lateness")
            if curves:
                plots.scaling_curves(curves, os.path.join(plots_dir, "scaling.png"),
                                     "cost per operation as the work grows")
                drawn.add("scaling")
        except ImportError as e:
            why = "the plots were not drawn: %s (make bench installs matplotlib into " \
                  "benches/.venv)" % e

    def img(name, alt):
        return ["![%s](%s/%s.png)" % (alt, rel, name), ""] if name in drawn else (
            ["(%s)" % why, ""] if why else [])

    met = sum(1 for g in goals if g["met"])
    date = args.date or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    md = ["# weft benchmarks", "",
          "Generated by `%s` (benches/report.py) on %s. Do not edit by hand: run the "
          "command again. Goals met: %d of %d." % (args.command, date, met, len(goals)), ""]
    if not args.no_machine:
        md += ["## Machine", "", "| | |", "|---|---|"]
        md += ["| %s | %s |" % kv for kv in machine(node, py)] + [""]
    md += ["## Goals", "",
           "Every goal of issue 16, judged from medians. *weft vs best peer*: how many times "
           "better weft is than the best of the peers on that metric (above 1: weft is "
           "better), whatever the goal's reference. The *shape* says how the row calls its "
           "system; every system of a workload runs the same shape.", ""]
    md += headline(goals) + [""] + img("ratios", "weft against the best peer")
    md += ["## C workloads: weft, libuv, libevent, libev", "",
           "`benches/run.py`: every (system, workload) in a fresh process, systems interleaved "
           "run by run. The workloads are described in [benches/README.md]"
           "(../benches/README.md).", ""] + c_md
    md += ["## Timer lateness", ""] + img("lateness", "timer lateness histograms") + \
          ["The `timer_lateness` rows above: each timer's callback time minus its deadline "
           "(the clock at the scheduling call + its delay), every run's samples. libuv counts "
           "loop time in whole milliseconds, so it fires some timers up to 1 ms early; "
           "libevent runs with its precise clock (EVENT_BASE_FLAG_PRECISE_TIMER).", ""]
    md += ["## Cost per operation as the work grows", ""] + img("scaling", "scaling curves") + s_md
    md += ["## Python binding (`benches/python/run.py`)", ""] + p_md
    md += ["## Node binding (`benches/node/run.js`)", ""] + n_md
    md += ["## Reproduce", "", "    " + args.command, "",
           "`make bench-quick` is one run of everything at smaller sizes (a check, not a "
           "measurement). See benches/README.md.", ""]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(md))
    if args.readme:
        link = os.path.relpath(args.out, os.path.dirname(os.path.abspath(args.readme)))
        block = ["Generated by `%s` on %s (goals met: %d of %d); the whole report, with "
                 "spreads, every row and the plots: [%s](%s)." % (args.command, date, met,
                                                                  len(goals), link, link), ""]
        block += headline(goals, with_shape=False)
        update_readme(args.readme, block)
    print("report: %s (%d goals, %d met)%s" % (args.out, len(goals), met,
                                               "; " + why if why else ""), file=sys.stderr)
    return 1 if UNREADABLE else 0


if __name__ == "__main__":
    sys.exit(main())
