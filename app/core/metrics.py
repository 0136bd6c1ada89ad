"""Prometheus metrics of the API and the worker (base units, ``_total`` counters, no user ids as labels).

With ``PROMETHEUS_MULTIPROC_DIR`` set (several uvicorn workers) prometheus-client keeps the values in files
of that directory and ``render()`` merges them, so one scrape sees the whole server.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

REQUESTS = Counter(
    "tandem_requests_total",
    "HTTP requests by route, serving path and status",
    ["path", "served_by", "status"],
)
REQUEST_SECONDS = Histogram(
    "tandem_request_duration_seconds", "HTTP request latency by route", ["path"], buckets=_LATENCY_BUCKETS
)
STAGE_SECONDS = Histogram(
    "tandem_stage_duration_seconds",
    "latency of one recommend stage (user_vector, retrieve, features, rank, rules, total)",
    ["stage"],
    buckets=_LATENCY_BUCKETS,
)
VECTOR_CACHE = Counter(
    "tandem_user_vector_cache_total", "cached user vector lookups by result (hit, miss, stale)", ["result"]
)
STORE_DEGRADED = Counter(
    "tandem_store_degraded_total", "store calls that failed and were served without the store", ["operation"]
)
STAGE_FAILURES = Counter(
    "tandem_stage_failures_total", "recommend stages that failed and fell back to the next path", ["stage"]
)
LOAD_SHED = Counter("tandem_load_shed_total", "requests refused with 429 because too many were in flight")
IN_FLIGHT = Gauge("tandem_in_flight_requests", "requests being served", multiprocess_mode="livesum")
EVENTS_ACCEPTED = Counter("tandem_events_accepted_total", "events newly stored by POST /v1/events")
EVENTS_DUPLICATE = Counter(
    "tandem_events_duplicate_total", "events whose idempotency key was already stored (not stored again)"
)
STREAM_LAG = Gauge(
    "tandem_stream_lag_entries",
    "stream entries not yet delivered to the worker group",
    multiprocess_mode="max",
)
STREAM_PENDING = Gauge(
    "tandem_stream_pending_entries", "entries delivered but not acknowledged", multiprocess_mode="max"
)
GROUP_RECREATED = Counter(
    "tandem_stream_group_recreated_total", "times the worker group was missing (NOGROUP) and recreated"
)
STREAM_TRIMMED = Counter("tandem_stream_trimmed_total", "acknowledged stream entries deleted by the worker")
CONSUMERS_REMOVED = Counter(
    "tandem_worker_consumers_removed_total", "idle consumers with nothing pending removed"
)
WORKER_ERRORS = Counter("tandem_worker_errors_total", "unexpected worker errors survived (logged, retried)")
WORKER_PROCESS_FALLBACKS = Counter(
    "tandem_worker_process_fallbacks_total",
    "worker batches computed in a thread because the worker's child process failed or held another bundle",
)
EVENTS_REFUSED = Counter(
    "tandem_events_backlog_refused_total", "events refused with 503 because the stream backlog is full"
)
WORKER_ENTRIES = Counter("tandem_worker_entries_total", "stream entries processed and acknowledged")
WORKER_CLAIMED = Counter("tandem_worker_claimed_total", "pending entries re-claimed from another consumer")
WORKER_VECTORS = Counter("tandem_worker_vectors_written_total", "user vectors recomputed and written")
WORKER_BATCH_SECONDS = Histogram(
    "tandem_worker_batch_seconds", "time to recompute and write one batch", buckets=_LATENCY_BUCKETS
)
BUNDLE_INFO = Gauge(
    "tandem_bundle_info",
    "the loaded bundle (value 1), by model and index version and serving path",
    ["model_version", "index_version", "serving_path"],
    multiprocess_mode="liveall",
)
UNHANDLED_ERRORS = Counter("tandem_unhandled_errors_total", "requests answered 500 by an unexpected error")
RELOADS = Counter("tandem_bundle_reloads_total", "bundle reloads by outcome", ["outcome"])


_bundle_labels: list[tuple[str, str, str]] = []


def set_bundle_info(model_version: str, index_version: str, serving_path: str) -> None:
    """Mark exactly one bundle as loaded (1) in this process; earlier ones drop to 0. (Setting 0 rather
    than clearing: in multiprocess mode cleared values would linger in the process's file.) With several
    processes each series carries the process's ``pid`` label, so each process's bundle is visible."""
    for labels in _bundle_labels:
        BUNDLE_INFO.labels(*labels).set(0)
    _bundle_labels[:] = [(model_version, index_version, serving_path)]
    BUNDLE_INFO.labels(model_version, index_version, serving_path).set(1)


def multiprocess_enabled() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def render() -> tuple[bytes, str]:
    """The exposition text of every metric (merged across processes in multiprocess mode)."""
    if multiprocess_enabled():
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int) -> None:
    """Drop a finished worker's live gauges (multiprocess mode only)."""
    if multiprocess_enabled():
        prometheus_multiprocess.mark_process_dead(pid)
