# Fuzzing with cargo-fuzz and libFuzzer (fuzz/; the targets drive src/fuzzing/).
#
#   make fuzz SECONDS=N    runs each target for N seconds (default 60), one after the
#                          other, on its corpus fuzz/corpus/<target>, which keeps what
#                          the run finds; a crash stops it (fuzz/artifacts/<target>/)
#   make fuzz-<target>     one of them: fuzz-frame_decoder, fuzz-topic_pattern,
#                          fuzz-api_sequence
#   make fuzz-cmin         minimises every corpus again (libFuzzer's set-cover merge:
#                          the fewest inputs that keep every feature), then writes the
#                          seeds and found inputs of fuzz/seed.py back; commit the result
#
# The targets need the nightly toolchain (rustup toolchain install nightly); cargo-fuzz
# is installed on first use into .tools/, inside the checkout. `make test` needs none of
# this: tests/fuzz_corpus.rs replays the committed corpus on stable Rust.

FUZZ_TARGETS := frame_decoder topic_pattern api_sequence
FUZZ_SECONDS = $(or $(SECONDS),60)
FUZZ_TOOLS := $(CURDIR)/.tools
FUZZ_CARGO := PATH="$(FUZZ_TOOLS)/bin:$$PATH" $(CARGO) +nightly
# api_sequence: the pools keep their threads and buffers from one input to the next, so
# LeakSanitizer would scan the whole heap after almost every input (3 to 4 times
# slower); the model checks that every registration's free_fn ran instead.
FUZZ_FLAGS_api_sequence := -detect_leaks=0

.PHONY: fuzz fuzz-cmin fuzz-tools $(FUZZ_TARGETS:%=fuzz-%) $(FUZZ_TARGETS:%=fuzz-cmin-%)

fuzz: $(FUZZ_TARGETS:%=fuzz-%)

fuzz-tools:
	@$(CARGO) +nightly --version >/dev/null 2>&1 || \
	    { echo "the fuzz targets need the nightly toolchain: rustup toolchain install nightly"; exit 1; }
	@[ -x $(FUZZ_TOOLS)/bin/cargo-fuzz ] || $(CARGO) install --locked --root $(FUZZ_TOOLS) cargo-fuzz

$(FUZZ_TARGETS:%=fuzz-%): fuzz-%: fuzz-tools
	$(FUZZ_CARGO) fuzz run $* fuzz/corpus/$* -- -max_total_time=$(FUZZ_SECONDS) $(FUZZ_FLAGS_$*)

fuzz-cmin: $(FUZZ_TARGETS:%=fuzz-cmin-%)

$(FUZZ_TARGETS:%=fuzz-cmin-%): fuzz-cmin-%: fuzz-tools
	$(FUZZ_CARGO) fuzz cmin $* fuzz/corpus/$* -- -set_cover_merge=1 $(FUZZ_FLAGS_$*)
	python3 fuzz/seed.py
