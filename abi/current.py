"""The ABI of weft as it is now, read from the C header, the built library and the C
compiler's layout of the header's structs.

The ABI is a set of records, `KEY: VALUE` (the lines of abi/weft.abi; abi/README.md lists
them). `current()` returns them with the problems that make the header and the library
disagree, which no record can express.

The exported symbols come from `nm -D --defined-only -P`, the SONAME from `readelf -d`
(binutils, wherever a C toolchain is): they read every ELF class, byte order and symbol
versioning, which a hand-written .dynsym parser would have to get right first.
"""

import os
import re
import shlex
import subprocess
import sys
import tempfile
from typing import Dict, List, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "bindings"))
from gen import parse_header  # noqa: E402

CC = shlex.split(os.environ.get("CC", "cc"))
NM = os.environ.get("NM", "nm")
READELF = os.environ.get("READELF", "readelf")

# The library's version, not its ABI: MINOR and PATCH move every release and MAJOR at a
# major release, with or without an ABI change (weft_version() reports them at run time).
# WEFT_ABI_VERSION is the `abi-version` record.
NOT_ABI = {"WEFT_VERSION_MAJOR", "WEFT_VERSION_MINOR", "WEFT_VERSION_PATCH", "WEFT_ABI_VERSION"}

Records = Dict[str, str]


class ToolError(Exception):
    """The header, the library or a tool could not be read or run."""


def shown(path: str) -> str:
    """A path as messages show it: relative to the current directory when it is inside."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def run(cmd: List[str]) -> str:
    try:
        return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    except FileNotFoundError:
        raise ToolError(f"`{cmd[0]}` not found")
    except subprocess.CalledProcessError as e:
        raise ToolError(f"`{' '.join(cmd)}` failed:\n{e.stderr.strip()}")


def exported_symbols(lib: str) -> List[str]:
    """The names of the library's defined dynamic symbols, without `@VERSION`."""
    out = run([NM, "-D", "--defined-only", "-P", lib])
    return sorted({line.split()[0].split("@")[0] for line in out.splitlines() if line.strip()})


def soname(lib: str) -> str:
    m = re.search(r"\(SONAME\)\s+Library soname: \[(.+)\]", run([READELF, "-d", lib]))
    return m.group(1) if m else "(none)"


def signature(ret, name: str, params) -> str:
    """A prototype without parameter names: renaming a parameter does not change the ABI."""
    r = ret.c()
    args = ", ".join(p.type.c() for p in params) or "void"
    return f"{r}{'' if r.endswith('*') else ' '}{name}({args})"


def is_size_versioned(struct) -> bool:
    """Options structs whose first field `size_t size` tells the library how much of the
    struct the caller knows, so fields may be appended."""
    first = struct.fields[0]
    return first.name == "size" and first.type.c() == "size_t"


def header_records(h) -> Records:
    out: Records = {}
    for item in h.items:
        kind = type(item).__name__
        if kind == "Const":
            if item.name == "WEFT_ABI_VERSION":
                out["abi-version"] = str(item.value)
            elif item.name not in NOT_ABI:
                out[f"constant {item.name}"] = str(item.value)
        elif kind == "Enum":
            for v in item.values:
                out[f"enum {item.name}.{v.name}"] = str(v.value)
        elif kind == "Alias":
            out[f"typedef {item.name}"] = item.target.c()
        elif kind == "Callback":
            out[f"callback {item.name}"] = signature(item.ret, "(*)", item.params)
        elif kind == "Function":
            out[f"function {item.name}"] = signature(item.ret, item.name, item.params)
    return out


def layout_program(h, header_path: str) -> str:
    """A C program that prints the struct and field records, as the compiler lays them out."""
    lines = ["#include <stddef.h>", "#include <stdio.h>", f'#include "{os.path.abspath(header_path)}"',
             "int main(void) {"]
    for s in (i for i in h.items if type(i).__name__ == "Struct"):
        versioned = ", size-versioned" if is_size_versioned(s) else ""
        lines.append(f'  printf("struct {s.name}: size %zu, align %zu{versioned}\\n", '
                     f"sizeof({s.name}), _Alignof({s.name}));")
        for f in s.fields:
            lines.append(f'  printf("struct {s.name}.{f.name}: offset %zu, size %zu, {f.type.c()}\\n", '
                         f"offsetof({s.name}, {f.name}), sizeof((({s.name} *)0)->{f.name}));")
    lines += ["  return 0;", "}", ""]
    return "\n".join(lines)


def layout_records(h, header_path: str) -> Records:
    with tempfile.TemporaryDirectory(prefix="weft-abi-") as tmp:
        src, exe = os.path.join(tmp, "layout.c"), os.path.join(tmp, "layout")
        with open(src, "w") as f:
            f.write(layout_program(h, header_path))
        run([*CC, "-std=c11", "-Wall", "-Wextra", "-Werror", "-o", exe, src])
        out = run([exe])
    return dict(line.split(": ", 1) for line in out.splitlines())


def problems(h, abi: str, symbols: List[str], lib_soname: str, header_path: str, lib: str) -> List[str]:
    """Where the header and the library disagree. A Rust cdylib exports its #[no_mangle]
    functions and nothing else (rustc links it with a version script ending in `local: *`),
    so every other exported symbol is one the header forgot or one that leaked."""
    declared = {f.name for f in h.functions}
    hname, lname = shown(header_path), shown(lib)
    out = [f"{name}: declared in {hname} but not exported by {lname}"
           for name in sorted(declared - set(symbols))]
    out += [f"{name}: exported by {lname} but not declared in {hname}"
            for name in symbols if name not in declared]
    if not abi.isdigit():
        return out + [f"WEFT_ABI_VERSION: not defined in {hname}"]
    want = f"libweft.so.{int(abi) - 1}"
    if lib_soname != want:
        out.append(f"SONAME: {lname} has {lib_soname}, but WEFT_ABI_VERSION {abi} means {want} "
                   f"(build.rs: WEFT_ABI_VERSION - 1); is the library older than the header?")
    return out


def current(header_path: str, lib: str) -> Tuple[Records, List[str]]:
    """The ABI records of the header and the library, and the problems between them."""
    try:
        with open(header_path, encoding="utf-8") as f:
            h = parse_header(f.read(), header_path)
    except Exception as e:  # gen.HeaderError, OSError
        raise ToolError(str(e))
    if not os.path.isfile(lib):
        raise ToolError(f"{lib}: no such file (build it first: make build)")
    symbols, lib_soname = exported_symbols(lib), soname(lib)
    records = header_records(h)
    records.update(layout_records(h, header_path))
    records["soname"] = lib_soname
    abi = records.get("abi-version", "")
    return records, problems(h, abi, symbols, lib_soname, header_path, lib)
