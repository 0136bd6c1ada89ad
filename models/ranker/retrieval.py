"""Candidate sources for training and evaluating the ranker, behind one small protocol.

The ranker learns on what the retrieval stage returns (hard negatives), so the retriever is a parameter:
anything with ``retrieve(histories, k)`` works, e.g. the session encoder + ANN index once a bundle exists.
``CooccurrenceRetriever`` is the self-contained default: item-to-item co-occurrence within a short window of
each user's sequence (item-kNN), scored from the user's last items with recency weights, popularity as the
tie-breaker and filler. It is fitted on training events only and stays frozen while the ranker trains.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from models.baselines.cooccurrence import CooccurrenceConfig, SparseRows, cooccurrence_matrix
from models.baselines.top_k import top_k_items
from models.data.schema import FIRST_REAL_ID, EventTable
from models.inference import UserEncoder
from models.types import RequestContext, UserHistory


def seen_items(history: UserHistory, exclude_seen: bool) -> np.ndarray | None:
    """The history's items when they are to be excluded from its candidates, else None."""
    return history.item.astype(np.int64) if exclude_seen and len(history) else None


class CandidateRetriever(Protocol):
    def retrieve(self, histories: Sequence[UserHistory], k: int) -> list[np.ndarray]:
        """One int64 array of at most k item indices per history, best first."""
        ...


@dataclass
class CooccurrenceTable:
    """Top-M co-occurring items per item: neighbours [I, M] int64 (0 = none), weights [I, M] float32."""

    neighbours: np.ndarray
    weights: np.ndarray
    popularity: np.ndarray  # [I] float32 event counts

    @classmethod
    def from_rows(cls, rows: SparseRows, top_m: int, popularity: np.ndarray) -> CooccurrenceTable:
        """The first ``top_m`` entries of every CSR row (rows hold their strongest neighbours first) as
        dense [I, top_m] arrays; popularity: [I] event counts."""
        num_items = len(rows.indptr) - 1
        lengths = np.minimum(np.diff(rows.indptr), top_m)
        owner = np.repeat(np.arange(num_items), lengths)
        rank = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        position = rows.indptr[owner] + rank
        neighbours = np.zeros((num_items, top_m), dtype=np.int64)
        weights = np.zeros((num_items, top_m), dtype=np.float32)
        neighbours[owner, rank] = rows.indices[position]
        weights[owner, rank] = rows.data[position]
        return cls(neighbours, weights, np.asarray(popularity, dtype=np.float32))


def fit_cooccurrence(
    events: EventTable, num_items: int, window: int = 3, top_m: int = 50
) -> CooccurrenceTable:
    """The baseline's co-occurrence fit (``models.baselines.cooccurrence.cooccurrence_matrix``: pairs within
    ``window`` events of one user's sequence, cosine-normalised counts) cut to ``top_m`` neighbours per item.
    events must be sorted by (user, timestamp)."""
    rows = cooccurrence_matrix(events, num_items, CooccurrenceConfig(window=window, max_neighbours=top_m))
    popularity = np.bincount(events.item.astype(np.int64), minlength=num_items)
    return CooccurrenceTable.from_rows(rows, top_m, popularity)


def cooccurrence_scores(table: CooccurrenceTable, recent_items: np.ndarray) -> np.ndarray:
    """recent_items [m] (oldest first) -> [I] scores: item j gets sum_i w(i, j) / recency rank of i."""
    scores = np.zeros(table.neighbours.shape[0], dtype=np.float64)
    if len(recent_items) == 0:
        return scores
    recency = 1.0 / np.arange(len(recent_items), 0, -1, dtype=np.float64)  # the newest item weighs 1
    np.add.at(
        scores,
        table.neighbours[recent_items].ravel(),
        (table.weights[recent_items] * recency[:, None]).ravel(),
    )
    scores[0] = 0.0
    return scores


class CooccurrenceRetriever:
    """Item-kNN over co-occurrence from the last ``recent`` history items; popularity fills the rest."""

    def __init__(self, table: CooccurrenceTable, recent: int = 10, exclude_seen: bool = False) -> None:
        self.table = table
        self.recent = recent
        self.exclude_seen = exclude_seen
        pop = table.popularity.astype(np.float64)
        self._prior = 1e-9 * pop / max(float(pop.max()), 1.0)  # below any co-occurrence weight
        self._prior[:FIRST_REAL_ID] = -np.inf

    def retrieve(self, histories: Sequence[UserHistory], k: int) -> list[np.ndarray]:
        out = []
        for history in histories:
            recent = history.item[-self.recent :].astype(np.int64)
            scores = cooccurrence_scores(self.table, recent[recent >= FIRST_REAL_ID]) + self._prior
            out.append(top_k_items(scores, k, seen_items(history, self.exclude_seen)))
        return out


class EncoderRetriever:
    """Candidates from a trained retrieval encoder: exact inner product over its item vectors.

    The request time of each history is taken as one second after its newest event (the moment the next
    session starts), the same convention the evaluation of the encoder uses. ``exclude_seen`` drops the
    history's items, as serving does by default.
    """

    def __init__(self, encoder: UserEncoder, exclude_seen: bool = False, batch_size: int = 64) -> None:
        self.encoder = encoder
        self.exclude_seen = exclude_seen
        self.batch_size = batch_size
        self._items = encoder.item_vectors().astype(np.float32)  # [I, d]

    def retrieve(self, histories: Sequence[UserHistory], k: int) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        for begin in range(0, len(histories), self.batch_size):
            chunk = list(histories[begin : begin + self.batch_size])
            contexts = [
                RequestContext(
                    timestamp=int(h.timestamp[-1]) + 1 if len(h) else 0,
                    scene=int(h.scene[-1]) if len(h) else 1,
                    device=int(h.device[-1]) if len(h) else 1,
                )
                for h in chunk
            ]
            scores = self.encoder.encode(chunk, contexts) @ self._items.T  # [b, I]
            for row, history in zip(scores, chunk, strict=True):
                out.append(top_k_items(row, k, seen_items(history, self.exclude_seen)))
        return out
