"""Top-k selection shared by the baselines' serving paths."""

from __future__ import annotations

import numpy as np


def top_k_items(score: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """score: [num_items] -> up to k item indices, best first (ties: lower index first). Pad and unknown
    (0, 1) and ``exclude`` are never returned. ``score`` is not modified."""
    score = np.array(score, dtype=np.float64)
    score[:2] = -np.inf
    if exclude is not None and len(exclude):
        score[exclude] = -np.inf
    k = min(k, int(np.isfinite(score).sum()))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    best = np.argpartition(-score, k - 1)[:k]
    return best[np.lexsort((best, -score[best]))].astype(np.int64)
