import dataclasses
import math
import statistics

import numpy as np
import pytest

from models.candidates.feature_state import MAX_TIME, TIME_BITS, FeatureState, StaticInfo
from models.candidates.features import (
    ABLATIONS,
    CONTEXT_NAMES,
    DAY_SECONDS,
    FEATURE_NAMES,
    RECENT_SECONDS,
    REPEAT_NAMES,
    SESSION_GAP_SECONDS,
    SIDE_NAMES,
    USER_FIELDS,
    ablation_columns,
    candidate_features,
    feature_groups,
    feature_names,
)
from models.candidates.generator import fit_sources
from models.candidates.merge import MergeConfig, MergedCandidates, merge_lists
from models.candidates.served import head_of
from models.candidates.sources import CandidateRequest
from models.data.histories import history_from_rows
from models.data.schema import ACTION_STRENGTH, FIRST_REAL_ID, Action, Dataset
from models.inference import RequestContext, UserHistory
from tests.models.candidates.feature_data import GENRES, side_dataset, unrated_events

SOURCES = ("cooccurrence", "transitions", "recent", "popular")


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return side_dataset()


def _table(keys: np.ndarray, values: np.ndarray) -> dict[int, float]:
    return {int(k): float(v) for k, v in zip(keys.tolist(), values.tolist(), strict=True)}


