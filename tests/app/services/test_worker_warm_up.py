"""A starting worker pre-computes the vectors of the bundle's known users (embedded store, no Redis)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.app.conftest import make_settings, running_app

pytestmark = pytest.mark.anyio


async def test_known_users_are_served_from_the_cache_after_the_warm_up(bundle_v1: Path) -> None:
    async with running_app(make_settings(bundle_v1, warm_vectors=True)) as (app, client):
        worker = app.state.services.worker
        for _ in range(200):  # the warm-up runs in the background after start-up
            if worker.warmed is not None:
                break
            await asyncio.sleep(0.02)
        assert worker.warmed == len(app.state.services.holder.current.fallback_histories) > 0
        body = (await client.post("/v1/recommend", json={"user_id": "u1", "k": 5})).json()
        assert body["meta"]["served_by"] == "cache"
        guest = (await client.post("/v1/recommend", json={"user_id": "guest-7", "k": 5})).json()
        assert guest["meta"]["served_by"] != "cache"


async def test_without_the_warm_up_a_known_user_is_encoded_online(bundle_v1: Path) -> None:
    async with running_app(make_settings(bundle_v1)) as (app, client):
        body = (await client.post("/v1/recommend", json={"user_id": "u1", "k": 5})).json()
        assert body["meta"]["served_by"] == "online"
        assert app.state.services.worker.warmed is None


async def test_a_reloaded_bundle_is_warmed_again(bundle_v1: Path, bundle_v2: Path) -> None:
    settings = make_settings(bundle_v1, warm_vectors=True, admin_key="k")
    async with running_app(settings) as (app, client):
        worker = app.state.services.worker
        for _ in range(200):
            if worker.warmed is not None:
                break
            await asyncio.sleep(0.02)
        worker.warmed = None
        reload = await client.post(
            "/v1/admin/reload", json={"bundle_path": str(bundle_v2)}, headers={"X-Admin-Key": "k"}
        )
        assert reload.status_code == 200
        for _ in range(200):
            if worker.warmed is not None:
                break
            await asyncio.sleep(0.02)
        assert worker.warmed is not None and worker.warmed > 0
        body = (await client.post("/v1/recommend", json={"user_id": "u1", "k": 5})).json()
        assert (body["meta"]["served_by"], body["meta"]["model_version"]) == ("cache", "fake-v2")
