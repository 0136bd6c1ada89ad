"""/livez, /readyz (incl. draining), /metrics, /docs and POST /v1/admin/reload under concurrent load."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from app.services.user_vectors import wait_for_write_backs
from tests.app.conftest import make_settings, running_app

pytestmark = pytest.mark.anyio
ADMIN = {"X-Admin-Key": "secret-admin"}


async def test_health_metrics_and_docs(bundle_v1: Path) -> None:
    async with running_app(make_settings(bundle_v1)) as (app, client):
        assert (await client.get("/livez")).json()["status"] == "alive"
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["detail"] == {
            "store": "memory:ok",
            "model_version": "fake-v1",
            "index_version": "index-v1",
            "serving_path": "session_encoder+ranker",
            "bundle_path": str(bundle_v1),
            "upgrade": "none",
        }
        await client.post("/v1/recommend", json={"user_id": "u1"})
        text = (await client.get("/metrics")).text
        for name in (
            "tandem_requests_total",
            "tandem_stage_duration_seconds_bucket",
            "tandem_user_vector_cache_total",
            "tandem_stream_lag_entries",
            'tandem_bundle_info{index_version="index-v1",model_version="fake-v1"',
        ):
            assert name in text
        assert 'path="/v1/recommend",served_by="online",status="200"' in text
        assert (await client.get("/docs")).status_code == 200
        assert "/v1/recommend" in (await client.get("/openapi.json")).json()["paths"]

        app.state.services.lifecycle.start_draining()
        draining = await client.get("/readyz")
        assert draining.status_code == 503 and draining.json()["status"] == "draining"
        assert (await client.get("/livez")).status_code == 200
        assert (await client.post("/v1/recommend", json={"user_id": "u1"})).status_code == 200


async def test_admin_reload_requires_the_admin_key(bundle_v1: Path, bundle_v2: Path) -> None:
    async with running_app(make_settings(bundle_v1)) as (_, client):
        disabled = await client.post("/v1/admin/reload", json={"bundle_path": str(bundle_v2)})
        assert disabled.status_code == 403 and disabled.json()["error"]["code"] == "forbidden"
    async with running_app(make_settings(bundle_v1, admin_key="secret-admin")) as (_, client):
        wrong = await client.post("/v1/admin/reload", headers={"X-Admin-Key": "guess"})
        assert wrong.status_code == 401
        missing = await client.post(
            "/v1/admin/reload", json={"bundle_path": "/does/not/exist"}, headers=ADMIN
        )
        assert missing.status_code == 422 and missing.json()["error"]["code"] == "reload_failed"
        still = (await client.post("/v1/recommend", json={"user_id": "u1"})).json()
        assert still["meta"]["model_version"] == "fake-v1"  # a failed reload keeps the old bundle


async def test_reload_under_concurrent_requests(bundle_v1: Path, bundle_v2: Path) -> None:
    async with running_app(make_settings(bundle_v1, admin_key="secret-admin")) as (_, client):

        async def hammer(user: str) -> list[int]:
            statuses = []
            for _ in range(15):
                response = await client.post("/v1/recommend", json={"user_id": user, "k": 5})
                statuses.append(response.status_code)
                body = response.json()
                assert body["meta"]["model_version"] in ("fake-v1", "fake-v2")
                assert len(body["items"]) == 5
            return statuses

        load = [asyncio.create_task(hammer(f"u{n}")) for n in range(6)]
        await asyncio.sleep(0.01)
        reloaded = await client.post("/v1/admin/reload", json={"bundle_path": str(bundle_v2)}, headers=ADMIN)
        results = await asyncio.gather(*load)
        assert reloaded.status_code == 200
        assert reloaded.json()["model_version"] == "fake-v2"
        assert all(status == 200 for statuses in results for status in statuses)
        after = (await client.post("/v1/recommend", json={"user_id": "u1"})).json()
        assert after["meta"]["model_version"] == "fake-v2" and after["meta"]["index_version"] == "index-v2"


async def test_vectors_cached_by_the_old_model_are_not_reused(bundle_v1: Path, bundle_v2: Path) -> None:
    async with running_app(make_settings(bundle_v1, admin_key="secret-admin")) as (_, client):
        await client.post("/v1/recommend", json={"user_id": "u9"})
        await wait_for_write_backs()  # the online vector is cached in the background
        assert (await client.post("/v1/recommend", json={"user_id": "u9"})).json()["meta"][
            "served_by"
        ] == "cache"
        await client.post("/v1/admin/reload", json={"bundle_path": str(bundle_v2)}, headers=ADMIN)
        after = (await client.post("/v1/recommend", json={"user_id": "u9"})).json()["meta"]
        assert (after["served_by"], after["model_version"]) == ("online", "fake-v2")
