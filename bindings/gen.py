#!/usr/bin/env python3
"""Generates weft's language-binding declarations from the C header.

    python3 bindings/gen.py            write bindings/python/weft/_ffi.py, bindings/node/lib/ffi.js
                                       and include/weft.cdef (cffi; rendered by cdef.py)
    python3 bindings/gen.py --check    write nothing; exit 1 (naming the stale file, with a
                                       short diff) when any differs from what would be written
    --header PATH   the header to read (default: include/weft.h)
    --out-dir DIR   where python/weft/_ffi.py, node/lib/ffi.js and include/weft.cdef go
                    (default: the first two in bindings/, the cdef in include/)

include/weft.h is parsed by header_parser.py (a parser for exactly the dialect cbindgen
writes, which stops at anything else with the file and line). Standard library only;
CPython >= 3.9.
"""

import argparse
import difflib
import json
import os
import re
import sys
from typing import Dict, List, Optional, Tuple

# The model of a parsed header (CType ... Header) is shared by the parser and every
# renderer; the parser and the cffi renderer live in modules of their own, which never
# import this file.
from cdef import render_cdef
from header_model import (
    Alias, Callback, Const, CType, Enum, Function, Header, Opaque, Param, Struct, generated_banner,
)
from header_parser import C_PRIMITIVES, HeaderError, parse_header

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_HEADER = os.path.join(REPO, "include", "weft.h")
DEFAULT_OUT_DIR = os.path.join(REPO, "bindings")
PY_OUT = os.path.join("python", "weft", "_ffi.py")
JS_OUT = os.path.join("node", "lib", "ffi.js")
CDEF_OUT = os.path.join("include", "weft.cdef")

# C primitive type -> (ctypes expression, koffi type name, is a 64-bit integer).
PRIMITIVES: Dict[str, Tuple[Optional[str], str, bool]] = {
    "void": (None, "void", False),
    "bool": ("ctypes.c_bool", "bool", False),
    "char": ("ctypes.c_char", "char", False),
    "int": ("ctypes.c_int", "int", False),
    "float": ("ctypes.c_float", "float", False),
    "double": ("ctypes.c_double", "double", False),
    "int8_t": ("ctypes.c_int8", "int8_t", False),
    "uint8_t": ("ctypes.c_uint8", "uint8_t", False),
    "int16_t": ("ctypes.c_int16", "int16_t", False),
    "uint16_t": ("ctypes.c_uint16", "uint16_t", False),
    "int32_t": ("ctypes.c_int32", "int32_t", False),
    "uint32_t": ("ctypes.c_uint32", "uint32_t", False),
    "int64_t": ("ctypes.c_int64", "int64_t", True),
    "uint64_t": ("ctypes.c_uint64", "uint64_t", True),
    "size_t": ("ctypes.c_size_t", "size_t", False),
}

# Callback types that report a failure through errno (the header says so: fork_fn
# returns -1 with errno set): their ctypes type has use_errno=True, so the Python
# callback sets that errno with ctypes.set_errno.
ERRNO_CALLBACKS = {"weft_fork_fn"}
assert set(PRIMITIVES) == C_PRIMITIVES, "PRIMITIVES must map every type header_parser accepts"

# ---------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------


def resolve(h: Header, t: CType) -> str:
    """The primitive under a value type's typedefs ('int' for weft_run_mode), or the
    declaration kind ('struct', 'opaque', 'callback') for the others."""
    base = t.base
    while True:
        if base in PRIMITIVES:
            return base
        decl = h.types[base]
        if isinstance(decl, Alias):
            if decl.target.ptr:
                return "pointer"
            base = decl.target.base
        elif isinstance(decl, Enum):
            return "int"
        elif isinstance(decl, Struct):
            return "struct"
        elif isinstance(decl, Opaque):
            return "opaque"
        else:
            return "callback"


def is_int64(h: Header, t: CType) -> bool:
    return t.ptr == 0 and PRIMITIVES.get(resolve(h, t), (None, "", False))[2]


# ---------------------------------------------------------------------------------------
# Python (ctypes)
# ---------------------------------------------------------------------------------------


