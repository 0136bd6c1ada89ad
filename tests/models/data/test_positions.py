import numpy as np

from models.data.positions import positions_in


def test_positions_in_an_unsorted_list_and_absent_items() -> None:
    keys = np.array([40, 7, 12, 3])
    assert positions_in(np.array([3, 40, 8, 12, 100, 0]), keys).tolist() == [3, 0, -1, 2, -1, -1]
    assert positions_in(np.array([5, 6]), np.zeros(0, np.int64)).tolist() == [-1, -1]
    assert positions_in(np.zeros(0, np.int64), keys).tolist() == []
