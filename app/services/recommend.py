"""The recommend pipeline: user vector -> candidates -> ranker -> rules -> top k, with stage timings.

Every stage degrades instead of failing: no vector -> co-occurrence or popular candidates; ranker error ->
retrieval order; too few items after the rules -> topped up from popularity, then a warning.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

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
    exclude_seen: bool = True


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
    source: str


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


def _retrieve(
    serving: ServingBundle, user_vector: UserVector, anchors: list[int], excluded: set[int], count: int
) -> _Candidates:
    """ANN over the vector, else co-occurrence around history/anchors, else popularity. [N] each."""
    if user_vector.vector is not None and serving.index is not None:
        items, scores = serving.index.search(user_vector.vector[None, :], count, exclude=[excluded])
        keep = items[0] >= 0
        return _Candidates(items[0][keep].astype(np.int64), scores[0][keep].astype(np.float32), "ann")
    seeds = [*anchors, *user_vector.history.item[-20:].tolist()]
    if serving.cooccurrence is not None and seeds:
        items, scores = serving.cooccurrence.neighbours(
            np.asarray(seeds, dtype=np.int64), count + len(excluded)
        )
        items, scores = (
            np.asarray(items, dtype=np.int64).reshape(-1),
            np.asarray(scores, np.float32).reshape(-1),
        )
        if items.size:
            return _Candidates(items, scores, "cooccurrence")
    return _popular(serving, count + len(excluded))


def _popular(serving: ServingBundle, count: int) -> _Candidates:
    items = serving.popular_order[:count]
    return _Candidates(items, serving.popularity[items].astype(np.float32), "popular")


def _rank(
    serving: ServingBundle, found: _Candidates, user_vector: UserVector, context: RequestContext
) -> tuple[_Candidates, str | None]:
    if serving.ranker is None or found.source == "popular" or found.items.size == 0:
        return found, None
    try:
        scores = np.asarray(serving.ranker.score(user_vector.history, context, found.items), dtype=np.float32)
    except (RuntimeError, ValueError, IndexError) as exc:
        metrics.STAGE_FAILURES.labels("rank").inc()
        log.exception("ranker failed; keeping retrieval order", extra={"error": str(exc)})
        return found, "ranker failed: candidates in retrieval order"
    order = np.argsort(-scores, kind="stable")
    return _Candidates(found.items[order], scores[order], "ranker"), None


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
    one worker thread (one hop per request). ``started``: when the user-vector stage began (on the loop)."""
    import torch

    warnings: list[str] = []
    with torch.inference_mode():
        user_vector = finish_user_vector(serving, lookup, context)
        timer.record("user_vector", started)
        if query.exclude_seen:
            excluded = excluded | set(user_vector.history.item.tolist())

        started = time.perf_counter()
        found = _retrieve(serving, user_vector, context.anchors.tolist(), excluded, count)
        timer.record("retrieve", started)

        started = time.perf_counter()
        keep = passing(found.items, excluded, category_filter, serving.item_category)
        found = _Candidates(found.items[keep], found.scores[keep], found.source)
        found, rank_warning = _rank(serving, found, user_vector, context)
        warnings += [rank_warning] if rank_warning else []
        timer.record("rank", started)

    started = time.perf_counter()
    if query.diversity > 0 and found.items.size:
        if serving.item_vectors is None:
            warnings.append("diversity needs item vectors; this bundle has none, ignored")
        else:
            order = mmr_order(found.scores, serving.item_vectors[found.items], query.k, query.diversity)
            found = _Candidates(found.items[order], found.scores[order], found.source)
    pairs = zip(found.items[: query.k].tolist(), found.scores[: query.k].tolist(), strict=True)
    chosen = [(int(item), float(score), found.source) for item, score in pairs]
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
    user_vector, items, select_warnings = await asyncio.to_thread(
        _select, serving, query, lookup, context, excluded, category_filter, candidate_count, timer, started
    )
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
