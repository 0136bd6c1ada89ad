"""The store contracts shared by the Redis and the in-memory implementation, one protocol per job:
``UserStateStore`` (per-user state), ``EventStream`` (events in, the worker's stream) and
``BundleRegistry`` (which bundle every process serves), over one ``StoreConnection``; ``Stores`` holds
the four.

Per user the store keeps: the recent events (bounded list, oldest first, raw item ids so they survive a
bundle swap), an event sequence number (incremented by every accepted event), and the cached user vector
with the model version, the sequence number and newest event timestamp it covers. A vector is fresh for a
request when its model version is the serving one and its sequence number is not behind the user's: that
is the read-your-writes rule, and it does not depend on clients' clocks.

The event stream the near-line worker consumes (Redis Stream + consumer group, or its in-process
equivalent) is fed by ``EventStream.append_events``, which writes the history and the stream in one step.

Exactly-once: every event carries an idempotency key (the client's ``event_id``, else a hash of its
fields, see ``event_key``). The store remembers each user's keys for ``dedupe_ttl_s`` and stores an event
only when its key is new, in the same atomic step as the append; a retry (by the Redis client after a lost
reply, or by the caller after a 503) therefore never stores an event twice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np
import orjson

from app.core.failures import BacklogFull as BacklogFull
from app.core.failures import StoreUnavailable as StoreUnavailable


class StoredEvent(NamedTuple):
    """One behaviour event as kept in a user's history. A named tuple, not a frozen dataclass: a recommend
    decodes up to ``history_length`` of them, and a frozen dataclass's ``__init__`` (one
    ``object.__setattr__`` per field) made 200 of them cost 0.16 ms; a tuple is built in a fraction."""

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
        return StoredEvent.from_fields(json.loads(raw))

    @staticmethod
    def decode_many(raws: Sequence[str | bytes]) -> list[StoredEvent]:
        """``[decode(raw) for raw in raws]`` with one JSON parse (orjson) for the whole list: a history of
        200 events in 0.07 ms instead of 0.22 (one json.loads per event, frozen dataclasses)."""
        if not raws:
            return []
        parts = [raw if isinstance(raw, bytes) else raw.encode() for raw in raws]
        return [StoredEvent.from_fields(fields) for fields in orjson.loads(b"[" + b",".join(parts) + b"]")]

    @staticmethod
    def from_fields(fields: list[Any]) -> StoredEvent:
        item, action, value, timestamp, scene, device = fields
        return StoredEvent(str(item), int(action), float(value), int(timestamp), scene, device)


def event_key(user: str, event: StoredEvent, event_id: str | None = None) -> str:
    """The idempotency key of one event: ``id:<event_id>`` when the client gave one, else ``h:`` and a
    hash of every field (same user, item, action, value, time, scene and device -> same key)."""
    if event_id is not None:
        return f"id:{event_id}"
    digest = hashlib.sha256(json.dumps([user, event.encode()]).encode()).hexdigest()
    return f"h:{digest[:32]}"


@dataclass(frozen=True)
class KeyedEvent:
    """An event on its way into the store: the user, the event and its idempotency key."""

    user: str
    event: StoredEvent
    key: str

    @staticmethod
    def of(user: str, event: StoredEvent, event_id: str | None = None) -> KeyedEvent:
        return KeyedEvent(user, event, event_key(user, event, event_id))


@dataclass(frozen=True)
class AppendResult:
    """What ``append_events`` did: events newly stored, and events whose key was already stored."""

    stored: int
    duplicates: int


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
class BundleRecord:
    """A bundle a process should serve (the last successful reload) or serves (a process's report). ``url``
    and ``sha256``: where a process without ``path`` on its disk fetches it (``tandem bundle pack``)."""

    path: str
    model_version: str
    at: float  # unix seconds it was written
    url: str | None = None
    sha256: str | None = None

    def encode(self) -> str:
        return json.dumps([self.path, self.model_version, self.at, self.url, self.sha256])

    @staticmethod
    def decode(raw: str | bytes) -> BundleRecord:
        path, model_version, at, *fetch = json.loads(raw)
        url, sha256 = [*fetch, None, None][:2]
        return BundleRecord(str(path), str(model_version), float(at), url, sha256)


@dataclass(frozen=True)
class StreamBacklog:
    lag: int  # entries not yet delivered to the group
    pending: int  # delivered, not acknowledged


class StoreConnection(Protocol):
    """What the three jobs share: one connection (Redis pool, or nothing in-process), pinged by /readyz
    and closed once at shutdown."""

    kind: str  # "redis" | "memory"

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


class UserStateStore(Protocol):
    """Per-user state the request path and the worker read: recent events, sequence number, cached vector.
    Every method raises ``StoreUnavailable`` instead of hanging or 500-ing."""

    async def get_state(self, user: str) -> UserState: ...

    async def get_history(self, user: str) -> UserHistoryRecord: ...

    async def get_histories(self, users: list[str]) -> dict[str, UserHistoryRecord]: ...

    async def put_vectors(self, vectors: dict[str, StoredVector], ttl_s: int) -> None: ...

    async def seed_histories(self, histories: Iterable[tuple[str, list[StoredEvent]]]) -> int:
        """Write histories of users the store does not know yet; returns how many were written."""
        ...


class EventStream(Protocol):
    """How accepted events enter the system and reach the near-line worker (a consumer group).

    ``append_events`` belongs here, not to ``UserStateStore``: it is the one write of an event, and the
    user's history, sequence number and dedupe keys are its side effect, written in the same atomic step
    as the stream entry (Redis: one Lua script), so the worker never sees an entry whose history is
    missing and a retry never stores an event twice. Every method raises ``StoreUnavailable``."""

    async def append_events(self, events: list[KeyedEvent]) -> AppendResult:
        """Atomically, for each event whose key the user has not stored within the dedupe window: append to
        the history (bounded), bump the sequence number; then one stream entry for the new ones. Raises
        ``BacklogFull`` (nothing stored) when the stream holds its most unprocessed entries."""
        ...

    async def ensure_group(self) -> None: ...

    async def read_new(self, consumer: str, count: int, block_ms: int) -> list[StreamEntry]: ...

    async def claim_stale(self, consumer: str, min_idle_ms: int, count: int) -> list[StreamEntry]: ...

    async def ack(self, entry_ids: list[str]) -> None: ...

    async def backlog(self) -> StreamBacklog: ...

    async def trim_processed(self) -> int:
        """Delete stream entries every consumer has acknowledged (never an unprocessed one)."""
        ...

    async def remove_idle_consumers(self, min_idle_ms: int, keep: str) -> list[str]:
        """Forget consumers idle that long with nothing pending (crashed workers); returns their names."""
        ...


class BundleRegistry(Protocol):
    """The one channel by which every process learns the bundle to serve (``app.services.bundle_sync``):
    the desired bundle, and what each process reports it serves. Raises ``StoreUnavailable``."""

    async def set_desired_bundle(self, record: BundleRecord) -> None:
        """Record the bundle every process should serve (a reload, a finished background build)."""
        ...

    async def desired_bundle(self) -> BundleRecord | None: ...

    async def report_bundle(self, process: str, record: BundleRecord | None) -> None:
        """Heartbeat: ``process`` serves ``record`` now; None removes the process (shutdown)."""
        ...

    async def served_bundles(self, max_age_s: float) -> dict[str, BundleRecord]:
        """Processes that reported within ``max_age_s``, with what they serve."""
        ...


@dataclass(frozen=True)
class Stores:
    """The store by job, over one shared connection (``app.startup.open_stores``): services take the
    narrow part they need (routes: ``users``; the worker: ``events`` + ``users``; bundle sync:
    ``registry``)."""

    connection: StoreConnection
    users: UserStateStore
    events: EventStream
    registry: BundleRegistry

    @property
    def kind(self) -> str:
        return self.connection.kind


def users_of(events: list[KeyedEvent]) -> list[str]:
    """Distinct users in arrival order."""
    return list(dict.fromkeys(keyed.user for keyed in events))


def keyed(events: list[tuple[str, StoredEvent]]) -> list[KeyedEvent]:
    """Events without client ids -> keyed by their fields (tests, seeding tools)."""
    return [KeyedEvent.of(user, event) for user, event in events]
