"""The merge against a brute-force reference (every field, dtype and shape), its tie rules, its standardising,
its config's boundaries and the untuned default: the tests that kill the mutants of ``make mutate`` which
the behavioural tests of test_merge.py let through (docs/results/mutation.md)."""

from __future__ import annotations

import numpy as np
import pytest

from models.candidates.merge import (
    MergeConfig,
    MergedCandidates,
    default_merge,
    merge_lists,
    standardised,
)
from models.candidates.sources import SourceList


def source(items: list[int], scores: list[float] | None = None) -> SourceList:
    values = scores if scores is not None else [1.0 / (1 + r) for r in range(len(items))]
    return SourceList(np.asarray(items, np.int64), np.asarray(values, np.float32))


def reference_rrf(
    lists: list[SourceList], config: MergeConfig
) -> list[tuple[int, float, list[int], list[float]]]:
    """(item, merge score, rank per source, score per source) in merged order, by the definition."""
    found: dict[int, tuple[list[int], list[float]]] = {}
    for column, (listed, quota) in enumerate(zip(lists, config.quotas, strict=True)):
        for rank, (item, score) in enumerate(
            zip(listed.items[:quota].tolist(), listed.scores[:quota].tolist(), strict=True)
        ):
            ranks, scores = found.setdefault(item, ([-1] * len(lists), [0.0] * len(lists)))
            ranks[column], scores[column] = rank, score
    rows = []
    for item, (ranks, scores) in found.items():
        fused = sum(
            w / (config.rrf_k + r + 1.0) for w, r in zip(config.weights, ranks, strict=True) if r >= 0
        )
        rows.append((item, fused, ranks, scores))
    rows.sort(key=lambda row: (-row[1], min(r for r in row[2] if r >= 0), row[0]))
    return rows[: config.total]


def assert_matches_reference(merged: MergedCandidates, lists: list[SourceList], config: MergeConfig) -> None:
    expected = reference_rrf(lists, config)
    assert merged.items.dtype == np.int64 and merged.source_rank.dtype == np.int64
    assert merged.merge_score.dtype == np.float32 and merged.source_score.dtype == np.float32
    assert merged.items.tolist() == [row[0] for row in expected]
    assert np.allclose(merged.merge_score, [row[1] for row in expected], rtol=1e-6)
    assert merged.source_rank.tolist() == [row[2] for row in expected]
    assert np.allclose(merged.source_score, np.asarray([row[3] for row in expected]).reshape(-1, len(lists)))
    assert merged.source_rank.shape == merged.source_score.shape == (len(expected), len(lists))
    assert merged.sources == config.sources and merged.weights == config.weights


@pytest.mark.parametrize("seed", range(6))
def test_rrf_equals_the_definition_on_random_lists(seed: int) -> None:
    rng = np.random.default_rng(seed)
    names = ("a", "b", "c")
    lists = [
        source(rng.choice(40, size=int(rng.integers(1, 15)), replace=False).tolist(), None) for _ in names
    ]
    lists = [SourceList(s.items, rng.random(len(s)).astype(np.float32)) for s in lists]
    config = MergeConfig(
        names,
        tuple(int(q) for q in rng.integers(1, 12, size=3)),
        tuple(float(w) for w in rng.random(3) + 0.05),
        total=int(rng.integers(1, 30)),
        rrf_k=float(rng.choice([1.0, 3.0, 60.0])),
    )
    assert_matches_reference(merge_lists(lists, config), lists, config)


def test_a_tie_in_merge_score_goes_to_the_best_single_rank_then_the_lower_item() -> None:
    # rrf_k 1: 9 and 7 first in a and b score 1/2; 4 third in both scores 1/4 + 1/4, the same
    lists = [source([9, 1, 4]), source([7, 2, 4])]
    merged = merge_lists(lists, MergeConfig(("a", "b"), (5, 5), (1.0, 1.0), total=5, rrf_k=1.0))
    assert merged.merge_score[:3].tolist() == [0.5, 0.5, 0.5]
    assert merged.items.tolist() == [7, 9, 4, 1, 2]  # best rank 0 (the lower item first), then best rank 2


