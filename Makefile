# Fresh machine: `make demo` or `make test` set everything up first (scripts/setup.sh).
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: setup demo test test-all bench docs tutorials clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) -m crsnn.demo

test: setup
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

test-all: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The documentation site, static HTML in site/: command pages from the parsers, every --option the
# docs name checked against them, and a strict build (a broken link or anchor fails).
docs: setup
	$(PY) scripts/docs_options.py pages docs/commands
	$(PY) scripts/docs_options.py check
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

# Run every tutorial (docs/tutorials/*.py) and rewrite its page, output and plots included; the
# pages are tracked, so `make docs` does not run them (tests/test_tutorials.py does).
tutorials: setup
	$(PY) scripts/tutorials.py

# The FSDD recordings (real speech, not shipped): `make bench FSDD_RECORDINGS=DIR` names their folder.
FSDD_RECORDINGS ?= data/fsdd/recordings

bench: setup  # every figure of the results table (docs/results.md); about 3 hours on 2 cores
	$(PY) bench/sim_vs_lava.py
	$(PY) bench/crsnn_vs_delrec.py
	$(PY) bench/train_speed.py
	$(PY) bench/qat_speed.py
	$(PY) bench/vs_published.py --sizes 256 1024
	$(PY) bench/accuracy.py
	$(PY) bench/ablation_delays.py
	$(PY) bench/gap_defaults.py --jobs 2
	$(PY) bench/train_speed.py --models crsnn dcls --hidden 128 128 --repeat 2 --name dcls_speed
	$(PY) bench/dcls_accuracy.py --jobs 2
	FSDD_RECORDINGS=$(FSDD_RECORDINGS) $(PY) bench/encoder_probe.py --encoding 'default=' --encoding 'plain=--equalize 0' --encoding 'ear=--equalize 0 --ear-highpass 500' --encoding 'fibres=--equalize 0 --fibres 0,20,40'
	FSDD_RECORDINGS=$(FSDD_RECORDINGS) $(PY) bench/fsdd.py --models crsnn crsnn-frozen crsnn-nodelay delrec --seeds 0 1 2 --jobs 2
	FSDD_RECORDINGS=$(FSDD_RECORDINGS) $(PY) bench/fsdd.py --models ff dcls dcls-frozen crsnn-dcls --seeds 0 --keep-rows --jobs 2
	$(PY) bench/results_table.py --docs

clean:
	rm -rf .venv .pytest_cache .hypothesis build *.egg-info site docs/commands
