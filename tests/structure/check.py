#!/usr/bin/env python3
"""The tree's shape, checked by `make lint`: no import circle between the crate's
top-level modules (src/<module>), and no source file past the size the project keeps
files under. Exits 1 with what is wrong."""

import collections
import os
import re
import sys

MAX_LINES = 700
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Every directory of code written by hand (what is built, vendored or installed under
# them is skipped: PRUNED).
SIZED = ["src", "include", "bindings", "tests", "benches", "examples", "docs", "packaging"]
PRUNED = {"build", "node_modules", "target", "__pycache__", "dist"}
CODE = (".rs", ".py", ".js", ".mjs", ".ts", ".c", ".h", ".hpp", ".cpp", ".sh")
# Generated: the header by cbindgen from src/ffi, the others from include/weft.h
# (bindings/gen.py): as long as the header is.
GENERATED = {"include/weft.h", "bindings/python/weft/_ffi.py", "bindings/node/lib/ffi.js"}


def module_edges():
    """{module: {dependency: [file:line, ...]}} from `crate::x` paths in code (comments
    and test modules left out)."""
    edges = collections.defaultdict(lambda: collections.defaultdict(list))
    for root, _, files in os.walk(os.path.join(ROOT, "src")):
        for name in files:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(root, name)
            module = os.path.relpath(path, os.path.join(ROOT, "src")).split(os.sep)[0].removesuffix(".rs")
            text = re.sub(r"#\[cfg\(test\)\]\s*mod tests[\s\S]*", "", open(path).read())
            for number, line in enumerate(text.splitlines(), 1):
                for dep in re.findall(r"crate::(?:r#)?([a-z_]+)", line.split("//")[0]):
                    if dep != module:
                        edges[module][dep].append(f"{os.path.relpath(path, ROOT)}:{number}")
    return edges


def circles(edges):
    found, state = [], {}

    def visit(node, stack):
        state[node] = 1
        stack.append(node)
        for dep in edges.get(node, {}):
            if state.get(dep) == 1:
                found.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, stack)
        stack.pop()
        state[node] = 2

    for node in list(edges):
        if node not in state:
            visit(node, [])
    return found


def oversized():
    for top in SIZED:
        for root, dirs, files in os.walk(os.path.join(ROOT, top)):
            dirs[:] = [d for d in dirs if d not in PRUNED and not d.startswith(".")]
            for name in files:
                path = os.path.join(root, name)
                if name.endswith(CODE) and os.path.relpath(path, ROOT) not in GENERATED:
                    n = sum(1 for _ in open(path))
                    if n > MAX_LINES:
                        yield os.path.relpath(path, ROOT), n


def main():
    problems = []
    edges = module_edges()
    for circle in circles(edges):
        where = "; ".join(f"{a} -> {b} at {edges[a][b][0]}" for a, b in zip(circle, circle[1:]))
        problems.append(f"import circle {' -> '.join(circle)} ({where})")
    for path, n in oversized():
        problems.append(f"{path} has {n} lines (more than {MAX_LINES}): split a concept out")
    for problem in problems:
        print(f"tests/structure/check.py: {problem}")
    if not problems:
        print(f"structure: no import circle among {len(edges)} modules; no source file over {MAX_LINES} lines")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
