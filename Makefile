# Every target does its own set-up, idempotently: a fresh machine needs only Python 3.11.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA_DIR ?= ../shared/data
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: serve test lint bench eval clean venv worker loadtest

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

serve: $(STAMP)
	TANDEM_DATA_DIR=$${TANDEM_DATA_DIR:-$(DATA_DIR)} $(BIN)/tandem serve --host $(HOST) --port $(PORT)

worker: $(STAMP)
	$(BIN)/tandem worker

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check app models tests loadtest
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m models.bench.run_all

eval: $(STAMP)
	$(BIN)/tandem eval --all --data-dir $(DATA_DIR)

loadtest: $(STAMP)
	$(BIN)/pip install --quiet '.[load]'
	$(BIN)/locust -f loadtest/locustfile.py --headless --host http://$(HOST):$(PORT)

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