def test_one_candidate_and_none_keep_their_shapes_and_dtypes() -> None:
    config = MergeConfig(("a", "b"), (3, 3), (1.0, 0.5), total=3)
    one = merge_lists([source([7]), source([])], config)
    assert_matches_reference(one, [source([7]), source([])], config)
    assert one.primary_source() == ["a"]
    empty = merge_lists([source([]), source([])], config)
    assert empty.items.dtype == np.int64 and empty.items.shape == (0,)
    assert empty.merge_score.dtype == np.float32 and empty.merge_score.shape == (0,)
    assert empty.source_rank.dtype == np.int64 and empty.source_rank.shape == (0, 2)
    assert empty.source_score.dtype == np.float32 and empty.source_score.shape == (0, 2)
    assert empty.sources == ("a", "b") and empty.weights == (1.0, 0.5)
    assert empty.primary_source() == []


def test_a_wrong_number_of_lists_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^1 lists for 2 sources$"):
        merge_lists([source([1])], MergeConfig(("a", "b"), (1, 1), (1.0, 1.0)))
    score = MergeConfig(("a",), (1,), (1.0,), fusion="score")
    needs = r"^score fusion needs every source's scores of the candidates \(union_scores\)$"
    with pytest.raises(ValueError, match=needs):
        merge_lists([source([1])], score)


def test_take_keeps_every_field() -> None:
    config = MergeConfig(("a", "b"), (3, 3), (1.0, 0.0), total=4)
    merged = merge_lists([source([1, 2], [0.5, 0.25]), source([2, 3], [0.75, 0.125])], config)
    order = np.array([2, 0])
    taken = merged.take(order)
    assert taken.items.tolist() == merged.items[order].tolist()
    assert taken.merge_score.tolist() == merged.merge_score[order].tolist()
    assert taken.source_rank.tolist() == merged.source_rank[order].tolist()
    assert taken.source_score.tolist() == merged.source_score[order].tolist()
    assert taken.sources == ("a", "b") and taken.weights == (1.0, 0.0)


def test_the_name_shown_is_decided_per_candidate() -> None:
    # b weighs 0: candidate 6 (found by b only) is named b, candidate 5 (a and b) is named a
    config = MergeConfig(("a", "b", "c"), (3, 3, 3), (1.0, 0.0, 1.0), total=5)
    merged = merge_lists([source([5]), source([5, 6]), source([7])], config)
    names = dict(zip(merged.items.tolist(), merged.primary_source(), strict=True))
    assert names == {5: "a", 6: "b", 7: "c"}


def test_standardised_is_the_z_score_of_each_column() -> None:
    scores = np.array([[1.0, 10.0, 4.0], [2.0, 30.0, 4.0], [6.0, 20.0, 4.0]], dtype=np.float32)
    out = standardised(scores)
    as_float = scores.astype(np.float64)
    expected = (as_float - as_float.mean(axis=0)) / as_float.std(axis=0).clip(1e-12)
    expected[:, 2] = 0.0  # a constant column says nothing
    assert out.dtype == np.float64 and out.shape == (3, 3)
    assert np.allclose(out, expected, rtol=0, atol=1e-12)


def test_config_boundaries() -> None:
    assert MergeConfig(("a",), (0,), (0.0,), total=1).total == 1  # the smallest valid values
    with pytest.raises(ValueError, match=r"^sources, quotas and weights must have the same length$"):
        MergeConfig(("a", "b"), (1,), (1.0, 1.0))
    with pytest.raises(ValueError, match=r"duplicate source names in \('a', 'a'\)"):
        MergeConfig(("a", "a"), (1, 1), (1.0, 1.0))
    with pytest.raises(ValueError, match=r"^total must be >= 1, quotas and weights >= 0$"):
        MergeConfig(("a",), (-1,), (1.0,))
    with pytest.raises(ValueError, match="total must be >= 1, quotas and weights >= 0"):
        MergeConfig(("a",), (1,), (-1.0,))
    assert MergeConfig(("a", "b", "c"), (4, 5, 6), (1.0, 1.0, 1.0)).quota("b") == 5


def test_the_default_merge_small_total() -> None:
    config = default_merge(["popular", "ann", "recent"], total=2, allow_seen=True)
    assert config.sources == ("ann", "recent", "popular")
    assert config.quotas == (2, 1, 1)  # recent 0.25 * 2 and popular 0.5 * 2 round down, floor 1
    assert config.total == 2 and config.allow_seen is True
    assert default_merge(["ann"], total=7).allow_seen is False
