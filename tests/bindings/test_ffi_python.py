"""Tests of the generated Python declarations (bindings/python/weft/_ffi.py), of the
generated cffi cdef (include/weft.cdef) and of their generator (bindings/gen.py).
Standard-library unittest; pytest runs it too.

    python3 tests/bindings/test_ffi_python.py -v

The library is target/release/libweft.so, or $WEFT_LIBRARY (`cargo build --release` first).
"""

import ctypes
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GEN = os.path.join(REPO, "bindings", "gen.py")
HEADER = os.path.join(REPO, "include", "weft.h")
CDEF = os.path.join(REPO, "include", "weft.cdef")
LIBRARY = os.environ.get("WEFT_LIBRARY") or os.path.join(REPO, "target", "release", "libweft.so")

sys.path.insert(0, os.path.join(REPO, "bindings"))
sys.path.insert(0, os.path.join(REPO, "bindings", "python"))

import cdef  # noqa: E402  (bindings/cdef.py)
import gen  # noqa: E402  (bindings/gen.py)
from weft import _ffi  # noqa: E402


def run_gen(*args):
    return subprocess.run([sys.executable, GEN, *args], capture_output=True, text=True, timeout=60)


def read_header():
    with open(HEADER, encoding="utf-8") as f:
        return f.read()


# A prototype inserted into a copy of the header, before the closing `extern "C"` block.
NEW_FUNCTION = (
    "// A function the bindings do not know yet.\n"
    "int weft_brand_new(struct weft_loop *lp, weft_id id);\n"
    "\n"
)


def with_new_function(text):
    marker = '#ifdef __cplusplus\n}  // extern "C"'
    assert text.count(marker) == 1, "the header's closing extern \"C\" block moved"
    return text.replace(marker, NEW_FUNCTION + marker)


class GeneratorCheck(unittest.TestCase):
    def test_outputs_are_up_to_date(self):
        r = run_gen("--check")
        self.assertEqual(r.returncode, 0, f"gen.py --check failed:\n{r.stdout}{r.stderr}")

    def test_functions_match_the_header(self):
        h = gen.parse_header(read_header(), HEADER)
        names = tuple(f.name for f in h.functions)
        self.assertEqual(_ffi.FUNCTIONS, names)
        self.assertEqual(set(_ffi.SIGNATURES), set(names))
        self.assertEqual(set(_ffi.PROTOTYPES), set(names))
        for f in h.functions:
            self.assertIn(f.name, _ffi.DOCS)
            self.assertTrue(_ffi.DOCS[f.name], f"{f.name} has no doc")
        # Every integer constant of the header is a module-level int with its value.
        for c in h.constants:
            self.assertEqual(getattr(_ffi, c.name), c.value, c.name)
            self.assertEqual(_ffi.CONSTANTS[c.name], c.value)

    def test_structs_keep_header_order_and_layout(self):
        self.assertEqual([f[0] for f in _ffi.weft_pool_options._fields_],
                         ["size", "kind", "threads", "name", "stack_size", "keep_alive_ms",
                          "on_thread_start", "on_thread_stop", "hook_data"])
        self.assertEqual([f[0] for f in _ffi.weft_spawn_options._fields_],
                         ["size", "timeout_ms", "pool", "max_children", "fork_fn", "fork_data", "reuse_child",
                          "keep_fds", "keep_fds_len", "inherit_fds", "flags"])
        self.assertIs(_ffi.weft_id, ctypes.c_uint64)
        self.assertEqual(ctypes.sizeof(_ffi.weft_spawn_options), 88)
        self.assertEqual(_ffi.weft_spawn_options.flags.offset, 80)

    def test_only_the_fork_callback_uses_errno(self):
        # fork_fn reports a failure through errno: ctypes.set_errno in the Python
        # callback must reach C (see gen.ERRNO_CALLBACKS).
        use_errno = ctypes._FUNCFLAG_USE_ERRNO
        self.assertTrue(_ffi.weft_fork_fn._flags_ & use_errno)
        for name in ("weft_cb", "weft_work_fn", "weft_done_fn", "weft_free_fn"):
            self.assertFalse(getattr(_ffi, name)._flags_ & use_errno, name)


