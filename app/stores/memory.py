"""In-process stores for the embedded mode (no REDIS_URL): same contracts as Redis, nothing survives a
restart. One class per job (``app.stores.base``); ``memory_stores`` wires them.

The stream keeps delivered-but-unacknowledged entries as pending, so the in-process worker has the same
ack-after-write and re-claim behaviour as the Redis one. ``MemoryEventStream.append_events`` writes the
user histories it shares with ``MemoryUsers`` and its own stream without awaiting in between: one atomic
step inside the event loop, as the Lua script is in Redis.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from app.stores.base import (
    AppendResult,
    BacklogFull,
    BundleRecord,
    KeyedEvent,
    StoredEvent,
    StoredVector,
    Stores,
    StreamBacklog,
    StreamEntry,
    UserHistoryRecord,
    UserState,
    users_of,
)


class MemoryConnection:
    """Nothing to connect to: always reachable."""

    kind = "memory"

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None


class MemoryUsers:
    """Histories, sequence numbers and cached vectors in dictionaries; safe within one event loop."""

    def __init__(self, history_length: int = 200):
        self.history_length = history_length
        self._histories: dict[str, deque[StoredEvent]] = {}
        self._sequence: dict[str, int] = {}
        self._vectors: dict[str, tuple[StoredVector, float]] = {}  # user -> (vector, expires monotonic)

    async def get_state(self, user: str) -> UserState:
        events = list(self._histories.get(user, ()))
        return UserState(self._live_vector(user), self._sequence.get(user, 0), events)

    def _live_vector(self, user: str) -> StoredVector | None:
        stored = self._vectors.get(user)
        if stored is None:
            return None
        vector, expires = stored
        if time.monotonic() >= expires:
            del self._vectors[user]
            return None
        return vector

    async def get_history(self, user: str) -> UserHistoryRecord:
        return UserHistoryRecord(list(self._histories.get(user, ())), self._sequence.get(user, 0))

    async def get_histories(self, users: list[str]) -> dict[str, UserHistoryRecord]:
        return {user: await self.get_history(user) for user in users}

    async def put_vectors(self, vectors: dict[str, StoredVector], ttl_s: int) -> None:
        expires = time.monotonic() + ttl_s
        for user, vector in vectors.items():
            self._vectors[user] = (vector, expires)

    async def seed_histories(self, histories: Iterable[tuple[str, list[StoredEvent]]]) -> int:
        written = 0
        for user, events in histories:
            if user in self._sequence:
                continue
            self.history(user).extend(events)
            self._sequence[user] = len(events)
            written += 1
        return written

    def history(self, user: str) -> deque[StoredEvent]:
        """The user's bounded history (created empty): written by ``MemoryEventStream.append_events``."""
        if user not in self._histories:
            self._histories[user] = deque(maxlen=self.history_length)
        return self._histories[user]

    def count_event(self, user: str) -> None:
        self._sequence[user] = self._sequence.get(user, 0) + 1


@dataclass
class _Pending:
    entry: StreamEntry
    consumer: str
    delivered_at: float  # monotonic seconds


class MemoryEventStream:
    """Events in (deduplicated, into ``users``' histories) and the in-process stream the worker reads."""

    def __init__(self, users: MemoryUsers, stream_maxlen: int = 1_000_000, dedupe_ttl_s: float = 86400):
        self.users = users
        self.dedupe_ttl_s = dedupe_ttl_s
        self._seen: dict[str, dict[str, float]] = {}  # user -> idempotency key -> expires (monotonic)
        self.stream_maxlen = stream_maxlen  # most unprocessed entries (undelivered + pending)
        self._stream: deque[StreamEntry] = deque()  # not yet delivered
        self._pending: dict[str, _Pending] = {}
        self._next_id = 0
        self._arrived = asyncio.Event()

    async def append_events(self, events: list[KeyedEvent]) -> AppendResult:
        if len(self._stream) + len(self._pending) >= self.stream_maxlen:
            raise BacklogFull(f"the event stream holds {self.stream_maxlen} unprocessed entries", len(events))
        now = time.monotonic()
        fresh: list[KeyedEvent] = []
        for keyed in events:
            seen = self._seen_keys(keyed.user, now)
            if keyed.key in seen:
                continue
            seen[keyed.key] = now + self.dedupe_ttl_s
            self.users.history(keyed.user).append(keyed.event)
            self.users.count_event(keyed.user)
            fresh.append(keyed)
        if fresh:
            self._next_id += 1
            self._stream.append(StreamEntry(f"{self._next_id}-0", users_of(fresh)))
            self._arrived.set()
        return AppendResult(stored=len(fresh), duplicates=len(events) - len(fresh))

    def _seen_keys(self, user: str, now: float) -> dict[str, float]:
        """The user's idempotency keys still inside the dedupe window (expired ones dropped)."""
        seen = self._seen.setdefault(user, {})
        expired = [key for key, expires in seen.items() if expires <= now]
        for key in expired:
            del seen[key]
        return seen

    async def ensure_group(self) -> None:
        return None

    async def read_new(self, consumer: str, count: int, block_ms: int) -> list[StreamEntry]:
        if not self._stream and block_ms > 0:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout=block_ms / 1000)
            except TimeoutError:
                return []
        taken: list[StreamEntry] = []
        while self._stream and len(taken) < count:
            entry = self._stream.popleft()
            self._pending[entry.entry_id] = _Pending(entry, consumer, time.monotonic())
            taken.append(entry)
        return taken

    async def claim_stale(self, consumer: str, min_idle_ms: int, count: int) -> list[StreamEntry]:
        now = time.monotonic()
        claimed: list[StreamEntry] = []
        for pending in list(self._pending.values()):
            if len(claimed) >= count:
                break
            if (now - pending.delivered_at) * 1000 >= min_idle_ms:
                pending.consumer, pending.delivered_at = consumer, now
                claimed.append(pending.entry)
        return claimed

    async def ack(self, entry_ids: list[str]) -> None:
        for entry_id in entry_ids:
            self._pending.pop(entry_id, None)

    async def backlog(self) -> StreamBacklog:
        return StreamBacklog(lag=len(self._stream), pending=len(self._pending))

    async def trim_processed(self) -> int:
        return 0  # acknowledged entries are dropped at once

    async def remove_idle_consumers(self, min_idle_ms: int, keep: str) -> list[str]:
        return []  # one in-process consumer; nothing to clean up


class MemoryRegistry:
    """The desired bundle and each process's report, for the processes of this one (the API's own)."""

    def __init__(self) -> None:
        self._desired_bundle: BundleRecord | None = None
        self._served: dict[str, BundleRecord] = {}

    async def set_desired_bundle(self, record: BundleRecord) -> None:
        self._desired_bundle = record

    async def desired_bundle(self) -> BundleRecord | None:
        return self._desired_bundle

    async def report_bundle(self, process: str, record: BundleRecord | None) -> None:
        if record is None:
            self._served.pop(process, None)
        else:
            self._served[process] = record

    async def served_bundles(self, max_age_s: float) -> dict[str, BundleRecord]:
        oldest = time.time() - max_age_s
        return {process: record for process, record in self._served.items() if record.at >= oldest}


def memory_stores(
    history_length: int = 200, stream_maxlen: int = 1_000_000, dedupe_ttl_s: float = 86400
) -> Stores:
    """The embedded mode's stores: users, the event stream writing into them, a registry."""
    users = MemoryUsers(history_length)
    events = MemoryEventStream(users, stream_maxlen, dedupe_ttl_s)
    return Stores(MemoryConnection(), users, events, MemoryRegistry())
