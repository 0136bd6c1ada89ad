# Every target does its own set-up, idempotently: a fresh machine needs only Python 3.11.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA_DIR ?= ../shared/data
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: serve test lint bench eval clean venv worker loadtest faults soak

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "tandem needs Python 3.11 (set PYTHON=...)"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

serve: $(STAMP)
	TANDEM_DATA_DIR=$${TANDEM_DATA_DIR:-$(DATA_DIR)} $(BIN)/tandem serve --host $(HOST) --port $(PORT)

worker: $(STAMP)
	@test -n "$$TANDEM_REDIS_URL" || { echo "make worker needs TANDEM_REDIS_URL (the embedded mode runs its worker inside make serve)"; exit 2; }
	$(BIN)/tandem worker

test: $(STAMP)
	$(BIN)/python -m pytest -q

# Fault scenarios against real processes (redis-server, 2 API workers, tandem worker) and schemathesis
# fuzzing; writes docs/results/reliability.{md,json}. Needs the redis-server binary. A few minutes.
faults: $(STAMP)
	$(BIN)/pip install --quiet '.[faults]'
	$(BIN)/python -m pytest -m faults tests/faults -v

# The stack at 70% of its measured capacity for SOAK_SECONDS; RSS growth per process (docs/results/soak.*).
soak: $(STAMP)
	$(BIN)/python -m tests.faults.soak --seconds $${SOAK_SECONDS:-600}

lint: $(STAMP)
	$(BIN)/ruff check app models tests loadtest
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m models.bench.run_all

eval: $(STAMP)
	$(BIN)/tandem eval --all --data-dir $(DATA_DIR)

loadtest: $(STAMP)
	$(BIN)/pip install --quiet '.[load]'
	$(BIN)/locust -f loadtest/locustfile.py --config loadtest/locust.conf --host http://$(HOST):$(PORT) \
		--p99-budget-ms $${P99_BUDGET_MS:-250} --max-error-ratio $${MAX_ERROR_RATIO:-0.01}

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
