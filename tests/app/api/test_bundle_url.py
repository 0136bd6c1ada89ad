"""Bundles for replicas without a shared disk: a reload naming a packed bundle's URL and sha256, followed by
every process into its own directory, and a process started from ``TANDEM_BUNDLE_URL``."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.services.serving_bundle import load_bundle
from app.startup import start_bundle
from models.bundle.load import Bundle
from models.bundle.pack import pack_bundle
from tests.app.conftest import make_settings, running_app

pytestmark = pytest.mark.anyio
ADMIN = {"X-Admin-Key": "secret-admin"}


@pytest.fixture(scope="module")
def packed(baseline_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    """(file URL, sha256, model version) of the packed baseline bundle."""
    archive, digest = pack_bundle(baseline_bundle, tmp_path_factory.mktemp("packed") / "baseline.tar.gz")
    return archive.as_uri(), digest, Bundle.load(baseline_bundle).model_version


async def test_a_reload_by_url_fetches_checks_and_serves_the_bundle(
    encoder_bundle: Path, packed: tuple[str, str, str], tmp_path: Path
) -> None:
    url, digest, version = packed
    settings = make_settings(encoder_bundle, admin_key="secret-admin", var_dir=tmp_path / "var")
    async with running_app(settings, load_bundle) as (_, client):
        wrong = await client.post(
            "/v1/admin/reload", json={"bundle_url": url, "sha256": "0" * 64}, headers=ADMIN
        )
        assert wrong.status_code == 422 and wrong.json()["error"]["code"] == "reload_failed"
        assert "sha256" in wrong.json()["error"]["message"]
        half = await client.post("/v1/admin/reload", json={"bundle_url": url}, headers=ADMIN)
        assert half.status_code == 422 and half.json()["error"]["code"] == "validation_error"
        both = {"bundle_url": url, "sha256": digest, "bundle_path": str(encoder_bundle)}
        assert (await client.post("/v1/admin/reload", json=both, headers=ADMIN)).status_code == 422
        reloaded = await client.post(
            "/v1/admin/reload", json={"bundle_url": url, "sha256": digest}, headers=ADMIN
        )
        assert reloaded.status_code == 200, reloaded.text
        body = reloaded.json()
        assert body["model_version"] == version
        assert Path(body["bundle_path"]).parent == tmp_path / "var" / "fetched"
        answer = (await client.post("/v1/recommend", json={"user_id": "u1"})).json()
        assert answer["meta"]["model_version"] == version


@pytest.mark.redis
async def test_every_process_fetches_a_reloaded_url_into_its_own_directory(
    encoder_bundle: Path,
    packed: tuple[str, str, str],
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import app.main

    url, digest, version = packed

    def settings_of(name: str):  # type: ignore[no-untyped-def]
        return make_settings(
            encoder_bundle,
            redis_url=redis_url,
            key_prefix=key_prefix,
            admin_key="secret-admin",
            bundle_sync_interval_s=0.1,
            var_dir=tmp_path / name,
        )

    monkeypatch.setattr(app.main, "process_name", lambda role: f"{role}:one")
    async with running_app(settings_of("one"), load_bundle) as (_, first):
        monkeypatch.setattr(app.main, "process_name", lambda role: f"{role}:two")
        async with running_app(settings_of("two"), load_bundle) as (second_app, second):
            body = (
                await first.post(
                    "/v1/admin/reload", json={"bundle_url": url, "sha256": digest}, headers=ADMIN
                )
            ).json()
            assert body["converged"] is True
            assert body["processes"] == {"api:one": version, "api:two": version}
            # the second process fetched its own copy: no disk is shared
            followed = second_app.state.services.holder.path
            assert followed is not None and followed.parent == tmp_path / "two" / "fetched"
            answer = (await second.post("/v1/recommend", json={"user_id": "u1"})).json()
            assert answer["meta"]["model_version"] == version


def test_a_process_starts_from_a_configured_url(packed: tuple[str, str, str], tmp_path: Path) -> None:
    url, digest, version = packed
    settings = make_settings(None, bundle_url=url, bundle_sha256=digest, var_dir=tmp_path / "var")  # type: ignore[arg-type]
    path = start_bundle(settings)
    assert path.parent == tmp_path / "var" / "fetched"
    assert Bundle.load(path).model_version == version
    with pytest.raises(ValueError, match="go together"):
        make_settings(None, bundle_url=url, var_dir=tmp_path / "var")  # type: ignore[arg-type]
