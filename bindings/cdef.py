"""Renders a parsed weft header as the text cffi's `FFI.cdef` reads: include/weft.cdef.

`bindings/gen.py` parses include/weft.h and calls `render_cdef(header)`; this module
knows only the model (header_model.py), never gen.py.

cffi parses C declarations with pycparser, without a preprocessor: it takes integer
`#define`s but no include guard, `#include` or `extern "C"`, so the cdef is the header's
declarations alone, in header order. cffi strips comments, so the doc comments stay in
include/weft.h, where a reader of the cdef is sent. `struct X` is written as the typedef
name `X` (they are the same type). In ABI mode (`ffi.dlopen`) cffi lays structs out from
the cdef itself, so every field is written out, never cffi's `...`.
"""

from typing import List

from header_model import Alias, Callback, Const, CType, Enum, Function, Header, Opaque, Param, Struct, generated_banner


def c_decl(t: CType, name: str) -> str:
    """`int fd`, `const char *topic`: a type and the name it declares."""
    return t.c() + ("" if t.ptr else " ") + name


def c_params(params: List[Param]) -> str:
    return ", ".join(c_decl(p.type, p.name) for p in params) or "void"


def render_cdef(h: Header) -> str:
    o: List[str] = []
    w = o.append
    o.extend(generated_banner(h, "//"))
    w("//")
    w("// weft's C API for cffi: every declaration of the header, in its order, as `FFI.cdef`")
    w("// accepts it (no include guard, #include or extern \"C\"; `struct X` written `X`). The")
    w("// documentation of each is its doc comment in the header.")
    w("//")
    w("//     ffi = cffi.FFI()")
    w("//     ffi.cdef(open(\"include/weft.cdef\").read())")
    w("//     lib = ffi.dlopen(\"target/release/libweft.so\")")
    prev = None
    for it in h.items:
        # A blank line between declarations, except inside a run of #defines or of prototypes.
        if not (type(it) is type(prev) and isinstance(it, (Const, Function))):
            w("")
        prev = it
        if isinstance(it, Const):
            w(f"#define {it.name} {it.value}")
        elif isinstance(it, Enum):
            w(f"typedef enum {it.name} {{")
            for v in it.values:
                w(f"  {v.name} = {v.value},")
            w(f"}} {it.name};")
        elif isinstance(it, Opaque):
            w(f"typedef struct {it.name} {it.name};")
        elif isinstance(it, Alias):
            w(f"typedef {it.target.c()} {it.name};")
        elif isinstance(it, Callback):
            w(f"typedef {c_decl(it.ret, '(*' + it.name + ')')}({c_params(it.params)});")
        elif isinstance(it, Struct):
            w(f"typedef struct {it.name} {{")
            for f in it.fields:
                w(f"  {c_decl(f.type, f.name)};")
            w(f"}} {it.name};")
        elif isinstance(it, Function):
            w(f"{c_decl(it.ret, it.name)}({c_params(it.params)});")
        else:
            raise TypeError(f"render_cdef: no cdef form for {type(it).__name__} {getattr(it, 'name', '?')}")
    return "\n".join(o) + "\n"
