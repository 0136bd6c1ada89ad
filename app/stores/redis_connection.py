"""One Redis connection pool per process, shared by the three Redis stores (users, event stream, bundle
registry): socket and connect timeouts, bounded retries with backoff, and an overall deadline on every
call, which raises ``StoreUnavailable`` when Redis cannot answer, so callers degrade instead of failing.
No Redis call goes through anything but ``RedisConnection.call``.

Keys: ``<prefix>:u:{<user>}:<kind>`` per user (``{user}`` in braces so one user's keys share a Redis
Cluster slot), ``<prefix>:events`` (the stream), ``<prefix>:bundle:*`` (the registry).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from app.stores.base import StoreUnavailable

T = TypeVar("T")
_UNAVAILABLE = (redis_errors.ConnectionError, redis_errors.TimeoutError, TimeoutError, OSError)


class RedisConnection:
    """The client (pool), the key prefix and the per-call deadline."""

    kind = "redis"

    def __init__(
        self,
        url: str,
        *,
        socket_timeout_s: float = 0.25,
        connect_timeout_s: float = 0.25,
        retries: int = 2,
        max_connections: int = 64,
        key_prefix: str = "tandem",
        block_ms: int = 0,
    ):
        # A blocking stream read legitimately waits block_ms; the socket must outlast it.
        read_timeout_s = socket_timeout_s + block_ms / 1000
        self.client = Redis.from_url(
            url,
            socket_timeout=read_timeout_s,
            socket_connect_timeout=connect_timeout_s,
            retry=Retry(ExponentialBackoff(cap=0.05, base=0.005), retries),
            retry_on_error=[redis_errors.ConnectionError, redis_errors.TimeoutError],
            max_connections=max_connections,
            health_check_interval=30,
        )
        self.prefix = key_prefix
        # Overall deadline per call: every attempt may use its connect + read timeout.
        self.deadline_s = (retries + 1) * (connect_timeout_s + read_timeout_s) + 0.1

    def user_key(self, user: str, kind: str) -> str:
        return f"{self.prefix}:u:{{{user}}}:{kind}"

    async def call(self, operation: str, make: Callable[[], Awaitable[T]], extra_s: float = 0.0) -> T:
        """``await make()`` under the deadline (plus ``extra_s``); an unreachable Redis is
        ``StoreUnavailable`` naming ``operation``."""
        try:
            async with asyncio.timeout(self.deadline_s + extra_s):
                return await make()
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"redis {operation} failed: {exc.__class__.__name__}: {exc}") from exc

    async def ping(self) -> bool:
        return bool(await self.call("ping", self.client.ping))

    async def close(self) -> None:
        await self.client.aclose()

    async def flush_prefix(self) -> None:
        """Delete every key under this prefix (tests and local resets only)."""

        async def run() -> None:
            keys = [key async for key in self.client.scan_iter(match=f"{self.prefix}:*", count=1000)]
            if keys:
                await self.client.delete(*keys)

        await self.call("flush_prefix", run, extra_s=5.0)


def text(value: Any) -> str:
    """A Redis reply's bytes (or str) as str."""
    return value.decode() if isinstance(value, bytes) else str(value)


def field(info: dict[Any, Any], name: str) -> Any:
    """A field of an XINFO reply, whichever way the client decoded its keys."""
    return info.get(name, info.get(name.encode()))
