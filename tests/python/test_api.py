"""The package's surface: generated declarations only, docstrings, type hints, py.typed."""

import inspect
import os
import re
import subprocess
import sys

import weft
import weft.asyncio
from conftest import PACKAGE_ROOT, REPO
from weft import _ffi


def test_generated_declarations_are_up_to_date():
    proc = subprocess.run([sys.executable, os.path.join(REPO, "bindings", "gen.py"), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_binding_calls_only_declared_functions_and_restates_no_prototype():
    used = set()
    for name in os.listdir(os.path.join(PACKAGE_ROOT, "weft")):
        if not name.endswith(".py") or name == "_ffi.py":
            continue
        with open(os.path.join(PACKAGE_ROOT, "weft", name)) as f:
            text = f.read()
        used |= set(re.findall(r"\b(weft_[a-z_]+)\(", text))
        declarations = [line for line in text.splitlines()
                        if ("argtypes" in line or "restype" in line) and "pythonapi." not in line]
        assert not declarations, (name, declarations)  # only CPython's own API is declared here
        assert "CFUNCTYPE" not in text, name
    declared = set(_ffi.FUNCTIONS) | {name for name in vars(_ffi) if name.startswith("weft_")}
    assert used and used <= declared, used - declared


def test_py_typed_is_shipped():
    assert os.path.exists(os.path.join(os.path.dirname(weft.__file__), "py.typed"))


def test_public_names_have_docstrings_and_annotations():
    for name in weft.__all__:
        obj = getattr(weft, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__doc__, name
        if inspect.isclass(obj) and obj.__module__.startswith("weft"):
            for attr, member in vars(obj).items():
                if inspect.isfunction(member) and not attr.startswith("_"):
                    assert member.__doc__, f"{name}.{attr}"
                    hints = member.__annotations__
                    assert "return" in hints, f"{name}.{attr} has no return annotation"
    assert weft.asyncio.attach.__doc__ and "return" in weft.asyncio.attach.__annotations__


def test_constants():
    assert (weft.READ, weft.WRITE, weft.HANGUP, weft.ERROR) == (_ffi.WEFT_READABLE, _ffi.WEFT_WRITABLE,
                                                                  _ffi.WEFT_HANGUP, _ffi.WEFT_ERROR)


def test_exception_hierarchy():
    assert issubclass(weft.InvalidArgument, ValueError)
    assert issubclass(weft.Closed, RuntimeError)
    assert issubclass(weft.SystemCallFailed, OSError)
    for cls in (weft.InvalidArgument, weft.Closed, weft.Busy, weft.ChildCrashed, weft.Forked, weft.NotFound):
        assert issubclass(cls, weft.Error)
    err = weft.InvalidArgument("weft_watch_fd: fd -1", -2)
    assert err.code == -2 and "fd -1" in str(err)
