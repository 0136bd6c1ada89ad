"""The merge stage: which sources merge, the recent-items scoring, and the fusion weights, tuned on the
ranker period's requests (NDCG@10 of the merged order)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from models.candidates.generator import CandidateGenerator
from models.candidates.merge import MergeConfig, MergedCandidates, UnionScores, merge_lists
from models.candidates.sources import CandidateRequest, RecentItemsSource, SourceList
from models.protocols import EvalTask
from models.recipe.lists import candidate_requests, list_metrics
from models.recipe.merge_table import MergeTable
from models.recipe.settings import (
    RECENT_CHOICES,
    SCORE_WEIGHT_GRID,
    SOURCE_ORDER,
    WEIGHT_GRID,
    RecipeSettings,
)
from models.recipe.variants import best_variant


def choose_recent(
    task: EvalTask,
    choices: Sequence[dict[str, Any]] = RECENT_CHOICES,
    requests: list[CandidateRequest] | None = None,
) -> tuple[RecentItemsSource, list[dict[str, Any]]]:
    """The recent-items scoring with the best NDCG@10 of its own list on ``task``'s requests (the ranker
    period; ties keep the earlier choice, as ``best_variant``); ``requests``: the task's requests when the
    caller has built them (``candidate_requests``). -> (the source, every choice with its ``NDCG@10`` and
    whether it was ``kept``)."""
    requests = candidate_requests(task, None) if requests is None else requests
    sources = [RecentItemsSource(**choice) for choice in choices]
    scores = [
        list_metrics([source.candidates(r, source.max_items).items for r in requests], task)["NDCG@10"]
        if requests
        else 0.0
        for source in sources
    ]
    kept = best_variant(scores)
    tried = [
        {**source.to_dict(), "NDCG@10": round(float(score), 4), "kept": i == kept}
        for i, (source, score) in enumerate(zip(sources, scores, strict=True))
    ]
    return sources[kept], tried


def tune_weights(
    lists: list[list[SourceList]],
    task: EvalTask,
    rows: np.ndarray,
    base: MergeConfig,
    union_scores: Sequence[UnionScores | None] | None = None,
) -> tuple[MergeConfig, float]:
    """Coordinate ascent over the weight grid of ``base.fusion`` (``WEIGHT_GRID`` for rank fusion,
    ``SCORE_WEIGHT_GRID`` for score fusion), per source, two passes, on validation NDCG@10 of the merged
    order; the best first, ties keep the earlier (smaller-change) setting. ``union_scores``: per request
    of ``lists`` (score fusion). -> (tuned config, its validation NDCG@10)."""
    weights = list(base.weights)
    grid = SCORE_WEIGHT_GRID if base.fusion == "score" else WEIGHT_GRID
    table = MergeTable.build(lists, task, rows, base, union_scores)  # = merge_ndcg, without re-merging

    def score(candidate: list[float]) -> float:
        return table.ndcg(candidate)

    best = score(weights)
    for _ in range(2):
        for column in range(len(weights)):
            for value in grid:
                trial = [*weights[:column], value, *weights[column + 1 :]]
                if trial == weights or not any(trial):
                    continue
                result = score(trial)
                if result > best + 1e-9:
                    best, weights = result, trial
    return replace(base, weights=tuple(weights)), best


def merge_ndcg(
    lists: list[list[SourceList]],
    task: EvalTask,
    rows: np.ndarray,
    config: MergeConfig,
    union_scores: Sequence[UnionScores | None] | None = None,
) -> float:
    """Mean NDCG@10 over ``rows`` of the order ``config`` merges."""
    merged = {
        i: merge_lists(lists[i], config, None if union_scores is None else union_scores[i]).items
        for i in rows.tolist()
    }
    empty = np.zeros(0, np.int64)
    return list_metrics([merged.get(i, empty) for i in range(len(task))], task, rows)["NDCG@10"]


def single_source(base: MergeConfig, column: int, fusion: str = "rrf") -> MergeConfig:
    """The merge that serves one source's order (that source's weight alone; with rank fusion its list as
    it is, then the other sources' items)."""
    weights = tuple(1.0 if i == column else 0.0 for i in range(len(base.sources)))
    return replace(base, fusion=fusion, weights=weights)


def stored_union_scores(
    generator: CandidateGenerator, request: CandidateRequest, lists: list[SourceList]
) -> UnionScores:
    """Every source's scores of the request's candidate union, computed once and looked up after (the
    merge tuning merges one request many times)."""
    return union_lookup(*candidate_union(generator, request, lists))


def union_lookup(union: np.ndarray, matrix: np.ndarray) -> UnionScores:
    """A ``candidate_union`` result (union [C] sorted, scores [C, S]) as the merge's score lookup."""

    def lookup(items: np.ndarray) -> np.ndarray:
        return matrix[np.searchsorted(union, items)]

    return lookup


def candidate_union(
    generator: CandidateGenerator, request: CandidateRequest, lists: list[SourceList]
) -> tuple[np.ndarray, np.ndarray]:
    """-> (the union of the request's source lists [C] sorted, every source's score of each [C, S])."""
    union = np.unique(np.concatenate([source.items for source in lists] + [np.zeros(0, np.int64)]))
    return union, generator.union_scores(request)(union)


