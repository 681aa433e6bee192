# Loom models of the lock-free protocols (src/loom_models/, through the shim src/sync.rs):
# `make loom` explores every interleaving with up to LOOM_MAX_PREEMPTIONS preemptions (5;
# `make loom LOOM_MAX_PREEMPTIONS=` for no bound at all: loom_completions_close alone then
# ran for more than 13 minutes without finishing); make test runs them with 3 (seconds, after a build of its own in target/loom);
# `make loom-mutants` removes each guarded fence and flag in turn (tests/loom/mutants.py)
# and checks that its model then fails.
LOOM_ENV := RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=$(CURDIR)/target/loom
LOOM_MAX_PREEMPTIONS ?= 5

.PHONY: loom test-loom loom-mutants

loom:
	$(LOOM_ENV) $(if $(LOOM_MAX_PREEMPTIONS),LOOM_MAX_PREEMPTIONS=$(LOOM_MAX_PREEMPTIONS),env -u LOOM_MAX_PREEMPTIONS) $(CARGO) test --release --lib loom -- --nocapture --test-threads=1

test-loom:
	$(LOOM_ENV) LOOM_MAX_PREEMPTIONS=3 $(CARGO) test --release --lib loom -- --nocapture --test-threads=1

loom-mutants:
	python3 tests/loom/mutants.py
