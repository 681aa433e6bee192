#!/usr/bin/env python3
"""Generates weft's language-binding declarations from the C header.

    python3 bindings/gen.py            write bindings/python/weft/_ffi.py, bindings/node/lib/ffi.js
                                       and include/weft.cdef (cffi; rendered by cdef.py)
    python3 bindings/gen.py --check    write nothing; exit 1 (naming the stale file, with a
                                       short diff) when any differs from what would be written
    --header PATH   the header to read (default: include/weft.h)
    --out-dir DIR   where python/weft/_ffi.py, node/lib/ffi.js and include/weft.cdef go
                    (default: the first two in bindings/, the cdef in include/)

include/weft.h is written by cbindgen, in a small regular dialect of C: `//` doc comments,
integer `#define`s, `typedef enum` blocks, `typedef struct` blocks, opaque struct typedefs,
scalar typedefs, function-pointer typedefs and function prototypes, inside an include
guard and an `extern "C"` block. This is a parser for exactly that dialect and nothing more:
anything else (a `#if`, a union, an array field, an inline function pointer, a type it has
not seen declared, a doc comment attached to nothing, ...) stops it with the file and line,
so that a change to the header can never produce half a binding. Standard library only;
CPython >= 3.9.
"""

import argparse
import difflib
import json
import os
import re
import sys
from typing import Dict, List, Optional, Tuple

# The model of a parsed header (CType ... Header) is shared by every renderer; the cffi
# renderer lives in a module of its own. Neither imports this file.
from cdef import render_cdef
from header_model import (
    Alias, Callback, Const, CType, Enum, Field, Function, Header, Opaque, Param, Struct, generated_banner,
)

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

ALLOWED_INCLUDES = {"stdbool.h", "stddef.h", "stdint.h"}
IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
INT_LITERAL = re.compile(r"^\(?\s*(-?)\s*(0[xX][0-9a-fA-F]+|[0-9]+)[uUlL]*\s*\)?$")


class HeaderError(Exception):
    def __init__(self, path: str, line: int, msg: str):
        super().__init__(f"{path}:{line}: {msg}")


# ---------------------------------------------------------------------------------------
# The parser
# ---------------------------------------------------------------------------------------


