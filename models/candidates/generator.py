"""``CandidateGenerator``: the configured sources, asked once per request, merged into one list.

``fit_sources`` builds the encoder-free sources from a period of events (co-occurrence, the user's recent
items, recency-weighted popularity), so a bundle and an offline replay make them the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.baselines.cooccurrence import CooccurrenceConfig, SparseRows, cooccurrence_matrix
from models.baselines.popularity import PopularityConfig, popularity_after
from models.baselines.transitions import TransitionConfig, transition_matrix
from models.candidates.merge import MergeConfig, MergedCandidates, UnionScores, merge_lists
from models.candidates.sources import (
    CandidateRequest,
    CandidateSource,
    CategorySource,
    CooccurrenceSource,
    PopularSource,
    RecentItemsSource,
    SourceList,
)
from models.data.schema import FIRST_REAL_ID, EventTable


class CandidateGenerator:
    """sources: by name; config.sources picks which are used and in which feature order."""

    def __init__(self, sources: Sequence[CandidateSource], config: MergeConfig) -> None:
        by_name = {source.name: source for source in sources}
        missing = [name for name in config.sources if name not in by_name]
        if missing:
            raise ValueError(f"merge config names sources that are not available: {missing}")
        self.sources = [by_name[name] for name in config.sources]
        self.config = config

    def source_lists(self, request: CandidateRequest) -> list[SourceList]:
        """One list per configured source, each cut at its quota. [S] lists."""
        return [
            source.candidates(request, quota)
            for source, quota in zip(self.sources, self.config.quotas, strict=True)
        ]

    def union_scores(self, request: CandidateRequest, weighted_only: bool = False) -> UnionScores:
        """items [N] -> [N, S]: every configured source's score of each item (score fusion).
        ``weighted_only``: sources the merge weighs 0 read as 0 without being asked (their column only
        ever enters the fused score times 0; merge tuning, which tries other weights, asks them all)."""
        asked = [not weighted_only or weight != 0 for weight in self.config.weights]

        def scores(items: np.ndarray) -> np.ndarray:
            columns = [
                source.score_items(request, items) if ask else np.zeros(len(items), np.float32)
                for source, ask in zip(self.sources, asked, strict=True)
            ]
            return np.stack(columns, axis=1) if columns else np.zeros((len(items), 0), np.float32)

        return scores

    def generate(self, request: CandidateRequest) -> MergedCandidates:
        dense = self.union_scores(request, weighted_only=True) if self.config.fusion == "score" else None
        return merge_lists(self.source_lists(request), self.config, dense)


def plain_popularity(events: EventTable, num_items: int) -> np.ndarray:
    """[num_items] float32 event counts (rows 0/1 = 0)."""
    counts = np.bincount(events.item.astype(np.int64), minlength=num_items).astype(np.float32)
    counts[:FIRST_REAL_ID] = 0.0
    return counts


def transition_source(matrix: SparseRows, config: TransitionConfig) -> CooccurrenceSource:
    """The ``transitions`` source over a fitted successor table (``transition_matrix``)."""
    return CooccurrenceSource(
        matrix.indptr, matrix.indices, matrix.data, config.history_length, config.history_decay, "transitions"
    )


def fit_sources(
    events: EventTable,
    num_items: int,
    num_scenes: int,
    cooccurrence: CooccurrenceConfig | None = None,
    item_category: np.ndarray | None = None,
    transitions: TransitionConfig | None = None,
) -> dict[str, CandidateSource]:
    """The encoder-free sources from ``events`` (sorted by user, then time): cooccurrence, transitions
    (directed successors), recent, popular (recency-weighted), popular_plain (counts) and, given
    ``item_category`` [num_items], category (the recency-weighted popularity inside the categories of the
    user's recent items)."""
    config = cooccurrence or CooccurrenceConfig()
    matrix = cooccurrence_matrix(events, num_items, config)
    successors = transitions or TransitionConfig()
    directed = transition_matrix(events, num_items, successors)
    popular = popularity_after(events, num_items, num_scenes, PopularityConfig())
    category = {} if item_category is None else {"category": CategorySource(item_category, popular)}
    return {
        "cooccurrence": CooccurrenceSource(
            matrix.indptr, matrix.indices, matrix.data, config.history_length, config.history_decay
        ),
        "transitions": transition_source(directed, successors),
        "recent": RecentItemsSource(),
        **category,
        "popular": PopularSource(popular, "popular"),
        "popular_plain": PopularSource(plain_popularity(events, num_items), "popular_plain"),
    }
