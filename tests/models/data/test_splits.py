import numpy as np
import pytest

from models.data.builder import RawEvents, build_dataset
from models.data.schema import RATING_FUNNEL, Action, Dataset, EventTable
from models.data.splits import leave_last_out, time_split


def rated(users: list[int], items: list[int], times: list[int]) -> EventTable:
    n = len(users)
    raw = RawEvents(
        user=np.array(users),
        item=np.array(items),
        timestamp=np.array(times),
        action=np.full(n, Action.RATE, np.int8),
    )
    return build_dataset("t", raw, RATING_FUNNEL, "rating").events


def test_time_split_never_leaks(tiny_synthetic: Dataset) -> None:
    events = tiny_synthetic.events
    split = time_split(events, test_fraction=0.1, valid_fraction=0.1)
    ts = events.timestamp
    assert split.train.sum() and split.valid.sum() and split.test.sum()
    assert np.all(split.train ^ split.valid ^ split.test)  # each row in exactly one part
    assert ts[split.test].min() > ts[split.train].max()
    assert ts[split.test].min() > ts[split.valid].max()
    assert ts[split.valid].min() > ts[split.train].max()
    assert split.test_start is not None and ts[split.test].min() >= split.test_start


def test_time_split_fractions_of_time_range() -> None:
    events = rated([1] * 11, list(range(11)), [i * 10 for i in range(11)])  # times 0..100
    split = time_split(events, 0.2, 0.3)
    assert (split.valid_start, split.test_start) == (50, 80)
    assert split.counts() == {"train": 5, "valid": 3, "test": 3}
    with pytest.raises(ValueError):
        time_split(events, 0.7, 0.4)


def test_leave_last_out_with_ties_and_short_users() -> None:
    # User 1: two events at the same second; the later row in the file is the later event.
    events = rated([1, 1, 1, 2, 3, 3], [10, 11, 12, 20, 30, 31], [5, 9, 9, 1, 1, 2])
    split = leave_last_out(events)
    raw_items = {2 + k: v for k, v in enumerate([10, 11, 12, 20, 30, 31])}
    items = [raw_items[i] for i in events.item.tolist()]
    assert [i for i, t in zip(items, split.test, strict=True) if t] == [12, 31]
    assert [i for i, v in zip(items, split.valid, strict=True) if v] == [11]
    assert [i for i, t in zip(items, split.train, strict=True) if t] == [
        10,
        20,
        30,
    ]  # single-event user: train only


def test_leave_last_out_one_test_per_user(tiny_synthetic: Dataset) -> None:
    events = tiny_synthetic.events
    split = leave_last_out(events)
    assert np.array_equal(np.unique(events.user[split.test]), np.unique(events.user))
    last_row = np.r_[events.user[1:] != events.user[:-1], True]
    np.testing.assert_array_equal(split.test, last_row)
