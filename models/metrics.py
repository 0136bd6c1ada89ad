"""Ranking metrics shared by every model's evaluation (models.md 2.5 and 6.1).

Ranks are 1-based. Ties are broken *against* the targets: a target ranks below every non-target item with an
equal score, so a constant scorer gets the worst ranks instead of lucky ones. Among targets with equal
scores, the earlier target slot ranks first (so each target has its own rank).

Single target (a leave-last-out item): HR@K = 1[rank <= K]; NDCG@K = 1/log2(rank + 1) if rank <= K; MRR =
1/rank, exact (no cap). Several targets T (a session): Recall@K = |top-K ∩ T| / |T|; HR@K = 1[top-K ∩ T ≠ ∅];
NDCG@K = DCG@K / IDCG@K with IDCG over min(K, |T|) ideal hits; MRR = 1/(rank of the first hit). With one
target, Recall@K equals HR@K.

AUC (the ranker's per-task check, models.md 6.2) = probability that a random positive outscores a random
negative, ties counted as one half (the Mann-Whitney statistic); GAUC = sum_u n_u * AUC_u / sum_u n_u over
requests that have both classes, n_u = their labelled candidates.
"""

from __future__ import annotations

import itertools

import numpy as np


def target_ranks(scores: np.ndarray, targets: np.ndarray, target_mask: np.ndarray) -> np.ndarray:
    """1-based rank of every target among all items.

    scores: [B, N] float (higher is better; -inf = excluded), targets: [B, T] item indices (distinct per
    row where masked in), target_mask: [B, T] bool. Returns [B, T] int64, 0 where the mask is False.
    """
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    rows = np.arange(scores.shape[0])[:, None]
    target_scores = np.where(target_mask, scores[rows, targets], np.nan)  # [B, T]
    ranks = np.zeros(targets.shape, dtype=np.int64)
    for slot in range(targets.shape[1]):
        s = target_scores[:, slot : slot + 1]  # [B, 1]
        at_least = (scores >= s).sum(axis=1)  # includes the target itself and other targets
        targets_at_least = ((target_scores >= s) & target_mask).sum(axis=1)
        targets_above = ((target_scores > s) & target_mask).sum(axis=1)
        tied_before = ((target_scores[:, :slot] == s) & target_mask[:, :slot]).sum(axis=1)
        rank = 1 + (at_least - targets_at_least) + targets_above + tied_before
        ranks[:, slot] = np.where(target_mask[:, slot], rank, 0)
    return ranks


def ranking_metrics(ranks: np.ndarray, target_mask: np.ndarray, ks: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Per-row metrics from ``target_ranks``. ranks, target_mask: [B, T]. Returns name -> [B] float64 with
    HR@K, Recall@K, NDCG@K for each K, and MRR. Rows without targets get NaN."""
    num_targets = target_mask.sum(axis=1)
    has_targets = num_targets > 0
    safe_count = np.maximum(num_targets, 1)
    gain = np.where(target_mask, 1.0 / np.log2(np.maximum(ranks, 1) + 1.0), 0.0)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        hit = target_mask & (ranks <= k)
        hits = hit.sum(axis=1)
        ideal = np.array([np.sum(1.0 / np.log2(np.arange(2, min(k, c) + 2))) for c in safe_count.tolist()])
        out[f"HR@{k}"] = (hits > 0).astype(np.float64)
        out[f"Recall@{k}"] = hits / safe_count
        out[f"NDCG@{k}"] = np.where(hit, gain, 0.0).sum(axis=1) / ideal
    best = np.where(target_mask, ranks, np.iinfo(np.int64).max).min(axis=1)
    out["MRR"] = 1.0 / np.maximum(best, 1)
    for name in out:
        out[name] = np.where(has_targets, out[name], np.nan)
    return out


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
