"""The user-state store contract shared by the Redis and the in-memory implementation.

Per user the store keeps: the recent events (bounded list, oldest first, raw item ids so they survive a
bundle swap), an event sequence number (incremented by every accepted event), and the cached user vector
with the model version, the sequence number and newest event timestamp it covers. A vector is fresh for a
request when its model version is the serving one and its sequence number is not behind the user's: that
is the read-your-writes rule, and it does not depend on clients' clocks.

The store also carries the event stream the near-line worker consumes (Redis Stream + consumer group, or
its in-process equivalent). Accepted events are appended to the history and the stream in one step.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np


class StoreUnavailable(Exception):
    """The store could not answer in time (connection refused, timeout); callers degrade, never 500."""


@dataclass(frozen=True)
class StoredEvent:
    """One behaviour event as kept in a user's history."""

    item: str  # raw item id
    action: int  # models.data.schema.Action
    value: float
    timestamp: int  # unix seconds
    scene: str | None = None
    device: str | None = None

    def encode(self) -> str:
        return json.dumps([self.item, self.action, self.value, self.timestamp, self.scene, self.device])

    @staticmethod
    def decode(raw: str | bytes) -> StoredEvent:
        item, action, value, timestamp, scene, device = json.loads(raw)
        return StoredEvent(str(item), int(action), float(value), int(timestamp), scene, device)


@dataclass(frozen=True)
class StoredVector:
    """A user vector as cached: [d] float32 plus what it was computed from."""

    vector: np.ndarray  # [d] float32, L2-normalised
    model_version: str
    sequence: int  # the user's event sequence number the vector covers
    newest_event_ts: int  # timestamp of the newest event it covers (0 when none)
    computed_at: float  # unix seconds


@dataclass(frozen=True)
class UserState:
    """What the request path reads in one round trip: cached vector, sequence number, recent events."""

    vector: StoredVector | None
    sequence: int
    events: list[StoredEvent]


@dataclass(frozen=True)
class UserHistoryRecord:
    """A user's recent events and the sequence number they reach (read together, consistently)."""

    events: list[StoredEvent]
    sequence: int


@dataclass(frozen=True)
class StreamEntry:
    """One stream entry: the users whose events it carried."""

    entry_id: str
    users: list[str]


@dataclass(frozen=True)
class StreamBacklog:
    lag: int  # entries not yet delivered to the group
    pending: int  # delivered, not acknowledged


class UserStateStore(Protocol):
    """Async user-state store. Every method raises ``StoreUnavailable`` instead of hanging or 500-ing."""

    kind: str  # "redis" | "memory"

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...

    async def get_state(self, user: str) -> UserState: ...

    async def get_history(self, user: str) -> UserHistoryRecord: ...

    async def get_histories(self, users: list[str]) -> dict[str, UserHistoryRecord]: ...

    async def put_vectors(self, vectors: dict[str, StoredVector], ttl_s: int) -> None: ...

    async def append_events(self, events: list[tuple[str, StoredEvent]]) -> int:
        """Append to the histories (bounded), bump sequence numbers, add one stream entry; returns count."""
        ...

    async def seed_histories(self, histories: Iterable[tuple[str, list[StoredEvent]]]) -> int:
        """Write histories of users the store does not know yet; returns how many were written."""
        ...

    async def ensure_group(self) -> None: ...

    async def read_new(self, consumer: str, count: int, block_ms: int) -> list[StreamEntry]: ...

    async def claim_stale(self, consumer: str, min_idle_ms: int, count: int) -> list[StreamEntry]: ...

    async def ack(self, entry_ids: list[str]) -> None: ...

    async def backlog(self) -> StreamBacklog: ...


def users_of(events: list[tuple[str, StoredEvent]]) -> list[str]:
    """Distinct users in arrival order."""
    return list(dict.fromkeys(user for user, _ in events))
