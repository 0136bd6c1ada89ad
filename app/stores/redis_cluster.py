"""The Redis stores on a Redis Cluster (``TANDEM_REDIS_CLUSTER=true``): redis-py's async ``RedisCluster``
over the startup nodes ``TANDEM_REDIS_URL`` lists (``redis://h1:7000,h2:7001,...``; db 0 only).

What changes against one Redis (``app.stores.redis_stores``), and only here:
    * the connection maps the cluster's own failures (``ClusterDownError``, ``TryAgainError``,
      ``SlotNotCoveredError``, ``ClusterError("TTL exhausted")``: a migration split a command's keys, no
      node reachable) to ``StoreUnavailable``, so callers degrade as they do when one Redis is down;
    * ``ClusterUsers.get_state`` is one read-only script per user (one slot, atomic; no MULTI: redis-py's
      async cluster MULTI runs each queued command on a thread and event loop of its own, and failed across
      event loops once a node died); ``get_histories`` reads each user's sequence number before the history,
      in one non-transactional pipeline (a MULTI over many users is cross-slot): the history may hold a few
      events more than the sequence number says, never fewer, so a vector computed from it is never marked
      fresher than it is;
    * the event stream is sharded (``app.stores.redis_cluster_stream``).

Every user key carries ``{<user>}``, so one user's history, sequence, vector and dedupe keys share a slot.
Start-up checks (``check_server_mode``): the flag against the server's ``cluster_enabled`` (both ways),
and the db; a contradiction is ``StoreMisconfigured`` naming the URL, no node answering is degraded.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis
from redis import exceptions as redis_errors
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff

from app.core.failures import StoreMisconfigured
from app.stores.base import StoredEvent, Stores, StoreUnavailable, UserHistoryRecord, UserState
from app.stores.redis_cluster_stream import ClusterEventStream
from app.stores.redis_connection import _UNAVAILABLE, RedisConnection
from app.stores.redis_registry import RedisRegistry
from app.stores.redis_users import RedisUsers, _decode_vector

T = TypeVar("T")
log = logging.getLogger("tandem.store")

# The cluster's transient states: a failover, a slot being migrated (TRYAGAIN, or MOVED/ASK until the TTL
# is spent: ClusterError), a slot no master serves, no startup node reachable (RedisClusterException).
_CLUSTER_UNAVAILABLE = (
    redis_errors.ClusterDownError,
    redis_errors.TryAgainError,
    redis_errors.SlotNotCoveredError,
    redis_errors.ClusterError,
    redis_errors.MasterDownError,
)
_UNREACHABLE_MESSAGES = ("Redis Cluster cannot be connected", "All slots are not covered")


def redacted(url: str) -> str:
    """The URL without its password (start-up errors name the URL)."""
    return re.sub(r"//([^/@]*)@", lambda match: "//" + match.group(1).split(":")[0] + ":***@", url)


def cluster_nodes(url: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """``redis://[user:pass@]h1:p1,h2:p2`` (or a comma-separated list of full URLs) -> the startup
    (host, port) pairs and the client options the first URL carries (username, password, ssl).
    A db other than 0 is ``StoreMisconfigured``: a Redis Cluster has db 0 only."""
    parts = [part.strip() for part in url.split(",") if part.strip()]
    if not parts:
        raise StoreMisconfigured("TANDEM_REDIS_URL lists no Redis Cluster startup node")
    first = urlsplit(parts[0] if "://" in parts[0] else f"redis://{parts[0]}")
    scheme = first.scheme or "redis"
    nodes = []
    for part in parts:
        split = urlsplit(part if "://" in part else f"{scheme}://{part}")
        db = split.path.strip("/") or "0"
        if db != "0":
            raise StoreMisconfigured(f"{redacted(url)}: a Redis Cluster has db 0 only, the URL names db {db}")
        if not split.hostname:
            raise StoreMisconfigured(f"{redacted(url)}: '{redacted(part)}' names no host")
        nodes.append((split.hostname, split.port or 6379))
    options = {"username": first.username, "password": first.password, "ssl": scheme == "rediss"}
    return nodes, options


def check_server_mode(url: str, cluster: bool, timeout_s: float) -> None:
    """Start-up: ``StoreMisconfigured`` (naming the URL) when ``cluster`` contradicts ``cluster_enabled``
    of the first node that answers ``INFO cluster``; nothing when none answers (the process starts
    degraded, as with one Redis down) or the server refuses INFO. One synchronous call per node, under
    ``timeout_s``, before anything is served."""
    if cluster:
        nodes, options = cluster_nodes(url)
        clients = [
            redis.Redis(host=host, port=port, **options, **_probe_options(timeout_s)) for host, port in nodes
        ]
    else:
        clients = [redis.Redis.from_url(url, **_probe_options(timeout_s))]
    for client in clients:
        try:
            enabled = bool(int(client.info("cluster").get("cluster_enabled", 0)))
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError):
            continue
        except redis_errors.ResponseError as exc:  # INFO renamed or refused: no way to tell
            log.warning("could not check the server's cluster mode", extra={"error": str(exc)})
            return
        finally:
            client.close()
        if enabled != cluster:
            said = "true" if cluster else "false"
            raise StoreMisconfigured(
                f"{redacted(url)}: TANDEM_REDIS_CLUSTER={said} but the server has cluster_enabled:"
                f"{int(enabled)}" + (" (list its nodes and set TANDEM_REDIS_CLUSTER=true)" if enabled else "")
            )
        return
    log.warning("no Redis node answered at start; starting degraded", extra={"redis_url": redacted(url)})


def _probe_options(timeout_s: float) -> dict[str, Any]:
    return {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "retry": redis.retry.Retry(NoBackoff(), 0),
    }


class ClusterConnection(RedisConnection):
    """``RedisConnection`` over a ``RedisCluster`` client: same prefix, keys, timeouts and deadline; the
    cluster's failures are ``StoreUnavailable`` too."""

    kind = "redis-cluster"

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
        nodes, options = cluster_nodes(url)
        read_timeout_s = socket_timeout_s + block_ms / 1000
        self.client = RedisCluster(  # type: ignore[assignment]
            startup_nodes=[ClusterNode(host, port) for host, port in nodes],
            require_full_coverage=False,  # a slot without a master fails alone, the others serve
            socket_timeout=read_timeout_s,
            socket_connect_timeout=connect_timeout_s,
            retry=Retry(ExponentialBackoff(cap=0.05, base=0.005), retries),
            max_connections=max_connections,  # per node
            health_check_interval=30,
            **options,
        )
        self.prefix = key_prefix
        # RedisCluster re-reads the slot map (one more connect + read) before a retry after a failover.
        self.deadline_s = (retries + 1) * (2 * connect_timeout_s + read_timeout_s) + 0.35

    async def call(self, operation: str, make: Callable[[], Awaitable[T]], extra_s: float = 0.0) -> T:
        try:
            async with asyncio.timeout(self.deadline_s + extra_s):
                return await make()
        except (*_UNAVAILABLE, *_CLUSTER_UNAVAILABLE) as exc:
            raise StoreUnavailable(f"redis {operation} failed: {exc.__class__.__name__}: {exc}") from exc
        except redis_errors.RedisClusterException as exc:
            if not str(exc).startswith(_UNREACHABLE_MESSAGES):
                raise
            raise StoreUnavailable(f"redis {operation} failed: {exc.__class__.__name__}: {exc}") from exc
        except RuntimeError as exc:
            # uvloop: a write on a connection a killed node closed (found by tools/scale/redis_cluster.py)
            if "handler is closed" not in str(exc):
                raise
            raise StoreUnavailable(f"redis {operation} failed: {exc.__class__.__name__}: {exc}") from exc

    async def flush_prefix(self) -> None:
        """Delete every key under this prefix on every master (tests and local resets only)."""

        async def run() -> None:
            cluster: Any = self.client
            keys = [key async for key in cluster.scan_iter(match=f"{self.prefix}:*", count=1000)]
            for key in keys:  # one slot per DEL
                await cluster.delete(key)

        await self.call("flush_prefix", run, extra_s=10.0)


