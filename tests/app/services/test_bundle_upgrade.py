"""Following a background bundle build: readyz and the admin route say what is live, the swap happens."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from app.startup import first_bundle
from models.bundle.upgrade import write_status
from tests.app.conftest import make_settings, running_app

pytestmark = pytest.mark.anyio
ADMIN = {"X-Admin-Key": "secret-admin"}


async def test_the_full_bundle_is_loaded_when_the_build_says_ready(
    bundle_v1: Path, bundle_v2: Path, tmp_path: Path
) -> None:
    status = tmp_path / "upgrade.json"
    write_status(status, status="building", pid=1, log="build.log")
    settings = make_settings(bundle_v1, bundle_upgrade_file=status, admin_key="secret-admin")
    async with running_app(settings) as (_, client):
        ready = (await client.get("/readyz")).json()["detail"]
        assert ready["upgrade"] == "building" and ready["model_version"] == "fake-v1"
        assert ready["bundle_path"] == str(bundle_v1)
        assert (await client.get("/v1/admin/bundle")).status_code == 401  # admin key required

        write_status(status, status="ready", bundle_path=str(bundle_v2))
        for _ in range(40):  # the lifespan's follower polls every 2 s
            live = (await client.get("/v1/admin/bundle", headers=ADMIN)).json()
            if live["model_version"] == "fake-v2":
                break
            await asyncio.sleep(0.25)
        assert live["model_version"] == "fake-v2" and live["upgrade"] == "live"
        assert live["bundle_path"] == str(bundle_v2)
        answer = (await client.post("/v1/recommend", json={"user_id": "u1"})).json()
        assert answer["meta"]["model_version"] == "fake-v2"


async def test_without_a_background_build_readyz_says_none(bundle_v1: Path) -> None:
    async with running_app(make_settings(bundle_v1)) as (_, client):
        assert (await client.get("/readyz")).json()["detail"]["upgrade"] == "none"


def test_first_start_answers_from_the_baseline_and_later_starts_reuse_the_full_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[tuple[str, ...] | None] = []
    started: list[Path] = []

    def ensure(data_dir: object, root: Path, stages: tuple[str, ...] | None = None, **_: object) -> Path:
        built.append(stages)
        return tmp_path / "baseline"

    def background(data_dir: object, root: object) -> Path:
        started.append(tmp_path / "upgrade.json")
        return started[-1]

    monkeypatch.setattr("models.bundle.default.ensure_default_bundle", ensure)
    monkeypatch.setattr("models.bundle.upgrade.start_background_build", background)
    monkeypatch.setattr("models.bundle.default.default_bundle_if_built", lambda *a, **k: None)
    settings = make_settings(tmp_path / "unused", var_dir=tmp_path)
    assert first_bundle(settings) == (tmp_path / "baseline", tmp_path / "upgrade.json")
    assert built == [()] and len(started) == 1  # baseline only in this process, the rest in the background

    running = tmp_path / "bundles" / "upgrade.json"  # a build from an earlier start is still going
    write_status(running, status="building", pid=os.getpid())
    assert first_bundle(settings) == (tmp_path / "baseline", running)
    assert len(started) == 1

    monkeypatch.setattr("models.bundle.default.default_bundle_if_built", lambda *a, **k: tmp_path / "full")
    assert first_bundle(settings) == (tmp_path / "full", None)
    assert len(built) == 2 and len(started) == 1
