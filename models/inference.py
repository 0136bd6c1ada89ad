"""What serving needs from the models, as small types and protocols (the models/app contract).

The app never touches tensors: it hands a ``UserHistory`` (recent events, oldest first, item *indices*) and a
``RequestContext`` to a ``UserEncoder`` and gets unit-length float32 vectors back; it hands the retrieved
candidate indices to a ``CandidateRanker`` and gets one score per candidate back. Both are loaded from an
artifact bundle (``models.bundle``).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from models.types import RequestContext, UserHistory


class UserEncoder(Protocol):
    """Retrieval tower: user history + request context -> user vector."""

    version: str
    dim: int

    def encode(self, histories: list[UserHistory], contexts: list[RequestContext]) -> np.ndarray:
        """Returns [B, dim] float32, L2-normalised, one row per (history, context) pair."""
        ...

    def item_vectors(self) -> np.ndarray:
        """Returns [num_items, dim] float32, L2-normalised; rows 0 (pad) and 1 (unknown) are zero."""
        ...


class CandidateRanker(Protocol):
    """Ranking stage: scores retrieved candidates for one request in one forward pass.

    ``candidate_sources``: the candidate sources (``models.candidates``) whose per-candidate ranks the
    ranker reads; () when it reads none, and ``source_ranks`` may then be None."""

    version: str

    @property
    def candidate_sources(self) -> tuple[str, ...]: ...

    def score(self, history: UserHistory, context: RequestContext, candidates: np.ndarray) -> np.ndarray:
        """candidates: [N] int64 item indices -> [N] float32 scores (higher is better)."""
        ...

    def score_batch(
        self,
        histories: list[UserHistory],
        contexts: list[RequestContext],
        candidates: list[np.ndarray],
        source_ranks: list[np.ndarray] | None = None,
    ) -> list[np.ndarray]:
        """Several requests at once; each element as ``score``. source_ranks: per request [N, S] ranks in
        ``candidate_sources`` order (-1 = not found by that source)."""
        ...


class ItemSearch(Protocol):
    """ANN retrieval over the item vectors (``models.index.ItemIndex``)."""

    version: str

    def search(
        self, queries: np.ndarray, k: int, exclude: list[set[int]] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """queries [B, d] float32 -> (items [B, k] int64, scores [B, k] float32), best first, -1 padded."""
        ...
