# weft: `make demo` builds and runs the examples; `make test` runs every test.
# Both install what they need on first use, inside the checkout only: the Python test
# tools into .venv/, koffi into bindings/node/node_modules/.
CARGO ?= cargo
# cargo's output: target/release, or $CARGO_TARGET_DIR/release when that is set.
TARGET_DIR := $(abspath $(or $(CARGO_TARGET_DIR),$(CURDIR)/target))/release
# The ABI version (src/ffi/mod.rs), the SONAME's number (build.rs: ABI version - 1) and
# the library's version (Cargo.toml).
ABI_VERSION := $(shell sed -n 's/^pub const WEFT_ABI_VERSION: u32 = \([0-9]*\);/\1/p' src/ffi/mod.rs)
SOVERSION := $(shell expr $(ABI_VERSION) - 1)
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)

# Python test tools (tests/requirements.txt) live in .venv/, made on first use and
# updated when that file changes; nothing goes into the system Python.
VENV := $(CURDIR)/.venv
PYTHON := $(VENV)/bin/python

.PHONY: all build venv node-modules header bindings abi test lint test-rust test-c test-cpp test-bindings \
        test-python test-python-valgrind test-abi test-install test-packages build-portable build-portable-epoll \
        test-portable check-platforms demo demo-monitor bench bench-quick build-base test-bench-report clean

all: build

# cargo writes libweft.so with the SONAME libweft.so.$(SOVERSION); programs linked in
# the tree load it through the link of that name.
build:
	$(CARGO) build --release
	ln -sf libweft.so $(TARGET_DIR)/libweft.so.$(SOVERSION)

$(VENV)/.installed: tests/requirements.txt
	[ -x $(PYTHON) ] || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $@

venv: $(VENV)/.installed

node-modules:
	cd bindings/node && [ -d node_modules/koffi ] || npm ci --no-audit --no-fund --loglevel=error

include packaging/install.mk
include mk/loom.mk
include mk/fuzz.mk
include mk/soak.mk
include mk/deep.mk

# Regenerates include/weft.h from src/ffi (cargo test fails when it is stale).
header:
	WEFT_BLESS=1 $(CARGO) test --release --test header

# Regenerates the Python, Node and cffi declarations from include/weft.h, and the API
# reference docs/api/ from weft.h and weft.hpp (a test fails when any is stale).
bindings:
	python3 bindings/gen.py
	python3 docs/api/gen.py

test: lint test-rust test-c test-cpp test-bindings test-python test-abi test-install test-packages test-portable \
      check-platforms test-loom test-soak test-bench-report

# The tree's shape (no import circle between src/'s modules, no source file over 700
# lines), rustfmt (rustfmt.toml) and clippy, warnings as errors. Without the rustup
# components: one line, and the rest runs.
lint:
	python3 tests/structure/check.py
	python3 docs/api/gen.py --check
	@if cargo fmt --version >/dev/null 2>&1; then $(CARGO) fmt --check; \
	else echo "rustfmt not found: the format check is skipped; rustup component add rustfmt"; fi
	@if cargo clippy --version >/dev/null 2>&1; then $(CARGO) clippy --release --all-targets --quiet -- -D warnings; \
	else echo "clippy not found: the lint pass is skipped; rustup component add clippy"; fi

test-rust:
	$(CARGO) test --release

test-c: build
	$(MAKE) -C tests/c LIBDIR=$(TARGET_DIR) test
	@if command -v valgrind >/dev/null; then \
	    $(MAKE) -C tests/c LIBDIR=$(TARGET_DIR) valgrind; \
	else \
	    echo "valgrind not found: the memcheck pass is skipped; apt-get install valgrind"; \
	fi

# The C++ interface (include/weft.hpp): tests/cpp with exceptions and with
# -fno-exceptions, then both under memcheck.
test-cpp: build
	$(MAKE) -C tests/cpp LIBDIR=$(TARGET_DIR) test
	@if command -v valgrind >/dev/null; then \
	    $(MAKE) -C tests/cpp LIBDIR=$(TARGET_DIR) valgrind; \
	else \
	    echo "valgrind not found: the memcheck pass is skipped; apt-get install valgrind"; \
	fi

test-bindings: build node-modules
	WEFT_LIBRARY=$(TARGET_DIR)/libweft.so bash tests/bindings/run.sh

