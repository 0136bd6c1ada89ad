"""The fitted tables the candidate features read (``FeatureState``), each against a plain-Python definition
of what it counts, so a wrong fit cannot hide behind a reference that reads the same tables."""

import dataclasses
from collections import Counter

import numpy as np
import pytest

from models.baselines.cooccurrence import SparseRows
from models.candidates.feature_state import FeatureState, PairTable, StaticInfo, next_item_counts, pair_values
from models.data.schema import FIRST_REAL_ID, Dataset
from tests.models.candidates.feature_data import side_dataset, unrated_events


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return side_dataset()


def _pairs_of(table: PairTable, num_items: int) -> dict[tuple[int, int], float]:
    """The table's entries as {(a, b): value}."""
    return {
        (int(k) // num_items, int(k) % num_items): float(v)
        for k, v in zip(table.keys.tolist(), table.values.tolist(), strict=True)
    }


def test_next_item_counts_count_each_user_s_consecutive_distinct_items_across_sessions(
    dataset: Dataset,
) -> None:
    events = dataset.events
    order = np.lexsort((events.timestamp, events.user))
    assert np.array_equal(order, np.arange(len(events)))  # stored by (user, time): a pair walk reads that
    expected: Counter[tuple[int, int]] = Counter()
    crossing = 0
    for i in range(len(events) - 1):
        a, b = int(events.item[i]), int(events.item[i + 1])
        if events.user[i] == events.user[i + 1] and a != b:
            expected[(a, b)] += 1
            crossing += int(events.session[i] != events.session[i + 1])
    assert crossing > 0  # pairs across a session boundary count too: the test can see a session filter
    counts, out = next_item_counts(events, dataset.num_items)
    assert _pairs_of(counts, dataset.num_items) == {pair: float(n) for pair, n in expected.items()}
    assert np.all(np.diff(counts.keys) > 0)  # sorted and unique: the lookups binary-search them
    by_source: Counter[int] = Counter()
    for (a, _), n in expected.items():
        by_source[a] += n
    assert out.tolist() == [float(by_source[item]) for item in range(dataset.num_items)]


def test_the_state_reads_events_strictly_before_its_cut_even_at_the_cut_s_own_second(
    dataset: Dataset,
) -> None:
    static = StaticInfo.from_dataset(dataset)
    times = dataset.events.timestamp
    cut = int(np.sort(times)[len(times) // 2])  # an event's own time
    at_cut = int((times == cut).sum())
    assert at_cut > 0
    state = FeatureState.fit(dataset.events, static, cut)
    before = FeatureState.fit(dataset.events.take(times < cut), static)
    through = FeatureState.fit(dataset.events.take(times <= cut), static)
    assert len(state.all_times) == int((times < cut).sum()) == len(through.all_times) - at_cut
    for name in ("timeline_key", "timeline_value_sum", "item_start", "all_times", "next_out"):
        np.testing.assert_array_equal(getattr(state, name), getattr(before, name))
    for name in ("next_counts", "share", "cooccurrence"):
        np.testing.assert_array_equal(getattr(state, name).keys, getattr(before, name).keys)
        np.testing.assert_array_equal(getattr(state, name).values, getattr(before, name).values)


def test_the_timeline_counts_and_sums_each_item_s_events_before_each_time(dataset: Dataset) -> None:
    events = dataset.events
    state = FeatureState.fit(events, StaticInfo.from_dataset(dataset))
    items = np.array([5, 2, 40, 5, 17, 2], dtype=np.int64)  # unsorted, repeated
    own = int(events.timestamp[events.item == 17][0])  # an event's own second: that event is not before it
    times = np.array([*np.quantile(events.timestamp, [0.9, 0.1, 0.5]).astype(np.int64), own])
    times = np.append(times, int(events.timestamp.max()) + 1)  # after the last event: everything counts
    count, total = state.events_before_times(items, times)
    for t, time in enumerate(times.tolist()):
        for n, item in enumerate(items.tolist()):
            mine = (events.item == item) & (events.timestamp < time)
            assert count[t, n] == mine.sum()
            assert total[t, n] == pytest.approx(float(events.value[mine].astype(np.float64).sum()))
    assert state.totals_before(times).tolist() == [int((events.timestamp < t).sum()) for t in times.tolist()]
    for item in items.tolist():
        assert state.first_time(np.array([item]))[0] == events.timestamp[events.item == item].min()


def test_pair_values_look_up_every_pair_and_zero_the_missing_ones(dataset: Dataset) -> None:
    state = FeatureState.fit(dataset.events, StaticInfo.from_dataset(dataset))
    n = dataset.num_items
    table = _pairs_of(state.next_counts, n)
    a = np.array([9, 3, 9, 30], dtype=np.int64)
    b = np.array([4, 77, 4, 12, 3, 50], dtype=np.int64)
    full = pair_values(state.next_counts, a, b, n)
    assert full.shape == (4, 6) and full.dtype == np.float32
    assert full.tolist() == [[table.get((x, y), 0.0) for y in b.tolist()] for x in a.tolist()]
    # one candidate, one history item: the same values as the wider lookups
    assert pair_values(state.next_counts, a, b[:1], n).tolist() == full[:, :1].tolist()
    assert pair_values(state.next_counts, a[:1], b, n).tolist() == full[:1].tolist()
    some = next(iter(table))
    assert pair_values(state.next_counts, np.array([some[0]]), np.array([some[1]]), n)[0, 0] == table[some]


def test_values_are_read_only_from_logs_with_ratings(dataset: Dataset) -> None:
    static = StaticInfo.from_dataset(dataset)
    assert FeatureState.fit(dataset.events, static).has_values
    assert not FeatureState.fit(unrated_events(dataset), static).has_values


def test_a_pair_table_holds_every_entry_of_its_rows() -> None:
    rows = SparseRows(
        np.array([0, 0, 0, 2, 3, 3, 5]),  # rows 2, 3 and 5 hold entries
        np.array([5, 3, 2, 4, 2]),
        np.array([0.5, 0.25, 2.0, 1.0, 3.0], dtype=np.float32),
    )
    table = PairTable.from_rows(rows, 6)
    assert _pairs_of(table, 6) == {(2, 5): 0.5, (2, 3): 0.25, (3, 2): 2.0, (5, 4): 1.0, (5, 2): 3.0}
    assert np.all(np.diff(table.keys) > 0)
    values = pair_values(table, np.array([5, 2]), np.array([2, 3, 4, 5]), 6)
    assert values.tolist() == [[3.0, 0.0, 1.0, 0.0], [0.0, 0.25, 0.0, 0.5]]


def test_a_state_fitted_on_no_events_reads_zeros(dataset: Dataset) -> None:
    empty = dataset.events.take(np.zeros(len(dataset.events), dtype=bool))
    counts, out = next_item_counts(empty, dataset.num_items)
    assert len(counts.keys) == 0 and out.shape == (dataset.num_items,) and not out.any()
    state = FeatureState.fit(empty, StaticInfo.from_dataset(dataset))
    items = np.array([4, 2, 9], dtype=np.int64)
    count, total = state.events_before_times(items, np.array([10**9, 0]))
    assert count.shape == total.shape == (2, 3) and not count.any() and not total.any()
    assert state.first_time(items).tolist() == [0, 0, 0]
    assert state.totals_before(np.array([10**9])).tolist() == [0]
    assert pair_values(state.next_counts, items, items, dataset.num_items).tolist() == [[0.0] * 3] * 3
    assert not state.has_values


def test_the_fit_keeps_its_cut_and_the_item_vectors(dataset: Dataset) -> None:
    vectors = np.arange(dataset.num_items * 2, dtype=np.float64).reshape(-1, 2)
    cut = int(np.median(dataset.events.timestamp))
    state = FeatureState.fit(
        dataset.events, StaticInfo.from_dataset(dataset), cut_time=cut, item_vectors=vectors
    )
    assert state.cut_time == cut
    assert state.item_vectors is not None and state.item_vectors.dtype == np.float32
    np.testing.assert_array_equal(state.item_vectors, vectors.astype(np.float32))
    assert FeatureState.fit(dataset.events, StaticInfo.from_dataset(dataset)).item_vectors is None


def test_static_info_numbers_genres_beyond_the_vocabulary_and_reads_no_year_as_zero(dataset: Dataset) -> None:
    genres = list(dataset.catalogue.genres)
    genres[7] = "Western|Drama"  # a genre the vocabulary lacks
    catalogue = dataclasses.replace(dataset.catalogue, genres=genres, year=None)
    static = StaticInfo.from_dataset(dataclasses.replace(dataset, catalogue=catalogue))
    vocabulary = dataset.manifest["vocabularies"]["category"]
    western = len(vocabulary) + FIRST_REAL_ID  # the next id after the vocabulary's
    lo, hi = static.item_category_indptr[7], static.item_category_indptr[8]
    assert static.item_category[lo:hi].tolist() == sorted(
        [vocabulary.index("Drama") + FIRST_REAL_ID, western]
    )
    assert static.num_categories == western + 1
    assert static.item_year.shape == (dataset.num_items,) and not static.item_year.any()
    # without a vocabulary in the manifest, genres are numbered in order of first appearance
    bare = StaticInfo.from_dataset(dataclasses.replace(dataset, catalogue=catalogue, manifest={}))
    first_seen = list(dict.fromkeys(g for row in genres for g in row.split("|") if g))
    for item in (7, 12, 30):
        lo, hi = bare.item_category_indptr[item], bare.item_category_indptr[item + 1]
        names = [g for g in genres[item].split("|") if g]
        assert bare.item_category[lo:hi].tolist() == sorted(
            first_seen.index(g) + FIRST_REAL_ID for g in names
        )
    # genres that do not cover the catalogue are ignored: each item keeps its single category
    short = dataclasses.replace(dataset.catalogue, genres=genres[:5])
    single = StaticInfo.from_dataset(dataclasses.replace(dataset, catalogue=short))
    assert not single.multi_category
    for item in range(dataset.num_items):
        lo, hi = single.item_category_indptr[item], single.item_category_indptr[item + 1]
        category = int(dataset.catalogue.category[item])
        assert single.item_category[lo:hi].tolist() == ([category] if category >= FIRST_REAL_ID else [])
