from dataclasses import replace
from pathlib import Path

import pytest

import models.bundle.default as default
from models.bundle.default import ensure_default_bundle, latest_bundle
from models.bundle.format import Manifest
from models.bundle.load import Bundle
from models.bundle.replay import replay_bundle
from models.data.schema import FIRST_REAL_ID, Dataset
from models.evaluate.ranker_report import trained_ranker_rows
from models.recipe.periods import pipeline_periods
from tests.models.bundle.conftest import TINY_RECIPE


@pytest.fixture(scope="module")
def default_bundle(dataset: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    settings = replace(TINY_RECIPE, ranker_events=4)
    return ensure_default_bundle(
        root=tmp_path_factory.mktemp("default"), dataset=dataset, progress=False, settings=settings
    )


def test_a_second_call_reuses_the_baseline_bundle(dataset: Dataset, tmp_path: Path) -> None:
    first = ensure_default_bundle(root=tmp_path, dataset=dataset, progress=False, stages=())
    stamp = (first / "manifest.json").stat().st_mtime_ns
    assert ensure_default_bundle(root=tmp_path, dataset=dataset, progress=False, stages=()) == first
    assert (first / "manifest.json").stat().st_mtime_ns == stamp  # not rebuilt
    assert latest_bundle(tmp_path) == first and latest_bundle(tmp_path, "another") is None
    manifest = Manifest.read(first)
    assert manifest.recipe is None and set(manifest.training["step_seconds"]) == {"prepare data", "train"}
    assert first.name.endswith("-baseline")
    assert (
        default.default_bundle_if_built(root=tmp_path, dataset=dataset) is None
    )  # the full one is not built


def test_an_incomplete_bundle_is_rebuilt(dataset: Dataset, tmp_path: Path) -> None:
    path = ensure_default_bundle(root=tmp_path, dataset=dataset, progress=False, stages=())
    (path / "manifest.json").write_text("{broken")
    assert ensure_default_bundle(root=tmp_path, dataset=dataset, progress=False, stages=()) == path
    assert Bundle.load(path).popularity[FIRST_REAL_ID:].sum() > 0


def test_replaying_the_default_bundle_from_disk_gives_its_manifests_offline_metrics(
    dataset: Dataset, default_bundle: Path
) -> None:
    """What the manifest says the bundle scored is what the bundle on disk scores: the same test requests,
    cut by the manifest's own protocol, answered by the pipeline loaded from the directory."""
    bundle = Bundle.load(default_bundle)
    manifest = bundle.manifest
    assert manifest.recipe == default.RECIPE and manifest.serving.protocol == "next-session"
    periods = pipeline_periods(
        dataset, str(manifest.serving.protocol), manifest.serving.ranker_events, manifest.serving.exclude_seen
    )
    replayed = replay_bundle(bundle, periods.test)
    kept = manifest.serving.ranker_kind
    assert kept is not None and f"ranker_{kept}" in replayed.metrics
    # the rankers trained but not shipped (and the GBDT's feature ablations, report rows only) are the only
    # rows the disk cannot give again
    offline = manifest.offline["test"]
    not_shipped = {r for r in trained_ranker_rows(offline) if r != f"ranker_{kept}"}
    not_shipped |= {row for row in offline if row.startswith("gbdt_")}
    assert "ranker_gbdt" in offline and "ranker_gbdt_no_side" in offline  # both feature sets offered
    assert set(replayed.metrics) == set(manifest.offline["test"]) - not_shipped
    for row, metrics in replayed.metrics.items():
        assert metrics == pytest.approx(manifest.offline["test"][row], abs=1e-9), row


def test_the_full_default_bundle_is_found_once_built(dataset: Dataset, default_bundle: Path) -> None:
    root = default_bundle.parent.parent
    assert default.default_bundle_if_built(root=root, dataset=dataset) == default_bundle
    assert default_bundle.name.endswith("-pipeline")
    settings = replace(TINY_RECIPE, ranker_events=4)
    assert (
        ensure_default_bundle(root=root, dataset=dataset, progress=False, settings=settings) == default_bundle
    )
