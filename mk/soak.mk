# `make soak`, included by the top-level Makefile: weft's soak test (tests/soak/soak.c).
#
#     make soak                 # 5 minutes (MINUTES=5)
#     make soak MINUTES=30      # a sample a minute: RSS, fds, children, calls per second
#     make soak SECONDS=20      # a short run, a sample every 2 s (`make test` runs one)
#     make soak SEED=1234       # the same mix of calls again (the seed is printed)
#
# Four loops on their own threads, eight threads calling into them, every kind of
# registration, cancels and bad calls; it fails on any accounting error, on fds or
# children left over, and on RSS growth after the warm-up (the limits are explained in
# soak.c). Output in target/soak/: soak.csv, a row a sample, and soak.png, its curve,
# drawn by tests/soak/plot.py with matplotlib, which goes into .venv/ from
# tests/soak/requirements.txt on first use. The plot is optional: when matplotlib cannot
# be installed, one line says so and the CSV stays. SOAK_PLOT=0 skips it.

SOAK_OUT     := $(CURDIR)/target/soak
SOAK_BIN     := $(SOAK_OUT)/soak
SOAK_SOURCES := $(wildcard $(CURDIR)/tests/soak/*.c)
SOAK_HEADERS := $(wildcard $(CURDIR)/tests/soak/*.h)
SOAK_CFLAGS  := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -pthread -O2 -g -I$(CURDIR)/include
MINUTES      ?= 5
SOAK_SECONDS  = $(if $(SECONDS),$(SECONDS),$(shell expr $(MINUTES) \* 60))
SOAK_PLOT    ?= 1

.PHONY: soak soak-plot test-soak

# Linked against the release library (built first: `build` is order-only, so a rebuilt
# library does not relink the program, which loads it at run time).
$(SOAK_BIN): $(SOAK_SOURCES) $(SOAK_HEADERS) include/weft.h | build
	mkdir -p $(SOAK_OUT)
	$(CC) $(SOAK_CFLAGS) -o $@ $(SOAK_SOURCES) -L$(TARGET_DIR) -lweft -Wl,-rpath,$(TARGET_DIR)

# The plot is drawn whether the run passed or not (a failed run's curve is the one to see).
soak: $(SOAK_BIN)
	@rc=0; $(SOAK_BIN) --seconds $(SOAK_SECONDS) $(if $(SEED),--seed $(SEED)) --csv $(SOAK_OUT)/soak.csv || rc=$$?; \
	if [ "$(SOAK_PLOT)" != 0 ]; then $(MAKE) --no-print-directory soak-plot; fi; \
	exit $$rc

$(VENV)/.soak-installed: tests/soak/requirements.txt
	[ -x $(PYTHON) ] || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r tests/soak/requirements.txt
	touch $@

soak-plot:
	@if $(MAKE) --no-print-directory $(VENV)/.soak-installed; then \
	    $(PYTHON) tests/soak/plot.py $(SOAK_OUT)/soak.csv $(SOAK_OUT)/soak.png \
	        --title "weft soak: 4 loops, 8 threads, $(SOAK_SECONDS) s" \
	    || echo "soak: plot.py failed: no plot; the samples are in $(SOAK_OUT)/soak.csv"; \
	else \
	    echo "soak: matplotlib could not be installed into .venv: no plot; the samples are in $(SOAK_OUT)/soak.csv"; \
	fi

# The short run of `make test`: every check of the long one, on a 20 s run (about 25 s
# in all), without the plot.
test-soak:
	$(MAKE) --no-print-directory soak SECONDS=20 SOAK_PLOT=0
