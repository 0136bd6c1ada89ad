"""AUC and GAUC for the ranker's per-task evaluation (models.md 6.2).

AUC = probability that a random positive outscores a random negative, ties counted as one half (computed
from average ranks, the Mann-Whitney statistic). GAUC = sum_u n_u * AUC_u / sum_u n_u over users (requests)
that have both classes, n_u = their labelled candidates.
"""

from __future__ import annotations

import itertools

import numpy as np


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties sharing their average rank. values [n] -> [n] float64."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    boundaries = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1], True])
    ranks_sorted = np.empty(len(values), dtype=np.float64)
    for left, right in itertools.pairwise(boundaries.tolist()):
        ranks_sorted[left:right] = (left + 1 + right) / 2.0
    ranks = np.empty_like(ranks_sorted)
    ranks[order] = ranks_sorted
    return ranks


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """scores [n] float, labels [n] {0, 1} -> AUC, NaN when a class is missing."""
    labels = labels.astype(bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    rank_sum = _average_ranks(scores.astype(np.float64))[labels].sum()
    return float((rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives))


def gauc(scores: list[np.ndarray], labels: list[np.ndarray]) -> float:
    """Per-request lists of scores/labels -> candidate-count-weighted mean AUC over requests with both
    classes (NaN when none has)."""
    weighted, weight = 0.0, 0
    for request_scores, request_labels in zip(scores, labels, strict=True):
        value = auc(request_scores, request_labels)
        if not np.isnan(value):
            weighted += value * len(request_labels)
            weight += len(request_labels)
    return weighted / weight if weight else float("nan")
