"""Fault scenarios against real processes (``make faults``; excluded from ``make test``).

Each scenario starts its own stack (redis-server on a free port, 2 API processes, one worker), runs
traffic while it injects one fault, then compares the clients' ledger of accepted events with what Redis
holds (``harness.count_stored``: the users' dedupe sets and sequence numbers, which no history trim
touches). Targets: 0 failed requests (429 under overload and retried 503s for events are by design),
events_stored == events_accepted, 0 duplicated, 0 lost, every user's vector fresh at the end.
``make faults-quick`` (and CI) runs the scenarios marked ``faults_quick``.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.faults.harness import (
    ADMIN_KEY,
    Ledger,
    Stack,
    Traffic,
    catalogue_ids,
    run_for,
    settle_and_count,
    wait_until,
)

pytestmark = pytest.mark.faults


def traffic_for(stack: Stack, ledger: Ledger, tag: str, **kwargs: Any) -> Traffic:
    items, users = catalogue_ids(stack.bundle)
    return Traffic(stack.base_url, ledger, tag=tag, items=items, known_users=users, **kwargs).start()


def assert_exactly_once(row: dict[str, Any]) -> None:
    assert row["failed"] == 0, row
    assert row["events_accepted"] > 0, row
    assert row["events_stored"] == row["events_accepted"], row
    assert row["events_duplicated"] == 0 and row["events_lost"] == 0, row
    assert row["users_with_fresh_vectors"] == row["users_with_events"], row


def test_no_fault_baseline(stack: Stack, report: dict) -> None:
    ledger = Ledger()
    traffic = traffic_for(stack, ledger, "baseline")
    for _ in run_for(6):
        pass
    traffic.stop()
    row = settle_and_count(stack, ledger, traffic.users())
    report["baseline (no fault)"] = row
    assert_exactly_once(row)


def test_redis_stalls_store_every_accepted_event_once(stack: Stack, report: dict) -> None:
    ledger = Ledger()
    traffic = traffic_for(stack, ledger, "stalls")
    for _ in range(10):
        time.sleep(0.6)
        stack.redis.stall(0.7)  # SIGSTOP: replies stop, connections stay open; client retries time out
    time.sleep(1)
    traffic.stop()
    row = settle_and_count(stack, ledger, traffic.users())
    row["fault"] = "10 x SIGSTOP 0.7 s"
    report["redis stalls"] = row
    assert_exactly_once(row)


@pytest.mark.faults_quick
def test_redis_killed_and_restarted(stack: Stack, report: dict) -> None:
    ledger = Ledger()
    traffic = traffic_for(stack, ledger, "restart")
    time.sleep(2)
    stack.redis.kill()  # kill -9; the AOF (fsync always) keeps every acknowledged write
    time.sleep(4)
    stack.redis.start()
    time.sleep(3)
    traffic.stop()
    row = settle_and_count(stack, ledger, traffic.users())
    row["fault"] = "kill -9, 4 s down, restart"
    report["redis killed and restarted"] = row
    assert_exactly_once(row)
    assert ledger.event_503 > 0  # the outage was seen (and retried)


def test_redis_flushed_worker_recreates_its_group(stack: Stack, report: dict) -> None:
    warmup = Ledger()
    before = traffic_for(stack, warmup, "preflush")
    time.sleep(2)
    before.stop()
    stack.redis.client().flushall()  # failover to an empty replica: stream, group and users gone
    ledger = Ledger()
    traffic = traffic_for(stack, ledger, "postflush")
    time.sleep(5)
    traffic.stop()
    row = settle_and_count(stack, ledger, traffic.users())
    row["fault"] = "FLUSHALL between two bursts (counts the second)"
    report["redis flushed (NOGROUP)"] = row
    assert_exactly_once(row)  # includes: the worker computed every new user's vector after the flush
    assert all(worker.alive() for worker in stack.workers)


@pytest.mark.faults_quick
def test_worker_killed_mid_burst(tmp_path: Path, bundle_v1: Path, report: dict) -> None:
    stack = Stack(tmp_path / "stack", bundle_v1, env_overrides={"TANDEM_WORKER_CONSUMER_IDLE_MS": "3000"})
    try:
        stack.start()
        ledger = Ledger()
        traffic = traffic_for(stack, ledger, "workerkill")
        time.sleep(2)
        stack.workers[0].kill()  # kill -9 with entries in hand
        time.sleep(1)
        stack.start_worker()
        time.sleep(4)
        traffic.stop()
        row = settle_and_count(stack, ledger, traffic.users(), settle_s=45)

        def consumers() -> set[str]:
            listed = stack.redis.client().xinfo_consumers("faults:events", "workers")
            return {consumer["name"].decode() for consumer in listed}

        wait_until(lambda: "worker-0" not in consumers(), 30, 0.5)
        row["fault"] = "worker kill -9 mid-burst, a new one started"
        row["consumers_left"] = sorted(consumers())
        report["worker killed"] = row
        assert_exactly_once(row)
        assert "worker-0" not in row["consumers_left"]  # the dead consumer was removed
    finally:
        stack.stop()


def _damaged_copies(bundle: Path, root: Path) -> dict[str, Path]:
    overwritten = Path(shutil.copytree(bundle, root / "overwritten"))
    checkpoint = overwritten / "encoder" / "encoder.pt"
    data = bytearray(checkpoint.read_bytes())
    start = len(data) // 4
    data[start : start + 50_000] = bytes(min(50_000, len(data) - start))  # same size, 50 KB changed
    checkpoint.write_bytes(bytes(data))
    truncated = Path(shutil.copytree(bundle, root / "truncated"))
    index = truncated / "index" / "index.faiss"
    index.write_bytes(index.read_bytes()[: index.stat().st_size // 2])
    return {"overwritten encoder.pt": overwritten, "truncated index.faiss": truncated}


def test_reloads_refuse_bad_bundles_and_reach_every_process(
    stack: Stack, bundle_v2: Path, tmp_path: Path, report: dict
) -> None:
    admin = {"X-Admin-Key": ADMIN_KEY}
    ledger = Ledger()
    traffic = traffic_for(stack, ledger, "reload", event_senders=1)
    old_version = httpx.get(f"{stack.base_url}/readyz").json()["detail"]["model_version"]
    refused = {}
    for name, path in _damaged_copies(stack.bundle, tmp_path).items():
        answer = httpx.post(
            f"{stack.base_url}/v1/admin/reload", json={"bundle_path": str(path)}, headers=admin
        )
        error = answer.json()["error"]
        refused[name] = answer.status_code
        assert answer.status_code == 422 and error["code"] == "reload_failed" and error["request_id"], error
    reloaded = httpx.post(
        f"{stack.base_url}/v1/admin/reload", json={"bundle_path": str(bundle_v2)}, headers=admin, timeout=60
    )
    assert reloaded.status_code == 200, reloaded.text
    body = reloaded.json()
    new_version = body["model_version"]
    assert new_version != old_version and body["converged"], body
    roles = sorted(process.split(":")[0] for process in body["processes"])
    assert roles == ["api", "api", "worker"], body["processes"]
    seen = {}
    for _ in range(40):  # /readyz from both processes: each reports its pid and the new version
        detail = httpx.get(f"{stack.base_url}/readyz").json()["detail"]
        seen[detail["pid"]] = detail["model_version"]
    time.sleep(1)
    traffic.stop()
    row = settle_and_count(stack, ledger, traffic.users())
    row["refused"] = refused
    row["processes_after_reload"] = len(body["processes"])
    report["bad bundles refused, good one reaches every process"] = row
    assert len(seen) == 2 and set(seen) <= stack.api_pids(), seen  # both worker processes answered
    assert set(seen.values()) == {new_version}, seen
    metrics = httpx.get(f"{stack.base_url}/metrics").text
    per_pid = [
        line
        for line in metrics.splitlines()
        if line.startswith("tandem_bundle_info{") and line.endswith(" 1.0")
    ]
    # One series per process at 1 (the 2 API processes, and the worker: it shares the metrics dir here).
    assert len(per_pid) == 3 and all(new_version in line for line in per_pid), per_pid
    assert_exactly_once(row)


def test_overload_is_shed_with_429(tmp_path: Path, bundle_v1: Path, report: dict) -> None:
    # Each process admits 16 requests at a time here. The default limit (capacity_rps x latency budget, 50
    # per process) is above what 64 clients spread over the two SO_REUSEPORT sockets put on one process,
    # so with it this scenario would not be an overload.
    clients, in_flight = 64, 16
    stack = Stack(tmp_path / "stack", bundle_v1, env_overrides={"TANDEM_MAX_IN_FLIGHT": str(in_flight)})
    try:
        stack.start()
        ledger = Ledger()
        traffic = traffic_for(stack, ledger, "overload", recommenders=clients, event_senders=1)
        started = time.monotonic()
        time.sleep(8)
        traffic.stop()
        elapsed = time.monotonic() - started
        row = settle_and_count(stack, ledger, traffic.users())
        row["served_per_s"] = round(ledger.statuses[200] / elapsed, 1)
        row["clients"] = clients
        row["in_flight_limit_per_process"] = in_flight
        report[f"overload ({clients} clients)"] = row
        assert ledger.shed > 0 and row["failed"] == 0, row
        assert_exactly_once(row)
    finally:
        stack.stop()


def test_bodies_and_timestamps_out_of_bounds(stack: Stack, report: dict) -> None:
    statuses = {}
    big = urllib.request.Request(
        f"{stack.base_url}/v1/events",
        data=b"x" * (21 * 1024 * 1024),
        headers={"content-type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(big, timeout=60)
    statuses["21 MB body (urllib)"] = refused.value.code
    assert json.loads(refused.value.read())["error"]["code"] == "payload_too_large"

    def chunks():
        for _ in range(40):
            yield b"x" * 65536

    chunked = httpx.post(
        f"{stack.base_url}/v1/events", content=chunks(), headers={"content-type": "application/json"}
    )
    statuses["2.5 MB chunked body"] = chunked.status_code
    ahead = int(time.time()) + 2 * 86400
    event = {"user_id": "x", "item_id": "1", "action": "click", "timestamp": ahead}
    future = httpx.post(f"{stack.base_url}/v1/events", json={"events": [event]})
    statuses["timestamp 2 days ahead"] = future.status_code
    report["bodies and timestamps out of bounds"] = {
        "requests": 3,
        "failed": 0,
        "statuses": statuses,
        **statuses,
    }
    assert statuses == {"21 MB body (urllib)": 413, "2.5 MB chunked body": 413, "timestamp 2 days ahead": 422}
    assert future.json()["error"]["request_id"]


def test_fuzzing_the_openapi_gives_no_5xx_and_one_error_shape(stack: Stack, report: dict) -> None:
    from tests.faults.fuzz import fuzz

    outcome = fuzz(stack.base_url, {"X-Admin-Key": ADMIN_KEY}, minimum_requests=2000)
    report["fuzzing (schemathesis)"] = outcome
    assert outcome["requests"] >= 2000, outcome
    assert outcome["server_errors"] == 0, outcome["examples"]
    assert outcome["bad_error_shape"] == 0, outcome["examples"]
