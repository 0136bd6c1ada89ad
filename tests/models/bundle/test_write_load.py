import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from models.bundle.format import FORMAT_VERSION, BundleIntegrityError, Manifest, file_hashes
from models.bundle.load import Bundle, ServableBundle
from models.bundle.write import recent_events, sources_only, write_atomically, write_bundle
from models.data.schema import FIRST_REAL_ID, Dataset
from models.recipe.lists import candidate_requests
from models.recipe.periods import PipelinePeriods
from models.recipe.trained import TrainedPipeline


def test_recent_events_keeps_each_users_last_events(dataset: Dataset) -> None:
    recent = recent_events(dataset.events, dataset.num_users, 5)
    offsets = dataset.events.user_offsets(dataset.num_users)
    for user in (FIRST_REAL_ID, FIRST_REAL_ID + 7):
        expected = dataset.events.item[max(offsets[user], offsets[user + 1] - 5) : offsets[user + 1]]
        np.testing.assert_array_equal(recent["item"][recent["user"] == user], expected)


def test_the_loaded_bundle_serves_exactly_what_was_trained(
    trained: TrainedPipeline, trained_bundle: Path, periods: PipelinePeriods
) -> None:
    """No refit, no reload: every source, the encoder's vectors, the index and the merge come back as
    fitted, so the served lists from disk equal the in-memory pipeline's for every test request."""
    bundle = Bundle.load(trained_bundle)
    assert isinstance(bundle, ServableBundle)
    assert set(bundle.sources) == set(trained.sources)
    assert bundle.manifest.serving.merge == trained.merge.to_dict()
    assert bundle.encoder is not None and trained.encoder is not None
    task = periods.test
    np.testing.assert_array_equal(
        bundle.encoder.encode(task.histories, task.contexts),
        trained.encoder.encode(task.histories, task.contexts),
    )
    vectors = trained.encoder.encode(task.histories, task.contexts)
    requests = candidate_requests(task, vectors)
    on_disk, in_memory = bundle.served_pipeline(40), trained.served_pipeline(40)
    for request in requests:
        from_disk, fitted = on_disk.recommend(request), in_memory.recommend(request)
        np.testing.assert_array_equal(from_disk.candidates.items, fitted.candidates.items)
        np.testing.assert_allclose(from_disk.scores, fitted.scores, rtol=1e-6)
    # every fitted source on its own, including the ones the merge does not use
    for name, source in trained.sources.items():
        loaded = bundle.sources[name]
        for request in requests[:10]:
            np.testing.assert_array_equal(
                loaded.candidates(request, 20).items, source.candidates(request, 20).items
            )


@pytest.mark.parametrize("kind", ["gbdt", "onepiece"])
def test_either_ranker_served_from_disk_ranks_as_trained(
    kind: str,
    dataset: Dataset,
    trained: TrainedPipeline,
    periods: PipelinePeriods,
    tmp_path: Path,
) -> None:
    """Each kind written as the served ranker loads back (GBDT: model text and feature state; OnePiece:
    weights) and orders every test request's candidates exactly as in memory."""
    ranker = trained.rankers()[kind]
    pipeline = replace(trained, ranker=ranker, ranker_kind=kind, ranker_served=True, other_rankers={})
    path = write_bundle(pipeline, dataset, tmp_path / kind)
    bundle = Bundle.load(path)
    serving = bundle.manifest.serving
    assert serving.ranker_served and serving.ranker_kind == kind
    assert bundle.manifest.served_path == "session_encoder+ranker"
    assert bundle.ranker is not None and bundle.ranker.version == ranker.version
    assert trained.encoder is not None
    task = periods.test
    requests = candidate_requests(task, trained.encoder.encode(task.histories, task.contexts))
    on_disk, in_memory = bundle.served_pipeline(40), pipeline.served_pipeline(40)
    ranked = 0
    for request in requests:
        from_disk, fitted = on_disk.recommend(request), in_memory.recommend(request)
        np.testing.assert_array_equal(from_disk.items, fitted.items)
        np.testing.assert_allclose(from_disk.scores, fitted.scores, rtol=1e-5, atol=1e-6)
        ranked += from_disk.ranked
    assert ranked > 0


def test_the_manifest_says_what_is_served(trained: TrainedPipeline, trained_bundle: Path) -> None:
    manifest = Manifest.read(trained_bundle)
    assert manifest.format_version == FORMAT_VERSION
    assert manifest.serving.ranker_served == trained.ranker_served
    assert manifest.serving.ranker_kind == trained.ranker_kind in ("gbdt", "onepiece")
    assert manifest.serving.ranker_gain == trained.valid["gate_ratio"]
    # the ranker is named only where the gate served it
    assert manifest.served_path == ("session_encoder+ranker" if trained.ranker_served else "session_encoder")
    assert manifest.files["ranker"] is not None  # a refused ranker is still shipped (and its hash checked)
    assert {"pipeline", "merged"} <= set(manifest.offline["test"])
    assert manifest.training["encoder"]["stopped_by"] in ("epochs", "patience")


