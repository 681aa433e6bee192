"""The benchmark report's generator (benches/run.py --json, benches/report.py) on canned
RESULT lines: `make test-bench-report`, part of `make test`; a second or two.

Fake bench programs (shell scripts named as the real ones) print fixed RESULT lines;
run.py runs them as it runs the real ones, and report.py writes the report and a README
section from its --json, with canned Python and Node results beside. The checks: a
workload's table with medians and min-max spreads, a ratio, a goal met and one missed, a
row the table does not declare (shown, with the shape its RESULT line gives), the
headline in the README between its markers, a weft-base row (make bench BASE=rev) and
the sections that compare every weft figure with it, the bindings' included."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCHES = os.path.join(ROOT, "benches")

# A fake program: each call prints the next of its canned runs (a counter file per
# program), so the runs differ and the report has spreads to show.
FAKE = """#!/bin/sh
n=$(cat "$0.count" 2>/dev/null || echo 0); echo $((n + 1)) > "$0.count"
%(library)s
case "$1" in
timers_cancel) echo "RESULT workload=timers_cancel system=%(system)s ops_per_s=%(ops)s$n ns_per_timer=100 schedule_ns=40 cancel_ns=60" ;;
memory) echo "RESULT workload=memory system=%(system)s bytes_per_timer=%(bytes)s peak_rss_mb=80"
        %(extra)s ;;
