"""The GBDT reranker at request time: one request's merged candidates -> features -> scores.

Everything a served request needs is here: the fitted ``FeatureState`` (from the bundle's training events)
and the ``GbdtRanker``. Wiring it into the served pipeline (bundle files, the recipe's ranker stage, the gate)
is not done yet; see docs/ranking.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.candidates.feature_state import FeatureState
from models.candidates.features import candidate_features, feature_names
from models.candidates.merge import MergedCandidates
from models.inference import RequestContext, UserHistory
from models.ranker.gbdt import GbdtRanker


class MergedReranker:
    """Scores merged candidates with a GBDT over ``candidate_features``."""

    def __init__(self, ranker: GbdtRanker, state: FeatureState) -> None:
        self.ranker = ranker
        self.state = state
        self.version = ranker.version

    def _check(self, merged: MergedCandidates) -> None:
        if feature_names(merged.sources) != self.ranker.feature_names:
            raise ValueError(
                f"the ranker reads features of other sources than {merged.sources}: "
                f"{self.ranker.feature_names}"
            )

    def features(
        self,
        history: UserHistory,
        context: RequestContext,
        merged: MergedCandidates,
        user_vector: np.ndarray | None = None,
    ) -> np.ndarray:
        """[N, F] float32 features of the request's N merged candidates."""
        self._check(merged)
        return candidate_features(context.timestamp, history, merged, self.state, user_vector)

    def score_merged(
        self,
        history: UserHistory,
        context: RequestContext,
        merged: MergedCandidates,
        user_vector: np.ndarray | None = None,
    ) -> np.ndarray:
        """[N] float32 scores of the merged candidates (higher is better)."""
        return self.ranker.score(self.features(history, context, merged, user_vector))

    def score_merged_batch(
        self,
        histories: Sequence[UserHistory],
        contexts: Sequence[RequestContext],
        merged: Sequence[MergedCandidates],
        user_vectors: Sequence[np.ndarray | None] | None = None,
    ) -> list[np.ndarray]:
        """Several requests; one GBDT call over all of their candidates. -> [N_i] scores each."""
        vectors = list(user_vectors) if user_vectors is not None else [None] * len(histories)
        blocks = [
            self.features(h, c, m, v) for h, c, m, v in zip(histories, contexts, merged, vectors, strict=True)
        ]
        return self.ranker.score_batch(blocks)

    def rerank(
        self,
        history: UserHistory,
        context: RequestContext,
        merged: MergedCandidates,
        user_vector: np.ndarray | None = None,
    ) -> MergedCandidates:
        """The candidates in the GBDT's order (ties keep the merged order)."""
        scores = self.score_merged(history, context, merged, user_vector)
        return merged.take(np.lexsort((np.arange(len(merged)), -scores)))
