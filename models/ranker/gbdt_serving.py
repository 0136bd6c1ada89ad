"""The GBDT reranker at request time: merged candidates -> features -> scores (a ``MergedRanker``).

Everything a served request needs is here: the fitted ``FeatureState`` (from the bundle's training events,
with the encoder's item vectors) and the ``GbdtRanker``. The served pipeline
(``models.candidates.served``) hands it the merged top ``depth`` of each request; the recipe
(``models.recipe.gbdt_stage``) computes its training features with the same ``features_batch``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.candidates.feature_state import FeatureState
from models.candidates.features import REPEAT_NAMES, candidate_features, feature_names
from models.candidates.merge import MergedCandidates
from models.candidates.sources import CandidateRequest
from models.ranker.gbdt import GbdtRanker

DEFAULT_DEPTH = 100  # the merged top-N the GBDT reorders (and is trained on)


def request_features(
    request: CandidateRequest, merged: MergedCandidates, state: FeatureState, repeats: bool = True
) -> np.ndarray:
    """[N, F] float32 features of one request's N merged candidates: the one feature path of serving,
    the recipe's training and validation, and the replay. repeats: see ``candidate_features``."""
    return candidate_features(
        request.context.timestamp, request.history, merged, state, request.user_vector, repeats
    )


class MergedReranker:
    """Scores the merged top ``depth`` of a request with a GBDT over ``candidate_features``."""

    kind = "gbdt"
    candidate_sources: tuple[str, ...] = ()

    def __init__(
        self,
        ranker: GbdtRanker,
        state: FeatureState,
        depth: int = DEFAULT_DEPTH,
        columns: np.ndarray | None = None,
    ) -> None:
        """columns [F_r]: the feature columns the model reads (an ablation's subset; None = all)."""
        self.ranker = ranker
        self.state = state
        self.depth = depth
        self.columns = columns
        self.version = ranker.version
        # the re-visit columns are computed only for a model that splits on one of them
        read = ranker.split_features()
        self.repeats = any(name in read for name in REPEAT_NAMES)

    def _check(self, merged: MergedCandidates) -> None:
        names = feature_names(merged.sources)
        if self.columns is not None:
            names = tuple(names[i] for i in self.columns.tolist())
        if names != self.ranker.feature_names:
            raise ValueError(
                f"the ranker reads features of other sources than {merged.sources}: "
                f"{self.ranker.feature_names}"
            )

    def features(self, request: CandidateRequest, merged: MergedCandidates) -> np.ndarray:
        """[N, F] float32 features of the request's N merged candidates (all of them: the caller cuts)."""
        self._check(merged)
        features = request_features(request, merged, self.state, self.repeats)
        return features if self.columns is None else features[:, self.columns]

    def features_batch(
        self, requests: Sequence[CandidateRequest], merged: Sequence[MergedCandidates]
    ) -> list[np.ndarray]:
        """Per request, [N_i, F] features of its merged candidates (``MergedRanker``)."""
        return [self.features(r, m) for r, m in zip(requests, merged, strict=True)]

    def score_features(
        self,
        requests: Sequence[CandidateRequest],
        merged: Sequence[MergedCandidates],
        features: Sequence[np.ndarray],
    ) -> list[np.ndarray]:
        """Per request, [N_i] float32 GBDT scores of its features (the requests and candidates are not
        read again); one model call for all (``MergedRanker``)."""
        return self.ranker.score_batch(list(features))

    def rerank(self, request: CandidateRequest, merged: MergedCandidates) -> MergedCandidates:
        """All of ``merged`` in the GBDT's order (ties keep the merged order)."""
        scores = self.ranker.score(self.features(request, merged))
        return merged.take(np.lexsort((np.arange(len(merged)), -scores)))
