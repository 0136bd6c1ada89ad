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


def load_stub_ranker(path: Path, **options: Any) -> np.ndarray:
    """Stands in for models.ranker.serving.load_ranker (same call: a path and loading options)."""
    return np.load(path)


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
    monkeypatch.setattr("models.bundle.RANKER_LOADER", "tests.models.test_pipeline:load_stub_ranker")
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


def test_default_bundle_serves_the_replayed_pipeline(dataset: Dataset, tmp_path: Path, monkeypatch) -> None:
    from models.candidates.from_bundle import bundle_sources, serving_pipeline
    from models.candidates.sources import CandidateRequest
    from models.inference import RequestContext

    tiny = {
        "encoder_preset": "tiny",
        "ranker_preset": "tiny",
        "encoder_minutes": 0.2,
        "ranker_epochs": 1,
        "ranker_min_steps": 0,
    }
    monkeypatch.setattr(pipeline, "QUICK_PIPELINE", {**tiny, "threads": 1, "progress": False, "total": 50})
    path = ensure_default_bundle(root=tmp_path, dataset=dataset, progress=False)
    loaded = Bundle.load(path)
    serving = loaded.manifest["config"]["serving"]
    assert serving["protocol"] == "next-session" and set(serving["offline"]["test"]) >= {"merged", "pipeline"}
    assert loaded.encoder is not None and loaded.ranker is not None
    assert loaded.ranker.candidate_sources == tuple(serving["merge"]["sources"])
    served = serving_pipeline(
        serving,
        bundle_sources(
            loaded.index,
            loaded.cooccurrence.scorer,
            loaded.popularity,
            loaded.catalogue.category,
            loaded.cooccurrence.transitions,
        ),
        loaded.ranker,
        50,
    )
    assert served.use_ranker == serving["ranker_served"]
    assert served.generator.config.weights == tuple(serving["merge"]["weights"])
    assert "category" in serving["merge"]["sources"]  # the catalogue's categories feed a source
    _, history = next(loaded.recent_histories())
    context = RequestContext(timestamp=int(history.timestamp[-1]) + 1)
    vector = loaded.encoder.encode([history], [context])[0]
    answer = served.recommend(CandidateRequest(history, context, vector))
    assert len(answer.candidates) == 50 and len(set(answer.candidates.items.tolist())) == 50


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
    monkeypatch.setattr("models.bundle.RANKER_LOADER", "tests.models.test_pipeline:load_stub_ranker")
    assert pipeline.default_bundle_if_built(root=tmp_path, dataset=dataset) is None
    baseline = ensure_default_bundle(root=tmp_path, dataset=dataset, progress=False, stages=())
    assert trained == [] and baseline.name.endswith("-baseline")
    assert pipeline.default_bundle_if_built(root=tmp_path, dataset=dataset) is None  # the full one is not
    full = ensure_default_bundle(root=tmp_path, dataset=dataset, progress=False)
    assert trained == ["ranker"] and full != baseline
    assert pipeline.default_bundle_if_built(root=tmp_path, dataset=dataset) == full
