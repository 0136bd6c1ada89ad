from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from models.ranker.gbdt import GbdtConfig, GbdtRanker, train_gbdt

NAMES = ("noise_a", "signal", "noise_b", "penalty", "noise_c")
SMALL = GbdtConfig(
    learning_rate=0.1,
    num_leaves=7,
    min_data_in_leaf=5,
    max_rounds=150,
    early_stopping_rounds=20,
    num_threads=1,
)


@dataclass
class Groups:
    features: np.ndarray
    label: np.ndarray
    group: np.ndarray


def planted(num_groups: int, seed: int, size: int = 20) -> Groups:
    """In every group of ``size`` rows the relevant one maximises signal - penalty; the rest is noise."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(num_groups * size, len(NAMES))).astype(np.float32)
    utility = (features[:, 1] - features[:, 3]).reshape(num_groups, size)
    label = np.zeros((num_groups, size), np.float32)
    label[np.arange(num_groups), utility.argmax(axis=1)] = 1.0
    return Groups(features, label.ravel(), np.arange(num_groups + 1, dtype=np.int64) * size)


def top1_accuracy(scores: np.ndarray, data: Groups) -> float:
    size = int(data.group[1])
    return float(
        (scores.reshape(-1, size).argmax(axis=1) == data.label.reshape(-1, size).argmax(axis=1)).mean()
    )


@pytest.fixture(scope="module")
def trained() -> GbdtRanker:
    ranker, info = train_gbdt(planted(300, 0), planted(60, 1), NAMES, SMALL)
    assert 1 <= info.best_iteration <= SMALL.max_rounds and info.best_valid_ndcg > 0.8
    return ranker


def test_lambdamart_learns_a_planted_pattern(trained: GbdtRanker) -> None:
    test = planted(100, 2)
    assert top1_accuracy(trained.score(test.features), test) > 0.7  # chance: 1 in 20
    gains = list(trained.gain())
    assert set(gains[:2]) == {"signal", "penalty"}


def test_save_and_load_give_identical_scores(trained: GbdtRanker, tmp_path: Path) -> None:
    path = tmp_path / "ranker.txt"
    digest = trained.save(path)
    loaded = GbdtRanker.load(path, digest)
    features = planted(10, 3).features
    assert np.array_equal(loaded.score(features), trained.score(features))
    assert loaded.sha256 == trained.sha256 == digest and loaded.feature_names == NAMES
    assert "tree" in path.read_text()[:200].lower()  # LightGBM's text format, not a pickle
    with pytest.raises(ValueError, match="sha256"):
        GbdtRanker.load(path, "0" * 64)


def test_score_batch_matches_score_per_request(trained: GbdtRanker) -> None:
    parts = [planted(1, seed).features[: 5 + seed] for seed in range(4)]
    batch = trained.score_batch(parts)
    assert [len(b) for b in batch] == [len(p) for p in parts]
    for scores, part in zip(batch, parts, strict=True):
        np.testing.assert_array_equal(scores, trained.score(part))
    assert trained.score_batch([]) == [] and trained.score(np.zeros((0, len(NAMES)))).shape == (0,)
    with pytest.raises(ValueError):
        trained.score(np.zeros((3, 2), np.float32))


def test_staged_scores_equal_the_truncated_models_scores() -> None:
    data = planted(100, 2)
    config = GbdtConfig(num_leaves=4, min_data_in_leaf=5, max_rounds=30, early_stopping_rounds=30)
    full, info = train_gbdt(data, planted(30, 3), NAMES, config, keep_all=True)
    assert full.num_trees == info.rounds_run
    cuts = [5, 17, info.rounds_run]
    staged = full.staged_scores(data.features, cuts)
    for row, rounds in enumerate(cuts):
        np.testing.assert_array_equal(staged[row], full.truncated(rounds).score(data.features))
    assert not np.array_equal(staged[0], staged[2])
