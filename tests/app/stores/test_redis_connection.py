"""The Redis connection as configured (timeouts, retries, pool, deadline) and the stores' defaults, which
must be the service's own (``Settings``): what ``make mutate`` found untested (docs/results/mutation.md)."""

from __future__ import annotations

import asyncio

import pytest

from app.core.config import Settings
from app.stores.base import KeyedEvent, StoredEvent, StoreUnavailable, event_key
from app.stores.memory import MemoryEventStream, MemoryUsers, memory_stores
from app.stores.redis_connection import RedisConnection
from app.stores.redis_stores import redis_stores
from app.stores.redis_stream import RedisEventStream
from app.stores.redis_users import RedisUsers

pytestmark = pytest.mark.anyio


def test_store_defaults_are_the_services_settings() -> None:
    setting = {name: field.default for name, field in Settings.model_fields.items()}
    url = "redis://127.0.0.1:1/0"
    for stores in (redis_stores(url), memory_stores()):
        users, events = stores.users, stores.events
        assert isinstance(users, RedisUsers | MemoryUsers)
        assert isinstance(events, RedisEventStream | MemoryEventStream)
        assert users.history_length == setting["history_length"]
        assert events.stream_maxlen == setting["stream_maxlen"]
    redis = redis_stores(url)
    connection = redis.connection
    assert isinstance(connection, RedisConnection) and isinstance(redis.events, RedisEventStream)
    assert isinstance(redis.users, RedisUsers)
    assert redis.events.history_length == setting["history_length"]
    assert redis.events.dedupe_ttl_ms == setting["event_dedupe_ttl_s"] * 1000
    defaults = [connection, RedisConnection(url)]
    defaults.append(RedisEventStream(connection).connection)
    for made in defaults:
        kwargs = made.client.connection_pool.connection_kwargs
        assert kwargs["socket_timeout"] == setting["redis_socket_timeout_s"]  # no blocking read: block_ms 0
        assert kwargs["socket_connect_timeout"] == setting["redis_connect_timeout_s"]
        assert kwargs["retry"]._retries == setting["redis_retries"]
        assert made.client.connection_pool.max_connections == setting["redis_max_connections"]
        assert made.prefix == setting["key_prefix"]
    stream = RedisEventStream(connection)
    assert (stream.history_length, stream.stream_maxlen) == (
        setting["history_length"],
        setting["stream_maxlen"],
    )
    assert stream.dedupe_ttl_ms == setting["event_dedupe_ttl_s"] * 1000
    assert RedisUsers(connection).history_length == setting["history_length"]
    memory = memory_stores()
    assert isinstance(memory.events, MemoryEventStream)
    assert memory.events.dedupe_ttl_s == setting["event_dedupe_ttl_s"]
    assert MemoryUsers().history_length == setting["history_length"]
    alone = MemoryEventStream(MemoryUsers())
    assert (alone.stream_maxlen, alone.dedupe_ttl_s) == (
        setting["stream_maxlen"],
        setting["event_dedupe_ttl_s"],
    )


def test_the_client_is_configured_as_asked() -> None:
    stores = redis_stores(
        "redis://127.0.0.1:1/0",
        socket_timeout_s=0.3,
        connect_timeout_s=0.2,
        retries=4,
        max_connections=7,
        key_prefix="p",
        history_length=5,
        block_ms=500,
    )
    connection = stores.connection
    assert isinstance(connection, RedisConnection)
    kwargs = connection.client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == pytest.approx(0.8)  # the read outlasts a 500 ms blocking read
    assert kwargs["socket_connect_timeout"] == 0.2
    assert kwargs["health_check_interval"] == 30
    assert connection.client.connection_pool.max_connections == 7
    retry = kwargs["retry"]
    assert retry._retries == 4
    assert (retry._backoff._cap, retry._backoff._base) == (0.05, 0.005)
    assert connection.deadline_s == pytest.approx(5 * (0.2 + 0.8) + 0.1)
    assert connection.prefix == "p" and connection.user_key("u", "h") == "p:u:{u}:h"
    assert getattr(stores.users, "history_length") == 5  # noqa: B009


async def test_every_call_has_a_deadline_and_extra_time_extends_it() -> None:
    connection = RedisConnection(
        "redis://127.0.0.1:1/0", socket_timeout_s=0.01, connect_timeout_s=0.01, retries=0
    )
    assert connection.deadline_s == pytest.approx(0.12)

    async def slow() -> str:
        await asyncio.sleep(0.3)
        return "done"

    with pytest.raises(StoreUnavailable, match=r"^redis slow failed: TimeoutError"):
        await connection.call("slow", slow)
    assert await connection.call("slow", slow, extra_s=0.5) == "done"
    await connection.close()


def test_the_idempotency_key_hashes_the_user_too() -> None:
    event = StoredEvent("i1", 2, 1.0, 5)
    key = event_key("a", event)
    assert key.startswith("h:") and len(key) == 2 + 32
    assert key != event_key("b", event)
    assert event_key("a", event, "e1") == "id:e1"
    assert KeyedEvent.of("a", event).key == key and KeyedEvent.of("a", event, "e1").key == "id:e1"
