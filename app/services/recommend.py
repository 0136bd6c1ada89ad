"""The recommend pipeline: user vector -> candidates -> ranker -> rules -> top k, with stage timings.

Every stage degrades instead of failing: no vector -> co-occurrence or popular candidates; ranker error ->
retrieval order; too few items after the rules -> topped up from popularity, then a warning.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from app.core import metrics
from app.services.items import RankedItem
from app.services.rules import CategoryFilter, mmr_order, passing
from app.services.serving_bundle import ServingBundle
from app.services.user_vectors import (
    UserVector,
    VectorLookup,
    finish_user_vector,
    look_up_user,
    write_back_later,
)
from app.stores.base import UserStateStore
from models.candidates.served import ServedList
from models.candidates.sources import CandidateRequest
from models.inference import RequestContext

log = logging.getLogger("tandem.recommend")


@dataclass
class RecommendQuery:
    """A validated request, raw ids as strings."""

    user_id: str
    k: int
    scene: str | None = None
    device: str | None = None
    timestamp: int | None = None
    anchors: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    category_in: list[str] | None = None
    category_not_in: list[str] = field(default_factory=list)
    diversity: float = 0.0
    exclude_seen: bool | None = None  # None: the bundle decides (its merge config's allow_seen)


@dataclass
class Recommendation:
    items: list[RankedItem]
    served_by: str
    model_version: str
    index_version: str
    warnings: list[str]
    timings_ms: dict[str, float]


@dataclass
class _Candidates:
    items: np.ndarray  # [N] int64 item indices
    scores: np.ndarray  # [N] float32
    sources: list[str]  # [N] the source that ranked each candidate best


class _Timer:
    def __init__(self) -> None:
        self.ms: dict[str, float] = {}

    def record(self, stage: str, started: float) -> None:
        seconds = time.perf_counter() - started
        metrics.STAGE_SECONDS.labels(stage).observe(seconds)
        self.ms[stage] = round(seconds * 1000, 3)


def _known(serving: ServingBundle, raw_ids: list[str]) -> tuple[list[int], list[str]]:
    """Raw ids -> (item indices the bundle knows, raw ids it does not)."""
    known: list[int] = []
    unknown: list[str] = []
    for raw in raw_ids:
        item = serving.item_of(raw)
        if item is None:
            unknown.append(raw)
        else:
            known.append(item)
    return known, unknown


def _category_filter(serving: ServingBundle, query: RecommendQuery, warnings: list[str]) -> CategoryFilter:
    def lookup(names: list[str]) -> set[int]:
        missing = [name for name in names if name not in serving.category_index]
        if missing:
            warnings.append(f"unknown categories ignored: {', '.join(sorted(missing)[:10])}")
        return {serving.category_index[name] for name in names if name in serving.category_index}

    allowed = lookup(query.category_in) if query.category_in is not None else None
    return CategoryFilter(allowed=allowed, blocked=lookup(query.category_not_in))


def _serve(
    serving: ServingBundle,
    user_vector: UserVector,
    context: RequestContext,
    excluded: set[int],
    category_filter: CategoryFilter,
    count: int,
    timer: _Timer,
) -> tuple[_Candidates, list[str]]:
    """Sources -> merge -> rules -> ranker (models.candidates, the path the offline replay measures)."""
    started = time.perf_counter()
    pipeline = serving.pipeline(count)
    request = CandidateRequest(
        history=user_vector.history,
        context=context,
        user_vector=user_vector.vector if serving.index is not None else None,
        exclude=np.fromiter(excluded, dtype=np.int64, count=len(excluded)),
    )
    merged = pipeline.generator.generate(request)
    merged = merged.take(
        np.flatnonzero(passing(merged.items, excluded, category_filter, serving.item_category))
    )
    served = ServedList(merged, merged.merge_score, False)
    timer.record("retrieve", started)
    started = time.perf_counter()
    warnings: list[str] = []
    # nothing personal to rank by (unknown user, no anchors): the popularity order stands
    personal = request.user_vector is not None or len(request.history) > 0 or context.anchors.size > 0
    if pipeline.use_ranker and personal and len(merged):
        try:
            served = pipeline.order([request], [merged])[0]
        except (RuntimeError, ValueError, IndexError) as exc:
            metrics.STAGE_FAILURES.labels("rank").inc()
            log.exception("ranker failed; keeping the merged order", extra={"error": str(exc)})
            warnings.append("ranker failed: candidates in merged order")
    found = served.candidates
    timer.record("rank", started)
    return _Candidates(found.items, np.asarray(served.scores, np.float32), found.primary_source()), warnings


def _select(
    serving: ServingBundle,
    query: RecommendQuery,
    lookup: VectorLookup,
    context: RequestContext,
    excluded: set[int],
    category_filter: CategoryFilter,
    count: int,
    timer: _Timer,
    started: float,
) -> tuple[UserVector, list[RankedItem], list[str]]:
    """User vector (encoder when needed), retrieve, rank and apply the rules: the request's CPU work, in
    one worker thread (one hop per request), or on the loop where ``runs_on_the_loop`` says so.
    ``started``: when the user-vector stage began (on the loop)."""
    import torch

    with torch.inference_mode():
        user_vector = finish_user_vector(serving, lookup, context)
        timer.record("user_vector", started)
        exclude_seen = query.exclude_seen
        if exclude_seen is None:  # the bundle decides: re-visits only where its data has them
            exclude_seen = not serving.pipeline(count).generator.config.allow_seen
        if exclude_seen:
            excluded = excluded | set(user_vector.history.item.tolist())
        found, warnings = _serve(serving, user_vector, context, excluded, category_filter, count, timer)

    started = time.perf_counter()
    if query.diversity > 0 and found.items.size:
        if serving.item_vectors is None:
            warnings.append("diversity needs item vectors; this bundle has none, ignored")
        else:
            order = mmr_order(found.scores, serving.item_vectors[found.items], query.k, query.diversity)
            found = _Candidates(found.items[order], found.scores[order], [found.sources[i] for i in order])
    pairs = zip(
        found.items[: query.k].tolist(), found.scores[: query.k].tolist(), found.sources, strict=False
    )
    chosen = [(int(item), float(score), source) for item, score, source in pairs]
    if len(chosen) < query.k:  # top up from popularity under the same rules
        taken = excluded | {item for item, _, _ in chosen}
        extra = serving.popular_order
        extra = extra[passing(extra, taken, category_filter, serving.item_category)][: query.k - len(chosen)]
        chosen += [(int(item), float(serving.popularity[item]), "popular") for item in extra]
    if len(chosen) < query.k:
        warnings.append(f"only {len(chosen)} items remain after exclusions and filters (k={query.k})")
    timer.record("rules", started)
    items = [
        serving.ranked_item(item, rank, score, source)
        for rank, (item, score, source) in enumerate(chosen, start=1)
    ]
    return user_vector, items, warnings


def runs_on_the_loop(serving: ServingBundle, lookup: VectorLookup, candidate_count: int) -> bool:
    """True when the request's CPU work is short numpy work that holds the GIL: the user vector is known
    (a cache hit, or a bundle without an encoder) and the bundle serves no ranker. Such work is cheaper on
    the event loop than behind a thread hop (wrk against one process, default bundle, 5 paired runs: 4
    connections +12% req/s at the median; docs/performance.md, "What each change bought"). An encoder or
    ranker forward releases the GIL inside its kernels, so that work keeps its thread and the loop keeps
    serving meanwhile."""
    return lookup.resolved is not None and not serving.pipeline(candidate_count).use_ranker


async def recommend(
    serving: ServingBundle,
    store: UserStateStore,
    query: RecommendQuery,
    *,
    candidate_count: int,
    vector_ttl_s: int,
) -> Recommendation:
    timer = _Timer()
    begun = time.perf_counter()
    warnings: list[str] = []
    anchors, unknown_anchors = _known(serving, query.anchors)
    excluded_known, _ = _known(serving, query.exclude)
    if unknown_anchors:
        warnings.append(f"unknown anchor items ignored: {', '.join(map(str, unknown_anchors[:10]))}")
    context = RequestContext(
        timestamp=int(query.timestamp if query.timestamp is not None else time.time()),
        scene=serving.scene_of(query.scene),
        device=serving.device_of(query.device),
        anchors=np.asarray(anchors, dtype=np.int64),
    )
    started = time.perf_counter()
    lookup = await look_up_user(serving, store, query.user_id, context)
    excluded = set(excluded_known) | set(anchors)
    filter_warnings: list[str] = []
    category_filter = _category_filter(serving, query, filter_warnings)
    work = partial(
        _select, serving, query, lookup, context, excluded, category_filter, candidate_count, timer, started
    )
    if runs_on_the_loop(serving, lookup, candidate_count):
        user_vector, items, select_warnings = work()
    else:
        user_vector, items, select_warnings = await asyncio.to_thread(work)
    warnings += user_vector.warnings + filter_warnings
    write_back_later(store, query.user_id, lookup, user_vector, serving, vector_ttl_s)
    timer.record("total", begun)
    return Recommendation(
        items=items,
        served_by=user_vector.served_by,
        model_version=serving.model_version,
        index_version=serving.index_version,
        warnings=warnings + select_warnings,
        timings_ms=timer.ms,
    )