def reference_features(
    t: int,
    history: UserHistory,
    merged: MergedCandidates,
    state: FeatureState,
    user_vector: np.ndarray | None,
) -> np.ndarray:
    """The features one candidate at a time, in plain Python (slow; the definition the vectorised code
    must meet)."""
    n_items = state.num_items
    nxt = _table(state.next_counts.keys, state.next_counts.values)
    share = _table(state.share.keys, state.share.values)
    cooc = _table(state.cooccurrence.keys, state.cooccurrence.values)
    timeline_items = (state.timeline_key >> TIME_BITS).tolist()
    timeline_times = (state.timeline_key & MAX_TIME).tolist()
    timeline_values = np.diff(state.timeline_value_sum).tolist()
    all_times = state.all_times.tolist()
    static = state.static

    def categories(item: int) -> set[int]:
        lo, hi = static.item_category_indptr[item], static.item_category_indptr[item + 1]
        return set(static.item_category[lo:hi].tolist())

    def before(item: int, time: int) -> tuple[int, float, list[int]]:
        picked = [
            (tt, v)
            for it, tt, v in zip(timeline_items, timeline_times, timeline_values, strict=True)
            if it == item and tt < time
        ]
        return len(picked), sum(v for _, v in picked), [tt for tt, _ in picked]

    def total(time: int) -> int:
        return sum(1 for tt in all_times if tt < time)

    events = [
        (int(i), int(ts), int(a), float(v))
        for i, ts, a, v in zip(history.item, history.timestamp, history.action, history.value, strict=True)
    ][::-1]
    hist = [e for e in events if FIRST_REAL_ID <= e[0] < n_items]
    items = [e[0] for e in hist]
    known = [len(categories(i)) > 0 for i in items]

    def cat_share(window: list[int], window_known: list[bool], category: int) -> float:
        return sum(1 for i in window if category in categories(i)) / max(sum(window_known), 1)

    user_years = [float(static.item_year[i]) for i in items if static.item_year[i] > 0]
    rated = [e[3] for e in events if e[2] == int(Action.RATE)]
    out_rows = []
    for j, c in enumerate(merged.items.tolist()):
        row: list[float] = []
        for s in range(len(merged.sources)):
            column = merged.source_score[:, s].astype(np.float64).tolist()
            mean, spread = statistics.fmean(column), statistics.pstdev(column)
            rank = int(merged.source_rank[j, s])
            z = (column[j] - mean) / spread if spread > 0 else 0.0
            row += [column[j], z, float(rank), float(rank >= 0)]
        row += [float(merged.merge_score[j]), float(j), float((merged.source_rank[j] >= 0).sum())]
        counts = [nxt.get(h * n_items + c, 0.0) for h in items[:3]]
        probs = [nxt.get(h * n_items + c, 0.0) / max(float(state.next_out[h]), 1.0) for h in items[:3]]
        sims = [cooc.get(h * n_items + c, 0.0) for h in items[:20]]
        if items:
            row += [math.log1p(counts[0]), probs[0], math.log1p(sum(counts)), statistics.fmean(probs)]
            row += [share.get(items[0] * n_items + c, 0.0), sims[0], statistics.fmean(sims[:5])]
            row += [statistics.fmean(sims), max(sims)]
        else:
            row += [0.0] * 9
        if state.item_vectors is None:
            row += [0.0] * 4
        else:
            vectors = state.item_vectors.astype(np.float64)
            dot = 0.0 if user_vector is None else float(vectors[c] @ user_vector)
            similar = statistics.fmean(float(vectors[h] @ vectors[c]) for h in items[:5]) if items else 0.0
            row += [dot, similar, 1.0, 0.0 if user_vector is None else 1.0]
        count, value_sum, times = before(c, t)
        recent, previous = before(c, t)[0] - before(c, t - RECENT_SECONDS)[0], 0
        previous = before(c, t - RECENT_SECONDS)[0] - before(c, t - 2 * RECENT_SECONDS)[0]
        day = count - before(c, t - DAY_SECONDS)[0]
        row += [math.log1p(count), count / max(total(t), 1), math.log1p(recent)]
        row += [
            recent / max(total(t) - total(t - RECENT_SECONDS), 1),
            math.log1p(recent) - math.log1p(previous),
        ]
        row += [math.log1p(day), day / max(total(t) - total(t - DAY_SECONDS), 1)]
        row += [math.log1p(max(t - min(times), 0)) if times else -1.0]
        row += [math.log1p(max(t - events[0][1], 0)) if events else -1.0, float(len(history))]
        position, later = 0, t
        for _, ts, _, _ in events:
            if later - ts > SESSION_GAP_SECONDS:
                break
            position, later = position + 1, ts
        row.append(float(position))
        seen = [k for k, i in enumerate(items) if i == c]
        if seen:
            actions = [hist[k][2] for k in seen]
            levels = static.funnel.levels(np.array(actions), np.array([hist[k][3] for k in seen], np.float32))
            row += [1.0, float(len(seen)), 1.0 / (1 + seen[0]), math.log1p(max(t - hist[seen[0]][1], 0))]
            row += [float(max(ACTION_STRENGTH[a] for a in actions)), float(levels.max())]
        else:
            row += [0.0, 0.0, 0.0, -1.0, 0.0, 0.0]
        mine = categories(c)
        shares = [cat_share(items, known, k) for k in mine]
        shares5 = [cat_share(items[:5], known[:5], k) for k in mine]
        last = categories(items[0]) if items else set()
        union = len(mine | last)
        row += [max(shares, default=0.0), sum(shares) / max(len(mine), 1), max(shares5, default=0.0)]
        row += [len(mine & last) / union if union else 0.0, float(len(mine))]
        year = float(static.item_year[c])
        if user_years and year > 0:
            gap = year - statistics.fmean(user_years)
            row += [year, gap, gap / (statistics.pstdev(user_years) + 1.0)]
        else:
            row += [year, 0.0, 0.0]
        row += [float(history.user_features.get(name, 0)) for name in USER_FIELDS]
        if state.has_values and count > 0:
            mean = value_sum / count
            row += [mean, mean - statistics.fmean(rated) if rated else 0.0]
        else:
            row += [0.0, 0.0]
        out_rows.append(row)
    return np.array(out_rows, dtype=np.float64).reshape(len(merged), -1)


def _requests(dataset: Dataset, count: int) -> list[tuple[int, UserHistory]]:
    """(request time, history) of ``count`` users: each one's last event is the request, the rest the
    history (the last user gets an empty history)."""
    events = dataset.events
    offsets = events.user_offsets(dataset.num_users)
    users = np.flatnonzero(np.diff(offsets) >= 2)[:count].tolist()
    out = []
    for user in users:
        lo, hi = int(offsets[user]), int(offsets[user + 1])
        history = history_from_rows(events, slice(max(lo, hi - 40), hi - 1), dataset.user_features, user)
        out.append((int(events.timestamp[hi - 1]), history))
    out.append((int(events.timestamp.max()) + 5, UserHistory.empty()))
    return out