def py_type(h: Header, t: CType) -> str:
    if t.ptr == 0:
        if t.base in PRIMITIVES:
            return PRIMITIVES[t.base][0] or "None"
        return t.base
    if t.ptr == 1 and t.base == "char":
        return "ctypes.c_char_p"
    if t.ptr == 1 and t.base == "void":
        return "ctypes.c_void_p"
    return f"POINTER({py_type(h, CType(t.base, t.ptr - 1, False))})"


def py_comment(doc: str, indent: str = "") -> List[str]:
    return [indent + ("# " + l if l else "#") for l in doc.split("\n")] if doc else []


def py_str(doc: str, indent: str) -> List[str]:
    lines = doc.split("\n")
    if len(lines) == 1:
        return [indent + json.dumps(doc)]
    return [indent + json.dumps(l + "\n") for l in lines[:-1]] + [indent + json.dumps(lines[-1])]


def render_python(h: Header) -> str:
    o: List[str] = []
    w = o.append
    o.extend(generated_banner(h, "#"))
    w('"""ctypes declarations of weft\'s C API, one for each declaration of the header.')
    w("")
    w("Opaque types (weft_loop, ...) are empty ctypes.Structure subclasses used only through")
    w("ctypes.POINTER, so that a weft_pool pointer cannot be passed where a weft_loop one is")
    w("expected; NULL is None going in and a false pointer coming out. Callback typedefs are")
    w("ctypes.CFUNCTYPE types: keep every instance alive for as long as C may call it (until")
    w("its free_fn has run). `const char *` results come back as bytes.")
    w("")
    w("bind(lib) sets argtypes and restype of every function on a ctypes.CDLL; FUNCTIONS")
    w("names them all in header order, PROTOTYPES gives their C prototypes, DOCS the doc")
    w("comment of every declaration, CONSTANTS and ENUMS every integer constant.")
    w('"""')
    w("")
    w("import ctypes")
    w("from ctypes import POINTER")
    w("")
    consts: List[Tuple[str, int]] = []
    enums: List[Enum] = []
    docs: List[Tuple[str, str]] = []
    for it in h.items:
        w("")
        if isinstance(it, Const):
            o.extend(py_comment(it.doc))
            w(f"{it.name} = {it.value}")
            consts.append((it.name, it.value))
            docs.append((it.name, it.doc))
        elif isinstance(it, Enum):
            o.extend(py_comment(it.doc))
            w(f"{it.name} = ctypes.c_int  # a C enum")
            for v in it.values:
                o.extend(py_comment(v.doc))
                w(f"{v.name} = {v.value}")
                consts.append((v.name, v.value))
                docs.append((v.name, v.doc))
            enums.append(it)
            docs.append((it.name, it.doc))
        elif isinstance(it, Opaque):
            w("")
            w(f"class {it.name}(ctypes.Structure):")
            o.extend(py_str(it.doc or "Opaque.", "    "))
            w("    _fields_ = []  # opaque: use through POINTER only")
            w("")
            docs.append((it.name, it.doc))
        elif isinstance(it, Alias):
            o.extend(py_comment(it.doc))
            w(f"{it.name} = {py_type(h, it.target)}")
            docs.append((it.name, it.doc))
        elif isinstance(it, Callback):
            o.extend(py_comment(it.doc))
            args = [py_type(h, it.ret)] + [py_type(h, p.type) for p in it.params]
            w(f"{it.name} = ctypes.CFUNCTYPE(")
            for a, p in zip(args, [None] + it.params):
                w(f"    {a},  # " + ("returns" if p is None else p.name))
            if it.name in ERRNO_CALLBACKS:
                w("    use_errno=True,  # ctypes.set_errno in the callback sets the errno C sees")
            w(")")
            docs.append((it.name, it.doc))
        elif isinstance(it, Struct):
            w("")
            w(f"class {it.name}(ctypes.Structure):")
            o.extend(py_str(it.doc or it.name, "    "))
            w("    _fields_ = [")
            for f in it.fields:
                o.extend(py_comment(f.doc, "        "))
                w(f'        ("{f.name}", {py_type(h, f.type)}),')
            w("    ]")
            w("")
            docs.append((it.name, it.doc))
        elif isinstance(it, Function):
            o.pop()  # functions are listed below; their docs live in DOCS
            docs.append((it.name, it.doc))
    w("")
    w("")
    w("# Every function of the header, in header order.")
    w("FUNCTIONS = (")
    for f in h.functions:
        w(f'    "{f.name}",')
    w(")")
    w("")
    w("# The C prototype of every function (typedef names for `struct X`).")
    w("PROTOTYPES = {")
    for f in h.functions:
        w(f'    "{f.name}": {json.dumps(f.prototype())},')
    w("}")
    w("")
    w("# Every integer constant and enum value.")
    w("CONSTANTS = {")
    for name, _ in consts:
        w(f'    "{name}": {name},')
    w("}")
    w("")
    w("# Every enum: its name -> {value name: value}.")
    w("ENUMS = {")
    for e in enums:
        w(f'    "{e.name}": {{' + ", ".join(f'"{v.name}": {v.name}' for v in e.values) + "},")
    w("}")
    w("")
    w("# (restype, argtypes) of every function.")
    w("SIGNATURES = {")
    for f in h.functions:
        args = ", ".join(py_type(h, p.type) for p in f.params)
        w(f'    "{f.name}": ({py_type(h, f.ret)}, [{args}]),')
    w("}")
    w("")
    w("")
    w("def bind(lib: ctypes.CDLL) -> ctypes.CDLL:")
    w('    """Sets argtypes and restype of every weft function on lib; returns lib."""')
    w("    for name, (restype, argtypes) in SIGNATURES.items():")
    w("        fn = getattr(lib, name)")
    w("        fn.restype = restype")
    w("        fn.argtypes = argtypes")
    w("    return lib")
    w("")
    w("")
    w("# The doc comment of every declaration (functions, types, constants), from the header.")
    w("DOCS = {")
    for name, doc in docs:
        if doc:
            w(f'    "{name}": (')
            o.extend(py_str(doc, "        "))
            w("    ),")
        else:
            w(f'    "{name}": "",')
    w("}")
    text = "\n".join(o) + "\n"
    # Collapse the runs of blank lines the per-item separators leave.
    text = re.sub(r"\n{4,}", "\n\n\n", text)
    return text


