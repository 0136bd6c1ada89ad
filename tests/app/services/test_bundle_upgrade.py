"""A background build reaches every process through the bundle registry: the API publishes it as a reload
(loaded here, recorded as the desired bundle), the status file only reports progress."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from app.services.bundle_sync import BundleSync
from app.services.serving_bundle import BundleHolder
from app.startup import open_stores
from models.bundle.upgrade import write_status
from tests.app.conftest import make_settings, running_app
from tests.app.fake_bundle import FakeBundle

pytestmark = pytest.mark.anyio
ADMIN = {"X-Admin-Key": "secret-admin"}


async def test_the_built_bundle_is_published_through_the_registry_when_the_build_says_ready(
    bundle_v1: Path, bundle_v2: Path, tmp_path: Path
) -> None:
    status = tmp_path / "upgrade.json"
    write_status(status, status="building", pid=1, log="build.log")
    settings = make_settings(bundle_v1, bundle_upgrade_file=status, admin_key="secret-admin")
    async with running_app(settings) as (app, client):
        ready = (await client.get("/readyz")).json()["detail"]
        assert ready["upgrade"] == "building" and ready["model_version"] == "fake-v1"
        assert ready["bundle_path"] == str(bundle_v1)
        assert (await client.get("/v1/admin/bundle")).status_code == 401  # admin key required
        registry = app.state.services.stores.registry
        assert await registry.desired_bundle() is None  # nothing published while building

        write_status(status, status="ready", bundle_path=str(bundle_v2))
        for _ in range(40):  # the publisher polls every 2 s
            live = (await client.get("/v1/admin/bundle", headers=ADMIN)).json()
            if live["model_version"] == "fake-v2":
                break
            await asyncio.sleep(0.25)
        assert live["model_version"] == "fake-v2" and live["upgrade"] == "live"
        assert live["bundle_path"] == str(bundle_v2)
        answer = (await client.post("/v1/recommend", json={"user_id": "u1"})).json()
        assert answer["meta"]["model_version"] == "fake-v2"
        desired = await registry.desired_bundle()  # what every other process follows
        assert desired is not None and (desired.path, desired.model_version) == (str(bundle_v2), "fake-v2")


async def test_without_a_background_build_readyz_says_none(bundle_v1: Path) -> None:
    async with running_app(make_settings(bundle_v1)) as (_, client):
        assert (await client.get("/readyz")).json()["detail"]["upgrade"] == "none"


async def test_a_build_never_replaces_a_bundle_reloaded_since_the_start(
    bundle_v1: Path, bundle_v2: Path, tmp_path: Path
) -> None:
    status = tmp_path / "upgrade.json"
    write_status(status, status="building", pid=1)
    built = FakeBundle.write(tmp_path / "built", "built")
    settings = make_settings(bundle_v1, bundle_upgrade_file=status, admin_key="secret-admin")
    async with running_app(settings) as (app, client):
        reloaded = await client.post("/v1/admin/reload", json={"bundle_path": str(bundle_v2)}, headers=ADMIN)
        assert reloaded.status_code == 200
        write_status(status, status="ready", bundle_path=str(built))
        upgrade = app.state.services.upgrade_task
        await asyncio.wait_for(upgrade, timeout=10)  # the publisher saw the build and stood down
        for _ in range(3):  # a few sync ticks later
            await asyncio.sleep(0.4)
            assert (await client.post("/v1/recommend", json={"user_id": "u1"})).json()["meta"][
                "model_version"
            ] == "fake-v2"


@pytest.mark.redis
async def test_a_worker_process_follows_the_published_build(
    bundle_v1: Path, bundle_v2: Path, tmp_path: Path, redis_url: str, key_prefix: str
) -> None:
    """The bug the one channel fixes: a background build reached the API processes (each followed the
    status file) but never ``tandem worker``, which kept computing vectors with the start bundle."""
    status = tmp_path / "upgrade.json"
    write_status(status, status="building", pid=1)
    settings = make_settings(
        bundle_v1, redis_url=redis_url, key_prefix=key_prefix, bundle_upgrade_file=status
    )
    worker_holder = BundleHolder(FakeBundle.load)
    await worker_holder.load(bundle_v1)
    worker_stores = open_stores(settings)
    worker_sync = BundleSync(worker_stores.registry, worker_holder, "worker:test")  # as in tandem worker
    try:
        async with running_app(settings):
            write_status(status, status="ready", bundle_path=str(bundle_v2))
            for _ in range(40):
                await worker_sync.tick()
                if worker_holder.current.model_version == "fake-v2":
                    break
                await asyncio.sleep(0.25)
            assert worker_holder.current.model_version == "fake-v2"
            assert worker_holder.path == bundle_v2
    finally:
        await worker_stores.connection.close()
