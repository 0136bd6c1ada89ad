import math

import numpy as np

from models.metrics import auc, gauc


def test_auc_counts_ties_as_half() -> None:
    scores = np.array([0.9, 0.5, 0.5, 0.1])
    labels = np.array([1, 1, 0, 0])
    # pairs (pos, neg): (0.9,0.5)=1, (0.9,0.1)=1, (0.5,0.5)=0.5, (0.5,0.1)=1 -> 3.5 / 4
    assert math.isclose(auc(scores, labels), 0.875)
    assert math.isnan(auc(scores, np.ones(4)))


def test_gauc_weights_requests_by_candidates_and_skips_one_class_requests() -> None:
    scores = [np.array([1.0, 0.0]), np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, 2.0])]
    labels = [np.array([1, 0]), np.array([1, 1, 0, 0]), np.array([1, 1])]
    expected = (1.0 * 2 + 0.0 * 4) / 6
    assert math.isclose(gauc(scores, labels), expected)
