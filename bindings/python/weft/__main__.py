"""`python -m weft`: which weft this is, which library it loaded and where from.

    $ python -m weft
    binding version: 0.1.0
    library version: 0.1.0
    ABI version:     1 (library), 1 (binding)
    library path:    /.../site-packages/weft/libweft.so

When no library can be loaded, `import weft` fails before this file runs (runpy
imports the package first): the ImportError's message lists every path tried.
"""

from . import __version__, _ffi, library_path, version
from ._lib import lib

print(f"binding version: {__version__}")
print(f"library version: {version()}")
print(f"ABI version:     {lib.weft_abi_version()} (library), {_ffi.WEFT_ABI_VERSION} (binding)")
print(f"library path:    {library_path}")
