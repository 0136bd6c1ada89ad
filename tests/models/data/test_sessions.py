import numpy as np
import pytest

from models.data.sessions import sessionise

GAP = 1800


def test_gaps_start_new_sessions() -> None:
    user = np.array([2, 2, 2, 2])
    ts = np.array([0, 1800, 3601, 3700])  # a gap of exactly 1800 s continues; 1801 s starts anew
    assert sessionise(user, ts, GAP).tolist() == [1, 1, 2, 2]


def test_equal_timestamps_never_split_and_users_restart() -> None:
    user = np.array([2, 2, 2, 3, 4, 4])
    ts = np.array([5, 5, 5, 5, 100, 100_000])
    assert sessionise(user, ts, GAP).tolist() == [1, 1, 1, 1, 1, 2]


def test_single_event_users() -> None:
    user = np.array([2, 3, 4])
    assert sessionise(user, np.array([10, 10, 10]), GAP).tolist() == [1, 1, 1]


def test_long_sittings_are_chunked() -> None:
    user = np.full(45, 2)
    ts = np.arange(45) * 60
    sessions = sessionise(user, ts, GAP, max_items=20)
    assert np.bincount(sessions).tolist() == [0, 20, 20, 5]
    # A gap resets the chunk count.
    ts2 = np.r_[np.arange(25) * 60, 10_000 + np.arange(3)]
    assert np.bincount(sessionise(np.full(28, 2), ts2, GAP, 20)).tolist() == [0, 20, 5, 3]


def test_rejects_unsorted_and_bad_arguments() -> None:
    with pytest.raises(ValueError, match="sorted"):
        sessionise(np.array([2, 2]), np.array([10, 5]))
    with pytest.raises(ValueError):
        sessionise(np.array([2]), np.array([1]), max_items=0)
    assert sessionise(np.zeros(0, np.int64), np.zeros(0, np.int64)).shape == (0,)