def test_the_baseline_bundle_has_sources_only_and_a_content_version(dataset: Dataset, tmp_path: Path) -> None:
    first = write_bundle(sources_only(dataset), dataset, tmp_path / "a")
    second = write_bundle(sources_only(dataset), dataset, tmp_path / "b")
    bundle = Bundle.load(first)
    assert bundle.encoder is None and bundle.index is None and bundle.ranker is None
    assert bundle.manifest.served_path.startswith("baseline:") and "ann" not in bundle.sources
    assert bundle.model_version == Bundle.load(second).model_version  # same data, same fit, same version
    popular = bundle.sources["popular"]
    np.testing.assert_array_equal(bundle.popularity, popular.scores)  # type: ignore[attr-defined]


def test_write_is_atomic_and_refuses_to_clobber(dataset: Dataset, tmp_path: Path) -> None:
    pipeline = sources_only(dataset)
    path = write_bundle(pipeline, dataset, tmp_path / "bundle")
    with pytest.raises(FileExistsError):
        write_bundle(pipeline, dataset, path)
    broken = sources_only(dataset)
    broken.sources["odd"] = object()  # type: ignore[assignment]  # a source that cannot be saved
    with pytest.raises(TypeError, match="odd"):
        write_bundle(broken, dataset, tmp_path / "never")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # no half-written or temp directory


def test_bad_bundle_paths_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="manifest"):
        Bundle.load(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"manifest\.json:1"):
        Bundle.load(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": 2}))
    with pytest.raises(BundleIntegrityError, match="rebuild it"):
        Bundle.load(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": FORMAT_VERSION}))
    with pytest.raises(BundleIntegrityError, match="model_version"):
        Bundle.load(tmp_path)


def _overwrite_middle(file: Path, size: int = 64) -> None:
    """Same length, different bytes: what a bad copy or a tampering would leave."""
    data = bytearray(file.read_bytes())
    middle = len(data) // 2
    data[middle : middle + size] = bytes(255 - b for b in data[middle : middle + size])
    file.write_bytes(bytes(data))


def _copy(bundle: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(bundle, tmp_path / "copy"))


def test_the_manifest_lists_the_sha256_of_every_file(trained_bundle: Path) -> None:
    manifest = Manifest.read(trained_bundle)
    on_disk = sorted(
        p.relative_to(trained_bundle).as_posix()
        for p in trained_bundle.rglob("*")
        if p.is_file() and p.name != "manifest.json"
    )
    assert sorted(manifest.file_sha256) == on_disk


@pytest.mark.parametrize(
    "relative",
    [
        "catalogue.parquet",
        "users.parquet",
        "recent_events.parquet",
        "sources/cooccurrence.npz",
        "sources/sources.json",
        "encoder/encoder.pt",
        "ranker/ranker.pt",
        "item_vectors.npy",
    ],
)
@pytest.mark.parametrize("damage", ["changed", "missing"])
def test_a_damaged_file_is_refused_naming_it(
    trained_bundle: Path, tmp_path: Path, relative: str, damage: str
) -> None:
    path = _copy(trained_bundle, tmp_path)
    target = path / relative
    if damage == "changed":
        _overwrite_middle(target)
    else:
        target.unlink()
    with pytest.raises(BundleIntegrityError, match=relative.replace(".", r"\.")):
        Bundle.load(path)


def test_an_unlisted_file_is_refused(trained_bundle: Path, tmp_path: Path) -> None:
    path = _copy(trained_bundle, tmp_path)
    (path / "sources" / "extra.npz").write_bytes(b"x")
    with pytest.raises(BundleIntegrityError, match=r"sources/extra\.npz: not listed"):
        Bundle.load(path)


@pytest.mark.parametrize("checkpoint", ["encoder/encoder.pt", "ranker/ranker.pt"])
def test_a_changed_checkpoint_is_refused_even_with_a_rewritten_file_list(
    trained_bundle: Path, tmp_path: Path, checkpoint: str
) -> None:
    path = _copy(trained_bundle, tmp_path)
    _overwrite_middle(path / checkpoint)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["file_sha256"] = file_hashes(path)  # the list agrees with the new bytes...
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleIntegrityError, match=checkpoint.replace(".", r"\.")):
        Bundle.load(path)  # ...but the checkpoint hash behind the model version does not


def test_a_built_bundle_is_readable_by_other_users(tmp_path: Path) -> None:
    out = write_atomically(tmp_path / "b", lambda d: (d / "x.txt").write_text("x"), overwrite=False)
    assert out.stat().st_mode & 0o755 == 0o755
