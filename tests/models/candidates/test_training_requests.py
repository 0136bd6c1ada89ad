import numpy as np
import pytest

from models.candidates.feature_state import FeatureState, StaticInfo
from models.candidates.features import candidate_features
from models.candidates.generator import CandidateGenerator, fit_sources
from models.candidates.merge import MergeConfig
from models.candidates.sources import CandidateRequest
from models.candidates.training_requests import (
    RequestSet,
    fit_rows,
    offset_request_set,
    offset_requests,
    positions,
)
from models.data.histories import history_from_rows
from models.data.schema import Dataset
from models.inference import RequestContext
from tests.models.candidates.feature_data import side_dataset

CONFIG = MergeConfig(("cooccurrence", "transitions", "popular"), (25, 25, 25), (1.0, 1.0, 0.5), total=25)
MAX_HISTORY = 30


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return side_dataset(num_users=30, num_items=70, num_events=1000, seed=5)


def _rows_by_user(dataset: Dataset) -> dict[int, list[int]]:
    rows: dict[int, list[int]] = {}
    for row, user in enumerate(dataset.events.user.tolist()):
        rows.setdefault(user, []).append(row)
    return rows


def test_positions_count_from_both_ends(dataset: Dataset) -> None:
    from_end, from_start = positions(dataset.events)
    for rows in _rows_by_user(dataset).values():
        assert from_end[rows].tolist() == list(range(len(rows)))[::-1]
        assert from_start[rows].tolist() == list(range(len(rows)))


def test_a_training_request_equals_a_fresh_refit_on_the_events_before_it(dataset: Dataset) -> None:
    offset = 3
    built = offset_request_set(dataset, StaticInfo.from_dataset(dataset), offset, CONFIG, MAX_HISTORY)
    by_user = _rows_by_user(dataset)
    # the fit an offset-3 request may read: every user's events before their own 3rd-last event
    before = sorted(row for rows in by_user.values() for row in rows[: max(len(rows) - offset - 1, 0)])
    assert np.flatnonzero(fit_rows(dataset.events, offset)).tolist() == before
    events = dataset.events.take(np.array(before, dtype=np.int64))
    sources = fit_sources(events, dataset.num_items, dataset.num_scenes)
    state = FeatureState.fit(events, StaticInfo.from_dataset(dataset))  # its own tables, not the sources'
    generator = CandidateGenerator(list(sources.values()), CONFIG)
    checked = 0
    for q, user in enumerate(built.user.tolist()):
        rows = by_user[user]
        target = rows[len(rows) - 1 - offset]
        history = history_from_rows(
            dataset.events, slice(max(rows[0], target - MAX_HISTORY), target), dataset.user_features, user
        )
        time = int(dataset.events.timestamp[target])
        request = CandidateRequest(
            history,
            RequestContext(time, int(dataset.events.scene[target]), int(dataset.events.device[target])),
            None,
            np.unique(history.item),
        )
        merged = generator.generate(request)
        lo, hi = built.group[q], built.group[q + 1]
        assert built.target[q] == dataset.events.item[target]
        assert np.array_equal(built.features[lo:hi], candidate_features(time, history, merged, state))
        assert np.array_equal(built.label[lo:hi], (merged.items == built.target[q]).astype(np.float32))
        checked += 1
    assert checked == sum(1 for rows in by_user.values() if len(rows) > offset + 1)


def test_an_offset_request_reads_nothing_from_anyones_later_events(dataset: Dataset) -> None:
    """The offset-k requests of a log are the test (offset-0) requests of the log cut before everyone's
    k-th-last event: deleting all later events changes nothing."""
    offset = 2
    static = StaticInfo.from_dataset(dataset)
    cut = dataset.events.take(positions(dataset.events)[0] >= offset)
    truncated = Dataset(**{**vars(dataset), "events": cut})
    at_offset = offset_request_set(dataset, static, offset, CONFIG, MAX_HISTORY)
    as_test = offset_request_set(truncated, static, 0, CONFIG, MAX_HISTORY)
    for name in ("features", "label", "position", "group", "user", "target"):
        assert np.array_equal(getattr(at_offset, name), getattr(as_test, name)), name
    assert at_offset.found.any() and not at_offset.found.all()


def test_every_merged_candidate_is_a_row_and_sets_select_and_concat(dataset: Dataset) -> None:
    static = StaticInfo.from_dataset(dataset)
    first = offset_request_set(dataset, static, 1, CONFIG, MAX_HISTORY)
    second = offset_request_set(dataset, static, 2, CONFIG, MAX_HISTORY)
    assert len(first) == len(offset_requests(dataset, 1, MAX_HISTORY))
    assert first.sizes.max() == CONFIG.total and first.features.shape == (first.group[-1], len(first.names))
    assert np.array_equal(
        first.found,
        [first.label[a:b].sum() == 1 for a, b in zip(first.group[:-1], first.group[1:], strict=True)],
    )
    both = RequestSet.concat([first, second])
    assert len(both) == len(first) + len(second)
    picked = both.select(both.found)
    assert picked.found.all() and len(picked) == int(both.found.sum())
    q = int(np.flatnonzero(both.found)[-1])
    row = int(np.flatnonzero(picked.user == both.user[q])[-1])
    assert np.array_equal(
        picked.features[picked.group[row] : picked.group[row + 1]],
        both.features[both.group[q] : both.group[q + 1]],
    )
