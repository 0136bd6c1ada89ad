#!/usr/bin/env bash
# The docker-compose topology without Docker: API (2 uvicorn workers) + `tandem worker` + Redis
# (+ Prometheus when installed). One command up, one down; pid files and logs under var/stack/.
#
#   tools/stack-local.sh up      # make stack-local
#   tools/stack-local.sh down    # make stack-local-down
#
# Redis: the one answering on REDIS_HOST:REDIS_PORT (default 127.0.0.1:6379) is used as it is; when none
# answers and redis-server is installed, one is started (and stopped again by `down`).
# Variables: HOST/PORT (API, default 127.0.0.1:8000), WORKERS (2), REDIS_DB (0), WORKER_METRICS_PORT
# (9101), PROMETHEUS_PORT (9090), TANDEM_DATA_DIR (../shared/data), READY_TIMEOUT_S (900: the first start
# builds the default bundle).
set -euo pipefail

BIN=${BIN:-.venv/bin}
STATE=var/stack
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
WORKERS=${WORKERS:-2}
REDIS_HOST=${REDIS_HOST:-127.0.0.1}
REDIS_PORT=${REDIS_PORT:-6379}
REDIS_DB=${REDIS_DB:-0}
WORKER_METRICS_PORT=${WORKER_METRICS_PORT:-9101}
PROMETHEUS_PORT=${PROMETHEUS_PORT:-9090}
READY_TIMEOUT_S=${READY_TIMEOUT_S:-900}
export TANDEM_DATA_DIR=${TANDEM_DATA_DIR:-../shared/data}
export TANDEM_REDIS_URL="redis://${REDIS_HOST}:${REDIS_PORT}/${REDIS_DB}"
export TANDEM_TORCH_THREADS=${TANDEM_TORCH_THREADS:-1}

running() { [[ -f "$STATE/$1.pid" ]] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; }

start() {  # name, command...: background process in its own session, pid file, log file
    local name=$1
    shift
    if running "$name"; then
        echo "$name already running (pid $(cat "$STATE/$name.pid"))"
        return
    fi
    setsid "$@" >"$STATE/$name.log" 2>&1 &
    echo $! >"$STATE/$name.pid"
    echo "started $name (pid $!, log $STATE/$name.log)"
}

redis_answers() {
    "$BIN/python" -c "import redis,sys; sys.exit(0 if redis.Redis(host='$REDIS_HOST', port=$REDIS_PORT, socket_timeout=1, socket_connect_timeout=1).ping() else 1)" 2>/dev/null
}

wait_for() {  # url, seconds, name
    local url=$1 limit=$2 name=$3 waited=0
    until "$BIN/python" -c "import urllib.request as u; u.urlopen('$url', timeout=2)" 2>/dev/null; do
        if ! running "$name"; then
            echo "$name exited before answering $url; see $STATE/$name.log" >&2
            return 1
        fi
        if ((waited >= limit)); then
            echo "$name did not answer $url within ${limit}s; see $STATE/$name.log" >&2
            return 1
        fi
        sleep 2
        waited=$((waited + 2))
    done
}

up() {
    mkdir -p "$STATE"
    if redis_answers; then
        echo "using the Redis on ${REDIS_HOST}:${REDIS_PORT} (db ${REDIS_DB})"
    elif command -v redis-server >/dev/null; then
        start redis redis-server --bind "$REDIS_HOST" --port "$REDIS_PORT" --dir "$STATE" --appendonly yes
        for _ in $(seq 1 20); do redis_answers && break; sleep 0.5; done
        redis_answers || { echo "redis-server did not come up; see $STATE/redis.log" >&2; exit 1; }
    else
        echo "no Redis answers on ${REDIS_HOST}:${REDIS_PORT} and redis-server is not installed" >&2
        exit 1
    fi

    mkdir -p "$STATE/metrics"
    rm -f "$STATE"/metrics/*.db
    PROMETHEUS_MULTIPROC_DIR="$PWD/$STATE/metrics" \
        start api "$BIN/tandem" serve --host "$HOST" --port "$PORT" --workers "$WORKERS"
    echo "waiting for http://$HOST:$PORT/readyz (the first start builds the default bundle)"
    wait_for "http://$HOST:$PORT/readyz" "$READY_TIMEOUT_S" api

    start worker "$BIN/tandem" worker --metrics-port "$WORKER_METRICS_PORT"
    wait_for "http://127.0.0.1:$WORKER_METRICS_PORT/metrics" 300 worker

    if command -v prometheus >/dev/null; then
        sed -e "s/api:8000/$HOST:$PORT/" -e "s/worker:9101/127.0.0.1:$WORKER_METRICS_PORT/" \
            docker/prometheus.yml >"$STATE/prometheus.yml"
        start prometheus prometheus --config.file="$STATE/prometheus.yml" \
            --storage.tsdb.path="$STATE/prometheus-data" --web.listen-address="127.0.0.1:$PROMETHEUS_PORT"
    else
        echo "prometheus is not installed: skipped (the API serves /metrics itself)"
    fi
    echo "stack up: API http://$HOST:$PORT (workers: $WORKERS), worker metrics :$WORKER_METRICS_PORT;" \
        "stop with make stack-local-down"
}

stop() {  # name: SIGTERM to its process group, SIGKILL after 30 s, pid file removed
    local name=$1
    [[ -f "$STATE/$name.pid" ]] || return 0
    local pid
    pid=$(cat "$STATE/$name.pid")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
        for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        if kill -0 "$pid" 2>/dev/null; then
            echo "$name (pid $pid) did not stop in 30 s: SIGKILL"
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid"
        fi
        echo "stopped $name (pid $pid)"
    fi
    rm -f "$STATE/$name.pid"
}

down() {
    stop prometheus
    stop worker
    stop api
    stop redis  # only when this script started it (no pid file otherwise)
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    *)
        echo "usage: $0 up|down" >&2
        exit 2
        ;;
esac
