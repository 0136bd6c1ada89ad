import math

import numpy as np
import pytest

from models.metrics import ranking_metrics, target_ranks


def test_single_target_hand_computed() -> None:
    scores = np.array([[0.0, 0.0, 0.9, 0.5, 0.7, 0.1]])
    ranks = target_ranks(scores, np.array([[3]]), np.ones((1, 1), bool))
    assert ranks.tolist() == [[3]]  # 0.9 and 0.7 are above 0.5
    m = ranking_metrics(ranks, np.ones((1, 1), bool), (1, 3))
    assert m["HR@1"][0] == 0 and m["HR@3"][0] == 1
    assert m["NDCG@3"][0] == pytest.approx(1 / math.log2(4))
    assert m["MRR"][0] == pytest.approx(1 / 3)
    assert m["Recall@3"][0] == m["HR@3"][0]


def test_ties_count_against_the_target() -> None:
    scores = np.zeros((1, 10))
    ranks = target_ranks(scores, np.array([[4]]), np.ones((1, 1), bool))
    assert ranks.tolist() == [[10]]  # a constant scorer gets the worst rank


def test_multi_target_hand_computed() -> None:
    scores = np.array([[0.1, 0.5, 0.3, 0.3, 0.9, 0.2]])
    targets = np.array([[2, 3, 0]])
    mask = np.array([[True, True, False]])
    ranks = target_ranks(scores, targets, mask)
    assert ranks.tolist() == [[3, 4, 0]]  # tied targets keep distinct ranks, slot order first
    m = ranking_metrics(ranks, mask, (1, 3, 5))
    assert m["Recall@3"][0] == pytest.approx(0.5) and m["HR@3"][0] == 1 and m["HR@1"][0] == 0
    assert m["NDCG@3"][0] == pytest.approx((1 / math.log2(4)) / (1 + 1 / math.log2(3)))
    ideal_5 = 1 + 1 / math.log2(3)
    assert m["NDCG@5"][0] == pytest.approx((1 / math.log2(4) + 1 / math.log2(5)) / ideal_5)
    assert m["MRR"][0] == pytest.approx(1 / 3)


def test_excluded_items_and_empty_rows() -> None:
    scores = np.array([[-np.inf, 0.2, 0.8], [0.1, 0.2, 0.3]])
    ranks = target_ranks(scores, np.array([[1], [2]]), np.array([[True], [False]]))
    assert ranks.tolist() == [[2], [0]]
    m = ranking_metrics(ranks, np.array([[True], [False]]), (1,))
    assert m["MRR"][0] == 0.5 and np.isnan(m["MRR"][1])
    with pytest.raises(ValueError, match="NaN"):
        target_ranks(np.array([[np.nan, 1.0]]), np.array([[1]]), np.ones((1, 1), bool))
