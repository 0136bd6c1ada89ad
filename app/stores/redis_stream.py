"""The Redis event stream: accepted events in (with the user histories as their side effect), and the
stream the near-line workers consume as one consumer group.

Keys:
    <prefix>:events         stream; one entry per accepted batch {users, events}; group ``workers``
    <prefix>:u:{<user>}:d   sorted set: idempotency keys of the user's stored events, scored by the time
                            (ms) they were stored; entries older than the dedupe window are removed
    (and, written here, read by ``RedisUsers``: the user's history list ``:h`` and sequence hash ``:s``)

Appending events is one Lua script (``APPEND_SCRIPT``): Redis runs it atomically, and it stores an event
only if its idempotency key is new for the user, so a retried call (redis-py retries after a timeout, or
the caller retries after a 503) finds the keys and stores nothing twice. The history, sequence number,
dedupe keys and the stream entry are written in that one step, which is why appending belongs to the
stream and not to the user store (``app.stores.base.EventStream``).

Stream bound: the worker trims entries every consumer has acknowledged (``trim_processed``: XTRIM MINID
below the oldest pending entry and the group's last delivered one), so the stream holds only unprocessed
entries. When it holds ``stream_maxlen`` of them (the worker is down or far behind) appending refuses with
``BacklogFull`` and stores nothing: an unprocessed entry is never dropped to make room.

A missing consumer group (Redis flushed, failover to an empty replica) is recreated on the spot by every
group command (NOGROUP), so the worker continues instead of dying.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

from redis import exceptions as redis_errors

from app.core import metrics
from app.stores.base import AppendResult, BacklogFull, KeyedEvent, StreamBacklog, StreamEntry
from app.stores.redis_connection import RedisConnection, field, text

T = TypeVar("T")
log = logging.getLogger("tandem.store")
GROUP = "workers"

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


class RedisEventStream:
    def __init__(
        self,
        connection: RedisConnection,
        history_length: int = 200,
        stream_maxlen: int = 1_000_000,
        dedupe_ttl_s: float = 86400,
        stream: str | None = None,
    ):
        """``stream``: the stream key (default ``<prefix>:events``; a Redis Cluster shard names its own)."""
        self.connection = connection
        self.client = connection.client
        self.history_length = history_length
        self.stream_maxlen = stream_maxlen
        self.stream = stream or f"{connection.prefix}:events"
        self.dedupe_ttl_ms = int(dedupe_ttl_s * 1000)
        self._append_script = self.client.register_script(APPEND_SCRIPT)

    def _key(self, user: str, kind: str) -> str:
        return self.connection.user_key(user, kind)

    async def _call(self, operation: str, make: Callable[[], Awaitable[T]], extra_s: float = 0.0) -> T:
        return await self.connection.call(operation, make, extra_s)

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
                raise BacklogFull(str(exc), len(events)) from exc
            raise
        stored = sum(int(flag) for flag in flags)
        return AppendResult(stored=stored, duplicates=len(events) - stored)

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
        deleted = [text(entry_id) for entry_id, fields in messages if not fields]
        if len(reply) > 2:
            deleted += [text(entry_id) for entry_id in reply[2]]
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
            if text(field(group, "name") or b"") == GROUP:
                return group
        return None

    async def backlog(self) -> StreamBacklog:
        group = await self._group_info()
        if group is None:
            return StreamBacklog(lag=0, pending=0)
        return StreamBacklog(lag=int(field(group, "lag") or 0), pending=int(field(group, "pending") or 0))

    async def trim_processed(self) -> int:
        """Deletes the entries the group has delivered and every consumer acknowledged; returns how many."""
        group = await self._group_info()
        if group is None:
            return 0
        delivered = text(field(group, "last-delivered-id") or "0-0")
        summary = await self._call("pending", lambda: self.client.xpending(self.stream, GROUP))
        oldest_pending = summary.get("min") if int(summary.get("pending") or 0) else None
        # Entries strictly below min_id are delivered and acknowledged.
        min_id = text(oldest_pending) if oldest_pending else _next_id(delivered)
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
            name = text(field(consumer, "name") or b"")
            idle = int(field(consumer, "idle") or 0)  # since its last read or claim, blocking ones too
            if name != keep and int(field(consumer, "pending") or 0) == 0 and idle >= min_idle_ms:
                await self._call(
                    "delconsumer", partial(self.client.xgroup_delconsumer, self.stream, GROUP, name)
                )
                removed.append(name)
        return removed


def _next_id(entry_id: str) -> str:
    """The smallest stream id above ``entry_id`` (``ms-seq``)."""
    ms, _, seq = entry_id.partition("-")
    return f"{ms}-{int(seq or 0) + 1}"


def _entry(entry_id: Any, fields: dict[Any, Any]) -> StreamEntry:
    raw_users = fields.get(b"users", fields.get("users", "[]"))
    return StreamEntry(text(entry_id), [str(user) for user in json.loads(raw_users)])
