"""Picking among variants by a validation score: the highest wins, a tie keeps the earlier one."""

from __future__ import annotations

from collections.abc import Sequence

from models.train.loop import TIE


def best_variant(scores: Sequence[float]) -> int:
    """Index of the highest validation score; a tie keeps the earlier variant (the preset comes first)."""
    best = 0
    for index, score in enumerate(scores):
        if score > scores[best] + TIE:
            best = index
    return best
