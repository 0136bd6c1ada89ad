"""/livez, /readyz (incl. draining), /metrics, /docs and POST /v1/admin/reload under concurrent load."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from dataclasses import replace
from pathlib import Path

import pytest

from app.services.user_vectors import wait_for_write_backs
from tests.app.conftest import make_settings, running_app
from tests.app.fake_bundle import FakeBundle

pytestmark = pytest.mark.anyio
ADMIN = {"X-Admin-Key": "secret-admin"}


async def test_health_metrics_and_docs(bundle_v1: Path) -> None:
    async with running_app(make_settings(bundle_v1)) as (app, client):
        assert (await client.get("/livez")).json()["status"] == "alive"
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        process = f"api:{socket.gethostname()}:{os.getpid()}"
        assert ready.json()["detail"] == {
            "store": "memory:ok",
            "model_version": "fake-v1",
            "index_version": "index-v1",
            "serving_path": "session_encoder+ranker",
            "pid": os.getpid(),
            "process": process,
            "processes": {process: "fake-v1"},
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


@pytest.mark.parametrize("damage", ["overwritten", "truncated"])
async def test_a_damaged_bundle_is_refused_with_the_request_id_and_counted(
    encoder_bundle: Path, tmp_path: Path, damage: str
) -> None:
    from app.services.serving_bundle import load_bundle

    broken = Path(shutil.copytree(encoder_bundle, tmp_path / "broken"))
    checkpoint = broken / "encoder" / "encoder.pt"
    data = checkpoint.read_bytes()
    if damage == "overwritten":
        checkpoint.write_bytes(data[:1000] + bytes(len(data) - 2000) + data[-1000:])
    else:
        checkpoint.write_bytes(data[: len(data) // 2])
    settings = make_settings(encoder_bundle, admin_key="secret-admin")
    async with running_app(settings, bundle_loader=load_bundle) as (_, client):
        good = (await client.post("/v1/recommend", json={"user_id": "u1"})).json()["meta"]["model_version"]
        refused = await client.post(
            "/v1/admin/reload", json={"bundle_path": str(broken)}, headers={**ADMIN, "X-Request-ID": "r-1"}
        )
        assert refused.status_code == 422
        error = refused.json()["error"]
        assert error["code"] == "reload_failed" and error["request_id"] == "r-1"
        assert "encoder.pt" in error["message"]
        after = await client.post("/v1/recommend", json={"user_id": "u1"})
        assert after.status_code == 200 and after.json()["meta"]["model_version"] == good
        metrics_text = (await client.get("/metrics")).text
        assert 'tandem_bundle_reloads_total{outcome="failed"}' in metrics_text


async def test_any_loader_failure_is_a_reload_failed_answer(bundle_v1: Path, bundle_v2: Path) -> None:
    def flaky_loader(path: Path) -> FakeBundle:
        if path == bundle_v2:
            raise RuntimeError("faiss: read error")  # not one of the expected error types
        return FakeBundle.load(path)

    async with running_app(make_settings(bundle_v1, admin_key="secret-admin"), flaky_loader) as (_, client):
        refused = await client.post("/v1/admin/reload", json={"bundle_path": str(bundle_v2)}, headers=ADMIN)
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "reload_failed"
        assert "faiss: read error" in refused.json()["error"]["message"]
        assert refused.json()["error"]["request_id"] == refused.headers["x-request-id"]


@pytest.mark.redis
async def test_a_reload_reaches_every_process_sharing_the_store(
    bundle_v1: Path, bundle_v2: Path, redis_url: str, key_prefix: str, monkeypatch
) -> None:
    import app.main

    settings = make_settings(
        bundle_v1,
        redis_url=redis_url,
        key_prefix=key_prefix,
        admin_key="secret-admin",
        bundle_sync_interval_s=0.1,
    )
    monkeypatch.setattr(app.main, "process_name", lambda role: f"{role}:one")
    async with running_app(settings) as (_, first):
        monkeypatch.setattr(app.main, "process_name", lambda role: f"{role}:two")
        async with running_app(settings) as (_, second):
            reloaded = await first.post(
                "/v1/admin/reload", json={"bundle_path": str(bundle_v2)}, headers=ADMIN
            )
            assert reloaded.status_code == 200
            body = reloaded.json()
            assert body["process"] == "api:one" and body["converged"] is True
            assert body["processes"] == {"api:one": "fake-v2", "api:two": "fake-v2"}
            answer = (await second.post("/v1/recommend", json={"user_id": "u1"})).json()
            assert answer["meta"]["model_version"] == "fake-v2"
            ready = (await second.get("/readyz")).json()["detail"]
            assert ready["process"] == "api:two" and ready["model_version"] == "fake-v2"
            monkeypatch.setattr(app.main, "process_name", lambda role: f"{role}:three")
            async with running_app(settings) as (_, late):  # started after the reload: follows it first
                answer = (await late.post("/v1/recommend", json={"user_id": "u1"})).json()
                assert answer["meta"]["model_version"] == "fake-v2"


async def test_admin_bundle_route_names_the_served_pipeline(bundle_v1: Path) -> None:
    async with running_app(make_settings(bundle_v1, admin_key="secret-admin")) as (_, client):
        assert (await client.get("/v1/admin/bundle")).status_code == 401
        info = (await client.get("/v1/admin/bundle", headers=ADMIN)).json()
        assert info["model_version"] == "fake-v1" and info["bundle_path"] == str(bundle_v1)
        # the fake bundle has an index and popularity, no co-occurrence, no stored merge: the default merge
        assert info["candidate_sources"] == ["ann", "popular"]
        assert info["ranker_served"] is True and info["allow_seen"] is False


async def test_a_shipped_but_refused_ranker_is_not_named_anywhere(tmp_path: Path) -> None:
    """A bundle that ships a ranker its gate refused (``ServingChoice.ranker_served`` False), built and
    loaded by the real code: /readyz, the admin route and the bundle metric say ``session_encoder``, and
    no request runs the ranker."""
    from app.services.serving_bundle import load_bundle
    from models.bundle.format import Manifest
    from tests.app.conftest import build_encoder_bundle

    bundle = build_encoder_bundle(tmp_path, refused_ranker=True)
    manifest = Manifest.read(bundle)
    assert manifest.files["ranker"] and not manifest.serving.ranker_served  # shipped, refused
    assert manifest.served_path == "session_encoder"
    settings = make_settings(bundle, admin_key="secret-admin")
    async with running_app(settings, bundle_loader=load_bundle) as (app, client):
        serving = app.state.services.holder.current
        assert serving.ranker is not None  # loaded with the bundle...

        def refuse(*args: object, **kwargs: object) -> None:
            raise AssertionError("the refused ranker ran")

        serving.ranker.score_batch = refuse  # ...never asked to score
        ready = (await client.get("/readyz")).json()["detail"]
        assert ready["serving_path"] == "session_encoder"
        info = (await client.get("/v1/admin/bundle", headers=ADMIN)).json()
        assert (info["serving_path"], info["ranker_served"]) == ("session_encoder", False)
        user = next(iter(serving.fallback_histories))
        answer = (await client.post("/v1/recommend", json={"user_id": user, "k": 5})).json()
        assert answer["warnings"] == [] and len(answer["items"]) == 5
        metrics_text = (await client.get("/metrics")).text
        assert f'model_version="{serving.model_version}",serving_path="session_encoder"}} 1.0' in metrics_text


async def test_a_manifest_naming_a_ranker_it_does_not_serve_is_reported_as_served(tmp_path: Path) -> None:
    """The served path is what runs: a manifest's ``+ranker`` is dropped where the ranker is not served."""
    refused = FakeBundle.write(tmp_path / "refused", "v1", ranker_served=False)
    async with running_app(make_settings(refused, admin_key="secret-admin")) as (app, client):
        assert (await client.get("/readyz")).json()["detail"]["serving_path"] == "session_encoder"
        info = (await client.get("/v1/admin/bundle", headers=ADMIN)).json()
        assert (info["serving_path"], info["ranker_served"]) == ("session_encoder", False)
        serving = app.state.services.holder.current
        inconsistent = FakeBundle(tmp_path, "v1", ranker_served=False)
        inconsistent.manifest = replace(inconsistent.manifest, served_path="x+ranker")
        from app.services.serving_bundle import ServingBundle

        assert ServingBundle(inconsistent).served_path == "x" and serving.served_path == "session_encoder"
