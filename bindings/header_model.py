"""The parsed form of a weft C header: what bindings/gen.py's parser produces and every
renderer reads (gen.py's ctypes and koffi renderers, cdef.py's cffi one). Declarations
only, in header order; no parsing and no rendering here, so that a renderer in a module
of its own imports this and never gen.py.
"""

import os
from dataclasses import dataclass, field
from typing import Dict, List

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class CType:
    base: str  # a primitive, or the name of a typedef / struct declared before
    ptr: int = 0  # levels of `*`
    const: bool = False  # `const` on the pointee (or the value)

    def c(self) -> str:
        s = ("const " if self.const else "") + self.base
        return s + (" " + "*" * self.ptr if self.ptr else "")


@dataclass
class Param:
    name: str
    type: CType


@dataclass
class Const:
    name: str
    value: int
    doc: str
    line: int


@dataclass
class Enum:
    name: str
    doc: str
    values: List[Const]
    line: int


@dataclass
class Alias:
    name: str
    target: CType
    doc: str
    line: int


@dataclass
class Opaque:
    name: str
    doc: str
    line: int


@dataclass
class Field:
    name: str
    type: CType
    doc: str


@dataclass
class Struct:
    name: str
    doc: str
    fields: List[Field]
    line: int


@dataclass
class Callback:
    name: str
    ret: CType
    params: List[Param]
    doc: str
    line: int


@dataclass
class Function:
    name: str
    ret: CType
    params: List[Param]
    doc: str
    line: int

    def prototype(self) -> str:
        args = ", ".join(p.type.c() + (" " if not p.type.ptr else "") + p.name for p in self.params)
        ret = self.ret.c()
        return f"{ret}{'' if self.ret.ptr else ' '}{self.name}({args or 'void'})"


@dataclass
class Header:
    path: str
    items: list = field(default_factory=list)  # every declaration, in header order
    types: Dict[str, object] = field(default_factory=dict)  # typedef name -> declaration
    names: Dict[str, int] = field(default_factory=dict)  # every name -> its line

    @property
    def functions(self) -> List[Function]:
        return [i for i in self.items if isinstance(i, Function)]

    @property
    def constants(self) -> List[Const]:
        out: List[Const] = []
        for i in self.items:
            if isinstance(i, Const):
                out.append(i)
            elif isinstance(i, Enum):
                out.extend(i.values)
        return out


def source_name(h: Header) -> str:
    """The header's path as generated files name it: relative to the repository when
    it is inside it (include/weft.h), else its file name."""
    p = os.path.abspath(h.path)
    if p.startswith(REPO + os.sep):
        return os.path.relpath(p, REPO).replace(os.sep, "/")
    return os.path.basename(p)
