# make check-deep: the checkers that need the nightly toolchain or a sanitizer runtime
# (included by the top-level Makefile). Four passes, each also a target of its own:
#   check-miri      Miri over the crate's unit tests (slots, the timer wheel, the bus,
#                   frame decoding, ...): undefined behaviour in the core's unsafe code.
#   check-tsan      ThreadSanitizer over the unit tests and the Rust stress tests
#                   (tests/loop.rs, tests/pool.rs): data races.
#   check-asan      the C tests built with AddressSanitizer and UBSan against the
#                   release library: memory errors, UB and leaks at the C boundary.
#   check-asan-lib  the same against the library built with -Zsanitizer=address too.
# A pass whose tool is missing says so in one line and succeeds, as make test's valgrind
# pass does; .ci/run installs them all. Each pass builds into a directory of its own
# (target/miri, target/tsan, target/asan-lib, tests/c/build/asan, .../asan-lib), never
# into target/release.
# Not part of make test, which takes 2.5 to 4 minutes: on two idle cores check-deep
# takes 5.6 minutes from cold target directories (Miri 1.8, TSan 1.4 of which 1.2 to
# build std with -Zbuild-std, ASan 0.9, the instrumented library 1.5) and 3.3 warm, 1.6
# of them Miri running the tests on one core; on two cores shared with other work,
# about 10 minutes cold.

NIGHTLY ?= nightly
NIGHTLY_CARGO := $(CARGO) +$(NIGHTLY)
# True (status 0) when rustup has the nightly toolchain: `cargo +nightly` alone could
# make rustup install it.
HAVE_NIGHTLY := rustup toolchain list 2>/dev/null | grep -q '^$(NIGHTLY)'
# The nightly standard library's sources (the rust-src component), which both Miri and
# -Zbuild-std build from.
NIGHTLY_SRC = $$(rustc +$(NIGHTLY) --print sysroot)/lib/rustlib/src/rust/library
# The host's target triple: -Zbuild-std needs an explicit --target.
NIGHTLY_HOST = $$(rustc +$(NIGHTLY) -vV | sed -n 's/^host: //p')
# The line a pass prints when the toolchain or a component is missing:
# $(call no_nightly,<pass>,<components>).
no_nightly = echo "$(NIGHTLY) with $(2) not found: the $(1) pass is skipped; \
    rustup toolchain install $(NIGHTLY) --profile minimal; rustup component add $(2) --toolchain $(NIGHTLY)"

.PHONY: check-deep check-miri check-tsan check-asan check-asan-lib

check-deep: check-miri check-tsan check-asan check-asan-lib

# Every unit test (cargo test --lib) under Miri. Tests that make calls Miri does not
# emulate are #[cfg_attr(miri, ignore)]; long randomised ones take fewer rounds under
# cfg!(miri). The integration tests need epoll, threads in numbers and fork: TSan and
# the C passes cover those.
check-miri:
	@if $(HAVE_NIGHTLY) && $(NIGHTLY_CARGO) miri --version >/dev/null 2>&1 && [ -d "$(NIGHTLY_SRC)" ]; then \
	    echo "miri: the unit tests, into target/miri"; \
	    CARGO_TARGET_DIR=$(CURDIR)/target/miri $(NIGHTLY_CARGO) miri test --lib; \
	else \
	    $(call no_nightly,Miri,miri rust-src); \
	fi

# ThreadSanitizer needs every crate instrumented, std included: -Zbuild-std builds it
# from rust-src (TSan runs on x86_64 and aarch64 Linux). Release builds (with line
# tables): the stress tests run a million tasks. The suppressions file lists reports
# about code TSan cannot model, each with its reason; halt_on_error is off (the
# default), so every report is printed, and the test binary then exits with 66.
TSAN_SUPPRESSIONS := $(CURDIR)/tests/sanitizers/tsan.supp

