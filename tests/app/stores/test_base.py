"""The stores contracts by job (user state, event stream, bundle registry), run against both implementations
(memory and the real Redis), and the Redis connection's deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import numpy as np
import pytest

from app.stores.base import (
    BacklogFull,
    BundleRecord,
    KeyedEvent,
    StoredEvent,
    StoredVector,
    Stores,
    StoreUnavailable,
    keyed,
)
from app.stores.memory import memory_stores
from app.stores.redis_connection import RedisConnection
from app.stores.redis_stores import redis_stores
from app.stores.redis_stream import RedisEventStream
from tests.app.conftest import REDIS_HOST, REDIS_PORT, free_port, port_open

pytestmark = pytest.mark.anyio


def event(item: str, timestamp: int) -> StoredEvent:
    return StoredEvent(item=item, action=2, value=1.0, timestamp=timestamp, scene="home", device=None)


@pytest.fixture(params=["memory", "redis"])
async def stores(request: pytest.FixtureRequest, key_prefix: str) -> AsyncIterator[Stores]:
    if request.param == "memory":
        yield memory_stores(history_length=3, dedupe_ttl_s=1)
        return
    url = request.getfixturevalue("redis_url")
    stores = redis_stores(url, key_prefix=key_prefix, history_length=3, block_ms=100, dedupe_ttl_s=1)
    try:
        yield stores
    finally:
        await _close(stores)


def redis_of(stores: Stores) -> RedisConnection | None:
    return stores.connection if isinstance(stores.connection, RedisConnection) else None


async def test_histories_are_bounded_and_sequence_counts_every_event(stores: Stores) -> None:
    await stores.events.append_events(
        keyed([("a", event("i1", 1)), ("a", event("i2", 2)), ("b", event("i9", 5))])
    )
    await stores.events.append_events(keyed([("a", event("i3", 3)), ("a", event("i4", 4))]))
    state = await stores.users.get_state("a")
    assert [e.item for e in state.events] == ["i2", "i3", "i4"]  # history_length = 3, oldest dropped
    assert state.sequence == 4 and state.vector is None
    assert state.events[0] == event("i2", 2)
    records = await stores.users.get_histories(["a", "b", "nobody"])
    assert records["b"].sequence == 1 and records["nobody"].events == [] and records["nobody"].sequence == 0


class FrozenClock:
    """Stands in for the ``time`` module inside app.stores.memory: its time moves only when a test says."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FrozenClock:
    frozen = FrozenClock()
    monkeypatch.setattr("app.stores.memory.time", frozen)
    return frozen


