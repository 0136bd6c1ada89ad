import numpy as np
import pytest

from models.data.loaders.synthetic import SyntheticConfig, generate_synthetic
from models.data.schema import Dataset
from models.data.splits import protocol_split
from models.recipe.periods import (
    RANKER_POSITIONS,
    RANKER_REQUESTS,
    leave_last_out_positions,
    pipeline_periods,
)

TINY = SyntheticConfig(num_users=60, num_items=150, num_events=2_400, num_clusters=5, seed=7)


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return generate_synthetic(TINY)


def test_a_large_log_takes_the_least_positions_and_a_small_one_more_up_to_the_cap() -> None:
    low, high = RANKER_POSITIONS
    assert leave_last_out_positions(3_000) == low  # ML-1M's subset
    assert leave_last_out_positions(RANKER_REQUESTS // low) == low
    assert leave_last_out_positions(RANKER_REQUESTS // low - 10) == low + 1
    assert leave_last_out_positions(943) == 22  # ML-100K: 20,000 / 943 rounded up
    assert leave_last_out_positions(50) == high
    assert leave_last_out_positions(0) == high


def _per_user(periods_rows: np.ndarray, users: np.ndarray, count: int) -> np.ndarray:
    return np.bincount(users[periods_rows], minlength=count)


def test_unnamed_positions_follow_the_rule_and_never_take_more_than_half_a_users_events(
    dataset: Dataset,
) -> None:
    events = dataset.events
    periods = pipeline_periods(dataset, "leave-last-out")
    trainable = protocol_split(events, "leave-last-out").trainable
    users = events.user.astype(np.int64)
    targets = _per_user(periods.ranker_target_rows, users, dataset.num_users)
    pool = np.bincount(users[trainable], minlength=dataset.num_users)
    positions = leave_last_out_positions(len(np.unique(users[trainable])))
    assert positions == RANKER_POSITIONS[1]  # 60 users ask for the most positions
    assert targets.max() <= positions
    # at most half of a user's trainable events (rounded up) are targets, the rest stays fitted ...
    assert np.all(targets <= (pool + 1) // 2)
    # ... and a user with enough events gives exactly that half or the positions, whichever is smaller
    np.testing.assert_array_equal(targets, np.minimum(positions, (pool + 1) // 2) * (pool > 1))
    # the targets are each user's newest trainable events; the fit period is everything before them
    for user in np.flatnonzero(targets).tolist():
        rows = np.flatnonzero(trainable & (users == user))
        chosen = np.intersect1d(periods.ranker_target_rows, rows)
        np.testing.assert_array_equal(chosen, rows[-len(chosen) :])
        assert periods.fit[rows[: -len(chosen)]].all() and not periods.fit[chosen].any()


def test_named_positions_are_kept(dataset: Dataset) -> None:
    periods = pipeline_periods(dataset, "leave-last-out", ranker_events=3)
    users = dataset.events.user.astype(np.int64)
    targets = _per_user(periods.ranker_target_rows, users, dataset.num_users)
    assert targets.max() == 3
