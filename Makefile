# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SCALE ?= 100
SEED ?= 1
# the default suite runs in two pytest-xdist workers, one per core of the 2-core machines it
# is meant for; each module's tests stay in one worker (their module fixtures run once)
TEST_WORKERS ?= 2

.PHONY: install browser run test test-full bench bench-full bench-core lint clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,calibrate,web,bench]"
	touch $@

install: $(VENV)/.installed

# Debian's Chromium for the browser tests of `talbuk serve` (Playwright drives it; never
# `playwright install`, which downloads a browser). Needs root or sudo on a fresh machine.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

# the baseline at the default scale (100 people per agent), then its report
run: install
	$(VENV)/bin/talbuk run --scenario baseline --scale $(SCALE) --seed $(SEED) --out runs/baseline --force
	$(VENV)/bin/talbuk report runs/baseline

test: install browser
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/pytest -q -n $(TEST_WORKERS) --dist loadscope

# whole-population checks (minutes, several GB of memory)
test-full: install
	$(VENV)/bin/pytest -q -m fullscale

# full model (all modules): scale 100 and 10 with 1 and 2 threads, per-phase times, scaling
# curve, the Mesa reference ratio; then the memory-bandwidth floor. Writes benchmarks/results.json
bench: install
	$(PY) benchmarks/full_model.py
	$(PY) benchmarks/bandwidth_floor.py
	$(PY) benchmarks/plot_results.py

# the same plus the whole population (scale 1, 1990-2025)
bench-full: install
	$(PY) benchmarks/full_model.py --full
	$(PY) benchmarks/bandwidth_floor.py
	$(PY) benchmarks/plot_results.py

# the simulation core alone (demography)
bench-core: install
	$(PY) benchmarks/core_throughput.py --modules demography

lint: install
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf runs .pytest_cache
