# Every target does its own set-up, idempotently: a fresh machine needs only Python 3.11.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA_DIR ?= ../shared/data
HOST ?= 127.0.0.1
PORT ?= 8000

LOADTEST_RESULTS := loadtest/results
LOADTEST_USER_COUNT ?= 32
LOADTEST_SECONDS ?= 60

.PHONY: serve test lint bench bench-stages bench-index bench-ranker bench-epochs eval clean venv worker loadtest loadtest-steps profile \
	stack-local stack-local-down compose-check eval-pipeline faults faults-quick soak mutate scale scale-measure

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
	@$(BIN)/python -c 'import schemathesis' 2>/dev/null || $(BIN)/pip install --quiet -e '.[faults]'
	TANDEM_FAULTS_REPORT=1 $(BIN)/python -m pytest -m faults tests/faults -v

# Two fault scenarios (worker kill -9 mid-burst; Redis kill -9 and restart), well under 2 minutes; part of CI
# (.ci/run). They skip without the redis-server binary, and fail then under CI=true. Writes no results.
# Beyond one machine (Milvus backend; more to come): installs the scale extra, runs the tests marked scale
# (excluded from make test) and writes docs/results/scale.{md,json} with a Milvus-vs-faiss latency check.
scale: $(STAMP)
	@$(BIN)/python -c 'import pymilvus' 2>/dev/null || $(BIN)/pip install --quiet -e '.[scale]'
	mkdir -p var
	$(BIN)/python -m pytest -m scale tests -q --junitxml=var/scale-junit.xml; \
		status=$$?; $(BIN)/python -m tools.scale.report var/scale-junit.xml docs/results/scale || exit 1; exit $$status

# The scale-out measurements (each a module of tools/scale/, runnable alone; results in var/scale/*.json,
# merged into docs/results/scale.{md,json}): a packed bundle reaching 2 replicas (Redis on db 13 of
# 127.0.0.1:6379, own key prefix, deleted after), Milvus killed mid-load, a Redis Cluster under the fault
# suite's load and oracle (baseline, a master killed, slots moved), 1 against 2 API replicas on a cluster
# (needs wrk and the default bundle), faiss against Milvus at 1M items, DDP against single-process encoder
# training (3 seeds each). About 40 minutes here; run on a quiet machine (the replicas' throughput).
scale-measure: $(STAMP)
	@$(BIN)/python -c 'import pymilvus' 2>/dev/null || $(BIN)/pip install --quiet -e '.[scale]'
	status=0; \
	$(BIN)/python -m tools.scale.bundle_distribution || status=1; \
	$(BIN)/python -m tools.scale.milvus_down || status=1; \
	$(BIN)/python -m tools.scale.redis_cluster || status=1; \
	$(BIN)/python -m tools.scale.replicas || status=1; \
	$(BIN)/python -m tools.scale.index_scale || status=1; \
	$(BIN)/python -m tools.scale.ddp || status=1; \
	$(BIN)/python -m tools.scale.report --measured docs/results/scale || exit 1; exit $$status

faults-quick: $(STAMP)
	$(BIN)/python -m pytest -m 'faults and faults_quick' tests/faults -v

# Mutation testing (mutmut, tools/mutate/) of the code where a silent bug loses or mixes user data, each
# target with only its own tests, one worker; mutates the committed HEAD in var/mutate/, never the work tree.
# Not part of make test; needs Redis on 127.0.0.1:6379; about 15 minutes. MUTATE_ARGS: targets, --rev.
# The reference run and its survivors: docs/results/mutation.md.
mutate: $(STAMP)
	$(BIN)/python -m tools.mutate $(MUTATE_ARGS)

# The stack at 70% of its measured capacity for SOAK_SECONDS; RSS growth per process (docs/results/soak.*).
soak: $(STAMP)
	$(BIN)/python -m tests.faults.soak --seconds $${SOAK_SECONDS:-600}

# ruff, mypy, and the import-linter contracts of pyproject.toml (lower floors never import higher ones)
lint: $(STAMP)
	$(BIN)/ruff check app models cli tools tests loadtest
	$(BIN)/mypy
	$(BIN)/lint-imports

# The benchmarks (tools/bench/, not part of the package). The reference runs are committed: the targets
# that write a report write it to docs/results/ (the tools' own default is var/results/). BENCH_ARGS: more
# flags (a later --out wins).
# One run: stage floors in-process, then the service over HTTP with wrk -> docs/results/performance.*
# py-spy on make serve's process under the load-test mix -> docs/results/profile-serve.{svg,md,json}
profile: $(STAMP)
	@$(BIN)/python -c 'import locust, importlib.util as u; assert u.find_spec("pyinstrument")' 2>/dev/null || \
		$(BIN)/pip install --quiet -e '.[load,profile]'
	$(BIN)/python -m tools.bench.profile_serve $(PROFILE_ARGS)

