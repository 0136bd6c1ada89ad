"""The user-vector lookup in the details ``make mutate`` found untested (docs/results/mutation.md): the cold
start's mean of anchors, the store outage (fallback history, warning, metric, log), baseline bundles, the
cache's hit / stale / miss counts, and the write-back of an online vector."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from app.core import metrics
from app.services.serving_bundle import ServingBundle
from app.services.user_vectors import (
    UserVector,
    VectorLookup,
    _write_back,
    anchor_vector,
    finish_user_vector,
    look_up_user,
    read_state,
    wait_for_write_backs,
    write_back_later,
)
from app.stores.base import StoredEvent, StoredVector, StoreUnavailable, UserState, keyed
from app.stores.memory import memory_stores
from models.types import RequestContext, UserHistory
from tests.app.fake_bundle import FakeBundle

pytestmark = pytest.mark.anyio
DOWN = "user state store unavailable: history from the bundle, recent events not seen"


def count(metric: Any, label: str) -> float:
    return float(metric.labels(label)._value.get())


def serving_bundle() -> ServingBundle:
    return ServingBundle(FakeBundle(Path("."), "v1"))


class DownStore:
    """A user store whose every call fails as an unreachable Redis does."""

    async def get_state(self, user: str) -> UserState:
        raise StoreUnavailable("redis get_state failed: down")

    async def put_vectors(self, vectors: dict[str, StoredVector], ttl_s: int) -> None:
        raise StoreUnavailable("redis put_vectors failed: down")


def test_the_cold_start_vector_is_the_normalised_mean_of_the_anchors() -> None:
    serving: Any = SimpleNamespace(item_vectors=np.array([[3.0, 4.0], [1.0, 0.0], [-3.0, -4.0]], np.float32))
    one = anchor_vector(serving, np.array([0]))
    assert one is not None and one.dtype == np.float32 and one.tolist() == pytest.approx([0.6, 0.8])
    two = anchor_vector(serving, np.array([0, 1]))
    assert two is not None and two.tolist() == pytest.approx((np.array([4.0, 4.0]) / np.sqrt(32)).tolist())
    assert anchor_vector(serving, np.array([0, 2])) is None  # a zero mean has no direction
    assert anchor_vector(serving, np.zeros(0, np.int64)) is None
    assert anchor_vector(SimpleNamespace(item_vectors=None), np.array([0])) is None  # type: ignore[arg-type]


async def test_a_store_outage_serves_the_bundles_history_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    serving = serving_bundle()
    degraded, missed = count(metrics.STORE_DEGRADED, "get_state"), count(metrics.VECTOR_CACHE, "miss")
    with caplog.at_level(logging.WARNING, logger="tandem.user_vectors"):
        assert await read_state(DownStore(), "u1") is None  # type: ignore[arg-type]
        lookup = await look_up_user(serving, DownStore(), "u1", RequestContext(timestamp=0))  # type: ignore[arg-type]
    assert count(metrics.STORE_DEGRADED, "get_state") - degraded == 2
    assert count(metrics.VECTOR_CACHE, "miss") - missed == 1
    [log, _] = [r for r in caplog.records if r.name == "tandem.user_vectors"]
    assert log.getMessage() == "store unavailable, serving without it"
    assert log.__dict__["error"] == "redis get_state failed: down"
    assert lookup.state is None and lookup.resolved is None and lookup.warnings == [DOWN]
    assert np.array_equal(lookup.history.item, serving.fallback_histories["u1"].item)
    guest = await look_up_user(serving, DownStore(), "guest", RequestContext(timestamp=0))  # type: ignore[arg-type]
    assert len(guest.history) == 0


async def test_a_baseline_bundle_is_resolved_from_the_history_alone() -> None:
    serving = serving_bundle()
    serving.encoder = None
    stores = memory_stores()
    await stores.events.append_events(keyed([("known", StoredEvent("i3", 2, 1.0, 7))]))
    state = await stores.users.get_state("known")
    with_anchor = RequestContext(timestamp=0, anchors=np.array([2]))
    for user, context, served_by in [
        ("known", RequestContext(timestamp=0), "online"),
        ("guest", with_anchor, "cold_start"),
        ("guest", RequestContext(timestamp=0), "popular"),
    ]:
        lookup = await look_up_user(serving, stores.users, user, context)
        assert lookup.resolved is not None and lookup.resolved.served_by == served_by, user
        assert lookup.resolved.vector is None and lookup.resolved.warnings is lookup.warnings == []
        assert lookup.resolved.history is lookup.history and lookup.state is not None
    known = await look_up_user(serving, stores.users, "known", RequestContext(timestamp=0))
    assert (
        known.state == state
        and known.history.item.tolist() == serving.history_from_events(state.events).item.tolist()
    )


async def test_the_cache_counts_hits_stale_vectors_and_misses() -> None:
    serving = serving_bundle()
    stores = memory_stores()
    await stores.events.append_events(keyed([("a", StoredEvent("i3", 2, 1.0, 7))]))
    vector = np.ones(8, np.float32) / np.sqrt(8)
    before = {label: count(metrics.VECTOR_CACHE, label) for label in ("hit", "stale", "miss")}
    context = RequestContext(timestamp=0)

    assert (await look_up_user(serving, stores.users, "a", context)).resolved is None  # no vector: a miss
    unknown = await look_up_user(serving, stores.users, "b", context)  # unknown: a miss, resolved at once
    assert unknown.resolved is not None and unknown.resolved.served_by == "popular"
    await stores.users.put_vectors({"a": StoredVector(vector, "fake-v1", 0, 0, time.time())}, 60)
    assert (await look_up_user(serving, stores.users, "a", context)).resolved is None  # behind: stale
    await stores.users.put_vectors({"a": StoredVector(vector, "fake-v1", 1, 7, time.time())}, 60)
    hit = await look_up_user(serving, stores.users, "a", context)
    assert hit.resolved is not None and hit.resolved.served_by == "cache"
    assert hit.resolved.vector is not None and np.array_equal(hit.resolved.vector, vector)
    assert hit.state is not None and hit.state.sequence == 1 and hit.warnings == []
    assert hit.resolved.history is hit.history and hit.resolved.warnings is hit.warnings
    assert hit.history.item.tolist() == serving.history_from_events(hit.state.events).item.tolist()
    after = {label: count(metrics.VECTOR_CACHE, label) for label in ("hit", "stale", "miss")}
    assert {label: after[label] - before[label] for label in after} == {"hit": 1, "stale": 1, "miss": 2}


async def test_the_write_back_covers_the_newest_event_and_survives_an_outage() -> None:
    serving = serving_bundle()
    stores = memory_stores()
    vector = np.ones(8, np.float32)
    history = serving.history_from_events([StoredEvent("i3", 2, 1.0, 7), StoredEvent("i4", 2, 1.0, 9)])
    state = UserState(None, 2, [])
    await _write_back(stores.users, "a", vector, serving, state, history, 60)
    await _write_back(stores.users, "b", vector, serving, state, UserHistory.empty(), 60)
    written = {user: (await stores.users.get_state(user)).vector for user in ("a", "b")}
    assert [(v.sequence, v.newest_event_ts) for v in written.values() if v is not None] == [(2, 9), (2, 0)]
    degraded = count(metrics.STORE_DEGRADED, "put_vectors")
    await _write_back(DownStore(), "a", vector, serving, state, history, 60)  # type: ignore[arg-type]
    assert count(metrics.STORE_DEGRADED, "put_vectors") - degraded == 1


async def test_finishing_online_cold_start_and_a_failing_encoder(caplog: pytest.LogCaptureFixture) -> None:
    serving = serving_bundle()
    real = serving.encoder
    assert real is not None
    seen: list[RequestContext] = []

    class Recording:
        def encode(self, histories: list[UserHistory], contexts: list[RequestContext]) -> Any:
            seen.extend(contexts)
            assert real is not None
            return real.encode(histories, contexts)

    serving.encoder = Recording()  # type: ignore[assignment]
    stores = memory_stores()
    context = RequestContext(timestamp=5, anchors=np.array([2]))
    lookup = await look_up_user(serving, stores.users, "u1", context)  # known to the bundle, not the store
    online = finish_user_vector(serving, lookup, context)
    assert online.served_by == "online" and online.vector is not None and seen == [context]
    assert online.warnings is lookup.warnings and online.history is lookup.history

    class Failing:
        def encode(self, histories: list[UserHistory], contexts: list[RequestContext]) -> Any:
            raise RuntimeError("the forward failed")

    serving.encoder = Failing()  # type: ignore[assignment]
    failures = count(metrics.STAGE_FAILURES, "encode")
    with caplog.at_level(logging.ERROR, logger="tandem.user_vectors"):
        cold = finish_user_vector(serving, await look_up_user(serving, stores.users, "u1", context), context)
    assert count(metrics.STAGE_FAILURES, "encode") - failures == 1
    assert cold.served_by == "cold_start" and cold.warnings == [
        "online encoder failed: served without a user vector"
    ]
    expected = anchor_vector(serving, context.anchors)
    assert cold.vector is not None and expected is not None and np.array_equal(cold.vector, expected)
    [log] = [r for r in caplog.records if r.name == "tandem.user_vectors"]
    assert log.getMessage() == "online encoder forward failed; falling back"
    assert log.__dict__["error"] == "the forward failed"


async def test_only_online_vectors_of_a_read_state_are_written_back() -> None:
    serving = serving_bundle()
    stores = memory_stores()
    context = RequestContext(timestamp=0)
    guest = await look_up_user(serving, stores.users, "guest", context)
    popular = finish_user_vector(serving, guest, context)
    assert popular.served_by == "popular" and popular.vector is None
    assert popular.history is guest.history and popular.warnings is guest.warnings
    vector = np.ones(8, np.float32)
    cold = UserVector(vector, "cold_start", guest.history, [])
    assert write_back_later(stores.users, "guest", guest, cold, serving, 60) is None  # not the user's own
    online = UserVector(vector, "online", guest.history, [])
    no_state = VectorLookup(None, guest.history, [])
    assert write_back_later(stores.users, "guest", no_state, online, serving, 60) is None  # store was down

    class Broken:
        async def put_vectors(self, vectors: dict[str, StoredVector], ttl_s: int) -> None:
            raise RuntimeError("not a store outage")

    task = write_back_later(Broken(), "guest", guest, online, serving, 60)  # type: ignore[arg-type]
    assert task is not None
    await wait_for_write_backs()  # a failed write-back does not fail the waiting
    assert task.done() and isinstance(task.exception(), RuntimeError)


async def test_a_user_without_events_is_resolved_on_the_loop_from_the_anchors_or_not_at_all() -> None:
    serving = serving_bundle()
    assert serving.encoder is not None
    stores = memory_stores()
    anchors = np.array([2, 3])
    cold = await look_up_user(serving, stores.users, "guest", RequestContext(timestamp=0, anchors=anchors))
    assert cold.resolved is not None and cold.resolved.served_by == "cold_start"
    expected = anchor_vector(serving, anchors)
    assert expected is not None and np.array_equal(cold.resolved.vector, expected)
    plain = await look_up_user(serving, stores.users, "guest", RequestContext(timestamp=0))
    assert (
        plain.resolved is not None and plain.resolved.served_by == "popular" and plain.resolved.vector is None
    )
    # a user with events still needs the encoder: left to finish_user_vector (a thread)
    await stores.events.append_events(keyed([("known", StoredEvent("i3", 2, 1.0, 7))]))
    assert (await look_up_user(serving, stores.users, "known", RequestContext(timestamp=0))).resolved is None
