from pathlib import Path
from typing import Any

import numpy as np
import pytest

import models.pipeline as pipeline
from models.bundle import Bundle
from models.data.loaders.synthetic import SyntheticConfig, generate_synthetic
from models.data.schema import FIRST_REAL_ID, Dataset
from models.pipeline import ensure_default_bundle, latest_bundle

TINY = SyntheticConfig(num_users=50, num_items=200, num_events=3_000, num_clusters=6, seed=7)


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return generate_synthetic(TINY)


def test_second_call_reuses_the_bundle(dataset: Dataset, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(pipeline, "find_trainer", lambda stage: None)  # baseline-only, whatever is installed
    first = ensure_default_bundle(root=tmp_path, dataset=dataset, progress=False)
    stamp = (first / "manifest.json").stat().st_mtime_ns
    second = ensure_default_bundle(root=tmp_path, dataset=dataset, progress=False)
    assert second == first
    assert (first / "manifest.json").stat().st_mtime_ns == stamp  # not rebuilt
    assert latest_bundle(tmp_path) == first
    loaded = Bundle.load(first)
    assert loaded.manifest["config"]["stages"] == []
    assert set(loaded.manifest["config"]["step_seconds"]) == {"prepare data", "train encoder", "train ranker"}
    assert loaded.manifest["build_seconds"] > 0


def test_new_data_or_new_stage_builds_a_new_bundle(dataset: Dataset, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(pipeline, "find_trainer", lambda stage: None)
    baseline = ensure_default_bundle(root=tmp_path, dataset=dataset, progress=False)
    other = generate_synthetic(SyntheticConfig(**{**vars(TINY), "seed": 8}))
    assert ensure_default_bundle(root=tmp_path, dataset=other, progress=False) != baseline

    calls: list[dict[str, Any]] = []

    def fake_ranker(data: Dataset, out_dir: Path, **kwargs: Any) -> tuple[Path, dict[str, Any]]:
        calls.append(kwargs)
        out_dir.mkdir(parents=True)
        np.save(out_dir / "ranker.npy", np.zeros(3))
        return out_dir / "ranker.npy", {"AUC": 0.5}

    monkeypatch.setattr(pipeline, "find_trainer", lambda stage: fake_ranker if stage == "ranker" else None)
    monkeypatch.setattr("models.bundle.RANKER_LOADER", "numpy:load")
    with_ranker = ensure_default_bundle(root=tmp_path, dataset=dataset, progress=False)
    assert with_ranker != baseline and calls == [{"encoder_path": None}]
    loaded = Bundle.load(with_ranker)
    assert loaded.manifest["serving_path"].endswith("+ranker")
    assert loaded.manifest["metrics"]["ranker"] == {"AUC": 0.5}
    assert not (tmp_path / "work" / with_ranker.name).exists()  # training scratch removed
    assert ensure_default_bundle(root=tmp_path, dataset=dataset, progress=False) == with_ranker
    assert len(calls) == 1


def test_incomplete_bundle_is_rebuilt(dataset: Dataset, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(pipeline, "find_trainer", lambda stage: None)
    path = ensure_default_bundle(root=tmp_path, dataset=dataset, progress=False)
    (path / "manifest.json").write_text("{broken")
    rebuilt = ensure_default_bundle(root=tmp_path, dataset=dataset, progress=False)
    assert rebuilt == path
    assert Bundle.load(rebuilt).popularity[FIRST_REAL_ID:].sum() > 0


def test_baseline_stages_skip_training_and_the_full_bundle_is_found_once_built(
    dataset: Dataset, tmp_path: Path, monkeypatch
) -> None:
    trained: list[str] = []

    def fake_trainer(stage: str) -> Any:
        def train(data: Dataset, out_dir: Path, **_: Any) -> tuple[Path, dict[str, Any]]:
            trained.append(stage)
            out_dir.mkdir(parents=True, exist_ok=True)
            np.save(out_dir / "ranker.npy", np.zeros(1))
            return out_dir / "ranker.npy", {}

        return train if stage == "ranker" else None

    monkeypatch.setattr(pipeline, "find_trainer", fake_trainer)
    monkeypatch.setattr("models.bundle.RANKER_LOADER", "numpy:load")
    assert pipeline.default_bundle_if_built(root=tmp_path, dataset=dataset) is None
    baseline = ensure_default_bundle(root=tmp_path, dataset=dataset, progress=False, stages=())
    assert trained == [] and baseline.name.endswith("-baseline")
    assert pipeline.default_bundle_if_built(root=tmp_path, dataset=dataset) is None  # the full one is not
    full = ensure_default_bundle(root=tmp_path, dataset=dataset, progress=False)
    assert trained == ["ranker"] and full != baseline
    assert pipeline.default_bundle_if_built(root=tmp_path, dataset=dataset) == full
