"""Item-to-item co-occurrence baseline (item-kNN): items that appear near each other in users' sequences.

Fit: every pair of distinct items at most ``window`` positions apart in one user's time-ordered events
(optionally inside one session) counts once per occurrence, in both directions; the count is normalised to a
cosine, c_ij / sqrt(n_i n_j), and each item keeps its ``max_neighbours`` strongest neighbours (sparse CSR).
Score for a user: Σ over the last ``history_length`` items h (most recent first, weight decay^age) of
sim(h, ·), plus a tiny popularity term so users without neighbours still get a ranking.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from models.baselines.top_k import top_k_items
from models.data.schema import EventTable
from models.scorer import FitInput
from models.types import RequestContext, UserHistory


@dataclass(frozen=True)
class CooccurrenceConfig:
    window: int = 5
    same_session_only: bool = False
    max_neighbours: int = 200
    history_length: int = 20
    history_decay: float = 0.8
    popularity_weight: float = 1e-6


@dataclass
class SparseRows:
    """CSR matrix [num_items, num_items]: row i holds indices[indptr[i]:indptr[i+1]] with data."""

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray


def cooccurrence_matrix(events: EventTable, num_items: int, config: CooccurrenceConfig) -> SparseRows:
    """events sorted by (user, timestamp) -> pruned cosine co-occurrence CSR [num_items, num_items].

    The project's one co-occurrence fit: the baseline, the ``cooccurrence`` candidate source and the
    ranker's "neighbours" anchors (``models.ranker.retrieval.fit_cooccurrence``) all read this matrix.
    Every row holds its strongest neighbours first (ties: smaller item index first)."""
    keys = []
    for _, a, b in ordered_pairs(events, config.window, config.same_session_only):
        keys += [a * num_items + b, b * num_items + a]
    pairs, counts = np.unique(np.concatenate(keys) if keys else np.zeros(0, np.int64), return_counts=True)
    rows, cols = pairs // num_items, pairs % num_items
    frequency = np.bincount(events.item, minlength=num_items).astype(np.float64)
    weight = counts / np.sqrt(frequency[rows] * frequency[cols])
    return strongest_per_row(rows, cols, weight, num_items, config.max_neighbours)


def ordered_pairs(
    events: EventTable, window: int, same_session_only: bool
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Per distance d = 1..window: (d, a [P] int64, b [P] int64), every pair of distinct items where b
    comes d events after a in one user's sequence (and session, with ``same_session_only``). events sorted
    by (user, timestamp). The one pair walk of the item-to-item fits (co-occurrence, transitions)."""
    for distance in range(1, window + 1):
        a, b = events.item[:-distance].astype(np.int64), events.item[distance:].astype(np.int64)
        same = events.user[:-distance] == events.user[distance:]
        if same_session_only:
            same &= events.session[:-distance] == events.session[distance:]
        same &= a != b
        yield distance, a[same], b[same]


def strongest_per_row(
    rows: np.ndarray, cols: np.ndarray, weight: np.ndarray, num_items: int, max_neighbours: int
) -> SparseRows:
    """Entries (rows, cols, weight) [P] -> CSR [num_items, num_items] keeping each row's ``max_neighbours``
    heaviest entries, heaviest first (ties: smaller column first)."""
    order = np.lexsort((cols, -weight, rows))
    rows, cols, weight = rows[order], cols[order], weight[order]
    row_start = np.searchsorted(rows, np.arange(num_items))
    keep = np.arange(len(rows)) - row_start[rows] < max_neighbours
    rows, cols, weight = rows[keep], cols[keep], weight[keep]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=num_items))]).astype(np.int64)
    return SparseRows(indptr, cols.astype(np.int64), weight.astype(np.float32))


class CooccurrenceScorer:
    def __init__(self, events: EventTable, num_items: int, config: CooccurrenceConfig):
        self.config = config
        self.num_items = num_items
        self.matrix = cooccurrence_matrix(events, num_items, config)
        popularity = np.bincount(events.item, minlength=num_items).astype(np.float64)
        self.popularity = (popularity / max(popularity.max(), 1.0)).astype(np.float32)

    def arrays(self) -> dict[str, np.ndarray]:
        """The fitted state as plain arrays (for saving beside a bundle); ``from_arrays`` inverts it."""
        m = self.matrix
        return {"indptr": m.indptr, "indices": m.indices, "data": m.data, "popularity": self.popularity}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], config: CooccurrenceConfig) -> CooccurrenceScorer:
        """Rebuilds a fitted scorer without refitting."""
        scorer = cls.__new__(cls)
        scorer.config = config
        scorer.num_items = int(arrays["indptr"].shape[0] - 1)
        scorer.matrix = SparseRows(arrays["indptr"], arrays["indices"], arrays["data"])
        scorer.popularity = np.asarray(arrays["popularity"], dtype=np.float32)
        return scorer

    def score_items(self, item_lists: list[np.ndarray]) -> np.ndarray:
        """item_lists: B histories of item indices, oldest first -> [B, num_items] float32."""
        n, c = self.num_items, self.config
        recent = [items[::-1][: c.history_length] for items in item_lists]  # most recent first
        lengths = np.array([len(r) for r in recent], dtype=np.int64)
        history = np.concatenate([*recent, np.zeros(0, np.int64)]).astype(np.int64)
        age = np.arange(len(history)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        owner = np.repeat(np.arange(len(recent)), lengths)
        m = self.matrix
        starts, counts = m.indptr[history], m.indptr[history + 1] - m.indptr[history]
        offsets = np.cumsum(counts) - counts
        index = np.repeat(starts - offsets, counts) + np.arange(int(counts.sum()))
        values = m.data[index] * np.repeat(c.history_decay**age, counts)
        flat = np.repeat(owner, counts) * n + m.indices[index]
        scores = np.bincount(flat, values, minlength=len(recent) * n).reshape(len(recent), n)
        return (scores + c.popularity_weight * self.popularity).astype(np.float32)

    def score_users(self, histories: list[UserHistory], contexts: list[RequestContext]) -> np.ndarray:
        return self.score_items([h.item for h in histories])

    def top_k(self, history_items: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
        """Serving: k best item indices for one history (oldest first), minus ``exclude``."""
        return top_k_items(self.score_items([history_items])[0], k, exclude)


def build_cooccurrence(fit: FitInput, config: CooccurrenceConfig | None = None) -> CooccurrenceScorer:
    """Registry entry: fit on the protocol's training events."""
    return CooccurrenceScorer(fit.train_events, fit.dataset.num_items, config or CooccurrenceConfig())
