import json

import numpy as np
import pytest

import models.candidates.sources as sources_module
from models.baselines.cooccurrence import CooccurrenceConfig, CooccurrenceScorer
from models.candidates.sources import (
    AnnSource,
    CandidateRequest,
    CategorySource,
    CooccurrenceSource,
    PopularSource,
    RecentItemsSource,
    _top,
)
from models.data.schema import Action, EventTable
from models.types import RequestContext, UserHistory


def history(items: list[int]) -> UserHistory:
    n = len(items)
    z = np.zeros(n, dtype=np.int64)
    return UserHistory(np.asarray(items, np.int64), z + 1, np.ones(n, np.float32), np.arange(n), z + 1, z + 1)


def request(
    items: list[int], exclude: list[int] | None = None, vector: np.ndarray | None = None
) -> CandidateRequest:
    return CandidateRequest(
        history(items), RequestContext(timestamp=100), vector, np.asarray(exclude or [], dtype=np.int64)
    )


def test_recent_items_by_decayed_frequency_distinct_and_excluded() -> None:
    source = RecentItemsSource(max_items=10, decay=0.5, action_weights={})
    # newest first: 8 (1), 7 (0.5), 5 (0.25 + 0.0625), 6 (0.125)
    found = source.candidates(request([5, 6, 5, 7, 8]), 10)
    assert found.items.tolist() == [8, 7, 5, 6]
    np.testing.assert_allclose(found.scores, [1.0, 0.5, 0.3125, 0.125])
    assert source.candidates(request([5, 6, 7], exclude=[7]), 10).items.tolist() == [6, 5]
    assert len(source.candidates(request([]), 10)) == 0
    counted = RecentItemsSource(max_items=2, decay=1.0, action_weights={})  # a plain count, ties: newer
    assert counted.candidates(request([5, 6, 5, 7, 8]), 10).items.tolist() == [5, 8]


def test_recent_items_weigh_a_cart_above_a_view() -> None:
    viewed = request([5, 6])
    viewed.history.action[:] = [Action.CART, Action.VIEW]  # 5 carted, then 6 viewed
    assert RecentItemsSource(decay=0.9, action_weights={}).candidates(viewed, 5).items.tolist() == [6, 5]
    weighted = RecentItemsSource(decay=0.9, action_weights={int(Action.CART): 2.0})
    assert weighted.candidates(viewed, 5).items.tolist() == [5, 6]
    assert RecentItemsSource().action_weights[Action.CART] > RecentItemsSource().action_weights[Action.VIEW]


def test_recent_items_scoring_round_trips_through_a_manifest() -> None:
    source = RecentItemsSource(max_items=20, decay=0.9, action_weights={int(Action.FAV): 1.5})
    stored = json.loads(json.dumps(source.to_dict()))  # as the manifest holds it: string keys
    again = RecentItemsSource.from_dict(stored)
    assert again.to_dict() == source.to_dict()
    np.testing.assert_array_equal(again.action_weights, source.action_weights)
    with pytest.raises(ValueError, match="decay 0"):
        RecentItemsSource(decay=0.0)


def test_category_source_walks_the_recent_categories_by_popularity_share() -> None:
    # items 2-5 in category 2, 6-8 in category 3, 9 in category 1 (unknown); popularity = the item's index
    category = np.array([0, 0, 2, 2, 2, 2, 3, 3, 3, 1])
    popularity = np.arange(10, dtype=np.float32)
    source = CategorySource(category, popularity, decay=0.5, max_categories=5)
    # newest first: 6 (category 3, weight 1), 2 (category 2, 0.5), 9 (unknown), 7 (category 3, 0.125)
    found = source.candidates(request([7, 9, 2, 6]), 10)
    share_3 = np.array([8, 7, 6]) / 21.0
    share_2 = np.array([5, 4, 3, 2]) / 14.0
    expected = np.concatenate([1.125 * share_3, 0.5 * share_2])
    order = np.argsort(-expected, kind="stable")
    assert found.items.tolist() == np.array([8, 7, 6, 5, 4, 3, 2])[order].tolist()
    np.testing.assert_allclose(found.scores, expected[order], rtol=1e-6)
    assert 9 not in found.items.tolist()  # an unknown category is never recommended
    assert source.candidates(request([7, 2], exclude=[8, 5]), 2).items.tolist() == [4, 3]  # 2 is newest
    assert len(source.candidates(request([9]), 10)) == 0  # only unknown categories in the history
    one = CategorySource(category, popularity, decay=0.5, max_categories=1)
    assert set(one.candidates(request([2, 6]), 10).items.tolist()) == {6, 7, 8}


