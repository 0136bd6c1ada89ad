"""The recommend route's service: raw ids -> the user vector -> ``ServedPipeline.recommend`` -> answer rows.

The app's part is what needs the store and the bundle's vocabularies: raw ids to item indices, the user
vector (cache, online encoder, cold start; ``user_vectors``), the request's ``ServingRules``, and answer
rows with raw ids. Candidates, ranking and the rules (their order: ``models.candidates.served``) are the
one served function the offline replay scores too.

Every stage degrades instead of failing: no vector -> co-occurrence or popular candidates; ranker error ->
merged order; too few items after the rules -> topped up from popularity, then a warning.
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
from app.services.serving_bundle import ServingBundle
from app.services.user_vectors import (
    UserVector,
    VectorLookup,
    finish_user_vector,
    look_up_user,
    write_back_later,
)
from app.stores.base import UserStateStore
from models.candidates.rules import NO_CATEGORY_FILTER, CategoryFilter, ServingRules
from models.candidates.served import ServedPipeline
from models.candidates.sources import CandidateRequest
from models.types import RequestContext

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


class _Timer:
    """Stage timings of one request (``models.candidates.rules.StageTimer``): the ``explain`` answer's
    ``timings_ms`` and the per-stage latency histogram."""

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
    if query.category_in is None and not query.category_not_in:
        return NO_CATEGORY_FILTER

    def lookup(names: list[str]) -> frozenset[int]:
        missing = [name for name in names if name not in serving.category_index]
        if missing:
            warnings.append(f"unknown categories ignored: {', '.join(sorted(missing)[:10])}")
        return frozenset(serving.category_index[name] for name in names if name in serving.category_index)

    allowed = lookup(query.category_in) if query.category_in is not None else None
    return CategoryFilter(allowed=allowed, blocked=lookup(query.category_not_in))


def _select(
    serving: ServingBundle,
    pipeline: ServedPipeline,
    lookup: VectorLookup,
    context: RequestContext,
    rules: ServingRules,
    timer: _Timer,
    started: float,
) -> tuple[UserVector, list[RankedItem], list[str]]:
    """User vector (encoder when needed), then ``ServedPipeline.recommend`` (sources, merge, ranker,
    rules): the request's CPU work, in one worker thread (one hop per request), or on the loop where
    ``runs_on_the_loop`` says so. ``started``: when the user-vector stage began (on the loop)."""
    import torch

    with torch.inference_mode():
        user_vector = finish_user_vector(serving, lookup, context)
        timer.record("user_vector", started)
        request = CandidateRequest(
            history=user_vector.history,
            context=context,
            user_vector=user_vector.vector if serving.index is not None else None,
        )
        served = pipeline.recommend(request, rules, timer)
    if served.ranker_failed:
        metrics.STAGE_FAILURES.labels("rank").inc()
    items = [
        serving.ranked_item(item, rank, score, source)
        for rank, (item, score, source) in enumerate(
            zip(served.items.tolist(), served.item_scores().tolist(), served.sources(), strict=True), start=1
        )
    ]
    return user_vector, items, served.warnings


def runs_on_the_loop(pipeline: ServedPipeline) -> bool:
    """True when the request's CPU work is cheaper on the event loop than behind a thread hop: the bundle
    serves no ranker or a tree ranker (numpy features of the same kind as the sources, and a compiled
    forward of ~0.03 ms), whether the user vector is known or the encoder runs first. A thread hop buys no
    parallelism for work that mostly holds the GIL and costs a switch each way: cache path, wrk against one
    process, 1 process at 4 connections 140 -> ~180 req/s with the GBDT on the loop; the online path (the
    encoder's ~1.2 ms forward on the loop too), ``make bench``, 2 workers, 2 alternating pairs: online
    capacity 395 / 383 -> 413 / 412 req/s, p50 at 1 connection 5.0 / 5.2 -> 4.8 / 4.7 ms
    (docs/performance.md, "What each change bought"). A transformer ranker's forward (a few ms, releasing
    the GIL inside its kernels) keeps its thread, so the loop serves other requests meanwhile."""
    return not pipeline.use_ranker or getattr(pipeline.ranker, "kind", None) == "gbdt"


async def recommend(
    serving: ServingBundle,
    users: UserStateStore,
    query: RecommendQuery,
    *,
    candidate_count: int,
    vector_ttl_s: int,
) -> Recommendation:
    """One recommendation on the ``serving`` snapshot (the caller takes ``holder.current`` once)."""
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
    lookup = await look_up_user(serving, users, query.user_id, context)
    filter_warnings: list[str] = []
    rules = ServingRules(
        k=query.k,
        exclude=frozenset(excluded_known) | frozenset(anchors),
        exclude_seen=query.exclude_seen,
        categories=_category_filter(serving, query, filter_warnings),
        diversity=query.diversity,
        items=serving.item_tables,
        fall_back=True,
    )
    pipeline = serving.pipeline(candidate_count)
    work = partial(_select, serving, pipeline, lookup, context, rules, timer, started)
    if runs_on_the_loop(pipeline):
        user_vector, items, select_warnings = work()
    else:
        user_vector, items, select_warnings = await asyncio.to_thread(work)
    write_back_later(users, query.user_id, lookup, user_vector, serving, vector_ttl_s)
    timer.record("total", begun)
    return Recommendation(
        items=items,
        served_by=user_vector.served_by,
        model_version=serving.model_version,
        index_version=serving.index_version,
        warnings=warnings + user_vector.warnings + filter_warnings + select_warnings,
        timings_ms=timer.ms,
    )