# ---------------------------------------------------------------------------------------
# Node (koffi)
# ---------------------------------------------------------------------------------------


def js_type(h: Header, t: CType) -> str:
    """A koffi type string. Callback typedefs are used through a pointer in koffi
    (`weft_cb *`), as koffi.proto() declares the function type itself."""
    decl = h.types.get(t.base)
    base = t.base
    stars = t.ptr
    if isinstance(decl, Callback):
        stars += 1
    s = ("const " if t.const else "") + base
    return s + (" " + "*" * stars if stars else "")


def js_param(h: Header, p: Param) -> str:
    t = js_type(h, p.type)
    return t + ("" if t.endswith("*") else " ") + p.name


def js_proto(h: Header, name: str, ret: CType, params: List[Param]) -> str:
    r = js_type(h, ret)
    args = ", ".join(js_param(h, p) for p in params) or "void"
    return f"{r}{'' if r.endswith('*') else ' '}{name}({args})"


def js_comment(doc: str, indent: str = "") -> List[str]:
    return [indent + ("// " + l if l else "//") for l in doc.split("\n")] if doc else []


def js_str(s: str) -> str:
    return json.dumps(s)


def render_node(h: Header) -> str:
    o: List[str] = []
    w = o.append
    o.extend(generated_banner(h, "//"))
    w("//")
    w("// koffi declarations of weft's C API, one for each declaration of the header.")
    w("//")
    w("// - Opaque types are koffi.opaque() types, used through pointers; in koffi 3 a pointer is")
    w("//   a BigInt (or null for NULL).")
    w("// - Callback typedefs are koffi.proto() types; a parameter of one is declared `weft_cb *`.")
    w("//   weft keeps callbacks after the call returns, so pass registered callbacks only:")
    w("//   register(weft_cb, fn) here (koffi.register plus the 64-bit rule below), and")
    w("//   koffi.unregister(ptr) once the registration's free_fn has run. A JS function passed")
    w("//   directly would be a transient callback, invalid once the call returns.")
    w("// - 64-bit integers (weft_id, uint64_t, int64_t) always come out as BigInt: koffi alone")
    w("//   gives a Number up to 2^53 and a BigInt above, and weft ids (loop tag in bits 52..63)")
    w("//   sit on both sides of that line. load() converts results, register() callback")
    w("//   arguments. Going in, a BigInt or an integer Number is accepted.")
    w("// - `const char *` is a JS string going in and coming out.")
    w("'use strict';")
    w("")
    w("const koffi = require('koffi');")
    w("")
    exports: List[str] = []
    docs: List[Tuple[str, str]] = []
    consts: List[str] = []
    callbacks: List[Callback] = []
    for it in h.items:
        if isinstance(it, Const):
            w("")
            o.extend(js_comment(it.doc))
            w(f"const {it.name} = {it.value};")
            exports.append(it.name)
            consts.append(it.name)
            docs.append((it.name, it.doc))
        elif isinstance(it, Enum):
            w("")
            o.extend(js_comment(it.doc))
            w(f"const {it.name} = koffi.alias('{it.name}', 'int'); // a C enum")
            exports.append(it.name)
            docs.append((it.name, it.doc))
            for v in it.values:
                o.extend(js_comment(v.doc))
                w(f"const {v.name} = {v.value};")
                exports.append(v.name)
                consts.append(v.name)
                docs.append((v.name, v.doc))
        elif isinstance(it, Opaque):
            w("")
            o.extend(js_comment(it.doc))
            w(f"const {it.name} = koffi.opaque('{it.name}');")
            exports.append(it.name)
            docs.append((it.name, it.doc))
        elif isinstance(it, Alias):
            w("")
            o.extend(js_comment(it.doc))
            w(f"const {it.name} = koffi.alias('{it.name}', '{js_type(h, it.target)}');")
            exports.append(it.name)
            docs.append((it.name, it.doc))
        elif isinstance(it, Callback):
            w("")
            o.extend(js_comment(it.doc))
            w(f"const {it.name} = koffi.proto('{js_proto(h, it.name, it.ret, it.params)}');")
            exports.append(it.name)
            docs.append((it.name, it.doc))
            callbacks.append(it)
        elif isinstance(it, Struct):
            w("")
            o.extend(js_comment(it.doc))
            w(f"const {it.name} = koffi.struct('{it.name}', {{")
            for f in it.fields:
                o.extend(js_comment(f.doc, "  "))
                w(f"  {f.name}: '{js_type(h, f.type)}',")
            w("});")
            exports.append(it.name)
            docs.append((it.name, it.doc))
        elif isinstance(it, Function):
            docs.append((it.name, it.doc))
    fns = h.functions
    w("")
    w("// Every function of the header, in header order.")
    w("const FUNCTIONS = Object.freeze([")
    for f in fns:
        w(f"  '{f.name}',")
    w("]);")
    w("")
    w("// The koffi prototype of every function (callback parameters as `weft_cb *`).")
    w("const PROTOTYPES = Object.freeze({")
    for f in fns:
        w(f"  {f.name}: '{js_proto(h, f.name, f.ret, f.params)}',")
    w("});")
    w("")
    w("// Every integer constant and enum value.")
    w("const CONSTANTS = Object.freeze({")
    for c in consts:
        w(f"  {c},")
    w("});")
    w("")
    w("// Functions whose result is a 64-bit integer, made a BigInt by load().")
    w("const INT64_RESULTS = Object.freeze([")
    for f in fns:
        if is_int64(h, f.ret):
            w(f"  '{f.name}',")
    w("]);")
    w("")
    w("// Callback type name -> indices of its 64-bit integer arguments, made BigInts by register().")
    w("const INT64_ARGS = Object.freeze({")
    for cb in callbacks:
        idx = [str(i) for i, p in enumerate(cb.params) if is_int64(h, p.type)]
        w(f"  {cb.name}: Object.freeze([{', '.join(idx)}]),")
    w("});")
    w("")
    w("const toBigInt = (v) => (typeof v === 'bigint' ? v : BigInt(v));")
    w("")
    w("// Opens the weft shared library at `path` with koffi.load and returns an object with")
    w("// every function of FUNCTIONS declared on it (plus `handle`, the koffi library).")
    w("function load(path) {")
    w("  const handle = koffi.load(path);")
    w("  const lib = { handle };")
    w("  for (const name of FUNCTIONS) lib[name] = handle.func(PROTOTYPES[name]);")
    w("  for (const name of INT64_RESULTS) {")
    w("    const raw = lib[name];")
    w("    const fn = (...args) => toBigInt(raw(...args));")
    w("    fn.async = (...args) => {")
    w("      const cb = args.pop();")
    w("      raw.async(...args, (err, res) => cb(err, err ? res : toBigInt(res)));")
    w("    };")
    w("    lib[name] = fn;")
    w("  }")
    w("  return lib;")
    w("}")
    w("")
    w("// Registers `fn` as a C function pointer of the callback type `proto` (weft_cb, ...;")
    w("// the type or its name), with its 64-bit integer arguments given as BigInt. Returns")
    w("// koffi's pointer, to pass to weft and to koffi.unregister once the free_fn has run.")
    w("function register(proto, fn) {")
    w("  const type = typeof proto === 'string' ? koffi.type(proto) : proto;")
    w("  const idx = INT64_ARGS[type.name];")
    w("  if (idx === undefined) throw new TypeError(`not a weft callback type: ${type.name}`);")
    w("  let wrapped = fn;")
    w("  if (idx.length) {")
    w("    wrapped = (...args) => {")
    w("      for (const i of idx) args[i] = toBigInt(args[i]);")
    w("      return fn(...args);")
    w("    };")
    w("  }")
    w("  return koffi.register(wrapped, koffi.pointer(type));")
    w("}")
    w("")
    w("// The doc comment of every declaration (functions, types, constants), from the header.")
    w("const DOCS = Object.freeze({")
    for name, doc in docs:
        w(f"  {name}: {js_str(doc)},")
    w("});")
    w("")
    w("module.exports = {")
    w("  koffi,")
    for e in exports:
        w(f"  {e},")
    w("  FUNCTIONS,")
    w("  PROTOTYPES,")
    w("  CONSTANTS,")
    w("  INT64_RESULTS,")
    w("  INT64_ARGS,")
    w("  DOCS,")
    w("  load,")
    w("  register,")
    w("  unregister: koffi.unregister,")
    w("};")
    return re.sub(r"\n{3,}", "\n\n", "\n".join(o) + "\n")


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------


