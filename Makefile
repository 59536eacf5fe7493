# Common tasks. `make demo` and `make test` work on a fresh machine with Python 3.11 and pip.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.adhunt-installed
PIP    := $(BIN)/python -m pip

.PHONY: install demo test test-slow lint format bench clean

install: $(STAMP)

# torch 2.13.0 first: a CPU build of it is on disk here, an unpinned torch pulls GBs of CUDA packages.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet --prefer-binary torch==2.13.0
	$(PIP) install --quiet --prefer-binary -e ".[dev]"
	touch $(STAMP)

demo: install
	$(BIN)/adhunt demo --output demo-output

test: install
	$(BIN)/python -m pytest -m "not slow" -q

test-slow: install
	$(BIN)/python -m pytest -m slow -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python benchmarks/bench_features.py

clean:
	rm -rf .cache demo-output bench-output .pytest_cache
