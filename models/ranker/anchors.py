"""Preference-anchor groups (models.md 3.2, our rules for data without a search query).

Every group is computed from information available strictly before the request time:
- strong: the user's own items with funnel level >= 2 (rated >= 4 / carted / bought), most recent first;
- request: the request's anchor items (``RequestContext.anchors``);
- neighbours: co-occurrence neighbours of the user's last 3 items (table fitted on training events);
- popular: the most frequent items of the ``popular_days`` full days before the request's day.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.data.schema import FIRST_REAL_ID, EventTable
from models.ranker.config import (
    ANCHOR_NEIGHBOURS,
    ANCHOR_POPULAR,
    ANCHOR_REQUEST,
    ANCHOR_STRONG,
    RankerConfig,
)
from models.ranker.retrieval import CooccurrenceTable, cooccurrence_scores

SECONDS_PER_DAY = 86_400
MIN_WINDOW_EVENTS = 200  # a sparse week falls back to the last FALLBACK_EVENTS events before the day
FALLBACK_EVENTS = 2_000


@dataclass
class PopularityTimeline:
    """Sorted event times and items, to answer "most popular before day D" without looking ahead."""

    timestamp: np.ndarray  # [E] int64 sorted
    item: np.ndarray  # [E] int64
    num_items: int
    days: int
    top_k: int
    _cache: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    @staticmethod
    def from_events(events: EventTable, num_items: int, days: int, top_k: int) -> PopularityTimeline:
        order = np.argsort(events.timestamp, kind="stable")
        return PopularityTimeline(
            events.timestamp[order].astype(np.int64),
            events.item[order].astype(np.int64),
            num_items,
            days,
            top_k,
        )

    def popular_before(self, timestamp: int) -> np.ndarray:
        """Top-k items of the ``days`` full days before the day of ``timestamp`` -> [<= k] int64."""
        day_start = (int(timestamp) // SECONDS_PER_DAY) * SECONDS_PER_DAY
        if day_start not in self._cache:
            self._cache[day_start] = self._popular_before_day(day_start)
        return self._cache[day_start]

    def _popular_before_day(self, day_start: int) -> np.ndarray:
        end = int(np.searchsorted(self.timestamp, day_start, side="left"))
        start = int(np.searchsorted(self.timestamp, day_start - self.days * SECONDS_PER_DAY, side="left"))
        if end - start < MIN_WINDOW_EVENTS:
            start = max(0, end - FALLBACK_EVENTS)
        counts = np.bincount(self.item[start:end], minlength=self.num_items)
        counts[:FIRST_REAL_ID] = 0
        top = np.argsort(-counts, kind="stable")[: self.top_k]
        return top[counts[top] > 0]


@dataclass
class AnchorSources:
    """What the anchor groups are computed from; saved with the ranker so serving computes the same."""

    cooccurrence: CooccurrenceTable
    popular_latest: np.ndarray  # [P] int64: the popular group at serving time (end of the training data)
    timeline: PopularityTimeline | None = None  # offline only: popularity as of any past request


def _fit(items: np.ndarray, length: int) -> np.ndarray:
    out = np.zeros(length, dtype=np.int64)
    items = items[:length]
    out[: len(items)] = items
    return out


def anchor_groups(
    config: RankerConfig,
    sources: AnchorSources,
    history_item: np.ndarray,
    history_level: np.ndarray,
    request_anchors: np.ndarray,
    request_timestamp: int,
) -> np.ndarray:
    """history_item/level [E] (oldest first) -> anchor items [G, P] int64 in ``config.anchor_types`` order."""
    length = config.anchor_len
    groups = []
    for anchor_type in config.anchor_types:
        if anchor_type == ANCHOR_STRONG:
            strong = history_item[history_level >= 2][::-1]
            _, first = np.unique(strong, return_index=True)
            items = strong[np.sort(first)]
        elif anchor_type == ANCHOR_REQUEST:
            items = np.asarray(request_anchors, dtype=np.int64)
        elif anchor_type == ANCHOR_NEIGHBOURS:
            recent = history_item[-3:]
            scores = cooccurrence_scores(sources.cooccurrence, recent[recent >= FIRST_REAL_ID])
            candidates = np.flatnonzero(scores > 0)
            items = candidates[np.argsort(-scores[candidates], kind="stable")[:length]]
        elif anchor_type == ANCHOR_POPULAR:
            if sources.timeline is not None:
                items = sources.timeline.popular_before(request_timestamp)
            else:
                items = sources.popular_latest
        else:
            raise ValueError(f"unknown anchor type {anchor_type}")
        groups.append(_fit(np.asarray(items, dtype=np.int64), length))
    if not groups:
        return np.zeros((0, length), dtype=np.int64)
    return np.stack(groups)