def _sources_before(dataset: Dataset, share: float) -> tuple[int, dict]:
    """(cut time at the ``share`` quantile of the event times, the candidate sources fitted on the events
    strictly before it)."""
    cut = int(np.quantile(dataset.events.timestamp, share))
    train = dataset.events.take(dataset.events.timestamp < cut)
    return cut, fit_sources(train, dataset.num_items, dataset.num_scenes)


def _merged(sources: dict, history: UserHistory, time: int) -> MergedCandidates:
    config = MergeConfig(SOURCES, (30, 30, 20, 30), (1.0, 0.5, 1.0, 0.3), total=60, allow_seen=True)
    request = CandidateRequest(history, RequestContext(time))
    return merge_lists([sources[name].candidates(request, 30) for name in SOURCES], config)


def test_static_info_keeps_every_genre_of_an_item(dataset: Dataset) -> None:
    static = StaticInfo.from_dataset(dataset)
    assert static.multi_category
    for item in range(FIRST_REAL_ID, dataset.num_items):
        names = [g for g in dataset.catalogue.genres[item].split("|") if g]
        lo, hi = static.item_category_indptr[item], static.item_category_indptr[item + 1]
        assert sorted(static.item_category[lo:hi].tolist()) == sorted(GENRES.index(g) + 2 for g in names)
    single = StaticInfo.from_dataset(
        dataclasses.replace(
            dataset, catalogue=dataclasses.replace(dataset.catalogue, genres=[""] * dataset.num_items)
        )
    )
    assert not single.multi_category
    assert np.array_equal(np.diff(single.item_category_indptr), (dataset.catalogue.category >= 2).astype(int))


@pytest.mark.parametrize("with_vectors", [False, True])
def test_vectorised_features_equal_the_per_candidate_reference(dataset: Dataset, with_vectors: bool) -> None:
    cut, sources = _sources_before(dataset, 0.8)
    vectors = np.random.default_rng(0).normal(size=(dataset.num_items, 8)).astype(np.float32)
    state = FeatureState.fit(
        dataset.events, StaticInfo.from_dataset(dataset), cut, None, None, vectors if with_vectors else None
    )
    user_vector = vectors[5] if with_vectors else None
    checked = 0
    for time, history in _requests(dataset, 12):
        merged = _merged(sources, history, time)
        fast = candidate_features(time, history, merged, state, user_vector)
        assert fast.dtype == np.float32 and fast.shape == (len(merged), len(feature_names(SOURCES)))
        slow = reference_features(time, history, merged, state, user_vector)
        np.testing.assert_allclose(fast, slow.astype(np.float32), rtol=2e-5, atol=2e-5)
        checked += int(fast[:, feature_names(SOURCES).index("seen")].sum())
    assert checked > 0  # some candidates were in their history: the repeat features were exercised


def _edited(history: UserHistory, keep: slice, items: np.ndarray | None = None) -> UserHistory:
    """The history's events ``keep`` with their items replaced by ``items`` where given."""
    fields = {
        f.name: getattr(history, f.name)[keep]
        for f in dataclasses.fields(history)
        if f.name != "user_features"
    }
    if items is not None:
        fields["item"] = items[keep]
    return UserHistory(**fields, user_features=history.user_features)


