"""Candidate sources: one request -> one ranked list of item indices with scores.

Every source drops the request's excluded items and the reserved rows (0 = pad, 1 = unknown) itself, so
the merge never has to. Sources never fail on an empty history: they return an empty list, and the merge
fills the answer from the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from models.data.positions import members, positions_in
from models.data.schema import FIRST_REAL_ID, NUM_ACTIONS, Action
from models.types import RequestContext, UserHistory


@dataclass
class CandidateRequest:
    """What every source may read for one request.

    history: the user's events, oldest first; user_vector: [d] float32 unit vector or None (no encoder,
    or it failed); exclude: [m] int64 items that must not be returned (seen items, the caller's list).
    """

    history: UserHistory
    context: RequestContext
    user_vector: np.ndarray | None = None
    exclude: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


@dataclass
class SourceList:
    """items [n] int64 best first, scores [n] float32 (higher is better, comparable within a source)."""

    items: np.ndarray
    scores: np.ndarray

    @staticmethod
    def empty() -> SourceList:
        return SourceList(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))

    def __len__(self) -> int:
        return int(self.items.shape[0])


T = TypeVar("T")


class LastRequest(Generic[T]):
    """``compute(request)``, remembered for the last request asked about. Score fusion asks a source
    twice per request (its list, then its scores of the union); one tuple, read once: safe across threads."""

    def __init__(self, compute: Callable[[CandidateRequest], T]) -> None:
        self._compute = compute
        self._last: tuple[CandidateRequest, T] | None = None

    def __call__(self, request: CandidateRequest) -> T:
        last = self._last
        if last is not None and last[0] is request:
            return last[1]
        value = self._compute(request)
        self._last = (request, value)
        return value


class CandidateSource(Protocol):
    name: str

    def candidates(self, request: CandidateRequest, count: int) -> SourceList:
        """At most ``count`` items, best first, none excluded and none below FIRST_REAL_ID."""
        ...

    def score_items(self, request: CandidateRequest, items: np.ndarray) -> np.ndarray:
        """This source's score of any ``items`` [n] int64 for the request, found by it or not -> [n]
        float32 (0 where it has nothing to say). Score fusion (``MergeConfig.fusion``) reads it."""
        ...


def _lookup(keys: np.ndarray, values: np.ndarray, items: np.ndarray) -> np.ndarray:
    """values[k] where keys[k] == item, else 0. keys [m] (distinct, any order), values [m] -> [n] float32."""
    at = positions_in(items, keys)
    out = np.zeros(len(items), dtype=np.float32)
    out[at >= 0] = values[at[at >= 0]]
    return out


def _allowed(items: np.ndarray, exclude: np.ndarray) -> np.ndarray:
    """[n] bool: real items not in ``exclude``."""
    keep = items >= FIRST_REAL_ID
    if exclude.size:
        keep &= ~members(items, exclude)
    return keep


def _top(items: np.ndarray, scores: np.ndarray, exclude: np.ndarray, count: int) -> SourceList:
    """Best ``count`` of (items, scores) after the exclusions; ties by smaller item index (deterministic).
    Only the items scoring at least the ``count``-th best score are sorted (all ties at that score kept,
    so the order is the full sort's)."""
    keep = _allowed(items, exclude)
    items, scores = items[keep], scores[keep]
    if 0 < count < len(items):
        threshold = np.partition(scores, len(items) - count)[len(items) - count]
        contenders = scores >= threshold
        items, scores = items[contenders], scores[contenders]
    order = np.lexsort((items, -scores))[:count]
    return SourceList(items[order].astype(np.int64), scores[order].astype(np.float32))


class ItemSearch(Protocol):
    def search(
        self, queries: np.ndarray, k: int, exclude: list[set[int]] | None = None
    ) -> tuple[np.ndarray, np.ndarray]: ...


class AnnSource:
    """Nearest item vectors to the request's user vector (the session encoder's retrieval)."""

    name = "ann"

    def __init__(self, index: ItemSearch) -> None:
        self.index = index

    def candidates(self, request: CandidateRequest, count: int) -> SourceList:
        if request.user_vector is None or count <= 0:
            return SourceList.empty()
        exclude = {int(item) for item in request.exclude.tolist()}
        items, scores = self.index.search(request.user_vector[None, :].astype(np.float32), count, [exclude])
        keep = items[0] >= FIRST_REAL_ID
        return SourceList(items[0][keep].astype(np.int64), scores[0][keep].astype(np.float32))

    def score_items(self, request: CandidateRequest, items: np.ndarray) -> np.ndarray:
        """Inner product of the user vector with each item's stored vector (0 without either)."""
        vectors = getattr(self.index, "vectors", None)
        if request.user_vector is None or vectors is None or items.size == 0:
            return np.zeros(items.shape[0], dtype=np.float32)
        return (vectors(items) @ request.user_vector.astype(np.float32)).astype(np.float32)


# The neighbour walk sums its scores over an array as long as the catalogue when that is at most this many
# times the neighbours gathered (cheaper than sorting them); a large catalogue sorts instead. Same result.
DENSE_WALK_FACTOR = 4


class CooccurrenceSource:
    """Items that co-occur with the user's last ``history_length`` items (item-kNN).

    neighbours: CSR rows (indptr [I + 1], indices [nnz], data [nnz]) of item-to-item similarity. Score of
    item j = Σ over recent items h (newest first, age a) of decay^a · sim(h, j). Sparse: the cost grows with
    the neighbours gathered, not with the catalogue. The same walk serves any item-to-item table: named
    ``transitions`` it reads the directed successor shares of ``models.baselines.transitions``.
    """

    def __init__(
        self,
        indptr: np.ndarray,
        indices: np.ndarray,
        data: np.ndarray,
        history_length: int = 20,
        decay: float = 0.8,
        name: str = "cooccurrence",
    ) -> None:
        self.name = name
        self.indptr, self.indices, self.data = indptr, indices, data
        self.history_length = history_length
        self.decay = decay
        self._neighbours = LastRequest(self._neighbour_scores)

    def seed_items(self, request: CandidateRequest) -> np.ndarray:
        """Anchors first (the caller's "more like these"), then the history, newest first. [m] int64."""
        history = request.history.item[::-1][: self.history_length].astype(np.int64)
        seeds = np.concatenate([np.asarray(request.context.anchors, dtype=np.int64), history])
        return seeds[(seeds >= FIRST_REAL_ID) & (seeds < len(self.indptr) - 1)]

    def neighbour_scores(self, request: CandidateRequest) -> tuple[np.ndarray, np.ndarray]:
        """Every item some seed points to, with its score (no exclusions, no cut). -> ([m] int64, [m])."""
        return self._neighbours(request)

    def _neighbour_scores(self, request: CandidateRequest) -> tuple[np.ndarray, np.ndarray]:
        seeds = self.seed_items(request)
        starts, stops = self.indptr[seeds], self.indptr[seeds + 1]
        lengths = stops - starts
        if seeds.size == 0 or int(lengths.sum()) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float64)
        positions = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(
            int(lengths.sum())
        )
        weights = np.repeat(self.decay ** np.arange(len(seeds), dtype=np.float64), lengths)
        gathered, weighted = self.indices[positions], weights * self.data[positions]
        num_items = len(self.indptr) - 1
        if num_items <= DENSE_WALK_FACTOR * gathered.size:  # small catalogue: one pass, no sort
            items = np.flatnonzero(np.bincount(gathered, minlength=num_items))
            scores = np.bincount(gathered, weighted, minlength=num_items)[items]
            return items.astype(np.int64), scores
        items, inverse = np.unique(gathered, return_inverse=True)
        scores = np.bincount(inverse, weighted, minlength=len(items))
        return items.astype(np.int64), scores

    def item_neighbours(self, item: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        """One item's strongest ``count`` neighbours (similar items), best first; ties by item index.
        -> (items [<= count] int64, scores [<= count] float32)."""
        if not FIRST_REAL_ID <= item < len(self.indptr) - 1 or count <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        start, stop = int(self.indptr[item]), int(self.indptr[item + 1])
        found = _top(
            self.indices[start:stop].astype(np.int64), self.data[start:stop], np.zeros(0, np.int64), count
        )
        return found.items, found.scores

    def candidates(self, request: CandidateRequest, count: int) -> SourceList:
        if count <= 0:
            return SourceList.empty()
        items, scores = self.neighbour_scores(request)
        if items.size == 0:
            return SourceList.empty()
        return _top(items, scores, request.exclude, count)

    def score_items(self, request: CandidateRequest, items: np.ndarray) -> np.ndarray:
        keys, values = self.neighbour_scores(request)
        return _lookup(keys, values, items)


# how much one event says that its item comes back: a cart or a favourite more than a view. Chosen on
# Taobao's ranker-period requests (docs/pipeline.md, "Re-visits by decayed frequency"); a purchase counts
# like a view (0.5 lost there), a rating like a view
REPEAT_ACTION_WEIGHTS: dict[int, float] = {int(Action.FAV): 1.5, int(Action.CART): 2.0}


class RecentItemsSource:
    """The user's own items (re-visits, re-orders), scored by time-decayed, action-weighted frequency:
    score(i) = sum over the history's events e of item i of weight(action_e) * decay^age_e, where age_e
    counts the events after e (0 = the newest). decay 1 with no weights is a plain count; decay -> 0 is
    newest first. The ``max_items`` best are the candidates."""

    name = "recent"

    def __init__(
        self,
        max_items: int = 50,
        decay: float = 0.98,
        action_weights: dict[int, float] | None = None,
    ) -> None:
        if not 0.0 < decay <= 1.0:
            raise ValueError(f"recent-items decay {decay}: expected 0 < decay <= 1")
        self.max_items = max_items
        self.decay = decay
        weights = np.ones(NUM_ACTIONS, dtype=np.float64)
        for action, weight in (REPEAT_ACTION_WEIGHTS if action_weights is None else action_weights).items():
            weights[int(action)] = weight
        self.action_weights = weights  # [NUM_ACTIONS]

    def to_dict(self) -> dict[str, Any]:
        """The scoring as a bundle manifest stores it (``from_dict`` reads it back)."""
        weights = {
            int(action): float(weight) for action, weight in enumerate(self.action_weights) if weight != 1.0
        }
        return {"max_items": self.max_items, "decay": self.decay, "action_weights": weights}

    @staticmethod
    def from_dict(stored: dict[str, Any]) -> RecentItemsSource:
        weights = {int(action): float(weight) for action, weight in stored.get("action_weights", {}).items()}
        return RecentItemsSource(int(stored.get("max_items", 50)), float(stored["decay"]), weights)

    def recent_scores(self, request: CandidateRequest) -> tuple[np.ndarray, np.ndarray]:
        """The ``max_items`` best distinct history items, best first (ties: the newer), with their scores.
        -> (items [n] int64, scores [n] float64)."""
        items = request.history.item[::-1].astype(np.int64)  # newest first
        if items.size == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float64)
        actions = np.clip(request.history.action[::-1].astype(np.int64), 0, NUM_ACTIONS - 1)
        distinct, first, inverse = np.unique(items, return_index=True, return_inverse=True)
        decayed = self.action_weights[actions] * self.decay ** np.arange(len(items), dtype=np.float64)
        scores = np.bincount(inverse.reshape(-1), weights=decayed, minlength=len(distinct))
        order = np.lexsort((first, -scores))[: self.max_items]
        return distinct[order], scores[order]

    def candidates(self, request: CandidateRequest, count: int) -> SourceList:
        if count <= 0:
            return SourceList.empty()
        distinct, scores = self.recent_scores(request)
        keep = _allowed(distinct, request.exclude)
        return SourceList(distinct[keep][:count], scores[keep][:count].astype(np.float32))

    def score_items(self, request: CandidateRequest, items: np.ndarray) -> np.ndarray:
        keys, values = self.recent_scores(request)
        return _lookup(keys, values, items)


class PopularSource:
    """A fixed popularity order computed when the bundle was built (recency-weighted or plain counts)."""

    def __init__(self, scores: np.ndarray, name: str = "popular") -> None:
        """scores: [num_items] float (rows 0/1 are never returned)."""
        self.name = name
        self.scores = np.asarray(scores, dtype=np.float32)
        order = np.argsort(-self.scores, kind="stable")
        self.order = order[(order >= FIRST_REAL_ID) & (self.scores[order] > 0)].astype(np.int64)

    def candidates(self, request: CandidateRequest, count: int) -> SourceList:
        if count <= 0:
            return SourceList.empty()
        head = self.order[: count + request.exclude.size]
        head = head[_allowed(head, request.exclude)][:count]
        return SourceList(head, self.scores[head])

    def score_items(self, request: CandidateRequest, items: np.ndarray) -> np.ndarray:
        """log(popularity / the most popular's + 1e-6): scale-free (counts or shares alike) and log-shaped.
        Popularity is heavy-tailed; standardised as it is, its few head items would swamp score fusion
        (synthetic, seed 0: score fusion lost to rank fusion with the raw share, won +5.7% on test with
        its log)."""
        top = float(self.scores.max()) if self.scores.size else 0.0
        share = np.maximum(self.scores[items], 0.0) / top if top > 0 else np.zeros(items.shape[0])
        return np.log(share + 1e-6).astype(np.float32)


class CategorySource:
    """Popular items of the categories the user has just been browsing ("more from what you looked at").

    Category weight w_c = Σ over the last ``history_length`` items h (newest first, age a) of
    decay^a · [category(h) = c]; score(i) = w_category(i) · the share of i in its category's popularity.
    The list walks the ``max_categories`` heaviest categories. Items of an unknown category (0 or 1) are
    never scored, so on a catalogue without categories the source stays empty.
    """

    name = "category"

    def __init__(
        self,
        item_category: np.ndarray,
        popularity: np.ndarray,
        history_length: int = 20,
        decay: float = 0.85,
        max_categories: int = 5,
    ) -> None:
        """item_category, popularity: [num_items] (popularity >= 0 counts or shares; rows 0/1 unused)."""
        category = np.asarray(item_category, dtype=np.int64)
        scores = np.where(np.isfinite(popularity), np.maximum(popularity, 0.0), 0.0).astype(np.float64)
        scores[:FIRST_REAL_ID] = 0.0
        scores[category < FIRST_REAL_ID] = 0.0
        totals = np.bincount(category, weights=scores, minlength=int(category.max(initial=1)) + 1)
        self.category = category
        self.popularity = scores  # [num_items] float64 as used (what a saved bundle stores)
        self.share = np.where(scores > 0, scores / np.maximum(totals[category], 1e-12), 0.0)
        eligible = np.flatnonzero(scores > 0)
        order = eligible[
            np.lexsort((eligible, -scores[eligible], category[eligible]))
        ]  # by category, best first
        self.items_by_category = order.astype(np.int64)
        self.offsets = np.searchsorted(category[order], np.arange(len(totals) + 1))
        self.history_length = history_length
        self.decay = decay
        self.max_categories = max_categories
        self._weights = LastRequest(self._category_weights)

    def category_weights(self, request: CandidateRequest) -> tuple[np.ndarray, np.ndarray]:
        """(categories [m] int64, weights [m] float64) of the recent history, heaviest first."""
        return self._weights(request)

    def _category_weights(self, request: CandidateRequest) -> tuple[np.ndarray, np.ndarray]:
        items = request.history.item[::-1][: self.history_length].astype(np.int64)
        items = items[(items >= FIRST_REAL_ID) & (items < len(self.category))]
        categories = self.category[items]
        known = categories >= FIRST_REAL_ID
        if not known.any():
            return np.zeros(0, np.int64), np.zeros(0, np.float64)
        ages = np.flatnonzero(known)
        found, inverse = np.unique(categories[known], return_inverse=True)
        weights = np.bincount(inverse, self.decay ** ages.astype(np.float64), minlength=len(found))
        order = np.lexsort((found, -weights))
        return found[order], weights[order]

    def candidates(self, request: CandidateRequest, count: int) -> SourceList:
        if count <= 0:
            return SourceList.empty()
        categories, weights = self.category_weights(request)
        chunks, chunk_scores = [], []
        for category, weight in zip(
            categories[: self.max_categories].tolist(), weights[: self.max_categories].tolist(), strict=True
        ):
            if category + 1 >= len(self.offsets):
                continue
            start, stop = int(self.offsets[category]), int(self.offsets[category + 1])
            head = self.items_by_category[start : min(stop, start + count + request.exclude.size)]
            chunks.append(head)
            chunk_scores.append(weight * self.share[head])
        if not chunks:
            return SourceList.empty()
        return _top(np.concatenate(chunks), np.concatenate(chunk_scores), request.exclude, count)

    def score_items(self, request: CandidateRequest, items: np.ndarray) -> np.ndarray:
        categories, weights = self.category_weights(request)
        items = np.asarray(items, dtype=np.int64)
        inside = (items >= 0) & (items < len(self.category))
        out = np.zeros(len(items), dtype=np.float32)
        out[inside] = _lookup(categories, weights, self.category[items[inside]]) * self.share[items[inside]]
        return out
