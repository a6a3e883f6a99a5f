# Set-up and entry points for a fresh machine: `make quickstart DATA=...`, `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?=
PYTEST_ARGS ?=

.PHONY: install quickstart test lint format bench clean

$(STAMP): pyproject.toml setup.py $(wildcard iids/csrc/*)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## The main job: ingest, train, evaluate, save and batch-score on a local Ray.
quickstart: $(STAMP)
	$(BIN)/iids quickstart $(if $(DATA),--data $(DATA)) --output runs/quickstart

## Formatting and lint checks, then the whole test suite.
test: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/pytest $(PYTEST_ARGS)

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## Throughput benchmarks (about 16 minutes on 2 cores) -> benchmarks/RESULTS.md, results.json.
bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py

clean:
	rm -rf runs .pytest_cache .ruff_cache