check-tsan:
	@if $(HAVE_NIGHTLY) && [ -d "$(NIGHTLY_SRC)" ]; then \
	    host=$(NIGHTLY_HOST); \
	    case $$host in x86_64-unknown-linux-gnu|aarch64-unknown-linux-gnu) ;; \
	    *) echo "ThreadSanitizer does not run on $$host: the TSan pass is skipped"; exit 0;; esac; \
	    echo "tsan: the unit tests, tests/loop.rs and tests/pool.rs, into target/tsan"; \
	    RUSTFLAGS="-Zsanitizer=thread" CARGO_TARGET_DIR=$(CURDIR)/target/tsan \
	    TSAN_OPTIONS="suppressions=$(TSAN_SUPPRESSIONS)" \
	    $(NIGHTLY_CARGO) test -Zbuild-std --target $$host --release --lib --test loop --test pool; \
	else \
	    $(call no_nightly,TSan,rust-src); \
	fi

# The C tests compiled with AddressSanitizer and UBSan (any UB aborts the program) into
# tests/c/build/asan, linked with the release library: the library is Rust and not
# instrumented, but ASan's malloc serves it too, so LeakSanitizer counts what weft
# leaks. detect_leaks is the default on Linux; said here because it is the point.
ASAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
ASAN_ENV := ASAN_OPTIONS=detect_leaks=1:detect_stack_use_after_return=1 UBSAN_OPTIONS=print_stacktrace=1
# True (status 0) when $(CC) builds and runs a program with those flags.
CC_HAS_ASAN := (probe=$$(mktemp -d); echo 'int main(void) { return 0; }' | \
    $(CC) -x c $(ASAN_FLAGS) -o $$probe/a - 2>/dev/null && $$probe/a; ok=$$?; rm -rf $$probe; [ $$ok = 0 ])
no_asan = echo "$(CC) cannot build with -fsanitize=address,undefined: the $(1) pass is skipped; apt-get install libasan8 libubsan1"

check-asan: build
	@if $(CC_HAS_ASAN); then \
	    echo "asan: the C tests with -fsanitize=address,undefined, into tests/c/build/asan"; \
	    $(ASAN_ENV) $(MAKE) -C tests/c LIBDIR=$(TARGET_DIR) BUILD=$(CURDIR)/tests/c/build/asan \
	        SANITIZE="$(ASAN_FLAGS)" test; \
	else $(call no_asan,ASan); fi

# The same, with the library built with -Zsanitizer=address too (nightly, -Zbuild-std,
# into target/asan-lib): out-of-bounds and use-after-free inside weft's own unsafe code,
# reached through the C tests, where Miri cannot follow (syscalls, fork). The library
# leaves the ASan runtime to the program, so it runs on gcc's libasan.
ASAN_LIB_TARGET := $(CURDIR)/target/asan-lib

check-asan-lib:
	@if ! $(CC_HAS_ASAN); then $(call no_asan,instrumented library); \
	elif $(HAVE_NIGHTLY) && [ -d "$(NIGHTLY_SRC)" ]; then \
	    host=$(NIGHTLY_HOST); \
	    case $$host in x86_64-unknown-linux-gnu|aarch64-unknown-linux-gnu) ;; \
	    *) echo "no -Zsanitizer=address build on $$host: the instrumented library pass is skipped"; exit 0;; esac; \
	    echo "asan-lib: the library built with -Zsanitizer=address, into target/asan-lib"; \
	    RUSTFLAGS="-Zsanitizer=address" CARGO_TARGET_DIR=$(ASAN_LIB_TARGET) \
	        $(NIGHTLY_CARGO) build -Zbuild-std --target $$host --release --lib || exit 1; \
	    lib=$(ASAN_LIB_TARGET)/$$host/release; \
	    ln -sf libweft.so $$lib/libweft.so.$(SOVERSION); \
	    echo "asan-lib: the C tests against it, into tests/c/build/asan-lib"; \
	    $(ASAN_ENV) $(MAKE) -C tests/c LIBDIR=$$lib BUILD=$(CURDIR)/tests/c/build/asan-lib \
	        SANITIZE="$(ASAN_FLAGS)" test; \
	else \
	    $(call no_nightly,instrumented library,rust-src); \
	fi
