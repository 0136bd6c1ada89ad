import numpy as np
import pytest

from models.data.loaders.synthetic import SyntheticConfig, generate_synthetic
from models.data.schema import Dataset
from models.data.splits import protocol_split
from models.recipe.period_fits import fit_masks, target_positions
from models.recipe.periods import pipeline_periods

TINY = SyntheticConfig(num_users=50, num_items=120, num_events=3_000, num_clusters=5, seed=4)


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return generate_synthetic(TINY)


def test_positions_count_each_users_targets_from_the_newest() -> None:
    user = np.array([0, 0, 0, 0, 1, 1, 2], dtype=np.int32)
    np.testing.assert_array_equal(target_positions(user, np.array([1, 2, 3, 5, 6])), [2, 1, 0, 0, 0])
    np.testing.assert_array_equal(target_positions(user, np.array([3, 1, 5])), [0, 1, 0])


def test_each_position_is_fitted_on_the_events_before_every_users_targets_at_or_after_it(
    dataset: Dataset,
) -> None:
    periods = pipeline_periods(dataset, "leave-last-out", ranker_events=3)
    events = dataset.events
    groups = fit_masks(dataset, periods)
    assert len(groups) == 3
    rows = np.sort(np.concatenate([g for g, _ in groups]))
    np.testing.assert_array_equal(rows, np.arange(len(periods.ranker)))  # every request in one group
    # the oldest group is fitted on the fit period itself: the encoder's data
    np.testing.assert_array_equal(groups[0][1], periods.fit)
    targets = periods.ranker_target_rows
    position = target_positions(events.user, targets)
    for p, (group_rows, mask) in zip((2, 1, 0), groups, strict=True):
        assert np.all(position[group_rows] == p)
        # no fitted event is at or after any user's target at a position <= p (theirs or others')
        for target in targets[position <= p].tolist():
            user = events.user[target]
            later = np.flatnonzero(events.user == user)
            assert not mask[later[later >= target]].any()
        # ... and every other event before the test is fitted
        refit = periods.refit if periods.refit is not None else periods.fit
        assert mask.sum() == refit.sum() - sum(
            int(np.sum((events.user == events.user[t]) & (np.arange(len(events)) >= t) & refit))
            for t in _earliest(targets[position <= p], events.user)
        )
    # the newer the position, the more it sees
    sizes = [int(m.sum()) for _, m in groups]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


def _earliest(targets: np.ndarray, users: np.ndarray) -> list[int]:
    first: dict[int, int] = {}
    for t in sorted(targets.tolist()):
        first.setdefault(int(users[t]), t)
    return list(first.values())


def test_next_session_without_windows_has_one_group_fitted_on_the_fit_period(dataset: Dataset) -> None:
    periods = pipeline_periods(dataset, "next-session", ranker_windows=0)
    groups = fit_masks(dataset, periods)
    assert len(groups) == 1 and periods.ranker_fits is None
    np.testing.assert_array_equal(groups[0][0], np.arange(len(periods.ranker)))
    np.testing.assert_array_equal(groups[0][1], periods.fit)


def test_each_next_session_window_is_fitted_on_the_training_events_before_it(dataset: Dataset) -> None:
    events = dataset.events
    split = protocol_split(events, "next-session")
    alone = pipeline_periods(dataset, "next-session", ranker_windows=0)
    periods = pipeline_periods(dataset, "next-session", ranker_windows=2)
    groups = fit_masks(dataset, periods)
    assert len(groups) == 3
    rows = np.concatenate([g for g, _ in groups])
    np.testing.assert_array_equal(rows, np.arange(len(periods.ranker)))  # every request once, in order
    # the validation window is what the period was without windows: same requests, same fit
    newest_rows, newest_fit = groups[-1]
    np.testing.assert_array_equal(newest_fit, split.train)
    np.testing.assert_array_equal(
        periods.ranker.targets[newest_rows][:, : alone.ranker.targets.shape[1]], alone.ranker.targets
    )
    # the encoder's fit period is the oldest window's fit: it ends before every ranker target
    np.testing.assert_array_equal(groups[0][1], periods.fit)
    assert events.timestamp[periods.fit].max() < events.timestamp[periods.ranker_target_rows].min()
    # window k (k = 2, 1 before validation) spans [start - k L, start - (k - 1) L), L the validation
    # period's length: its targets lie inside it and its fit is every training event before it
    valid_start = int(events.timestamp[split.valid].min())
    length = int(events.timestamp[split.valid].max()) - valid_start + 1
    for k, (group_rows, mask) in zip((2, 1), groups[:-1], strict=True):
        lo, hi = valid_start - k * length, valid_start - (k - 1) * length
        np.testing.assert_array_equal(mask, split.train & (events.timestamp < lo))
        for row in group_rows.tolist():
            assert lo <= periods.ranker.contexts[row].timestamp < hi
        window_targets = np.concatenate(
            [periods.ranker.targets[r][periods.ranker.target_mask[r]] for r in group_rows]
        )
        assert len(window_targets) > 0
    target_time = events.timestamp[periods.ranker_target_rows]
    assert target_time.min() >= valid_start - 2 * length
    sizes = [int(m.sum()) for _, m in groups]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    # the earlier windows add requests, and the refit before the test is unchanged
    assert len(periods.ranker) > len(alone.ranker)
    np.testing.assert_array_equal(periods.refit, alone.refit)
