"""Accepting behaviour events: validate, convert to stored events, append to histories + stream at once."""

from __future__ import annotations

from dataclasses import dataclass

from app.core import metrics
from app.stores.base import StoredEvent, UserStateStore
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


def to_stored(event: IncomingEvent) -> tuple[str, StoredEvent]:
    stored = StoredEvent(
        item=event.item_id,
        action=int(ACTION_NAMES[event.action]),
        value=float(event.value),
        timestamp=int(event.timestamp),
        scene=event.scene,
        device=event.device,
    )
    return event.user_id, stored


async def accept_events(store: UserStateStore, events: list[IncomingEvent]) -> int:
    """Durable once this returns (Redis: one MULTI with the stream append). Raises StoreUnavailable."""
    accepted = await store.append_events([to_stored(event) for event in events])
    metrics.EVENTS_ACCEPTED.inc(accepted)
    return accepted
