"""The Redis stores in the details the contract tests (test_base.py) let through in ``make mutate``
(docs/results/mutation.md): which operation every call is named for (the StoreUnavailable message), the
blocking read, RESP3 replies, re-claimed entries trimmed before anyone processed them (both reply shapes),
the backlog's lag, idle consumers, seeding in chunks, forgotten processes, and the reply helpers."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np
import pytest

from app.stores.base import BacklogFull, BundleRecord, StoredEvent, StoredVector, Stores, StreamBacklog, keyed
from app.stores.redis_connection import RedisConnection, field, text
from app.stores.redis_stores import redis_stores
from app.stores.redis_stream import RedisEventStream, _entry, _next_id
from tests.app.stores.test_base import FrozenClock

pytestmark = pytest.mark.anyio
Call = tuple[str, float]


def event(item: str, timestamp: int) -> StoredEvent:
    return StoredEvent(item=item, action=2, value=1.0, timestamp=timestamp, scene=None, device=None)


async def open_stores(url: str, key_prefix: str) -> Stores:
    return redis_stores(url, key_prefix=key_prefix, block_ms=300)


@pytest.fixture
async def stores(redis_url: str, key_prefix: str) -> AsyncIterator[Stores]:
    opened = await open_stores(redis_url, key_prefix)
    try:
        yield opened
    finally:
        connection = opened.connection
        assert isinstance(connection, RedisConnection)
        await connection.flush_prefix()
        await connection.close()


def record_calls(stores: Stores) -> list[Call]:
    """Every ``RedisConnection.call`` from now on, as (operation, extra seconds)."""
    connection = stores.connection
    assert isinstance(connection, RedisConnection)
    calls: list[Call] = []
    original = connection.call

    async def call(operation: str, make: Callable[[], Awaitable[Any]], extra_s: float = 0.0) -> Any:
        calls.append((operation, extra_s))
        return await original(operation, make, extra_s)

    connection.call = call  # type: ignore[method-assign]
    return calls


def stream_of(stores: Stores) -> RedisEventStream:
    assert isinstance(stores.events, RedisEventStream)
    return stores.events


async def test_every_call_is_named_for_its_operation(stores: Stores) -> None:
    calls = record_calls(stores)
    stream = stream_of(stores)
    await stream.ensure_group()
    await stream.append_events(keyed([("u", event("i1", 1))]))
    [entry] = await stream.read_new("c1", 10, 250)
    await stream.claim_stale("c2", 0, 10)
    await stream.ack([entry.entry_id])
    await stream.backlog()
    await stream.trim_processed()
    await stream.remove_idle_consumers(0, keep="nobody")
    await stores.users.get_history("u")
    await stores.users.get_histories(["u"])
    assert (await stores.users.get_state("nobody")).sequence == 0
    await stores.users.seed_histories([("v", [event("i2", 2)])])
    vector = StoredVector(np.zeros(2, np.float32), "m1", 1, 1, 0.0)
    await stores.users.put_vectors({"u": vector}, 60)
    await stores.registry.set_desired_bundle(BundleRecord("/b", "m1", time.time()))
    await stores.registry.desired_bundle()
    await stores.registry.report_bundle("p", BundleRecord("/b", "m1", time.time()))
    await stores.registry.report_bundle("p", None)
    await stores.registry.served_bundles(10)
    assert await stores.connection.ping()
    assert isinstance(stores.connection, RedisConnection)
    await stores.connection.flush_prefix()
    assert calls == [
        ("ensure_group", 0.0),
        ("append_events", 0.0),
        ("read_new", 0.25),
        ("claim_stale", 0.0),
        ("ack", 0.0),
        ("group_info", 0.0),
        ("group_info", 0.0),
        ("pending", 0.0),
        ("trim", 0.0),
        ("consumers", 0.0),
        ("delconsumer", 0.0),
        ("delconsumer", 0.0),
        ("get_histories", 0.0),
        ("get_histories", 0.0),
        ("get_state", 0.0),
        ("seed_claim", 0.0),
        ("seed_write", 5.0),
        ("put_vectors", 0.0),
        ("set_desired_bundle", 0.0),
        ("desired_bundle", 0.0),
        ("report_bundle", 0.0),
        ("report_bundle", 0.0),
        ("served_bundles", 0.0),
        ("ping", 0.0),
        ("flush_prefix", 5.0),
    ]


async def test_keys_vectors_and_flushing(stores: Stores, redis_url: str) -> None:
    connection = stores.connection
    assert isinstance(connection, RedisConnection)
    await stores.events.append_events(keyed([("u", event("i1", 1))]))
    assert await connection.client.type(f"{connection.prefix}:u:{{u}}:d") == b"zset"  # the dedupe keys
    await stores.users.put_vectors({"u": StoredVector(np.array([0.6, 0.8]), "m1", 1, 1, 12.5)}, 60)
    stored = (await stores.users.get_state("u")).vector
    assert stored is not None and stored.computed_at == 12.5
    assert stored is not None and stored.vector.tolist() == np.array([0.6, 0.8], np.float32).tolist()
    other = f"{connection.prefix}x:kept"
    await connection.client.set(other, 1)
    await connection.flush_prefix()
    assert await connection.client.keys(f"{connection.prefix}:*") == []
    assert await connection.client.get(other) == b"1"
    await connection.client.delete(other)


async def test_a_vanished_group_is_recreated_logged_and_the_call_repeated(
    stores: Stores, caplog: pytest.LogCaptureFixture
) -> None:
    stream = stream_of(stores)
    await stream.ensure_group()
    await stream.client.delete(stream.stream)
    calls = record_calls(stores)
    with caplog.at_level(logging.WARNING, logger="tandem.store"):
        assert await stream.read_new("c", 10, 100) == []
    assert calls == [("read_new", 0.1), ("ensure_group", 0.0), ("read_new", 0.1)]
    [warning] = [r for r in caplog.records if r.name == "tandem.store"]
    assert warning.getMessage() == "consumer group missing; recreating it"
    assert warning.__dict__["operation"] == "read_new"


async def test_reading_blocks_for_block_ms_and_takes_at_most_count(stores: Stores) -> None:
    stream = stream_of(stores)
    await stream.ensure_group()
    started = time.monotonic()
    assert await stream.read_new("c", 10, 200) == []
    assert time.monotonic() - started >= 0.15  # it waited for events instead of returning at once
    for user in ("a", "b", "c"):
        await stream.append_events(keyed([(user, event("i1", 1))]))
    assert (await stream.backlog()) == StreamBacklog(lag=3, pending=0)
    assert [e.users for e in await stream.read_new("c", 2, 0)] == [["a"], ["b"]]
    assert (await stream.backlog()) == StreamBacklog(lag=1, pending=2)
    assert len(await stream.claim_stale("d", 0, 1)) == 1  # count bounds a claim too


async def test_the_stream_works_over_resp3(redis_url: str, key_prefix: str) -> None:
    stores = await open_stores(redis_url + "?protocol=3", key_prefix)
    try:
        stream = stream_of(stores)
        await stream.ensure_group()
        await stream.append_events(keyed([("a", event("i1", 1)), ("b", event("i2", 2))]))
        [entry] = await stream.read_new("c", 10, 0)
        assert entry.users == ["a", "b"]
        assert [e.users for e in await stream.claim_stale("d", 0, 10)] == [["a", "b"]]
        assert await stream.backlog() == StreamBacklog(lag=0, pending=1)
    finally:
        assert isinstance(stores.connection, RedisConnection)
        await stores.connection.flush_prefix()
        await stores.connection.close()


async def test_claimed_entries_deleted_from_the_stream_are_acknowledged(stores: Stores) -> None:
    stream = stream_of(stores)
    await stream.ensure_group()
    for user in ("a", "b", "c"):
        await stream.append_events(keyed([(user, event("i1", 1))]))
    entries = await stream.read_new("c1", 10, 0)
    await stream.client.xdel(stream.stream, entries[1].entry_id)
    claimed = await stream.claim_stale("c2", 0, 10)
    assert [e.entry_id for e in claimed] == [entries[0].entry_id, entries[2].entry_id]
    assert (await stream.backlog()).pending == 2  # the deleted one is acknowledged, nothing left to do


async def test_both_reply_shapes_of_a_claim_with_deleted_entries(stores: Stores) -> None:
    """Redis 6.2 lists a deleted entry with no fields; Redis 7 also names deleted ids in a third element."""
    stream = stream_of(stores)
    acked: list[list[str]] = []

    async def ack(entry_ids: list[str]) -> None:
        acked.append(entry_ids)

    for reply, expected in (
        ([b"0-0", [(b"5-0", None), (b"6-0", {b"users": b'["u"]'})]], ["5-0"]),
        ([b"0-0", [(b"5-0", None), (b"6-0", {b"users": b'["u"]'})], [b"7-0"]], ["5-0", "7-0"]),
    ):

        async def xautoclaim(*args: Any, reply: Any = reply, **kwargs: Any) -> Any:
            return reply

        stream.client.xautoclaim = xautoclaim  # type: ignore[method-assign]
        stream.ack = ack  # type: ignore[method-assign]
        acked.clear()
        claimed = await stream.claim_stale("c", 0, 10)
        assert [(e.entry_id, e.users) for e in claimed] == [("6-0", ["u"])]
        assert acked == [expected]


async def test_backlog_and_trim_without_a_stream_or_deliveries(stores: Stores) -> None:
    stream = stream_of(stores)
    assert await stream.backlog() == StreamBacklog(lag=0, pending=0)  # no stream at all
    assert await stream.trim_processed() == 0
    await stream.ensure_group()
    assert await stream.backlog() == StreamBacklog(lag=0, pending=0)
    await stream.append_events(keyed([("a", event("i1", 1))]))
    assert await stream.trim_processed() == 0  # nothing delivered yet


async def test_only_consumers_idle_long_enough_are_removed(stores: Stores) -> None:
    stream = stream_of(stores)
    await stream.ensure_group()
    for consumer in ("old", "new"):
        await stream.append_events(keyed([(consumer, event("i1", 1))]))
        await stream.ack([entry.entry_id for entry in await stream.read_new(consumer, 10, 1)])
        if consumer == "old":
            time.sleep(0.2)
    assert await stream.remove_idle_consumers(150, keep="nobody") == ["old"]


async def test_seeding_in_chunks_counts_every_user(stores: Stores) -> None:
    users = [(f"u{i}", [event("i1", 1)]) for i in range(1001)]  # two full chunks of 500 and one more
    assert await stores.users.seed_histories(users) == 1001
    assert await stores.users.seed_histories(users[-3:]) == 0
    record = await stores.users.get_history("u1000")
    assert record.sequence == 1 and record.events == [event("i1", 1)]


async def test_processes_silent_for_an_hour_are_forgotten(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = stores.registry
    clock = FrozenClock()
    monkeypatch.setattr("app.stores.redis_registry.time", clock)
    now = clock.now
    await registry.report_bundle("hour", BundleRecord("/b", "m1", now - 3600))  # exactly an hour: kept
    await registry.report_bundle("older", BundleRecord("/b", "m1", now - 3600.5))
    await registry.report_bundle("quiet", BundleRecord("/b", "m1", now - 60))
    await registry.report_bundle("live", BundleRecord("/b", "m1", now - 30))  # exactly max_age_s old: fresh
    calls = record_calls(stores)
    assert set(await registry.served_bundles(30)) == {"live"}
    assert calls == [("served_bundles", 0.0), ("served_bundles", 0.0)]  # read, then forget "older"
    connection = stores.connection
    assert isinstance(connection, RedisConnection)
    kept = await connection.client.hkeys(f"{connection.prefix}:bundle:served")
    assert sorted(text(k) for k in kept) == ["hour", "live", "quiet"]


def test_reply_helpers() -> None:
    assert text(b"ab") == "ab" and text(5) == "5" and text("x") == "x"
    assert field({b"name": 1}, "name") == 1 and field({"name": 2}, "name") == 2 and field({}, "x") is None
    assert _next_id("1700-5") == "1700-6" and _next_id("1700") == "1700-1"
    assert _entry(b"1-0", {"users": '["a"]'}).users == ["a"]
    assert _entry("1-0", {}).users == []


async def test_a_full_backlog_says_so_and_the_dedupe_window_is_in_milliseconds(
    redis_url: str, key_prefix: str
) -> None:
    stores = redis_stores(redis_url, key_prefix=key_prefix, stream_maxlen=1, dedupe_ttl_s=2)
    connection = stores.connection
    assert isinstance(connection, RedisConnection)
    try:
        stream = stream_of(stores)
        assert stream.dedupe_ttl_ms == 2000
        await stream.append_events(keyed([("a", event("i1", 1))]))
        assert 0 < await connection.client.pttl(f"{connection.prefix}:u:{{a}}:d") <= 2000
        with pytest.raises(BacklogFull, match=r"^BACKLOG the event stream holds 1 unprocessed entries$"):
            await stream.append_events(keyed([("a", event("i2", 2))]))
    finally:
        await connection.flush_prefix()
        await connection.close()
