"""``ServedPipeline.recommend``: the one served function and the order of its stages."""

from __future__ import annotations

import time

import numpy as np
import pytest

from models.candidates.merge import MergeConfig
from models.candidates.rules import WHOLE_LIST, CategoryFilter, ItemTables, ServingRules
from models.candidates.served import ServedPipeline
from models.candidates.sources import CandidateRequest, CandidateSource, PopularSource, RecentItemsSource
from models.inference import RequestContext, UserHistory
from models.recipe.trained import served_pipeline

NUM_ITEMS = 22  # rows 0/1 reserved, items 2..21
POPULARITY = np.r_[0.0, 0.0, np.arange(20, 0, -1)].astype(np.float32)  # item 2 most popular
CATEGORY = np.r_[0, 1, np.arange(20) % 2 + 2].astype(np.int64)  # even items: category 2, odd: 3


class ReverseRanker:
    """Scores the merged list in reverse (the least popular first); records what it was asked."""

    candidate_sources: tuple[str, ...] = ()
    version = "reverse"

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.seen: list[np.ndarray] = []

    def score(self, history: UserHistory, context: RequestContext, candidates: np.ndarray) -> np.ndarray:
        return candidates.astype(np.float32)

    def score_batch(
        self,
        histories: list[UserHistory],
        contexts: list[RequestContext],
        candidates: list[np.ndarray],
        source_ranks: list[np.ndarray] | None = None,
    ) -> list[np.ndarray]:
        if self.fail:
            raise RuntimeError("ranker broke")
        self.seen += list(candidates)
        return [c.astype(np.float32) for c in candidates]


def pipeline(
    ranker: ReverseRanker | None = None, allow_seen: bool = False, total: int = 12
) -> ServedPipeline:
    sources: dict[str, CandidateSource] = {
        "recent": RecentItemsSource(),
        "popular": PopularSource(POPULARITY, "popular"),
    }
    names = ("recent", "popular") if allow_seen else ("popular",)
    merge = MergeConfig(names, (total,) * len(names), (1.0,) * len(names), total, allow_seen=allow_seen)
    return served_pipeline(sources, merge, ranker, ranker is not None, total)


def history(items: list[int]) -> UserHistory:
    count = len(items)
    return UserHistory(
        item=np.asarray(items, np.int64),
        action=np.full(count, 2, np.int64),
        value=np.ones(count, np.float32),
        timestamp=np.arange(count, dtype=np.int64) + 1_700_000_000,
        scene=np.ones(count, np.int64),
        device=np.ones(count, np.int64),
    )


def request(items: list[int]) -> CandidateRequest:
    return CandidateRequest(history(items), RequestContext(timestamp=1_700_000_100))


TABLES = ItemTables(CATEGORY, np.arange(2, NUM_ITEMS, dtype=np.int64), POPULARITY)


def test_excluded_and_seen_items_are_never_served_and_the_merge_decides_seen_by_default() -> None:
    rules = ServingRules(k=5, exclude=frozenset({2, 3}), exclude_seen=None, items=TABLES)
    served = pipeline().recommend(request([4, 5]), rules)
    assert served.items.tolist() == [6, 7, 8, 9, 10]
    revisits = pipeline(allow_seen=True).recommend(request([4, 5]), rules)  # the bundle allows re-visits
    assert {4, 5} <= set(revisits.items.tolist()) and not {2, 3} & set(revisits.items.tolist())
    keep_seen = pipeline().recommend(request([4, 5]), ServingRules(k=5, exclude_seen=False, items=TABLES))
    assert keep_seen.items.tolist() == [2, 3, 4, 5, 6]


def test_the_category_filter_runs_before_the_ranker_and_the_list_is_cut_to_k() -> None:
    ranker = ReverseRanker()
    rules = ServingRules(k=3, categories=CategoryFilter(allowed=frozenset({2})), items=TABLES)
    served = pipeline(ranker).recommend(request([20]), rules)
    assert ranker.seen[0].tolist() == [2, 4, 6, 8, 10, 12]  # only servable candidates reach the ranker
    assert served.ranked and served.items.tolist() == [12, 10, 8]  # ranker order, then cut to k
    assert served.sources() == ["popular"] * 3


def test_a_short_list_is_topped_up_from_popularity_under_the_same_rules() -> None:
    blocked = CategoryFilter(blocked=frozenset({3}))
    rules = ServingRules(k=8, exclude=frozenset({2}), exclude_seen=True, categories=blocked, items=TABLES)
    served = pipeline(total=4).recommend(request([4]), rules)
    assert served.candidates.items.tolist() == [6]  # popular 3, 5, 6, 7 (2 and 4 excluded); odd filtered
    assert served.filler.tolist() == [8, 10, 12, 14, 16, 18, 20]  # never 2, 4 (seen), 6 or an odd item
    assert served.sources() == ["popular"] * 8
    assert served.item_scores()[1:].tolist() == [14, 12, 10, 8, 6, 4, 2] and served.warnings == []
    too_strict = ServingRules(k=12, categories=CategoryFilter(allowed=frozenset({2})), items=TABLES)
    short = pipeline(total=4).recommend(request([]), too_strict)
    assert len(short) == 10 and short.warnings == ["only 10 items remain after exclusions and filters (k=12)"]


def test_nothing_personal_keeps_the_popularity_order() -> None:
    ranker = ReverseRanker()
    served = pipeline(ranker).recommend(request([]), ServingRules(k=3, items=TABLES))
    assert not served.ranked and served.items.tolist() == [2, 3, 4] and ranker.seen == []


def test_a_ranker_error_falls_back_only_where_the_rules_say_so() -> None:
    broken = pipeline(ReverseRanker(fail=True))
    served = broken.recommend(request([20]), ServingRules(k=3, items=TABLES, fall_back=True))
    assert served.items.tolist() == [2, 3, 4] and served.ranker_failed
    assert served.warnings == ["ranker failed: candidates in merged order"]
    with pytest.raises(RuntimeError, match="ranker broke"):
        broken.recommend(request([20]), ServingRules(k=3, items=TABLES))


def test_diversity_without_item_vectors_is_ignored_with_a_warning() -> None:
    served = pipeline().recommend(request([]), ServingRules(k=3, diversity=0.5, items=TABLES))
    assert served.items.tolist() == [2, 3, 4]
    assert served.warnings == ["diversity needs item vectors; this bundle has none, ignored"]


def test_the_whole_list_over_merged_candidates_is_the_ranker_order_of_every_candidate() -> None:
    served_pipeline_ = pipeline(ReverseRanker())
    requests = [request([20]), request([3, 9])]
    merged = [served_pipeline_.generator.generate(r) for r in requests]
    served = served_pipeline_.recommend_many(requests, WHOLE_LIST, merged=merged)
    for one, candidates in zip(served, merged, strict=True):
        assert one.items.tolist() == sorted(candidates.items.tolist(), reverse=True)
        assert len(one) == len(candidates) and one.warnings == []


def test_the_timer_hears_every_stage_in_order() -> None:
    heard: list[str] = []

    class Timer:
        def record(self, stage: str, started: float) -> None:
            assert started <= time.perf_counter()
            heard.append(stage)

    pipeline(ReverseRanker()).recommend(request([20]), ServingRules(k=3, items=TABLES), Timer())
    assert heard == ["retrieve", "rank", "rules"]