bench: $(STAMP)
	@command -v wrk >/dev/null || { echo "make bench needs wrk (apt-get install -y wrk)"; exit 2; }
	$(BIN)/python -m tools.bench.performance --out docs/results/performance $(BENCH_ARGS)

# Stage latency floors with random-weight models (encoder, ANN at 10K/1M, ranker) -> docs/results/bench-cpu.*
bench-stages: $(STAMP)
	$(BIN)/python -m tools.bench.run_all --out docs/results/bench-cpu $(BENCH_ARGS)

# Recall/latency sweep of exact, IVF and HNSW indexes at 1M items -> docs/results/index-synthetic-1m.* (~5 min)
bench-index: $(STAMP)
	$(BIN)/python -m tools.bench.index_sweep --out docs/results/index-synthetic-1m $(BENCH_ARGS)

# The ranker's forward for one request of 200 candidates, and a batch (prints JSON; --checkpoint PATH)
bench-ranker: $(STAMP)
	$(BIN)/python -m tools.bench.ranker_latency $(BENCH_ARGS)

# Seconds per session-encoder epoch and the validation curve they buy (prints one line per epoch)
bench-epochs: $(STAMP)
	$(BIN)/python -m tools.bench.epoch_time $(BENCH_ARGS)

eval: $(STAMP)
	$(BIN)/tandem eval --all --data-dir $(DATA_DIR) --results-dir docs/results

# The served pipeline replayed offline on the four datasets (docs/results/pipeline-*.*; about 30-60 min each).
eval-pipeline: $(STAMP)
	for dataset in ml-100k taobao synthetic ml-1m; do \
		$(BIN)/tandem eval --stage pipeline --dataset $$dataset --seeds 3 --encoder-epochs 24 --ranker-epochs 6 \
			--data-dir $(DATA_DIR) --results-dir docs/results || exit 1; \
	done

# Targets a running service only (make serve / make stack-local); fails on the budget (p99, errors).
loadtest: $(STAMP)
	@$(BIN)/python -c 'import locust' 2>/dev/null || $(BIN)/pip install --quiet -e '.[load]'
	@$(BIN)/python loadtest/report.py check http://$(HOST):$(PORT)
	mkdir -p $(LOADTEST_RESULTS)
	load="$$(cut -d' ' -f1-3 /proc/loadavg)"; \
	$(BIN)/locust -f loadtest/locustfile.py --config loadtest/locust.conf --host http://$(HOST):$(PORT) \
		-u $(LOADTEST_USER_COUNT) -t $(LOADTEST_SECONDS)s \
		--csv $(LOADTEST_RESULTS)/run --html $(LOADTEST_RESULTS)/report.html \
		--p99-budget-ms $${P99_BUDGET_MS:-100} --max-error-ratio $${MAX_ERROR_RATIO:-0}; \
	status=$$?; \
	$(BIN)/python loadtest/report.py plot $(LOADTEST_RESULTS)/run_stats_history.csv $(LOADTEST_RESULTS)/latency.png; \
	$(BIN)/python -m loadtest.record $(LOADTEST_RESULTS)/run http://$(HOST):$(PORT) --users $(LOADTEST_USER_COUNT) \
		--seconds $(LOADTEST_SECONDS) --label $${LOADTEST_LABEL:-default} --load-before "$$load" \
		--budget-p99-ms $${P99_BUDGET_MS:-100} --out $${LOADTEST_RECORD:-$(LOADTEST_RESULTS)/loadtest.json}; \
	exit $$status

# The saturation curve of a running service: the same mix at 8 -> 128 users, p50 / p99 against req/s
# (docs/results/loadtest-steps.json, loadtest-saturation.png; LOADTEST_SETUP names the setup).
loadtest-steps: $(STAMP)
	@$(BIN)/python -c 'import locust' 2>/dev/null || $(BIN)/pip install --quiet -e '.[load]'
	@$(BIN)/python loadtest/report.py check http://$(HOST):$(PORT)
	$(BIN)/python -m loadtest.steps http://$(HOST):$(PORT) --setup $${LOADTEST_SETUP:-serve}

# The compose topology without Docker (API x2 workers, tandem worker, Redis, Prometheus if installed).
stack-local: $(STAMP)
	HOST=$(HOST) PORT=$(PORT) TANDEM_DATA_DIR=$${TANDEM_DATA_DIR:-$(DATA_DIR)} tools/stack-local.sh up

stack-local-down:
	tools/stack-local.sh down

# Builds the image and runs docker-compose.yml for real (minutes, GBs; not part of make test). See
# tools/compose_check/ and docs/operations.md.
compose-check: $(STAMP)
	$(BIN)/python -m tools.compose_check --data-dir $(DATA_DIR)

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
