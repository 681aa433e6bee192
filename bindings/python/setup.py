"""Build script of the weft Python package: setuptools, plus a build_py step that puts
the weft shared library inside the package (weft/libweft.so), and a bdist_wheel step
that tags the wheel py3-none-<platform>.

The library comes from $WEFT_LIBRARY when it is set; otherwise this runs
`cargo build --release` at the root of the repository this package lives in
(bindings/python -> ../..) and takes target/release/libweft.so. $CARGO names another
cargo.

The binding is ctypes only, so one wheel serves every CPython 3 (py3-none); only the
library ties it to a platform. On Linux the tag is manylinux_X_Y_<arch>, X.Y being the
newest glibc symbol version the packed library needs (read from its ELF version-needs
section), which is the policy `auditwheel show` reports for it.
"""

import os
import re
import shutil
import struct
import subprocess
import sys
from typing import Optional, Tuple

from setuptools import setup
from setuptools.command.bdist_wheel import bdist_wheel
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
        raise SystemExit(
            f"weft: no library to pack: {HERE} is not inside the weft repository\n"
            f"(no Cargo.toml in {REPO}). Build libweft in a weft checkout (`cargo build --release`)\n"
            "and set WEFT_LIBRARY to it:\n"
            f"    WEFT_LIBRARY=/path/to/weft/target/release/{LIBRARY_FILE} pip wheel {HERE}")
    cargo = os.environ.get("CARGO", "cargo")
    print(f"weft: {cargo} build --release (in {REPO})", flush=True)
    try:
        subprocess.run([cargo, "build", "--release"], cwd=REPO, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SystemExit(f"weft: `{cargo} build --release` failed ({exc}); install Rust, or set "
                         "WEFT_LIBRARY to a built libweft") from None
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target")
    return os.path.join(REPO, target, "release", LIBRARY_FILE)


SHT_GNU_VERNEED = 0x6FFFFFFE
GLIBC_VERSION = re.compile(r"GLIBC_(\d+)\.(\d+)(?:\.\d+)?")


def needed_glibc(path: str) -> Optional[Tuple[int, int]]:
    """The newest GLIBC_x.y symbol version the ELF file at path needs (what `objdump -T`
    lists), from its version-needs section; None if it needs none (e.g. built for musl)."""
    with open(path, "rb") as f:
        elf = f.read()
    if elf[:4] != b"\x7fELF":
        raise SystemExit(f"weft: {path} is not an ELF file")
    order = "<" if elf[5] == 1 else ">"
    if elf[4] == 2:  # ELFCLASS64
        (section_table,) = struct.unpack_from(order + "Q", elf, 0x28)
        entry_size, count = struct.unpack_from(order + "HH", elf, 0x3A)
        section_header = order + "IIQQQQIIQQ"
    else:
        (section_table,) = struct.unpack_from(order + "I", elf, 0x20)
        entry_size, count = struct.unpack_from(order + "HH", elf, 0x2E)
        section_header = order + "IIIIIIIIII"
    # (name, type, flags, addr, offset, size, link, info, addralign, entsize)
    sections = [struct.unpack_from(section_header, elf, section_table + i * entry_size) for i in range(count)]
    versions = []
    for _, kind, _, _, offset, _, link, needs, _, _ in sections:
        if kind != SHT_GNU_VERNEED:
            continue
        strings = sections[link][4]  # the section's string table (.dynstr)
        need = offset
        for _ in range(needs):  # Elf_Verneed: one per needed library
            _, aux_count, _, aux, next_need = struct.unpack_from(order + "HHIII", elf, need)
            entry = need + aux
            for _ in range(aux_count):  # Elf_Vernaux: one per version of that library
                _, _, _, name, next_entry = struct.unpack_from(order + "IHHII", elf, entry)
                start = strings + name
                match = GLIBC_VERSION.fullmatch(elf[start:elf.index(b"\0", start)].decode("ascii", "replace"))
                if match:
                    versions.append((int(match[1]), int(match[2])))
                entry += next_entry
            need += next_need
    return max(versions, default=None)


class BuildPyWithLibrary(build_py):
    """build_py, then copy the weft library into the built package."""

    def run(self) -> None:
        if self.dry_run:
            return super().run()
        library = weft_library()  # first, so that a missing library is the last thing said
        super().run()
        # Always copied (distutils' copy_file skips a source older than the copy, which
        # would pack a stale library left in build/ when WEFT_LIBRARY names an older one).
        shutil.copy2(library, self.packed_library())

    def packed_library(self) -> str:
        return os.path.join(self.build_lib, "weft", LIBRARY_FILE)


class PlatformWheel(bdist_wheel):
    """A wheel for any CPython 3 (py3-none) on this platform: manylinux_X_Y_<arch> on a
    glibc Linux, from the packed library's glibc needs; setuptools' platform tag
    elsewhere (macOS: macosx_X_Y_<arch>), or when --plat-name is given."""

    def get_tag(self) -> Tuple[str, str, str]:
        _, _, platform = super().get_tag()
        if platform.startswith("linux_") and not self.plat_name_supplied:
            glibc = needed_glibc(self.get_finalized_command("build_py").packed_library())
            if glibc is not None:
                platform = "manylinux_{}_{}_{}".format(*glibc, platform[len("linux_"):])
        return "py3", "none", platform


class BinaryDistribution(Distribution):
    """The package holds a native library: not pure (it installs into platlib and its
    wheel's files sit at the root, not under .data/purelib)."""

    def has_ext_modules(self) -> bool:
        return True


setup(cmdclass={"build_py": BuildPyWithLibrary, "bdist_wheel": PlatformWheel}, distclass=BinaryDistribution)
