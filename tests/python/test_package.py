"""The package around the binding: `python -m weft`, and weft.asyncio / weft.tornado as
attributes imported on first access (bindings/python/README.md)."""

import os
import subprocess
import sys
import textwrap

import pytest

import weft
from conftest import PACKAGE_ROOT
from weft import _ffi


def python(args, env_extra=None, cwd=None):
    """Runs this interpreter with the source tree's package first on sys.path."""
    env = dict(os.environ, PYTHONPATH=PACKAGE_ROOT, **(env_extra or {}))
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=30)


def test_python_m_weft_prints_the_versions_and_the_library_in_use():
    proc = python(["-m", "weft"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    lines = dict(line.split(":", 1) for line in proc.stdout.splitlines())
    assert {key: value.strip() for key, value in lines.items()} == {
        "binding version": weft.__version__,
        "library version": weft.version(),
        "ABI version": f"{_ffi.WEFT_ABI_VERSION} (library), {_ffi.WEFT_ABI_VERSION} (binding)",
        "library path": weft.library_path,
    }


def test_python_m_weft_without_a_library_says_what_was_tried(tmp_path):
    missing = tmp_path / "missing.so"
    proc = python(["-m", "weft"], {"WEFT_LIBRARY": str(missing)})
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "ImportError: weft: cannot load the weft library. Tried, in order:" in proc.stderr
    assert f"WEFT_LIBRARY: {missing} (no such file)" in proc.stderr


HOST_LOOP_MODULES = "[m for m in ('weft.asyncio', 'weft.tornado', 'tornado') if m in sys.modules]"


def test_import_weft_imports_neither_host_loop_module_until_touched():
    pytest.importorskip("tornado")
    proc = python(["-c", textwrap.dedent(f"""\
        import asyncio, sys
        import weft
        print({HOST_LOOP_MODULES})

        async def main():
            loop = weft.asyncio.attach()
            try:
                return await loop.spawn(lambda: 42, on="thread")
            finally:
                loop.close()

        print(asyncio.run(main()), weft.asyncio is sys.modules["weft.asyncio"], {HOST_LOOP_MODULES})
        print(callable(weft.tornado.attach), {HOST_LOOP_MODULES})
        """)])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "[]",
        "42 True ['weft.asyncio']",
        "True ['weft.asyncio', 'weft.tornado', 'tornado']",
    ]


def test_dir_lists_the_lazy_modules():
    names = dir(weft)
    assert "asyncio" in names and "tornado" in names
    assert "Loop" in names and "library_path" in names
    assert names == sorted(names)


def test_an_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="module 'weft' has no attribute 'asyncoi'"):
        weft.asyncoi  # noqa: B018
    assert not hasattr(weft, "asyncoi")


def test_a_missing_tornado_is_an_import_error_that_says_how_to_install_it():
    proc = python(["-c", textwrap.dedent("""\
        import sys
        sys.modules["tornado"] = None  # what an interpreter without tornado does on import
        import weft
        try:
            weft.tornado
        except ImportError as exc:
            print(type(exc).__name__, exc.name, exc, sep="|")
        """)])
    assert proc.returncode == 0, proc.stderr
    kind, name, message = proc.stdout.strip().split("|")
    assert kind == "ModuleNotFoundError" and name == "tornado"
    assert "pip install tornado" in message
