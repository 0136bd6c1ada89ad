"""Redis user-state store: histories, sequence numbers and vectors per user, plus the event stream.

Keys (``{user}`` in braces so one user's keys share a Redis Cluster slot):
    <prefix>:u:{<user>}:h   list of encoded StoredEvent, oldest first, trimmed to history_length
    <prefix>:u:{<user>}:s   hash {seq}: events accepted for the user
    <prefix>:u:{<user>}:v   hash {vec, model, seq, ts, at} with a TTL: the cached user vector
    <prefix>:u:{<user>}:d   sorted set: idempotency keys of the user's stored events, scored by the time
                            (ms) they were stored; entries older than the dedupe window are removed
    <prefix>:events         stream; one entry per accepted batch {users, events}; group ``workers``
    <prefix>:bundle:desired the bundle every process should serve (written by a successful reload)
    <prefix>:bundle:served  hash process -> the bundle it serves, refreshed every second by each process

Stream bound: the worker trims entries every consumer has acknowledged (``trim_processed``: XTRIM MINID
below the oldest pending entry and the group's last delivered one), so the stream holds only unprocessed
entries. When it holds ``stream_maxlen`` of them (the worker is down or far behind) appending refuses with
``BacklogFull`` and stores nothing: an unprocessed entry is never dropped to make room.

A missing consumer group (Redis flushed, failover to an empty replica) is recreated on the spot by every
group command (NOGROUP), so the worker continues instead of dying.

Appending events is one Lua script (``APPEND_SCRIPT``): Redis runs it atomically, and it stores an event
only if its idempotency key is new for the user, so a retried call (redis-py retries after a timeout, or
the caller retries after a 503) finds the keys and stores nothing twice.

Every call runs under a socket timeout, a connect timeout, bounded retries and an overall deadline, and
raises ``StoreUnavailable`` when Redis cannot answer, so callers can degrade instead of failing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import Any, TypeVar

import numpy as np
from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from app.core import metrics
from app.stores.base import (
    AppendResult,
    BacklogFull,
    BundleRecord,
    KeyedEvent,
    StoredEvent,
    StoredVector,
    StoreUnavailable,
    StreamBacklog,
    StreamEntry,
    UserHistoryRecord,
    UserState,
)

T = TypeVar("T")
log = logging.getLogger("tandem.store")
GROUP = "workers"
_SEED_CHUNK = 500
_FORGET_PROCESS_S = 3600.0
_UNAVAILABLE = (redis_errors.ConnectionError, redis_errors.TimeoutError, TimeoutError, OSError)

# KEYS: [stream, then per event: dedupe zset, history list, sequence hash]
# ARGV: [history_length, dedupe_ttl_ms, max_backlog, then per event: idempotency key, encoded event, user]
# Returns one flag per event: 1 = stored now, 0 = its key was already stored (a duplicate); an error
# ``BACKLOG`` (nothing written) when the stream already holds max_backlog entries.
APPEND_SCRIPT = """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local history_length = tonumber(ARGV[1])
local ttl_ms = tonumber(ARGV[2])
local max_backlog = tonumber(ARGV[3])
if redis.call('XLEN', KEYS[1]) >= max_backlog then
  return redis.error_reply('BACKLOG the event stream holds ' .. max_backlog .. ' unprocessed entries')
