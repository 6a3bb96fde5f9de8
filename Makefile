# The two commands of the README:
#   make demo   set up .venv and run `sumi generate` on the default model
#   make test   set up .venv with the dev extras and run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# On CPU machines torch comes first, from plain pip, pinned (a local CPU wheel here). Set
# TORCH_SPEC to your own build (e.g. a CUDA one) on a GPU machine, or empty to keep what is installed.
TORCH_SPEC ?= torch==2.13.0
PROMPT ?= def read_config(path):

.PHONY: setup setup-dev demo test test-fast lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

setup: $(BIN)/python
	@if [ -n "$(TORCH_SPEC)" ]; then $(BIN)/pip install -q "$(TORCH_SPEC)"; fi
	$(BIN)/pip install -q -e .

setup-dev: $(BIN)/python
	@if [ -n "$(TORCH_SPEC)" ]; then $(BIN)/pip install -q "$(TORCH_SPEC)"; fi
	$(BIN)/pip install -q -e ".[dev]"

demo: setup
	$(BIN)/sumi generate "$(PROMPT)"

# lint and types first (CI fails on them), then every test, slow ones included, one worker per
# core (pytest-xdist; a test file stays on one worker, so its module fixtures load once)
test: setup-dev lint
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest -q -n auto --dist loadfile

# the quick loop while editing: everything but the tests marked slow
test-fast: setup-dev
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow"

# ruff (lint, import order, format) and mypy on src/, configured in pyproject.toml
lint:
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/mypy src/sumi

format:
	$(BIN)/ruff check --fix src tests benchmarks scripts
	$(BIN)/ruff format src tests benchmarks scripts

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