# KEYS: [vector hash, sequence hash, history list] of one user. One slot, one atomic read: what a MULTI
# does on one Redis (redis-py's async cluster MULTI runs every queued command in a thread of its own).
STATE_SCRIPT = """
local vector = redis.call('HGETALL', KEYS[1])
return {vector, redis.call('HGET', KEYS[2], 'seq'), redis.call('LRANGE', KEYS[3], 0, -1)}
"""


class ClusterUsers(RedisUsers):
    """``RedisUsers`` without MULTI: a user's state is read by one script (atomic, one slot); histories of
    many users (cross-slot) in one pipeline the client splits by node, each user's sequence number before
    the history."""

    def __init__(self, connection: RedisConnection, history_length: int = 200):
        super().__init__(connection, history_length)
        self._state_script = self.client.register_script(STATE_SCRIPT)

    async def get_state(self, user: str) -> UserState:
        keys = [self._key(user, "v"), self._key(user, "s"), self._key(user, "h")]

        async def run() -> list[Any]:
            return list(await self._state_script(keys=keys))

        flat_vector, raw_seq, raw_events = await self.connection.call("get_state", run)
        raw_vector = dict(zip(flat_vector[::2], flat_vector[1::2], strict=True))
        return UserState(_decode_vector(raw_vector), int(raw_seq or 0), StoredEvent.decode_many(raw_events))

    async def get_histories(self, users: list[str]) -> dict[str, UserHistoryRecord]:
        async def run() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for user in users:
                pipe.hget(self._key(user, "s"), "seq")
                pipe.lrange(self._key(user, "h"), 0, -1)
            return list(await pipe.execute())

        replies = await self.connection.call("get_histories", run)
        out = {}
        for position, user in enumerate(users):
            raw_seq, raw_events = replies[2 * position], replies[2 * position + 1]
            out[user] = UserHistoryRecord(StoredEvent.decode_many(raw_events), int(raw_seq or 0))
        return out


def cluster_stores(
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
    stream_shards: int = 8,
) -> Stores:
    """``app.stores.redis_stores.redis_stores`` on a Redis Cluster; ``stream_maxlen`` bounds each shard."""
    connection = ClusterConnection(
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
        ClusterUsers(connection, history_length),
        ClusterEventStream(connection, history_length, stream_maxlen, dedupe_ttl_s, stream_shards),
        RedisRegistry(connection),
    )
