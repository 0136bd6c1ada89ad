import numpy as np
import pytest

from models.data.builder import RawEvents, build_dataset
from models.data.schema import RATING_FUNNEL, Action, Dataset, EventTable
from models.data.splits import TEST, TRAIN, VALID, leave_last_out, protocol_split, split_codes, time_split


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


def test_supplied_leave_last_out_scores_the_last_test_row_and_never_trains_on_test_rows() -> None:
    # user 10: train, train, test, test; user 11: train, train, train; user 12: one test row
    events = rated([10, 10, 10, 10, 11, 11, 11, 12], [1, 2, 3, 4, 1, 2, 3, 5], [1, 2, 3, 4, 1, 2, 3, 9])
    labels = np.array([TRAIN, TRAIN, TEST, TEST, TRAIN, TRAIN, TRAIN, TEST], dtype=np.int8)
    split = protocol_split(events, "leave-last-out", labels)
    assert split.kind == "supplied-leave-last-out"
    assert split.test.tolist() == [
        False,
        False,
        False,
        True,
        False,
        False,
        False,
        False,
    ]  # user 12: no history
    assert split.valid.tolist() == [False, True, False, False, False, False, True, False]  # last train rows
    assert not split.trainable[labels == TEST].any()  # the first test row of 10 is history only
    assert split.train.tolist() == [True, False, False, False, True, True, False, False]


def test_supplied_valid_labels_are_the_validation_targets() -> None:
    events = rated([10, 10, 10, 10], [1, 2, 3, 4], [1, 2, 3, 4])
    labels = np.array([TRAIN, VALID, VALID, TEST], dtype=np.int8)
    split = protocol_split(events, "leave-last-out", labels)
    assert split.valid.tolist() == [False, False, True, False] and split.test.tolist()[-1]


def test_supplied_time_split_holds_out_every_test_row() -> None:
    events = rated([10, 10, 10, 11, 11], [1, 2, 3, 1, 2], [0, 50, 100, 90, 100])
    labels = np.array([TRAIN, TRAIN, TEST, TRAIN, TEST], dtype=np.int8)
    split = protocol_split(events, "next-session", labels)
    assert split.kind == "supplied-time"
    assert split.test.tolist() == (labels == TEST).tolist()
    assert split.valid.tolist() == [False, False, False, True, False]  # the last 10% of the training time
    assert (split.train | split.valid | split.test).all()


def test_split_labels_as_users_write_them() -> None:
    assert split_codes(["Train", " validation ", "TEST", "dev", "holdout", "later"]).tolist() == [
        TRAIN,
        VALID,
        TEST,
        VALID,
        TEST,
        -1,
    ]
