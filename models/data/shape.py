"""The shape of an event log: how many sessions a user has, how long a session is, how often an item comes
back. ``models.data.defaults`` chooses the evaluation protocol, the items per request and whether seen
items stay recommendable from these numbers."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from models.data.schema import Action, EventTable


@dataclass(frozen=True)
class DataShape:
    """Counts and medians over the users that have events.

    single_session_share: share of users whose events form one session (anonymous session logs: ~1.0);
    revisit_share: share of events whose item the same user already had earlier (re-visits, re-buys);
    rating_only: every event is an explicit rating (MovieLens-like logs)."""

    users: int
    events: int
    sessions: int
    single_event_users: int
    single_session_share: float
    sessions_per_user: float  # median
    session_length: float  # median events per session
    revisit_share: float
    rating_only: bool

    def to_dict(self) -> dict[str, float | int | bool]:
        return asdict(self)

    def describe(self) -> str:
        """One line, e.g. '3,000 users, 1 session(s) per user (median; 100% have one), 4 events per
        session (median), 18.2% of events re-visit an item'."""
        return (
            f"{self.users:,} users, {self.sessions_per_user:g} session(s) per user (median; "
            f"{self.single_session_share:.0%} have one), {self.session_length:g} events per session "
            f"(median), {self.revisit_share:.1%} of events re-visit an item"
        )


def measure_shape(events: EventTable) -> DataShape:
    """events: a table sorted by (user, timestamp), as every prepared dataset is."""
    if len(events) == 0:
        return DataShape(0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0, False)
    user = events.user.astype(np.int64)
    new_user = np.r_[True, user[1:] != user[:-1]]
    new_session = new_user | np.r_[True, events.session[1:] != events.session[:-1]]
    user_of_session = user[new_session]
    session_lengths = np.diff(np.r_[np.flatnonzero(new_session), len(user)])
    _, sessions_per_user = np.unique(user_of_session, return_counts=True)
    _, events_per_user = np.unique(user, return_counts=True)
    pair = user * (int(events.item.max()) + 1) + events.item.astype(np.int64)
    distinct_pairs = len(np.unique(pair))
    return DataShape(
        users=len(events_per_user),
        events=len(events),
        sessions=len(session_lengths),
        single_event_users=int(np.count_nonzero(events_per_user == 1)),
        single_session_share=float(np.mean(sessions_per_user == 1)),
        sessions_per_user=float(np.median(sessions_per_user)),
        session_length=float(np.median(session_lengths)),
        revisit_share=(len(events) - distinct_pairs) / len(events),
        rating_only=bool(np.all(events.action == Action.RATE)),
    )
