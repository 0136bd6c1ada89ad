"""The served order: one function from a request and its rules to the list a user receives.

``ServedPipeline.recommend(request, rules)`` answers ``/v1/recommend``; ``recommend_many`` is the same code
for a batch (one ranker forward for all), and is what the offline replay (``tandem eval --stage
pipeline``), the bundle warm-up and the benchmark floors call, so an offline metric is a metric of what
users receive.

The stages, in this order (``recommend_many`` docstring, and docs/serving.md):

1. exclusions: the rules' items, and the request's history when seen items are excluded, join the
   request's own exclusions; every source drops them itself (the ANN inside its search);
2. sources -> merge (``CandidateGenerator.generate``); then the category filter drops what may not be
   served, before ranking, so the ranker scores only servable candidates;        [stage ``retrieve``]
3. the ranker reorders, when the bundle serves it and the request has something personal to rank by (a
   user vector, a history or anchors); a ranker error serves the merged order with a warning where the
   rules say ``fall_back``. Two kinds: a ``CandidateRanker`` (the OnePiece transformer) scores every
   merged candidate from the history, the context and the sources' ranks; a ``MergedRanker`` (the GBDT)
   computes per-candidate features of the merged top ``depth`` [stage ``features``] and scores them,
   the rest keeps the merged order after them;                                   [stage ``rank``]
4. diversity (MMR over the served scores) picks k, else the list is cut to k; a list the rules left
   shorter than k is topped up from popularity under the same exclusions and filter.  [stage ``rules``]
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol, runtime_checkable

import numpy as np

from models.candidates.generator import CandidateGenerator
from models.candidates.merge import MergedCandidates
from models.candidates.rules import WHOLE_LIST, ServingRules, StageTimer, mmr_order, top_up
from models.candidates.sources import CandidateRequest
from models.inference import CandidateRanker

log = logging.getLogger(__name__)
_NO_ITEMS = np.zeros(0, dtype=np.int64)
_NO_SCORES = np.zeros(0, dtype=np.float32)
_NO_ITEMS.flags.writeable = False
_NO_SCORES.flags.writeable = False
RANKER_ERRORS = (RuntimeError, ValueError, IndexError)


@dataclass
class ServedList:
    """A served list, best first: ``candidates`` (merged candidates in served order) with ``scores`` [n]
    (ranker scores, or the merge score); ``ranked``: the ranker ordered them; ``filler`` [t] items topped
    up from popularity after them, with ``filler_scores`` [t] (their popularity); ``warnings``: what the
    caller should be told (a rule that could not be met, a stage that failed); ``ranker_failed``: the
    ranker raised and the merged order was served (``ServingRules.fall_back``)."""

    candidates: MergedCandidates
    scores: np.ndarray
    ranked: bool
    filler: np.ndarray = field(default_factory=lambda: _NO_ITEMS)  # shared, read-only: no allocation
    filler_scores: np.ndarray = field(default_factory=lambda: _NO_SCORES)
    warnings: list[str] = field(default_factory=list)
    ranker_failed: bool = False

    def __len__(self) -> int:
        return len(self.candidates) + int(self.filler.shape[0])

    @property
    def items(self) -> np.ndarray:
        """[n + t] int64 item indices as served."""
        if not self.filler.size:
            return self.candidates.items
        return np.concatenate([self.candidates.items, self.filler])

    def sources(self) -> list[str]:
        """[n + t] the source named for each served item (``popular`` for the top-up)."""
        return self.candidates.primary_source() + ["popular"] * int(self.filler.shape[0])

    def item_scores(self) -> np.ndarray:
        """[n + t] float32 scores as served."""
        if not self.filler.size:
            return np.asarray(self.scores, dtype=np.float32)
        return np.concatenate([np.asarray(self.scores, np.float32), self.filler_scores.astype(np.float32)])


@runtime_checkable
class MergedRanker(Protocol):
    """A ranker over merged candidates (``models.ranker.gbdt_serving.MergedReranker``, the GBDT;
    ``models.ranker.featured.FeaturedOnePiece``, the transformer with the same features): it reads what the
    sources and the merge said of each candidate (scores, ranks), the request and fitted state, and reorders
    the merged top ``depth``."""

    version: str
    depth: int

    def features_batch(
        self, requests: Sequence[CandidateRequest], merged: Sequence[MergedCandidates]
    ) -> list[np.ndarray]:
        """Per request, [N_i, F] float32 features of its N_i (<= ``depth``) merged candidates."""
        ...

    def score_features(
        self,
        requests: Sequence[CandidateRequest],
        merged: Sequence[MergedCandidates],
        features: Sequence[np.ndarray],
    ) -> list[np.ndarray]:
        """Per request, [N_i] scores (higher is better) of its merged candidates given ``features_batch``'s
        rows, one model call."""
        ...


def head_of(merged: MergedCandidates, depth: int) -> MergedCandidates:
    """The merged top ``depth`` (the whole list when shorter)."""
    return merged if len(merged) <= depth else merged.take(np.arange(depth))


def reranked_head(merged: MergedCandidates, head_scores: np.ndarray) -> tuple[MergedCandidates, np.ndarray]:
    """The merged list with its first len(head_scores) candidates in score order (ties keep the merged
    order) and the rest after them in merged order, with scores that keep falling below the head's.
    -> (candidates, scores [N] float32)."""
    head = len(head_scores)
    order = np.lexsort((np.arange(head), -head_scores))
    tail = len(merged) - head
    floor = float(head_scores.min()) if head else 0.0
    scores = np.concatenate([head_scores[order], floor - 1.0 - np.arange(tail) / max(tail, 1)])
    return merged.take(np.concatenate([order, np.arange(head, len(merged))])), scores.astype(np.float32)


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


def personal(request: CandidateRequest) -> bool:
    """Whether the request has anything personal to rank by (else the popularity order stands)."""
    return request.user_vector is not None or len(request.history) > 0 or request.context.anchors.size > 0


class ServedPipeline:
    """generator -> merged candidates -> (ranker) -> rules -> served list."""

    def __init__(
        self,
        generator: CandidateGenerator,
        ranker: CandidateRanker | MergedRanker | None = None,
        use_ranker: bool = True,
    ) -> None:
        self.generator = generator
        self.ranker = ranker
        self.use_ranker = use_ranker and ranker is not None

    def recommend(
        self, request: CandidateRequest, rules: ServingRules = WHOLE_LIST, timer: StageTimer | None = None
    ) -> ServedList:
        """The list served for one request under ``rules`` (stages: the module docstring);
        ``timer`` receives the end of each stage."""
        return self.recommend_many([request], rules, timer=timer)[0]

    def recommend_many(
        self,
        requests: Sequence[CandidateRequest],
        rules: ServingRules = WHOLE_LIST,
        merged: Sequence[MergedCandidates] | None = None,
        timer: StageTimer | None = None,
    ) -> list[ServedList]:
        """``recommend`` for a batch under the same rules, with one ranker forward for the whole batch.

        ``merged``: the requests' merged candidates when the caller has them already (the replay merges
        once for several rows); the sources are then not asked again. Stages, in order: exclusions ->
        sources -> merge -> category filter [retrieve] -> features [features] -> ranker [rank] -> MMR or
        cut to k -> popularity top-up [rules]."""
        started = time.perf_counter()
        requests = [self._with_exclusions(request, rules) for request in requests]
        lists = list(merged) if merged is not None else [self.generator.generate(r) for r in requests]
        categories = rules.categories
        if categories.active and rules.items is not None:
            item_category = rules.items.category
            lists = [m.take(np.flatnonzero(categories.mask(m.items, item_category))) for m in lists]
        if timer is not None:
            timer.record("retrieve", started)
        served = self._ranked(requests, lists, rules.fall_back, timer)
        started = time.perf_counter()
        if rules.k is not None:
            served = [self._apply_rules(s, r, rules) for s, r in zip(served, requests, strict=True)]
        if timer is not None:
            timer.record("rules", started)
        return served

    def _with_exclusions(self, request: CandidateRequest, rules: ServingRules) -> CandidateRequest:
        """The request with the rules' exclusions and, where seen items are excluded, its history's items."""
        exclude_seen = rules.exclude_seen
        if exclude_seen is None:  # the bundle decides: re-visits only where its data has them
            exclude_seen = not self.generator.config.allow_seen
        if not rules.exclude and not (exclude_seen and len(request.history)):
            return request
        excluded = set(rules.exclude)
        if exclude_seen:
            excluded.update(request.history.item.tolist())
        if request.exclude.size:
            excluded.update(request.exclude.tolist())
        return replace(request, exclude=np.fromiter(excluded, dtype=np.int64, count=len(excluded)))

    def _ranked(
        self,
        requests: list[CandidateRequest],
        merged: list[MergedCandidates],
        fall_back: bool,
        timer: StageTimer | None = None,
    ) -> list[ServedList]:
        """The merged lists in served order: the ranker's where it runs (one forward), else the merge's.
        Records the stages ``features`` (a ``MergedRanker``'s) and ``rank``."""
        started = time.perf_counter()
        served = [ServedList(m, m.merge_score, False) for m in merged]
        rows = [i for i, (r, m) in enumerate(zip(requests, merged, strict=True)) if len(m) and personal(r)]
        ranker = self.ranker
        if not self.use_ranker or ranker is None or not rows:
            if timer is not None:
                timer.record("rank", started)
            return served
        try:
            if isinstance(ranker, MergedRanker):
                heads = [head_of(merged[i], ranker.depth) for i in rows]
                blocks = ranker.features_batch([requests[i] for i in rows], heads)
                if timer is not None:
                    timer.record("features", started)
                    started = time.perf_counter()
                head_scores = ranker.score_features([requests[i] for i in rows], heads, blocks)
                for i, row in zip(rows, head_scores, strict=True):
                    served[i] = ServedList(*reranked_head(merged[i], np.asarray(row, np.float64)), True)
                if timer is not None:
                    timer.record("rank", started)
                return served
            scores = ranker.score_batch(
                [requests[i].history for i in rows],
                [requests[i].context for i in rows],
                [merged[i].items for i in rows],
                [ranker_source_ranks(merged[i], ranker.candidate_sources) for i in rows]
                if ranker.candidate_sources
                else None,
            )
        except RANKER_ERRORS as exc:
            if not fall_back:
                raise
            log.exception("ranker failed; keeping the merged order", extra={"error": str(exc)})
            for i in rows:
                served[i].warnings.append("ranker failed: candidates in merged order")
                served[i].ranker_failed = True
            if timer is not None:
                timer.record("rank", started)
            return served
        for i, row in zip(rows, scores, strict=True):
            order = np.argsort(-row, kind="stable")
            served[i] = ServedList(merged[i].take(order), row[order].astype(np.float32), True)
        if timer is not None:
            timer.record("rank", started)
        return served

    @staticmethod
    def _apply_rules(served: ServedList, request: CandidateRequest, rules: ServingRules) -> ServedList:
        """Diversity (MMR) or the cut to k, then the popularity top-up. Needs ``rules.k``."""
        assert rules.k is not None
        k, tables, warnings = rules.k, rules.items, served.warnings
        candidates, scores = served.candidates, np.asarray(served.scores, np.float32)
        if rules.diversity > 0 and len(candidates):
            if tables is None or tables.vectors is None:
                warnings.append("diversity needs item vectors; this bundle has none, ignored")
                candidates, scores = candidates.take(np.arange(min(k, len(candidates)))), scores[:k]
            else:
                order = mmr_order(scores, tables.vectors[candidates.items], k, rules.diversity)
                candidates, scores = candidates.take(order), scores[order]
        elif len(candidates) > k:
            candidates, scores = candidates.take(np.arange(k)), scores[:k]
        filler, filler_scores = _NO_ITEMS, _NO_SCORES
        if len(candidates) < k and tables is not None:
            # the request's exclusions already hold the rules' ones and the seen items (_with_exclusions)
            taken = set(request.exclude.tolist()) | set(candidates.items.tolist())
            filler = top_up(tables, taken, rules.categories, k - len(candidates))
            filler_scores = tables.popularity[filler].astype(np.float32)
        shown = len(candidates) + int(filler.shape[0])
        if shown < k:
            warnings.append(f"only {shown} items remain after exclusions and filters (k={k})")
        return ServedList(
            candidates, scores, served.ranked, filler, filler_scores, warnings, served.ranker_failed
        )
