"""Business rules on a candidate list: exclusions, category filters, MMR diversity. Pure numpy."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.data.schema import FIRST_REAL_ID


@dataclass
class CategoryFilter:
    """Category indices an item must (``allowed``) or must not (``blocked``) have; None = no constraint."""

    allowed: set[int] | None = None
    blocked: set[int] = field(default_factory=set)

    def mask(self, items: np.ndarray, item_category: np.ndarray) -> np.ndarray:
        """items [N] item indices -> [N] bool, True where the item passes."""
        categories = item_category[items]
        keep = np.ones(items.shape[0], dtype=bool)
        if self.allowed is not None:
            keep &= np.isin(categories, np.fromiter(self.allowed, dtype=np.int64, count=len(self.allowed)))
        if self.blocked:
            keep &= ~np.isin(categories, np.fromiter(self.blocked, dtype=np.int64, count=len(self.blocked)))
        return keep


def passing(
    items: np.ndarray, excluded: set[int], category_filter: CategoryFilter, item_category: np.ndarray
) -> np.ndarray:
    """[N] bool: real items, not excluded, passing the category filter."""
    keep = items >= FIRST_REAL_ID
    if excluded:
        keep &= ~np.isin(items, np.fromiter(excluded, dtype=np.int64, count=len(excluded)))
    return keep & category_filter.mask(np.maximum(items, 0), item_category)


def mmr_order(scores: np.ndarray, vectors: np.ndarray, k: int, diversity: float) -> np.ndarray:
    """Maximal marginal relevance: picks k of N positions, trading relevance for dissimilarity.

    scores [N], vectors [N, d] (unit rows). With relevance r = min-max scaled scores and lambda =
    1 - diversity, each step takes argmax_i lambda * r_i - (1 - lambda) * max_{j chosen} cos(e_i, e_j)
    (Carbonell and Goldstein, SIGIR 1998). Returns [min(k, N)] positions into the input.
    """
    count = scores.shape[0]
    take = min(k, count)
    if take == 0 or diversity <= 0:
        return np.argsort(-scores, kind="stable")[:take]
    span = float(scores.max() - scores.min())
    relevance = (scores - scores.min()) / span if span > 0 else np.ones_like(scores)
    weight = 1.0 - diversity
    similarity = vectors @ vectors.T  # [N, N]
    chosen: list[int] = []
    max_similarity = np.full(count, -np.inf, dtype=np.float32)
    available = np.ones(count, dtype=bool)
    for _ in range(take):
        penalty = np.where(np.isfinite(max_similarity), max_similarity, 0.0)
        objective = np.where(available, weight * relevance - (1.0 - weight) * penalty, -np.inf)
        best = int(np.argmax(objective))
        chosen.append(best)
        available[best] = False
        max_similarity = np.maximum(max_similarity, similarity[best])
    return np.asarray(chosen, dtype=np.int64)