end
local count = (#KEYS - 1) / 3
local flags, users, seen_user, payload, trimmed, histories = {}, {}, {}, {}, {}, {}
for i = 1, count do
  local dedupe, history, sequence = KEYS[3 * i - 1], KEYS[3 * i], KEYS[3 * i + 1]
  local key, encoded, user = ARGV[3 * i + 1], ARGV[3 * i + 2], ARGV[3 * i + 3]
  if not trimmed[dedupe] then
    redis.call('ZREMRANGEBYSCORE', dedupe, '-inf', now_ms - ttl_ms)
    trimmed[dedupe] = true
  end
  if redis.call('ZADD', dedupe, 'NX', now_ms, key) == 1 then
    flags[i] = 1
    redis.call('RPUSH', history, encoded)
    redis.call('HINCRBY', sequence, 'seq', 1)
    histories[history] = true
    payload[#payload + 1] = '[' .. cjson.encode(user) .. ',' .. encoded .. ']'
    if not seen_user[user] then
      seen_user[user] = true
      users[#users + 1] = user
    end
  else
    flags[i] = 0
  end
end
for dedupe, _ in pairs(trimmed) do
  redis.call('PEXPIRE', dedupe, ttl_ms)
end
for history, _ in pairs(histories) do
  redis.call('LTRIM', history, -history_length, -1)
end
if #payload > 0 then
  local batch = '[' .. table.concat(payload, ',') .. ']'
  redis.call('XADD', KEYS[1], '*', 'users', cjson.encode(users), 'events', batch)
end
return flags
"""


class RedisStore:
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
        history_length: int = 200,
        stream_maxlen: int = 1_000_000,
        block_ms: int = 0,
        dedupe_ttl_s: float = 86400,
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
        self.history_length = history_length
        self.stream_maxlen = stream_maxlen
        self.stream = f"{key_prefix}:events"
        self.dedupe_ttl_ms = int(dedupe_ttl_s * 1000)
        self._append_script = self.client.register_script(APPEND_SCRIPT)
        # Overall deadline per call: every attempt may use its connect + read timeout.
        self.deadline_s = (retries + 1) * (connect_timeout_s + read_timeout_s) + 0.1

    def _key(self, user: str, kind: str) -> str:
        return f"{self.prefix}:u:{{{user}}}:{kind}"

    async def _call(self, operation: str, make: Callable[[], Awaitable[T]], extra_s: float = 0.0) -> T:
        try:
            async with asyncio.timeout(self.deadline_s + extra_s):
                return await make()
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"redis {operation} failed: {exc.__class__.__name__}: {exc}") from exc

    async def ping(self) -> bool:
        return bool(await self._call("ping", self.client.ping))

    async def close(self) -> None:
        await self.client.aclose()

    async def get_state(self, user: str) -> UserState:
        async def run() -> list[Any]:
            pipe = self.client.pipeline(transaction=True)
            pipe.hgetall(self._key(user, "v"))
            pipe.hget(self._key(user, "s"), "seq")
            pipe.lrange(self._key(user, "h"), 0, -1)
            return list(await pipe.execute())

        raw_vector, raw_seq, raw_events = await self._call("get_state", run)
        events = StoredEvent.decode_many(raw_events)
        return UserState(_decode_vector(raw_vector), int(raw_seq or 0), events)

    async def get_history(self, user: str) -> UserHistoryRecord:
        return (await self.get_histories([user]))[user]

    async def get_histories(self, users: list[str]) -> dict[str, UserHistoryRecord]:
        async def run() -> list[Any]:
            # MULTI keeps each user's list and sequence number consistent with each other.
            pipe = self.client.pipeline(transaction=True)
            for user in users:
                pipe.lrange(self._key(user, "h"), 0, -1)
                pipe.hget(self._key(user, "s"), "seq")
            return list(await pipe.execute())

        replies = await self._call("get_histories", run)
        out = {}
        for position, user in enumerate(users):
            raw_events, raw_seq = replies[2 * position], replies[2 * position + 1]
            out[user] = UserHistoryRecord(StoredEvent.decode_many(raw_events), int(raw_seq or 0))
        return out

    async def put_vectors(self, vectors: dict[str, StoredVector], ttl_s: int) -> None:
        async def run() -> None:
            pipe = self.client.pipeline(transaction=False)
            for user, stored in vectors.items():
                key = self._key(user, "v")
                pipe.hset(key, mapping=_encode_vector(stored))
                pipe.expire(key, ttl_s)
            await pipe.execute()

        await self._call("put_vectors", run)

    async def append_events(self, events: list[KeyedEvent]) -> AppendResult:
        keys: list[Any] = [self.stream]
        args: list[Any] = [self.history_length, self.dedupe_ttl_ms, self.stream_maxlen]
        for keyed in events:
            keys += [self._key(keyed.user, "d"), self._key(keyed.user, "h"), self._key(keyed.user, "s")]
            args += [keyed.key, keyed.event.encode(), keyed.user]

        async def run() -> list[Any]:
            return list(await self._append_script(keys=keys, args=args))

        try:
            flags = await self._call("append_events", run)
        except redis_errors.ResponseError as exc:
            if str(exc).startswith("BACKLOG"):
                raise BacklogFull(str(exc)) from exc
            raise
        stored = sum(int(flag) for flag in flags)
        return AppendResult(stored=stored, duplicates=len(events) - stored)

    async def seed_histories(self, histories: Iterable[tuple[str, list[StoredEvent]]]) -> int:
        written = 0
        chunk: list[tuple[str, list[StoredEvent]]] = []
        for item in histories:
            chunk.append(item)
            if len(chunk) >= _SEED_CHUNK:
                written += await self._seed_chunk(chunk)
                chunk = []
        if chunk:
            written += await self._seed_chunk(chunk)
        return written

    async def _seed_chunk(self, chunk: list[tuple[str, list[StoredEvent]]]) -> int:
        async def claim() -> list[Any]:
            # HSETNX decides, once and for all processes, which users are new to this Redis.
            pipe = self.client.pipeline(transaction=False)
            for user, events in chunk:
                pipe.hsetnx(self._key(user, "s"), "seq", len(events))
            return list(await pipe.execute())

        claimed = await self._call("seed_claim", claim)

        async def write() -> None:
            pipe = self.client.pipeline(transaction=False)
            for (user, events), is_new in zip(chunk, claimed, strict=True):
                if is_new and events:
                    pipe.rpush(
                        self._key(user, "h"), *[event.encode() for event in events[-self.history_length :]]
                    )
            await pipe.execute()

        await self._call("seed_write", write, extra_s=5.0)
        return sum(1 for is_new in claimed if is_new)

    async def ensure_group(self) -> None:
        async def run() -> None:
            try:
                await self.client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
            except redis_errors.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

        await self._call("ensure_group", run)

    async def _group_call(self, operation: str, make: Callable[[], Awaitable[T]], extra_s: float = 0.0) -> T:
        """A consumer-group command; NOGROUP (stream or group vanished) recreates the group, retries once."""
        try:
            return await self._call(operation, make, extra_s)
        except redis_errors.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            log.warning("consumer group missing; recreating it", extra={"operation": operation})
            metrics.GROUP_RECREATED.inc()
            await self.ensure_group()
            return await self._call(operation, make, extra_s)

    async def read_new(self, consumer: str, count: int, block_ms: int) -> list[StreamEntry]:
        async def run() -> Any:
            return await self.client.xreadgroup(
                GROUP, consumer, {self.stream: ">"}, count=count, block=block_ms
            )

        reply = await self._group_call("read_new", run, extra_s=block_ms / 1000)
        if not reply:
            return []
        messages = reply[0][1] if isinstance(reply, list) else next(iter(reply.values()))[0]
        return [_entry(entry_id, fields) for entry_id, fields in messages]

    async def claim_stale(self, consumer: str, min_idle_ms: int, count: int) -> list[StreamEntry]:
        async def run() -> Any:
            return await self.client.xautoclaim(self.stream, GROUP, consumer, min_idle_ms, "0-0", count=count)

        reply = await self._group_call("claim_stale", run)
        messages = reply[1] if reply else []
        entries = [_entry(entry_id, fields) for entry_id, fields in messages if fields]
        deleted = [_text(entry_id) for entry_id, fields in messages if not fields]
        if len(reply) > 2:
            deleted += [_text(entry_id) for entry_id in reply[2]]
        if deleted:  # trimmed from the stream before anyone processed them: nothing left to do
            await self.ack(deleted)
        return entries

    async def ack(self, entry_ids: list[str]) -> None:
        if entry_ids:
            await self._group_call("ack", lambda: self.client.xack(self.stream, GROUP, *entry_ids))

    async def _group_info(self) -> dict[Any, Any] | None:
        async def run() -> list[dict[Any, Any]]:
            try:
                return list(await self.client.xinfo_groups(self.stream))
            except redis_errors.ResponseError as exc:
                if "no such key" in str(exc):
                    return []
                raise

        for group in await self._call("group_info", run):
            if _text(_field(group, "name") or b"") == GROUP:
                return group
        return None

    async def backlog(self) -> StreamBacklog:
        group = await self._group_info()
        if group is None:
            return StreamBacklog(lag=0, pending=0)
        return StreamBacklog(lag=int(_field(group, "lag") or 0), pending=int(_field(group, "pending") or 0))

    async def trim_processed(self) -> int:
        """Deletes the entries the group has delivered and every consumer acknowledged; returns how many."""
        group = await self._group_info()
        if group is None:
            return 0
        delivered = _text(_field(group, "last-delivered-id") or "0-0")
        summary = await self._call("pending", lambda: self.client.xpending(self.stream, GROUP))
        oldest_pending = summary.get("min") if int(summary.get("pending") or 0) else None
        # Entries strictly below min_id are delivered and acknowledged.
        min_id = _text(oldest_pending) if oldest_pending else _next_id(delivered)
        if min_id == "0-1":
            return 0
        return int(
            await self._call("trim", lambda: self.client.xtrim(self.stream, minid=min_id, approximate=False))
        )

    async def remove_idle_consumers(self, min_idle_ms: int, keep: str) -> list[str]:
        """Deletes consumers with nothing pending that have been idle ``min_idle_ms`` (crashed or scaled-down
        workers; their pending entries were re-claimed first); returns their names."""

        async def consumers() -> list[dict[Any, Any]]:
            return list(await self.client.xinfo_consumers(self.stream, GROUP))

        removed = []
        for consumer in await self._group_call("consumers", consumers):
            name = _text(_field(consumer, "name") or b"")
            idle = int(_field(consumer, "idle") or 0)  # since its last read or claim, blocking ones too
            if name != keep and int(_field(consumer, "pending") or 0) == 0 and idle >= min_idle_ms:
                await self._call(
                    "delconsumer", partial(self.client.xgroup_delconsumer, self.stream, GROUP, name)
                )
                removed.append(name)
        return removed

    async def set_desired_bundle(self, record: BundleRecord) -> None:
        await self._call(
            "set_desired_bundle", lambda: self.client.set(f"{self.prefix}:bundle:desired", record.encode())
        )

    async def desired_bundle(self) -> BundleRecord | None:
        raw = await self._call("desired_bundle", lambda: self.client.get(f"{self.prefix}:bundle:desired"))
        return BundleRecord.decode(raw) if raw else None

    async def report_bundle(self, process: str, record: BundleRecord | None) -> None:
        key = f"{self.prefix}:bundle:served"
        if record is None:
            await self._call("report_bundle", lambda: self.client.hdel(key, process))
        else:
            await self._call("report_bundle", lambda: self.client.hset(key, process, record.encode()))

    async def served_bundles(self, max_age_s: float) -> dict[str, BundleRecord]:
        key = f"{self.prefix}:bundle:served"
        raw: dict[Any, Any] = await self._call("served_bundles", lambda: self.client.hgetall(key))
        records = {_text(process): BundleRecord.decode(value) for process, value in raw.items()}
        now = time.time()
        gone = [process for process, record in records.items() if record.at < now - _FORGET_PROCESS_S]
        if gone:  # processes killed long ago (a clean stop removes itself): forget them
            await self._call("served_bundles", lambda: self.client.hdel(key, *gone))
        return {process: record for process, record in records.items() if record.at >= now - max_age_s}

    async def flush_prefix(self) -> None:
        """Delete every key under this store's prefix (tests and local resets only)."""

        async def run() -> None:
            keys = [key async for key in self.client.scan_iter(match=f"{self.prefix}:*", count=1000)]
            if keys:
                await self.client.delete(*keys)

        await self._call("flush_prefix", run, extra_s=5.0)


def _field(info: dict[Any, Any], name: str) -> Any:
    """A field of an XINFO reply, whichever way the client decoded its keys."""
    return info.get(name, info.get(name.encode()))


def _next_id(entry_id: str) -> str:
    """The smallest stream id above ``entry_id`` (``ms-seq``)."""
    ms, _, seq = entry_id.partition("-")
    return f"{ms}-{int(seq or 0) + 1}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entry(entry_id: Any, fields: dict[Any, Any]) -> StreamEntry:
    raw_users = fields.get(b"users", fields.get("users", "[]"))
    return StreamEntry(_text(entry_id), [str(user) for user in json.loads(raw_users)])


def _encode_vector(stored: StoredVector) -> dict[Any, Any]:
    return {
        "vec": np.asarray(stored.vector, dtype=np.float32).tobytes(),
        "model": stored.model_version,
        "seq": stored.sequence,
        "ts": stored.newest_event_ts,
        "at": stored.computed_at,
    }


def _decode_vector(raw: dict[Any, Any]) -> StoredVector | None:
    if not raw or b"vec" not in raw:
        return None
    return StoredVector(
        vector=np.frombuffer(raw[b"vec"], dtype=np.float32).copy(),
        model_version=raw[b"model"].decode(),
        sequence=int(raw[b"seq"]),
        newest_event_ts=int(raw[b"ts"]),
        computed_at=float(raw[b"at"]),
    )
