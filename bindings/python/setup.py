"""Build script of the weft Python package: setuptools, plus a build_py step that puts
the weft shared library inside the package (weft/libweft.so).

The library comes from $WEFT_LIBRARY when it is set; otherwise this runs
`cargo build --release` at the root of the repository this package lives in
(bindings/python -> ../..) and takes target/release/libweft.so. $CARGO names another
cargo. The wheel is platform-specific (it holds a native library).
"""

import os
import subprocess
import sys

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
LIBRARY_FILE = "libweft.dylib" if sys.platform == "darwin" else "libweft.so"


def weft_library() -> str:
    override = os.environ.get("WEFT_LIBRARY")
    if override:
        if not os.path.isfile(override):
            raise SystemExit(f"weft: WEFT_LIBRARY={override} is not a file")
        return override
    if not os.path.isfile(os.path.join(REPO, "Cargo.toml")):
        raise SystemExit(f"weft: {REPO} is not the weft repository (no Cargo.toml); build the library "
                         "yourself and set WEFT_LIBRARY to its path")
    cargo = os.environ.get("CARGO", "cargo")
    print(f"weft: {cargo} build --release (in {REPO})", flush=True)
    try:
        subprocess.run([cargo, "build", "--release"], cwd=REPO, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SystemExit(f"weft: `{cargo} build --release` failed ({exc}); install Rust, or set "
                         "WEFT_LIBRARY to a built libweft") from None
    return os.path.join(REPO, "target", "release", LIBRARY_FILE)


class BuildPyWithLibrary(build_py):
    """build_py, then copy the weft library into the built package."""

    def run(self) -> None:
        super().run()
        if not self.dry_run:
            self.copy_file(weft_library(), os.path.join(self.build_lib, "weft", LIBRARY_FILE))


class BinaryDistribution(Distribution):
    """The wheel holds a native library: tag it for this platform, not py3-none-any."""

    def has_ext_modules(self) -> bool:
        return True


setup(cmdclass={"build_py": BuildPyWithLibrary}, distclass=BinaryDistribution)