def test_popular_source_skips_reserved_rows_and_exclusions() -> None:
    scores = np.array([9, 9, 1, 5, 3, 0], dtype=np.float32)  # rows 0/1 are pad/unknown; item 5 never seen
    source = PopularSource(scores)
    assert source.candidates(request([]), 10).items.tolist() == [3, 4, 2]
    assert source.candidates(request([], exclude=[3]), 2).items.tolist() == [4, 2]


def table(users: list[int], items: list[int]) -> EventTable:
    n = len(items)
    z = np.zeros(n, dtype=np.int64)
    return EventTable(
        user=np.asarray(users, np.int64),
        item=np.asarray(items, np.int64),
        action=z + 1,
        value=np.ones(n, np.float32),
        timestamp=np.arange(n, dtype=np.int64),
        session=np.asarray(users, np.int64),
        scene=z + 1,
        device=z + 1,
        hour=z,
        dow=z,
    )


def test_cooccurrence_source_equals_the_baseline_scores_on_its_list() -> None:
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(2, 30), 12)
    events = table(users.tolist(), rng.integers(2, 40, size=len(users)).tolist())
    config = CooccurrenceConfig()
    baseline = CooccurrenceScorer(events, 40, config)
    m = baseline.matrix
    source = CooccurrenceSource(m.indptr, m.indices, m.data, config.history_length, config.history_decay)
    items = [3, 9, 17, 4]
    found = source.candidates(request(items), 15)
    dense = baseline.score_items([np.asarray(items)])[0] - config.popularity_weight * baseline.popularity
    assert len(found) == 15
    np.testing.assert_allclose(found.scores, dense[found.items], rtol=1e-5)
    # and they are the best co-occurrence scores
    assert found.scores.min() >= np.sort(dense[2:])[::-1][14] - 1e-6


def test_ann_source_needs_a_vector_and_honours_exclusions() -> None:
    class Exact:
        def __init__(self, vectors: np.ndarray) -> None:
            self.vectors = vectors

        def search(self, queries: np.ndarray, k: int, exclude: list[set[int]] | None = None):
            scores = queries @ self.vectors.T
            scores[:, :2] = -np.inf
            for row, skip in enumerate(exclude or []):
                scores[row, list(skip)] = -np.inf
            order = np.argsort(-scores, axis=1)[:, :k]
            return order, np.take_along_axis(scores, order, 1)

    vectors = np.eye(6, dtype=np.float32)
    source = AnnSource(Exact(vectors))
    assert len(source.candidates(request([2]), 3)) == 0
    found = source.candidates(request([2], exclude=[4], vector=vectors[4] + 0.5 * vectors[5]), 2)
    assert found.items[0] == 5 and 4 not in found.items.tolist() and len(found) == 2


