import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import models.bundle as bundle_module
from models.baselines.cooccurrence import CooccurrenceConfig, CooccurrenceScorer
from models.baselines.popularity import PopularityConfig, PopularityScorer
from models.bundle import (
    HISTORY_LENGTH,
    Bundle,
    build_bundle,
    data_fingerprint,
    load_cooccurrence,
    recent_events,
)
from models.candidates.from_bundle import bundle_sources
from models.candidates.generator import fit_sources
from models.candidates.sources import CandidateRequest
from models.data.loaders.synthetic import SyntheticConfig, generate_synthetic
from models.data.schema import FIRST_REAL_ID, UNKNOWN_ID, Dataset
from models.index import IndexBuildConfig
from models.inference import RequestContext, UserHistory
from tests.models.candidates.test_sources import history

TINY = SyntheticConfig(num_users=60, num_items=250, num_events=4_000, num_clusters=8, seed=5)
INDEX_CONFIG = IndexBuildConfig(recall_k=20, sample_queries=30, latency_queries=3)


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return generate_synthetic(TINY)


class MeanVectorEncoder:
    """Stand-in encoder with the UserEncoder protocol: user vector = mean of history item vectors."""

    def __init__(self, item_vectors: np.ndarray, version: str):
        self._items = item_vectors
        self.dim = item_vectors.shape[1]
        self.version = version

    def item_vectors(self) -> np.ndarray:
        return self._items

    def encode(self, histories: list[UserHistory], contexts: list[RequestContext]) -> np.ndarray:
        out = np.stack([self._items[h.item].mean(axis=0) for h in histories])
        return (out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def load_mean_vector_encoder(path: Path) -> MeanVectorEncoder:
    return MeanVectorEncoder(np.load(path), version=path.name)


def test_recent_events_keeps_each_users_last_events(dataset: Dataset) -> None:
    recent = recent_events(dataset.events, dataset.num_users, 5)
    offsets = dataset.events.user_offsets(dataset.num_users)
    for user in (FIRST_REAL_ID, FIRST_REAL_ID + 7):
        expected = dataset.events.item[max(offsets[user], offsets[user + 1] - 5) : offsets[user + 1]]
        np.testing.assert_array_equal(recent["item"][recent["user"] == user], expected)


def test_baseline_only_round_trip(dataset: Dataset, tmp_path: Path) -> None:
    path = build_bundle(dataset, tmp_path / "bundle", metrics={"HR@10": 0.5}, config={"note": "test"})
    loaded = Bundle.load(path)
    assert loaded.encoder is None and loaded.ranker is None and loaded.index is None
    assert loaded.manifest["serving_path"] == "baseline:cooccurrence+popularity"
    assert loaded.manifest["data_fingerprint"] == data_fingerprint(dataset)
    assert loaded.manifest["metrics"]["HR@10"] == 0.5
    assert loaded.manifest["vocabularies"]["scene"] == dataset.manifest["vocabularies"]["scene"]
    assert loaded.catalogue.raw_id == dataset.catalogue.raw_id
    np.testing.assert_array_equal(loaded.catalogue.category, dataset.catalogue.category)
    raw_item = dataset.catalogue.raw_id[FIRST_REAL_ID + 3]
    assert loaded.item_index[raw_item] == FIRST_REAL_ID + 3
    assert loaded.user_index[dataset.user_raw_id[FIRST_REAL_ID]] == FIRST_REAL_ID
    assert loaded.popularity.shape == (dataset.num_items,)
    assert (loaded.popularity[:FIRST_REAL_ID] == 0).all() and loaded.popularity.max() > 0
    histories = dict(loaded.recent_histories())
    offsets = dataset.events.user_offsets(dataset.num_users)
    user = FIRST_REAL_ID + 1
    history = histories[dataset.user_raw_id[user]]
    start = max(offsets[user], offsets[user + 1] - HISTORY_LENGTH)
    np.testing.assert_array_equal(history.item, dataset.events.item[start : offsets[user + 1]])
    np.testing.assert_array_equal(history.timestamp, dataset.events.timestamp[start : offsets[user + 1]])
    assert len(histories) == len(np.unique(dataset.events.user))


def test_baselines_match_their_scorers(dataset: Dataset, tmp_path: Path) -> None:
    loaded = Bundle.load(build_bundle(dataset, tmp_path / "bundle"))
    last_time = int(dataset.events.timestamp.max()) + 1
    popular = PopularityScorer(dataset.events, dataset.num_items, dataset.num_scenes, PopularityConfig())
    expected_top = popular.top_k(last_time, UNKNOWN_ID, 10)
    np.testing.assert_array_equal(np.argsort(-loaded.popularity, kind="stable")[:10], expected_top)
    scorer = CooccurrenceScorer(dataset.events, dataset.num_items, CooccurrenceConfig())
    seeds = dataset.events.item[:4].astype(np.int64)
    assert loaded.cooccurrence is not None
    items, scores = loaded.cooccurrence.neighbours(seeds, 15)
    np.testing.assert_array_equal(items, scorer.top_k(seeds, 15))
    assert (items >= FIRST_REAL_ID).all() and (np.diff(scores) <= 0).all()


def test_the_successor_source_is_saved_and_served(dataset: Dataset, tmp_path: Path) -> None:
    loaded = Bundle.load(build_bundle(dataset, tmp_path / "bundle"))
    transitions = getattr(loaded.cooccurrence, "transitions", None)
    assert transitions is not None and transitions.name == "transitions"
    fitted = fit_sources(dataset.events, dataset.num_items, dataset.num_scenes)["transitions"]
    request = CandidateRequest(history(dataset.events.item[:6].tolist()), RequestContext(0))
    np.testing.assert_array_equal(
        transitions.candidates(request, 20).items, fitted.candidates(request, 20).items
    )
    scorer = loaded.cooccurrence.scorer
    names = [s.name for s in bundle_sources(None, scorer, loaded.popularity, None, transitions)]
    assert "transitions" in names and "cooccurrence" in names
    # a bundle built before the successor table still loads, without that source
    for name in ("transitions.npz", "transitions.json"):
        (tmp_path / "bundle" / "cooccurrence" / name).unlink()
    assert load_cooccurrence(tmp_path / "bundle" / "cooccurrence").transitions is None


def test_same_data_same_model_version(dataset: Dataset, tmp_path: Path) -> None:
    first = Bundle.load(build_bundle(dataset, tmp_path / "a"))
    second = Bundle.load(build_bundle(dataset, tmp_path / "b"))
    assert first.model_version == second.model_version
    other = generate_synthetic(SyntheticConfig(**{**vars(TINY), "seed": 6}))
    third = Bundle.load(build_bundle(other, tmp_path / "c"))
    assert third.model_version != first.model_version
    assert third.manifest["data_fingerprint"] != first.manifest["data_fingerprint"]


def test_write_is_atomic_and_refuses_to_clobber(dataset: Dataset, tmp_path: Path, monkeypatch) -> None:
    path = build_bundle(dataset, tmp_path / "bundle")
    with pytest.raises(FileExistsError):
        build_bundle(dataset, path)

    def broken(_: Dataset) -> tuple[np.ndarray, str]:
        raise RuntimeError("boom")

    monkeypatch.setattr(bundle_module, "popularity_scores", broken)
    with pytest.raises(RuntimeError, match="boom"):
        build_bundle(dataset, tmp_path / "never")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # no half-written or temp directory
    assert Bundle.load(path).manifest["format_version"] == bundle_module.FORMAT_VERSION


def test_bundle_with_encoder_builds_and_reloads_the_index(
    dataset: Dataset, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(bundle_module, "ENCODER_LOADER", f"{__name__}:load_mean_vector_encoder")
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((dataset.num_items, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors[:FIRST_REAL_ID] = 0
    checkpoint = tmp_path / "encoder.npy"
    np.save(checkpoint, vectors)
    path = build_bundle(dataset, tmp_path / "bundle", encoder_path=checkpoint, index_config=INDEX_CONFIG)
    loaded = Bundle.load(path)
    assert loaded.manifest["serving_path"] == "session_encoder"
    assert loaded.encoder is not None and loaded.index is not None
    assert loaded.index.version == loaded.manifest["index_version"]
    assert loaded.manifest["metrics"]["index"]["query_source"] == "encoder user vectors of sampled users"
    np.testing.assert_allclose(np.load(path / "item_vectors.npy"), vectors)
    query = loaded.encoder.encode([next(loaded.recent_histories())[1]], [RequestContext(timestamp=0)])
    items, _ = loaded.index.search(query, 5)
    np.testing.assert_array_equal(items[0], np.argsort(-(vectors @ query[0]))[:5])
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["files"]["encoder"] == "encoder/encoder.npy"
    assert manifest["model_version"] != Bundle.load(build_bundle(dataset, tmp_path / "base")).model_version


def test_bad_bundle_paths_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="manifest"):
        Bundle.load(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"manifest\.json:1"):
        Bundle.load(tmp_path)
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(ValueError, match="format_version"):
        Bundle.load(tmp_path)


def test_bundle_with_the_tiny_session_encoder(dataset: Dataset, tmp_path: Path) -> None:
    from models.encoder.serving import save_user_encoder
    from models.train.fit import fit_encoder
    from models.train.presets import preset

    model_config, train = preset("tiny", "session_encoder")
    result = fit_encoder(dataset, dataset.events, model_config, replace(train, epochs=1, threads=1))
    checkpoint = save_user_encoder(result.model, tmp_path / "encoder.pt", result.item_category)
    path = build_bundle(dataset, tmp_path / "bundle", encoder_path=checkpoint, index_config=INDEX_CONFIG)
    loaded = Bundle.load(path)
    assert loaded.manifest["serving_path"] == "session_encoder"
    assert loaded.encoder is not None and loaded.index is not None
    _, history = next(loaded.recent_histories())
    context = RequestContext(timestamp=int(history.timestamp[-1]) + 1)
    vector = loaded.encoder.encode([history], [context])
    assert vector.shape == (1, loaded.encoder.dim)
    items, _ = loaded.index.search(vector, 10, exclude=[set(history.item.tolist())])
    assert (items[0] >= FIRST_REAL_ID).all() and not set(items[0].tolist()) & set(history.item.tolist())
    # The reloaded encoder gives the same vectors as the trained one.
    np.testing.assert_allclose(loaded.encoder.item_vectors(), np.load(path / "item_vectors.npy"), atol=1e-6)


def _overwrite_middle(file: Path, size: int = 64) -> None:
    """Same length, different bytes: what a bad copy or a tampering would leave."""
    data = bytearray(file.read_bytes())
    middle = len(data) // 2
    data[middle : middle + size] = bytes(255 - b for b in data[middle : middle + size])
    file.write_bytes(bytes(data))


def test_manifest_lists_the_sha256_of_every_file(dataset: Dataset, tmp_path: Path) -> None:
    path = build_bundle(dataset, tmp_path / "bundle")
    manifest = json.loads((path / "manifest.json").read_text())
    on_disk = sorted(
        p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file() and p.name != "manifest.json"
    )
    assert sorted(manifest["file_sha256"]) == on_disk
    assert manifest["format_version"] == 2


@pytest.mark.parametrize("damage", ["changed", "truncated", "missing"])
def test_a_damaged_file_is_refused_naming_it(dataset: Dataset, tmp_path: Path, damage: str) -> None:
    path = build_bundle(dataset, tmp_path / "bundle")
    target = path / "cooccurrence" / "cooccurrence.npz"
    if damage == "changed":
        _overwrite_middle(target)
    elif damage == "truncated":
        target.write_bytes(target.read_bytes()[:100])
    else:
        target.unlink()
    with pytest.raises(bundle_module.BundleIntegrityError, match=r"cooccurrence/cooccurrence\.npz"):
        Bundle.load(path)


def test_a_changed_checkpoint_is_refused_even_with_a_rewritten_file_list(
    dataset: Dataset, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(bundle_module, "ENCODER_LOADER", f"{__name__}:load_mean_vector_encoder")
    vectors = np.random.default_rng(1).standard_normal((dataset.num_items, 8)).astype(np.float32)
    np.save(tmp_path / "encoder.npy", vectors)
    path = build_bundle(
        dataset, tmp_path / "bundle", encoder_path=tmp_path / "encoder.npy", index_config=INDEX_CONFIG
    )
    assert (
        Bundle.load(path).model_version == json.loads((path / "manifest.json").read_text())["model_version"]
    )
    _overwrite_middle(path / "encoder" / "encoder.npy")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["file_sha256"] = bundle_module.file_hashes(path)  # the list agrees with the new bytes...
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(bundle_module.BundleIntegrityError, match=r"encoder/encoder\.npy"):
        Bundle.load(path)  # ...but the checkpoint hash behind the model version does not


def test_a_format_1_bundle_without_file_hashes_still_loads(dataset: Dataset, tmp_path: Path) -> None:
    path = build_bundle(dataset, tmp_path / "bundle")
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["file_sha256"]
    manifest["format_version"] = 1
    (path / "manifest.json").write_text(json.dumps(manifest))
    assert Bundle.load(path).model_version == manifest["model_version"]
    manifest["format_version"] = 2
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(bundle_module.BundleIntegrityError, match="file_sha256"):
        Bundle.load(path)


def test_a_built_bundle_is_readable_by_other_users(tmp_path) -> None:
    from models.bundle import write_atomically

    out = write_atomically(tmp_path / "b", lambda d: (d / "x.txt").write_text("x"), overwrite=False)
    assert out.stat().st_mode & 0o755 == 0o755
