# weft: `make demo` builds and runs the examples; `make test` runs every test.
CARGO ?= cargo
LIBDIR := $(CURDIR)/target/release

.PHONY: all build header bindings test test-rust test-c test-bindings test-python demo bench clean

all: build

build:
	$(CARGO) build --release

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

# The Python binding (bindings/python, imported from the source tree): needs pytest and,
# for weft.tornado, tornado (`python3 -m pip install pytest tornado`).
test-python: build
	python3 -m pytest -q -p no:cacheprovider tests/python

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
