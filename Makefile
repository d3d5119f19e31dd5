# yuqing — the two commands a newcomer needs: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PORT ?= 8000
YUQING_DATA_DIR ?= ./data
export YUQING_DATA_DIR
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench install clean system-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel

# torch==2.13.0 (CPU) comes from the machine's wheel directory; everything else from PyPI.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[ml,ner,scale,test]'
	touch $(STAMP)

install: $(STAMP)

## Start API + workers in embedded mode (in-process bus + SQLite) with the synthetic demo stream.
run: install
	$(BIN)/yuqing run --demo --host 127.0.0.1 --port $(PORT)

## Lint, type-check, start the test servers (noida-db for Kafka/ES, a fresh PostgreSQL database), run every test.
test: install system-deps
	bash deploy/run-tests.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

## Benchmarks: one `name: value` line per figure, with baselines measured in the same run.
bench: install
	bash deploy/run-bench.sh

# Debian packages the tests need (CJK font for charts, Chromium for browser tests); installed only when missing.
system-deps:
	@bash deploy/system-deps.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache test-artifacts
