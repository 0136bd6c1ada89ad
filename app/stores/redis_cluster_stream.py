"""The event stream on a Redis Cluster: ``stream_shards`` streams, a user's entries always in one.

Keys:
    <prefix>:events:{<n>}   stream shard n (0 <= n < stream_shards; CRC32 of the user id modulo the count),
                            one entry per accepted batch and shard {users, events}; group ``workers`` each
    <prefix>:u:{<user>}:d   the user's idempotency keys, as on one Redis (``app.stores.redis_stream``)

One Lua script cannot touch a batch's users and a stream (their keys live in different slots), so an
append is three steps: the backlog of every shard the batch touches (``BacklogFull`` before anything is
written); per user one script (``USER_APPEND_SCRIPT``: dedupe, history, sequence number, atomically, as
on one Redis); then one entry per shard naming every user of the batch in it, duplicates included. A
failure between the steps loses no event: the caller's retry finds the stored keys (nothing is stored
twice) and still writes the entries, and the worker's recomputation is idempotent.

The worker's calls run on every shard: reads (a quick pass, then a blocking one when every shard was
empty), claims, acks, backlog, trims, idle consumers. An entry id is ``<n>/<stream id>``.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from app.stores.base import (
    AppendResult,
    BacklogFull,
    KeyedEvent,
    StoreUnavailable,
    StreamBacklog,
    StreamEntry,
    users_of,
)
from app.stores.redis_connection import RedisConnection
from app.stores.redis_stream import RedisEventStream

T = TypeVar("T")

# KEYS: [dedupe zset, history list, sequence hash] of one user
# ARGV: [history_length, dedupe_ttl_ms, then per event: idempotency key, encoded event]
# Returns one flag per event: 1 = stored now, 0 = its key was already stored (a duplicate).
USER_APPEND_SCRIPT = """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local history_length = tonumber(ARGV[1])
local ttl_ms = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms - ttl_ms)
local flags, stored = {}, 0
for i = 3, #ARGV, 2 do
  if redis.call('ZADD', KEYS[1], 'NX', now_ms, ARGV[i]) == 1 then
    flags[#flags + 1] = 1
    redis.call('RPUSH', KEYS[2], ARGV[i + 1])
    redis.call('HINCRBY', KEYS[3], 'seq', 1)
    stored = stored + 1
  else
    flags[#flags + 1] = 0
  end
end
redis.call('PEXPIRE', KEYS[1], ttl_ms)
if stored > 0 then
  redis.call('LTRIM', KEYS[2], -history_length, -1)
end
return flags
"""


def shard_of(user: str, shards: int) -> int:
    """The stream shard of ``user``'s entries (stable across processes and restarts)."""
    return zlib.crc32(user.encode()) % shards


class ClusterEventStream:
    """``EventStream`` over ``shards`` streams; each shard is a ``RedisEventStream`` of its own key."""

    def __init__(
        self,
        connection: RedisConnection,
        history_length: int = 200,
        stream_maxlen: int = 1_000_000,
        dedupe_ttl_s: float = 86400,
        shards: int = 8,
    ):
        self.connection = connection
        self.client = connection.client
        self.history_length = history_length
        self.stream_maxlen = stream_maxlen
        self.dedupe_ttl_ms = int(dedupe_ttl_s * 1000)
        self.shards = [
            RedisEventStream(
                connection, history_length, stream_maxlen, dedupe_ttl_s, f"{connection.prefix}:events:{{{n}}}"
            )
            for n in range(shards)
        ]
        self._append_script = self.client.register_script(USER_APPEND_SCRIPT)

    def _key(self, user: str, kind: str) -> str:
        return self.connection.user_key(user, kind)

    def stream_of(self, user: str) -> str:
        return self.shards[shard_of(user, len(self.shards))].stream

    async def append_events(self, events: list[KeyedEvent]) -> AppendResult:
        if not events:
            return AppendResult(stored=0, duplicates=0)
        users = users_of(events)
        shards = sorted({shard_of(user, len(self.shards)) for user in users})
        lengths = await self.connection.call(
            "append_backlog",
            lambda: asyncio.gather(*(self.client.xlen(self.shards[n].stream) for n in shards)),
        )
        for n, length in zip(shards, lengths, strict=True):
            if int(length) >= self.stream_maxlen:
                message = f"the event stream shard {self.shards[n].stream} holds {length} unprocessed entries"
                raise BacklogFull(message, len(events))

        positions: dict[str, list[int]] = {user: [] for user in users}
        for position, keyed in enumerate(events):
            positions[keyed.user].append(position)

        async def append_user(user: str) -> list[Any]:
            keys = [self._key(user, "d"), self._key(user, "h"), self._key(user, "s")]
            args: list[Any] = [self.history_length, self.dedupe_ttl_ms]
            for position in positions[user]:
                args += [events[position].key, events[position].event.encode()]
            return list(await self._append_script(keys=keys, args=args))

        replies = await self.connection.call(
            "append_events", lambda: asyncio.gather(*(append_user(user) for user in users))
        )
        flags = [0] * len(events)
        for user, reply in zip(users, replies, strict=True):
            for position, flag in zip(positions[user], reply, strict=True):
                flags[position] = int(flag)
        await self._write_entries(events, users, flags)
        stored = sum(flags)
        return AppendResult(stored=stored, duplicates=len(events) - stored)

    async def _write_entries(self, events: list[KeyedEvent], users: list[str], flags: list[int]) -> None:
        """One entry per shard: every user of the batch there (duplicates too), the events stored now."""
        by_shard: dict[int, tuple[list[str], list[str]]] = {}
        for user in users:
            by_shard.setdefault(shard_of(user, len(self.shards)), ([], []))[0].append(user)
        for keyed, flag in zip(events, flags, strict=True):
            if flag:
                payload = "[" + json.dumps(keyed.user) + "," + keyed.event.encode() + "]"
                by_shard[shard_of(keyed.user, len(self.shards))][1].append(payload)

        def entry(n: int) -> Awaitable[Any]:
            shard_users, payload = by_shard[n]
            fields = {"users": json.dumps(shard_users), "events": "[" + ",".join(payload) + "]"}
            return self.client.xadd(self.shards[n].stream, fields)  # type: ignore[arg-type]

        await self.connection.call("append_stream", lambda: asyncio.gather(*(entry(n) for n in by_shard)))

    async def _each(self, call: Callable[[RedisEventStream], Awaitable[T]]) -> list[T]:
        """``call`` on every shard at once; the first failure is raised once all are done."""
        results = await asyncio.gather(*(call(shard) for shard in self.shards), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return list(results)  # type: ignore[arg-type]

    async def _each_entries(
        self, call: Callable[[RedisEventStream], Awaitable[list[StreamEntry]]]
    ) -> list[StreamEntry]:
        """Entries from every shard that answered (ids ``<n>/<id>``); a shard that could not answer is
        raised only when no other returned anything (what was read is never dropped)."""
        results = await asyncio.gather(*(call(shard) for shard in self.shards), return_exceptions=True)
        entries: list[StreamEntry] = []
        failure: BaseException | None = None
        for n, result in enumerate(results):
            if isinstance(result, StoreUnavailable):
                failure = failure or result
            elif isinstance(result, BaseException):
                raise result
            else:
                entries += [StreamEntry(f"{n}/{entry.entry_id}", entry.users) for entry in result]
        if failure is not None and not entries:
            raise failure
        return entries

    async def ensure_group(self) -> None:
        await self._each(lambda shard: shard.ensure_group())

    async def read_new(self, consumer: str, count: int, block_ms: int) -> list[StreamEntry]:
        """A quick pass over every shard, then (all empty) a read blocking ``block_ms`` on each at once: an
        entry waits at most ``block_ms``. Up to ``count`` entries per shard."""
        entries = await self._each_entries(lambda shard: shard.read_new(consumer, count, 1))
        if entries or block_ms <= 1:
            return entries
        return await self._each_entries(lambda shard: shard.read_new(consumer, count, block_ms))

    async def claim_stale(self, consumer: str, min_idle_ms: int, count: int) -> list[StreamEntry]:
        return await self._each_entries(lambda shard: shard.claim_stale(consumer, min_idle_ms, count))

    async def ack(self, entry_ids: list[str]) -> None:
        by_shard: dict[int, list[str]] = {}
        for entry_id in entry_ids:
            n, _, stream_id = entry_id.partition("/")
            by_shard.setdefault(int(n), []).append(stream_id)
        await asyncio.gather(*(self.shards[n].ack(ids) for n, ids in by_shard.items()))

    async def backlog(self) -> StreamBacklog:
        backlogs: Sequence[StreamBacklog] = await self._each(lambda shard: shard.backlog())
        return StreamBacklog(
            lag=sum(backlog.lag for backlog in backlogs), pending=sum(backlog.pending for backlog in backlogs)
        )

    async def trim_processed(self) -> int:
        return sum(await self._each(lambda shard: shard.trim_processed()))

    async def remove_idle_consumers(self, min_idle_ms: int, keep: str) -> list[str]:
        """Per shard (a consumer idle on one shard may hold entries of another); the names removed
        from any shard."""
        removed = await self._each(lambda shard: shard.remove_idle_consumers(min_idle_ms, keep))
        return list(dict.fromkeys(name for names in removed for name in names))
