# make run   : create .venv, install, run the embedded default end to end, write results/report.html
# make test  : create .venv, install with the test extra, run the test suite (about 8 minutes on 2 cores)
# make test-e2e: the end-to-end runs of the real Snakefile (marked slow; the embedded default's among them)
PYTHON ?= python3.11
VENV   ?= .venv
BIN     = $(VENV)/bin
CORES  ?= 2
PYTEST_ARGS ?=
# test processes (pytest-xdist, a test file per process; order: tests/conftest.py)
TEST_WORKERS ?= 2

.PHONY: install install-test run test test-e2e dag clean slurm-up slurm-down test-slurm

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-test: $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test]"

run: install
	$(BIN)/snakemake --cores $(CORES)
	$(BIN)/snakemake --report results/report.html

# The suite leaves out the end-to-end runs (marked slow): they fill both cores for 36-40 minutes, the
# default's reproduction alone needs 37 core-minutes (docs/testing.md). CI runs both targets.
test: install-test
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not slow" $(PYTEST_ARGS)

test-e2e: install-test
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile -m slow $(PYTEST_ARGS)

dag: install
	$(BIN)/snakemake --rulegraph | dot -Tsvg > docs/rulegraph.svg

clean:
	rm -rf results .snakemake

# A single-node Slurm on this machine for the slurm-marked tests (needs root or sudo).
slurm-up:
	tests/slurm/start.sh

slurm-down:
	tests/slurm/stop.sh

test-slurm: install-test
	$(BIN)/python -m pytest -m slurm $(PYTEST_ARGS)