def test_edge_requests_equal_the_per_candidate_reference(dataset: Dataset) -> None:
    """The cases the ordinary requests never hit: a one-event history, unknown items in the history, one
    candidate, item vectors without a user vector, the request exactly a session gap after
    the last event or in its very second, and a log without ratings."""
    cut, sources = _sources_before(dataset, 0.8)
    vectors = np.random.default_rng(1).normal(size=(dataset.num_items, 8)).astype(np.float32)
    static = StaticInfo.from_dataset(dataset)
    state = FeatureState.fit(dataset.events, static, cut, None, None, vectors)
    unrated = FeatureState.fit(unrated_events(dataset), static, cut)
    time, history = next((t, h) for t, h in _requests(dataset, 12) if len(h) >= 12)
    unknown = history.item.copy()
    unknown[[-1, -4, 2]] = 1  # the unknown item: newest, middle and old events
    gap_time = int(history.timestamp[-1]) + SESSION_GAP_SECONDS
    cases = [
        (time, _edited(history, slice(-1, None)), state, vectors[3], 0),
        (time, _edited(history, slice(None), unknown), state, vectors[3], 0),
        (time, history, state, vectors[3], 1),
        (time, history, state, None, 0),
        (gap_time, history, state, vectors[3], 0),
        (int(history.timestamp[-1]), history, state, vectors[3], 0),  # the last event's own second
        (time, history, unrated, None, 0),
    ]
    names = feature_names(SOURCES)
    for request_time, request_history, request_state, user_vector, depth in cases:
        merged = _merged(sources, request_history, request_time)
        if depth:
            merged = head_of(merged, depth)
        fast = candidate_features(request_time, request_history, merged, request_state, user_vector)
        slow = reference_features(request_time, request_history, merged, request_state, user_vector)
        np.testing.assert_allclose(fast, slow.astype(np.float32), rtol=2e-5, atol=2e-5)
        assert fast.shape == (len(merged), len(names)) and len(merged) >= 1
    merged = _merged(sources, history, time)
    empty = candidate_features(time, history, merged.take(np.arange(0)), state, vectors[3])
    assert empty.shape == (0, len(names)) and empty.dtype == np.float32
    one = candidate_features(time, _edited(history, slice(-1, None)), merged, state)
    assert one[:, names.index("history_length")].max() == 1 and one[:, names.index("cooc_last1")].any()
    values = [names.index("item_mean_value"), names.index("item_value_gap")]
    assert not candidate_features(time, history, merged, unrated)[:, values].any()
    assert candidate_features(time, history, merged, state)[:, values[0]].any()


def test_ablation_columns_keep_exactly_the_named_groups() -> None:
    names = feature_names(SOURCES)
    groups = feature_groups(SOURCES)
    assert ablation_columns(SOURCES, "all").tolist() == list(range(len(names)))
    for ablation, kept in ABLATIONS.items():
        columns = ablation_columns(SOURCES, ablation)
        assert columns.dtype == np.int64 and np.all(np.diff(columns) > 0)
        assert {names[i] for i in columns.tolist()} == {n for n in names if groups[n] in kept}
    no_side = {names[i] for i in ablation_columns(SOURCES, "no_side").tolist()}
    assert not no_side & set(SIDE_NAMES) and set(CONTEXT_NAMES) <= no_side
    assert not {names[i] for i in ablation_columns(SOURCES, "no_context").tolist()} & set(CONTEXT_NAMES)
    assert len(ablation_columns(SOURCES, "sources_only")) == len(SOURCES) * 4 + 3


def test_without_repeats_only_the_repeat_columns_are_zero(dataset: Dataset) -> None:
    cut, sources = _sources_before(dataset, 0.8)
    state = FeatureState.fit(dataset.events, StaticInfo.from_dataset(dataset), cut)
    repeat = np.isin(np.array(feature_names(SOURCES)), REPEAT_NAMES)
    assert repeat.sum() == len(REPEAT_NAMES)
    nonzero = 0
    for time, history in _requests(dataset, 12):
        merged = _merged(sources, history, time)
        full = candidate_features(time, history, merged, state)
        skipped = candidate_features(time, history, merged, state, repeats=False)
        np.testing.assert_array_equal(skipped[:, ~repeat], full[:, ~repeat])
        assert not skipped[:, repeat].any()
        nonzero += int(full[:, repeat].any())
    assert nonzero > 0  # the skipped columns were not zero anyway


def test_the_state_reads_only_events_before_its_cut(dataset: Dataset) -> None:
    static = StaticInfo.from_dataset(dataset)
    cut, sources = _sources_before(dataset, 0.6)
    early = dataset.events.take(dataset.events.timestamp < cut)
    cut_state = FeatureState.fit(dataset.events, static, cut)
    early_state = FeatureState.fit(early, static)
    for time, history in _requests(dataset, 5):
        merged = _merged(sources, history, time)
        assert np.array_equal(
            candidate_features(time, history, merged, cut_state),
            candidate_features(time, history, merged, early_state),
        )


def test_names_and_groups() -> None:
    assert feature_names() == FEATURE_NAMES
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    groups = feature_groups()
    assert set(groups) == set(FEATURE_NAMES) and set(groups.values()) == {"source", "context", "side"}
    assert groups["trans_count_last"] == "context" and groups["cat_share_max"] == "side"
