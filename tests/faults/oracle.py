"""The fault suite's oracle: what the clients sent and the API acknowledged (``Ledger``), what Redis holds
afterwards (``StoredView``), and the verdict (``count_stored``): stored, lost, duplicated, trimmed.

Stored events are counted from each user's dedupe set (every stored event's idempotency key, written in the
same script as the history) and sequence number, not from the history list the store trims to its length.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from app.services.events import IncomingEvent, to_stored


@dataclass
class Ledger:
    """What the clients sent and what the API acknowledged, event by event."""

    sent: set[tuple[str, int]] = field(default_factory=set)
    accepted: set[tuple[str, int]] = field(default_factory=set)
    keys: dict[tuple[str, int], str] = field(default_factory=dict)  # (user, timestamp) -> idempotency key
    requests: int = 0
    failed: int = 0  # answers that are failures (5xx other than event 503s, connection errors on reads)
    shed: int = 0  # 429s (by design under overload)
    event_503: int = 0  # by design while Redis is down or stalled (retried)
    deduplicated: int = 0  # events a retry found already stored (the 202's "duplicates")
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # client-side errors by exception type
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, status: int) -> None:
        with self.lock:
            self.requests += 1
            self.statuses[status] += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "failed": self.failed,
            "shed_429": self.shed,
            "events_503_retried": self.event_503,
            "retried_events_found_stored": self.deduplicated,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "client_errors": dict(self.errors),
        }


def idempotency_key(event: dict[str, Any]) -> str:
    """The key the API derives for one event of a request body: ``id:<event_id>``, else a hash of its
    fields (the same conversion ``POST /v1/events`` does)."""
    incoming = IncomingEvent(
        user_id=str(event["user_id"]),
        item_id=str(event["item_id"]),
        action=str(event["action"]),
        timestamp=int(event["timestamp"]),
        value=float(event.get("value", 1.0)),
        event_id=event.get("event_id"),
    )
    return to_stored(incoming).key


@dataclass
class StoredView:
    """What Redis holds for a set of users, read after the traffic stopped."""

    keys: dict[str, set[str]]  # user -> idempotency keys in the dedupe set (every stored event, no cap)
    sequences: dict[str, int]  # user -> sequence number (one per stored copy)
    history: Counter[tuple[str, int]]  # copies of each (user, timestamp) in the retained (trimmed) histories

    def trimmed(self) -> int:
        """Stored copies no longer in the history list (the length trim): what the history cannot show."""
        kept = Counter(user for user, _ in self.history.elements())
        return sum(max(0, seq - kept[user]) for user, seq in self.sequences.items())


def count_stored(ledger: Ledger, view: StoredView) -> dict[str, int]:
    """The ledger against Redis: accepted events stored / lost, and duplicated copies."""

    def stored(event: tuple[str, int]) -> bool:
        user = event[0]
        return ledger.keys[event] in view.keys.get(user, ()) or view.history[event] > 0

    accepted_stored = {event for event in ledger.accepted if stored(event)}
    # Sent but not acknowledged (a request in flight when the traffic stopped) may be stored: not a copy.
    distinct_stored = sum(1 for event in ledger.sent if stored(event))
    copies_in_history = sum(count - 1 for count in view.history.values() if count > 1)
    return {
        "events_stored": len(accepted_stored),
        "events_lost": len(ledger.accepted - accepted_stored),
        "events_duplicated": max(copies_in_history, sum(view.sequences.values()) - distinct_stored),
        "events_trimmed_from_history": view.trimmed(),
    }
