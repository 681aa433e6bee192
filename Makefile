# weft: `make demo` builds and runs the examples; `make test` runs every test.
CARGO ?= cargo
LIBDIR := $(CURDIR)/target/release
# The SONAME's number (build.rs: WEFT_ABI_VERSION - 1) and the library's version.
ABI_VERSION := $(shell sed -n 's/^pub const WEFT_ABI_VERSION: u32 = \([0-9]*\);/\1/p' src/ffi/mod.rs)
SOVERSION := $(shell echo $$(($(ABI_VERSION) - 1)))
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)

# Python test tools live in .venv/ inside the checkout, made on first use from
# tests/requirements.txt (and again when that file changes); nothing goes into the
# system Python.
VENV := $(CURDIR)/.venv
PYTHON := $(VENV)/bin/python

.PHONY: all build venv header bindings test test-rust test-c test-bindings test-python demo bench clean

all: build

# cargo builds libweft.so with the SONAME libweft.so.$(SOVERSION): the link by that name
# is what programs linked in the tree load at run time.
build:
	$(CARGO) build --release
	ln -sf libweft.so $(LIBDIR)/libweft.so.$(SOVERSION)

$(VENV)/.installed: tests/requirements.txt
	[ -x $(PYTHON) ] || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $@

venv: $(VENV)/.installed

# Regenerates include/weft.h from src/ffi (cargo test fails when it is stale).
header:
	WEFT_BLESS=1 $(CARGO) test --release --test header

# Regenerates the Python and Node declarations from include/weft.h (a test fails when
# they are stale).
bindings:
	python3 bindings/gen.py

test: test-rust test-c test-bindings test-python

test-rust:
	$(CARGO) test --release

test-c: build
	$(MAKE) -C tests/c LIBDIR=$(LIBDIR) test valgrind

test-bindings: build
	WEFT_LIBRARY=$(LIBDIR)/libweft.so bash tests/bindings/run.sh

# The Python binding (bindings/python, imported from the source tree), with pytest and
# tornado from .venv/.
test-python: build venv
	$(PYTHON) -m pytest -q -p no:cacheprovider tests/python

demo: build
	$(MAKE) -C examples/c LIBDIR=$(LIBDIR) run
	$(MAKE) -C examples/c LIBDIR=$(LIBDIR) emitter
	cd bindings/node && [ -d node_modules/koffi ] || npm ci --no-audit --no-fund --loglevel=error
	node examples/node/tour.js
	node examples/node/emitter.js
	python3 examples/python/tour.py
	python3 examples/python/asyncio_example.py
	python3 examples/python/log_playback.py

bench: build
	$(MAKE) -C benches LIBDIR=$(LIBDIR)
	$(MAKE) -C examples/c LIBDIR=$(LIBDIR) emitter
	node benches/node/run.js
	python3 benches/python/run.py

clean:
	$(CARGO) clean
	rm -rf tests/c/build examples/c/build benches/build
