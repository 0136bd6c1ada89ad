"""What the reranker's candidate features read, fitted once from events before a cut (``FeatureState``).

``StaticInfo`` is the side information that no event changes: every category of an item (on MovieLens all
its genres, from ``Catalogue.genres``; where a catalogue stores one category per item, that one), the
item's year, the user's static features (gender, age band, occupation) and the dataset's funnel.

``FeatureState.fit(events, static, cut_time)`` keeps the events strictly before ``cut_time`` (all of them
when it is None) and fits:

- directed next-item counts n(a -> b): b is the event right after a in one user's sequence (a != b);
- the ``transitions`` source's windowed, smoothed successor share T(a, b) and the ``cooccurrence`` source's
  pruned cosine similarity (``models.baselines``; pass the sources' own tables to share one fit);
- an item timeline: every event's (item, time), sorted, with a running sum of the events' values, so the
  popularity of an item in any window and its mean value (rating) can be read for any request time,
  counting only the fitted events strictly before it;
- optional item vectors [num_items, d] (the session encoder's), for the user-vector and vector-similarity
  features.

Sparse tables are stored as sorted keys ``a * num_items + b`` with their values, so a block of (history
item, candidate) pairs is looked up in one ``searchsorted`` (``pair_values``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from models.baselines.cooccurrence import (
    CooccurrenceConfig,
    SparseRows,
    cooccurrence_matrix,
    ordered_pairs,
)
from models.baselines.transitions import TransitionConfig, transition_matrix
from models.data.schema import FIRST_REAL_ID, Action, Dataset, EventTable, Funnel

TIME_BITS = 32  # timeline key = item << TIME_BITS | time (unix seconds, clipped to [0, 2**32 - 1])
MAX_TIME = (1 << TIME_BITS) - 1


@dataclass(frozen=True)
class StaticInfo:
    """Side information known before any event. Category indices follow the dataset's category vocabulary
    (>= FIRST_REAL_ID); genres outside it get indices after it.

    item_category_indptr [num_items + 1], item_category [nnz]: CSR of every category of each item (sorted,
    distinct); item_year [num_items] float32 (0 = unknown); user_features: name -> [num_users] int index
    (0 pad, 1 unknown); multi_category: True when the categories came from the genres column (all of an
    item's), False when only the catalogue's single category per item was available.
    """

    num_items: int
    num_categories: int
    item_category_indptr: np.ndarray
    item_category: np.ndarray
    item_year: np.ndarray
    funnel: Funnel
    user_features: Mapping[str, np.ndarray] = field(default_factory=dict)
    multi_category: bool = False

    @staticmethod
    def from_dataset(dataset: Dataset) -> StaticInfo:
        catalogue = dataset.catalogue
        vocabulary = list(dataset.manifest.get("vocabularies", {}).get("category", []))
        index = {str(name): k + FIRST_REAL_ID for k, name in enumerate(vocabulary)}
        genres = catalogue.genres if len(catalogue.genres) == catalogue.num_items else []
        multi = any(genres)
        rows: list[list[int]] = []
        for item in range(catalogue.num_items):
            names = [g for g in genres[item].split("|") if g] if multi else []
            for name in names:
                index.setdefault(name, len(index) + FIRST_REAL_ID)
            found = {index[name] for name in names}
            single = int(catalogue.category[item])
            if not found and single >= FIRST_REAL_ID:
                found = {single}
            rows.append(sorted(found))
        lengths = np.array([len(r) for r in rows], dtype=np.int64)
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        flat = np.array([c for r in rows for c in r], dtype=np.int64)
        num_categories = max(len(index) + FIRST_REAL_ID, int(catalogue.category.max(initial=1)) + 1)
        year = np.zeros(catalogue.num_items, np.float32)
        if catalogue.year is not None:
            year = np.asarray(catalogue.year, dtype=np.float32)
        return StaticInfo(
            num_items=catalogue.num_items,
            num_categories=num_categories,
            item_category_indptr=indptr,
            item_category=flat,
            item_year=year,
            funnel=dataset.funnel,
            user_features=dict(dataset.user_features),
            multi_category=multi,
        )


@dataclass
class PairTable:
    """A sparse item-to-item table as sorted keys a * num_items + b [P] int64 with values [P] float32."""

    keys: np.ndarray
    values: np.ndarray

    @staticmethod
    def from_rows(rows: SparseRows, num_items: int) -> PairTable:
        lengths = np.diff(rows.indptr)
        sources = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
        keys = sources * num_items + rows.indices.astype(np.int64)
        order = np.argsort(keys, kind="stable")
        return PairTable(keys[order], rows.data[order].astype(np.float32))


def pair_values(
    table: PairTable, a: np.ndarray, b: np.ndarray, num_items: int, b_order: np.ndarray | None = None
) -> np.ndarray:
    """table(a_i, b_j) for a [m] x b [n] item indices -> [m, n] float32 (0 where the table has no entry).
    The keys are searched row by row in ascending order (a and b each sorted; ``b_order`` = b's argsort
    when the caller has it): each search starts where the previous one ended, so a request walks the
    table's rows once instead of jumping across it (the tables outgrow the CPU caches)."""
    if len(table.keys) == 0 or a.size == 0 or b.size == 0:
        return np.zeros((a.size, b.size), np.float32)
    a, b = a.astype(np.int64), b.astype(np.int64)
    a_order = np.argsort(a, kind="stable")
    b_order = np.argsort(b, kind="stable") if b_order is None else b_order
    query = (a[a_order][:, None] * num_items + b[b_order][None, :]).ravel()
    at = np.minimum(np.searchsorted(table.keys, query), len(table.keys) - 1)
    found = np.empty((a.size, b.size), np.float32)
    found[np.ix_(a_order, b_order)] = np.where(table.keys[at] == query, table.values[at], 0.0).reshape(
        a.size, b.size
    )
    return found


def next_item_counts(events: EventTable, num_items: int) -> tuple[PairTable, np.ndarray]:
    """Directed next-item counts (b right after a in one user's time-ordered events, a != b) -> (table of
    counts, out [num_items] float32: all transitions out of each item)."""
    _, a, b = next(ordered_pairs(events, 1, False), (1, np.zeros(0, np.int64), np.zeros(0, np.int64)))
    keys, counts = np.unique(a * num_items + b, return_counts=True)
    out = np.bincount(a, minlength=num_items).astype(np.float32)
    return PairTable(keys.astype(np.int64), counts.astype(np.float32)), out


@dataclass
class FeatureState:
    """Everything ``candidate_features`` reads that is fitted from events (see the module docstring).

    next_counts / next_out: next-item counts and out-degree [num_items]; share: the transitions source's
    T(a, b); cooccurrence: the cooccurrence source's cosine; timeline_key [E] int64 sorted item << 32 | time
    with timeline_value_sum [E + 1] float64 (running sum of values, 0 first) and item_start [num_items + 1]
    (first timeline row of each item); all_times [E] int64 sorted event times; has_values: the events carry
    ratings (``Action.RATE``); item_vectors [num_items, d] float32 or None.
    """

    static: StaticInfo
    cut_time: int | None
    next_counts: PairTable
    next_out: np.ndarray
    share: PairTable
    cooccurrence: PairTable
    timeline_key: np.ndarray
    timeline_value_sum: np.ndarray
    item_start: np.ndarray
    all_times: np.ndarray
    has_values: bool
    item_vectors: np.ndarray | None = None

    @property
    def num_items(self) -> int:
        return self.static.num_items

    @staticmethod
    def fit(
        events: EventTable,
        static: StaticInfo,
        cut_time: int | None = None,
        cooccurrence: SparseRows | None = None,
        transitions: SparseRows | None = None,
        item_vectors: np.ndarray | None = None,
    ) -> FeatureState:
        """events sorted by (user, time); only those strictly before ``cut_time`` are read (all when None).
        ``cooccurrence`` / ``transitions``: the sources' tables when they were fitted on the same events
        (default: fitted here with the sources' default configs)."""
        if cut_time is not None:
            events = events.take(events.timestamp < cut_time)
        num_items = static.num_items
        if cooccurrence is None:
            cooccurrence = cooccurrence_matrix(events, num_items, CooccurrenceConfig())
        if transitions is None:
            transitions = transition_matrix(events, num_items, TransitionConfig())
        counts, out = next_item_counts(events, num_items)
        items = events.item.astype(np.int64)
        times = np.clip(events.timestamp.astype(np.int64), 0, MAX_TIME)
        keys = (items << TIME_BITS) | times
        order = np.argsort(keys, kind="stable")
        values = events.value.astype(np.float64)[order]
        return FeatureState(
            static=static,
            cut_time=cut_time,
            next_counts=counts,
            next_out=out,
            share=PairTable.from_rows(transitions, num_items),
            cooccurrence=PairTable.from_rows(cooccurrence, num_items),
            timeline_key=keys[order],
            timeline_value_sum=np.concatenate([[0.0], np.cumsum(values)]),
            item_start=np.searchsorted(keys[order], np.arange(num_items + 1, dtype=np.int64) << TIME_BITS),
            all_times=np.sort(times),
            has_values=bool(np.any(events.action == Action.RATE)),
            item_vectors=None if item_vectors is None else np.asarray(item_vectors, np.float32),
        )

    def events_before_times(
        self, items: np.ndarray, times: np.ndarray, item_order: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """items [n], times [t] -> (count [t, n] float64 of fitted events of each item strictly before each
        time, sum of their values [t, n] float64). One search over the timeline with the n * t keys in
        ascending order (by item, then time), so each search starts where the previous one ended;
        ``item_order``: the items' argsort when the caller has it."""
        items = np.asarray(items, dtype=np.int64)
        times = np.clip(np.asarray(times, dtype=np.int64), 0, MAX_TIME)
        by_item = np.argsort(items, kind="stable") if item_order is None else item_order
        time_order = np.argsort(times, kind="stable")
        query = (items[by_item] << TIME_BITS)[:, None] | times[time_order][None, :]  # [n, t] ascending
        stop = np.empty((len(times), len(items)), dtype=np.int64)
        stop[np.ix_(time_order, by_item)] = (
            np.searchsorted(self.timeline_key, query.ravel()).reshape(len(items), len(times)).T
        )
        start = self.item_start[items][None, :]
        values = self.timeline_value_sum[stop] - self.timeline_value_sum[start]
        return (stop - start).astype(np.float64), values

    def first_time(self, items: np.ndarray) -> np.ndarray:
        """items [n] -> [n] int64 time of each item's first fitted event (meaningful where it has one)."""
        start = np.minimum(
            self.item_start[np.asarray(items, dtype=np.int64)], max(len(self.timeline_key) - 1, 0)
        )
        if len(self.timeline_key) == 0:
            return np.zeros(len(items), np.int64)
        return self.timeline_key[start] & MAX_TIME

    def totals_before(self, times: np.ndarray) -> np.ndarray:
        """times [t] -> [t] int64 fitted events (all items) strictly before each time."""
        return np.searchsorted(self.all_times, np.clip(np.asarray(times, dtype=np.int64), 0, MAX_TIME))
