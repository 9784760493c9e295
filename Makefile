# Fresh machine: `make demo` or `make test` set everything up first (scripts/setup.sh).
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: setup demo test test-all bench clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) -m crsnn.sim.check_lava --networks 6 --seed 0

test: setup
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

test-all: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: setup
	$(PY) bench/sim_vs_lava.py

clean:
	rm -rf .venv .pytest_cache .hypothesis build *.egg-info
