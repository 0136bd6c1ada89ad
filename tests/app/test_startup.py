"""Start-up only loads: no training path is reachable from the API's lifespan (nor from ``tandem
worker``, tests/cli/test_worker.py); ``tandem serve`` starts the full build in its own process."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from app.services.serving_bundle import load_bundle
from app.startup import check_index_backend, serve_bundle, start_bundle
from models.bundle.load import Bundle
from models.bundle.upgrade import write_status
from models.data.loaders.synthetic import SyntheticConfig, generate_synthetic
from models.data.schema import Dataset
from models.index.milvus import MilvusUnavailable, collection_name
from tests.app.conftest import make_settings, running_app

pytestmark = pytest.mark.anyio


def forbid_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every way to train, or to start the process that trains, raises."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("start-up reached a training path")

    monkeypatch.setattr("models.recipe.train.train_pipeline", refuse)
    monkeypatch.setattr("models.bundle.default.train_default", refuse)
    monkeypatch.setattr("models.bundle.upgrade.start_background_build", refuse)


def tiny_default_data(monkeypatch: pytest.MonkeyPatch) -> Dataset:
    """The default dataset, made tiny (the synthetic generator's default is 100,000 events)."""
    config = SyntheticConfig(num_users=40, num_items=120, num_events=1500, num_clusters=6, seed=5)
    dataset = generate_synthetic(config)
    monkeypatch.setattr("models.data.datasets.default_dataset", lambda *args, **kwargs: dataset)
    return dataset


async def test_the_lifespan_with_nothing_built_serves_the_baseline_without_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forbid_training(monkeypatch)
    tiny_default_data(monkeypatch)
    settings = make_settings(tmp_path / "unused", var_dir=tmp_path / "var", data_dir=tmp_path / "no-data")
    settings = settings.model_copy(update={"bundle_path": None})
    async with running_app(settings, bundle_loader=load_bundle) as (_, client):
        ready = (await client.get("/readyz")).json()["detail"]
        assert ready["serving_path"].startswith("baseline:") and ready["upgrade"] == "none"
        answer = await client.post("/v1/recommend", json={"user_id": "anyone", "k": 5})
        assert answer.status_code == 200 and len(answer.json()["items"]) == 5
    built = sorted(path.name for path in (tmp_path / "var" / "bundles").iterdir() if path.is_dir())
    assert len(built) == 1 and built[0].endswith("-baseline")  # the baseline only, nothing trained


def test_start_bundle_prefers_the_configured_then_the_full_then_the_baseline_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forbid_training(monkeypatch)
    configured = make_settings(tmp_path / "configured")
    assert start_bundle(configured) == tmp_path / "configured"
    built = {"full": tmp_path / "full", "baseline": tmp_path / "baseline"}

    def if_built(*args: object, stages: tuple[str, ...] | None = None, **kwargs: object) -> Path | None:
        return built.get("baseline" if stages == () else "full")

    monkeypatch.setattr("models.bundle.default.default_bundle_if_built", if_built)
    default = configured.model_copy(update={"bundle_path": None})
    assert start_bundle(default) == tmp_path / "full"
    del built["full"]
    assert start_bundle(default) == tmp_path / "baseline"


def test_serve_starts_the_full_build_in_its_own_process_and_later_starts_reuse_it(
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
    settings = make_settings(tmp_path / "unused", var_dir=tmp_path).model_copy(update={"bundle_path": None})
    assert serve_bundle(settings) == (tmp_path / "baseline", tmp_path / "upgrade.json")
    assert built == [()] and len(started) == 1  # baseline only in this process, the rest in the background

    running = tmp_path / "bundles" / "upgrade.json"  # a build from an earlier start is still going
    write_status(running, status="building", pid=os.getpid())
    assert serve_bundle(settings) == (tmp_path / "baseline", running)
    assert len(started) == 1

    monkeypatch.setattr("models.bundle.default.default_bundle_if_built", lambda *a, **k: tmp_path / "full")
    assert serve_bundle(settings) == (tmp_path / "full", None)
    assert len(built) == 2 and len(started) == 1


def test_the_milvus_backend_without_pymilvus_says_which_extra_naming_uri_and_collection(
    encoder_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pymilvus", None)  # import pymilvus raises ImportError
    uri = "http://milvus.internal:19530"
    check_index_backend(make_settings(encoder_bundle), encoder_bundle)  # faiss: nothing to check
    settings = make_settings(encoder_bundle, index_backend="milvus", milvus_uri=uri)
    with pytest.raises(MilvusUnavailable) as caught:
        check_index_backend(settings, encoder_bundle)
    message = str(caught.value)
    name = collection_name(settings.key_prefix, Bundle.load(encoder_bundle).index_version)
    assert "pip install -e '.[scale]'" in message and uri in message and name in message
    assert "\n" not in message
