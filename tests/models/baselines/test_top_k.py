import numpy as np

from models.baselines.top_k import top_k_items


def test_top_k_order_exclusions_and_ties() -> None:
    score = np.array([9.0, 9.0, 0.5, 0.7, 0.7, 0.1])
    assert top_k_items(score, 3).tolist() == [3, 4, 2]  # pad/unknown never; ties by lower index
    assert top_k_items(score, 3, exclude=np.array([3])).tolist() == [4, 2, 5]
    assert top_k_items(score, 10).tolist() == [3, 4, 2, 5]
    assert top_k_items(score, 0).tolist() == []
    assert score[0] == 9.0  # input untouched
