"""The OnePiece transformer as a ``MergedRanker``: its candidate tokens read the same per-candidate features
as the GBDT (``models.ranker.gbdt_serving.request_features``) beside its own context (history, anchors,
situation), over the merged top ``depth`` of a request."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.candidates.feature_state import FeatureState
from models.candidates.merge import MergedCandidates
from models.candidates.served import ranker_source_ranks
from models.candidates.sources import CandidateRequest
from models.ranker.anchors import AnchorSources
from models.ranker.gbdt_serving import DEFAULT_DEPTH, request_features
from models.ranker.model import OnePieceRanker
from models.ranker.serving import TorchCandidateRanker


class FeaturedOnePiece:
    """A ``TorchCandidateRanker`` whose model reads ``config.candidate_features``, with the fitted state the
    features need."""

    kind = "onepiece"

    def __init__(self, ranker: TorchCandidateRanker, state: FeatureState, depth: int = DEFAULT_DEPTH) -> None:
        if not ranker.model.config.candidate_features:
            raise ValueError("the ranker's model reads no candidate features (config.candidate_features 0)")
        self.ranker = ranker
        self.state = state
        self.depth = depth
        self.version = ranker.version

    @property
    def model(self) -> OnePieceRanker:
        return self.ranker.model

    @property
    def sources(self) -> AnchorSources:
        """The anchors the transformer's context reads (refitted with the sources)."""
        return self.ranker.sources

    @sources.setter
    def sources(self, value: AnchorSources) -> None:
        self.ranker.sources = value

    def features_batch(
        self, requests: Sequence[CandidateRequest], merged: Sequence[MergedCandidates]
    ) -> list[np.ndarray]:
        """Per request, [N_i, F] features of its merged candidates (``MergedRanker``)."""
        width = self.ranker.model.config.candidate_features
        out = [request_features(r, m, self.state) for r, m in zip(requests, merged, strict=True)]
        for block in out:
            if block.shape[1] != width:
                raise ValueError(f"the ranker reads {width} features per candidate, got {block.shape[1]}")
        return out

    def score_features(
        self,
        requests: Sequence[CandidateRequest],
        merged: Sequence[MergedCandidates],
        features: Sequence[np.ndarray],
    ) -> list[np.ndarray]:
        """Per request, [N_i] scores: one forward over the batch (``MergedRanker``)."""
        sources = self.ranker.candidate_sources
        return self.ranker.score_batch(
            [r.history for r in requests],
            [r.context for r in requests],
            [m.items for m in merged],
            [ranker_source_ranks(m, sources) for m in merged] if sources else None,
            list(features),
        )
