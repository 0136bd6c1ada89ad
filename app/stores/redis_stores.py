"""The Redis stores of one process: one connection (``RedisConnection``: pool, timeouts, retries,
deadline) shared by the three jobs, ``RedisUsers``, ``RedisEventStream`` and ``RedisRegistry``."""

from __future__ import annotations

from app.stores.base import Stores
from app.stores.redis_connection import RedisConnection
from app.stores.redis_registry import RedisRegistry
from app.stores.redis_stream import RedisEventStream
from app.stores.redis_users import RedisUsers


def redis_stores(
    url: str,
    *,
    socket_timeout_s: float = 0.25,
    connect_timeout_s: float = 0.25,
    retries: int = 2,
    max_connections: int = 64,
    key_prefix: str = "tandem",
    history_length: int = 200,
    stream_maxlen: int = 1_000_000,
    block_ms: int = 0,
    dedupe_ttl_s: float = 86400,
) -> Stores:
    """``block_ms``: the longest blocking stream read this process makes (the worker's); the socket's
    read timeout outlasts it."""
    connection = RedisConnection(
        url,
        socket_timeout_s=socket_timeout_s,
        connect_timeout_s=connect_timeout_s,
        retries=retries,
        max_connections=max_connections,
        key_prefix=key_prefix,
        block_ms=block_ms,
    )
    return Stores(
        connection,
        RedisUsers(connection, history_length),
        RedisEventStream(connection, history_length, stream_maxlen, dedupe_ttl_s),
        RedisRegistry(connection),
    )
