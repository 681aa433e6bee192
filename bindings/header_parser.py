"""The parser of include/weft.h for bindings/gen.py (and tests/abi): text in, a Header
(header_model.py) out.

include/weft.h is written by cbindgen, in a small regular dialect of C: `//` doc comments,
integer `#define`s, `typedef enum` blocks, `typedef struct` blocks, opaque struct typedefs,
scalar typedefs, function-pointer typedefs and function prototypes, inside an include
guard and an `extern "C"` block. This is a parser for exactly that dialect and nothing more:
anything else (a `#if`, a union, an array field, an inline function pointer, a type it has
not seen declared, a doc comment attached to nothing, ...) stops it with the file and line,
so that a change to the header can never produce half a binding. Standard library only;
CPython >= 3.9.
"""

import re
from typing import List, Optional, Tuple

from header_model import (
    Alias, Callback, Const, CType, Enum, Field, Function, Header, Opaque, Param, Struct,
)

# The C primitive types the header may use (gen.py maps each to ctypes and koffi).
C_PRIMITIVES = frozenset({
    "void", "bool", "char", "int", "float", "double", "int8_t", "uint8_t", "int16_t",
    "uint16_t", "int32_t", "uint32_t", "int64_t", "uint64_t", "size_t",
})
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
        elif base not in C_PRIMITIVES:
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
