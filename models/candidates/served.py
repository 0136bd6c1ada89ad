"""The served order: merged candidates, reordered by the ranker when the bundle trusts it.

The same object answers ``/v1/recommend`` and the offline replay (``tandem eval --stage pipeline``), so an
offline metric is a metric of what users receive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.candidates.generator import CandidateGenerator
from models.candidates.merge import MergedCandidates
from models.candidates.sources import CandidateRequest
from models.inference import CandidateRanker


@dataclass
class ServedList:
    """candidates in served order; scores [N] (ranker scores, or the merge score); ranked: ranker used."""

    candidates: MergedCandidates
    scores: np.ndarray
    ranked: bool


def ranker_columns(merged_sources: tuple[str, ...], ranker_sources: tuple[str, ...]) -> np.ndarray:
    """For each source the ranker reads, its column in the merged ranks (-1 = not produced here). [S_r]"""
    return np.asarray(
        [merged_sources.index(name) if name in merged_sources else -1 for name in ranker_sources],
        dtype=np.int64,
    )


def ranker_source_ranks(merged: MergedCandidates, ranker_sources: tuple[str, ...]) -> np.ndarray:
    """[N, S_r] ranks in the ranker's source order; a source this generator lacks reads as not found."""
    columns = ranker_columns(merged.sources, ranker_sources)
    out = np.full((len(merged), len(columns)), -1, dtype=np.int64)
    present = columns >= 0
    out[:, present] = merged.source_rank[:, columns[present]]
    return out


class ServedPipeline:
    """generator -> merged candidates -> (ranker) -> served order."""

    def __init__(
        self, generator: CandidateGenerator, ranker: CandidateRanker | None = None, use_ranker: bool = True
    ) -> None:
        self.generator = generator
        self.ranker = ranker
        self.use_ranker = use_ranker and ranker is not None

    def order(
        self, requests: Sequence[CandidateRequest], merged: Sequence[MergedCandidates]
    ) -> list[ServedList]:
        """Served order of already merged candidates (one forward pass for the whole batch)."""
        if not self.use_ranker or self.ranker is None:
            return [ServedList(m, m.merge_score, False) for m in merged]
        ranker = self.ranker
        source_ranks = [ranker_source_ranks(m, ranker.candidate_sources) for m in merged]
        scores = ranker.score_batch(
            [r.history for r in requests],
            [r.context for r in requests],
            [m.items for m in merged],
            source_ranks if ranker.candidate_sources else None,
        )
        out = []
        for candidates, row in zip(merged, scores, strict=True):
            order = np.argsort(-row, kind="stable")
            out.append(ServedList(candidates.take(order), row[order].astype(np.float32), True))
        return out

    def recommend(self, request: CandidateRequest) -> ServedList:
        return self.order([request], [self.generator.generate(request)])[0]