*) echo "unknown workload $1" >&2; exit 2 ;;
esac
"""
SYSTEMS = {
    # binary: (system, ops/s prefix (the run number is appended), bytes/timer)
    "bench_weft": ("weft", "300000", "72.5"),
    "bench_uv": ("libuv", "150000", "120"),
    "bench_event": ("libevent", "200000", "96"),
    "bench_ev": ("libev", "100000", "64"),
}
# Both with a weft-base row (the base's binding and library): faster than uvloop here, so
# a best peer picked from it would show.
PYTHON = {"suite": "python", "runs": 2, "python": "3.11", "base": "abc123", "workloads": [{
    "workload": "call_soon", "desc": "200k calls from a thread",
    "systems": ["weft", "uvloop", "weft-base"],
    "metrics": [["calls_per_s", "calls/s", "higher"]], "goal": ["calls_per_s", 1.0, "uvloop"],
    "samples": {"weft": [{"calls_per_s": 100.0}, {"calls_per_s": 110.0}],
                "uvloop": [{"calls_per_s": 400.0}, {"calls_per_s": 420.0}],
                "weft-base": [{"calls_per_s": 500.0}, {"calls_per_s": 520.0}]},
    "skips": {}, "verdict": "goal >= 1.0x uvloop: 0.26x NOT met"}]}
NODE = {"suite": "node", "runs": 2, "node": "v20", "base": "abc123", "workloads": [{
    "workload": "timers-spread", "title": "100,000 timers of 0-50 ms", "n": 100000, "unit": "ms",
    "better": "lower", "systems": ["weft", "setTimeout", "weft-base"],
    "samples": {"weft": [90.0, 94.0], "setTimeout": [120.0, 130.0], "weft-base": [100.0, 100.0]}}]}


class ReportTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="bench-report-test-")
        build = os.path.join(cls.tmp, "build")
        os.mkdir(build)
        for binary, (system, ops, size) in SYSTEMS.items():
            extra = ('echo "RESULT workload=memory system=weft-new bytes_per_timer=50 '
                     'shape=from_another_thread"' if system == "weft" else ":")
            # run.py checks which libweft.so each weft build loaded
            library = 'echo "LIBRARY system=weft path=/fake/libweft.so"' if system == "weft" else ""
            path = os.path.join(build, binary)
            with open(path, "w") as f:
                f.write(FAKE % {"system": system, "ops": ops, "bytes": size, "extra": extra,
                               "library": library})
            os.chmod(path, 0o755)
        # weft-base (make bench BASE=rev): the same program with an older library, which
        # lacks what the memory workload calls
        base = os.path.join(build, "bench_weft-base")
        with open(base, "w") as f:
            f.write(FAKE.replace("memory)", "memory) echo './bench_weft-base: symbol lookup "
                                 "error: ./bench_weft-base: undefined symbol: weft_new' >&2; "
                                 "exit 127;;\nnothing)") % {
                "system": "weft", "ops": "200000", "bytes": "1", "extra": ":",
                "library": 'echo "LIBRARY system=weft path=/fake/base/libweft.so"'})
        os.chmod(base, 0o755)
        c_json = os.path.join(cls.tmp, "c.json")
        cls.run_out = subprocess.run(
            [sys.executable, os.path.join(BENCHES, "run.py"), "--build", build, "--weft", "weft,weft-base",
             "--runs", "3", "--only", "timers_cancel,memory", "--base", "abc123",
             "--json", c_json],
            capture_output=True, text=True, timeout=60)
        for name, data in (("python.json", PYTHON), ("node.json", NODE)):
            with open(os.path.join(cls.tmp, name), "w") as f:
                json.dump(data, f)
        cls.readme = os.path.join(cls.tmp, "README.md")
        with open(cls.readme, "w") as f:
            f.write("# x\n\n## Benchmarks\n\n<!-- bench:begin -->\nold\n<!-- bench:end -->\n\nrest\n")
        cls.out = os.path.join(cls.tmp, "docs", "benchmarks.md")
        cls.report_out = subprocess.run(
            [sys.executable, os.path.join(BENCHES, "report.py"), "--c", c_json,
             "--python", os.path.join(cls.tmp, "python.json"),
             "--node", os.path.join(cls.tmp, "node.json"), "--out", cls.out, "--plots", "",
             "--readme", cls.readme, "--command", "make bench RUNS=3", "--date", "today",
             "--no-machine"], capture_output=True, text=True, timeout=60)
        cls.md = ""
        if os.path.exists(cls.out):
            with open(cls.out) as f:
                cls.md = f.read()

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def line(self, start):
        hits = [l for l in self.md.splitlines() if l.startswith(start)]
        self.assertTrue(hits, "no line starting %r in:\n%s" % (start, self.md))
        return hits[0]

    def test_suites_ran(self):
        # run.py exits 0: the fake weft runs did not fail
        self.assertEqual(self.run_out.returncode, 0, self.run_out.stderr + self.run_out.stdout)
        self.assertEqual(self.report_out.returncode, 0, self.report_out.stderr)

    def test_table_medians_and_spreads(self):
        # weft's ops/s over its runs 3000000, 3000001, 3000002: median and min-max
        row = self.line("| weft | 3.00M (3.00M–3.00M)")
        self.assertIn("| 100 |", row)   # the same in every run: no spread
        self.assertIn("| libev | 1.00M", self.md)

    def test_ratio(self):
        # ratio column weft / row: 3.0M / 1.5M = 2.00x for libuv
        self.assertIn("2.00×", self.line("| libuv | 1.50M"))

    def test_goal_met_and_missed(self):
        self.assertIn("* goal: weft schedule+cancel ops/s ≥ 1.5× libev: 3.000×, **met**", self.md)
        self.assertIn("* goal: weft bytes/timer ≤ 64: 72.5, **not met**", self.md)
        head = self.line("| C | timers_cancel |")
        self.assertIn("| yes |", head)
        self.assertIn("| **no** |", self.line("| C | memory |"))
        self.assertIn("| **no** |", self.line("| Python | call_soon |"))
        self.assertIn("| yes |", self.line("| Node | timers-spread |"))

    def test_undeclared_row_and_shapes(self):
        row = self.line("| weft-new (new) | 50.0 |")
        self.assertIn("from another thread", row)
        self.assertIn("Shape: main thread, the loop never runs", self.md)

    def test_base_rows(self):
        # weft-base's row in the table, weft / weft-base as its ratio; no goal of its own
        self.assertIn("1.50×", self.line("| weft-base | 2.00M (2.00M–2.00M)"))
        self.assertNotIn("goal: weft-base", self.md)
        self.assertIn("skipped: the base library lacks weft_new", self.line("| weft-base | skipped"))
        # the section beside the base: 3.0M against 2.0M ops/s, and the same ns/timer
        self.assertIn("### Against the base: abc123", self.md)
        self.assertIn("| 3.00M | 2.00M | 1.50× |",
                      self.line("| timers_cancel | weft | schedule+cancel ops/s"))
        self.assertIn("| 100 | 100 | 1.00× |", self.line("| timers_cancel | weft | ns/timer"))
        self.assertIn("the base library lacks weft_new", self.line("| memory | weft |"))
        self.assertIn("0 of 4 figures below 0.90× the base.", self.md)

    def test_bindings_base_rows(self):
        # Python: 105 calls/s now against the base's 510: flagged; the best peer stays uvloop
        self.assertIn("| 105 | 510 | **0.21×** |", self.line("| call_soon | weft | calls/s"))
        self.assertIn("1 of 1 figures below 0.90× the base: call_soon weft calls/s", self.md)
        self.assertIn("uvloop", self.line("| Python | call_soon |"))
        self.assertNotIn("weft-base", self.line("| Python | call_soon |"))
        # Node: 92 ms now against 100: better
        self.assertIn("| 92.0 | 100 | 1.09× |", self.line("| timers-spread | weft | ms"))
        self.assertIn("0 of 1 figures below 0.90× the base.", self.md)

    def test_readme_section(self):
        with open(self.readme) as f:
            text = f.read()
        self.assertNotIn("\nold\n", text)
        self.assertIn("Goals met: 2 of 4", self.md)
        self.assertIn("(goals met: 2 of 4)", text)
        self.assertIn("[docs/benchmarks.md](docs/benchmarks.md)", text)
        self.assertIn("| C | timers_cancel |", text)
        self.assertTrue(text.endswith("<!-- bench:end -->\n\nrest\n"))


if __name__ == "__main__":
    unittest.main()