class Staleness(unittest.TestCase):
    """A header that gains a function makes --check fail, naming the stale files."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="weft-gen-")
        self.addCleanup(shutil.rmtree, self.tmp)
        self.header = os.path.join(self.tmp, "weft.h")
        with open(self.header, "w", encoding="utf-8") as f:
            f.write(with_new_function(read_header()))

    def test_parse_sees_the_new_function(self):
        with open(self.header, encoding="utf-8") as f:
            h = gen.parse_header(f.read(), self.header)
        self.assertIn("weft_brand_new", [f.name for f in h.functions])
        self.assertNotIn("weft_brand_new", _ffi.FUNCTIONS)

    def test_check_fails_against_the_committed_outputs(self):
        r = run_gen("--check", "--header", self.header)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("_ffi.py is stale", r.stdout)
        self.assertIn("ffi.js is stale", r.stdout)
        self.assertIn("weft.cdef is stale", r.stdout)
        self.assertIn("weft_brand_new", r.stdout)

    def test_generate_then_check_in_a_temp_dir(self):
        out = os.path.join(self.tmp, "out")
        r = run_gen("--check", "--header", self.header, "--out-dir", out)
        self.assertEqual(r.returncode, 1, "missing outputs must count as stale")
        self.assertIn("missing", r.stdout)
        r = run_gen("--header", self.header, "--out-dir", out)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        r = run_gen("--check", "--header", self.header, "--out-dir", out)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        with open(os.path.join(out, "python", "weft", "_ffi.py"), encoding="utf-8") as f:
            py = f.read()
        self.assertIn('"weft_brand_new": (ctypes.c_int, [POINTER(weft_loop), weft_id]),', py)
        with open(os.path.join(out, "node", "lib", "ffi.js"), encoding="utf-8") as f:
            js = f.read()
        self.assertIn("weft_brand_new: 'int weft_brand_new(weft_loop *lp, weft_id id)',", js)
        with open(os.path.join(out, "include", "weft.cdef"), encoding="utf-8") as f:
            self.assertIn("\nint weft_brand_new(weft_loop *lp, weft_id id);\n", f.read())
        # The generated module is valid Python and knows the new function.
        ns = {}
        exec(compile(py, "_ffi.py", "exec"), ns)
        self.assertIn("weft_brand_new", ns["FUNCTIONS"])

    def test_cdef_of_a_header_that_gains_a_function_is_stale(self):
        out = os.path.join(self.tmp, "out")
        r = run_gen("--out-dir", out)  # the committed header's outputs, in out/
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        cdef_path = os.path.join(out, "include", "weft.cdef")
        with open(cdef_path, encoding="utf-8") as f, open(CDEF, encoding="utf-8") as g:
            self.assertEqual(f.read(), g.read(), "--out-dir renders the cdef as committed")
        r = run_gen("--check", "--header", self.header, "--out-dir", out)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r"include/weft\.cdef is stale")
        self.assertIn("+int weft_brand_new(weft_loop *lp, weft_id id);", r.stdout)


class Cdef(unittest.TestCase):
    """include/weft.cdef: the header's declarations as cffi's FFI.cdef reads them."""

    def test_every_declaration_is_there_without_what_cffi_rejects(self):
        h = gen.parse_header(read_header(), HEADER)
        with open(CDEF, encoding="utf-8") as f:
            text = f.read()
        self.assertTrue(text.startswith("// generated by bindings/gen.py from include/weft.h; do not edit.\n"))
        code = [l for l in text.splitlines() if l and not l.startswith("//")]
        for f in h.functions:
            self.assertIn(f.prototype() + ";", code)
        for c in h.constants:
            self.assertTrue(f"#define {c.name} {c.value}" in code or f"  {c.name} = {c.value}," in code, c.name)
        self.assertIn("typedef struct weft_loop weft_loop;", code)
        self.assertIn("typedef void (*weft_cb)(weft_loop *lp, weft_id id, void *user_data);", code)
        for line in code:
            self.assertNotRegex(line, r"^#(?!define )|extern|struct weft_\w+ \*", line)

    def test_cffi_reads_it(self):
        try:
            import cffi
        except ImportError:
            self.skipTest("cffi is not importable (tests/python/test_cffi.py uses it in .venv)")
        ffi = cffi.FFI()
        with open(CDEF, encoding="utf-8") as f:
            ffi.cdef(f.read())
        self.assertEqual(ffi.sizeof("weft_spawn_options"), ctypes.sizeof(_ffi.weft_spawn_options))
        self.assertEqual(ffi.sizeof("weft_pool_options"), ctypes.sizeof(_ffi.weft_pool_options))

    def test_the_renderer_does_not_import_gen(self):
        code = ("import sys; sys.path.insert(0, sys.argv[1]); import cdef; "
                "assert 'gen' not in sys.modules, 'cdef.py imports gen.py'")
        r = subprocess.run([sys.executable, "-c", code, os.path.dirname(GEN)],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIs(gen.render_cdef, cdef.render_cdef)


class Strictness(unittest.TestCase):
    """Anything outside the dialect stops the generator with the line that holds it."""

    def assert_rejected(self, insert, pattern):
        text = with_new_function(read_header())
        line = text[: text.index(NEW_FUNCTION)].count("\n") + 1
        text = text.replace(NEW_FUNCTION, insert)
        with self.assertRaises(gen.HeaderError) as cm:
            gen.parse_header(text, "weft.h")
        msg = str(cm.exception)
        self.assertRegex(msg, pattern)
        m = re.match(r"weft\.h:(\d+):", msg)
        self.assertTrue(m, msg)
        self.assertGreaterEqual(int(m.group(1)), line, msg)
        self.assertLessEqual(int(m.group(1)), line + insert.count("\n"), msg)

    def test_conditional_compilation(self):
        self.assert_rejected("#if defined(WEFT_EXTRA)\n#endif\n", "conditional|not understood")

    def test_union(self):
        self.assert_rejected("typedef union weft_u {\n  int a;\n} weft_u;\n", "blocks are understood")

    def test_array_field(self):
        self.assert_rejected("typedef struct weft_a {\n  uint8_t b[4];\n} weft_a;\n", "array")

    def test_inline_function_pointer_field(self):
        self.assert_rejected("typedef struct weft_f {\n  void (*f)(int x);\n} weft_f;\n",
                             "function pointers")

    def test_unknown_type(self):
        self.assert_rejected("int weft_x(weft_nothing *p);\n", "unknown type `weft_nothing`")

    def test_string_define(self):
        self.assert_rejected('#define WEFT_NAME "weft"\n', "only integer literals")

    def test_dangling_doc_comment(self):
        self.assert_rejected("// Said of nothing.\n\n", "not attached")

    def test_variadic(self):
        self.assert_rejected("int weft_log(const char *fmt, ...);\n", "variadic")

    def test_duplicate(self):
        self.assert_rejected("void weft_shutdown(void);\n", "declared twice")

    def test_cli_exit_code_and_message(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "weft.h")
            text = with_new_function(read_header()).replace(NEW_FUNCTION, "#pragma once\n")
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            r = run_gen("--check", "--header", path, "--out-dir", tmp)
            self.assertEqual(r.returncode, 2)
            self.assertRegex(r.stderr, r"weft\.h:\d+: preprocessor directive not understood: #pragma once")


class Library(unittest.TestCase):
    """Calls into the real library through the generated declarations."""

    @classmethod
    def setUpClass(cls):
        if not os.path.exists(LIBRARY):
            raise FileNotFoundError(f"{LIBRARY} is missing: run `cargo build --release` "
                                    "or set WEFT_LIBRARY")
        cls.lib = _ffi.bind(ctypes.CDLL(LIBRARY))

    def last_error(self):
        n = self.lib.weft_last_error(None, 0)
        buf = ctypes.create_string_buffer(n + 1)
        self.assertEqual(self.lib.weft_last_error(buf, len(buf)), n)
        return buf.value.decode()

    def test_every_function_is_bound(self):
        for name in _ffi.FUNCTIONS:
            fn = getattr(self.lib, name)
            self.assertIsNotNone(fn.argtypes, name)
            self.assertEqual(len(fn.argtypes), len(_ffi.SIGNATURES[name][1]), name)
            self.assertIs(fn.restype, _ffi.SIGNATURES[name][0], name)

    def test_versions(self):
        want = f"{_ffi.WEFT_VERSION_MAJOR}.{_ffi.WEFT_VERSION_MINOR}.{_ffi.WEFT_VERSION_PATCH}"
        self.assertEqual(self.lib.weft_version().decode(), want)
        self.assertEqual(self.lib.weft_abi_version(), _ffi.WEFT_ABI_VERSION)

    def test_strerror(self):
        self.assertTrue(self.lib.weft_strerror(_ffi.WEFT_ERR_NOT_FOUND).startswith(b"WEFT_ERR_NOT_FOUND"))
        self.assertEqual(self.lib.weft_strerror(12345), b"unknown weft_result code")

    def test_timer_runs_once_and_frees_once(self):
        lib = self.lib
        lp = lib.weft_loop_new()
        self.assertTrue(lp)
        calls, frees = [], []

        def on_timer(loop, tid, user_data):
            calls.append((ctypes.addressof(loop.contents), tid, user_data))

        def on_free(user_data):
            frees.append(user_data)

        cb = _ffi.weft_cb(on_timer)  # kept alive until the loop is freed
        free_fn = _ffi.weft_free_fn(on_free)
        tid = lib.weft_timer_after(lp, 1, cb, 42, free_fn)
        self.assertNotEqual(tid, 0, self.last_error())
        self.assertEqual(lib.weft_loop_alive(lp), 1)
        self.assertEqual(lib.weft_loop_run(lp, _ffi.WEFT_RUN_DEFAULT), _ffi.WEFT_OK)
        self.assertEqual(calls, [(ctypes.addressof(lp.contents), tid, 42)])
        self.assertEqual(frees, [42])
        self.assertEqual(lib.weft_loop_alive(lp), 0)
        # The timer is over: its id is now stale.
        self.assertEqual(lib.weft_cancel(lp, tid), _ffi.WEFT_ERR_NOT_FOUND)
        self.assertIn("weft_cancel", self.last_error())
        lib.weft_loop_free(lp)
        self.assertEqual(frees, [42])

    def test_bad_input(self):
        lib = self.lib
        self.assertEqual(lib.weft_cancel(None, 1), _ffi.WEFT_ERR_NULL)
        self.assertEqual(lib.weft_last_error_code(), _ffi.WEFT_ERR_NULL)
        self.assertIn("weft_cancel", self.last_error())
        lp = lib.weft_loop_new()
        self.assertEqual(lib.weft_loop_run(lp, 99), _ffi.WEFT_ERR_INVALID)
        self.assertIn("weft_loop_run", self.last_error())
        self.assertEqual(lib.weft_cancel(lp, 12345), _ffi.WEFT_ERR_NOT_FOUND)
        lib.weft_loop_free(lp)


if __name__ == "__main__":
    unittest.main()
