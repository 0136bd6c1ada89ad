import numpy as np
import pytest

from models.data.loaders.synthetic import SyntheticConfig, generate_synthetic
from models.data.schema import Dataset
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


def test_next_session_has_one_group_fitted_on_the_fit_period(dataset: Dataset) -> None:
    periods = pipeline_periods(dataset, "next-session")
    groups = fit_masks(dataset, periods)
    assert len(groups) == 1
    np.testing.assert_array_equal(groups[0][0], np.arange(len(periods.ranker)))
    np.testing.assert_array_equal(groups[0][1], periods.fit)
