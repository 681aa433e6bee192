#!/usr/bin/env python3
"""The Python binding's tests under valgrind's memcheck: `make test-python-valgrind`.

    python3 tests/python/memcheck.py [--python PY] [pytest arguments...]

Runs pytest on tests/python (or the files and -k expression given) in one interpreter
under memcheck, with PYTHONMALLOC=malloc (pymalloc's arenas would hide CPython's heap
from memcheck), every forked child followed (process tasks fork without exec), each
process writing its report as XML. Then it reads every report and counts the errors and
definite leaks that are weft's: a stack (where it happened, where the block was made or
freed) whose innermost frames, past the allocator and the C library, are in libweft.
The binding's use of the C API (a buffer freed early, a callback after its free_fn, a
missing free) lands there. CPython's own reports (3.11 reads an uninitialised digit of
some new ints, and keeps interned objects at exit), also from Python callbacks weft
called, are counted and left out; so are the leaks of forked children (process tasks),
which exit with _exit holding what the parent's threads owned (their errors count).

Fails when pytest fails or any report names libweft. Not part of `make test`: memcheck
makes an interpreter 20-50 times slower, and the default selection (TESTS below: the
suites without wall-clock bounds tighter than that) takes several minutes on two cores.
"""
import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
# The default selection: what has no wall-clock bound a 50x slower interpreter misses.
# Left out: test_watchdog.py (it times a busy callback's report), test_process_fds.py,
# _reuse.py and _signals.py (children's timeouts and kill delays of a few hundred ms).
TESTS = ["test_api.py", "test_errors.py", "test_callbacks.py", "test_events.py",
         "test_batching.py", "test_library.py", "test_tasks.py", "test_watch.py",
         "test_loop.py", "test_stats.py", "test_asyncio.py", "test_tornado.py",
         "test_exit.py", "test_cffi.py", "test_package.py", "test_process.py"]
# And tests within them. Timing under memcheck: max_children_holds_across_many_tasks
# (children outlive their slot's timing), error_handler_gets_every_kind_of_callback and
# free_fn_runs_exactly_once_per_registration (each waits a bounded time for callbacks
# and frees that other threads make, and failed once in three runs here).
# python_handler_is_back_after_the_last_watch: under
# memcheck and after test_watch_signal, in pytest only, the process dies of the SIGUSR2
# it raises once Python's handler is back (natively it passes; the same calls in a
# script pass under memcheck too): not understood yet, so not hidden elsewhere.
DESELECT = " and ".join("not " + t for t in (
    "max_children_holds_across_many_tasks", "error_handler_gets_every_kind_of_callback",
    "free_fn_runs_exactly_once_per_registration", "python_handler_is_back_after_the_last_watch"))
# The frames that make a report weft's: the library, by its file name.
WEFT_OBJ = "libweft"
# Frames skipped before that look: the allocator (valgrind's), the C library, the loader.
SYSTEM_OBJS = ("vgpreload", "/libc.so", "/ld-linux", "libc-")


def frames(stack):
    return [(f.findtext("obj") or "", f.findtext("fn") or "?", f.findtext("file") or "",
             f.findtext("line") or "") for f in stack.iter("frame")]


def ours(fs, depth=3):
    """Whether a stack is weft's: a frame of libweft among its innermost `depth`, past
    the allocator's and the C library's. (Deeper down, libweft is only the caller of a
    Python callback, where CPython's own reports would otherwise be counted.)"""
    inner = [obj for obj, *_ in fs if not any(x in obj for x in SYSTEM_OBJS)]
    return any(WEFT_OBJ in obj for obj in inner[:depth])


def read_report(path):
    """(weft errors, other errors) of one process's XML report: each a (kind, what,
    frames) tuple. A report cut short (a process killed mid-write) yields what it has."""
    try:
        text = open(path, encoding="utf-8", errors="replace").read()
    except OSError:
        return [], []
    if "</valgrindoutput>" not in text:
        text = text[:text.rfind("</error>") + len("</error>")] + "</valgrindoutput>" \
            if "</error>" in text else ""
    if not text:
        return [], []
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return [], [("unreadable", path, [])]
    weft, other = [], []
    for err in root.iter("error"):
        kind = err.findtext("kind") or "?"
        what = err.findtext("what") or err.findtext("xwhat/text") or ""
        stacks = [frames(stack) for stack in err.iter("stack")]
        mine = any(ours(fs) for fs in stacks)
        (weft if mine else other).append((kind, what, [fr for fs in stacks for fr in fs]))
    return weft, other


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--python", default=sys.executable, help="the interpreter (with pytest)")
    ap.add_argument("--keep", action="store_true", help="keep the XML reports")
    args, pytest_args = ap.parse_known_args()
    if not shutil.which("valgrind"):
        print("valgrind not found: the memcheck pass is skipped; apt-get install valgrind")
        return 0
    out = tempfile.mkdtemp(prefix="weft-memcheck-")
    # the default selection unless the arguments name tests (a file or a node id)
    named = any(".py" in a for a in pytest_args if not a.startswith("-"))
    tests = pytest_args if named else [os.path.join(HERE, t) for t in TESTS] + ["-k", DESELECT] + pytest_args
    env = dict(os.environ, PYTHONMALLOC="malloc")
    cmd = ["valgrind", "--tool=memcheck", "--xml=yes", "--xml-file=%s/vg.%%p.xml" % out,
           "--leak-check=full", "--show-leak-kinds=definite", "--errors-for-leak-kinds=definite",
           "--num-callers=30", args.python, "-m", "pytest", "-q", "-p", "no:cacheprovider"] + tests
    print("memcheck:", " ".join(cmd), flush=True)
    proc = subprocess.Popen(cmd, env=env, cwd=REPO)
    rc = proc.wait()
    root = "vg.%d.xml" % proc.pid   # valgrind runs its client in its own process
    weft, other, reports = [], 0, sorted(glob.glob(os.path.join(out, "vg.*.xml")))
    for path in reports:
        w, o = read_report(path)
        # A forked child (a process task) leaks by design what the parent's threads
        # held: it exits with _exit, and those threads are not in it. Its errors count.
        if os.path.basename(path) != root:
            o += [e for e in w if e[0].startswith("Leak_")]
            w = [e for e in w if not e[0].startswith("Leak_")]
        weft += [(os.path.basename(path),) + e for e in w]
        other += len(o)
    for name, kind, what, fs in weft:
        print("\n%s: %s: %s" % (name, kind, what))
        for obj, fn, file, line in fs[:12]:
            print("    %s %s%s" % (fn, "%s:%s" % (file, line) if file else os.path.basename(obj),
                                   "" if WEFT_OBJ not in obj else "  <- weft"))
    print("\nmemcheck: %d processes; %d reports through libweft; %d others (CPython's own, "
          "not counted); pytest exit %d" % (len(reports), len(weft), other, rc))
    if args.keep:
        print("reports kept in", out)
    else:
        shutil.rmtree(out, ignore_errors=True)
    return 1 if rc != 0 or weft else 0


if __name__ == "__main__":
    sys.exit(main())