def test_every_source_scores_any_item_as_it_scores_its_own_list() -> None:
    rng = np.random.default_rng(1)
    users = np.repeat(np.arange(2, 30), 12)
    events = table(users.tolist(), rng.integers(2, 40, size=len(users)).tolist())
    m = CooccurrenceScorer(events, 40, CooccurrenceConfig()).matrix
    vectors = rng.normal(size=(40, 4)).astype(np.float32)

    class Stored:  # an index that can hand back its vectors, as models.index.ItemIndex does
        def search(self, queries, k, exclude=None):  # type: ignore[no-untyped-def]
            scores = queries @ vectors.T
            scores[:, :2] = -np.inf
            order = np.argsort(-scores, axis=1)[:, :k]
            return order, np.take_along_axis(scores, order, 1)

        def vectors(self, items: np.ndarray) -> np.ndarray:
            return vectors[items]

    asked = request([3, 9, 17, 4, 9], vector=vectors[5])
    sources = [
        CooccurrenceSource(m.indptr, m.indices, m.data),
        RecentItemsSource(),
        PopularSource(rng.integers(0, 50, size=40).astype(np.float32)),
        AnnSource(Stored()),
        CategorySource(rng.integers(0, 6, size=40), rng.integers(0, 50, size=40).astype(np.float32)),
    ]
    outside = np.array([38, 39], dtype=np.int64)
    for source in sources:
        found = source.candidates(asked, 8)
        scored = source.score_items(asked, found.items)
        expected = found.scores
        if isinstance(source, PopularSource):  # log of the share of the most popular item
            expected = np.log(found.scores / source.scores.max() + 1e-6)
        np.testing.assert_allclose(scored, expected, rtol=1e-5, err_msg=source.name)
        assert source.score_items(asked, outside).shape == (2,)
    recent = RecentItemsSource()
    assert recent.score_items(asked, np.array([9, 25])).tolist()[1] == 0.0  # never seen: nothing to say
    assert AnnSource(Stored()).score_items(request([3]), outside).tolist() == [0.0, 0.0]  # no user vector


def test_cooccurrence_sums_once_per_request_for_list_and_fusion_scores() -> None:
    rng = np.random.default_rng(2)
    users = np.repeat(np.arange(2, 30), 12)
    events = table(users.tolist(), rng.integers(2, 40, size=len(users)).tolist())
    m = CooccurrenceScorer(events, 40, CooccurrenceConfig()).matrix
    source = CooccurrenceSource(m.indptr, m.indices, m.data)
    first, second = request([3, 9, 17]), request([4, 5])
    found = source.neighbour_scores(first)
    assert source.neighbour_scores(first) is found  # the list and the fusion scores share one sum
    other = source.neighbour_scores(second)
    assert other is not found and not np.array_equal(other[0], found[0])
    again = source.neighbour_scores(request([3, 9, 17]))  # an equal but new request is summed afresh
    assert again is not found and np.array_equal(again[0], found[0]) and np.allclose(again[1], found[1])


def test_the_category_source_weighs_a_request_once_for_list_and_fusion_scores() -> None:
    category = np.array([0, 0, 2, 2, 3, 3, 3], dtype=np.int64)
    source = CategorySource(category, np.arange(7, dtype=np.float64))
    first, second = request([2, 4]), request([5])
    weights = source.category_weights(first)
    assert source.category_weights(first) is weights
    assert source.category_weights(second) is not weights
    assert source.category_weights(second)[0].tolist() == [3]


def test_the_top_cut_orders_exactly_as_a_full_sort_ties_included() -> None:
    rng = np.random.default_rng(3)
    for count in (1, 5, 40, 400):
        items = rng.permutation(np.arange(2, 402)).astype(np.int64)
        scores = rng.integers(0, 6, size=len(items)).astype(np.float64)  # many ties at every score
        exclude = items[::7]
        found = _top(items, scores, exclude, count)
        keep = ~np.isin(items, exclude)
        order = np.lexsort((items[keep], -scores[keep]))[:count]
        assert found.items.tolist() == items[keep][order].tolist()
        np.testing.assert_array_equal(found.scores, scores[keep][order].astype(np.float32))


def test_the_neighbour_walk_sums_the_same_dense_or_sorted(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(4)
    users = np.repeat(np.arange(2, 40), 15)
    events = table(users.tolist(), rng.integers(2, 60, size=len(users)).tolist())
    m = CooccurrenceScorer(events, 60, CooccurrenceConfig()).matrix
    source = CooccurrenceSource(m.indptr, m.indices, m.data)
    wanted = request([3, 9, 17, 4, 9, 31])
    monkeypatch.setattr(sources_module, "DENSE_WALK_FACTOR", 0)  # always sort
    sorted_items, sorted_scores = source._neighbour_scores(wanted)
    monkeypatch.setattr(sources_module, "DENSE_WALK_FACTOR", 10**9)  # always dense
    items, scores = source._neighbour_scores(wanted)
    assert len(items) > 10 and items.tolist() == sorted_items.tolist()
    np.testing.assert_array_equal(scores, sorted_scores)  # the same sums in the same order