def choose_merge(
    generators: CandidateGenerator | Sequence[CandidateGenerator],
    requests: list[CandidateRequest],
    lists: list[list[SourceList]],
    task: EvalTask,
    rows: np.ndarray,
    base: MergeConfig,
    fusion: str = "auto",
) -> tuple[MergeConfig, dict[str, float]]:
    """Tunes rank fusion and score fusion on the validation ``rows`` and keeps the better (ties: rank
    fusion); ``fusion`` "rrf" or "score" tunes only that one. Every source alone (``single_source``) is a
    candidate too, so the merge kept is never below its best source on these rows. generators: the
    generator of every request (or one for all: the fits the requests' lists came from). -> (merge
    config, validation NDCG@10 of each candidate, keys ``merge_<fusion>_NDCG@10`` and
    ``merge_only_<source>_NDCG@10``, and of the one kept, ``merge_kept_NDCG@10``)."""
    if fusion not in ("auto", "rrf", "score"):
        raise ValueError(f"merge fusion {fusion!r}: expected auto, rrf or score")
    scores: dict[str, float] = {}
    chosen = base
    stored: list[UnionScores | None] = [None] * len(lists)
    if fusion in ("auto", "rrf"):
        chosen, scores["merge_rrf_NDCG@10"] = tune_weights(lists, task, rows, base)
    if fusion in ("auto", "score"):
        for i in rows.tolist():
            stored[i] = stored_union_scores(generator_of(generators, i), requests[i], lists[i])
        score_config, score_score = tune_weights(lists, task, rows, replace(base, fusion="score"), stored)
        if score_score > scores.get("merge_rrf_NDCG@10", -np.inf) + 1e-9:
            chosen = score_config
        scores["merge_score_NDCG@10"] = score_score
    best = max(scores.values())
    alone_fusion = "score" if fusion == "score" else "rrf"  # a fixed fusion stays fixed
    table = MergeTable.build(
        lists, task, rows, replace(base, fusion=alone_fusion), stored if alone_fusion == "score" else None
    )
    for column, name in enumerate(base.sources):
        alone = single_source(base, column, alone_fusion)
        value = table.ndcg(alone.weights)
        scores[f"merge_only_{name}_NDCG@10"] = value
        if value > best + 1e-9:
            chosen, best = alone, value
    scores["merge_kept_NDCG@10"] = best
    return chosen, scores


def generator_of(
    generators: CandidateGenerator | Sequence[CandidateGenerator], row: int
) -> CandidateGenerator:
    """Request ``row``'s generator (one given for all, or one per request)."""
    return generators if isinstance(generators, CandidateGenerator) else generators[row]


def merged_lists(
    generators: CandidateGenerator | Sequence[CandidateGenerator],
    requests: list[CandidateRequest],
    lists: list[list[SourceList]],
    config: MergeConfig,
    unions: dict[int, tuple[np.ndarray, np.ndarray]] | None = None,
) -> list[MergedCandidates]:
    """Every request's merged candidates under ``config`` (the sources' scores fetched for score fusion).
    ``unions``: request index -> its ``candidate_union`` where already computed (the rest: computed here)."""
    if config.fusion != "score":
        return [merge_lists(request_lists, config) for request_lists in lists]
    known = unions or {}
    return [
        merge_lists(
            request_lists,
            config,
            union_lookup(
                *(known.get(row) or candidate_union(generator_of(generators, row), request, request_lists))
            ),
        )
        for row, (request, request_lists) in enumerate(zip(requests, lists, strict=True))
    ]


def merge_sources(available: tuple[str, ...], allow_seen: bool, chosen: tuple[str, ...]) -> tuple[str, ...]:
    """The sources the replay merges, in ``SOURCE_ORDER``: those available (``recent`` only where seen
    items may be recommended), cut to ``chosen`` when it names any. Unknown names are a ValueError."""
    unknown = sorted(set(chosen) - set(SOURCE_ORDER))
    if unknown:
        raise ValueError(f"unknown candidate source(s) {unknown}; expected some of {list(SOURCE_ORDER)}")
    names = tuple(
        n
        for n in SOURCE_ORDER
        if n in available and (n != "recent" or allow_seen) and (not chosen or n in chosen)
    )
    if not names:
        raise ValueError(
            f"no candidate source left to merge: asked for {list(chosen)}, have {list(available)}"
        )
    return names


def merge_tuning_rows(
    train_rows: np.ndarray, valid_rows: np.ndarray, settings: RecipeSettings, rng: np.random.Generator
) -> np.ndarray:
    """The ranker-period rows the merge weights are tuned on (``settings.merge_tuning``: "all" or "valid"),
    at most ``settings.merge_tuning_requests`` drawn at random, sorted. -> [R] int64."""
    if settings.merge_tuning not in ("all", "valid"):
        raise ValueError(f"merge tuning {settings.merge_tuning!r}: expected all or valid")
    pool = np.concatenate([train_rows, valid_rows]) if settings.merge_tuning == "all" else valid_rows
    return np.sort(rng.permutation(pool)[: settings.merge_tuning_requests]).astype(np.int64)
