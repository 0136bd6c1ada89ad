"""The whole app against a Redis this test owns: stopping Redis mid-test degrades, never 500s."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from tests.app.conftest import free_port, make_settings, port_open, running_app

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server binary not found")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            if port_open("127.0.0.1", port):
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"own redis-server did not start on port {port}")
        yield f"redis://127.0.0.1:{port}/0", process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=5)


def degraded(operation: str) -> float:
    return REGISTRY.get_sample_value("tandem_store_degraded_total", {"operation": operation}) or 0.0


async def test_redis_stopped_mid_test_still_200_via_online_path(bundle_v1: Path, own_redis) -> None:
    url, process = own_redis
    settings = make_settings(
        bundle_v1, redis_url=url, redis_socket_timeout_s=0.2, redis_connect_timeout_s=0.2
    )
    async with running_app(settings) as (_, client):
        healthy = await client.post("/v1/recommend", json={"user_id": "u1", "k": 5})
        assert healthy.status_code == 200 and healthy.json()["meta"]["served_by"] == "online"
        assert (await client.get("/readyz")).json()["detail"]["store"] == "redis:ok"

        process.kill()
        process.wait(timeout=5)
        before = degraded("get_state")
        started = time.perf_counter()
        response = await client.post("/v1/recommend", json={"user_id": "u1", "k": 5})
        elapsed = time.perf_counter() - started
        assert response.status_code == 200
        body = response.json()
        assert body["meta"]["served_by"] == "online"  # from the bundle's copy of u1's history
        assert [item["item_id"] for item in body["items"]] == [
            item["item_id"] for item in healthy.json()["items"]
        ]
        assert any("store unavailable" in warning for warning in body["warnings"])
        assert degraded("get_state") == before + 1
        assert elapsed < 10  # bounded by timeouts and retries, not hanging

        unknown = await client.post("/v1/recommend", json={"user_id": "stranger", "k": 3})
        assert unknown.status_code == 200 and unknown.json()["meta"]["served_by"] == "popular"

        events = await client.post(
            "/v1/events",
            json={"events": [{"user_id": "u1", "item_id": "i1", "action": "view", "timestamp": 1}]},
        )
        assert events.status_code == 503  # not durable -> not acknowledged
        assert events.json()["error"]["code"] == "store_unavailable"
        assert events.headers["retry-after"] == "1"

        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["detail"]["store"] == "redis:degraded"


async def test_embedded_mode_has_in_process_worker(bundle_v1: Path) -> None:
    import asyncio

    async with running_app(make_settings(bundle_v1)) as (app, client):
        services = app.state.services
        assert services.stores.kind == "memory" and services.worker_task is not None
        await client.post(
            "/v1/events",
            json={"events": [{"user_id": "newbie", "item_id": "i40", "action": "cart", "timestamp": 5}]},
        )
        for _ in range(100):
            state = await services.stores.users.get_state("newbie")
            if state.vector is not None:
                break
            await asyncio.sleep(0.02)
        assert state.vector is not None and state.vector.sequence == 1
    assert services.worker_task.done() and services.lifecycle.draining


async def test_the_service_sets_the_gil_switch_interval(bundle_v1: Path) -> None:
    import sys

    before = sys.getswitchinterval()
    try:
        async with running_app(make_settings(bundle_v1, gil_switch_ms=0.7)):
            assert sys.getswitchinterval() == pytest.approx(0.0007)
    finally:
        sys.setswitchinterval(before)


async def test_start_up_freezes_what_it_loaded_out_of_the_collectors_way(bundle_v1: Path) -> None:
    import gc

    gc.unfreeze()
    async with running_app(make_settings(bundle_v1)):
        assert gc.get_freeze_count() > 0
    gc.unfreeze()