def lifetime_ms(pttl: int) -> float:
    """A Redis PTTL reply as the lifetime left: -1 (no expiry) is forever, -2 (expired already) is 0."""
    return float("inf") if pttl == -1 else max(pttl, 0)


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 15.0) -> bool:
    """Polls ``check`` until it holds or ``timeout_s`` passed (Redis expires on its own clock)."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def test_vectors_round_trip_and_expire(stores: Stores, clock: FrozenClock) -> None:
    vector = np.asarray([0.6, 0.8], dtype=np.float32)
    written = StoredVector(vector, "m1", 7, 123, time.time())
    await stores.users.put_vectors({"a": written}, ttl_s=1)
    if (redis := redis_of(stores)) is not None:  # no clock to hold: Redis keeps the lifetime asked for
        assert lifetime_ms(await redis.client.pttl(f"{redis.prefix}:u:{{a}}:v")) <= 1000
        await stores.users.put_vectors({"b": written}, ttl_s=60)  # read back where a stall cannot expire it
        read_back = "b"
    else:
        clock.advance(0.5)
        read_back = "a"
    stored = (await stores.users.get_state(read_back)).vector
    assert stored is not None
    assert np.array_equal(stored.vector, vector) and stored.model_version == "m1"
    assert (stored.sequence, stored.newest_event_ts) == (7, 123)

    async def expired() -> bool:
        return (await stores.users.get_state("a")).vector is None

    if redis_of(stores) is None:
        clock.advance(0.5)  # exactly ttl_s after the write
        assert await expired()
    else:
        assert await eventually(expired)


async def test_keys_are_forgotten_after_the_dedupe_window(stores: Stores, clock: FrozenClock) -> None:
    batch = keyed([("a", event("i1", 1))])
    await stores.events.append_events(batch)
    redis = redis_of(stores)
    if redis is None:
        clock.advance(0.5)
        assert (await stores.events.append_events(batch)).duplicates == 1  # inside the window: a retry
        clock.advance(0.5)  # dedupe_ttl_s = 1 after the first append
        assert (await stores.events.append_events(batch)).stored == 1
    else:
        assert lifetime_ms(await redis.client.pttl(f"{redis.prefix}:u:{{a}}:d")) <= 1000  # dedupe_ttl_s = 1

        async def stored_again() -> bool:  # every try before the window ends is a duplicate, no copy
            return (await stores.events.append_events(batch)).stored == 1

        assert await eventually(stored_again)
    assert (await stores.users.get_state("a")).sequence == 2


async def test_seeding_only_writes_users_the_store_does_not_know(stores: Stores) -> None:
    await stores.events.append_events(keyed([("known", event("live", 10))]))
    written = await stores.users.seed_histories(
        [("known", [event("old", 1)]), ("new", [event("s1", 1), event("s2", 2)])]
    )
    assert written == 1
    assert [e.item for e in (await stores.users.get_state("known")).events] == ["live"]
    new = await stores.users.get_state("new")
    assert [e.item for e in new.events] == ["s1", "s2"] and new.sequence == 2
    assert await stores.users.seed_histories([("new", [event("again", 3)])]) == 0


async def test_a_retried_append_stores_nothing_twice(stores: Stores) -> None:
    await stores.events.ensure_group()
    batch = keyed([("a", event("i1", 1)), ("a", event("i2", 2)), ("b", event("i3", 3))])
    first = await stores.events.append_events(batch)
    again = await stores.events.append_events(batch)  # a retry after a lost reply or a 503
    assert (first.stored, first.duplicates) == (3, 0)
    assert (again.stored, again.duplicates) == (0, 3)
    state = await stores.users.get_state("a")
    assert [e.item for e in state.events] == ["i1", "i2"] and state.sequence == 2
    assert len(await stores.events.read_new("w", count=10, block_ms=10)) == 1  # no stream entry for the retry


async def test_without_event_ids_events_differing_in_any_field_are_all_stored(stores: Stores) -> None:
    bought = event("i1", 1)
    # the same item bought again a minute later, with another value, from another device: three new events
    again = [bought._replace(timestamp=61), bought._replace(value=2.0), bought._replace(device="ios")]
    first = await stores.events.append_events(keyed([("a", bought), *[("a", e) for e in again]]))
    assert (first.stored, first.duplicates) == (4, 0)
    retried = await stores.events.append_events(
        keyed([("a", bought), ("a", again[0])])
    )  # the same fields: a retry
    assert (retried.stored, retried.duplicates) == (0, 2)
    state = await stores.users.get_state("a")
    assert state.sequence == 4 and state.events == again  # history_length = 3: the newest three


async def test_client_event_ids_decide_what_is_a_duplicate(stores: Stores) -> None:
    same_fields = event("i1", 1)
    two_clicks = [KeyedEvent.of("a", same_fields, "click-1"), KeyedEvent.of("a", same_fields, "click-2")]
    assert (await stores.events.append_events(two_clicks)).stored == 2
    # Same id, other fields: the id wins (the client said it is the same event).
    result = await stores.events.append_events([KeyedEvent.of("a", event("i9", 9), "click-1")])
    assert (result.stored, result.duplicates) == (0, 1)
    # Keys are per user: another user's event with the same id is stored.
    assert (await stores.events.append_events([KeyedEvent.of("b", same_fields, "click-1")])).stored == 1
    assert (await stores.users.get_state("a")).sequence == 2


async def test_stream_read_ack_and_claim(stores: Stores) -> None:
    await stores.events.ensure_group()
    await stores.events.append_events(keyed([("a", event("i1", 1)), ("b", event("i2", 1))]))
    await stores.events.append_events(keyed([("c", event("i3", 1))]))
    first = await stores.events.read_new("one", count=1, block_ms=10)
    assert len(first) == 1 and sorted(first[0].users) == ["a", "b"]
    assert (await stores.events.backlog()).pending == 1
    # Not idle long enough to be claimed; then claimable with min_idle 0.
    assert await stores.events.claim_stale("two", min_idle_ms=60_000, count=10) == []
    claimed = await stores.events.claim_stale("two", min_idle_ms=0, count=10)
    assert [entry.entry_id for entry in claimed] == [first[0].entry_id]
    await stores.events.ack([first[0].entry_id])
    rest = await stores.events.read_new("two", count=10, block_ms=10)
    assert [entry.users for entry in rest] == [["c"]]
    await stores.events.ack([entry.entry_id for entry in rest])
    backlog = await stores.events.backlog()
    assert (backlog.lag, backlog.pending) == (0, 0)
    assert await stores.events.read_new("two", count=10, block_ms=10) == []


async def test_redis_down_raises_store_unavailable_quickly_for_every_job() -> None:
    stores = redis_stores(
        f"redis://127.0.0.1:{free_port()}/0", socket_timeout_s=0.1, connect_timeout_s=0.1, retries=1
    )
    started = time.perf_counter()
    try:
        with pytest.raises(StoreUnavailable, match="get_state"):
            await stores.users.get_state("a")
        with pytest.raises(StoreUnavailable):
            await stores.events.append_events(keyed([("a", event("i1", 1))]))
        with pytest.raises(StoreUnavailable, match="desired_bundle"):
            await stores.registry.desired_bundle()
        with pytest.raises(StoreUnavailable, match="ping"):
            await stores.connection.ping()
    finally:
        await stores.connection.close()
    assert time.perf_counter() - started < 8


async def test_a_full_backlog_refuses_events_and_drops_nothing(key_prefix: str, request) -> None:
    for stores in await _small_stores(request, key_prefix, stream_maxlen=2):
        try:
            await stores.events.ensure_group()
            await stores.events.append_events(keyed([("a", event("i1", 1))]))
            await stores.events.append_events(keyed([("a", event("i2", 2))]))
            with pytest.raises(BacklogFull) as full:
                await stores.events.append_events(keyed([("a", event("i3", 3)), ("b", event("i4", 4))]))
            assert full.value.refused == 2
            assert (await stores.users.get_state("a")).sequence == 2  # the refused event was not stored
            entries = await stores.events.read_new("w", count=10, block_ms=10)
            assert len(entries) == 2  # both unprocessed entries are still there
            await stores.events.ack([entry.entry_id for entry in entries])
            await stores.events.trim_processed()
            assert (await stores.events.append_events(keyed([("a", event("i3", 3))]))).stored == 1
        finally:
            await _close(stores)


async def _small_stores(request, key_prefix: str, stream_maxlen: int) -> list[Stores]:
    stores = [memory_stores(history_length=3, stream_maxlen=stream_maxlen)]
    if port_open(REDIS_HOST, REDIS_PORT):
        url = request.getfixturevalue("redis_url")
        stores.append(redis_stores(url, key_prefix=key_prefix, stream_maxlen=stream_maxlen, block_ms=100))
    return stores


async def _close(stores: Stores) -> None:
    if (redis := redis_of(stores)) is not None:
        await redis.flush_prefix()
    await stores.connection.close()


@pytest.fixture
async def redis_store(redis_url: str, key_prefix: str) -> AsyncIterator[RedisEventStream]:
    stores = redis_stores(redis_url, key_prefix=key_prefix, history_length=3, block_ms=100)
    assert isinstance(stores.events, RedisEventStream)
    try:
        yield stores.events
    finally:
        await _close(stores)


async def test_the_registry_keeps_the_desired_bundle_and_fresh_reports(stores: Stores) -> None:
    registry = stores.registry
    assert await registry.desired_bundle() is None
    desired = BundleRecord("/bundles/b2", "v2", time.time())
    await registry.set_desired_bundle(desired)
    assert await registry.desired_bundle() == desired
    await registry.report_bundle("api:1", BundleRecord("/bundles/b2", "v2", time.time()))
    await registry.report_bundle("worker:1", BundleRecord("/bundles/b1", "v1", time.time() - 60))
    served = await registry.served_bundles(max_age_s=5)
    assert {process: record.model_version for process, record in served.items()} == {"api:1": "v2"}
    await registry.report_bundle("api:1", None)  # a clean shutdown
    assert await registry.served_bundles(max_age_s=5) == {}


@pytest.mark.redis
async def test_trimming_deletes_only_acknowledged_entries(redis_store: RedisEventStream) -> None:
    await redis_store.ensure_group()
    for n in range(3):
        await redis_store.append_events(keyed([("a", event(f"i{n}", n))]))
    first, second = await redis_store.read_new("w", count=2, block_ms=10)
    await redis_store.ack([first.entry_id])  # second stays pending, the third is undelivered
    assert await redis_store.trim_processed() == 1
    assert await redis_store.client.xlen(redis_store.stream) == 2
    claimed = await redis_store.claim_stale("w2", min_idle_ms=0, count=10)
    assert [entry.entry_id for entry in claimed] == [second.entry_id]


@pytest.mark.redis
async def test_a_vanished_group_is_recreated_and_reading_continues(redis_store: RedisEventStream) -> None:
    await redis_store.ensure_group()
    await redis_store.client.delete(redis_store.stream)  # FLUSHALL / failover to an empty replica
    assert await redis_store.read_new("w", count=10, block_ms=10) == []  # NOGROUP -> group recreated
    await redis_store.append_events(keyed([("a", event("i1", 1))]))
    assert [entry.users for entry in await redis_store.read_new("w", count=10, block_ms=10)] == [["a"]]
    await redis_store.client.delete(redis_store.stream)
    assert await redis_store.claim_stale("w", min_idle_ms=0, count=10) == []


@pytest.mark.redis
async def test_idle_consumers_with_nothing_pending_are_removed(redis_store: RedisEventStream) -> None:
    await redis_store.ensure_group()
    await redis_store.append_events(keyed([("a", event("i1", 1)), ("b", event("i2", 2))]))
    await redis_store.append_events(keyed([("c", event("i3", 3))]))
    (done,) = await redis_store.read_new("finished", count=1, block_ms=10)
    await redis_store.ack([done.entry_id])
    await redis_store.read_new("crashed", count=1, block_ms=10)  # holds one pending entry
    await redis_store.read_new("live", count=1, block_ms=10)
    removed = await redis_store.remove_idle_consumers(min_idle_ms=0, keep="live")
    assert removed == ["finished"]  # "crashed" keeps its pending entry until it is re-claimed


def test_a_history_decodes_in_one_parse_exactly_as_event_by_event() -> None:
    events = [
        event("i7", 100),
        StoredEvent(item="42", action=5, value=4.5, timestamp=101, scene=None, device="ios"),
        StoredEvent(item='odd "id", with [brackets]', action=1, value=0.0, timestamp=102),
    ]
    texts = [e.encode() for e in events]
    assert StoredEvent.decode_many(texts) == [StoredEvent.decode(t) for t in texts] == events
    assert StoredEvent.decode_many([t.encode() for t in texts]) == events  # bytes, as redis-py returns them
    assert StoredEvent.decode_many([]) == []
