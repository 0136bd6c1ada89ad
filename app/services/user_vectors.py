"""Finding the user vector for a request: cache -> online encoder -> cold start -> none (popular).

Cache: the stored vector is used when it was computed by the serving model and covers every event the
store has accepted for the user (read-your-writes). Online: one encoder forward over the user's recent
events. Cold start: mean of the anchor items' vectors (an unknown user the product gives context for).
With the store down, the bundle's own copy of training users' histories feeds the online path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import numpy as np

from app.core import metrics
from app.services.serving_bundle import ServingBundle
from app.stores.base import StoredVector, StoreUnavailable, UserState, UserStateStore
from models.types import RequestContext, UserHistory

log = logging.getLogger("tandem.user_vectors")


@dataclass
class UserVector:
    """Outcome of the user-vector stage."""

    vector: np.ndarray | None  # [d] float32 unit vector, None = no vector (popular / baseline)
    served_by: str  # cache | online | cold_start | popular
    history: UserHistory
    warnings: list[str] = field(default_factory=list)


def encode_one(serving: ServingBundle, history: UserHistory, context: RequestContext) -> np.ndarray:
    """One encoder forward: -> [d] float32."""
    import torch

    assert serving.encoder is not None
    with torch.inference_mode():
        return np.asarray(serving.encoder.encode([history], [context]), dtype=np.float32)[0]


def anchor_vector(serving: ServingBundle, anchors: np.ndarray) -> np.ndarray | None:
    """Mean of anchor item vectors, L2-normalised: [d], or None without usable anchors."""
    if serving.item_vectors is None or anchors.size == 0:
        return None
    mean = serving.item_vectors[anchors].mean(axis=0)
    norm = float(np.linalg.norm(mean))
    return (mean / norm).astype(np.float32) if norm > 0 else None


def is_fresh(stored: StoredVector | None, state: UserState, serving: ServingBundle) -> bool:
    return (
        stored is not None
        and stored.model_version == serving.model_version
        and stored.sequence >= state.sequence
        and serving.item_vectors is not None
        and stored.vector.shape[0] == serving.item_vectors.shape[1]
    )


async def read_state(store: UserStateStore, user: str) -> UserState | None:
    """The user's state, or None when the store is unavailable (counted, logged)."""
    try:
        return await store.get_state(user)
    except StoreUnavailable as exc:
        metrics.STORE_DEGRADED.labels("get_state").inc()
        log.warning("store unavailable, serving without it", extra={"error": str(exc)})
        return None


@dataclass
class VectorLookup:
    """What the store knows about a user, read on the event loop; ``resolved`` is set when nothing is left
    to compute (cache hit, baseline bundle), else ``finish_user_vector`` does the CPU work in a thread."""

    state: UserState | None
    history: UserHistory
    warnings: list[str]
    resolved: UserVector | None = None


async def look_up_user(
    serving: ServingBundle, store: UserStateStore, user: str, context: RequestContext
) -> VectorLookup:
    state = await read_state(store, user)
    warnings: list[str] = []
    if state is None:
        warnings.append("user state store unavailable: history from the bundle, recent events not seen")
        history = serving.fallback_histories.get(user, UserHistory.empty())
    elif state.sequence == 0 and not state.events:
        # Not seeded into this store (e.g. it was down at start-up): the bundle still knows the user.
        history = serving.fallback_histories.get(user, UserHistory.empty())
    else:
        history = serving.history_from_events(state.events)

    if serving.encoder is None:  # baseline bundle: the history itself drives co-occurrence candidates
        served_by = "online" if len(history) else ("cold_start" if context.anchors.size else "popular")
        return VectorLookup(state, history, warnings, UserVector(None, served_by, history, warnings))

    if state is not None and is_fresh(state.vector, state, serving):
        metrics.VECTOR_CACHE.labels("hit").inc()
        assert state.vector is not None
        return VectorLookup(
            state, history, warnings, UserVector(state.vector.vector, "cache", history, warnings)
        )
    metrics.VECTOR_CACHE.labels("stale" if state is not None and state.vector is not None else "miss").inc()
    if not len(history):  # nothing to encode (an unknown user): resolved here, no thread hop, no queue
        return VectorLookup(state, history, warnings, without_history(serving, context, history, warnings))
    return VectorLookup(state, history, warnings)


def without_history(
    serving: ServingBundle, context: RequestContext, history: UserHistory, warnings: list[str]
) -> UserVector:
    """A user with no events: the anchors' vector (cold start) when the request names anchors, else no
    vector (popularity). Cheap (a mean of a few item vectors)."""
    cold = anchor_vector(serving, context.anchors)
    if cold is not None:
        return UserVector(cold, "cold_start", history, warnings)
    return UserVector(None, "popular", history, warnings)


def finish_user_vector(serving: ServingBundle, lookup: VectorLookup, context: RequestContext) -> UserVector:
    """The CPU part (run off the event loop): online encoder forward, else cold start, else none."""
    if lookup.resolved is not None:
        return lookup.resolved
    history, warnings = lookup.history, lookup.warnings
    if len(history):
        try:
            vector = encode_one(serving, history, context)
        except (RuntimeError, ValueError, IndexError) as exc:
            metrics.STAGE_FAILURES.labels("encode").inc()
            log.exception("online encoder forward failed; falling back", extra={"error": str(exc)})
            warnings.append("online encoder failed: served without a user vector")
        else:
            return UserVector(vector, "online", history, warnings)
    return without_history(serving, context, history, warnings)


_PENDING_WRITES: set[asyncio.Task[None]] = set()


def write_back_later(
    store: UserStateStore,
    user: str,
    lookup: VectorLookup,
    found: UserVector,
    serving: ServingBundle,
    ttl_s: int,
) -> asyncio.Task[None] | None:
    """Caches an online vector in a background task, so the answer does not wait for the store write.

    Returns the task (None when there is nothing to cache). The task keeps a reference until it ends.
    """
    if found.served_by != "online" or found.vector is None or lookup.state is None:
        return None
    task = asyncio.create_task(
        _write_back(store, user, found.vector, serving, lookup.state, lookup.history, ttl_s)
    )
    _PENDING_WRITES.add(task)
    task.add_done_callback(_PENDING_WRITES.discard)
    return task


async def wait_for_write_backs() -> None:
    """Waits until every background write-back started so far has finished (shutdown, tests)."""
    while _PENDING_WRITES:
        await asyncio.gather(*list(_PENDING_WRITES), return_exceptions=True)


async def _write_back(
    store: UserStateStore,
    user: str,
    vector: np.ndarray,
    serving: ServingBundle,
    state: UserState,
    history: UserHistory,
    ttl_s: int,
) -> None:
    """Cache the online vector so the next request is a hit; it covers exactly the events just read."""
    newest = int(history.timestamp.max()) if len(history) else 0
    stored = StoredVector(vector, serving.model_version, state.sequence, newest, time.time())
    try:
        await store.put_vectors({user: stored}, ttl_s)
    except StoreUnavailable:
        metrics.STORE_DEGRADED.labels("put_vectors").inc()
