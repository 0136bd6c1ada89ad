"""Exclusion/category rules and MMR diversity (models.candidates.rules)."""

from __future__ import annotations

import numpy as np
import pytest

from models.candidates.rules import CategoryFilter, mmr_order, mmr_order_reference, passing


def test_passing_drops_padding_excluded_and_filtered_items() -> None:
    items = np.asarray([0, 1, 2, 3, 4, 5], dtype=np.int64)
    category = np.asarray([0, 1, 2, 2, 3, 3], dtype=np.int64)
    assert passing(items, {3}, CategoryFilter(), category).tolist() == [False, False, True, False, True, True]
    only_3 = CategoryFilter(allowed=frozenset({3}))
    assert passing(items, set(), only_3, category).tolist() == [False, False, False, False, True, True]
    not_3 = CategoryFilter(blocked=frozenset({3}))
    assert passing(items, set(), not_3, category).tolist() == [False, False, True, True, False, False]
    nothing = CategoryFilter(allowed=frozenset())
    assert not passing(items, set(), nothing, category).any()


def test_mmr_without_diversity_is_score_order() -> None:
    scores = np.asarray([0.1, 0.9, 0.5], dtype=np.float32)
    vectors = np.eye(3, dtype=np.float32)
    assert mmr_order(scores, vectors, 3, 0.0).tolist() == [1, 2, 0]


def test_mmr_skips_near_duplicates_when_diverse() -> None:
    base = np.asarray([1.0, 0.0, 0.0, 0.0])
    other = np.asarray([0.0, 1.0, 0.0, 0.0])
    vectors = np.stack([base, base + 0.01, base - 0.01, other]).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = np.asarray([1.0, 0.99, 0.98, 0.5], dtype=np.float32)
    assert mmr_order(scores, vectors, 2, 0.0).tolist() == [0, 1]
    assert mmr_order(scores, vectors, 2, 0.7).tolist() == [0, 3]
    assert sorted(mmr_order(scores, vectors, 10, 0.5).tolist()) == [0, 1, 2, 3]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("diversity", [0.2, 0.5, 0.9])
def test_mmr_row_by_row_equals_the_whole_similarity_matrix(seed: int, diversity: float) -> None:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(120, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = rng.normal(size=120).astype(np.float32)
    fast, plain = (
        mmr_order(scores, vectors, 20, diversity),
        mmr_order_reference(scores, vectors, 20, diversity),
    )
    assert fast.tolist() == plain.tolist()
