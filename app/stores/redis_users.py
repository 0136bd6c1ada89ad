"""Redis user state: histories, sequence numbers and cached vectors per user.

Keys (``RedisConnection.user_key``):
    <prefix>:u:{<user>}:h   list of encoded StoredEvent, oldest first, trimmed to history_length
    <prefix>:u:{<user>}:s   hash {seq}: events accepted for the user
    <prefix>:u:{<user>}:v   hash {vec, model, seq, ts, at} with a TTL: the cached user vector

The history and the sequence number are written by ``RedisEventStream.append_events`` (with the stream
entry, atomically) and by seeding; this store reads them and writes vectors.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from app.stores.base import StoredEvent, StoredVector, UserHistoryRecord, UserState
from app.stores.redis_connection import RedisConnection

_SEED_CHUNK = 500


class RedisUsers:
    def __init__(self, connection: RedisConnection, history_length: int = 200):
        self.connection = connection
        self.client = connection.client
        self.history_length = history_length

    def _key(self, user: str, kind: str) -> str:
        return self.connection.user_key(user, kind)

    async def get_state(self, user: str) -> UserState:
        async def run() -> list[Any]:
            pipe = self.client.pipeline(transaction=True)
            pipe.hgetall(self._key(user, "v"))
            pipe.hget(self._key(user, "s"), "seq")
            pipe.lrange(self._key(user, "h"), 0, -1)
            return list(await pipe.execute())

        raw_vector, raw_seq, raw_events = await self.connection.call("get_state", run)
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

        replies = await self.connection.call("get_histories", run)
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

        await self.connection.call("put_vectors", run)

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

        claimed = await self.connection.call("seed_claim", claim)

        async def write() -> None:
            pipe = self.client.pipeline(transaction=False)
            for (user, events), is_new in zip(chunk, claimed, strict=True):
                if is_new and events:
                    pipe.rpush(
                        self._key(user, "h"), *[event.encode() for event in events[-self.history_length :]]
                    )
            await pipe.execute()

        await self.connection.call("seed_write", write, extra_s=5.0)
        return sum(1 for is_new in claimed if is_new)


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