class Parser:
    def __init__(self, text: str, path: str):
        self.path = path
        self.lines = text.split("\n")
        self.h = Header(path)
        self.doc: List[str] = []  # pending `//` doc lines
        self.doc_line = 0
        self.cond: List[Tuple[str, int]] = []  # open #ifndef / #ifdef, with their lines
        self.guard: Optional[str] = None
        self.guard_defined = False
        self.in_extern_c = False

    def fail(self, line: int, msg: str):
        raise HeaderError(self.path, line, msg)

    def take_doc(self) -> str:
        doc = "\n".join(self.doc)
        self.doc = []
        return doc

    def declare(self, name: str, line: int):
        if name in self.h.names:
            self.fail(line, f"`{name}` is declared twice (first on line {self.h.names[name]})")
        self.h.names[name] = line

    def parse(self) -> Header:
        i = 0
        n = len(self.lines)
        while i < n:
            lineno = i + 1
            raw = self.lines[i].rstrip()
            s = raw.strip()
            if not s:
                if self.doc:
                    self.fail(self.doc_line, "doc comment not attached to a declaration "
                              "(a blank line follows it)")
                i += 1
            elif s.startswith("/*"):
                if self.doc:
                    self.fail(lineno, "block comment after a doc comment")
                while "*/" not in self.lines[i]:
                    i += 1
                    if i >= n:
                        self.fail(lineno, "unterminated block comment")
                if not self.lines[i].rstrip().endswith("*/"):
                    self.fail(i + 1, "code after the end of a block comment")
                i += 1
            elif s.startswith("//"):
                if not self.doc:
                    self.doc_line = lineno
                self.doc.append(re.sub(r"^// ?", "", s))
                i += 1
            elif s.startswith("#"):
                self.directive(s, lineno)
                i += 1
            elif s == 'extern "C" {':
                if not self.cond or self.cond[-1][0] != "__cplusplus" or self.in_extern_c:
                    self.fail(lineno, '`extern "C" {` outside `#ifdef __cplusplus`')
                self.in_extern_c = True
                i += 1
            elif re.fullmatch(r'\}\s*//\s*extern "C"', s):
                if not self.cond or self.cond[-1][0] != "__cplusplus" or not self.in_extern_c:
                    self.fail(lineno, '`}  // extern "C"` without its `extern "C" {`')
                self.in_extern_c = False
                i += 1
            else:
                i = self.declaration(i)
        if self.doc:
            self.fail(self.doc_line, "doc comment at the end of the file")
        if self.cond:
            self.fail(self.cond[-1][1], f"`#if...{self.cond[-1][0]}` is never closed")
        if self.in_extern_c:
            self.fail(n, '`extern "C" {` is never closed')
        if self.guard is None or not self.guard_defined:
            self.fail(1, "no include guard (`#ifndef NAME` / `#define NAME`)")
        if not self.h.functions:
            self.fail(1, "no function prototypes found")
        return self.h

    def directive(self, s: str, lineno: int):
        if self.doc and not s.startswith("#define"):
            self.fail(lineno, "a doc comment is followed by a preprocessor directive")
        m = re.fullmatch(r"#\s*(\w+)\s*(.*)", s)
        if not m:
            self.fail(lineno, f"cannot parse preprocessor line: {s}")
        word, rest = m.group(1), m.group(2).strip()
        if word == "ifndef":
            if self.guard is not None or self.cond or not re.fullmatch(IDENT, rest):
                self.fail(lineno, f"only the include guard may use #ifndef: {s}")
            self.guard = rest
            self.cond.append((rest, lineno))
        elif word == "ifdef":
            if rest != "__cplusplus":
                self.fail(lineno, f"conditional compilation is not understood: {s}")
            self.cond.append(("__cplusplus", lineno))
        elif word == "endif":
            if rest and not re.fullmatch(r"(//.*|/\*.*\*/)", rest):
                self.fail(lineno, f"cannot parse: {s}")
            if not self.cond:
                self.fail(lineno, "#endif without #if")
            self.cond.pop()
        elif word == "include":
            inc = re.fullmatch(r"<([\w./]+)>", rest)
            if not inc or inc.group(1) not in ALLOWED_INCLUDES:
                self.fail(lineno, f"unexpected include (its types would be unknown): {s}")
        elif word == "define":
            d = re.fullmatch(rf"({IDENT})(?:\s+(.*))?", rest)
            if not d:
                self.fail(lineno, f"cannot parse #define: {s}")
            name, value = d.group(1), (d.group(2) or "").strip()
            if not value:
                if name != self.guard or self.guard_defined or self.doc:
                    self.fail(lineno, f"#define without a value that is not the include guard: {s}")
                self.guard_defined = True
                return
            v = INT_LITERAL.fullmatch(value)
            if not v:
                self.fail(lineno, f"#define {name}: only integer literals are understood, not `{value}`")
            num = int(v.group(2), 0) * (-1 if v.group(1) else 1)
            self.declare(name, lineno)
            self.h.items.append(Const(name, num, self.take_doc(), lineno))
        else:
            self.fail(lineno, f"preprocessor directive not understood: {s}")

    # A declaration runs from line i to the first line ending in `;` outside braces.
    def declaration(self, i: int) -> int:
        start = i
        depth = 0
        body: List[Tuple[int, str]] = []
        while True:
            if i >= len(self.lines):
                self.fail(start + 1, "declaration never ends (no `;`)")
            s = self.lines[i].strip()
            if ("//" in s or "/*" in s) and not s.startswith("//"):
                self.fail(i + 1, f"comment inside a line of code: {s}")
            if s.startswith("#"):
                self.fail(i + 1, "preprocessor directive inside a declaration")
            body.append((i + 1, s))
            depth += s.count("{") - s.count("}")
            if depth < 0:
                self.fail(i + 1, "unbalanced `}`")
            i += 1
            if depth == 0 and s.endswith(";"):
                break
        doc = self.take_doc()
        first = body[0][1]
        if "{" in first:
            self.block(body, doc)
        else:
            if any(s.startswith("//") for _, s in body):
                self.fail(start + 1, "comment inside a declaration")
            self.simple(" ".join(s for _, s in body), start + 1, doc)
        return i

    def block(self, body: List[Tuple[int, str]], doc: str):
        line0, first = body[0]
        m = re.fullmatch(rf"typedef (enum|struct) ({IDENT}) \{{", first)
        if not m:
            self.fail(line0, f"only `typedef enum NAME {{` and `typedef struct NAME {{` blocks are understood: {first}")
        kind, name = m.group(1), m.group(2)
        lastline, last = body[-1]
        if not re.fullmatch(rf"\}} {name};", last):
            self.fail(lastline, f"the block `{kind} {name}` must end with `}} {name};`, not `{last}`")
        self.declare(name, line0)
        members: List[Tuple[int, str, str]] = []
        mdoc: List[str] = []
        mdoc_line = 0
        for ln, s in body[1:-1]:
            if not s:
                if mdoc:
                    self.fail(mdoc_line, "doc comment not attached to a member")
                continue
            if s.startswith("//"):
                if not mdoc:
                    mdoc_line = ln
                mdoc.append(re.sub(r"^// ?", "", s))
                continue
            if "{" in s or "}" in s:
                self.fail(ln, f"nested braces are not understood: {s}")
            members.append((ln, s, "\n".join(mdoc)))
            mdoc = []
        if mdoc:
            self.fail(mdoc_line, "doc comment at the end of a block")
        if kind == "enum":
            values: List[Const] = []
            nxt = 0
            for ln, s, d in members:
                e = re.fullmatch(rf"({IDENT})(?:\s*=\s*([^,]+?))?\s*,?", s)
                if not e:
                    self.fail(ln, f"cannot parse enum member: {s}")
                if e.group(2) is not None:
                    v = INT_LITERAL.fullmatch(e.group(2))
                    if not v:
                        self.fail(ln, f"enum member {e.group(1)}: only integer literals are understood, not `{e.group(2)}`")
                    nxt = int(v.group(2), 0) * (-1 if v.group(1) else 1)
                self.declare(e.group(1), ln)
                values.append(Const(e.group(1), nxt, d, ln))
                nxt += 1
            if not values:
                self.fail(line0, f"enum {name} has no members")
            decl = Enum(name, doc, values, line0)
        else:
            fields: List[Field] = []
            seen = set()
            for ln, s, d in members:
                if not s.endswith(";") or s.count(";") != 1:
                    self.fail(ln, f"cannot parse struct field: {s}")
                if "(" in s or "[" in s:
                    self.fail(ln, f"inline function pointers and array fields are not understood "
                              f"(use a typedef): {s}")
                t, fname = self.typed_name(s[:-1], ln)
                if fname in seen:
                    self.fail(ln, f"field {fname} appears twice")
                seen.add(fname)
                self.check_value_type(t, ln, f"field {name}.{fname}")
                fields.append(Field(fname, t, d))
            if not fields:
                self.fail(line0, f"struct {name} has no fields")
            decl = Struct(name, doc, fields, line0)
        self.h.types[name] = decl
        self.h.items.append(decl)

    def simple(self, s: str, line: int, doc: str):
        s = re.sub(r"\s+", " ", s)
        s = re.sub(r"\s*([(),;*])\s*", r" \1 ", s).strip()
        s = re.sub(r"\s+", " ", s)
        # typedef struct NAME NAME;
        m = re.fullmatch(rf"typedef struct ({IDENT}) ({IDENT}) ;", s)
        if m:
            if m.group(1) != m.group(2):
                self.fail(line, f"opaque typedef with two names: {s}")
            self.declare(m.group(1), line)
            decl = Opaque(m.group(1), doc, line)
            self.h.types[decl.name] = decl
            self.h.items.append(decl)
            return
        # typedef RET (*NAME)(PARAMS);
        m = re.fullmatch(rf"typedef (.+?) \( \* ({IDENT}) \) \( (.*) \) ;", s)
        if m:
            ret = self.parse_type(m.group(1), line)
            self.check_return_type(ret, line, f"callback {m.group(2)}")
            params = self.params(m.group(3), line, m.group(2))
            self.declare(m.group(2), line)
            decl = Callback(m.group(2), ret, params, doc, line)
            self.h.types[decl.name] = decl
            self.h.items.append(decl)
            return
        if s.startswith("typedef "):
            if "(" in s or "[" in s or "{" in s:
                self.fail(line, f"typedef not understood: {s}")
            t, name = self.typed_name(s[len("typedef "):-1].strip(), line)
            if t.ptr:
                self.fail(line, f"pointer typedefs are not understood: {s}")
            self.check_value_type(t, line, f"typedef {name}")
            self.declare(name, line)
            decl = Alias(name, t, doc, line)
            self.h.types[name] = decl
            self.h.items.append(decl)
            return
        # RET NAME(PARAMS);
        m = re.fullmatch(rf"(.+?) ({IDENT}) \( (.*) \) ;", s)
        if m and "(" not in m.group(1) and "(" not in m.group(3):
            if m.group(1).split()[0] in ("static", "extern", "inline"):
                self.fail(line, f"storage class not understood: {s}")
            ret = self.parse_type(m.group(1), line)
            self.check_return_type(ret, line, f"function {m.group(2)}")
            params = self.params(m.group(3), line, m.group(2))
            self.declare(m.group(2), line)
            self.h.items.append(Function(m.group(2), ret, params, doc, line))
            return
        self.fail(line, f"declaration not understood: {s}")

    def params(self, s: str, line: int, owner: str) -> List[Param]:
        s = s.strip()
        if s == "void":
            return []
        if not s:
            self.fail(line, f"{owner}: `()` is not a prototype; write `(void)`")
        out: List[Param] = []
        for part in s.split(","):
            part = part.strip()
            if part == "...":
                self.fail(line, f"{owner}: variadic functions are not understood")
            t, name = self.typed_name(part, line)
            if name in (p.name for p in out):
                self.fail(line, f"{owner}: parameter {name} appears twice")
            self.check_value_type(t, line, f"{owner}: parameter {name}")
            out.append(Param(name, t))
        return out

    def typed_name(self, s: str, line: int) -> Tuple[CType, str]:
        s = re.sub(r"\s*\*\s*", " * ", s).strip()
        toks = s.split()
        if len(toks) < 2 or not re.fullmatch(IDENT, toks[-1]) or toks[-1] in ("const", "struct"):
            self.fail(line, f"expected `TYPE NAME`, got `{s}`")
        return self.parse_type(" ".join(toks[:-1]), line), toks[-1]

    def parse_type(self, s: str, line: int) -> CType:
        toks = re.sub(r"\*", " * ", s).split()
        const = False
        if toks and toks[0] == "const":
            const = True
            toks = toks[1:]
        struct = False
        if toks and toks[0] == "struct":
            struct = True
            toks = toks[1:]
        if not toks or not re.fullmatch(IDENT, toks[0]) or toks[0] in ("const", "struct", "enum", "union"):
            self.fail(line, f"type not understood: `{s}`")
        base = toks[0]
        rest = toks[1:]
        if rest and rest[0] == "const":  # `T const *`
            if const:
                self.fail(line, f"type not understood: `{s}`")
            const = True
            rest = rest[1:]
        if any(t != "*" for t in rest):
            self.fail(line, f"type not understood (only `[const] T *...` is): `{s}`")
        ptr = len(rest)
        if const and not ptr:
            self.fail(line, f"a `const` value type is not understood: `{s}`")
        if struct:
            decl = self.h.types.get(base)
            if not isinstance(decl, (Struct, Opaque)):
                self.fail(line, f"`struct {base}` is not a struct declared above")
        elif base not in PRIMITIVES:
            if base not in self.h.types:
                self.fail(line, f"unknown type `{base}` (not a known primitive nor declared above)")
        return CType(base, ptr, const)

    def check_value_type(self, t: CType, line: int, what: str):
        decl = self.h.types.get(t.base)
        if t.ptr == 0:
            if t.base == "void":
                self.fail(line, f"{what}: `void` is not a value type")
            if isinstance(decl, Opaque):
                self.fail(line, f"{what}: opaque `{t.base}` is used by value")
        if isinstance(decl, Callback) and t.ptr:
            self.fail(line, f"{what}: a pointer to the function pointer `{t.base}` is not understood")

    def check_return_type(self, t: CType, line: int, what: str):
        if t.c() == "void":
            return
        self.check_value_type(t, line, what + ": return type")


def parse_header(text: str, path: str = "weft.h") -> Header:
    return Parser(text, path).parse()


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
