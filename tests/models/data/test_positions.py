import numpy as np

from models.data.positions import members, positions_in


def test_positions_in_an_unsorted_list_and_absent_items() -> None:
    keys = np.array([40, 7, 12, 3])
    assert positions_in(np.array([3, 40, 8, 12, 100, 0]), keys).tolist() == [3, 0, -1, 2, -1, -1]
    assert positions_in(np.array([5, 6]), np.zeros(0, np.int64)).tolist() == [-1, -1]
    assert positions_in(np.zeros(0, np.int64), keys).tolist() == []


def test_members_answers_what_isin_answers() -> None:
    rng = np.random.default_rng(3)
    for size in (0, 1, 5, 300):
        keys = rng.integers(-2, 50, size)
        items = rng.integers(-3, 55, 200)
        np.testing.assert_array_equal(members(items, keys), np.isin(items, keys))
    assert members(np.array([7, 8]), np.array([8, 8, 1])).tolist() == [False, True]
    assert members(np.zeros(0, np.int64), np.array([1])).shape == (0,)
