"""Python binding of weft, an embeddable async runtime.

For now only the generated ctypes layer exists: `weft._ffi` (written by bindings/gen.py
from include/weft.h; never edit it by hand). Load the library with ctypes and call
`weft._ffi.bind(lib)` to declare every function on it.
"""