def outputs(header_path: str, out_dir: Optional[str] = None) -> List[Tuple[str, str]]:
    """(path, text) of every output. Without out_dir they go where the repository keeps
    them: bindings/python/weft/_ffi.py, bindings/node/lib/ffi.js and include/weft.cdef
    (beside weft.h, where C users look). With out_dir all three go under it, at
    python/weft/_ffi.py, node/lib/ffi.js and include/weft.cdef, so that a test's
    out-dir never writes outside itself."""
    with open(header_path, encoding="utf-8") as f:
        text = f.read()
    h = parse_header(text, header_path)
    return [
        (os.path.join(out_dir or DEFAULT_OUT_DIR, PY_OUT), render_python(h)),
        (os.path.join(out_dir or DEFAULT_OUT_DIR, JS_OUT), render_node(h)),
        (os.path.join(out_dir or REPO, CDEF_OUT), render_cdef(h)),
    ]


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="write nothing; exit 1 if an output differs from what would be written")
    ap.add_argument("--header", default=DEFAULT_HEADER, help="the C header (default: include/weft.h)")
    ap.add_argument("--out-dir", default=None,
                    help="one directory for every output: python/, node/ and include/ under it "
                         "(default: python/ and node/ in bindings/, weft.cdef in include/)")
    args = ap.parse_args(argv)
    try:
        outs = outputs(args.header, args.out_dir)
    except HeaderError as e:
        print(f"gen.py: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"gen.py: error: {e}", file=sys.stderr)
        return 2
    stale = 0
    for path, text in outs:
        try:
            with open(path, encoding="utf-8") as f:
                old = f.read()
        except FileNotFoundError:
            old = None
        if old == text:
            continue
        if args.check:
            stale += 1
            rel = os.path.relpath(path)
            if old is None:
                print(f"gen.py: {rel} is missing; run `python3 bindings/gen.py`")
                continue
            print(f"gen.py: {rel} is stale; run `python3 bindings/gen.py`")
            diff = list(difflib.unified_diff(old.splitlines(), text.splitlines(),
                                             f"{rel} (on disk)", f"{rel} (generated)", lineterm="", n=1))
            for line in diff[:40]:
                print(line)
            if len(diff) > 40:
                print(f"... ({len(diff) - 40} more diff lines)")
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8", newline="\n") as f:
                f.write(text)
            print(f"gen.py: wrote {os.path.relpath(path)}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
