"""One row of an answer, shared by recommendations and similar items."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RankedItem:
    item_id: str  # raw catalogue id
    rank: int  # 1-based
    score: float
    source: str  # ranker | ann | cooccurrence | popular
    title: str | None = None
    category: str | None = None
