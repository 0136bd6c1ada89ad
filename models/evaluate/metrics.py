"""Ranking metrics shared by every model's evaluation (models.md 2.5 and 6.1).

Ranks are 1-based. Ties are broken *against* the targets: a target ranks below every non-target item with an
equal score, so a constant scorer gets the worst ranks instead of lucky ones. Among targets with equal
scores, the earlier target slot ranks first (so each target has its own rank).

Single target (a leave-last-out item): HR@K = 1[rank <= K]; NDCG@K = 1/log2(rank + 1) if rank <= K; MRR =
1/rank, exact (no cap). Several targets T (a session): Recall@K = |top-K ∩ T| / |T|; HR@K = 1[top-K ∩ T ≠ ∅];
NDCG@K = DCG@K / IDCG@K with IDCG over min(K, |T|) ideal hits; MRR = 1/(rank of the first hit). With one
target, Recall@K equals HR@K.
"""

from __future__ import annotations

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
