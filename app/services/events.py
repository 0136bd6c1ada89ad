"""Accepting behaviour events: validate, convert to stored events, append to histories + stream at once."""

from __future__ import annotations

from dataclasses import dataclass

from app.core import metrics
from app.stores.base import AppendResult, EventStream, KeyedEvent, StoredEvent
from models.data.schema import Action

# Names accepted at the API for models.data.schema.Action (padding excluded).
ACTION_NAMES: dict[str, Action] = {action.name.lower(): action for action in Action if action != Action.PAD}


@dataclass
class IncomingEvent:
    user_id: str
    item_id: str
    action: str  # a key of ACTION_NAMES
    timestamp: int  # unix seconds
    value: float = 1.0
    scene: str | None = None
    device: str | None = None
    event_id: str | None = None  # the client's idempotency key; None = derived from the fields


def future_timestamps(events: list[IncomingEvent], now: float, max_future_s: int) -> list[str]:
    """One message per event timestamped more than ``max_future_s`` after ``now`` (unix seconds).

    Such an event would stay the user's "newest" and pin part of the list until enough newer events push
    it out. Old timestamps are accepted: late-arriving events are normal."""
    limit = int(now) + max_future_s
    return [
        f"events.{position}.timestamp: {event.timestamp} is more than {max_future_s} s ahead of the clock"
        for position, event in enumerate(events)
        if event.timestamp > limit
    ]


def to_stored(event: IncomingEvent) -> KeyedEvent:
    stored = StoredEvent(
        item=event.item_id,
        action=int(ACTION_NAMES[event.action]),
        value=float(event.value),
        timestamp=int(event.timestamp),
        scene=event.scene,
        device=event.device,
    )
    return KeyedEvent.of(event.user_id, stored, event.event_id)


async def accept_events(stream: EventStream, events: list[IncomingEvent]) -> AppendResult:
    """Durable once this returns, each event exactly once (Redis: one Lua script with the stream append).
    Raises StoreUnavailable: the events may or may not be stored, retrying the same events is safe; or
    BacklogFull: nothing was stored (``app.core.errors`` answers both)."""
    result = await stream.append_events([to_stored(event) for event in events])
    metrics.EVENTS_ACCEPTED.inc(result.stored)
    metrics.EVENTS_DUPLICATE.inc(result.duplicates)
    return result
