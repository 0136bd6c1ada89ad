"""Defaults chosen from a log's shape (``models.data.shape``), each with the reason it was chosen.

- protocol: explicit ratings, or mostly one session per user (anonymous sessions) -> leave-last-out (the
  next event from the earlier ones); users who come back -> next-session (their next session from the
  earlier ones, on a time split).
- items per request (the session encoder's ``max_items_per_session``): 1 for rating logs and for logs of
  mostly one session per user, else chunks of 20. With a single session per user a session-sized request
  has nothing before it: its context token sees no history and the model falls back to popularity.
- exclude seen: items already in the request's history are excluded from the answer only when almost no
  event re-visits an item (a film is rated once); otherwise they stay recommendable and the recent-items
  candidate source is used.

Any choice can be set on the command line instead; ``ShapeDefaults.lines`` says which were.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from models.data.schema import EventTable
from models.data.shape import DataShape, measure_shape

REQUEST_ITEMS_DEFAULT = 20  # models.md 1.7: sessions longer than this are cut into chunks
SINGLE_SESSION_MAJORITY = 0.5  # share of one-session users above which a log is "anonymous sessions"
REVISIT_MIN_SHARE = 0.02  # below this share of re-visits, seen items are excluded from answers
CHOICE_LABELS = {
    "protocol": "protocol",
    "items_per_request": "items per request",
    "exclude_seen": "exclude seen items",
}


@dataclass(frozen=True)
class Choice:
    value: Any
    reason: str
    chosen_by: str = "the data's shape"  # or the command-line flag that set it


@dataclass(frozen=True)
class ShapeDefaults:
    shape: DataShape
    protocol: Choice
    items_per_request: Choice
    exclude_seen: Choice

    def choices(self) -> dict[str, Choice]:
        return {name: getattr(self, name) for name in CHOICE_LABELS}

    def overridden(self, name: str, value: Any, flag: str) -> ShapeDefaults:
        """This with the choice ``name`` set by the command-line ``flag`` (``value`` None: the shape's)."""
        if value is None:
            return self
        if name not in CHOICE_LABELS:
            raise ValueError(f"no default named {name!r}, expected one of {sorted(CHOICE_LABELS)}")
        changes: dict[str, Any] = {name: Choice(value, "set on the command line", flag)}
        return replace(self, **changes)

    def lines(self) -> list[str]:
        """What was chosen and why, for printing and for report notes."""
        out = [f"data shape: {self.shape.describe()}"]
        for name, choice in self.choices().items():
            value = ("yes" if choice.value else "no") if isinstance(choice.value, bool) else choice.value
            out.append(f"{CHOICE_LABELS[name]}: {value} ({choice.chosen_by}: {choice.reason})")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"shape": self.shape.to_dict(), **{k: asdict(c) for k, c in self.choices().items()}}


def _mostly_single_sessions(shape: DataShape) -> bool:
    return shape.single_session_share >= SINGLE_SESSION_MAJORITY


def choose_protocol(shape: DataShape) -> Choice:
    if shape.rating_only:
        return Choice(
            "leave-last-out",
            "explicit ratings: each user's last rating is the target, the earlier ones its history",
        )
    if _mostly_single_sessions(shape):
        return Choice(
            "leave-last-out",
            f"{shape.single_session_share:.0%} of users have a single session (anonymous sessions): each "
            "one's last event is the target, its earlier events the history; next-session would need an "
            "earlier session of the same user",
        )
    return Choice(
        "next-session",
        f"users come back ({shape.sessions_per_user:g} sessions per user, median): each one's first session "
        "after the time cut is the target, everything before it the history",
    )


def choose_items_per_request(shape: DataShape) -> Choice:
    if shape.rating_only:
        return Choice(1, "explicit ratings are entered one at a time: every rating is its own request")
    if _mostly_single_sessions(shape):
        return Choice(
            1,
            f"{shape.single_session_share:.0%} of users have a single session: a session-sized request would "
            "have no history before it (popularity level), so every event is its own request",
        )
    return Choice(
        REQUEST_ITEMS_DEFAULT,
        f"users come back across sessions: a request is a session, cut into chunks of "
        f"{REQUEST_ITEMS_DEFAULT} items",
    )


def choose_exclude_seen(shape: DataShape) -> Choice:
    if shape.revisit_share < REVISIT_MIN_SHARE:
        return Choice(
            True,
            f"{shape.revisit_share:.1%} of events re-visit an item (under {REVISIT_MIN_SHARE:.0%}): items "
            "already in the history are not recommended again",
        )
    return Choice(
        False,
        f"{shape.revisit_share:.1%} of events re-visit an item: seen items stay recommendable and the "
        "recent-items source is used",
    )


def choose_defaults(shape: DataShape) -> ShapeDefaults:
    return ShapeDefaults(
        shape, choose_protocol(shape), choose_items_per_request(shape), choose_exclude_seen(shape)
    )


def defaults_for(events: EventTable) -> ShapeDefaults:
    """The shape of ``events`` (a whole prepared log) and the defaults chosen from it."""
    return choose_defaults(measure_shape(events))
