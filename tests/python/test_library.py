"""Finding the library: WEFT_LIBRARY, the package's copy, the repository's
target/release, the system (see bindings/python/README.md)."""

import os
import shutil
import subprocess
import sys

import pytest

import weft
from conftest import PACKAGE_ROOT, REPO
from weft import _lib

REPO_LIBRARY = os.path.join(REPO, "target", "release", "libweft.so")


def python(code, env_extra, pythonpath):
    env = {k: v for k, v in os.environ.items() if k not in ("WEFT_LIBRARY", "LD_LIBRARY_PATH")}
    env.update(env_extra)
    env["PYTHONPATH"] = pythonpath
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=30)


def copy_package(dest, with_library):
    shutil.copytree(os.path.join(PACKAGE_ROOT, "weft"), dest / "weft",
                    ignore=shutil.ignore_patterns("__pycache__", "libweft.so"))
    if with_library:
        shutil.copy(REPO_LIBRARY, dest / "weft" / "libweft.so")


PRINT_PATH = "import weft; print(weft.library_path); print(weft.version())"


def test_the_source_tree_uses_the_repositorys_build():
    if os.environ.get("WEFT_LIBRARY"):
        pytest.skip("WEFT_LIBRARY is set")
    assert os.path.samefile(weft.library_path, REPO_LIBRARY)


def test_candidates_in_order(monkeypatch):
    monkeypatch.delenv("WEFT_LIBRARY", raising=False)
    where = [w for w, _ in _lib.library_candidates()]
    assert where[:2] == ["package", "repository"] and where[-1] == "system"
    monkeypatch.setenv("WEFT_LIBRARY", "/some/libweft.so")
    assert list(_lib.library_candidates()) == [("WEFT_LIBRARY", "/some/libweft.so")]


def test_weft_library_overrides_everything(tmp_path):
    copy = tmp_path / "libweft-copy.so"
    shutil.copy(REPO_LIBRARY, copy)
    proc = python(PRINT_PATH, {"WEFT_LIBRARY": str(copy)}, PACKAGE_ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[0] == str(copy)


def test_a_wrong_weft_library_is_an_error_not_a_fallback(tmp_path):
    proc = python(PRINT_PATH, {"WEFT_LIBRARY": str(tmp_path / "missing.so")}, PACKAGE_ROOT)
    assert proc.returncode != 0
    assert "ImportError" in proc.stderr and "missing.so" in proc.stderr


def test_the_packages_own_copy_comes_next(tmp_path):
    copy_package(tmp_path, with_library=True)
    proc = python(PRINT_PATH, {}, str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[0] == str(tmp_path / "weft" / "libweft.so")


def test_the_system_comes_last(tmp_path):
    copy_package(tmp_path, with_library=False)
    libdir = tmp_path / "lib"
    libdir.mkdir()
    shutil.copy(REPO_LIBRARY, libdir / "libweft.so")
    proc = python(PRINT_PATH, {"LD_LIBRARY_PATH": str(libdir)}, str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[0].endswith("libweft.so")
    not_found = python(PRINT_PATH, {}, str(tmp_path))
    assert not_found.returncode != 0
    assert "cannot load the weft library" in not_found.stderr
    assert "package:" in not_found.stderr and "system:" in not_found.stderr