# The Python binding (bindings/python, imported from the source tree).
test-python: build venv
	$(PYTHON) -m pytest -q -p no:cacheprovider tests/python

# The Python binding's tests under valgrind's memcheck (tests/python/memcheck.py): fails on
# any error or definite leak whose stack goes through libweft. Not part of make test.
test-python-valgrind: build venv
	python3 tests/python/memcheck.py --python $(PYTHON) $(TESTS)

# Rewrites abi/weft.abi after a deliberate ABI change; refuses a break unless
# WEFT_ABI_VERSION moved (abi/README.md).
abi: build
	python3 abi/check.py --lib $(TARGET_DIR)/libweft.so --bless

# Fails on any ABI difference from abi/weft.abi; tests/abi shows that it fails when it must.
test-abi: build venv
	python3 abi/check.py --lib $(TARGET_DIR)/libweft.so
	$(PYTHON) -m pytest -q -p no:cacheprovider tests/abi

# make install into a temporary prefix; programs built against it with pkg-config,
# with CMake, and statically.
test-install: build
	SOVERSION=$(SOVERSION) VERSION=$(VERSION) bash tests/install/run.sh

# The packages, each installed outside the checkout as a user installs it: the wheel
# into a fresh venv (no network); the npm tarball, and the directory, into fresh
# projects (koffi from the npm registry or npm's cache).
test-packages: build venv
	bash tests/packaging/wheel.sh
	bash tests/packaging/npm.sh

# The portable backend (src/sys/portable: kqueue, event ports, poll(2) through the
# polling crate), built on Linux with polling's poll(2) backend, the one with the fewest
# features, into target/portable; the Rust, C, bindings and Python suites run against
# it (the C suite without valgrind: the native pass is the one that runs it).
PORTABLE_TARGET := $(CURDIR)/target/portable
PORTABLE_DIR := $(PORTABLE_TARGET)/release
PORTABLE_CARGO := RUSTFLAGS="--cfg polling_test_poll_backend" CARGO_TARGET_DIR=$(PORTABLE_TARGET) $(CARGO)

build-portable:
	$(PORTABLE_CARGO) build --release --features portable
	ln -sf libweft.so $(PORTABLE_DIR)/libweft.so.$(SOVERSION)

# The portable backend with polling's default backend on Linux, epoll, into
# target/portable-epoll: `make bench` compares it with the other two; test-portable runs
# its unit tests and the C suite, as its waits bypass polling's (src/sys/portable/direct.rs).
PORTABLE_EPOLL_TARGET := $(CURDIR)/target/portable-epoll
PORTABLE_EPOLL_DIR := $(PORTABLE_EPOLL_TARGET)/release

build-portable-epoll:
	CARGO_TARGET_DIR=$(PORTABLE_EPOLL_TARGET) $(CARGO) build --release --features portable
	ln -sf libweft.so $(PORTABLE_EPOLL_DIR)/libweft.so.$(SOVERSION)

test-portable: build-portable venv node-modules
	$(PORTABLE_CARGO) test --release --features portable --quiet
	$(MAKE) -C tests/c LIBDIR=$(PORTABLE_DIR) BUILD=$(CURDIR)/tests/c/build/portable test
	WEFT_LIBRARY=$(PORTABLE_DIR)/libweft.so bash tests/bindings/run.sh
	WEFT_LIBRARY=$(PORTABLE_DIR)/libweft.so $(PYTHON) -m pytest -q -p no:cacheprovider tests/python
	CARGO_TARGET_DIR=$(PORTABLE_EPOLL_TARGET) $(CARGO) test --release --features portable --lib --quiet
	$(MAKE) build-portable-epoll
	$(MAKE) -C tests/c LIBDIR=$(PORTABLE_EPOLL_DIR) BUILD=$(CURDIR)/tests/c/build/portable-epoll test

# The code no test here can run: the macOS, FreeBSD and NetBSD builds (kqueue) and the
# illumos one (event ports), checked with clippy, warnings as errors, and the portable
# build on Linux likewise. A rustup target that is not installed is one line (`.ci/run`
# installs them all).
CROSS_TARGETS := x86_64-apple-darwin x86_64-unknown-freebsd x86_64-unknown-netbsd x86_64-unknown-illumos

check-platforms:
	@if cargo clippy --version >/dev/null 2>&1; then \
	    $(PORTABLE_CARGO) clippy --release --all-targets --features portable --quiet -- -D warnings || exit 1; \
	    CARGO_TARGET_DIR=$(PORTABLE_EPOLL_TARGET) $(CARGO) clippy --release --all-targets --features portable --quiet -- -D warnings || exit 1; \
	    for t in $(CROSS_TARGETS); do \
	        if rustup target list --installed 2>/dev/null | grep -qx "$$t"; then \
	            echo "clippy --target $$t"; \
	            CARGO_TARGET_DIR=$(CURDIR)/target/cross $(CARGO) clippy --release --all-targets --target $$t --quiet -- -D warnings || exit 1; \
	        else echo "rust target $$t not installed: its check is skipped; rustup target add $$t"; fi; \
	    done; \
	else echo "clippy not found: the platform checks are skipped; rustup component add clippy"; fi

demo: build node-modules
	$(MAKE) -C examples/c LIBDIR=$(TARGET_DIR) run
	$(MAKE) -C examples/cpp LIBDIR=$(TARGET_DIR) run
	$(MAKE) -C examples/c LIBDIR=$(TARGET_DIR) emitter
	node examples/node/tour.js
	node examples/node/emitter.js
	python3 examples/python/tour.py
	python3 examples/python/asyncio_example.py
	python3 examples/python/log_playback.py
	$(MAKE) --no-print-directory demo-monitor

# The loop monitor (examples/python/loop_monitor.py): a demo server's loop.stats(),
# watchdog report and task timings, its plot in LOOP_MONITOR_PNG. matplotlib goes into
# .venv/ as for `make soak` (its pinned set); when it cannot, the demo runs without it.
LOOP_MONITOR_PNG ?= $(CURDIR)/build/loop_monitor.png
demo-monitor: build
	@if $(MAKE) --no-print-directory $(VENV)/.soak-installed; then py=$(PYTHON); else \
	    echo "demo: matplotlib could not be installed into .venv: no plot"; py=python3; fi; \
	$$py examples/python/loop_monitor.py $(LOOP_MONITOR_PNG)

# `make bench`: every benchmark suite (the C workloads on the Linux backend and on both
# portable builds, the scaling curves, the Python and Node benches), RUNS=5 interleaved
# runs, then the report: docs/benchmarks.md, docs/bench/*.png and README.md's benchmark
# section (benches/Makefile's `report`, benches/README.md). `make bench-quick`: one run,
# smaller sizes, into benches/build/report/ (a check that it all runs). Neither is part
# of `make test`; `test-bench-report` checks the report's generator on canned results.
BENCH_LIBS = LIBDIR=$(TARGET_DIR) PORTABLE_LIBDIR=$(PORTABLE_DIR) \
	PORTABLE_EPOLL_LIBDIR=$(PORTABLE_EPOLL_DIR) $(if $(BASE),BASE=$(BASE) BASE_LIBDIR=$(BASE_DIR))
bench: build build-portable build-portable-epoll $(if $(BASE),build-base)
	$(MAKE) -C benches report $(BENCH_LIBS)

# BASE=rev (make bench BASE=main~3): the library as it was at git revision rev, built
# from `git archive` into target/base; its rows run beside today's in the same report.
BASE_SRC := $(CURDIR)/target/base-src
BASE_DIR := $(CURDIR)/target/base/release
build-base:
	@test -n "$(BASE)" || { echo "build-base: name a git revision: BASE=rev"; exit 2; }
	rev=$$(git rev-parse --verify "$(BASE)^{commit}") && rm -rf $(BASE_SRC) && \
	    mkdir -p $(BASE_SRC) && git archive $$rev | tar -x -C $(BASE_SRC)
	CARGO_TARGET_DIR=$(CURDIR)/target/base $(CARGO) build --release \
	    --manifest-path $(BASE_SRC)/Cargo.toml
	ln -sf libweft.so $(BASE_DIR)/libweft.so.$(SOVERSION)

bench-quick: build build-portable build-portable-epoll $(if $(BASE),build-base)
	$(MAKE) -C benches quick $(BENCH_LIBS)

test-bench-report:
	python3 tests/bench_report/test_report.py

clean:
	$(CARGO) clean
	rm -rf tests/c/build examples/c/build benches/build bindings/python/build bindings/python/weft.egg-info
